/* SPDX-License-Identifier: MIT */
/* The cluster's shared volumes (volumes.h). The file work (id files, probes, listings) runs in
 * libuv's thread pool: a volume on a hung NFS server must not stop the loop. */
#include "fleet/volumes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "fleet/redirect.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "host/events.h"
#include "storage/audit.h"
#include "storage/lease.h"
#include "storage/volume.h"

#define PROBE_TIMEOUT_MS 5000   /* a node that does not answer a probe in time fails an add */
#define RELEASE_TIMEOUT_MS 8000 /* an old coordinator's daemon flushes and ends within this */
#define EVACUATE_AFTER_MS 6000  /* a volume lost this long: its direct-I/O VMs move away */

struct volumes {
    struct volumes_env env;
    unsigned refs;
    json_t *views;   /* volume id -> {"access", "why", "since_ms", "size_bytes", "free_bytes"} */
    bool refreshing; /* a refresh of the views runs in the pool */
    bool moving;     /* the leader moves a coordinator */
    bool evacuating; /* looking for a node to move this node's VMs to (a volume lost here) */
    bool stopped;    /* ferryd shuts down: the cluster is not to be touched any more */
    /* leases (storage/lease.h): this node's renewals, and what it read of everyone's */
    uv_timer_t lease_timer;
    bool timer_on;
    bool leasing;         /* a renewal runs in the pool */
    bool lease_failing;   /* this node's last renewal failed somewhere: said once */
    bool fenced;          /* self-fenced (fleet.h): no renewals */
    uint64_t lease_count; /* the counter this node writes */
    json_t *leases;       /* volume id -> {node -> {"counter", "changed_ms"}} */
    json_t *lease_vols;   /* the volumes leased: id -> path (env.lease_volumes_file) */
};

static struct volumes *vref(struct volumes *v)
{
    v->refs++;
    return v;
}

static void vunref(struct volumes *v)
{
    if (--v->refs > 0)
        return;
    json_decref(v->views);
    json_decref(v->leases);
    json_decref(v->lease_vols);
    free(v);
}

static void lease_tick(uv_timer_t *t);

int volumes_new(const struct volumes_env *env, struct volumes **out, struct ferr *e)
{
    struct volumes *v = calloc(1, sizeof(*v));
    if (!v || !(v->views = json_object()) || !(v->leases = json_object())) {
        if (v)
            json_decref(v->views);
        free(v);
        return ferr_set(e, -ENOMEM, "volumes: out of memory");
    }
    v->env = *env;
    v->refs = 1;
    json_t *known =
        env->lease_volumes_file ? json_load_file(env->lease_volumes_file, 0, NULL) : NULL;
    v->lease_vols = json_is_object(known) ? known : json_object();
    if (!json_is_object(known))
        json_decref(known);
    if (!v->lease_vols) {
        vunref(v);
        return ferr_set(e, -ENOMEM, "volumes: out of memory");
    }
    if (env->lease_ms) {
        uv_timer_init(env->loop, &v->lease_timer);
        v->lease_timer.data = v;
        v->timer_on = true;
        v->refs++; /* the timer's, dropped when it is closed */
        uv_timer_start(&v->lease_timer, lease_tick, env->lease_ms, env->lease_ms);
    }
    *out = v;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    vunref(h->data);
}

void volumes_stop(struct volumes *v);

void volumes_free(struct volumes *v)
{
    if (!v)
        return;
    volumes_stop(v);
    vunref(v);
}

void volumes_stop(struct volumes *v)
{
    if (!v)
        return;
    v->stopped = true;
    if (v->timer_on) {
        v->timer_on = false;
        uv_timer_stop(&v->lease_timer);
        uv_close((uv_handle_t *)&v->lease_timer, timer_closed);
    }
}

static const struct cdb *db_of(const struct volumes *v)
{
    return cluster_db(v->env.cluster);
}

static void answer_error(reply_cb cb, void *data, int code, const char *msg)
{
    struct ferr e;
    ferr_set(&e, code, "%s", msg);
    cb(0, NULL, &e, data);
}

/* The cluster's node records sorted by name (placement picks the same way). New JSON. */
static json_t *nodes_by_name(struct volumes *v)
{
    return cdb_nodes_by_name(db_of(v));
}

/* ---- work in the thread pool ---- */

typedef json_t *(*job_fn)(json_t *arg);
typedef void (*job_done)(struct volumes *v, json_t *result, void *data);

struct job {
    uv_work_t w;
    struct volumes *v;
    job_fn fn;
    json_t *arg, *result;
    job_done done;
    void *data;
};

static void job_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->result = j->fn(j->arg);
}

static void job_after(uv_work_t *w, int status)
{
    struct job *j = w->data;
    json_t *r = j->result
                    ? j->result
                    : json_pack("{s{si ss}}", "error", "code", -ENOMEM, "message", "out of memory");
    j->done(j->v, r, j->data);
    json_decref(r);
    json_decref(j->arg);
    vunref(j->v);
    free(j);
}

/* Runs fn(arg) in the pool (arg stolen), then done(result) on the loop. */
static int job_start(struct volumes *v, job_fn fn, json_t *arg, job_done done, void *data,
                     struct ferr *e)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j || !arg) {
        free(j);
        json_decref(arg);
        return ferr_set(e, -ENOMEM, "volumes: out of memory");
    }
    j->w.data = j;
    j->v = vref(v);
    j->fn = fn;
    j->arg = arg;
    j->done = done;
    j->data = data;
    int rc = uv_queue_work(v->env.loop, &j->w, job_work, job_after);
    if (rc < 0) {
        vunref(v);
        json_decref(arg);
        free(j);
        return ferr_set(e, -EIO, "volumes: thread pool: %s", uv_strerror(rc));
    }
    return 0;
}

static json_t *error_result(const struct ferr *e)
{
    return json_pack("{s{si ss}}", "error", "code", e->code, "message", e->msg);
}

/* The error of a pool result as e: true if there is one. */
static bool result_failed(const json_t *r, struct ferr *e)
{
    json_t *err = json_object_get(r, "error");
    if (!err)
        return false;
    ferr_set(e, (int)json_integer_value(json_object_get(err, "code")), "%s",
             json_string_value(json_object_get(err, "message")));
    return true;
}

static json_t *fn_claim(json_t *a)
{
    char id[VOLUME_ID_MAX];
    struct ferr e = {0};
    if (volume_claim(jfield_text(a, "path"), jfield_text(a, "cluster"), jfield_text(a, "name"), id,
                     &e) < 0)
        return error_result(&e);
    return json_pack("{ss}", "id", id);
}

static json_t *fn_release(json_t *a)
{
    struct ferr e = {0};
    if (volume_release(jfield_text(a, "path"), jfield_text(a, "id"), &e) < 0)
        return error_result(&e);
    return json_object();
}

static json_t *fn_probe(json_t *a)
{
    return volume_probe(jfield_text(a, "path"), jfield_text(a, "id"));
}

/* [{"path", "id"}...] -> [probe...] in the same order. */
static json_t *fn_probe_all(json_t *a)
{
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        json_array_append_new(out, volume_probe(jfield_text(x, "path"), jfield_text(x, "id")));
    }
    return out;
}

