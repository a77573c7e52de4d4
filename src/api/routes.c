/* SPDX-License-Identifier: MIT */
/* The v1 routes of ferryd: validate each request, call the VM set, answer JSON (docs/api.md). */
#include "api/api.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/alerts.h"
#include "api/history.h"
#include "api/http.h"
#include "api/router.h"
#include "api/import_api.h"
#include "api/tasks_api.h"
#include "api/web.h"
#include "api/wsconsole.h"
#include "api/wsvnc.h"
#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "fleet/timing.h"
#include "fleet/storagemove.h"
#include "fleet/redirect.h"
#include "fleet/volumes.h"
#include "migrate/drain.h"
#include "migrate/migrate.h"
#include "storage/vhd.h"

#define CONSOLE_MAX_READ (1024 * 1024)
#define CONSOLE_DEFAULT_READ 65536

typedef void (*handler_fn)(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);

/* Parses the body as a JSON object; an empty body gives an empty object when allowed. */
static json_t *body_object(struct http_req *req, bool allow_empty)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    if (len == 0 && allow_empty)
        return json_object();
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        http_reply_errorf(req, FERR_INVALID, "body: invalid JSON at line %d column %d: %s", je.line,
                          je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_reply_errorf(req, FERR_INVALID, "body: expected a JSON object");
        return NULL;
    }
    return j;
}

/* body_object whose keys are all in keys (NULL-terminated); else 400 naming the unknown key
 * after usage (what the body accepts), and NULL. */
static json_t *body_keys(struct http_req *req, bool allow_empty, const char *const *keys,
                         const char *usage)
{
    json_t *b = body_object(req, allow_empty);
    if (!b)
        return NULL;
    const char *unknown = jfield_unknown(b, keys);
    if (unknown) {
        http_reply_errorf(req, FERR_INVALID, "%s; unknown field \"%.60s\"", usage, unknown);
        json_decref(b);
        return NULL;
    }
    return b;
}

/* The query arguments worth passing on, re-encoded; values are checked by the owner. */
static int forward_path(struct http_req *req, char *out, size_t size)
{
    static const char *keys[] = {"offset", "max", "force", "node", "range"};
    int n = snprintf(out, size, "%s", http_req_path(req));
    char sep = '?';
    for (size_t i = 0; i < ARRAY_SIZE(keys) && n > 0 && (size_t)n < size; i++) {
        const char *v = http_req_query(req, keys[i]);
        if (!v)
            continue;
        for (const char *p = v; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
                return FERR_INVALID;
        n += snprintf(out + n, size - (size_t)n, "%c%s=%s", sep, keys[i], v);
        sep = '&';
    }
    return n > 0 && (size_t)n < size ? 0 : FERR_INVALID;
}

/*
 * In a cluster a VM runs on its owner: a request for a VM that is not here goes there and its
 * answer comes back unchanged. Requests that other nodes forwarded are never forwarded again.
 * Returns true if the request was handed on (and will be answered).
 */
/* A forwarded request whose node did not answer: what it was for is said before the
 * transport's error and what to do after it ("VM web1 is on host2, which does not answer:
 * node host2 is down (for 7 s: ...)"). */
struct forwarded {
    struct http_req *req;
    char what[256], then[256];
};

static void forwarded_answer(int status, json_t *body, const struct ferr *e, void *data)
{
    struct forwarded *f = data;
    if (e && (e->code == FERR_UNAVAIL || e->code == FERR_TIMEOUT)) {
        json_decref(body);
        http_reply_errorf(f->req, e->code, "%s: %s%s", f->what, e->msg, f->then);
    } else {
        http_reply_answer(status, body, e, f->req);
    }
    free(f);
}

/* Hands req on to node unchanged (method, path, query, body); its answer comes back. If the
 * node does not answer, the error says what (before the transport's error) and then (after). */
static void forward_as_is(struct api_ctx *ctx, struct http_req *req, const char *node,
                          const char *what, const char *then)
{
    char path[1200];
    struct ferr e = {0};
    size_t len;
    const char *body = http_req_body(req, &len);
    struct forwarded *f = calloc(1, sizeof(*f));
    if (!f) {
        http_reply_errorf(req, -ENOMEM, "out of memory");
        return;
    }
    f->req = req;
    snprintf(f->what, sizeof(f->what), "%s", what);
    snprintf(f->then, sizeof(f->then), "%s", then);
    if (forward_path(req, path, sizeof(path)) < 0) {
        http_reply_errorf(req, FERR_INVALID,
                          "query: a value has characters that cannot be forwarded");
        free(f);
    } else if (cluster_forward(ctx->cluster, node, http_req_method(req), path, len ? body : NULL,
                               forwarded_answer, f, &e) < 0) {
        forwarded_answer(0, NULL, &e, f);
    }
}

static bool forward_to_owner(struct api_ctx *ctx, struct http_req *req, const char *name)
{
    char owner[64];
    if (http_req_principal(req) == HTTP_PRINCIPAL_PEER ||
        fleet_owner_of(ctx->fleet, name, owner) < 0 || !owner[0] ||
        strcmp(owner, ctx->node_name) == 0)
        return false;
    char what[256];
    snprintf(what, sizeof(what), "VM %.64s is on %.64s, which does not answer", name, owner);
    forward_as_is(ctx, req, owner, what, "");
    return true;
}

/* The record of a VM of another node whose node is down (fleet.h: its state is "unknown"), as
 * new JSON, or NULL. */
static json_t *unknown_vm(struct api_ctx *ctx, const char *name)
{
    json_t *rec = fleet_vm_record_json(ctx->fleet, name);
    const char *st = json_string_value(json_object_get(rec, "state"));
    if (st && strcmp(st, "unknown") == 0)
        return rec;
    json_decref(rec);
    return NULL;
}

static struct vm *find_vm(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *name = route_param(m, "name");
    struct vm *vm = name ? vmset_find(ctx->vms, name) : NULL;
    json_t *unknown = !vm && name ? unknown_vm(ctx, name) : NULL;
    if (unknown) {
        /* Its owner cannot be asked, and nobody else may act for it (failover decides). */
        http_reply_errorf(req, FERR_UNAVAIL, "%s: %s", name,
                          json_string_value(json_object_get(unknown, "reason")));
        json_decref(unknown);
        return NULL;
    }
    if (!vm && name && forward_to_owner(ctx, req, name))
        return NULL;
    if (!vm)
        http_reply_errorf(req, FERR_NOTFOUND, "no VM named %s (ferry vm list shows them)",
                          name ? name : "?");
    return vm;
}

/* Completion of an async VM operation: answer the request that waited for it. */
/* A VM operation in flight: the request and what the cluster must learn when it is done. */
struct vm_op {
    struct api_ctx *ctx;
    struct http_req *req;
    char name[VM_NAME_MAX + 1];
    struct vm *vm;
};

static struct vm_op *vm_op_new(struct api_ctx *ctx, struct http_req *req, const char *name)
{
    struct vm_op *op = calloc(1, sizeof(*op));
    if (!op) {
        http_reply_errorf(req, -ENOMEM, "out of memory");
        return NULL;
    }
    op->ctx = ctx;
    op->req = req;
    snprintf(op->name, sizeof(op->name), "%s", name ? name : "");
    return op;
}

static void reply_vm_done(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                          void *data)
{
    struct vm_op *op = data;
    if (status < 0)
        http_reply_error(op->req, e);
    else
        http_reply_json(op->req, 200, fleet_vm_json(op->ctx->fleet, vm));
    free(op);
}

static void count_running(struct vm *vm, void *data);

/* ---- node ---- */

static void h_node(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct host_info h;
    struct ferr e = {0};
    if (host_info_read(&h, &e) < 0)
        h = ctx->host;
    int running = 0;
    vmset_foreach(ctx->vms, count_running, &running);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:b, s:i, s:i, s:s, s:b, s:b, "
        "s:{s:I, s:I, s:I}, s:i, s:i, s:s, s:s, s:I}",
        "name", ctx->node_name, "hostname", h.hostname, "version", ctx->version, "accel",
        ctx->accel, "accel_reason", ctx->accel_reason, "accel_forced", ctx->accel_forced, "cpus",
        (int)h.cpus, "sockets", (int)h.sockets, "cpu_model", h.cpu_model, "hw_virt", h.hw_virt,
        "kvm_usable", h.kvm_usable, "memory", "total_mib", (json_int_t)h.mem_total_mib,
        "available_mib", (json_int_t)h.mem_avail_mib, "allocated_mib",
        (json_int_t)vmset_allocated_mib(ctx->vms), "vms", (int)vmset_count(ctx->vms), "running",
        running, "state_dir", ctx->state_dir, "api_socket", ctx->api_socket ? ctx->api_socket : "",
        "uptime_s", (json_int_t)((now_mono_ms() - ctx->start_mono_ms) / 1000));
    if (o)
        history_node_info(ctx->history, o);
    /* Health and admin state as the cluster database has them; alone, a node is up, active. */
    json_t *rec = NULL;
    if (cluster_active(ctx->cluster))
        cdb_node_find(cluster_db(ctx->cluster), ctx->node_name, &rec, NULL);
    const char *health = json_string_value(json_object_get(rec, "state"));
    const char *admin = json_string_value(json_object_get(rec, "admin"));
    json_t *tls = cluster_tls_info(ctx->cluster);
    if (o &&
        (json_object_set_new(o, "tls", tls ? tls : json_null()) < 0 ||
         json_object_set_new(o, "state", json_string(health ? health : "up")) < 0 ||
         json_object_set_new(o, "admin", json_string(admin ? admin : "active")) < 0 ||
         json_object_set_new(
             o, "qemu", ctx->qemu_version ? json_string(ctx->qemu_version) : json_null()) < 0 ||
         json_object_set_new(o, "migration_refused",
                             ctx->migrate_unsafe ? json_string(ctx->migrate_unsafe) : json_null()) <
             0)) {
        json_decref(o);
        o = NULL;
    }
    json_decref(rec);
    http_reply_json(req, 200, o);
}

