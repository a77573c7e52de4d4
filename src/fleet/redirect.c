/* SPDX-License-Identifier: MIT */
/* Redirected I/O (redirect.h): relays on VM hosts, storage daemons on coordinators. */
#include "fleet/redirect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/audit.h"
#include "storage/nbdrelay.h"
#include "storage/storaged.h"

#define RESOLVE_TIMEOUT_MS 3000 /* a coordinator asked for an export answers within this */
#define RELEASED_MS 15000       /* a released volume is not served again at that epoch */
#define MAX_DAEMONS 64          /* ports nbd_port .. nbd_port + 63 */

struct relay_ent {
    struct relay_ent *next;
    struct redirect *r;
    char vm[64];
    unsigned disk;
    char path[1024]; /* the disk's file */
    char volume[64]; /* the volume and file inside it, found when last asked */
    char file[1024];
    struct nbd_relay *relay;
    char coord[64]; /* the coordinator last asked (empty: none yet) */
    long long epoch;
    uint64_t writer;   /* the VM's writer epoch its QEMU started with */
    bool writer_known; /* false: an adopted QEMU's, read once the cluster is up */
};

struct waiter {
    struct waiter *next;
    reply_cb cb;
    void *data;
};

struct daemon_ent {
    struct daemon_ent *next;
    struct redirect *r;
    char volume[64];
    char dir[CDB_CSV_PATH_MAX + 1]; /* the volume's path: its audit */
    long long epoch;
    json_t *writers; /* export name -> {"file", "vm", "epoch", "nodes"}: what the audit opened */
    unsigned port;
    struct storaged *sd;
    bool stopping;
    struct waiter *waiters; /* answered once the daemon is gone */
};

struct redirect {
    struct redirect_env env;
    char node_name[64], run_dir[512], qsd[256], nbd_host[64];
    struct qemu_user qemu_user; /* the daemons' */
    unsigned refs;
    bool stopped;
    struct relay_ent *relays;
    struct daemon_ent *daemons;
    json_t *released; /* volume -> {"epoch", "until_ms"} */
    json_t *asked;    /* file path -> when (monotonic ms) a client last asked for its export */
    json_t *audit_q;  /* [{"dir", "rec"}]: audit records to write, oldest first (audit_next) */
    bool audit_busy;  /* the head is being written in the thread pool */
};

static struct redirect *rref(struct redirect *r)
{
    r->refs++;
    return r;
}

static void runref(struct redirect *r)
{
    if (--r->refs > 0)
        return;
    json_decref(r->released);
    json_decref(r->asked);
    json_decref(r->audit_q);
    free(r);
}