/* {"path", "id"} -> {"probe", "vhds"}. */
static json_t *fn_show_local(json_t *a)
{
    json_t *p = volume_probe(jfield_text(a, "path"), jfield_text(a, "id"));
    bool direct = strcmp(jfield_text(p, "access"), "direct") == 0;
    return json_pack("{so so}", "probe", p, "vhds",
                     direct ? volume_vhds(jfield_text(a, "path")) : json_array());
}

/* ---- this node's view of each volume ---- */

/* Records what this node saw of volume id now (since_ms kept while the access is the same);
 * returns the view with since_ms, borrowed. */
static json_t *view_note(struct volumes *v, const char *id, const char *name, const json_t *probe)
{
    json_t *old = json_object_get(v->views, id);
    const char *access = jfield_text(probe, "access");
    json_int_t since = (json_int_t)now_wall_ms();
    if (old && strcmp(jfield_text(old, "access"), access) == 0)
        since = json_integer_value(json_object_get(old, "since_ms"));
    else if (old || strcmp(access, "direct") != 0) {
        /* a change, or a first look that finds no access: worth a line */
        if (strcmp(access, "direct") == 0)
            log_info("csv %s: direct access here", name);
        else
            log_warn("csv %s: no access here: %s", name, jfield_text(probe, "why"));
        events_add(v->env.events, NULL, "csv.access", "volume %s: %s here%s%s", name, access,
                   *jfield_text(probe, "why") ? ": " : "", jfield_text(probe, "why"));
    }
    json_t *n = json_deep_copy(probe);
    if (!n)
        return old;
    json_object_set_new(n, "since_ms", json_integer(since));
    json_object_set_new(v->views, id, n);
    return n;
}

struct refresh {
    json_t *names; /* [name...] in the order probed */
    json_t *ids;
};

static void evacuate_check(struct volumes *v);

static void refreshed(struct volumes *v, json_t *r, void *data)
{
    struct refresh *rf = data;
    v->refreshing = false;
    json_t *keep = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(r, i, p)
    {
        const char *id = json_string_value(json_array_get(rf->ids, i));
        const char *name = json_string_value(json_array_get(rf->names, i));
        if (id && name && keep)
            json_object_set(keep, id, view_note(v, id, name, p));
    }
    /* volumes that are gone take their views and leases with them */
    if (keep) {
        json_decref(v->views);
        v->views = keep;
        const char *id;
        void *tmp;
        json_t *x;
        json_object_foreach_safe(v->leases, tmp, id, x)
        {
            if (!json_object_get(keep, id))
                json_object_del(v->leases, id);
        }
    }
    json_decref(rf->names);
    json_decref(rf->ids);
    free(rf);
    if (!v->stopped)
        evacuate_check(v);
}

static void refresh_views(struct volumes *v)
{
    if (v->refreshing)
        return;
    json_t *csvs = cdb_csvs(db_of(v));
    struct refresh *rf = calloc(1, sizeof(*rf));
    json_t *arg = json_array();
    if (!csvs || !rf || !arg || !(rf->names = json_array()) || !(rf->ids = json_array())) {
        json_decref(csvs);
        json_decref(arg);
        if (rf) {
            json_decref(rf->names);
            free(rf);
        }
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(csvs, i, c)
    {
        json_array_append_new(
            arg, json_pack("{ss ss}", "path", jfield_text(c, "path"), "id", jfield_text(c, "id")));
        json_array_append_new(rf->names, json_string(jfield_text(c, "name")));
        json_array_append_new(rf->ids, json_string(jfield_text(c, "id")));
    }
    json_decref(csvs);
    struct ferr e;
    v->refreshing = true;
    if (job_start(v, fn_probe_all, arg, refreshed, rf, &e) < 0) {
        v->refreshing = false;
        json_decref(rf->names);
        json_decref(rf->ids);
        free(rf);
    }
}

/* ---- leases ---- */

/* {"node", "counter", "vols": [{"id", "path"}]} -> [{"id", "error", "direct", "slots"}]. */
static json_t *fn_lease(json_t *a)
{
    json_t *out = json_array();
    const char *file = json_string_value(json_object_get(a, "remember_file"));
    if (file) { /* the volumes leased, for a restart without quorum (volumes_env) */
        char *text = json_dumps(json_object_get(a, "remember"), JSON_COMPACT | JSON_SORT_KEYS);
        struct ferr e;
        if (text && file_write_atomic(file, text, strlen(text), &e) < 0)
            log_warn("csv: the volumes leased are not remembered: %s", e.msg);
        free(text);
    }
    const char *node = jfield_text(a, "node");
    uint64_t counter = (uint64_t)json_integer_value(json_object_get(a, "counter"));
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(a, "vols"), i, x)
    {
        struct ferr e = {0};
        bool direct = false;
        int rc = lease_write(jfield_text(x, "path"), node, counter, &direct, &e);
        json_array_append_new(out, json_pack("{ss ss sb so}", "id", jfield_text(x, "id"), "error",
                                             rc < 0 ? e.msg : "", "direct", direct, "slots",
                                             lease_read_all(jfield_text(x, "path"))));
    }
    return out;
}

static void leased(struct volumes *v, json_t *r, void *data)
{
    v->leasing = false;
    uint64_t now = now_mono_ms();
    bool failing = false;
    size_t i;
    json_t *x;
    json_array_foreach(r, i, x)
    {
        const char *id = jfield_text(x, "id");
        if (*jfield_text(x, "error")) {
            failing = true;
            if (!v->lease_failing)
                log_warn("csv: this node's lease on volume %s could not be renewed: %s", id,
                         jfield_text(x, "error"));
        }
        json_t *seen = json_object_get(v->leases, id);
        if (!seen) {
            seen = json_object();
            json_object_set_new(v->leases, id, seen);
        }
        const char *node;
        json_t *c;
        json_object_foreach(json_object_get(x, "slots"), node, c)
        {
            json_t *o = json_object_get(seen, node);
            struct lease_seen ls = {0};
            if (o) {
                ls.known = true;
                ls.counter = (uint64_t)json_integer_value(json_object_get(o, "counter"));
                ls.changed_ms = (uint64_t)json_integer_value(json_object_get(o, "changed_ms"));
            }
            lease_observe(&ls, (uint64_t)json_integer_value(c), now);
            json_object_set_new(seen, node,
                                json_pack("{sI sI}", "counter", (json_int_t)ls.counter,
                                          "changed_ms", (json_int_t)ls.changed_ms));
        }
    }
    if (v->lease_failing && !failing)
        log_info("csv: this node's leases are renewed again");
    v->lease_failing = failing;
}