static void self_node(struct api_ctx *ctx, json_t *arr)
{
    struct host_info h;
    if (host_info_read(&h, NULL) < 0)
        h = ctx->host;
    uint64_t used = vmset_allocated_mib(ctx->vms);
    json_t *n =
        json_pack("{s:I, s:s, s:s, s:s, s:b, s:s, s:i, s:{s:I, s:I, s:I}, s:s, s:i, s:s}", "id",
                  (json_int_t)0, "name", ctx->node_name, "state", "up", "admin", "active", "leader",
                  0, "role", "standalone", "vms", (int)vmset_count(ctx->vms), "memory", "total_mib",
                  (json_int_t)h.mem_total_mib, "used_mib", (json_int_t)used, "free_mib",
                  (json_int_t)(h.mem_total_mib > used ? h.mem_total_mib - used : 0), "accel",
                  ctx->accel, "last_heartbeat_ms", 0, "api_addr", "");
    if (n)
        history_node_info(ctx->history, n);
    json_array_append_new(arr, n);
}

/* ---- VMs ---- */

static void count_running(struct vm *vm, void *data)
{
    if (vm_state(vm) == VM_RUNNING)
        (*(int *)data)++;
}

static void h_vms_list(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    http_reply_json(req, 200, fleet_list(ctx->fleet));
}

static void h_vm_create(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    json_t *spec = body_object(req, false);
    if (!spec)
        return;
    struct ferr e = {0};
    if (fleet_create(ctx->fleet, spec, http_req_query(req, "node"),
                     http_req_principal(req) == HTTP_PRINCIPAL_PEER, http_reply_answer, req,
                     &e) < 0)
        http_reply_error(req, &e);
    json_decref(spec);
}

static void h_vm_get(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *name = route_param(m, "name");
    json_t *unknown = name && !vmset_find(ctx->vms, name) ? unknown_vm(ctx, name) : NULL;
    if (unknown) { /* what the database last heard, marked unknown */
        http_reply_json(req, 200, unknown);
        return;
    }
    struct vm *vm = find_vm(ctx, req, m);
    if (vm)
        http_reply_json(req, 200, fleet_vm_json(ctx->fleet, vm));
}

static void h_vm_delete(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    const char *force = http_req_query(req, "force");
    if (force && strcmp(force, "1") != 0 && strcmp(force, "0") != 0 && strcmp(force, "true") != 0 &&
        strcmp(force, "false") != 0) {
        http_reply_errorf(req, FERR_INVALID, "force: expected 1 or 0, got %.40s", force);
        return;
    }
    bool f = force && (strcmp(force, "1") == 0 || strcmp(force, "true") == 0);
    struct ferr e = {0};
    if (fleet_delete(ctx->fleet, vm, f, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

static void h_vm_action(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    const char *action = route_param(m, "action");
    struct ferr e = {0};
    json_int_t timeout = 30;
    if (strcmp(action, "stop") == 0) {
        static const char *const keys[] = {"timeout_s", NULL};
        json_t *body = body_keys(req, true, keys, "body: accepted: {\"timeout_s\": 1..3600}");
        if (!body)
            return;
        json_t *val = json_object_get(body, "timeout_s");
        if (val && (!json_is_integer(val) || json_integer_value(val) < 1 ||
                    json_integer_value(val) > 3600)) {
            json_decref(body);
            http_reply_errorf(req, FERR_INVALID, "timeout_s: expected an integer in 1..3600");
            return;
        }
        if (val)
            timeout = json_integer_value(val);
        json_decref(body);
    } else if (strcmp(action, "start") && strcmp(action, "kill") && strcmp(action, "pause") &&
               strcmp(action, "resume")) {
        http_reply_errorf(req, FERR_NOTFOUND,
                          "no action %.40s (accepted: start, stop, kill, pause, resume)", action);
        return;
    }
    struct vm_op *op = vm_op_new(ctx, req, vm_name(vm));
    if (!op)
        return;
    int rc;
    if (strcmp(action, "stop") == 0)
        rc = vm_stop(vm, (unsigned)timeout, reply_vm_done, op, &e);
    else if (strcmp(action, "start") == 0)
        rc = fleet_start(ctx->fleet, vm, reply_vm_done, op, &e);
    else if (strcmp(action, "kill") == 0)
        rc = vm_kill(vm, reply_vm_done, op, &e);
    else if (strcmp(action, "pause") == 0)
        rc = vm_pause(vm, reply_vm_done, op, &e);
    else
        rc = vm_resume(vm, reply_vm_done, op, &e);
    if (rc < 0) {
        free(op);
        http_reply_error(req, &e);
    }
}

/* Parses a non-negative decimal query argument; returns false after answering 400. */
static bool query_u64(struct http_req *req, const char *key, uint64_t max, uint64_t *out)
{
    const char *s = http_req_query(req, key);
    if (!s)
        return true;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno || v > max) {
        http_reply_errorf(req, FERR_INVALID, "%s: expected an integer in 0..%llu, got \"%.40s\"",
                          key, (unsigned long long)max, s);
        return false;
    }
    *out = v;
    return true;
}

static void h_vm_console(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    uint64_t max = CONSOLE_DEFAULT_READ, offset = VM_CONSOLE_TAIL; /* default: the last max */
    if (!query_u64(req, "max", CONSOLE_MAX_READ, &max) ||
        !query_u64(req, "offset", UINT64_MAX - 1, &offset))
        return;
    char *data;
    size_t len;
    uint64_t from, start, end;
    int rc = vm_console_read(vm, offset, (size_t)max, &data, &len, &from, &start, &end);
    if (rc < 0) {
        http_reply_errorf(req, rc, "console: out of memory");
        return;
    }
    /* A read that ends inside a UTF-8 character stops before it (it comes whole next time). */
    size_t whole = utf8_valid_len(data, len);
    if (whole + 4 > len)
        len = whole;
    json_t *o = json_pack("{s:I, s:I, s:I, s:s%}", "start", (json_int_t)start, "from",
                          (json_int_t)from, "offset", (json_int_t)(from + len), "data", data, len);
    free(data);
    if (!o) {
        /* Console bytes that are not UTF-8 (jansson refuses them) are sent escaped. */
        http_reply_errorf(req, FERR_INTERNAL, "console: output is not valid UTF-8");
        return;
    }
    http_reply_json(req, 200, o);
}

/* GET /v1/vms/{name}/console/ws: the console as a WebSocket (api/wsconsole.c). It is not
 * forwarded: the node the browser talks to relays the VM's node itself. */
static void h_vm_console_ws(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    wsconsole_open(ctx, req, route_param(m, "name"));
}

static void h_vm_vnc_ws(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    wsvnc_open(ctx, req, route_param(m, "name"));
}

/* POST /v1/vms/{name}/console/input {"data": "text"}: types into the serial console. */
static void h_vm_console_input(struct api_ctx *ctx, struct http_req *req,
                               const struct route_match *m)
{
    static const char *const keys[] = {"data", NULL};
    static const char usage[] = "body: accepted: {\"data\": \"what to type (UTF-8 text)\"}";
    json_t *b = body_keys(req, false, keys, usage);
    if (!b)
        return;
    json_t *d = json_object_get(b, "data");
    if (!json_is_string(d) || json_string_length(d) == 0 ||
        json_string_length(d) > WSCONSOLE_INPUT_MAX) {
        http_reply_errorf(req, FERR_INVALID, "%s; data: a string of 1..%d bytes", usage,
                          WSCONSOLE_INPUT_MAX);
        json_decref(b);
        return;
    }
    struct vm *vm = find_vm(ctx, req, m);
    if (vm)
        wsconsole_input_local(ctx, req, vm_name(vm), json_string_value(d), json_string_length(d));
    json_decref(b);
}

/* GET /v1/vms/{name}/history?range=hour|day: the VM's resource history (forwarded to its
 * node, which samples it). */
static void h_vm_history(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *range = http_req_query(req, "range");
    if (range && strcmp(range, "hour") != 0 && strcmp(range, "day") != 0) {
        http_reply_errorf(req, FERR_INVALID, "range: expected hour or day, got \"%.20s\"", range);
        return;
    }
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    json_t *j = history_json(ctx->history, vm_name(vm), range && strcmp(range, "day") == 0);
    if (!j) {
        http_reply_errorf(req, -ENOMEM, "history: out of memory");
        return;
    }
    json_object_set_new(j, "vm", json_string(vm_name(vm)));
    http_reply_json(req, 200, j);
}

/* GET /v1/nodes/{name}/history?range=hour|day: a node's CPU use and memory (sampled by the
 * node itself: forwarded there). */
static void h_node_history(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *range = http_req_query(req, "range");
    const char *node = route_param(m, "name");
    if (range && strcmp(range, "hour") != 0 && strcmp(range, "day") != 0) {
        http_reply_errorf(req, FERR_INVALID, "range: expected hour or day, got \"%.20s\"", range);
        return;
    }
    if (strcmp(node, ctx->node_name) != 0) {
        json_t *n = NULL;
        struct ferr e = {0};
        if (!cluster_active(ctx->cluster) ||
            cdb_node_find(cluster_db(ctx->cluster), node, &n, &e) < 0) {
            http_reply_errorf(req, FERR_NOTFOUND,
                              "no node named %.64s (ferry node list shows them)", node);
            return;
        }
        json_decref(n);
        if (http_req_principal(req) == HTTP_PRINCIPAL_PEER) {
            http_reply_errorf(req, FERR_STATE,
                              "%s is not %s; the request was forwarded to the "
                              "wrong node",
                              ctx->node_name, node);
            return;
        }
        char what[256];
        snprintf(what, sizeof(what), "node %.64s, whose history this is, does not answer", node);
        forward_as_is(ctx, req, node, what, "");
        return;
    }
    json_t *j = history_node_json(ctx->history, range && strcmp(range, "day") == 0);
    if (!j) {
        http_reply_errorf(req, -ENOMEM, "history: out of memory");
        return;
    }
    json_object_set_new(j, "node", json_string(ctx->node_name));
    http_reply_json(req, 200, j);
}

/* ---- disks ---- */

/* Disk work blocks (qemu-img, reading the metadata of a file on a shared volume): it runs in
 * the libuv thread pool and answers from disk_after. */
enum disk_op { DISK_INFO, DISK_CREATE, DISK_CONVERT, DISK_GROW, DISK_DELETE };

struct disk_work {
    uv_work_t req;
    struct http_req *http;
    enum disk_op op;
    char qemu_img[256];
    char path[VM_PATH_MAX]; /* the disk described: created, converted into, or asked about */
    char src[VM_PATH_MAX];  /* convert: the image read */
    char src_format[16];    /* convert: "" to detect */
    char type[16];          /* create, convert: "fixed" or "dynamic" */
    uint64_t size_mib;
    struct vhd_info info;
    int status;
    struct ferr e;
    char node[64]; /* who did it (a volume's disks: its coordinator) */
    uv_loop_t *loop;
    struct events *events;
};

static void disk_work(uv_work_t *req)
{
    struct disk_work *dw = req->data;
    if (dw->op == DISK_DELETE) {
        dw->status = vhd_delete(dw->path, &dw->e);
        return;
    }
    if (dw->op == DISK_CREATE)
        dw->status = vhd_create(dw->qemu_img, dw->path, dw->type, dw->size_mib, &dw->e);
    else if (dw->op == DISK_GROW)
        dw->status = vhd_grow(dw->qemu_img, dw->path, dw->size_mib, &dw->e);
    else if (dw->op == DISK_CONVERT)
        dw->status = vhd_convert(dw->qemu_img, dw->src, dw->src_format[0] ? dw->src_format : NULL,
                                 dw->path, dw->type, &dw->e);
    if (dw->status < 0)
        return;
    dw->status = vhd_info_read(dw->qemu_img, dw->path, &dw->info, &dw->e);
}

static void disk_after(uv_work_t *req, int status)
{
    struct disk_work *dw = req->data;
    if (dw->status >= 0 && dw->op == DISK_DELETE)
        events_add(dw->events, NULL, "disk.deleted", "%s", dw->path);
    else if (dw->status >= 0 && (dw->op == DISK_CREATE || dw->op == DISK_GROW))
        events_add(dw->events, NULL, dw->op == DISK_CREATE ? "disk.created" : "disk.grown",
                   "%s: a %s VHD of %llu MiB", dw->path, dw->info.subformat,
                   (unsigned long long)(dw->info.virtual_size >> 20));
    if (dw->status < 0) {
        http_reply_error(dw->http, &dw->e);
    } else if (dw->op == DISK_DELETE) {
        http_reply_json(
            dw->http, 200,
            json_pack("{s:s, s:b, s:s}", "path", dw->path, "deleted", 1, "node", dw->node));
    } else {
        http_reply_json(dw->http, dw->op == DISK_CREATE || dw->op == DISK_CONVERT ? 201 : 200,
                        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "path", dw->path, "format",
                                  dw->info.format, "subformat", dw->info.subformat, "virtual_size",
                                  (json_int_t)dw->info.virtual_size, "actual_size",
                                  (json_int_t)dw->info.actual_size, "file_size",
                                  (json_int_t)dw->info.file_size, "node", dw->node));
    }
    free(dw);
}

static bool check_abs_path(struct http_req *req, const char *field, const char *path)
{
    if (!path || path[0] != '/' || strlen(path) >= VM_PATH_MAX || strstr(path, "/../") ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0)) {
        http_reply_errorf(req, FERR_INVALID,
                          "%s: expected an absolute path without \"..\" (under %d chars)", field,
                          VM_PATH_MAX);
        return false;
    }
    return true;
}

