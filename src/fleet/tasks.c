/* SPDX-License-Identifier: MIT */
/* The tasks of the cluster (tasks.h): records kept in the cluster database (task_put, command
 * version 8) or, on a standalone host, here; progress polled every second on the node that
 * runs the task and written only when it changed; tasks of dead nodes and of a previous
 * ferryd closed as failed. */
#include "fleet/tasks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"

#define TICK_MS 1000        /* progress polled, writes made */
#define WRITE_EVERY_MS 1000 /* a running task's progress is written at most this often */
#define TASKS_VERSION 8     /* the command version of task_put */

/* A task that runs on this node, or ended here and is not written yet. */
struct task {
    struct task *next;
    json_t *rec; /* the newest record (owned) */
    struct task_ops ops;
    void *data;
    bool ended;        /* tasks_end was called: ops are not used any more */
    bool dirty;        /* rec changed since the last write (or never written) */
    bool written;      /* the first write was applied */
    bool inflight;     /* a write of it is under way */
    bool dead;         /* the cluster closed it (its node was taken for dead): never written */
    uint64_t write_ms; /* monotonic, the last write started */
};

struct tasks {
    struct tasks_env env;
    struct task *list;
    json_t *kept;    /* id -> ended record, when not replicated (standalone, older cluster) */
    json_t *closing; /* id -> true: a close of another node's task is being written */
    uint64_t seq;    /* ids given out */
    uv_timer_t timer;
    bool closed; /* tasks_free: nothing is written any more */
};

static bool replicated(const struct tasks *t)
{
    return t->env.cluster && cluster_active(t->env.cluster) &&
           cdb_cmd_version_min(cluster_db(t->env.cluster)) >= TASKS_VERSION;
}

static struct task *find(struct tasks *t, const char *id)
{
    for (struct task *k = t->list; k; k = k->next)
        if (strcmp(jfield_text(k->rec, "id"), id) == 0)
            return k;
    return NULL;
}

static void unlink_task(struct tasks *t, struct task *k)
{
    for (struct task **p = &t->list; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            break;
        }
    json_decref(k->rec);
    free(k);
}

/* Which event a record is: the database's generation tells a new task from a change. */
static const char *event_type(const json_t *rec)
{
    if (taskrec_final(jfield_text(rec, "state")))
        return "task.ended";
    return json_integer_value(json_object_get(rec, "generation")) <= 1 ? "task.created"
                                                                       : "task.progress";
}

/* Every node, for every task_put it applied. */
static void on_applied(const json_t *rec, void *data)
{
    struct tasks *t = data;
    const char *type = event_type(rec);
    if (strcmp(type, "task.ended") == 0 &&
        json_integer_value(json_object_get(rec, "generation")) <= 1)
        events_add_task(t->env.events, "task.created", rec); /* began and ended in one write */
    events_add_task(t->env.events, type, rec);
}

/* Standalone: the events come from here; ended records are kept here, the oldest pruned. */
static void local_changed(struct tasks *t, struct task *k, const char *type)
{
    events_add_task(t->env.events, type, k->rec);
    if (!k->ended)
        return;
    json_object_set(t->kept, jfield_text(k->rec, "id"), k->rec);
    while (json_object_size(t->kept) > CDB_TASKS_MAX) {
        const char *id, *oldest = NULL;
        json_t *v;
        json_int_t min = 0;
        json_object_foreach(t->kept, id, v)
        {
            json_int_t end = json_integer_value(json_object_get(v, "end_ms"));
            if (!oldest || end < min) {
                oldest = id;
                min = end;
            }
        }
        json_object_del(t->kept, oldest);
    }
    unlink_task(t, k);
}

struct write_ctx {
    struct tasks *t;
    char id[TASKREC_ID_MAX + 1];
    bool close; /* a close of another node's (or a previous ferryd's) task */
};