static void lease_tick(uv_timer_t *t)
{
    struct volumes *v = t->data;
    if (v->leasing || v->fenced || !cluster_active(v->env.cluster))
        return;
    json_t *csvs = cdb_csvs(db_of(v)), *vols = json_array(), *now = json_object();
    size_t i;
    json_t *c;
    json_array_foreach(csvs, i, c)
        json_object_set_new(now, jfield_text(c, "id"), json_string(jfield_text(c, "path")));
    json_decref(csvs);
    bool remember = false;
    if (cluster_quorum(v->env.cluster)) {
        /* the database is current: it says which volumes there are */
        remember = v->env.lease_volumes_file && !json_equal(now, v->lease_vols);
        json_decref(v->lease_vols);
        v->lease_vols = json_incref(now);
    } else {
        /* maybe not: the ones leased before count too */
        json_object_update_missing(now, v->lease_vols);
    }
    const char *id;
    json_object_foreach(now, id, c)
        json_array_append_new(vols, json_pack("{ss ss}", "id", id, "path", json_string_value(c)));
    json_t *arg = json_pack("{ss sI so}", "node", v->env.node_name, "counter",
                            (json_int_t)++v->lease_count, "vols", vols);
    if (arg && remember) {
        json_object_set_new(arg, "remember_file", json_string(v->env.lease_volumes_file));
        json_object_set(arg, "remember", now);
    }
    json_decref(now);
    if (json_array_size(vols) == 0 && !remember) {
        json_decref(arg);
        return;
    }
    struct ferr e;
    v->leasing = true;
    if (job_start(v, fn_lease, arg, leased, NULL, &e) < 0)
        v->leasing = false;
}

/* What this node read of node's lease on volume id: its age, and whether it is stale; false
 * when it never read one. */
static bool lease_of(struct volumes *v, const char *id, const char *node, uint64_t *age,
                     bool *stale)
{
    json_t *o = json_object_get(json_object_get(v->leases, id), node);
    if (!o)
        return false;
    struct lease_seen ls = {.known = true,
                            .counter = (uint64_t)json_integer_value(json_object_get(o, "counter")),
                            .changed_ms =
                                (uint64_t)json_integer_value(json_object_get(o, "changed_ms"))};
    uint64_t now = now_mono_ms();
    *age = lease_age_ms(&ls, now);
    *stale = lease_stale(&ls, now, v->env.lease_expiry_ms);
    return true;
}

void volumes_set_timing(struct volumes *v, unsigned lease_ms, unsigned lease_expiry_ms)
{
    v->env.lease_expiry_ms = lease_expiry_ms;
    if (!v->timer_on || lease_ms == v->env.lease_ms)
        return;
    v->env.lease_ms = lease_ms;
    uv_timer_start(&v->lease_timer, lease_tick, lease_ms, lease_ms);
}

void volumes_set_fenced(struct volumes *v, bool on)
{
    v->fenced = on;
}

bool volumes_node_stale(struct volumes *v, const char *node, uint64_t *age_ms, char *why,
                        size_t size)
{
    *age_ms = 0;
    if (v->lease_failing) {
        snprintf(why, size, "this node cannot renew its own leases, so it cannot judge %s's",
                 node);
        return false;
    }
    json_t *csvs = cdb_csvs(db_of(v));
    bool stale = true, first = true;
    size_t i;
    json_t *c;
    json_array_foreach(csvs, i, c)
    {
        const char *id = jfield_text(c, "id");
        uint64_t age = 0;
        bool st = true;
        if (!json_object_get(v->leases, id)) {
            snprintf(why, size, "this node has not read the leases of volume %s yet",
                     jfield_text(c, "name"));
            stale = false;
            break;
        }
        if (!lease_of(v, id, node, &age, &st))
            continue; /* never renewed there: it cannot write there either */
        if (!st) {
            snprintf(why, size, "its lease on volume %s moved %llu ms ago", jfield_text(c, "name"),
                     (unsigned long long)age);
            stale = false;
            break;
        }
        if (first || age < *age_ms)
            *age_ms = age;
        first = false;
    }
    json_decref(csvs);
    return stale;
}

/* ---- one operation: probes of several nodes, then a write ---- */

struct op {
    struct volumes *v;
    reply_cb cb;
    void *data;
    char name[64], path[CDB_CSV_PATH_MAX + 1], id[VOLUME_ID_MAX], to[64], from[64];
    json_int_t epoch;
    unsigned waiting; /* probes not answered yet */
    bool failed;
    struct ferr err; /* the first failure */
    json_t *nodes;   /* show: each node's answer; move: the candidates (auto) */
    json_t *vhds;
    bool automatic; /* the leader's move, nobody waits for the answer */
    char why[128];  /* the leader's move: why the old coordinator must go */
};

static struct op *op_new(struct volumes *v, reply_cb cb, void *data)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->v = vref(v);
    o->cb = cb;
    o->data = data;
    return o;
}

static void op_free(struct op *o)
{
    json_decref(o->nodes);
    json_decref(o->vhds);
    vunref(o->v);
    free(o);
}

static void op_fail(struct op *o, const struct ferr *e)
{
    if (o->failed)
        return;
    o->failed = true;
    o->err = *e;
}

/* Answers the caller with o's failure and frees o. */
static void op_answer_failure(struct op *o)
{
    if (o->cb)
        o->cb(0, NULL, &o->err, o->data);
    op_free(o);
}

/* ferryd shuts down (volumes_stop): the operation ends here, its caller hears so, and the
 * cluster is not touched any more. True if it ended. */
static bool op_gone(struct op *o)
{
    if (!o->v->stopped)
        return false;
    if (o->automatic)
        o->v->moving = false;
    if (!o->failed) {
        struct ferr e;
        ferr_set(&e, -ECANCELED, "ferryd is shutting down: see ferry csv list for what was done");
        op_fail(o, &e);
    }
    op_answer_failure(o);
    return true;
}

/* The volume's record with what the API adds: the VMs using it and this node's view. New. */
static json_t *record_json(struct volumes *v, const json_t *rec)
{
    json_t *r = json_deep_copy(rec);
    if (!r)
        return NULL;
    json_object_set_new(r, "vms", cdb_csv_vms(db_of(v), jfield_text(rec, "name")));
    json_t *view = json_object_get(v->views, jfield_text(rec, "id"));
    json_object_set_new(r, "here", view ? json_deep_copy(view) : json_null());
    json_object_set_new(
        r, "size_bytes",
        json_integer(view ? json_integer_value(json_object_get(view, "size_bytes")) : 0));
    json_object_set_new(
        r, "free_bytes",
        json_integer(view ? json_integer_value(json_object_get(view, "free_bytes")) : 0));
    return r;
}

/* Answers status with the volume's record as this node's database has it now. */
static void op_answer_record(struct op *o, int status)
{
    json_t *rec = NULL;
    struct ferr e = {0};
    if (cdb_csv_get(db_of(o->v), o->name, &rec, &e) < 0) {
        op_fail(o, &e);
        op_answer_failure(o);
        return;
    }
    json_t *body = record_json(o->v, rec);
    json_decref(rec);
    if (o->cb)
        o->cb(status, body, NULL, o->data);
    else
        json_decref(body);
    op_free(o);
}

/* Asks node (this one too) what it sees at o->path for o->id; done gets the probe (or an
 * error answer) with the node's name in "node". */
typedef void (*probe_done)(struct op *o, const char *node, const json_t *probe,
                           const struct ferr *e);

struct probe_call {
    struct op *o;
    probe_done done;
    char node[64];
};

static void probe_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct probe_call *pc = data;
    pc->done(pc->o, pc->node, body, e);
    json_decref(body);
    free(pc);
}

static void probe_local_done(struct volumes *v, json_t *r, void *data)
{
    struct probe_call *pc = data;
    json_t *view = view_note(v, pc->o->id, pc->o->name, r);
    pc->done(pc->o, pc->node, view ? view : r, NULL);
    free(pc);
}

