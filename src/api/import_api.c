/* SPDX-License-Identifier: MIT */
/* POST /v1/vms/import (import_api.h): the loader and the conversions run in the thread pool,
 * the plan and the definition on the loop. Nothing is defined until every disk is converted;
 * a failure or a cancel removes every file the import made. */
#include "api/import_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "api/tasks_api.h"
#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "fleet/fleet.h"
#include "fleet/tasks.h"
#include "fleet/volumes.h"
#include "import/convert.h"
#include "import/load.h"
#include "import/plan.h"
#include "vm/firmware.h"
#include "vm/vm.h"

struct import_job {
    uv_work_t work;
    struct api_ctx *ctx;
    struct http_req *http;
    char path[VM_PATH_MAX];
    char name[VM_NAME_MAX + 1];
    char volume[64];
    char volume_path[VM_PATH_MAX];
    uint64_t volume_free;
    char want[64]; /* ?node= */
    char node[64]; /* where it goes */
    bool dry_run, dynamic, keep_devices, digests;
    unsigned nnet;
    struct import_netmap net[IMPORT_MAX_NETMAP];
    struct import_source src;
    struct import_plan plan;
    json_t *plan_json;
    struct import_progress progress;
    char task[TASKREC_ID_MAX + 1];
    char qemu_img[VM_PATH_MAX];
    int status;
    struct ferr e;
    int firmware_status; /* an EFI machine: OVMF looked for on this node */
    struct ferr firmware_e;
};

static void job_free(struct import_job *j)
{
    import_plan_clear(&j->plan);
    json_decref(j->plan_json);
    free(j);
}

static void job_fail(struct import_job *j, const struct ferr *e)
{
    http_reply_error(j->http, e);
    job_free(j);
}

static bool vm_exists(const char *name, void *data)
{
    struct api_ctx *ctx = data;
    char owner[64];
    return vmset_find(ctx->vms, name) || fleet_owner_of(ctx->fleet, name, owner) == 0;
}

static bool file_exists(const char *path, void *data)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- the conversion, a task ---- */

static json_t *job_progress(void *data)
{
    struct import_job *j = data;
    unsigned d = atomic_load(&j->progress.disk);
    return json_pack("{s:s, s:i, s:{s:i, s:i, s:s}}", "phase", "converting", "percent",
                     (int)(atomic_load(&j->progress.permille) / 10), "detail", "disk", (int)d,
                     "disks", (int)j->plan.nconv, "target",
                     d < j->plan.nconv ? j->plan.conv[d].dst_ref : "");
}

static int job_cancel(void *data, struct ferr *e)
{
    struct import_job *j = data;
    atomic_store(&j->progress.cancel, 1);
    return 0;
}

static void job_end(struct import_job *j, int status, json_t *body, const struct ferr *e)
{
    if (j->task[0]) {
        const char *state = !e ? "done" : e->code == -ECANCELED ? "cancelled" : "failed";
        tasks_end(j->ctx->tasks, j->task, state, e ? e->msg : "imported", NULL);
    }
    if (e) {
        json_decref(body);
        http_reply_error(j->http, e);
    } else {
        json_t *out = json_pack("{s:o, s:O, s:s}", "vm", body ? body : json_null(), "plan",
                                j->plan_json, "task", j->task);
        http_reply_json(j->http, 201, out);
    }
    job_free(j);
}

static void defined(int status, json_t *body, const struct ferr *e, void *data)
{
    struct import_job *j = data;
    struct ferr f = {0};
    if (reply_failed(status, body, e, &f)) {
        import_convert_undo(&j->plan);
        ferr_prefix(&f,
                    "import: the disks were converted but %s was not defined (they are "
                    "removed again)",
                    j->plan.name);
        json_decref(body);
        job_end(j, 0, NULL, &f);
        return;
    }
    log_info("import: %s defined on %s from %s", j->plan.name, j->node, j->path);
    job_end(j, status, body, NULL);
}

static void convert_work(uv_work_t *w)
{
    struct import_job *j = w->data;
    j->status = import_convert(j->qemu_img, &j->plan, &j->progress, &j->e);
}