/* A new disk_work for req (NULL after answering it with an error); the caller fills it in and
 * passes it to start_disk_work. */
static struct disk_work *new_disk_work(struct api_ctx *ctx, struct http_req *req, enum disk_op op,
                                       const char *path)
{
    struct disk_work *dw = calloc(1, sizeof(*dw));
    if (!dw) {
        http_reply_errorf(req, -ENOMEM, "out of memory");
        return NULL;
    }
    dw->http = req;
    dw->op = op;
    snprintf(dw->node, sizeof(dw->node), "%s", ctx->node_name);
    dw->events = ctx->events;
    dw->loop = ctx->loop;
    snprintf(dw->qemu_img, sizeof(dw->qemu_img), "%s", ctx->qemu_img);
    snprintf(dw->path, sizeof(dw->path), "%s", path);
    dw->req.data = dw;
    return dw;
}

static void start_disk_work(struct disk_work *dw)
{
    uv_queue_work(dw->loop, &dw->req, disk_work, disk_after);
}

/* "type": "fixed" or "dynamic" (absent: dflt, or an error when dflt is NULL). */
static const char *disk_type(struct http_req *req, const json_t *body, const char *dflt)
{
    json_t *type = json_object_get(body, "type");
    if (!type && dflt)
        return dflt;
    const char *t = json_string_value(type);
    if (!t || (strcmp(t, "fixed") != 0 && strcmp(t, "dynamic") != 0)) {
        http_reply_errorf(
            req, FERR_INVALID,
            "type: expected \"fixed\" or \"dynamic\" (a fixed VHD is the fast path; a "
            "dynamic one grows as it is written and live-migrates when it is on a shared "
            "volume)");
        return NULL;
    }
    return t;
}

/*
 * A VHD on a cluster shared volume is created, grown and deleted by the volume's coordinator
 * (docs/architecture.md, "Cluster shared volumes"): the request goes there unless this node
 * is it. Returns true if the request was answered or handed on.
 */
static bool forward_to_coordinator(struct api_ctx *ctx, struct http_req *req, const char *path)
{
    if (!cluster_active(ctx->cluster))
        return false;
    json_t *vol = cdb_csv_holding(cluster_db(ctx->cluster), path);
    if (!vol)
        return false;
    char coord[64], name[64];
    snprintf(coord, sizeof(coord), "%s", jfield_text(vol, "coordinator"));
    snprintf(name, sizeof(name), "%s", jfield_text(vol, "name"));
    json_decref(vol);
    if (strcmp(coord, ctx->node_name) == 0)
        return false;
    if (http_req_principal(req) == HTTP_PRINCIPAL_PEER)
        http_reply_errorf(req, FERR_STATE,
                          "%s does not coordinate volume %s any more: %s does; try again",
                          ctx->node_name, name, coord);
    else {
        char what[256], then[256];
        snprintf(what, sizeof(what), "volume %.64s's coordinator %.64s does not answer", name,
                 coord);
        snprintf(then, sizeof(then),
                 "; another node takes the volume once %.64s's lease on it expires: try again "
                 "in a few seconds",
                 coord);
        forward_as_is(ctx, req, coord, what, then);
    }
    return true;
}

/* The VMs whose spec names path as a disk, and whether one of them has a QEMU (any state but
 * stopped and failed): "web1 (running), db1 (stopped)" into out. */
static bool disk_users(struct api_ctx *ctx, const char *path, char *out, size_t size)
{
    json_t *list = fleet_list(ctx->fleet);
    size_t i, k, n = 0;
    json_t *vm, *d;
    bool live = false;
    out[0] = '\0';
    json_array_foreach(json_object_get(list, "vms"), i, vm)
    {
        json_array_foreach(json_object_get(json_object_get(vm, "spec"), "disks"), k, d)
        {
            if (strcmp(jfield_text(d, "path"), path) != 0)
                continue;
            const char *st = jfield_text(vm, "state");
            live |= strcmp(st, "stopped") != 0 && strcmp(st, "failed") != 0;
            size_t used = strlen(out);
            if (used < size)
                snprintf(out + used, size - used, "%s%s (disks[%zu], %s)", n++ ? ", " : "",
                         jfield_text(vm, "name"), k, st);
        }
    }
    json_decref(list);
    return live;
}

static void h_disk_create(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"path", "size_mib", "type", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: path, size_mib, type");
    if (!b)
        return;
    const char *path = json_string_value(json_object_get(b, "path"));
    json_t *size = json_object_get(b, "size_mib");
    const char *type;
    if (!check_abs_path(req, "path", path))
        goto out;
    if (!json_is_integer(size) || json_integer_value(size) < 1 ||
        (uint64_t)json_integer_value(size) > VHD_MAX_SIZE_MIB) {
        http_reply_errorf(req, FERR_INVALID, "size_mib: expected an integer in 1..%llu",
                          (unsigned long long)VHD_MAX_SIZE_MIB);
        goto out;
    }
    if (!(type = disk_type(req, b, "fixed")))
        goto out;
    if (forward_to_coordinator(ctx, req, path))
        goto out;
    struct disk_work *dw = new_disk_work(ctx, req, DISK_CREATE, path);
    if (!dw)
        goto out;
    dw->size_mib = (uint64_t)json_integer_value(size);
    snprintf(dw->type, sizeof(dw->type), "%s", type);
    start_disk_work(dw);
out:
    json_decref(b);
}

static void h_disk_convert(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"src", "dst", "type", "src_format", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: src, dst, type, src_format");
    if (!b)
        return;
    const char *src = json_string_value(json_object_get(b, "src"));
    const char *dst = json_string_value(json_object_get(b, "dst"));
    json_t *fmt = json_object_get(b, "src_format");
    const char *type;
    if (!check_abs_path(req, "src", src) || !check_abs_path(req, "dst", dst))
        goto out;
    if (!(type = disk_type(req, b, NULL)))
        goto out;
    if (fmt && (!json_is_string(fmt) || json_string_length(fmt) >= 16)) {
        http_reply_errorf(req, FERR_INVALID, "src_format: expected one of " VHD_SOURCE_FORMATS);
        goto out;
    }
    struct disk_work *dw = new_disk_work(ctx, req, DISK_CONVERT, dst);
    if (!dw)
        goto out;
    snprintf(dw->src, sizeof(dw->src), "%s", src);
    snprintf(dw->src_format, sizeof(dw->src_format), "%s", fmt ? json_string_value(fmt) : "");
    snprintf(dw->type, sizeof(dw->type), "%s", type);
    start_disk_work(dw);
out:
    json_decref(b);
}