static int probe_node(struct op *o, const char *node, probe_done done, struct ferr *e)
{
    struct probe_call *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return ferr_set(e, -ENOMEM, "out of memory");
    pc->o = o;
    pc->done = done;
    snprintf(pc->node, sizeof(pc->node), "%s", node);
    json_t *arg = json_pack("{ss ss ss}", "path", o->path, "id", o->id, "name", o->name);
    int rc;
    if (strcmp(node, o->v->env.node_name) == 0) {
        rc = job_start(o->v, fn_probe, arg, probe_local_done, pc, e);
    } else {
        char *text = arg ? json_dumps(arg, JSON_COMPACT) : NULL;
        json_decref(arg);
        rc = text ? cluster_call_within(o->v->env.cluster, node, "POST", "/v1/internal/csv/probe",
                                        text, PROBE_TIMEOUT_MS, probe_answered, pc, e)
                  : ferr_set(e, -ENOMEM, "out of memory");
        free(text);
    }
    if (rc < 0)
        free(pc);
    return rc;
}

/* The names of the nodes whose health is up, self first. New JSON. */
static json_t *up_nodes(struct volumes *v)
{
    json_t *out = json_array(), *nodes = nodes_by_name(v);
    json_array_append_new(out, json_string(v->env.node_name));
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (strcmp(jfield_text(n, "state"), "up") == 0 &&
            strcmp(jfield_text(n, "name"), v->env.node_name) != 0)
            json_array_append_new(out, json_string(jfield_text(n, "name")));
    }
    json_decref(nodes);
    return out;
}

/* ---- add ---- */

static void add_released(struct volumes *v, json_t *r, void *data)
{
    struct op *o = data;
    struct ferr e;
    if (result_failed(r, &e))
        log_warn("csv %s: the id file written at %s could not be removed again: %s", o->name,
                 o->path, e.msg);
    op_answer_failure(o);
}

/* The add failed after the id file was written: it goes again, then the caller hears why. */
static void add_undo(struct op *o)
{
    struct ferr e;
    json_t *arg = json_pack("{ss ss}", "path", o->path, "id", o->id);
    if (job_start(o->v, fn_release, arg, add_released, o, &e) < 0)
        op_answer_failure(o);
}

/* The record of an add whose write may have been applied although it failed (a timeout, a
 * leader lost on the way): the database shows it, with this add's id. */
static bool add_recorded(const struct cdb *db, void *data)
{
    struct op *o = data;
    json_t *rec = NULL;
    bool yes = db && cdb_csv_get(db, o->name, &rec, NULL) == 0 &&
               strcmp(jfield_text(rec, "id"), o->id) == 0;
    json_decref(rec);
    return yes;
}

static void add_written(int status, json_t *body, const struct ferr *e, void *data);

static void add_checked(int status, void *data)
{
    struct op *o = data;
    if (status == 0 && !o->v->stopped) {
        log_info("csv %s: the write's answer was lost, but the database has it", o->name);
        o->failed = false;
        add_written(201, NULL, NULL, o);
        return;
    }
    add_undo(o);
}

static void add_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *o = data;
    json_decref(body);
    if (e) {
        op_fail(o, e);
        /* A refusal is final; anything else may still have been applied: look before the id
         * file goes (a record without its id file would show the volume as none everywhere). */
        bool final = e->code == FERR_INVALID || e->code == FERR_EXISTS || e->code == FERR_STATE ||
                     e->code == FERR_NOTFOUND;
        struct ferr we;
        if (final || o->v->stopped ||
            cluster_wait_until(o->v->env.cluster, add_recorded, 5000, add_checked, o, &we) < 0)
            add_undo(o);
        return;
    }
    if (op_gone(o))
        return;
    log_info("csv %s: added at %s (id %s), coordinator %s", o->name, o->path, o->id,
             o->v->env.node_name);
    cluster_event_add(o->v->env.cluster, "csv.added", NULL,
                      "volume %s added at %s by %s, its coordinator", o->name, o->path,
                      o->v->env.node_name);
    op_answer_record(o, 201);
}

static void add_step(struct op *o);

static void add_probed(struct op *o, const char *node, const json_t *probe, const struct ferr *e)
{
    struct ferr fe;
    if (e) {
        ferr_set(&fe, FERR_UNAVAIL,
                 "could not ask %s whether it sees the volume (%s): every up node must, try "
                 "again when it answers",
                 node, e->msg);
        op_fail(o, &fe);
    } else if (strcmp(jfield_text(probe, "access"), "direct") != 0) {
        ferr_set(&fe, FERR_INVALID,
                 "%s does not see this volume at %s: %s. Mount the same shared directory at "
                 "the same path on every node",
                 node, o->path, jfield_text(probe, "why"));
        op_fail(o, &fe);
    }
    add_step(o);
}

/* One probe less to wait for; after the last, the record is written (or the add undone). */
static void add_step(struct op *o)
{
    if (--o->waiting > 0)
        return;
    if (o->v->stopped && !o->failed) {
        struct ferr e;
        ferr_set(&e, -ECANCELED, "ferryd is shutting down: nothing was added");
        op_fail(o, &e);
    }
    if (o->failed) {
        add_undo(o);
        return;
    }
    json_t *cmd =
        cdb_cmd_csv_put(o->name, o->path, o->id, o->v->env.node_name, 1, now_wall_ms(), 0);
    struct ferr we = {0};
    int rc = cmd ? cluster_write(o->v->env.cluster, cmd, add_written, o, &we)
                 : ferr_set(&we, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0) {
        op_fail(o, &we);
        add_undo(o);
    }
}

static void add_claimed(struct volumes *v, json_t *r, void *data)
{
    struct op *o = data;
    struct ferr e = {0};
    if (v->stopped && !result_failed(r, &e)) {
        snprintf(o->id, sizeof(o->id), "%s", jfield_text(r, "id"));
        ferr_set(&e, -ECANCELED, "ferryd is shutting down");
        op_fail(o, &e);
        add_undo(o);
        return;
    }
    if (result_failed(r, &e)) {
        op_fail(o, &e);
        op_answer_failure(o);
        return;
    }
    snprintf(o->id, sizeof(o->id), "%s", jfield_text(r, "id"));
    /* Every up node, this one too, reads the id back through its own mount. */
    json_t *nodes = up_nodes(v);
    size_t n = json_array_size(nodes);
    o->waiting = (unsigned)n + 1; /* + 1: held until every probe is sent */
    for (size_t i = 0; i < n; i++) {
        const char *node = json_string_value(json_array_get(nodes, i));
        if (probe_node(o, node, add_probed, &e) < 0) {
            o->waiting--;
            op_fail(o, &e);
        }
    }
    json_decref(nodes);
    add_step(o);
}

/* Refuses what csv_put would refuse before anything is written on the volume. */
static int check_new(struct volumes *v, const char *name, const char *path, struct ferr *e)
{
    json_t *cmd = cdb_cmd_csv_put(name, path, "x", v->env.node_name, 1, now_wall_ms(), 0);
    int rc = cmd ? cdb_cmd_check(cmd, e) : ferr_set(e, -ENOMEM, "out of memory");
    json_decref(cmd);
    static const char prefix[] = "cdb: csv_put: ";
    if (rc < 0 && strncmp(e->msg, prefix, sizeof(prefix) - 1) == 0)
        memmove(e->msg, e->msg + sizeof(prefix) - 1, strlen(e->msg) - sizeof(prefix) + 2);
    if (rc < 0)
        return rc;
    json_t *old = NULL;
    if (cdb_csv_get(db_of(v), name, &old, NULL) == 0) {
        rc = ferr_set(e, FERR_EXISTS, "volume \"%s\" exists already (at %s)", name,
                      jfield_text(old, "path"));
        json_decref(old);
        return rc;
    }
    return cdb_csv_path_free(db_of(v), path, e);
}