int redirect_new(const struct redirect_env *env, struct redirect **out, struct ferr *e)
{
    struct redirect *r = calloc(1, sizeof(*r));
    if (!r || !(r->released = json_object()) || !(r->asked = json_object()) ||
        !(r->audit_q = json_array())) {
        if (r) {
            json_decref(r->released);
            json_decref(r->asked);
        }
        free(r);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    r->env = *env;
    snprintf(r->node_name, sizeof(r->node_name), "%s", env->node_name);
    snprintf(r->run_dir, sizeof(r->run_dir), "%s", env->run_dir);
    snprintf(r->qsd, sizeof(r->qsd), "%s", env->qsd_binary);
    snprintf(r->nbd_host, sizeof(r->nbd_host), "%s", env->nbd_host ? env->nbd_host : "");
    if (env->qemu_user)
        r->qemu_user = *env->qemu_user;
    r->refs = 1;
    *out = r;
    return 0;
}

static bool active(const struct redirect *r)
{
    return r->env.cluster && cluster_active(r->env.cluster);
}

/* The volume record of name from this node's copy of the database; NULL if none. New JSON. */
static json_t *volume_rec(struct redirect *r, const char *name)
{
    json_t *rec = NULL;
    struct ferr e;
    if (!active(r) || cdb_csv_get(cluster_db(r->env.cluster), name, &rec, &e) < 0)
        return NULL;
    return rec;
}

/* ---- the coordinator's side: daemons and exports ---- */

static void daemon_unlink(struct daemon_ent *d)
{
    for (struct daemon_ent **p = &d->r->daemons; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            return;
        }
}

/* Audit records are written in the thread pool (a volume on a hung file server must not stop
 * the loop), one at a time, so the file keeps their order. */
struct audit_job {
    uv_work_t w;
    struct redirect *r;
    const json_t *item; /* the queue's head, read only by the worker */
    int rc;
    struct ferr e;
};

static void audit_work(uv_work_t *w)
{
    struct audit_job *j = w->data;
    j->rc = audit_append(jfield_text(j->item, "dir"), json_object_get(j->item, "rec"), &j->e);
}

static void audit_next(struct redirect *r);

static void audit_done(uv_work_t *w, int status)
{
    (void)status;
    struct audit_job *j = w->data;
    struct redirect *r = j->r;
    if (j->rc < 0)
        log_warn("%s", j->e.msg);
    json_array_remove(r->audit_q, 0);
    r->audit_busy = false;
    free(j);
    audit_next(r);
    runref(r);
}

static void audit_next(struct redirect *r)
{
    if (r->audit_busy || json_array_size(r->audit_q) == 0)
        return;
    struct audit_job *j = calloc(1, sizeof(*j));
    if (!j) {
        log_warn("audit: out of memory: a record is lost");
        json_array_remove(r->audit_q, 0);
        return;
    }
    j->w.data = j;
    j->r = rref(r);
    j->item = json_array_get(r->audit_q, 0);
    r->audit_busy = true;
    if (uv_queue_work(r->env.loop, &j->w, audit_work, audit_done) < 0) {
        r->audit_busy = false;
        json_array_remove(r->audit_q, 0);
        runref(r);
        free(j);
        log_warn("audit: the thread pool refused a record: it is lost");
    }
}

/* The audit of d's volume gets rec (borrowed) with the coordinator's fields and the time. */
static void audit_add(struct daemon_ent *d, json_t *rec)
{
    json_object_set_new(rec, "coordinator", json_string(d->r->node_name));
    json_object_set_new(rec, "coord_epoch", json_integer(d->epoch));
    json_object_set_new(rec, "time_ms", json_integer((json_int_t)now_wall_ms()));
    json_t *item = json_pack("{ss sO}", "dir", d->dir, "rec", rec);
    if (!item || json_array_append_new(d->r->audit_q, item) < 0) {
        log_warn("volume %s: audit: out of memory: a record is lost", d->volume);
        return;
    }
    audit_next(d->r);
}

/* The export name's writer can write no more: its audit record closes. */
static void writer_closed(struct daemon_ent *d, const char *name, const char *why)
{
    json_t *w = json_object_get(d->writers, name);
    if (!w)
        return;
    json_t *rec =
        json_pack("{ss sO sO sO ss}", "op", "close", "file", json_object_get(w, "file"), "vm",
                  json_object_get(w, "vm"), "epoch", json_object_get(w, "epoch"), "why", why);
    if (rec)
        audit_add(d, rec);
    json_decref(rec);
    json_object_del(d->writers, name);
}

/* Every export of d ended with its daemon. */
static void writers_closed(struct daemon_ent *d, const char *why)
{
    const char *name;
    json_t *w, *tmp;
    json_object_foreach_safe(d->writers, tmp, name, w)
    {
        writer_closed(d, name, why);
    }
}

static void daemon_free(struct daemon_ent *d)
{
    json_decref(d->writers);
    free(d);
}

static void daemon_gone(struct storaged *sd, const char *why, void *data)
{
    (void)sd;
    struct daemon_ent *d = data;
    struct redirect *r = d->r;
    daemon_unlink(d);
    writers_closed(d, "the storage daemon ended");
    cluster_event_add(r->env.cluster, "csv.storage_daemon_lost", NULL,
                      "volume %s: the storage daemon on %s ended (%s); it is started again when "
                      "its clients reconnect",
                      d->volume, r->node_name, why);
    daemon_free(d);
    runref(r);
}

static void daemon_stopped(void *data)
{
    struct daemon_ent *d = data;
    struct redirect *r = d->r;
    daemon_unlink(d);
    writers_closed(d, "the storage daemon ended");
    while (d->waiters) {
        struct waiter *w = d->waiters;
        d->waiters = w->next;
        w->cb(200, json_pack("{ss sb}", "volume", d->volume, "released", 1), NULL, w->data);
        free(w);
    }
    daemon_free(d);
    runref(r);
}

static void daemon_stop(struct daemon_ent *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("volume %s: the storage daemon on this node ends: %s", d->volume, why);
    storaged_stop(d->sd, daemon_stopped, d);
}

static struct daemon_ent *daemon_find(struct redirect *r, const char *volume)
{
    for (struct daemon_ent *d = r->daemons; d; d = d->next)
        if (strcmp(d->volume, volume) == 0)
            return d;
    return NULL;
}

/* RUN/.csvd, the parent of the daemons' directories: root's, and passable by their user like
 * RUN itself (its group, 0710: no listing), also when an older ferryd made it 0700. */
static int csvd_ready(struct redirect *r, char *dir, size_t size, struct ferr *e)
{
    snprintf(dir, size, "%s/.csvd", r->run_dir);
    int rc = mkdir_p(dir, 0700, e);
    if (rc == 0 && r->qemu_user.drop &&
        (chown(dir, (uid_t)-1, r->qemu_user.gid) < 0 || chmod(dir, 0710) < 0))
        rc = ferr_set(e, -errno, "%s: %s", dir, strerror(errno));
    return rc;
}

static int daemon_get(struct redirect *r, const char *volume, const char *vol_dir, long long epoch,
                      struct daemon_ent **out, struct ferr *e)
{
    struct daemon_ent *d = daemon_find(r, volume);
    if (d && d->stopping)
        return ferr_set(e, FERR_UNAVAIL,
                        "volume %s: its storage daemon on %s is stopping; try again", volume,
                        r->node_name);
    if (d) {
        *out = d;
        return 0;
    }
    bool used[MAX_DAEMONS] = {false};
    for (struct daemon_ent *x = r->daemons; x; x = x->next)
        used[x->port - r->env.nbd_port] = true;
    unsigned slot = 0;
    while (slot < MAX_DAEMONS && used[slot])
        slot++;
    if (slot == MAX_DAEMONS)
        return ferr_set(e, FERR_LIMIT, "%s coordinates %d volumes with redirected disks already",
                        r->node_name, MAX_DAEMONS);
    char dir[700];
    int rc = csvd_ready(r, dir, sizeof(dir), e);
    if (rc < 0)
        return rc;
    if (!(d = calloc(1, sizeof(*d))) || !(d->writers = json_object())) {
        free(d);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    d->r = rref(r);
    snprintf(d->volume, sizeof(d->volume), "%s", volume);
    snprintf(d->dir, sizeof(d->dir), "%s", vol_dir);
    d->epoch = epoch;
    d->port = r->env.nbd_port + slot;
    size_t len = strlen(dir);
    snprintf(dir + len, sizeof(dir) - len, "/%s", volume);
    struct storaged_cfg cfg = {.binary = r->qsd,
                               .dir = dir,
                               .host = r->nbd_host,
                               .port = d->port,
                               .label = volume,
                               .user = &r->qemu_user,
                               .on_gone = daemon_gone,
                               .data = d};
    rc = storaged_start(r->env.loop, &cfg, &d->sd, e);
    if (rc < 0) {
        runref(r);
        daemon_free(d);
        return rc;
    }
    d->next = r->daemons;
    r->daemons = d;
    log_info("volume %s: storage daemon started for epoch %lld, NBD on %s:%u", volume, epoch,
             r->nbd_host, d->port);
    /* Found by the e2e test of a leader (and coordinator) that dies mid-failover: without it the
     * audit counted an export of the dead daemon as open after the same coordinator restarted. */
    json_t *rec = json_pack("{ss ss}", "op", "daemon", "why",
                            "storage daemon started: the exports of this coordinator's earlier "
                            "daemons ended with them");
    if (rec)
        audit_add(d, rec);
    json_decref(rec);
    *out = d;
    return 0;
}

/* A file name inside a volume: relative, no "." or ".." part, not the volume's own files. */
static bool file_ok(const char *f)
{
    size_t n = strlen(f);
    if (n == 0 || n >= 1024 || f[0] == '/' || strncmp(f, ".ferry-csv", 10) == 0)
        return false;
    for (const char *p = f; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len + (slash ? 1 : 0);
        if (slash && !*p)
            return false;
    }
    return true;
}

struct serve {
    struct redirect *r;
    reply_cb cb;
    void *data;
    char volume[64], vm[64], node[64];
    char file[1024], path[2048], name[1200];
    unsigned port;
    long long epoch;
    uint64_t writer;
};

/* The export name of vm's disk file at writer epoch writer: the epoch is in the name, so a
 * QEMU of an older epoch asks for a name nobody serves any more. Epoch 0 (a cluster that
 * does not run command version 5 everywhere yet) is the file's name alone. */
static int export_name(const char *file, const char *vm, uint64_t writer, char *out, size_t size)
{
    int n = writer ? snprintf(out, size, "%s@%s.%llu", file, vm, (unsigned long long)writer)
                   : snprintf(out, size, "%s", file);
    return n < 0 || (size_t)n >= size ? FERR_INVALID : 0;
}

static void served(int status, const struct ferr *e, void *data)
{
    struct serve *s = data;
    struct daemon_ent *d = daemon_find(s->r, s->volume);
    if (status >= 0 && (!d || d->stopping || d->epoch != s->epoch)) {
        struct ferr e2;
        ferr_set(&e2, FERR_UNAVAIL, "volume %s: its storage daemon on %s ended; try again",
                 s->volume, s->r->node_name);
        s->cb(0, NULL, &e2, s->data);
    } else if (status < 0) {
        s->cb(0, NULL, e, s->data);
    } else {
        /* asked now: the export stays while a client may still come (close_unused) */
        json_object_set_new(s->r->asked, s->path, json_integer((json_int_t)now_mono_ms()));
        json_t *w = json_object_get(d->writers, s->name);
        if (!w) {
            w = json_pack("{ss ss sI s[]}", "file", s->file, "vm", s->vm, "epoch",
                          (json_int_t)s->writer, "nodes");
            json_object_set_new(d->writers, s->name, w);
        }
        json_t *nodes = json_object_get(w, "nodes");
        bool known = false;
        size_t i;
        json_t *x;
        json_array_foreach(nodes, i, x) known |= strcmp(json_string_value(x), s->node) == 0;
        if (nodes && !known) {
            json_array_append_new(nodes, json_string(s->node));
            json_t *rec = json_pack("{ss ss ss sI ss}", "op", "open", "file", s->file, "vm", s->vm,
                                    "epoch", (json_int_t)s->writer, "node", s->node);
            if (rec)
                audit_add(d, rec);
            json_decref(rec);
        }
        char addr[128];
        snprintf(addr, sizeof(addr), "%s:%u", s->r->nbd_host, s->port);
        s->cb(200,
              json_pack("{ss ss sI sI ss}", "nbd", addr, "export", s->name, "epoch",
                        (json_int_t)s->epoch, "writer_epoch", (json_int_t)s->writer, "coordinator",
                        s->r->node_name),
              NULL, s->data);
    }
    runref(s->r);
    free(s);
}

struct fence {
    struct redirect *r;
    char volume[64], name[1200];
    long long epoch;
    char why[160];
    struct waiter *then; /* answered once the export is gone (may be NULL) */
};

static void fenced(int status, const struct ferr *e, void *data)
{
    struct fence *f = data;
    struct daemon_ent *d = daemon_find(f->r, f->volume);
    if (status < 0)
        log_warn("volume %s: the export %s did not close: %s", f->volume, f->name, e->msg);
    else if (d && d->epoch == f->epoch)
        writer_closed(d, f->name, f->why);
    if (f->then) {
        if (status < 0)
            f->then->cb(0, NULL, e, f->then->data);
        else
            f->then->cb(200, json_pack("{sb}", "closed", 1), NULL, f->then->data);
        free(f->then);
    }
    runref(f->r);
    free(f);
}

static int close_export_then(struct daemon_ent *d, const char *name, const char *why,
                             struct waiter *then, struct ferr *e);

/* Ends d's export name (its clients' connections drop); the audit closes it once it is gone. */
static int close_export(struct daemon_ent *d, const char *name, const char *why, struct ferr *e)
{
    return close_export_then(d, name, why, NULL, e);
}

/* close_export, then answers then (stolen, may be NULL) once the export is gone. */
static int close_export_then(struct daemon_ent *d, const char *name, const char *why,
                             struct waiter *then, struct ferr *e)
{
    struct fence *f = calloc(1, sizeof(*f));
    if (!f) {
        free(then);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    f->then = then;
    f->r = rref(d->r);
    f->epoch = d->epoch;
    snprintf(f->volume, sizeof(f->volume), "%s", d->volume);
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->why, sizeof(f->why), "%s", why);
    int rc = storaged_unexport(d->sd, name, fenced, f, e);
    if (rc < 0) {
        runref(f->r);
        free(f->then);
        free(f);
    }
    return rc;
}

/* The VM's record says it has path as a disk and is at writer epoch *writer (0 with the
 * error otherwise). */
static int writer_of(struct redirect *r, const char *vm, const char *path, uint64_t *writer,
                     struct ferr *e)
{
    json_t *rec = NULL;
    if (cdb_vm_get(cluster_db(r->env.cluster), vm, &rec, NULL) < 0)
        return ferr_set(e, FERR_UNAVAIL, "%s has no record of VM %s (yet); try again", r->node_name,
                        vm);
    bool has = false;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(json_object_get(rec, "spec"), "disks"), i, d)
    {
        has |= strcmp(jfield_text(d, "path"), path) == 0;
    }
    *writer = (uint64_t)json_integer_value(json_object_get(rec, "epoch"));
    json_decref(rec);
    if (!has)
        return ferr_set(e, FERR_STATE, "VM %s has no disk %s", vm, path);
    return 0;
}

/* The exports of d other than name of the file at path: another VM's refuses this one; an
 * older writer epoch of the same VM is closed first (its QEMU is fenced off the disk). */
static int fence_others(struct daemon_ent *d, const struct serve *s, struct ferr *e)
{
    json_t *list = storaged_exports(d->sd);
    size_t i;
    json_t *x;
    int rc = 0;
    json_array_foreach(list, i, x)
    {
        const char *name = jfield_text(x, "name");
        if (strcmp(jfield_text(x, "path"), s->path) != 0 || strcmp(name, s->name) == 0)
            continue;
        json_t *w = json_object_get(d->writers, name);
        const char *other = w ? jfield_text(w, "vm") : "";
        uint64_t other_epoch = (uint64_t)json_integer_value(json_object_get(w, "epoch"));
        if (w && strcmp(other, s->vm) != 0) {
            rc = ferr_set(e, FERR_STATE, "%s is VM %s's disk (writer epoch %llu) now, not %s's",
                          s->file, other, (unsigned long long)other_epoch, s->vm);
            break;
        }
        char why[160];
        snprintf(why, sizeof(why), "fenced: %s started at writer epoch %llu", s->vm,
                 (unsigned long long)s->writer);
        log_info("volume %s: %s closes for %s's writer epoch %llu", d->volume, name, s->vm,
                 (unsigned long long)s->writer);
        if ((rc = close_export(d, name, why, e)) < 0)
            break;
    }
    json_decref(list);
    return rc;
}

/* Whether this node may serve s now: it coordinates the volume (at epoch, with quorum, not
 * released: rel), and s's VM has the disk at s's writer epoch. */
static int may_serve(struct redirect *r, const struct serve *s, const char *coord, long long epoch,
                     const json_t *rel, struct ferr *e)
{
    uint64_t now_writer = 0;
    int rc;
    if (strcmp(coord, r->node_name) != 0)
        return ferr_set(e, FERR_STATE, "%s does not coordinate volume %s: %s does (epoch %lld)",
                        r->node_name, s->volume, coord, epoch);
    if (!r->nbd_host[0])
        return ferr_set(e, FERR_STATE, "%s has no address for NBD (ferryd --listen)", r->node_name);
    if (!cluster_quorum(r->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "%s has no quorum: it may not be the coordinator of volume %s any more",
                        r->node_name, s->volume);
    if (rel && json_integer_value(json_object_get(rel, "epoch")) >= epoch &&
        now_mono_ms() < (uint64_t)json_integer_value(json_object_get(rel, "until_ms")))
        return ferr_set(e, FERR_STATE,
                        "%s released volume %s (epoch %lld): it moves to another node",
                        r->node_name, s->volume, epoch);
    if ((rc = writer_of(r, s->vm, s->path, &now_writer, e)) < 0)
        return rc;
    if (s->writer < now_writer)
        return ferr_set(e, FERR_STATE,
                        "fenced: VM %s's writer epoch is %llu, this QEMU's %llu is older (it "
                        "started before the VM was started again elsewhere)",
                        s->vm, (unsigned long long)now_writer, (unsigned long long)s->writer);
    if (s->writer > now_writer)
        return ferr_set(e, FERR_UNAVAIL,
                        "%s has not applied VM %s's writer epoch %llu yet (it has %llu); try "
                        "again",
                        r->node_name, s->vm, (unsigned long long)s->writer,
                        (unsigned long long)now_writer);
    return 0;
}

static void serve(struct redirect *r, const char *volume, const char *file, const char *vm,
                  const char *node, uint64_t writer, reply_cb cb, void *data)
{
    if (r->stopped) {
        reply_err(cb, data, FERR_UNAVAIL, "%s is shutting down", r->node_name);
        return;
    }
    if (!file_ok(file)) {
        reply_err(cb, data, FERR_INVALID,
                  "file: \"%s\" is not a file name inside a volume (relative, no . or .. parts)",
                  file);
        return;
    }
    json_t *rec = volume_rec(r, volume);
    if (!rec) {
        reply_err(cb, data, FERR_NOTFOUND, "no shared volume named \"%s\" (ferry csv list)",
                  volume);
        return;
    }
    const char *coord = jfield_text(rec, "coordinator");
    long long epoch = json_integer_value(json_object_get(rec, "epoch"));
    struct serve *s = calloc(1, sizeof(*s));
    struct ferr e = {0};
    int rc = s ? 0 : ferr_set(&e, -ENOMEM, "out of memory");
    if (rc == 0) {
        snprintf(s->volume, sizeof(s->volume), "%s", volume);
        snprintf(s->vm, sizeof(s->vm), "%s", vm);
        snprintf(s->node, sizeof(s->node), "%s", node);
        snprintf(s->file, sizeof(s->file), "%s", file);
        snprintf(s->path, sizeof(s->path), "%s/%s", jfield_text(rec, "path"), file);
        s->writer = writer;
        s->epoch = epoch;
        if (export_name(file, vm, writer, s->name, sizeof(s->name)) < 0)
            rc = ferr_set(&e, FERR_INVALID, "file: too long for an export name");
    }
    if (rc == 0)
        rc = may_serve(r, s, coord, epoch, json_object_get(r->released, volume), &e);
    struct daemon_ent *d = NULL;
    if (rc == 0)
        rc = daemon_get(r, volume, jfield_text(rec, "path"), epoch, &d, &e);
    json_decref(rec);
    if (rc == 0)
        rc = fence_others(d, s, &e);
    if (rc < 0) {
        free(s);
        cb(0, NULL, &e, data);
        return;
    }
    s->r = rref(r);
    s->cb = cb;
    s->data = data;
    s->port = d->port;
    if ((rc = storaged_export(d->sd, s->name, s->path, served, s, &e)) < 0)
        served(rc, &e, s);
}

void redirect_on_export(struct redirect *r, const json_t *body, reply_cb cb, void *data)
{
    const char *volume = json_string_value(json_object_get(body, "volume"));
    const char *file = json_string_value(json_object_get(body, "file"));
    const char *vm = json_string_value(json_object_get(body, "vm"));
    const char *node = json_string_value(json_object_get(body, "node"));
    json_t *writer = json_object_get(body, "writer_epoch"); /* absent from older nodes: 0 */
    if (!volume || !name_valid(volume, 63) || !file || !vm || !name_valid(vm, 63) || !node ||
        !name_valid(node, 63) ||
        (writer && (!json_is_integer(writer) || json_integer_value(writer) < 0))) {
        reply_err(cb, data, FERR_INVALID,
                  "csv export: expected {\"volume\", \"file\", \"vm\", \"node\", "
                  "\"writer_epoch\": N >= 0} with valid names");
        return;
    }
    log_debug("csv %s: %s on %s asks for %s", volume, vm, node, file);
    serve(r, volume, file, vm, node, (uint64_t)json_integer_value(writer), cb, data);
}

void redirect_release(struct redirect *r, const char *volume, long long epoch, reply_cb cb,
                      void *data)
{
    json_object_set_new(r->released, volume,
                        json_pack("{sI sI}", "epoch", (json_int_t)epoch, "until_ms",
                                  (json_int_t)(now_mono_ms() + RELEASED_MS)));
    struct daemon_ent *d = daemon_find(r, volume);
    if (!d) {
        cb(200, json_pack("{ss sb}", "volume", volume, "released", 1), NULL, data);
        return;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    w->cb = cb;
    w->data = data;
    w->next = d->waiters;
    d->waiters = w;
    daemon_stop(d, "the volume moves to another coordinator");
}

void redirect_on_release(struct redirect *r, const json_t *body, reply_cb cb, void *data)
{
    const char *volume = json_string_value(json_object_get(body, "volume"));
    json_t *epoch = json_object_get(body, "epoch");
    if (!volume || !name_valid(volume, 63) || !json_is_integer(epoch)) {
        reply_err(cb, data, FERR_INVALID, "csv release: expected {\"volume\", \"epoch\": N}");
        return;
    }
    redirect_release(r, volume, json_integer_value(epoch), cb, data);
}

/* ---- the VM host's side: relays ---- */

struct resolve {
    struct redirect *r;
    void *token;
};

static void resolve_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    struct resolve *rs = data;
    const char *nbd = json_string_value(json_object_get(body, "nbd"));
    if (e || !nbd)
        nbd_relay_resolved(rs->token, NULL, e ? e->msg : "the coordinator named no NBD server");
    else
        nbd_relay_resolved(rs->token, nbd, NULL);
    json_decref(body);
    runref(rs->r);
    free(rs);
}

/* The volume whose directory holds path, and the file's name inside it: its record (new
 * JSON) or NULL. */
static json_t *volume_of(struct redirect *r, const char *path, const char **file)
{
    json_t *rec = active(r) ? cdb_csv_holding(cluster_db(r->env.cluster), path) : NULL;
    if (rec)
        *file = path + strlen(jfield_text(rec, "path")) + 1;
    return rec;
}

static void resolve_fn(void *data, void *token)
{
    struct relay_ent *ent = data;
    struct redirect *r = ent->r;
    const char *file = NULL;
    json_t *rec = volume_of(r, ent->path, &file);
    if (!rec) {
        nbd_relay_resolved(token, NULL,
                           active(r) ? "the disk is on no shared volume of the database"
                                     : "this node is not in its cluster (yet)");
        return;
    }
    snprintf(ent->volume, sizeof(ent->volume), "%s", jfield_text(rec, "name"));
    snprintf(ent->file, sizeof(ent->file), "%s", file);
    if (!ent->writer_known) { /* its QEMU's export name has it; a newer one is refused there */
        ent->writer = cdb_vm_epoch(cluster_db(r->env.cluster), ent->vm);
        ent->writer_known = true;
    }
    snprintf(ent->coord, sizeof(ent->coord), "%s", jfield_text(rec, "coordinator"));
    ent->epoch = json_integer_value(json_object_get(rec, "epoch"));
    json_decref(rec);
    struct resolve *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        nbd_relay_resolved(token, NULL, "out of memory");
        return;
    }
    rs->r = rref(r);
    rs->token = token;
    if (strcmp(ent->coord, r->node_name) == 0) {
        serve(r, ent->volume, ent->file, ent->vm, r->node_name, ent->writer, resolve_answered, rs);
        return;
    }
    json_t *b = json_pack("{ss ss ss ss sI}", "volume", ent->volume, "file", ent->file, "vm",
                          ent->vm, "node", r->node_name, "writer_epoch", (json_int_t)ent->writer);
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    struct ferr e = {0};
    int rc =
        text ? cluster_call_within(r->env.cluster, ent->coord, "POST", "/v1/internal/csv/export",
                                   text, RESOLVE_TIMEOUT_MS, resolve_answered, rs, &e)
             : ferr_set(&e, -ENOMEM, "out of memory");
    free(text);
    if (rc < 0)
        resolve_answered(0, NULL, &e, rs);
}

int redirect_disk(void *data, const char *vm, unsigned disk, const char *path, const char *sock,
                  bool adopted, char *export, size_t export_size, struct ferr *e)
{
    struct redirect *r = data;
    if (r->stopped)
        return 0;
    const char *file = NULL;
    json_t *rec = volume_of(r, path, &file);
    const char *volume = rec ? jfield_text(rec, "name") : NULL;
    int rc = 0;
    if (!volume && !adopted)
        goto out;
    if (volume && (strlen(file) >= export_size || !file_ok(file))) {
        rc = ferr_set(e, FERR_INVALID, "%s is not a file name inside volume %s", path, volume);
        goto out;
    }
    redirect_undisk(r, vm, disk); /* a relay left from a QEMU before this one */
    struct relay_ent *ent = calloc(1, sizeof(*ent));
    if (!ent) {
        rc = ferr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    ent->r = r;
    snprintf(ent->vm, sizeof(ent->vm), "%s", vm);
    ent->disk = disk;
    snprintf(ent->path, sizeof(ent->path), "%s", path);
    snprintf(ent->volume, sizeof(ent->volume), "%s", volume ? volume : "");
    snprintf(ent->file, sizeof(ent->file), "%s", file ? file : "");
    /* The writer epoch the VM starts with (fleet_start raised it and this node applied it);
     * an adopted QEMU's is the one it started with unless the VM started again since, and
     * then the coordinator refuses it either way. */
    ent->writer = active(r) ? cdb_vm_epoch(cluster_db(r->env.cluster), vm) : 0;
    ent->writer_known = active(r);
    if ((rc = nbd_relay_open(r->env.loop, sock, resolve_fn, ent, &ent->relay, e)) < 0) {
        free(ent);
        goto out;
    }
    ent->next = r->relays;
    r->relays = ent;
    if (file && export_name(file, vm, ent->writer, export, export_size) < 0) {
        redirect_undisk(r, vm, disk);
        rc = ferr_set(e, FERR_INVALID, "%s: too long for an NBD export name", path);
        goto out;
    }
    log_info("vm %s: disks[%u] is redirected: volume %s's coordinator serves %s over NBD (writer "
             "epoch %llu)",
             vm, disk, volume ? volume : "(known once the cluster is up)", path,
             (unsigned long long)ent->writer);
    rc = 1;
out:
    json_decref(rec);
    return rc;
}

void redirect_undisk(void *data, const char *vm, unsigned disk)
{
    struct redirect *r = data;
    for (struct relay_ent **p = &r->relays; *p; p = &(*p)->next) {
        struct relay_ent *ent = *p;
        if (strcmp(ent->vm, vm) == 0 && ent->disk == disk) {
            *p = ent->next;
            nbd_relay_close(ent->relay);
            free(ent);
            return;
        }
    }
}

/* ---- upkeep ---- */

#define UNUSED_MS 10000 /* an export no VM runs on and nobody asked for this long is closed */

/* Whether a VM whose state has a QEMU (not stopped or failed) has path as a disk. */
static bool path_in_use(const json_t *vms, const char *path)
{
    size_t i, k;
    json_t *vm, *d;
    json_array_foreach(vms, i, vm)
    {
        const char *st = jfield_text(vm, "state");
        if (strcmp(st, "stopped") == 0 || strcmp(st, "failed") == 0)
            continue;
        json_array_foreach(json_object_get(json_object_get(vm, "spec"), "disks"), k, d)
        {
            if (strcmp(jfield_text(d, "path"), path) == 0)
                return true;
        }
    }
    return false;
}

/* The coordinator closes the exports no VM uses any more, so that the file is free for
 * qemu-img (an offline move, a conversion) and its lock goes. */
static void close_unused(struct redirect *r)
{
    if (!r->daemons)
        return; /* nothing to close: no copy of every VM record */
    json_t *vms = cdb_vms(cluster_db(r->env.cluster), NULL);
    uint64_t now = now_mono_ms();
    for (struct daemon_ent *d = r->daemons; d; d = d->next) {
        if (d->stopping)
            continue;
        json_t *list = storaged_exports(d->sd);
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x)
        {
            const char *path = jfield_text(x, "path");
            json_t *asked = json_object_get(r->asked, path);
            if (path_in_use(vms, path) ||
                (asked && now - (uint64_t)json_integer_value(asked) < UNUSED_MS))
                continue;
            struct ferr e = {0};
            json_object_del(r->asked, path);
            if (close_export(d, jfield_text(x, "name"), "no VM uses it", &e) < 0)
                log_warn("%s", e.msg);
        }
        json_decref(list);
    }
    json_decref(vms);
}

void redirect_free_file(struct redirect *r, const char *path, reply_cb cb, void *data)
{
    for (struct daemon_ent *d = r->daemons; d; d = d->next) {
        if (d->stopping)
            continue;
        json_t *list = storaged_exports(d->sd);
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x)
        {
            if (strcmp(jfield_text(x, "path"), path) != 0)
                continue;
            struct waiter *w = calloc(1, sizeof(*w));
            struct ferr e = {0};
            int rc = w ? 0 : ferr_set(&e, -ENOMEM, "out of memory");
            if (w) {
                w->cb = cb;
                w->data = data;
                json_object_del(r->asked, path);
                rc = close_export_then(d, jfield_text(x, "name"),
                                       "the file is changed (grown or deleted)", w, &e);
            }
            json_decref(list);
            if (rc < 0)
                cb(0, NULL, &e, data);
            return; /* one export per file */
        }
        json_decref(list);
    }
    cb(200, json_pack("{sb}", "closed", 0), NULL, data);
}