/* The coordinator's storage daemon let the file go (redirect_free_file): the work starts. */
static void disk_freed(int status, json_t *body, const struct ferr *e, void *data)
{
    struct disk_work *dw = data;
    json_decref(body);
    if (e) {
        http_reply_error(dw->http, e);
        free(dw);
        return;
    }
    start_disk_work(dw);
}

/* Grow and delete: the storage daemon of this node (a coordinator) closes its export of the
 * file first, if it kept one for a stopped VM. */
static void start_disk_change(struct api_ctx *ctx, struct disk_work *dw)
{
    if (ctx->redirect)
        redirect_free_file(ctx->redirect, dw->path, disk_freed, dw);
    else
        disk_freed(200, NULL, NULL, dw);
}

static void h_disk_grow(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"path", "size_mib", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: path, size_mib");
    if (!b)
        return;
    const char *path = json_string_value(json_object_get(b, "path"));
    json_t *size = json_object_get(b, "size_mib");
    char users[512];
    if (!check_abs_path(req, "path", path))
        goto out;
    if (!json_is_integer(size) || json_integer_value(size) < 1 ||
        (uint64_t)json_integer_value(size) > VHD_MAX_SIZE_MIB) {
        http_reply_errorf(req, FERR_INVALID,
                          "size_mib: expected an integer in 1..%llu (the new size)",
                          (unsigned long long)VHD_MAX_SIZE_MIB);
        goto out;
    }
    if (disk_users(ctx, path, users, sizeof(users))) {
        http_reply_errorf(req, FERR_STATE,
                          "%s is a disk of %s: stop the VM first (it sees the new size "
                          "when it starts)",
                          path, users);
        goto out;
    }
    if (forward_to_coordinator(ctx, req, path))
        goto out;
    struct disk_work *dw = new_disk_work(ctx, req, DISK_GROW, path);
    if (!dw)
        goto out;
    dw->size_mib = (uint64_t)json_integer_value(size);
    start_disk_change(ctx, dw);
out:
    json_decref(b);
}

static void h_disk_delete(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"path", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: path");
    if (!b)
        return;
    const char *path = json_string_value(json_object_get(b, "path"));
    char users[512];
    if (!check_abs_path(req, "path", path))
        goto out;
    disk_users(ctx, path, users, sizeof(users));
    if (users[0]) {
        http_reply_errorf(req, FERR_STATE,
                          "%s is a disk of %s: delete the VM or move its disk first", path, users);
        goto out;
    }
    if (forward_to_coordinator(ctx, req, path))
        goto out;
    struct disk_work *dw = new_disk_work(ctx, req, DISK_DELETE, path);
    if (dw)
        start_disk_change(ctx, dw);
out:
    json_decref(b);
}

static void h_disk_info(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *path = http_req_query(req, "path");
    if (!check_abs_path(req, "path", path))
        return;
    struct stat st;
    if (stat(path, &st) < 0) {
        http_reply_errorf(req, FERR_NOTFOUND, "path: %.400s: %s", path, strerror(errno));
        return;
    }
    struct disk_work *dw = new_disk_work(ctx, req, DISK_INFO, path);
    if (dw)
        start_disk_work(dw);
}

/* ---- events and metrics ---- */

/* The newest limit events of this node for vm (all when vm is NULL), oldest first, each with
 * "node" set to this node's name (copies). */
static json_t *events_of(struct api_ctx *ctx, const char *vm, unsigned limit)
{
    json_t *all = events_list(ctx->events, 0, UINT_MAX), *out = json_array();
    size_t n = json_array_size(all), from = n;
    unsigned got = 0;
    while (from > 0 && got < limit) {
        json_t *e = json_array_get(all, from - 1);
        if (!vm || strcmp(jfield_text(e, "vm"), vm) == 0)
            got++;
        from--;
    }
    for (size_t i = from; out && i < n; i++) {
        json_t *e = json_array_get(all, i);
        if (vm && strcmp(jfield_text(e, "vm"), vm) != 0)
            continue;
        json_t *c = json_copy(e);
        if (!c || json_object_set_new(c, "node", json_string(ctx->node_name)) < 0) {
            json_decref(c);
            c = NULL;
        }
        if (!c || json_array_append_new(out, c) < 0) { /* _new took c even when it failed */
            json_decref(out);
            out = NULL;
        }
    }
    json_decref(all);
    return out;
}

/*
 * GET /v1/events?scope=cluster: every up node's events (for vm, if given) merged by time (then
 * node, then the node's event id: one order however qsort breaks ties), each naming its node, the
 * newest limit; "nodes" says which node answered and why one did not. Event IDs are each node's
 * own, so such a list neither resumes (since) nor follows.
 */
struct events_gather {
    struct http_req *req;
    json_t *events, *nodes;
    unsigned waiting, limit;
};

struct events_ask {
    struct events_gather *g;
    char node[64];
};

static int by_time(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "time_ms"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "time_ms"));
    if (x != y)
        return x < y ? -1 : 1;
    int c =
        strcmp(jfield_text(*(json_t *const *)a, "node"), jfield_text(*(json_t *const *)b, "node"));
    if (c)
        return c;
    x = json_integer_value(json_object_get(*(json_t *const *)a, "id"));
    y = json_integer_value(json_object_get(*(json_t *const *)b, "id"));
    return x < y ? -1 : x > y;
}

static void gather_reply(struct events_gather *g)
{
    size_t n = json_array_size(g->events), i;
    json_t **v = n ? malloc(n * sizeof(*v)) : NULL;
    json_t *out = json_array();
    if ((n && !v) || !out) {
        http_reply_errorf(g->req, -ENOMEM, "events: out of memory");
    } else {
        for (i = 0; i < n; i++)
            v[i] = json_array_get(g->events, i);
        if (n)
            qsort(v, n, sizeof(*v), by_time);
        for (i = n > g->limit ? n - g->limit : 0; i < n; i++)
            json_array_append(out, v[i]);
        http_reply_json(g->req, 200, json_pack("{s:o, s:O}", "events", out, "nodes", g->nodes));
        out = NULL;
    }
    json_decref(out);
    free(v);
    json_decref(g->events);
    json_decref(g->nodes);
    free(g);
}

static void gather_answer(int status, json_t *body, const struct ferr *e, void *data)
{
    struct events_ask *a = data;
    struct events_gather *g = a->g;
    if (e) {
        json_object_set_new(g->nodes, a->node, json_string(e->msg));
    } else {
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(body, "events"), i, ev)
        {
            if (json_is_object(ev) && json_is_integer(json_object_get(ev, "time_ms")) &&
                json_object_set_new(ev, "node", json_string(a->node)) == 0)
                json_array_append(g->events, ev);
        }
        json_object_set_new(g->nodes, a->node, json_string("ok"));
    }
    json_decref(body);
    free(a);
    if (--g->waiting == 0)
        gather_reply(g);
}

static void events_cluster(struct api_ctx *ctx, struct http_req *req, const char *vm,
                           unsigned limit)
{
    struct events_gather *g = calloc(1, sizeof(*g));
    json_t *nodes = cluster_active(ctx->cluster) ? cluster_nodes(ctx->cluster) : NULL;
    if (!g || !(g->events = events_of(ctx, vm, limit)) || !(g->nodes = json_object())) {
        if (g) {
            json_decref(g->events);
            free(g);
        }
        json_decref(nodes);
        http_reply_errorf(req, -ENOMEM, "events: out of memory");
        return;
    }
    g->req = req;
    g->limit = limit;
    g->waiting = 1; /* this node's part, counted down last */
    json_object_set_new(g->nodes, ctx->node_name, json_string("ok"));
    /* scope=cluster from a peer is that node's own part: its newest limit (a plain list would
     * be its oldest) */
    char path[200];
    snprintf(path, sizeof(path), "/v1/events?scope=cluster&limit=%u%s%s", limit, vm ? "&vm=" : "",
             vm ? vm : "");
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(nodes, "nodes"), i, n)
    {
        const char *name = jfield_text(n, "name");
        if (!name[0] || strcmp(name, ctx->node_name) == 0)
            continue;
        if (strcmp(jfield_text(n, "state"), "up") != 0) {
            json_object_set_new(g->nodes, name, json_string("down: not asked"));
            continue;
        }
        struct events_ask *a = calloc(1, sizeof(*a));
        struct ferr e = {0};
        if (!a) {
            json_object_set_new(g->nodes, name, json_string("out of memory"));
            continue;
        }
        a->g = g;
        snprintf(a->node, sizeof(a->node), "%s", name);
        g->waiting++;
        if (cluster_call_within(ctx->cluster, name, "GET", path, NULL, 3000, gather_answer, a, &e) <
            0) {
            g->waiting--;
            json_object_set_new(g->nodes, name, json_string(e.msg));
            free(a);
        }
    }
    json_decref(nodes);
    if (--g->waiting == 0)
        gather_reply(g);
}

static void h_events(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    uint64_t since = 0, limit = 100, follow = 0;
    const char *vm = http_req_query(req, "vm"), *scope = http_req_query(req, "scope");
    if (!query_u64(req, "follow", 1, &follow))
        return;
    if (vm && !name_valid(vm, 63)) {
        http_reply_errorf(req, FERR_INVALID, "vm: \"%.70s\" is not a VM name", vm);
        return;
    }
    if (scope && strcmp(scope, "node") != 0 && strcmp(scope, "cluster") != 0) {
        http_reply_errorf(req, FERR_INVALID, "scope: expected node or cluster, got \"%.40s\"",
                          scope);
        return;
    }
    bool cluster = scope && strcmp(scope, "cluster") == 0;
    if (cluster && (follow || http_req_query(req, "since"))) {
        http_reply_errorf(req, FERR_INVALID,
                          "scope=cluster lists the newest events of every node; it neither "
                          "follows nor resumes (event IDs are each node's own): leave out "
                          "follow and since");
        return;
    }
    if (follow) {
        if (vm) {
            http_reply_errorf(req, FERR_INVALID,
                              "vm: the event stream is every event of the node; leave vm out "
                              "and filter the events' \"vm\"");
            return;
        }
        api_events_follow(ctx, req);
        return;
    }
    if (!query_u64(req, "since", UINT64_MAX - 1, &since) || !query_u64(req, "limit", 1000, &limit))
        return;
    if (cluster && http_req_principal(req) != HTTP_PRINCIPAL_PEER) {
        events_cluster(ctx, req, vm, (unsigned)limit);
        return;
    }
    json_t *list;
    if (vm || cluster) /* the newest of a VM's, or a peer's part of a cluster list */
        list = events_of(ctx, vm, (unsigned)limit);
    else
        list = events_list(ctx->events, since, (unsigned)limit);
    http_reply_json(req, 200, json_pack("{s:o}", "events", list ? list : json_array()));
}