static int need_cluster(struct volumes *v, struct ferr *e)
{
    if (!cluster_active(v->env.cluster))
        return ferr_set(e, FERR_STATE,
                        "cluster shared volumes belong to a cluster: run ferry cluster init (or "
                        "join) first");
    if (!cluster_quorum(v->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "cluster: no quorum: volumes cannot change until the cluster elects a "
                        "leader");
    if (cdb_cmd_version_min(db_of(v)) >= 4)
        return 0;
    json_t *nodes = nodes_by_name(v);
    char old[200] = "";
    size_t i, off = 0;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (json_integer_value(json_object_get(n, "cmd_version")) < 4 && off < sizeof(old))
            off += (size_t)snprintf(old + off, sizeof(old) - off, "%s%s", off ? ", " : "",
                                    jfield_text(n, "name"));
    }
    json_decref(nodes);
    return ferr_set(e, FERR_STATE,
                    "%s %s not said yet that %s cluster shared volumes (command version 4): "
                    "upgrade ferry there, or if it just joined, try again in a few seconds",
                    old[0] ? old : "a node", strchr(old, ',') ? "have" : "has",
                    strchr(old, ',') ? "they apply" : "it applies");
}

int volumes_add(struct volumes *v, const char *name, const char *path, reply_cb cb, void *data,
                struct ferr *e)
{
    int rc;
    if ((rc = need_cluster(v, e)) < 0 || (rc = check_new(v, name, path, e)) < 0)
        return rc;
    json_t *meta = cdb_meta(db_of(v));
    json_t *arg =
        json_pack("{ss ss ss}", "path", path, "cluster", jfield_text(meta, "id"), "name", name);
    json_decref(meta);
    struct op *o = op_new(v, cb, data);
    if (!o) {
        json_decref(arg);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    snprintf(o->name, sizeof(o->name), "%s", name);
    snprintf(o->path, sizeof(o->path), "%s", path);
    if ((rc = job_start(v, fn_claim, arg, add_claimed, o, e)) < 0)
        op_free(o);
    return rc;
}

/* ---- remove ---- */

static void remove_released(struct volumes *v, json_t *r, void *data)
{
    struct op *o = data;
    struct ferr e;
    if (result_failed(r, &e))
        log_warn("csv %s: removed, but its id file at %s stays: %s", o->name, o->path, e.msg);
    if (o->cb)
        o->cb(200, json_pack("{sb ss}", "removed", 1, "name", o->name), NULL, o->data);
    op_free(o);
}

static void remove_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *o = data;
    json_decref(body);
    if (e) {
        op_fail(o, e);
        op_answer_failure(o);
        return;
    }
    if (!o->v->stopped)
        cluster_event_add(o->v->env.cluster, "csv.removed", NULL, "volume %s at %s removed",
                          o->name, o->path);
    struct ferr je;
    json_t *arg = json_pack("{ss ss}", "path", o->path, "id", o->id);
    if (job_start(o->v, fn_release, arg, remove_released, o, &je) < 0)
        remove_released(o->v, NULL, o);
}

int volumes_remove(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e)
{
    int rc;
    json_t *rec = NULL;
    if ((rc = need_cluster(v, e)) < 0 || (rc = cdb_csv_get(db_of(v), name, &rec, e)) < 0)
        return rc;
    json_t *users = cdb_csv_vms(db_of(v), name);
    if (json_array_size(users) > 0) {
        char list[200] = "";
        for (size_t i = 0, off = 0; i < json_array_size(users) && off < sizeof(list); i++)
            off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                                    json_string_value(json_array_get(users, i)));
        rc = ferr_set(e, FERR_STATE,
                      "volume %s is in use by %zu VM%s (%s): delete them or move their disks "
                      "first",
                      name, json_array_size(users), json_array_size(users) == 1 ? "" : "s", list);
    }
    json_decref(users);
    struct op *o = rc < 0 ? NULL : op_new(v, cb, data);
    if (rc == 0 && !o)
        rc = ferr_set(e, -ENOMEM, "out of memory");
    if (rc < 0) {
        json_decref(rec);
        return rc;
    }
    snprintf(o->name, sizeof(o->name), "%s", name);
    snprintf(o->path, sizeof(o->path), "%s", jfield_text(rec, "path"));
    snprintf(o->id, sizeof(o->id), "%s", jfield_text(rec, "id"));
    json_decref(rec);
    json_t *cmd = cdb_cmd_csv_remove(name);
    rc = cmd ? cluster_write(v->env.cluster, cmd, remove_written, o, e)
             : ferr_set(e, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0)
        op_free(o);
    return rc;
}

/* ---- the coordinator ---- */

static void move_try_next(struct op *o);

static void move_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *o = data;
    json_decref(body);
    if (o->automatic)
        o->v->moving = false;
    if (e) {
        if (o->automatic)
            log_warn("csv %s: coordinator not moved to %s: %s", o->name, o->to, e->msg);
        op_fail(o, e);
        op_answer_failure(o);
        return;
    }
    if (op_gone(o))
        return;
    log_info("csv %s: coordinator %s -> %s (epoch %lld)%s%s", o->name, o->from, o->to,
             (long long)o->epoch + 1, o->why[0] ? ": " : "", o->why);
    cluster_event_add(o->v->env.cluster, "csv.coordinator_moved", NULL,
                      "volume %s: coordinator %s -> %s, epoch %lld%s%s", o->name, o->from, o->to,
                      (long long)o->epoch + 1, o->why[0] ? " (" : "", o->why[0] ? o->why : "");
    op_answer_record(o, 200);
}

/* The record names the new coordinator with the next epoch (CAS on the old one). */
static void move_write(struct op *o)
{
    json_t *cmd = cdb_cmd_csv_put(o->name, o->path, o->id, o->to, (uint64_t)o->epoch + 1,
                                  now_wall_ms(), o->epoch);
    struct ferr we = {0};
    int rc = cmd ? cluster_write(o->v->env.cluster, cmd, move_written, o, &we)
                 : ferr_set(&we, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0)
        move_written(0, NULL, &we, o);
}

/* The old coordinator gave the volume up (its storage daemon is gone: no two daemons ever
 * open a VHD), or it did not answer and its lease on the volume is stale: it is dead or
 * fenced itself. A live node with a fresh lease that does not answer keeps the volume. */
static void move_released(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    struct op *o = data;
    json_decref(body);
    if (op_gone(o))
        return;
    if (e) {
        uint64_t age = 0;
        bool stale = false;
        bool known = lease_of(o->v, o->id, o->from, &age, &stale);
        if (known && !stale) {
            struct ferr fe;
            ferr_set(&fe, FERR_UNAVAIL,
                     "volume %s: its coordinator %s did not give it up (%s) and its lease on the "
                     "volume is fresh (%llu ms old, stale after %u ms): try again then",
                     o->name, o->from, e->msg, (unsigned long long)age, o->v->env.lease_expiry_ms);
            if (o->automatic) {
                log_warn("csv %s", fe.msg);
                o->v->moving = false;
                op_free(o);
                return;
            }
            op_fail(o, &fe);
            op_answer_failure(o);
            return;
        }
        log_info("csv %s: coordinator %s did not give the volume up (%s); its lease is %s: "
                 "%s takes it",
                 o->name, o->from, e->msg, known ? "stale" : "unknown", o->to);
    }
    move_write(o);
}