static void written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct write_ctx *w = data;
    struct tasks *t = w->t;
    json_decref(body);
    if (w->close) {
        json_object_del(t->closing, w->id);
        if (e && e->code != FERR_STATE)
            log_warn("tasks: closing %s: %s (tried again)", w->id, e->msg);
        free(w);
        return;
    }
    struct task *k = find(t, w->id);
    free(w);
    if (!k)
        return;
    k->inflight = false;
    if (e && (e->code == FERR_STATE || e->code == FERR_INVALID || e->code == FERR_TOOBIG)) {
        /* The cluster closed it meanwhile (this node was taken for dead): it stays closed.
         * (A record the database refuses is as final: writing it again changes nothing.) */
        log_warn("tasks: %s: %s", jfield_text(k->rec, "id"), e->msg);
        if (k->ended)
            unlink_task(t, k);
        else
            k->dead = true; /* its operation still ends it; then it goes */
        return;
    }
    if (e) {
        k->dirty = true; /* no quorum, a timeout: the next tick writes it again */
        return;
    }
    k->written = true;
    if (k->ended && !k->dirty)
        unlink_task(t, k); /* the database has its end: nothing of it is needed here */
}

/* Writes rec (borrowed) as a task_put; close: it is another's task being closed. */
static int write_rec(struct tasks *t, const json_t *rec, bool close)
{
    struct write_ctx *w = calloc(1, sizeof(*w));
    json_t *cmd = w ? cdb_cmd_task_put(rec, now_wall_ms()) : NULL;
    struct ferr e = {0};
    if (!cmd) {
        free(w);
        return -ENOMEM;
    }
    w->t = t;
    w->close = close;
    snprintf(w->id, sizeof(w->id), "%s", jfield_text(rec, "id"));
    int rc = cluster_write(t->env.cluster, cmd, written, w, &e);
    json_decref(cmd);
    if (rc < 0) {
        log_debug("tasks: write %s: %s", w->id, e.msg);
        free(w);
    }
    return rc;
}

/* Writes what changed: a new or ended task at once, progress at most every WRITE_EVERY_MS. */
static void flush(struct tasks *t)
{
    if (t->closed)
        return;
    uint64_t now = now_mono_ms();
    bool repl = replicated(t);
    for (struct task *k = t->list, *next; k; k = next) {
        next = k->next;
        if (k->dead && k->ended) {
            unlink_task(t, k);
            continue;
        }
        if (!k->dirty || k->inflight || k->dead)
            continue;
        if (!repl) {
            bool first = !k->written;
            k->dirty = false;
            k->written = true;
            local_changed(t, k, k->ended ? "task.ended" : first ? "task.created" : "task.progress");
            continue;
        }
        if (k->written && !k->ended && now - k->write_ms < WRITE_EVERY_MS)
            continue;
        k->dirty = false;
        k->inflight = true;
        k->write_ms = now;
        if (write_rec(t, k->rec, false) < 0) {
            k->inflight = false;
            k->dirty = true;
        }
    }
}

/* Sets key of rec to v (stolen) and says whether that changed it. */
static bool set_changed(json_t *rec, const char *key, json_t *v)
{
    if (!v)
        return false;
    json_t *old = json_object_get(rec, key);
    if (old && json_equal(old, v)) {
        json_decref(v);
        return false;
    }
    json_object_set_new(rec, key, v);
    return true;
}

static void poll_progress(struct tasks *t)
{
    for (struct task *k = t->list; k; k = k->next) {
        if (k->ended || !k->ops.progress)
            continue;
        json_t *p = k->ops.progress(k->data);
        if (!p)
            continue;
        json_t *phase = json_object_get(p, "phase"), *pct = json_object_get(p, "percent");
        json_t *detail = json_object_get(p, "detail");
        bool ch = false;
        if (json_is_string(phase))
            ch |= set_changed(k->rec, "phase", json_incref(phase));
        if (json_is_integer(pct) && json_integer_value(pct) >= 0 && json_integer_value(pct) <= 100)
            ch |= set_changed(k->rec, "percent", json_incref(pct));
        if (json_is_object(detail))
            ch |= set_changed(k->rec, "detail", json_incref(detail));
        k->dirty |= ch;
        json_decref(p);
    }
}

/*
 * Tasks that nobody will end: those of a node that is down or gone (closed by the leader),
 * and this node's tasks that no operation of this ferryd runs (a previous ferryd left them).
 */