static void convert_after(uv_work_t *w, int status)
{
    struct import_job *j = w->data;
    if (j->status < 0) {
        ferr_prefix(&j->e, "import %s", j->plan.name);
        job_end(j, 0, NULL, &j->e);
        return;
    }
    struct ferr e = {0};
    if (fleet_create(j->ctx->fleet, j->plan.spec, j->node, false, defined, j, &e) < 0) {
        import_convert_undo(&j->plan);
        ferr_prefix(&e, "import: %s was not defined (its converted disks are removed again)",
                    j->plan.name);
        job_end(j, 0, NULL, &e);
    }
}

static void start_conversion(struct import_job *j)
{
    struct task_ops ops = {.progress = job_progress, .cancel = job_cancel};
    struct ferr e = {0};
    if (j->ctx->tasks && tasks_begin(j->ctx->tasks, "import", j->plan.name,
                                     api_principal_name(j->http), &ops, j, j->task, &e) < 0) {
        log_warn("import %s: no task: %s", j->plan.name, e.msg);
        j->task[0] = 0;
    }
    j->work.data = j;
    uv_queue_work(j->ctx->loop, &j->work, convert_work, convert_after);
}

/* ---- the plan ---- */

/* The node's memory and CPUs as far as this node knows them. */
static void node_size(struct api_ctx *ctx, const char *node, uint64_t *mem, unsigned *cpus)
{
    *mem = 0;
    *cpus = 0;
    if (strcmp(node, ctx->node_name) == 0) {
        *mem = ctx->host.mem_total_mib;
        *cpus = ctx->host.cpus;
        return;
    }
    json_t *rec = NULL;
    if (cluster_active(ctx->cluster) &&
        cdb_node_find(cluster_db(ctx->cluster), node, &rec, NULL) == 0) {
        *mem = (uint64_t)json_integer_value(
            json_object_get(json_object_get(rec, "memory"), "total_mib"));
        json_decref(rec);
    }
}

static void load_work(uv_work_t *w)
{
    struct import_job *j = w->data;
    j->status = import_load(j->path, j->digests, &j->src, &j->e);
    char code[VM_PATH_MAX];
    if (j->status == 0 && strcmp(j->src.firmware, "efi") == 0)
        j->firmware_status = firmware_find(FIRMWARE_DIR, code, sizeof code, &j->firmware_e);
}

static void load_after(uv_work_t *w, int status)
{
    struct import_job *j = w->data;
    struct api_ctx *ctx = j->ctx;
    struct ferr e = {0};
    if (j->status < 0) {
        job_fail(j, &j->e);
        return;
    }
    if (fleet_place(ctx->fleet, j->src.memory_mib, j->want[0] ? j->want : NULL, NULL, NULL, j->node,
                    &e) < 0) {
        ferr_prefix(&e, "import: no node for %llu MiB", (unsigned long long)j->src.memory_mib);
        job_fail(j, &e);
        return;
    }
    /* before anything is converted: the node it lands on must have OVMF (another node checks
     * its own when the VM is defined there) */
    if (j->firmware_status < 0 && strcmp(j->node, ctx->node_name) == 0) {
        ferr_prefix(&j->firmware_e, "import: %s boots with EFI", j->src.file);
        job_fail(j, &j->firmware_e);
        return;
    }
    struct import_target t = {
        .name = j->name[0] ? j->name : NULL,
        .volume = j->volume,
        .volume_path = j->volume_path,
        .volume_free_bytes = j->volume_free,
        .dynamic = j->dynamic,
        .keep_devices = j->keep_devices,
        .nnet = j->nnet,
        .node = j->node,
        .vm_exists = vm_exists,
        .file_exists = file_exists,
        .data = ctx,
    };
    memcpy(t.net, j->net, sizeof t.net);
    node_size(ctx, j->node, &t.host_memory_mib, &t.host_cpus);
    if (import_plan_make(&j->src, &t, &j->plan, &e) < 0) {
        job_fail(j, &e);
        return;
    }
    j->plan_json = import_plan_to_json(&j->src, &j->plan);
    if (!j->plan_json || json_object_set_new(j->plan_json, "node", json_string(j->node)) < 0 ||
        json_object_set_new(j->plan_json, "volume", json_string(j->volume)) < 0 ||
        json_object_set_new(j->plan_json, "dry_run", json_boolean(j->dry_run)) < 0) {
        ferr_set(&e, -ENOMEM, "out of memory");
        job_fail(j, &e);
        return;
    }
    if (j->dry_run) {
        http_reply_json(j->http, 200, json_incref(j->plan_json));
        job_free(j);
        return;
    }
    start_conversion(j);
}