static void move_release_old(struct op *o)
{
    struct ferr e = {0};
    int rc = 0;
    if (strcmp(o->from, o->v->env.node_name) == 0) {
        if (o->v->env.redirect) {
            redirect_release(o->v->env.redirect, o->name, o->epoch, move_released, o);
            return;
        }
    } else {
        json_t *b = json_pack("{ss sI}", "volume", o->name, "epoch", o->epoch);
        char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        rc = text ? cluster_call_within(o->v->env.cluster, o->from, "POST",
                                        "/v1/internal/csv/release", text, RELEASE_TIMEOUT_MS,
                                        move_released, o, &e)
                  : ferr_set(&e, -ENOMEM, "out of memory");
        free(text);
        if (rc == 0)
            return;
    }
    move_released(0, NULL, rc < 0 ? &e : NULL, o);
}

static void move_probed(struct op *o, const char *node, const json_t *probe, const struct ferr *e)
{
    struct ferr fe;
    if (op_gone(o))
        return;
    if (e || strcmp(jfield_text(probe, "access"), "direct") != 0) {
        ferr_set(&fe, e ? FERR_UNAVAIL : FERR_STATE, "%s cannot coordinate volume %s: %s", node,
                 o->name, e ? e->msg : jfield_text(probe, "why"));
        if (o->automatic) {
            log_warn("csv %s: %s", o->name, fe.msg);
            move_try_next(o);
            return;
        }
        op_fail(o, &fe);
        op_answer_failure(o);
        return;
    }
    move_release_old(o);
}

/* Probes the next candidate of o->nodes (into o->to) with done; false when none is left. */
static bool probe_next(struct op *o, probe_done done)
{
    struct ferr e;
    while (json_array_size(o->nodes) > 0) {
        snprintf(o->to, sizeof(o->to), "%s", json_string_value(json_array_get(o->nodes, 0)));
        json_array_remove(o->nodes, 0);
        if (probe_node(o, o->to, done, &e) == 0)
            return true;
    }
    return false;
}

/* The leader's move: the next candidate, or give up until the next tick. */
static void move_try_next(struct op *o)
{
    if (probe_next(o, move_probed))
        return;
    log_warn("csv %s: its coordinator %s %s, and no other node can take the volume now", o->name,
             o->from, o->why);
    o->v->moving = false;
    op_free(o);
}

/* Whether node (a record) can coordinate: up and active. */
static bool can_coordinate(const json_t *n)
{
    return strcmp(jfield_text(n, "state"), "up") == 0 &&
           strcmp(jfield_text(n, "admin"), "active") == 0;
}

static struct op *move_op(struct volumes *v, const json_t *rec, reply_cb cb, void *data)
{
    struct op *o = op_new(v, cb, data);
    if (!o)
        return NULL;
    snprintf(o->name, sizeof(o->name), "%s", jfield_text(rec, "name"));
    snprintf(o->path, sizeof(o->path), "%s", jfield_text(rec, "path"));
    snprintf(o->id, sizeof(o->id), "%s", jfield_text(rec, "id"));
    snprintf(o->from, sizeof(o->from), "%s", jfield_text(rec, "coordinator"));
    o->epoch = json_integer_value(json_object_get(rec, "epoch"));
    return o;
}

int volumes_move_coordinator(struct volumes *v, const char *name, const char *to, reply_cb cb,
                             void *data, struct ferr *e)
{
    int rc;
    json_t *rec = NULL, *node = NULL;
    if ((rc = need_cluster(v, e)) < 0 || (rc = cdb_csv_get(db_of(v), name, &rec, e)) < 0)
        return rc;
    if (cdb_node_find(db_of(v), to, &node, e) < 0)
        rc = ferr_set(e, FERR_NOTFOUND, "--to: no node named \"%s\" (ferry node list)", to);
    else if (strcmp(jfield_text(rec, "coordinator"), to) == 0)
        rc = ferr_set(e, FERR_STATE, "%s coordinates volume %s already (epoch %lld)", to, name,
                      (long long)json_integer_value(json_object_get(rec, "epoch")));
    else if (!can_coordinate(node))
        rc = ferr_set(e, FERR_STATE, "%s is %s and %s: a coordinator must be up and active", to,
                      jfield_text(node, "state"), jfield_text(node, "admin"));
    json_decref(node);
    struct op *o = rc < 0 ? NULL : move_op(v, rec, cb, data);
    json_decref(rec);
    if (rc < 0)
        return rc;
    if (!o)
        return ferr_set(e, -ENOMEM, "out of memory");
    snprintf(o->to, sizeof(o->to), "%s", to);
    if ((rc = probe_node(o, to, move_probed, e)) < 0)
        op_free(o);
    return rc;
}

/* This node's own automatic operation on volume rec: no caller waits for it, and its
 * candidates are the up, active nodes of nodes (by name) but skip. NULL: out of memory. */
static struct op *auto_op(struct volumes *v, const json_t *rec, const json_t *nodes,
                          const char *skip)
{
    struct op *o = move_op(v, rec, NULL, NULL);
    if (!o || !(o->nodes = json_array())) {
        if (o)
            op_free(o);
        return NULL;
    }
    o->automatic = true;
    size_t k;
    json_t *n;
    json_array_foreach(nodes, k, n)
    {
        if (can_coordinate(n) && strcmp(jfield_text(n, "name"), skip) != 0)
            json_array_append_new(o->nodes, json_string(jfield_text(n, "name")));
    }
    return o;
}

/* The leader: a volume whose coordinator is down, draining or paused gets another, the first
 * up and active node by name that sees it. One move at a time. */
static void move_off_unfit(struct volumes *v)
{
    if (v->moving || !cluster_leading(v->env.cluster) || !cluster_quorum(v->env.cluster))
        return;
    json_t *csvs = cdb_csvs(db_of(v)), *nodes = nodes_by_name(v);
    size_t i, k;
    json_t *c, *n;
    json_array_foreach(csvs, i, c)
    {
        const char *coord = jfield_text(c, "coordinator");
        json_t *cn = NULL;
        json_array_foreach(nodes, k, n)
        {
            if (strcmp(jfield_text(n, "name"), coord) == 0)
                cn = n;
        }
        if (cn && can_coordinate(cn))
            continue;
        struct op *o = auto_op(v, c, nodes, coord);
        if (!o)
            break;
        snprintf(o->why, sizeof(o->why), "is %s",
                 !cn                                           ? "no member any more"
                 : strcmp(jfield_text(cn, "state"), "up") != 0 ? "down"
                                                               : jfield_text(cn, "admin"));
        v->moving = true;
        move_try_next(o);
        break;
    }
    json_decref(csvs);
    json_decref(nodes);
}

void volumes_tick(struct volumes *v)
{
    if (v->stopped || !cluster_active(v->env.cluster))
        return;
    refresh_views(v);
    move_off_unfit(v);
}

