/* SPDX-License-Identifier: MIT */
/* Samples this node's VMs into their resource histories (history.h), keeps them in a file
 * across restarts, and hands them from node to node as the VMs move. */
#include "api/history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "host/host.h"
#include "vm/vm.h"
#include "vm/vmhist.h"

struct history {
    uv_timer_t timer;
    struct vmset *vms;
    struct vmhist_set *set;
    struct vmhist node; /* this node: CPUs busy and memory used (no disk or network) */
    struct history_node now;
    struct host_load last;
    bool has_last;
    char path[1100]; /* the file; "" none */
    unsigned ticks;  /* samples since the last save */
    struct cluster *cluster;
    char self[64];
    json_t *ask;   /* names of VMs arrived this tick, to ask the peers about */
    unsigned refs; /* the timer, each question out, a save under way */
    bool saving, closing;
    uv_work_t save;
    char *save_text; /* what the save under way writes */
    size_t save_len;
    int save_rc;
    struct ferr save_err;
};

static void unref(struct history *h);

/* This node's load now, its CPU use since the last sample, and a point of its history. */
static void sample_node(struct history *h)
{
    struct host_load l;
    struct host_info hi = {0};
    struct ferr e = {0};
    char *text = NULL;
    int rc = host_load_read(&l, &e);
    if (rc == 0 && (rc = file_read_all("/proc/meminfo", 1 << 20, &text, NULL, &e)) == 0) {
        rc = host_parse_meminfo(text, &hi);
        free(text);
        if (rc < 0)
            ferr_set(&e, rc, "/proc/meminfo has no readable MemTotal line");
    }
    if (rc < 0) {
        log_debug("history: %s", e.msg);
        return;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* /proc/cpuinfo is big on big hosts: not it */
    h->now.cpus = cpus > 0 ? (unsigned)cpus : 1;
    memcpy(h->now.load, l.load, sizeof(l.load));
    h->now.busy_ratio = h->has_last ? host_busy_ratio(&h->last, &l) : -1;
    h->now.mem_used_bytes = (hi.mem_total_mib - hi.mem_avail_mib) << 20;
    h->now.mem_total_bytes = hi.mem_total_mib << 20;
    h->last = l;
    h->has_last = true;
    struct vmhist_counters c = {.cpu_s = l.busy_s, .memory_bytes = h->now.mem_used_bytes};
    vmhist_sample(&h->node, now_wall_ms() / 1000, &c);
}

/* QEMU's resident memory in bytes (/proc/PID/statm, its second field in pages); 0 unknown. */
static uint64_t rss_bytes(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    unsigned long long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void sample_one(struct vm *vm, void *data)
{
    struct history *h = data;
    struct vmhist *vh = vmhist_set_get(h->set, vm_name(vm), true);
    if (!vh)
        return;
    enum vm_state st = vm_state(vm);
    int pid = vm_pid(vm);
    if ((st != VM_RUNNING && st != VM_PAUSED) || pid <= 0) {
        vmhist_pause(vh); /* an incoming VM is asked about once it runs here */
        return;
    }
    /* Its past is on the node it ran on: asked for once the cluster is there to ask. */
    if (h->cluster && cluster_active(h->cluster) && json_array_size(h->ask) < HISTORY_ASK_MAX &&
        vmhist_set_take_arrived(h->set, vm_name(vm)))
        json_array_append_new(h->ask, json_string(vm_name(vm)));
    struct vm_stats s;
    vm_stats_get(vm, &s);
    struct vmhist_counters c = {.cpu_s = s.cpu_seconds, .memory_bytes = rss_bytes(pid)};
    for (unsigned i = 0; i < s.ndisks; i++) {
        c.disk_read_bytes += s.disks[i].rd_bytes;
        c.disk_write_bytes += s.disks[i].wr_bytes;
    }
    for (unsigned i = 0; i < s.nnics; i++) {
        c.net_rx_bytes += s.nics[i].rx_bytes;
        c.net_tx_bytes += s.nics[i].tx_bytes;
    }
    vmhist_sample(vh, now_wall_ms() / 1000, &c);
}

/* ---- the file ---- */

/* Loads the file; one that is not there is a first start, any other failure is logged and
 * the file set aside as .bad (a later save would overwrite it anyway). */
static void load(struct history *h)
{
    char *text = NULL;
    size_t len = 0;
    struct ferr e = {0};
    int rc = file_read_all(h->path, HISTORY_FILE_MAX, &text, &len, &e);
    if (rc == -ENOENT)
        return;
    if (rc == 0)
        rc = vmhist_file_load(h->set, &h->node, text, len, now_wall_ms() / 1000, &e);
    free(text);
    if (rc == 0) {
        log_info("history: %u VM histories loaded from %s", vmhist_set_count(h->set), h->path);
        return;
    }
    char bad[sizeof(h->path) + 8];
    snprintf(bad, sizeof(bad), "%s.bad", h->path);
    if (rename(h->path, bad) < 0)
        bad[0] = '\0';
    log_warn("history: %s ignored, the graphs start afresh: %s%s%s", h->path, e.msg,
             bad[0] ? "; kept as " : "", bad);
}

static void save_work(uv_work_t *w)
{
    struct history *h = w->data;
    h->save_rc = file_write_atomic(h->path, h->save_text, h->save_len, &h->save_err);
}

static void save_now(struct history *h);

static void save_done(uv_work_t *w, int status)
{
    struct history *h = w->data;
    if (h->save_rc < 0)
        log_warn("history: %s", h->save_err.msg);
    free(h->save_text);
    h->save_text = NULL;
    h->saving = false;
    if (h->closing)
        save_now(h); /* the last samples, written before ferryd ends */
    unref(h);
}

/* The text of the file now, or NULL (logged). */
static char *file_text(struct history *h, size_t *len)
{
    char *text = vmhist_file_text(h->set, &h->node, now_wall_ms() / 1000, len);
    if (!text)
        log_warn("history: %s not written: out of memory", h->path);
    return text;
}

/* Writes the file on the loop (ferryd is ending: nothing else waits). */
static void save_now(struct history *h)
{
    size_t len;
    char *text = h->path[0] ? file_text(h, &len) : NULL;
    struct ferr e = {0};
    if (text && file_write_atomic(h->path, text, len, &e) < 0)
        log_warn("history: %s", e.msg);
    free(text);
}

/* Writes the file in the thread pool (an fsync may take long). */
static void save_async(struct history *h)
{
    if (!h->path[0] || h->saving || !(h->save_text = file_text(h, &h->save_len)))
        return;
    h->save.data = h;
    h->saving = true;
    h->refs++;
    ferr_clear(&h->save_err);
    if (uv_queue_work(h->timer.loop, &h->save, save_work, save_done) < 0) {
        h->saving = false;
        h->refs--;
        free(h->save_text);
        h->save_text = NULL;
    }
}

/* ---- asking the peers about VMs that arrived ---- */

struct ask {
    struct history *h;
    char node[64];
};

/* A peer's histories, merged into ours (they are older: the VM ran there before). */
static void asked(int status, json_t *body, const struct ferr *e, void *data)
{
    struct ask *a = data;
    struct history *h = a->h;
    const json_t *vms = json_object_get(body, "vms");
    if (e) {
        /* A ferryd before 0.2 has no such call: those VMs' graphs start afresh here. */
        log_info("history: %s gave no VM histories (their graphs start afresh here): %s", a->node,
                 e->msg);
    } else if (!json_is_array(vms)) {
        log_info("history: %s answered without \"vms\"", a->node);
    } else if (!h->closing) {
        size_t i;
        json_t *v;
        json_array_foreach(vms, i, v)
        {
            const char *name = json_string_value(json_object_get(v, "name"));
            struct vmhist *vh = name ? vmhist_set_get(h->set, name, false) : NULL;
            struct vmhist got;
            struct ferr fe = {0};
            if (!vh)
                continue; /* not asked about, or gone meanwhile */
            if (vmhist_undump(&got, json_object_get(v, "history"), now_wall_ms() / 1000, &fe) < 0) {
                log_info("history: %s's history of %s ignored: %s", a->node, name, fe.msg);
                continue;
            }
            vmhist_merge(vh, &got);
            log_info("history: %s's past (%u points) from %s", name, got.fine_n + got.coarse_n,
                     a->node);
        }
    }
    json_decref(body);
    free(a);
    unref(h);
}

/* Asks every other node of the cluster about the VMs in h->ask: one of them ran each before
 * (which one, the database does not keep); the others answer with nothing. */
static void ask_peers(struct history *h)
{
    if (!json_array_size(h->ask))
        return;
    json_t *q = json_pack("{s:O}", "names", h->ask);
    char *text = q ? json_dumps(q, JSON_COMPACT) : NULL;
    json_decref(q);
    json_array_clear(h->ask);
    json_t *nodes = text ? cdb_nodes(cluster_db(h->cluster)) : NULL;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = jfield_text(n, "name");
        if (!name[0] || strcmp(name, h->self) == 0 || strcmp(jfield_text(n, "state"), "up") != 0)
            continue;
        struct ask *a = calloc(1, sizeof(*a));
        struct ferr e = {0};
        if (!a)
            break;
        a->h = h;
        snprintf(a->node, sizeof(a->node), "%s", name);
        h->refs++;
        if (cluster_call_within(h->cluster, name, "POST", "/v1/internal/vm-history", text,
                                HISTORY_ASK_MS, asked, a, &e) < 0) {
            log_info("history: cannot ask %s: %s", name, e.msg);
            h->refs--;
            free(a);
        }
    }
    json_decref(nodes);
    free(text);
}

/* Departed VMs that the cluster no longer has (deleted) lose their histories at once: a new
 * VM of the same name starts afresh. */
static bool keep_departed(const char *name, struct vmhist *vh, uint64_t departed_s, void *data)
{
    const struct cdb *db = data;
    json_t *rec = NULL;
    if (!departed_s)
        return true;
    if (cdb_vm_get(db, name, &rec, NULL) == FERR_NOTFOUND)
        return false;
    json_decref(rec);
    return true;
}

static void on_sample(uv_timer_t *t)
{
    struct history *h = t->data;
    uint64_t now_s = now_wall_ms() / 1000;
    vmhist_set_mark(h->set);
    vmset_foreach(h->vms, sample_one, h);
    /* VMs that left this node leave their history behind for a while, for their new node */
    vmhist_set_sweep(h->set, now_s, HISTORY_DEPARTED_KEEP_S);
    if (h->cluster && cluster_active(h->cluster)) {
        vmhist_set_each(h->set, keep_departed, (void *)cluster_db(h->cluster));
        ask_peers(h);
    }
    sample_node(h);
    if (++h->ticks >= HISTORY_SAVE_S / VMHIST_STEP_S) {
        h->ticks = 0;
        save_async(h);
    }
}

int history_new(uv_loop_t *loop, struct vmset *vms, const char *state_dir, struct history **out,
                struct ferr *e)
{
    struct history *h = calloc(1, sizeof(*h));
    if (!h || vmhist_set_new(&h->set) < 0 || !(h->ask = json_array())) {
        if (h)
            vmhist_set_free(h->set);
        free(h);
        return ferr_set(e, -ENOMEM, "history: out of memory");
    }
    h->vms = vms;
    vmhist_init(&h->node);
    if (state_dir && fmt_path(h->path, sizeof(h->path), "%s/%s", state_dir, HISTORY_FILE) < 0) {
        json_decref(h->ask);
        vmhist_set_free(h->set);
        free(h);
        return ferr_set(e, -ENAMETOOLONG, "history: state dir path too long");
    }
    if (h->path[0])
        load(h);
    h->now.busy_ratio = -1;
    sample_node(h); /* the first CPU use comes 10 s later, from the difference */
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->refs = 1;
    uv_timer_start(&h->timer, on_sample, VMHIST_STEP_S * 1000, VMHIST_STEP_S * 1000);
    *out = h;
    return 0;
}

void history_set_cluster(struct history *h, struct cluster *c, const char *self)
{
    if (!h)
        return;
    h->cluster = c;
    snprintf(h->self, sizeof(h->self), "%s", self ? self : "");
}

static void unref(struct history *h)
{
    if (--h->refs)
        return;
    json_decref(h->ask);
    vmhist_set_free(h->set);
    free(h);
}

static void on_closed(uv_handle_t *t)
{
    unref(t->data);
}

void history_close(struct history *h)
{
    if (!h)
        return;
    h->closing = true;
    h->cluster = NULL; /* it closes after us */
    if (!h->saving)
        save_now(h); /* else save_done writes it once more */
    uv_close((uv_handle_t *)&h->timer, on_closed);
}

int history_for_peer(struct history *h, const json_t *body, json_t **out, struct ferr *e)
{
    static const char *const fields[] = {"names", NULL};
    const json_t *names = json_object_get(body, "names");
    const char *bad = jfield_unknown(body, fields);
    if (bad)
        return ferr_set(e, FERR_INVALID, "%.64s: unknown field; accepted: {\"names\": [VM, ...]}",
                        bad);
    if (!json_is_array(names) || json_array_size(names) > HISTORY_ASK_MAX)
        return ferr_set(e, FERR_INVALID, "names: expected an array of at most %d VM names",
                        HISTORY_ASK_MAX);
    json_t *vms = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        const char *name;
        if (jfield_str(n, "names[]", &name, e) < 0) {
            json_decref(vms);
            return FERR_INVALID;
        }
        struct vmhist *vh = h ? vmhist_set_get(h->set, name, false) : NULL;
        json_t *d = vh ? vmhist_dump(vh) : NULL;
        if (d)
            json_array_append_new(vms, json_pack("{s:s, s:o}", "name", name, "history", d));
    }
    *out = json_pack("{s:o}", "vms", vms);
    return *out ? 0 : ferr_set(e, -ENOMEM, "history: out of memory");
}