/* ---- the request ---- */

static int parse_networks(json_t *v, struct import_job *j, struct ferr *e)
{
    if (!v)
        return 0;
    if (!json_is_object(v))
        return ferr_set(e, FERR_INVALID,
                        "networks: expected an object {\"VM Network\": \"br0\", \"*\": \"br1\"}");
    const char *k;
    json_t *b;
    json_object_foreach(v, k, b)
    {
        const char *br = json_string_value(b);
        if (j->nnet == IMPORT_MAX_NETMAP)
            return ferr_set(e, FERR_INVALID, "networks: at most %d", IMPORT_MAX_NETMAP);
        if (!br || !br[0] || strlen(br) > VM_BRIDGE_MAX || strlen(k) >= 256)
            return ferr_set(e, FERR_INVALID,
                            "networks[\"%.60s\"]: expected a bridge name of 1..%d characters", k,
                            VM_BRIDGE_MAX);
        struct import_netmap *n = &j->net[j->nnet++];
        snprintf(n->network, sizeof n->network, "%s", strcmp(k, "*") == 0 ? "" : k);
        snprintf(n->bridge, sizeof n->bridge, "%s", br);
    }
    return 0;
}

/* The volume by name (or the only one), with this node's view of its free room. */
static int pick_volume(struct api_ctx *ctx, const char *want, struct import_job *j, struct ferr *e)
{
    json_t *list = ctx->volumes ? volumes_list(ctx->volumes) : NULL;
    json_t *arr = json_object_get(list, "csvs"), *v, *found = NULL;
    size_t i, n = json_array_size(arr);
    json_array_foreach(arr, i, v)
    {
        if (want ? strcmp(jfield_text(v, "name"), want) == 0 : n == 1)
            found = v;
    }
    int rc = 0;
    if (!found && want)
        rc = ferr_set(e, FERR_NOTFOUND, "volume: no cluster shared volume %s (ferry csv list)",
                      want);
    else if (!found)
        rc = ferr_set(e, FERR_INVALID,
                      n ? "volume: %zu volumes: say which one the disks go to (--to csv:VOLUME)"
                        : "volume: no cluster shared volume to put the disks on (%zu): add one "
                          "with ferry csv add",
                      n);
    else if (!json_is_object(json_object_get(found, "here")))
        rc = ferr_set(e, FERR_STATE,
                      "volume %s: this node (%s) has not looked at it yet; try "
                      "again in a few seconds",
                      jfield_text(found, "name"), ctx->node_name);
    else if (strcmp(jfield_text(json_object_get(found, "here"), "access"), "direct") != 0)
        rc = ferr_set(e, FERR_STATE, "volume %s: this node (%s) cannot write to it: %s",
                      jfield_text(found, "name"), ctx->node_name,
                      jfield_text(json_object_get(found, "here"), "why"));
    else {
        snprintf(j->volume, sizeof j->volume, "%s", jfield_text(found, "name"));
        snprintf(j->volume_path, sizeof j->volume_path, "%s", jfield_text(found, "path"));
        j->volume_free = (uint64_t)json_integer_value(json_object_get(found, "free_bytes"));
    }
    json_decref(list);
    return rc;
}