/* ---- a volume lost here: its direct-I/O VMs move live to a node that has it ---- */

static void evac_try_next(struct op *o);

static void evac_probed(struct op *o, const char *node, const json_t *probe, const struct ferr *e)
{
    if (op_gone(o))
        return;
    if (e || strcmp(jfield_text(probe, "access"), "direct") != 0) {
        log_warn("csv %s: %s cannot take this node's VMs: %s", o->name, node,
                 e ? e->msg : jfield_text(probe, "why"));
        evac_try_next(o);
        return;
    }
    log_warn("csv %s: lost here for %d s: moving the VMs that open it directly to %s", o->name,
             EVACUATE_AFTER_MS / 1000, node);
    events_add(o->v->env.events, NULL, "csv.evacuate",
               "volume %s is lost here: its VMs with direct I/O move live to %s", o->name, node);
    o->v->env.evacuate(o->v->env.evacuate_data, o->name, o->path, node);
    o->v->evacuating = false;
    op_free(o);
}

static void evac_try_next(struct op *o)
{
    if (probe_next(o, evac_probed))
        return;
    log_warn("csv %s: lost here, and no other node sees it now: the VMs stay", o->name);
    o->v->evacuating = false;
    op_free(o);
}

/* After each look (every 2 s): the first volume this node has not reached for
 * EVACUATE_AFTER_MS while some of its running VMs open files on it directly gets a target,
 * the first other up node by name that sees it now, and those VMs move there live. They are
 * never stopped: where no node sees the volume, they stay (their QEMU may still have the
 * files open). Asked again on later looks while any remain. */
static void evacuate_check(struct volumes *v)
{
    if (v->evacuating || !v->env.evacuate || !v->env.direct_users ||
        !cluster_active(v->env.cluster) || !cluster_quorum(v->env.cluster))
        return;
    json_t *csvs = cdb_csvs(db_of(v));
    size_t i;
    json_t *c;
    uint64_t now = now_wall_ms();
    json_array_foreach(csvs, i, c)
    {
        json_t *view = json_object_get(v->views, jfield_text(c, "id"));
        uint64_t since = (uint64_t)json_integer_value(json_object_get(view, "since_ms"));
        if (!view || strcmp(jfield_text(view, "access"), "none") != 0 || now < since ||
            now - since < EVACUATE_AFTER_MS ||
            v->env.direct_users(v->env.evacuate_data, jfield_text(c, "path")) == 0)
            continue;
        json_t *nodes = nodes_by_name(v);
        struct op *o = auto_op(v, c, nodes, v->env.node_name);
        json_decref(nodes);
        if (!o)
            break;
        v->evacuating = true;
        evac_try_next(o);
        break;
    }
    json_decref(csvs);
}

/* ---- views: list, show, probe, metrics ---- */

json_t *volumes_list(struct volumes *v)
{
    json_t *out = json_array();
    if (cluster_active(v->env.cluster)) {
        json_t *csvs = cdb_csvs(db_of(v));
        size_t i;
        json_t *c;
        json_array_foreach(csvs, i, c)
        {
            json_array_append_new(out, record_json(v, c));
        }
        json_decref(csvs);
    }
    return json_pack("{so}", "csvs", out);
}

static void show_done(struct op *o)
{
    json_t *rec = NULL;
    struct ferr e;
    if (op_gone(o))
        return;
    if (cdb_csv_get(db_of(o->v), o->name, &rec, &e) < 0) {
        op_fail(o, &e);
        op_answer_failure(o);
        return;
    }
    json_t *body = record_json(o->v, rec);
    json_decref(rec);
    /* every node of the cluster: the answers, and the down ones as unknown */
    json_t *nodes = nodes_by_name(o->v), *rows = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = jfield_text(n, "name");
        json_t *a = json_object_get(o->nodes, name);
        json_t *row = a ? json_deep_copy(a)
                        : json_pack("{ss ss sn}", "access", "unknown", "why",
                                    "the node is down: nobody can ask it", "since_ms");
        json_object_set_new(row, "node", json_string(name));
        json_object_set_new(row, "health", json_string(jfield_text(n, "state")));
        /* no path of its own, but its VMs' redirected disks reach the coordinator: that is
         * Hyper-V's "redirected access" */
        size_t k, up = 0;
        json_t *x;
        json_array_foreach(json_object_get(row, "relays"), k, x)
        {
            up += json_integer_value(json_object_get(x, "connected")) > 0;
        }
        if (strcmp(jfield_text(row, "access"), "none") == 0 && up > 0) {
            char why[700];
            snprintf(why, sizeof(why),
                     "its own path: %s; %zu redirected disk%s reach%s the volume through %s",
                     jfield_text(row, "why"), up, up == 1 ? "" : "s", up == 1 ? "es" : "",
                     jfield_text(body, "coordinator"));
            json_object_set_new(row, "own_access", json_string("none"));
            json_object_set_new(row, "access", json_string("redirected"));
            json_object_set_new(row, "why", json_string(why));
        }
        json_object_set_new(row, "coordinator",
                            json_boolean(strcmp(name, jfield_text(body, "coordinator")) == 0));
        uint64_t age = 0;
        bool stale = false, seen = lease_of(o->v, jfield_text(body, "id"), name, &age, &stale);
        json_object_set_new(row, "lease_age_ms",
                            seen ? json_integer((json_int_t)age) : json_null());
        json_object_set_new(row, "lease", json_string(!seen ? "none" : stale ? "stale" : "fresh"));
        json_array_append_new(rows, row);
    }
    json_decref(nodes);
    json_object_set_new(body, "nodes", rows);
    /* each VHD with the VM whose spec names it (null: none) */
    json_t *vms = cdb_vms(db_of(o->v), NULL), *vhds = json_array(), *f, *vm, *d;
    size_t k, m;
    json_array_foreach(o->vhds, i, f)
    {
        json_t *row = json_deep_copy(f);
        const char *user = NULL;
        json_array_foreach(vms, k, vm)
        {
            json_array_foreach(json_object_get(json_object_get(vm, "spec"), "disks"), m, d)
            {
                if (strcmp(jfield_text(d, "path"), jfield_text(f, "path")) == 0)
                    user = jfield_text(vm, "name");
            }
        }
        json_object_set_new(row, "vm", user ? json_string(user) : json_null());
        json_array_append_new(vhds, row);
    }
    json_decref(vms);
    json_object_set_new(body, "vhds", vhds);
    o->cb(200, body, NULL, o->data);
    op_free(o);
}

static void show_step(struct op *o)
{
    if (--o->waiting == 0)
        show_done(o);
}

static void show_probed(struct op *o, const char *node, const json_t *probe, const struct ferr *e)
{
    json_t *row = e ? json_pack("{ss ss sn}", "access", "unknown", "why", e->msg, "since_ms")
                    : json_deep_copy(probe);
    if (row)
        json_object_set_new(o->nodes, node, row);
    show_step(o);
}

/* What this node does for volume name's redirected disks: its storage daemon's exports and
 * its relays (fleet/redirect.c), added to a node's answer. */