static void close_orphans(struct tasks *t)
{
    struct cluster *c = t->env.cluster;
    if (!replicated(t) || !cluster_quorum(c))
        return;
    const struct cdb *db = cluster_db(c);
    json_t *all = cdb_tasks(db), *nodes = cdb_nodes(db);
    size_t i;
    json_t *rec;
    bool leading = cluster_leading(c);
    json_array_foreach(all, i, rec)
    {
        const char *id = jfield_text(rec, "id");
        if (json_object_get(t->closing, id))
            continue;
        char why[300];
        if (!taskrec_orphaned(rec, nodes, t->env.node_name, find(t, id) != NULL, leading, why,
                              sizeof(why)))
            continue;
        json_t *closed = json_deep_copy(rec);
        json_int_t end = (json_int_t)now_wall_ms();
        json_int_t start = json_integer_value(json_object_get(rec, "start_ms"));
        if (closed) {
            json_object_del(closed, "generation");
            json_object_set_new(closed, "state", json_string("failed"));
            json_object_set_new(closed, "end_ms", json_integer(end < start ? start : end));
            json_object_set_new(closed, "result", json_string(why));
            log_warn("tasks: closing %s (%s %s): %s", id, jfield_text(rec, "kind"),
                     jfield_text(rec, "target"), why);
            if (write_rec(t, closed, true) == 0)
                json_object_set_new(t->closing, id, json_true());
        }
        json_decref(closed);
    }
    json_decref(all);
    json_decref(nodes);
}

static void on_tick(uv_timer_t *h)
{
    struct tasks *t = h->data;
    poll_progress(t);
    flush(t);
    close_orphans(t);
}

int tasks_new(const struct tasks_env *env, struct tasks **out, struct ferr *e)
{
    struct tasks *t = calloc(1, sizeof(*t));
    if (!t || !(t->kept = json_object()) || !(t->closing = json_object())) {
        if (t)
            json_decref(t->kept);
        free(t);
        return ferr_set(e, -ENOMEM, "tasks: out of memory");
    }
    t->env = *env;
    uv_timer_init(env->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_tick, TICK_MS, TICK_MS);
    if (env->cluster)
        cluster_set_task_fn(env->cluster, on_applied, t);
    *out = t;
    return 0;
}

void tasks_free(struct tasks *t)
{
    if (!t || t->closed)
        return;
    t->closed = true;
    if (t->env.cluster)
        cluster_set_task_fn(t->env.cluster, NULL, NULL);
    /* Only the timer goes: an operation that ends during the shutdown may still end its task
     * (tasks_end then keeps it here), so the rest is left to the process's end. */
    uv_close((uv_handle_t *)&t->timer, NULL);
}

int tasks_begin(struct tasks *t, const char *kind, const char *target, const char *user,
                const struct task_ops *ops, void *data, char *id, struct ferr *e)
{
    char tid[TASKREC_ID_MAX + 1];
    uint64_t wall = now_wall_ms();
    /* Unique in the cluster and across restarts: the node, the start time, a counter. */
    snprintf(tid, sizeof(tid), "%.40s-%llx%llx", t->env.node_name, (unsigned long long)wall,
             (unsigned long long)(t->seq++ % 16));
    struct task *k = calloc(1, sizeof(*k));
    if (!k)
        return ferr_set(e, -ENOMEM, "tasks: out of memory");
    k->rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:s, s:{}}", "id", tid,
                       "kind", kind, "target", target, "node", t->env.node_name, "user", user,
                       "state", "running", "phase", "setup", "percent", 0, "start_ms",
                       (json_int_t)wall, "end_ms", (json_int_t)0, "result", "", "detail");
    int rc = k->rec ? taskrec_check(k->rec, false, e) : ferr_set(e, -ENOMEM, "out of memory");
    if (rc < 0) {
        json_decref(k->rec);
        free(k);
        return ferr_prefix(e, "task");
    }
    if (ops)
        k->ops = *ops;
    k->data = data;
    k->dirty = true;
    k->next = t->list;
    t->list = k;
    snprintf(id, TASKREC_ID_MAX + 1, "%s", tid);
    flush(t);
    return 0;
}

void tasks_update(struct tasks *t, const char *id, const char *phase, int percent, json_t *detail)
{
    struct task *k = id && *id ? find(t, id) : NULL;
    if (!k || k->ended) {
        json_decref(detail);
        return;
    }
    if (phase)
        k->dirty |= set_changed(k->rec, "phase", json_string(phase));
    if (percent >= 0 && percent <= 100)
        k->dirty |= set_changed(k->rec, "percent", json_integer(percent));
    if (json_is_object(detail))
        k->dirty |= set_changed(k->rec, "detail", json_incref(detail));
    json_decref(detail);
}