void api_vm_import(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"path",         "name",           "volume",
                                       "networks",     "disk_type",      "dry_run",
                                       "keep_devices", "check_manifest", NULL};
    size_t len;
    const char *text = http_req_body(req, &len);
    json_error_t je;
    json_t *b = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    struct ferr e = {0};
    struct import_job *j = NULL;
    if (!json_is_object(b)) {
        ferr_set(&e, FERR_INVALID, "body: expected a JSON object {\"path\": \"/abs/vm.vmx\", ...}");
        goto err;
    }
    const char *unknown = jfield_unknown(b, keys);
    if (unknown) {
        ferr_set(&e, FERR_INVALID,
                 "body: accepted: path, name, volume, networks, disk_type, dry_run, "
                 "keep_devices, check_manifest; unknown field \"%.60s\"",
                 unknown);
        goto err;
    }
    if (!(j = calloc(1, sizeof *j))) {
        ferr_set(&e, -ENOMEM, "out of memory");
        goto err;
    }
    j->ctx = ctx;
    j->http = req;
    snprintf(j->qemu_img, sizeof j->qemu_img, "%s", ctx->qemu_img);
    const char *path = json_string_value(json_object_get(b, "path"));
    const char *name = json_string_value(json_object_get(b, "name"));
    const char *volume = json_string_value(json_object_get(b, "volume"));
    const char *type = json_string_value(json_object_get(b, "disk_type"));
    json_t *dry = json_object_get(b, "dry_run");
    const char *node = http_req_query(req, "node");
    if (!path || path[0] != '/' || strlen(path) >= sizeof j->path) {
        ferr_set(&e, FERR_INVALID, "path: expected the absolute path of a .vmx, .ovf or .ova");
        goto err;
    }
    snprintf(j->path, sizeof j->path, "%s", path);
    if (json_object_get(b, "name") && (!name || strlen(name) > VM_NAME_MAX)) {
        ferr_set(&e, FERR_INVALID, "name: expected a VM name of 1..%d characters", VM_NAME_MAX);
        goto err;
    }
    snprintf(j->name, sizeof j->name, "%s", name ? name : "");
    if (json_object_get(b, "volume") && (!volume || strlen(volume) >= 64)) {
        ferr_set(&e, FERR_INVALID, "volume: expected a volume's name");
        goto err;
    }
    if (json_object_get(b, "disk_type") &&
        (!type || (strcmp(type, "fixed") != 0 && strcmp(type, "dynamic") != 0))) {
        ferr_set(&e, FERR_INVALID,
                 "disk_type: expected \"fixed\" (the fast path, live-migrates) or \"dynamic\" "
                 "(grows as written)");
        goto err;
    }
    j->dynamic = type && strcmp(type, "dynamic") == 0;
    if (dry && !json_is_boolean(dry)) {
        ferr_set(&e, FERR_INVALID, "dry_run: expected true or false");
        goto err;
    }
    j->dry_run = json_is_true(dry);
    json_t *keep = json_object_get(b, "keep_devices");
    if (keep && !json_is_boolean(keep)) {
        ferr_set(&e, FERR_INVALID, "keep_devices: expected true or false");
        goto err;
    }
    j->keep_devices = json_is_true(keep);
    /* a preview may skip the digests (the import itself checks them before converting) */
    json_t *check = json_object_get(b, "check_manifest");
    if (check && (!json_is_boolean(check) || (json_is_false(check) && !j->dry_run))) {
        ferr_set(&e, FERR_INVALID,
                 "check_manifest: false only with dry_run (an import checks the manifest's "
                 "digests before it converts anything)");
        goto err;
    }
    j->digests = !json_is_false(check);
    if (node && strlen(node) >= sizeof j->want) {
        ferr_set(&e, FERR_INVALID, "node: too long");
        goto err;
    }
    snprintf(j->want, sizeof j->want, "%s", node ? node : "");
    if (parse_networks(json_object_get(b, "networks"), j, &e) < 0 ||
        pick_volume(ctx, volume, j, &e) < 0)
        goto err;
    json_decref(b);
    j->work.data = j;
    uv_queue_work(ctx->loop, &j->work, load_work, load_after);
    return;
err:
    json_decref(b);
    free(j);
    http_reply_error(req, &e);
}

void api_vm_import_cancel(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *name = http_req_query(req, "name");
    if (!name || !name[0] || strlen(name) > VM_NAME_MAX) {
        http_reply_errorf(req, FERR_INVALID, "name: the VM being imported (?name=NAME)");
        return;
    }
    struct taskrec_filter f = {
        .state = "running", .kind = "import", .target = name, .node = ctx->node_name, .limit = 1};
    json_t *list = ctx->tasks ? tasks_list(ctx->tasks, &f) : NULL;
    const char *id = jfield_text(json_array_get(list, 0), "id");
    struct ferr e = {0};
    if (!id[0])
        http_reply_errorf(req, FERR_NOTFOUND, "no import of %s is running on %s", name,
                          ctx->node_name);
    else if (tasks_cancel(ctx->tasks, id, &e) < 0)
        http_reply_error(req, &e);
    else
        http_reply_json(req, 200,
                        json_pack("{s:s, s:s, s:b}", "task", id, "name", name, "cancelling", 1));
    json_decref(list);
}