static void add_redirected(struct volumes *v, const char *name, json_t *answer)
{
    if (!v->env.redirect || !json_is_object(answer))
        return;
    json_t *all = redirect_view(v->env.redirect), *exps = json_array(), *relays = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(all, "exports"), i, x)
    {
        if (strcmp(jfield_text(x, "volume"), name) == 0)
            json_array_append(exps, x);
    }
    json_array_foreach(json_object_get(all, "relays"), i, x)
    {
        if (strcmp(jfield_text(x, "volume"), name) == 0)
            json_array_append(relays, x);
    }
    json_decref(all);
    json_object_set_new(answer, "exports", exps);
    json_object_set_new(answer, "relays", relays);
}

static void show_local(struct volumes *v, json_t *r, void *data)
{
    struct op *o = data;
    json_t *view = view_note(v, o->id, o->name, json_object_get(r, "probe"));
    json_t *row = json_deep_copy(view ? view : json_object_get(r, "probe"));
    add_redirected(v, o->name, row);
    o->vhds = json_incref(json_object_get(r, "vhds"));
    show_probed(o, v->env.node_name, row, NULL);
    json_decref(row);
}

int volumes_show(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e)
{
    int rc;
    json_t *rec = NULL;
    if (!cluster_active(v->env.cluster))
        return ferr_set(e, FERR_NOTFOUND,
                        "no cluster shared volume named \"%s\" (not in a "
                        "cluster)",
                        name);
    if ((rc = cdb_csv_get(db_of(v), name, &rec, e)) < 0)
        return rc;
    struct op *o = op_new(v, cb, data);
    if (!o || !(o->nodes = json_object())) {
        json_decref(rec);
        if (o)
            op_free(o);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    snprintf(o->name, sizeof(o->name), "%s", name);
    snprintf(o->path, sizeof(o->path), "%s", jfield_text(rec, "path"));
    snprintf(o->id, sizeof(o->id), "%s", jfield_text(rec, "id"));
    json_decref(rec);
    json_t *nodes = up_nodes(v);
    size_t n = json_array_size(nodes);
    o->waiting = (unsigned)n + 1; /* + 1: held until every probe is sent */
    json_t *arg = json_pack("{ss ss}", "path", o->path, "id", o->id);
    if ((rc = job_start(v, fn_show_local, arg, show_local, o, e)) < 0) {
        json_decref(nodes);
        op_free(o);
        return rc;
    }
    for (size_t i = 1; i < n; i++) { /* [0] is this node */
        struct ferr pe;
        const char *node = json_string_value(json_array_get(nodes, i));
        if (probe_node(o, node, show_probed, &pe) < 0)
            show_probed(o, node, NULL, &pe);
    }
    json_decref(nodes);
    show_step(o); /* the + 1 of the loop above */
    return 0;
}

/* The pool's side of volumes_audit: arg {"path", "name"}. */
static json_t *fn_audit(json_t *arg)
{
    struct ferr e = {0};
    unsigned bad = 0;
    json_t *recs = audit_read(jfield_text(arg, "path"), &bad, &e);
    if (!recs)
        return error_result(&e);
    json_t *out = audit_check(recs);
    if (!out) {
        json_decref(recs);
        return NULL;
    }
    json_object_set_new(out, "volume", json_string(jfield_text(arg, "name")));
    json_object_set_new(out, "records", recs);
    json_object_set_new(out, "unreadable_lines", json_integer(bad));
    return out;
}

struct audit_req {
    reply_cb cb;
    void *data;
};

static void audit_done(struct volumes *v, json_t *r, void *data)
{
    (void)v;
    struct audit_req *a = data;
    struct ferr e;
    if (result_failed(r, &e))
        a->cb(0, NULL, &e, a->data);
    else
        a->cb(200, json_incref(r), NULL, a->data);
    free(a);
}

int volumes_audit(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e)
{
    json_t *rec = NULL;
    int rc;
    if (!cluster_active(v->env.cluster))
        return ferr_set(e, FERR_NOTFOUND,
                        "no cluster shared volume named \"%s\" (not in a cluster)", name);
    if ((rc = cdb_csv_get(db_of(v), name, &rec, e)) < 0)
        return rc;
    struct audit_req *a = calloc(1, sizeof(*a));
    json_t *arg = json_pack("{ss ss}", "path", jfield_text(rec, "path"), "name", name);
    json_decref(rec);
    if (!a) {
        json_decref(arg);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    a->cb = cb;
    a->data = data;
    if ((rc = job_start(v, fn_audit, arg, audit_done, a, e)) < 0)
        free(a);
    return rc;
}

struct probe_req {
    reply_cb cb;
    void *data;
    char id[VOLUME_ID_MAX];
    char name[64];
};

static void probe_req_done(struct volumes *v, json_t *r, void *data)
{
    struct probe_req *pr = data;
    json_t *view = view_note(v, pr->id, pr->name, r);
    json_t *answer = json_deep_copy(view ? view : r);
    add_redirected(v, pr->name, answer);
    pr->cb(200, answer, NULL, pr->data);
    free(pr);
}

void volumes_on_probe(struct volumes *v, const json_t *body, reply_cb cb, void *data)
{
    const char *path = json_string_value(json_object_get(body, "path"));
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!path || path[0] != '/' || strlen(path) > CDB_CSV_PATH_MAX || !id || !*id ||
        strlen(id) >= VOLUME_ID_MAX || !name || !name_valid(name, 63)) {
        answer_error(
            cb, data, FERR_INVALID,
            "csv probe: expected {\"path\": \"/abs\", \"id\": \"...\", \"name\": \"...\"}");
        return;
    }
    struct probe_req *pr = calloc(1, sizeof(*pr));
    struct ferr e;
    if (!pr) {
        answer_error(cb, data, -ENOMEM, "out of memory");
        return;
    }
    pr->cb = cb;
    pr->data = data;
    snprintf(pr->id, sizeof(pr->id), "%s", id);
    snprintf(pr->name, sizeof(pr->name), "%s", name);
    json_t *arg = json_pack("{ss ss}", "path", path, "id", id);
    if (job_start(v, fn_probe, arg, probe_req_done, pr, &e) < 0) {
        free(pr);
        cb(0, NULL, &e, data);
    }
}

json_t *volumes_local_view(struct volumes *v)
{
    json_t *out = json_array();
    if (!cluster_active(v->env.cluster))
        return out;
    json_t *csvs = cdb_csvs(db_of(v));
    size_t i;
    json_t *c;
    json_array_foreach(csvs, i, c)
    {
        json_t *view = json_object_get(v->views, jfield_text(c, "id"));
        json_t *ages = json_object();
        const char *node;
        json_t *x;
        json_object_foreach(json_object_get(v->leases, jfield_text(c, "id")), node, x)
        {
            uint64_t age = 0;
            bool stale;
            if (lease_of(v, jfield_text(c, "id"), node, &age, &stale))
                json_object_set_new(ages, node, json_integer((json_int_t)age));
        }
        json_array_append_new(
            out,
            json_pack("{ss ss ss sI ss sI sI so}", "name", jfield_text(c, "name"), "path",
                      jfield_text(c, "path"), "coordinator", jfield_text(c, "coordinator"), "epoch",
                      json_integer_value(json_object_get(c, "epoch")), "access",
                      view ? jfield_text(view, "access") : "unknown", "size_bytes",
                      json_integer_value(json_object_get(view, "size_bytes")), "free_bytes",
                      json_integer_value(json_object_get(view, "free_bytes")), "leases", ages));
    }
    json_decref(csvs);
    return out;
}