void redirect_set_cluster(struct redirect *r, struct cluster *c)
{
    r->env.cluster = c;
}

void redirect_fence(struct redirect *r)
{
    for (struct daemon_ent *d = r->daemons, *next; d; d = next) {
        next = d->next;
        if (!d->stopping)
            daemon_stop(d, "this node fenced itself (no quorum): another node coordinates the "
                           "volume once this node's lease expired");
    }
}

void redirect_tick(struct redirect *r)
{
    if (r->stopped || !active(r))
        return;
    for (struct daemon_ent *d = r->daemons, *next; d; d = next) {
        next = d->next;
        if (d->stopping)
            continue;
        json_t *rec = volume_rec(r, d->volume);
        if (!rec)
            daemon_stop(d, "the volume was removed");
        else if (strcmp(jfield_text(rec, "coordinator"), r->node_name) != 0)
            daemon_stop(d, "another node coordinates the volume now");
        else if (json_integer_value(json_object_get(rec, "epoch")) != d->epoch)
            daemon_stop(d, "the volume's coordinator epoch changed");
        json_decref(rec);
    }
    for (struct relay_ent *ent = r->relays; ent; ent = ent->next) {
        if (!ent->coord[0] || !ent->volume[0])
            continue;
        json_t *rec = volume_rec(r, ent->volume);
        if (rec && (strcmp(jfield_text(rec, "coordinator"), ent->coord) != 0 ||
                    json_integer_value(json_object_get(rec, "epoch")) != ent->epoch)) {
            log_info("vm %s: disks[%u]: volume %s's coordinator is %s now: reconnecting", ent->vm,
                     ent->disk, ent->volume, jfield_text(rec, "coordinator"));
            ent->coord[0] = '\0';
            nbd_relay_reset(ent->relay);
        }
        json_decref(rec);
    }
    close_unused(r);
    const char *k;
    json_t *val, *tmp;
    json_object_foreach_safe(r->released, tmp, k, val)
    {
        if (now_mono_ms() >= (uint64_t)json_integer_value(json_object_get(val, "until_ms")))
            json_object_del(r->released, k);
    }
}