void tasks_end(struct tasks *t, const char *id, const char *state, const char *result,
               json_t *detail)
{
    struct task *k = id && *id ? find(t, id) : NULL;
    if (!k || k->ended) {
        json_decref(detail);
        return;
    }
    char text[TASKREC_RESULT_MAX + 1];
    snprintf(text, sizeof(text), "%s", result ? result : "");
    /* A cut inside a character would make the record unwritable. */
    size_t n = strlen(text);
    while (n > 0 && utf8_valid_len(text, n) < n)
        text[--n] = '\0';
    json_int_t start = json_integer_value(json_object_get(k->rec, "start_ms"));
    json_int_t end = (json_int_t)now_wall_ms();
    json_object_set_new(k->rec, "state", json_string(state));
    json_object_set_new(k->rec, "end_ms", json_integer(end < start ? start : end));
    json_object_set_new(k->rec, "result", json_string(text));
    if (strcmp(state, "done") == 0) {
        json_object_set_new(k->rec, "phase", json_string("done"));
        json_object_set_new(k->rec, "percent", json_integer(100));
    }
    if (json_is_object(detail) && json_object_size(detail) <= TASKREC_DETAIL_MAX)
        json_object_set(k->rec, "detail", detail);
    json_decref(detail);
    k->ended = true;
    k->dirty = true;
    k->ops = (struct task_ops){0};
    k->data = NULL;
    flush(t);
}

json_t *tasks_list(struct tasks *t, const struct taskrec_filter *f)
{
    json_t *all = replicated(t) ? cdb_tasks(cluster_db(t->env.cluster)) : json_array();
    if (!all)
        return NULL;
    if (!replicated(t)) {
        const char *id;
        json_t *v;
        json_object_foreach(t->kept, id, v) json_array_append(all, v);
    }
    /* This node's own tasks show their newest state, written or not. */
    for (struct task *k = t->list; k; k = k->next) {
        const char *id = jfield_text(k->rec, "id");
        size_t i;
        json_t *v;
        bool replaced = false;
        json_array_foreach(all, i, v)
        {
            if (strcmp(jfield_text(v, "id"), id) != 0)
                continue;
            if (!taskrec_final(jfield_text(v, "state"))) {
                json_t *c = json_deep_copy(k->rec);
                if (c) {
                    json_object_set(c, "generation", json_object_get(v, "generation"));
                    json_array_set_new(all, i, c);
                }
            }
            replaced = true;
            break;
        }
        if (!replaced)
            json_array_append(all, k->rec);
    }
    json_t *out = taskrec_select(all, f);
    json_decref(all);
    return out;
}

int tasks_get(struct tasks *t, const char *id, json_t **out, struct ferr *e)
{
    struct taskrec_filter f = {.limit = TASKREC_LIMIT_MAX * 2};
    json_t *all = tasks_list(t, &f);
    if (!all)
        return ferr_set(e, -ENOMEM, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        if (strcmp(jfield_text(v, "id"), id) == 0) {
            *out = json_incref(v);
            json_decref(all);
            return 0;
        }
    }
    json_decref(all);
    return ferr_set(e, FERR_NOTFOUND,
                    "no task %.64s (ferry task list shows them; ended tasks are kept for 7 days, "
                    "the last %d)",
                    id, CDB_TASKS_MAX);
}

int tasks_cancel(struct tasks *t, const char *id, struct ferr *e)
{
    struct task *k = find(t, id);
    if (!k)
        return ferr_set(e, FERR_NOTFOUND, "task %.64s does not run on %s", id, t->env.node_name);
    if (k->ended)
        return ferr_set(e, FERR_STATE, "task %.64s has ended (%s); there is nothing to cancel", id,
                        jfield_text(k->rec, "state"));
    if (!k->ops.cancel)
        return ferr_set(e, FERR_STATE, "task %.64s (%s %s) cannot be cancelled: %s", id,
                        jfield_text(k->rec, "kind"), jfield_text(k->rec, "target"),
                        k->ops.no_cancel ? k->ops.no_cancel : "its operation has no cancel");
    int rc = k->ops.cancel(k->data, e);
    if (rc < 0)
        ferr_prefix(e, "task %.64s", id);
    return rc;
}