json_t *history_json(struct history *h, const char *name, bool day)
{
    struct vmhist *vh = h ? vmhist_set_get(h->set, name, false) : NULL;
    if (vh)
        return vmhist_json(vh, day, now_wall_ms() / 1000);
    struct vmhist empty;
    vmhist_init(&empty);
    return vmhist_json(&empty, day, now_wall_ms() / 1000);
}

json_t *history_node_json(struct history *h, bool day)
{
    struct vmhist empty;
    vmhist_init(&empty);
    return vmhist_json(h ? &h->node : &empty, day, now_wall_ms() / 1000);
}

void history_node_now(const struct history *h, struct history_node *out)
{
    if (h) {
        *out = h->now;
    } else {
        memset(out, 0, sizeof(*out));
        out->busy_ratio = -1;
    }
}

void history_node_info(const struct history *h, json_t *obj)
{
    struct history_node hn;
    history_node_now(h, &hn);
    if (!hn.cpus)
        return;
    json_t *cpu = json_pack("{s:i, s:f, s:f, s:f}", "count", (int)hn.cpus, "load1", hn.load[0],
                            "load5", hn.load[1], "load15", hn.load[2]);
    if (cpu && hn.busy_ratio >= 0)
        json_object_set_new(cpu, "busy_ratio", json_real(hn.busy_ratio));
    json_object_set_new(obj, "cpu", cpu);
    json_object_set_new(obj, "host_memory",
                        json_pack("{s:I, s:I}", "used_bytes", (json_int_t)hn.mem_used_bytes,
                                  "total_bytes", (json_int_t)hn.mem_total_bytes));
}