static void h_metrics(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    char *text;
    size_t len;
    if (metrics_render(ctx, &text, &len) < 0) {
        http_reply_errorf(req, -ENOMEM, "metrics: out of memory");
        return;
    }
    http_reply_data(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* GET /v1/alerts: what is wrong now, as this node knows it (api/alerts.h). */
static void h_alerts(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (!ctx->alerts && (ctx->alerts = malloc(sizeof(*ctx->alerts))))
        alerts_init(ctx->alerts);
    if (!ctx->alerts) {
        http_reply_errorf(req, -ENOMEM, "alerts: out of memory");
        return;
    }
    struct cluster_metrics cm;
    bool clustered = ctx->cluster && cluster_metrics(ctx->cluster, &cm) == 0;
    json_t *nodes = clustered ? cluster_nodes(ctx->cluster) : NULL;
    json_t *vms = fleet_list(ctx->fleet);
    json_t *volumes = ctx->volumes ? volumes_local_view(ctx->volumes) : NULL;
    struct alert_input in = {
        .node = ctx->node_name,
        .clustered = clustered,
        .has_leader = clustered && cm.has_leader,
        .quorum = clustered && cm.quorum,
        .fenced = fleet_fenced(ctx->fleet),
        .nodes = json_object_get(nodes, "nodes"),
        .vms = json_object_get(vms, "vms"),
        .volumes = volumes,
    };
    json_t *out = alerts_eval(ctx->alerts, &in, now_wall_ms() / 1000);
    json_decref(nodes);
    json_decref(vms);
    json_decref(volumes);
    if (!out) {
        http_reply_errorf(req, -ENOMEM, "alerts: out of memory");
        return;
    }
    http_reply_json(req, 200, out);
}

/* ---- cluster ---- */

/* Internal routes answer only other members of the cluster. */
static bool from_peer(struct http_req *req)
{
    int p = http_req_principal(req);
    if (p == HTTP_PRINCIPAL_PEER || p == HTTP_PRINCIPAL_JOINER)
        return true;
    http_reply_errorf(req, FERR_AUTH, "internal cluster API: only cluster members may call it");
    return false;
}

static void h_cluster_init(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char usage[] = "body: accepted: {\"name\": \"cluster name\"}";
    static const char *const keys[] = {"name", NULL};
    json_t *b = body_keys(req, true, keys, usage);
    if (!b)
        return;
    json_t *name = json_object_get(b, "name");
    struct ferr e = {0};
    if (name && !json_is_string(name))
        http_reply_errorf(req, FERR_INVALID, "%s; name is not a string", usage);
    else if (cluster_init(ctx->cluster, json_string_value(name), http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_cluster_join(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char usage[] = "body: accepted: {\"address\": \"IP:PORT\", \"token\": \"...\"}";
    static const char *const keys[] = {"address", "token", NULL};
    json_t *b = body_keys(req, false, keys, usage);
    if (!b)
        return;
    json_t *addr = json_object_get(b, "address"), *token = json_object_get(b, "token");
    struct ferr e = {0};
    if ((addr && !json_is_string(addr)) || (token && !json_is_string(token)))
        http_reply_errorf(req, FERR_INVALID, "%s; address and token are strings", usage);
    else if (cluster_join(ctx->cluster, json_string_value(addr), json_string_value(token),
                          http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_cluster_leave(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct ferr e = {0};
    if (cluster_leave(ctx->cluster, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

static void h_cluster_remove(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char usage[] = "body: accepted: {\"node\": \"NAME\"}";
    static const char *const keys[] = {"node", NULL};
    json_t *b = body_keys(req, false, keys, usage);
    if (!b)
        return;
    const char *node = json_string_value(json_object_get(b, "node"));
    struct ferr e = {0};
    if (!node)
        http_reply_errorf(req, FERR_INVALID, "%s", usage);
    else if (cluster_remove(ctx->cluster, node, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

/* The timings this node uses now (fleet/timing.h), and how late heartbeats came. */
static json_t *timing_json(struct api_ctx *ctx)
{
    const struct timing_state *ts = ctx->timing;
    if (!ts)
        return json_null();
    const struct timing_now *n = &ts->now;
    char worst[64] = "";
    uint64_t measured = 0;
    json_int_t late = cluster_heartbeat_late(ctx->cluster, worst, sizeof(worst), &measured);
    return json_pack("{s:s, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s, s:I}", "profile",
                     ts->profile, "settling", ts->settling, "heartbeat_ms", n->heartbeat_send_ms,
                     "down_after_ms", n->heartbeat_ms * n->down_after, "lease_ms", n->lease_ms,
                     "lease_expiry_ms", n->lease_expiry_ms, "fence_after_ms", n->fence_after_ms,
                     "watchdog_timeout_ms", n->watchdog_timeout_ms, "heartbeat_late_ms",
                     late >= 0 ? json_integer(late) : json_null(), "heartbeat_late_node", worst,
                     "heartbeat_late_measured_ms", (json_int_t)measured);
}

static void h_cluster_status(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct ferr e = {0};
    json_t *o;
    if (cluster_status(ctx->cluster, &o, &e) < 0) {
        http_reply_error(req, &e);
        return;
    }
    json_object_set_new(o, "profile", json_string(cdb_profile(cluster_db(ctx->cluster))));
    json_object_set_new(o, "timing", timing_json(ctx));
    http_reply_json(req, 200, o);
}

/* The CA this node trusts, for anyone (a certificate is public): a node that joins fetches it
 * and compares it with the fingerprint in its token; an operator gives it to curl or a
 * browser. */
static void h_cluster_ca(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *ca = cluster_ca(ctx->cluster);
    json_t *tls = cluster_tls_info(ctx->cluster);
    if (!ca || !tls) {
        json_decref(tls);
        http_reply_errorf(req, FERR_NOTFOUND, "this ferryd has no TCP API, hence no CA");
        return;
    }
    json_object_set_new(tls, "ca", json_string(ca));
    http_reply_json(req, 200, tls);
}

/* Whether the cluster can take profile: every node applies command version 7, and for the fast
 * one every node is up and its heartbeats come on time (measured for a while). */
static int profile_allowed(struct api_ctx *ctx, const char *profile, struct ferr *e)
{
    struct cluster *c = ctx->cluster;
    if (!cluster_active(c))
        return ferr_set(e, FERR_STATE,
                        "this node is in no cluster: a timing profile is the "
                        "cluster's (ferry cluster init or join first)");
    const struct cdb *db = cluster_db(c);
    if (cdb_cmd_version_min(db) < 7)
        return ferr_set(e, FERR_STATE,
                        "a node of the cluster runs a ferry that knows no timing profiles "
                        "(command version %d < 7): upgrade every node first",
                        cdb_cmd_version_min(db));
    if (strcmp(profile, TIMING_PROFILE_FAST) != 0)
        return 0;
    json_t *nodes = cdb_nodes(db);
    size_t i;
    json_t *n;
    const char *down = NULL;
    json_array_foreach(nodes, i, n)
    {
        if (strcmp(jfield_text(n, "state"), "up") != 0) {
            down = jfield_text(n, "name");
            break;
        }
    }
    if (down) {
        ferr_set(e, FERR_STATE,
                 "node %s is %s: the fast profile needs every node up, to measure how late "
                 "its heartbeats come; bring it back or remove it first",
                 down, jfield_text(n, "state"));
        json_decref(nodes);
        return FERR_STATE;
    }
    json_decref(nodes);
    char worst[64] = "";
    uint64_t measured = 0;
    json_int_t late = cluster_heartbeat_late(c, worst, sizeof(worst), &measured);
    if (measured < TIMING_JITTER_MEASURE_MS)
        return ferr_set(e, FERR_STATE,
                        "heartbeats have been measured for %llu ms only on this node; the fast "
                        "profile needs %d ms of them: try again in %llu s",
                        (unsigned long long)measured, TIMING_JITTER_MEASURE_MS,
                        (unsigned long long)(TIMING_JITTER_MEASURE_MS - measured + 999) / 1000);
    if (late > TIMING_FAST_JITTER_MAX_MS)
        return ferr_set(e, FERR_LIMIT,
                        "%s's heartbeats came up to %lld ms late in the last minutes (measured "
                        "on %s); the fast profile calls a node down after %u missed %u ms "
                        "heartbeats and needs them within %d ms: these nodes cannot keep up, "
                        "stay on the default profile (or find what delays %s)",
                        worst, (long long)late, ctx->node_name, timing_fast.down_after,
                        timing_fast.heartbeat_ms, TIMING_FAST_JITTER_MAX_MS, worst);
    return 0;
}

struct profile_set {
    struct api_ctx *ctx;
    struct http_req *req;
    char profile[16];
};

static void profile_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct profile_set *ps = data;
    json_decref(body);
    if (e) {
        http_reply_error(ps->req, e);
        free(ps);
        return;
    }
    cluster_event_add(ps->ctx->cluster, "cluster.profile", NULL,
                      "the cluster's timing profile is now %s (asked on %s)", ps->profile,
                      ps->ctx->node_name);
    http_reply_json(ps->req, 200,
                    json_pack("{s:s, s:b, s:i}", "profile", ps->profile, "changed", 1, "settle_ms",
                              TIMING_SETTLE_MS));
    free(ps);
}

static void h_cluster_profile(struct api_ctx *ctx, struct http_req *req,
                              const struct route_match *m)
{
    static const char *const keys[] = {"profile", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: {\"profile\": \"default\"|\"fast\"}");
    if (!b)
        return;
    const char *profile = json_string_value(json_object_get(b, "profile"));
    struct ferr e = {0};
    struct profile_set *ps = NULL;
    json_t *cmd = NULL;
    if (timing_profile_check(profile, &e) < 0) {
        http_reply_error(req, &e);
    } else if (cluster_active(ctx->cluster) &&
               strcmp(profile, cdb_profile(cluster_db(ctx->cluster))) == 0) {
        /* asked again: nothing to check (a node just changed has not measured again yet) */
        http_reply_json(
            req, 200,
            json_pack("{s:s, s:b, s:i}", "profile", profile, "changed", 0, "settle_ms", 0));
    } else if (profile_allowed(ctx, profile, &e) < 0) {
        http_reply_error(req, &e);
    } else if (!(ps = calloc(1, sizeof(*ps))) ||
               !(cmd = cdb_cmd_cluster_profile(profile, now_wall_ms()))) {
        http_reply_errorf(req, -ENOMEM, "out of memory");
        free(ps);
    } else {
        ps->req = req;
        snprintf(ps->profile, sizeof(ps->profile), "%s", profile);
        ps->ctx = ctx;
        if (cluster_write(ctx->cluster, cmd, profile_written, ps, &e) < 0) {
            http_reply_error(req, &e);
            free(ps);
        }
    }
    json_decref(cmd);
    json_decref(b);
}

static void self_node(struct api_ctx *ctx, json_t *arr);

static void h_nodes(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (cluster_active(ctx->cluster)) {
        http_reply_json(req, 200, cluster_nodes(ctx->cluster));
        return;
    }
    json_t *arr = json_array();
    self_node(ctx, arr);
    http_reply_json(req, 200, json_pack("{s:o, s:i}", "nodes", arr, "stale_ms", 0));
}

typedef void (*internal_fn)(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data);

static void internal(struct api_ctx *ctx, struct http_req *req, internal_fn fn)
{
    if (!from_peer(req))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    fn(ctx->cluster, b, http_reply_answer, req);
    json_decref(b);
}

static void h_int_join(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    internal(ctx, req, cluster_on_join);
}

static void h_int_heartbeat(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    internal(ctx, req, cluster_on_heartbeat);
}

static void h_int_apply(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    internal(ctx, req, cluster_on_apply);
}

static void h_int_remove(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    internal(ctx, req, cluster_on_remove);
}

/* ---- live migration (src/migrate/) ---- */

/* The migrator (ferryd makes it at start); NULL after answering req (if any) with the error. */
static struct migrator *migrator(struct api_ctx *ctx, struct http_req *req)
{
    if (!ctx->migrator && req) {
        struct ferr e = {0};
        ferr_set(&e, FERR_STATE, "live migration is not set up on this node yet; try again");
        http_reply_error(req, &e);
    }
    return ctx->migrator;
}

static void h_vm_migrate(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    struct migrator *mg = vm ? migrator(ctx, req) : NULL;
    if (!mg)
        return;
    json_t *b = body_object(req, true);
    if (!b)
        return;
    const char *key;
    json_t *val;
    struct migrate_opts o = {.user = api_principal_name(req)};
    json_object_foreach(b, key, val)
    {
        json_int_t n = json_is_integer(val) ? json_integer_value(val) : 0;
        if (strcmp(key, "to") == 0 && json_is_string(val) &&
            name_valid(json_string_value(val), 63)) {
            o.to = json_string_value(val);
        } else if (strcmp(key, "budget_ms") == 0 && n >= 1 && n <= 60000) {
            o.budget_ms = (uint64_t)n;
        } else if (strcmp(key, "max_bandwidth_mib") == 0 && n >= 1 && n <= 1048576) {
            o.bandwidth_mib = (uint64_t)n;
        } else if (strcmp(key, "max_postcopy_bandwidth_mib") == 0 && n >= 1 && n <= 1048576) {
            o.postcopy_bandwidth_mib = (uint64_t)n;
        } else if (strcmp(key, "insecure_migration") == 0 && json_is_boolean(val)) {
            o.stream = json_is_true(val) ? MIGRATE_STREAM_PLAIN : MIGRATE_STREAM_TLS;
        } else {
            http_reply_errorf(req, FERR_INVALID,
                              "body: accepted: {\"to\": \"NODE\", \"budget_ms\": 1..60000, "
                              "\"max_bandwidth_mib\": 1..1048576, \"max_postcopy_bandwidth_mib\": "
                              "1..1048576, \"insecure_migration\": BOOL} (each optional); bad "
                              "\"%.60s\"",
                              key);
            json_decref(b);
            return;
        }
    }
    struct ferr e = {0};
    if (migrate_start(mg, vm, &o, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_vm_migrate_cancel(struct api_ctx *ctx, struct http_req *req,
                                const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    struct migrator *mg = vm ? migrator(ctx, req) : NULL;
    struct ferr e = {0};
    if (!mg)
        return;
    if (migrate_cancel(mg, vm_name(vm), &e) < 0)
        http_reply_error(req, &e);
    else
        http_reply_json(req, 200, json_pack("{s:s, s:b}", "vm", vm_name(vm), "cancelling", 1));
}

/* GET /v1/vms/{name}/migration: the running migration's live figures, on its source. A
 * destination's incoming copy hands the request to the owner. */
static void h_vm_migration(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    json_t *p = migrate_progress(ctx->migrator, vm_name(vm));
    if (p) {
        http_reply_json(req, 200, p);
        return;
    }
    if (vm_state(vm) == VM_INCOMING && forward_to_owner(ctx, req, vm_name(vm)))
        return;
    http_reply_errorf(req, FERR_NOTFOUND, "%s is not migrating", vm_name(vm));
}

/* The API's migration record from a "vm.migration" cluster event (borrowed); NULL when the
 * event is something else or its message is not a record. New JSON the caller owns. */
static json_t *migration_record(const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *msg = json_string_value(json_object_get(ev, "message"));
    if (!type || strcmp(type, "vm.migration") != 0 || !msg)
        return NULL;
    json_t *rec = json_loads(msg, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return NULL;
    }
    json_object_set(rec, "id", json_object_get(ev, "id"));
    json_object_set(rec, "time_ms", json_object_get(ev, "time_ms"));
    if (!json_object_get(rec, "client_gap_ms"))
        json_object_set_new(rec, "client_gap_ms", json_null());
    if (!json_object_get(rec, "client_gap_source"))
        json_object_set_new(rec, "client_gap_source", json_null());
    return rec;
}

/* GET /v1/migrations?vm=NAME: the "vm.migration" records of the cluster database, newest
 * first. Any node answers from its own copy of the database. */
static void h_migrations(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *want = http_req_query(req, "vm");
    if (want && !name_valid(want, 63)) {
        http_reply_errorf(req, FERR_INVALID, "vm: \"%.70s\" is not a VM name", want);
        return;
    }
    json_t *list = json_array();
    json_t *evs = cluster_active(ctx->cluster) ? cdb_events(cluster_db(ctx->cluster), 0, 0) : NULL;
    for (size_t i = json_array_size(evs); i-- > 0;) {
        json_t *ev = json_array_get(evs, i);
        const char *vm = json_string_value(json_object_get(ev, "vm"));
        if (want && (!vm || strcmp(vm, want) != 0))
            continue;
        json_t *rec = migration_record(ev);
        if (rec)
            json_array_append_new(list, rec);
    }
    json_decref(evs);
    http_reply_json(req, 200, json_pack("{s:o}", "migrations", list));
}

/* The id in /v1/migrations/{id}; false after answering 400. */
static bool migration_id(struct http_req *req, const struct route_match *m, json_int_t *out)
{
    const char *s = route_param(m, "id");
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || *s < '0' || *s > '9' || *end != '\0' || errno || v < 1 || v > CDB_ID_MAX) {
        http_reply_errorf(
            req, FERR_INVALID,
            "migration id: \"%.40s\" is not a number (ferry vm migrations shows the ids)",
            s ? s : "");
        return false;
    }
    *out = (json_int_t)v;
    return true;
}

/* The record of migration id from this node's copy of the database, or NULL. */
static json_t *migration_find(struct api_ctx *ctx, json_int_t id)
{
    if (!cluster_active(ctx->cluster))
        return NULL;
    json_t *evs = cdb_events(cluster_db(ctx->cluster), (uint64_t)id - 1, 1);
    json_t *ev = json_array_get(evs, 0);
    json_t *rec =
        ev && json_integer_value(json_object_get(ev, "id")) == id ? migration_record(ev) : NULL;
    json_decref(evs);
    return rec;
}

/* GET /v1/migrations/{id}: one record. */
static void h_migration_get(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    json_int_t id;
    if (!migration_id(req, m, &id))
        return;
    json_t *rec = migration_find(ctx, id);
    if (rec)
        http_reply_json(req, 200, rec);
    else
        http_reply_errorf(
            req, FERR_NOTFOUND,
            "no migration %lld (ferry vm migrations lists them; only the last %d events "
            "are kept)",
            (long long)id, CDB_EVENTS_MAX);
}

struct measure_op {
    struct api_ctx *ctx;
    struct http_req *req;
    json_int_t id;
    double gap_ms;
};

/* The measurement was applied here (cluster_write answers then): the record as it is now. */
static void measured(int status, json_t *body, const struct ferr *e, void *data)
{
    struct measure_op *op = data;
    if (e || status != 200) {
        /* Refused here, or by the leader (its error answer is relayed as it came). */
        http_reply_answer(status, body, e, op->req);
        free(op);
        return;
    }
    json_decref(body);
    json_t *rec = migration_find(op->ctx, op->id);
    if (!rec) {
        http_reply_errorf(
            op->req, FERR_NOTFOUND,
            "migration %lld: measured, but its record has left the event window already",
            (long long)op->id);
    } else {
        struct migrator *mg = migrator(op->ctx, NULL);
        if (mg)
            migrator_note_client_gap(mg, op->gap_ms);
        http_reply_json(op->req, 200, rec);
    }
    free(op);
}

/*
 * POST /v1/migrations/{id}/measurements {"client_gap_ms": N, "source": "lab-probe", "force":
 * false}: a figure measured by a client of the VM joins the record, through the cluster
 * database (migration_measure, which makes the checks that need the state: the record exists,
 * no client gap yet unless force).
 */
static void h_migration_measure(struct api_ctx *ctx, struct http_req *req,
                                const struct route_match *m)
{
    static const char usage[] = "body: accepted: {\"client_gap_ms\": 0..3600000, \"source\": "
                                "\"1-32 of a-z 0-9 _ . -\" (optional, default \"manual\"), "
                                "\"force\": true|false (optional)}";
    json_int_t id;
    if (!migration_id(req, m, &id))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    const char *key, *source = "manual";
    json_t *val, *gap = NULL;
    bool force = false;
    json_object_foreach(b, key, val)
    {
        if (strcmp(key, "client_gap_ms") == 0) {
            gap = val;
        } else if (strcmp(key, "source") == 0 && json_is_string(val)) {
            source = json_string_value(val);
        } else if (strcmp(key, "force") == 0 && json_is_boolean(val)) {
            force = json_is_true(val);
        } else {
            http_reply_errorf(req, FERR_INVALID, "%s; bad \"%.60s\"", usage, key);
            json_decref(b);
            return;
        }
    }
    double ms = json_number_value(gap);
    if (!json_is_number(gap) || !(ms >= 0 && ms <= CDB_CLIENT_GAP_MAX_MS)) {
        http_reply_errorf(req, FERR_INVALID,
                          "client_gap_ms: expected a number of milliseconds in 0..%d; %s",
                          CDB_CLIENT_GAP_MAX_MS, usage);
        json_decref(b);
        return;
    }
    json_t *cmd = cdb_cmd_migration_measure((uint64_t)id, gap, source, force);
    json_decref(b);
    struct measure_op *op = calloc(1, sizeof(*op));
    struct ferr e = {0};
    if (!cmd || !op) {
        json_decref(cmd);
        free(op);
        http_reply_errorf(req, -ENOMEM, "out of memory");
        return;
    }
    *op = (struct measure_op){ctx, req, id, ms};
    /* The cluster database checks the source token and answers with its own message. */
    if (cluster_write(ctx->cluster, cmd, measured, op, &e) < 0) {
        free(op);
        http_reply_error(req, &e);
    }
    json_decref(cmd);
}

/* A peer's call into the migrator: fn(migrator, body, answer). */
static void int_migrate_call(struct api_ctx *ctx, struct http_req *req,
                             void (*fn)(struct migrator *, const json_t *, migrate_cb, void *))
{
    struct migrator *mg;
    if (!from_peer(req) || !(mg = migrator(ctx, req)))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    fn(mg, b, http_reply_answer, req);
    json_decref(b);
}

static void h_int_migrate_console(struct api_ctx *ctx, struct http_req *req,
                                  const struct route_match *m)
{
    int_migrate_call(ctx, req, migrate_on_console);
}

/* POST /v1/internal/vm-history {"names": [VM, ...]}: the histories this node has of those
 * VMs, for the node they arrived at (api/history.h). */
static void h_int_vm_history(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (!from_peer(req))
        return;
    json_t *b = body_object(req, false);
    json_t *out = NULL;
    struct ferr e = {0};
    if (!b)
        return;
    char *text = NULL;
    if (history_for_peer(ctx->history, b, &out, &e) < 0) {
        http_reply_error(req, &e);
    } else if (!(text = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6)))) {
        http_reply_errorf(req, -ENOMEM, "history: out of memory");
    } else { /* 6 digits, not 17: the points were floats */
        http_reply_data(req, 200, "application/json", text, strlen(text));
    }
    free(text);
    json_decref(out);
    json_decref(b);
}

static void h_int_migrate_recover(struct api_ctx *ctx, struct http_req *req,
                                  const struct route_match *m)
{
    int_migrate_call(ctx, req, migrate_on_recover);
}

static void h_int_migrate_prepare(struct api_ctx *ctx, struct http_req *req,
                                  const struct route_match *m)
{
    int_migrate_call(ctx, req, migrate_on_prepare);
}

static void h_int_migrate_abort(struct api_ctx *ctx, struct http_req *req,
                                const struct route_match *m)
{
    int_migrate_call(ctx, req, migrate_on_abort);
}

/* ---- node drain and resume (src/migrate/drain.c) ---- */

/* The drain runs on the node itself (it owns the VMs): a request made elsewhere goes there.
 * Returns true if the request was handed on or answered. */
static bool forward_to_node(struct api_ctx *ctx, struct http_req *req, const char *node)
{
    if (!cluster_active(ctx->cluster)) {
        http_reply_errorf(req, FERR_STATE,
                          "this host is not in a cluster: there is nowhere to move its VMs");
        return true;
    }
    if (strcmp(node, ctx->node_name) == 0)
        return false;
    if (http_req_principal(req) == HTTP_PRINCIPAL_PEER) {
        http_reply_errorf(req, FERR_STATE,
                          "%s is not %s; the request was forwarded to the wrong node",
                          ctx->node_name, node);
        return true;
    }
    size_t len;
    const char *body = http_req_body(req, &len);
    struct ferr e = {0};
    if (cluster_forward(ctx->cluster, node, "POST", http_req_path(req), len ? body : NULL,
                        http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    return true;
}

static void h_node_drain(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *node = route_param(m, "name");
    struct ferr e0 = {0};
    if (drain_check_node(ctx->cluster, node, "drain", &e0) < 0) {
        http_reply_error(req, &e0);
        return;
    }
    if (forward_to_node(ctx, req, node))
        return;
    json_t *b = body_object(req, true);
    if (!b)
        return;
    json_t *par = json_object_get(b, "parallel");
    if (json_object_size(b) > (par ? 1u : 0u) ||
        (par && (!json_is_integer(par) || json_integer_value(par) < 1 ||
                 json_integer_value(par) > DRAIN_PARALLEL_MAX))) {
        http_reply_errorf(req, FERR_INVALID, "body: accepted: {\"parallel\": 1..%d (optional)}",
                          DRAIN_PARALLEL_MAX);
        json_decref(b);
        return;
    }
    struct migrator *mg = migrator(ctx, req);
    struct ferr e = {0};
    struct drain_env env = {ctx->loop,      ctx->vms,   ctx->events,
                            ctx->cluster,   ctx->fleet, mg,
                            ctx->node_name, ctx->tasks, api_principal_name(req)};
    if (mg && drain_start(&env, par ? (unsigned)json_integer_value(par) : 0, http_reply_answer, req,
                          &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_node_resume(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    const char *node = route_param(m, "name");
    struct ferr e = {0};
    if (drain_check_node(ctx->cluster, node, "resume", &e) < 0) {
        http_reply_error(req, &e);
        return;
    }
    if (forward_to_node(ctx, req, node))
        return;
    struct drain_env env = {ctx->loop, ctx->vms,       ctx->events, ctx->cluster, ctx->fleet,
                            NULL,      ctx->node_name, NULL,        NULL};
    if (drain_resume(&env, node, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

/* ---- cluster shared volumes (src/fleet/volumes.c) ---- */

static void h_csvs_list(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    http_reply_json(req, 200, volumes_list(ctx->volumes));
}

static void h_csv_add(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"name", "path", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: {\"name\": NAME, \"path\": \"/abs\"}");
    if (!b)
        return;
    const char *name = json_string_value(json_object_get(b, "name"));
    const char *path = json_string_value(json_object_get(b, "path"));
    struct ferr e = {0};
    if (!name || !path)
        http_reply_errorf(req, FERR_INVALID, "body: name and path (strings) are both required");
    else if (volumes_add(ctx->volumes, name, path, http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_csv_get(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct ferr e = {0};
    if (volumes_show(ctx->volumes, route_param(m, "name"), http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

static void h_csv_audit(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct ferr e = {0};
    if (volumes_audit(ctx->volumes, route_param(m, "name"), http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

static void h_csv_remove(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    struct ferr e = {0};
    if (volumes_remove(ctx->volumes, route_param(m, "name"), http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
}

static void h_csv_move(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"to", NULL};
    json_t *b = body_keys(req, false, keys, "body: accepted: {\"to\": NODE}");
    if (!b)
        return;
    const char *to = json_string_value(json_object_get(b, "to"));
    struct ferr e = {0};
    if (!to)
        http_reply_errorf(req, FERR_INVALID, "body: to (a node's name) is required");
    else if (volumes_move_coordinator(ctx->volumes, route_param(m, "name"), to, http_reply_answer,
                                      req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_int_csv_probe(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (!from_peer(req))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    volumes_on_probe(ctx->volumes, b, http_reply_answer, req);
    json_decref(b);
}

static void h_int_csv_export(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (!from_peer(req))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    redirect_on_export(ctx->redirect, b, http_reply_answer, req);
    json_decref(b);
}

static void h_int_csv_release(struct api_ctx *ctx, struct http_req *req,
                              const struct route_match *m)
{
    if (!from_peer(req))
        return;
    json_t *b = body_object(req, false);
    if (!b)
        return;
    redirect_on_release(ctx->redirect, b, http_reply_answer, req);
    json_decref(b);
}

/* ---- storage moves (src/fleet/storagemove.c) ---- */

static void h_vm_ha(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    static const char *const keys[] = {"ha", NULL};
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    json_t *b = body_keys(req, false, keys,
                          "body: accepted: {\"ha\": {settings} to enable or change, or null to "
                          "disable}");
    if (!b)
        return;
    struct ferr e = {0};
    if (!json_object_get(b, "ha"))
        http_reply_errorf(req, FERR_INVALID,
                          "ha: required: the settings (an object, {} for the defaults) "
                          "or null to disable");
    else if (fleet_set_ha(ctx->fleet, vm, json_object_get(b, "ha"), http_reply_answer, req, &e) < 0)
        http_reply_error(req, &e);
    json_decref(b);
}

static void h_vm_storage_move(struct api_ctx *ctx, struct http_req *req,
                              const struct route_match *m)
{
    static const char *const keys[] = {"disk", "to", "speed_mib", NULL};
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    json_t *b = body_keys(req, false, keys,
                          "body: accepted: {\"disk\": N, \"to\": \"/abs/new.vhd\", "
                          "\"speed_mib\": N}");
    if (!b)
        return;
    json_t *disk = json_object_get(b, "disk"), *speed = json_object_get(b, "speed_mib");
    const char *to = json_string_value(json_object_get(b, "to"));
    struct ferr e = {0};
    if (disk && (!json_is_integer(disk) || json_integer_value(disk) < 0 ||
                 json_integer_value(disk) >= VM_MAX_DISKS))
        http_reply_errorf(req, FERR_INVALID, "disk: expected an integer in 0..%d",
                          VM_MAX_DISKS - 1);
    else if (speed && (!json_is_integer(speed) || json_integer_value(speed) < 1 ||
                       json_integer_value(speed) > 100000))
        http_reply_errorf(req, FERR_INVALID, "speed_mib: expected an integer in 1..100000 (MiB/s)");
    else if (!to)
        http_reply_errorf(req, FERR_INVALID, "to: the new file's absolute path is required");
    else {
        struct storage_move_env env = {ctx->loop, ctx->fleet, ctx->qemu_img};
        struct api_task_reply *tr = api_task_reply_new(ctx, req);
        if (!tr)
            ferr_set(&e, -ENOMEM, "out of memory");
        if (!tr || storage_move_start(&env, vm, disk ? (unsigned)json_integer_value(disk) : 0, to,
                                      speed ? (unsigned)json_integer_value(speed) : 0,
                                      api_task_reply_cb, tr, &e) < 0) {
            api_task_reply_drop(tr);
            http_reply_error(req, &e);
        } else {
            api_storage_move_task(tr, vm_name(vm));
        }
    }
    json_decref(b);
}

static void h_vm_storage_move_cancel(struct api_ctx *ctx, struct http_req *req,
                                     const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    struct ferr e = {0};
    if (!vm)
        return;
    if (storage_move_cancel(vm_name(vm), &e) < 0)
        http_reply_error(req, &e);
    else
        http_reply_json(req, 200, json_pack("{s:s, s:b}", "vm", vm_name(vm), "cancelling", 1));
}

static void h_vm_storage_move_get(struct api_ctx *ctx, struct http_req *req,
                                  const struct route_match *m)
{
    struct vm *vm = find_vm(ctx, req, m);
    if (!vm)
        return;
    json_t *p = storage_move_progress(vm_name(vm));
    if (p)
        http_reply_json(req, 200, p);
    else
        http_reply_errorf(req, FERR_NOTFOUND, "%s: no storage move is under way", vm_name(vm));
}

static const struct route routes[] = {
    {"POST", "/v1/cluster/init", (void *)h_cluster_init, NULL},
    {"POST", "/v1/cluster/join", (void *)h_cluster_join, NULL},
    {"POST", "/v1/cluster/leave", (void *)h_cluster_leave, NULL},
    {"POST", "/v1/cluster/remove", (void *)h_cluster_remove, NULL},
    {"GET", "/v1/cluster/status", (void *)h_cluster_status, NULL},
    {"GET", "/v1/cluster/ca", (void *)h_cluster_ca, NULL},
    {"POST", "/v1/cluster/profile", (void *)h_cluster_profile, NULL},
    {"GET", "/v1/nodes", (void *)h_nodes, NULL},
    {"POST", "/v1/nodes/{name}/drain", (void *)h_node_drain, NULL},
    {"GET", "/v1/nodes/{name}/history", (void *)h_node_history, "range"},
    {"POST", "/v1/nodes/{name}/resume", (void *)h_node_resume, NULL},
    {"POST", "/v1/internal/join", (void *)h_int_join, NULL},
    {"POST", "/v1/internal/heartbeat", (void *)h_int_heartbeat, NULL},
    {"POST", "/v1/internal/apply", (void *)h_int_apply, NULL},
    {"POST", "/v1/internal/remove", (void *)h_int_remove, NULL},
    {"POST", "/v1/internal/migrate/prepare", (void *)h_int_migrate_prepare, NULL},
    {"POST", "/v1/internal/migrate/abort", (void *)h_int_migrate_abort, NULL},
    {"POST", "/v1/internal/migrate/console", (void *)h_int_migrate_console, NULL},
    {"POST", "/v1/internal/vm-history", (void *)h_int_vm_history, NULL},
    {"POST", "/v1/internal/migrate/recover", (void *)h_int_migrate_recover, NULL},
    {"GET", "/v1/node", (void *)h_node, NULL},
    {"GET", "/v1/vms", (void *)h_vms_list, NULL},
    {"POST", "/v1/vms", (void *)h_vm_create, "node"},
    {"POST", "/v1/vms/import", (void *)api_vm_import, "node"},
    {"POST", "/v1/vms/import/cancel", (void *)api_vm_import_cancel, "name"},
    {"GET", "/v1/vms/{name}", (void *)h_vm_get, NULL},
    {"DELETE", "/v1/vms/{name}", (void *)h_vm_delete, "force"},
    {"GET", "/v1/vms/{name}/console", (void *)h_vm_console, "offset max"},
    {"GET", "/v1/vms/{name}/console/ws", (void *)h_vm_console_ws, NULL},
    {"POST", "/v1/vms/{name}/console/input", (void *)h_vm_console_input, NULL},
    {"GET", "/v1/vms/{name}/vnc/ws", (void *)h_vm_vnc_ws, NULL},
    {"GET", "/v1/vms/{name}/history", (void *)h_vm_history, "range"},
    {"POST", "/v1/vms/{name}/migrate", (void *)h_vm_migrate, NULL},
    {"POST", "/v1/vms/{name}/migrate/cancel", (void *)h_vm_migrate_cancel, NULL},
    {"GET", "/v1/migrations", (void *)h_migrations, "vm"},
    {"GET", "/v1/migrations/{id}", (void *)h_migration_get, NULL},
    {"POST", "/v1/migrations/{id}/measurements", (void *)h_migration_measure, NULL},
    {"GET", "/v1/vms/{name}/migration", (void *)h_vm_migration, NULL},
    {"POST", "/v1/vms/{name}/ha", (void *)h_vm_ha, NULL},
    {"POST", "/v1/vms/{name}/storage-move", (void *)h_vm_storage_move, NULL},
    {"POST", "/v1/vms/{name}/storage-move/cancel", (void *)h_vm_storage_move_cancel, NULL},
    {"GET", "/v1/vms/{name}/storage-move", (void *)h_vm_storage_move_get, NULL},
    {"POST", "/v1/vms/{name}/{action}", (void *)h_vm_action, NULL},
    {"POST", "/v1/disks", (void *)h_disk_create, NULL},
    {"POST", "/v1/disks/convert", (void *)h_disk_convert, NULL},
    {"POST", "/v1/disks/grow", (void *)h_disk_grow, NULL},
    {"POST", "/v1/disks/delete", (void *)h_disk_delete, NULL},
    {"GET", "/v1/disks/info", (void *)h_disk_info, "path"},
    {"GET", "/v1/events", (void *)h_events, "since limit follow vm scope"},
    {"GET", "/v1/tasks", (void *)api_tasks_list, "state kind target node limit"},
    {"GET", "/v1/tasks/{id}", (void *)api_task_get, NULL},
    {"POST", "/v1/tasks/{id}/cancel", (void *)api_task_cancel, NULL},
    {"GET", "/metrics", (void *)h_metrics, NULL},
    {"GET", "/v1/alerts", (void *)h_alerts, NULL},
    {"GET", "/v1/csvs", (void *)h_csvs_list, NULL},
    {"POST", "/v1/csvs", (void *)h_csv_add, NULL},
    {"GET", "/v1/csvs/{name}", (void *)h_csv_get, NULL},
    {"GET", "/v1/csvs/{name}/audit", (void *)h_csv_audit, NULL},
    {"DELETE", "/v1/csvs/{name}", (void *)h_csv_remove, NULL},
    {"POST", "/v1/csvs/{name}/move-coordinator", (void *)h_csv_move, NULL},
    {"POST", "/v1/internal/csv/probe", (void *)h_int_csv_probe, NULL},
    {"POST", "/v1/internal/csv/export", (void *)h_int_csv_export, NULL},
    {"POST", "/v1/internal/csv/release", (void *)h_int_csv_release, NULL},
};

void api_handle(struct http_req *req, void *data)
{
    struct api_ctx *ctx = data;
    struct route_match m;
    const char *method = http_req_method(req), *path = http_req_path(req);
    log_debug("api: %s %s", method, path);
    if (ctx->web && web_handle(ctx->web, req)) /* the dashboard's files and login */
        return;
    if (http_req_principal(req) == HTTP_PRINCIPAL_PUBLIC && /* the gate let only those in */
        !(strcmp(method, "GET") == 0 && strcmp(path, WEB_CA_PATH) == 0)) {
        http_reply_errorf(req, FERR_AUTH, "http: log in first");
        return;
    }
    int rc = router_match(routes, ARRAY_SIZE(routes), method, path, &m);
    switch (rc) {
    case ROUTER_OK: {
        const char *keys[16];
        size_t n = http_req_nquery(req);
        if (n > ARRAY_SIZE(keys)) {
            http_reply_errorf(req, FERR_INVALID,
                              "%zu query arguments; no route takes more than %zu", n,
                              ARRAY_SIZE(keys));
            return;
        }
        for (size_t i = 0; i < n; i++)
            keys[i] = http_req_query_key(req, i);
        char why[256];
        if (router_check_query(m.route, keys, n, why, sizeof(why)) < 0) {
            http_reply_errorf(req, FERR_INVALID, "%s", why);
            return;
        }
        ((handler_fn)m.route->handler)(ctx, req, &m);
        return;
    }
    case ROUTER_BAD_METHOD:
        http_reply_errorf(req, FERR_METHOD, "%s is not allowed on %.200s", method, path);
        return;
    case ROUTER_BAD_PATH:
        http_reply_errorf(req, FERR_INVALID, "path %.200s is malformed", path);
        return;
    default:
        http_reply_errorf(req, FERR_NOTFOUND, "no route %s %.200s (see docs/api.md)", method, path);
        return;
    }
}