json_t *redirect_view(struct redirect *r)
{
    json_t *exps = json_array(), *relays = json_array();
    for (struct daemon_ent *d = r->daemons; d; d = d->next) {
        json_t *list = storaged_exports(d->sd);
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x)
        {
            json_array_append_new(exps, json_pack("{ss sO sO si si}", "volume", d->volume, "name",
                                                  json_object_get(x, "name"), "path",
                                                  json_object_get(x, "path"), "port", d->port,
                                                  "pid", storaged_pid(d->sd)));
        }
        json_decref(list);
    }
    for (struct relay_ent *ent = r->relays; ent; ent = ent->next)
        json_array_append_new(relays, json_pack("{ss si ss ss si ss}", "vm", ent->vm, "disk",
                                                ent->disk, "volume", ent->volume, "file", ent->file,
                                                "connected", nbd_relay_connected(ent->relay), "why",
                                                nbd_relay_why(ent->relay)));
    return json_pack("{so so}", "exports", exps, "relays", relays);
}

void redirect_stop(struct redirect *r)
{
    r->stopped = true;
    while (r->relays) {
        struct relay_ent *ent = r->relays;
        r->relays = ent->next;
        nbd_relay_close(ent->relay);
        free(ent);
    }
    for (struct daemon_ent *d = r->daemons, *next; d; d = next) {
        next = d->next;
        daemon_stop(d, "ferryd stops");
    }
}

void redirect_free(struct redirect *r)
{
    runref(r);
}
