/* SPDX-License-Identifier: MIT */
/* Writes to the cluster database (on the leader or forwarded to it) and waits for applies. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "common/log.h"
#include "common/util.h"

/* ---- waiting for this node to apply something ---- */

/*
 * A wait is checked on the loop pass after every entry (or snapshot) this node applies and at
 * its deadline, never by polling: cluster__applied() (from raftnode's apply callback) and
 * cluster_wait_until() run wake_tick on the next pass, and wake_tick sleeps until the
 * earliest deadline when nothing was applied.
 */
struct cluster_waiter {
    struct cluster_waiter *next;
    cluster_wait_pred pred;
    cluster_wait_cb cb;
    void *data;
    uint64_t deadline; /* monotonic ms */
};

/* The database a predicate sees: NULL while this node runs no cluster member. */
static const struct cdb *waited_db(const struct cluster *c)
{
    return cluster_active(c) ? c->db : NULL;
}

/* Unlinks and returns the first waiter that is done (its predicate holds: *status 0; its
 * deadline passed: FERR_TIMEOUT), or NULL. */
static struct cluster_waiter *take_done(struct cluster *c, uint64_t now, int *status)
{
    for (struct cluster_waiter **pp = &c->waiters; *pp; pp = &(*pp)->next) {
        struct cluster_waiter *w = *pp;
        bool held = w->pred(waited_db(c), w->data);
        if (held || now >= w->deadline) {
            *pp = w->next;
            *status = held ? 0 : FERR_TIMEOUT;
            return w;
        }
    }
    return NULL;
}

static void wake_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    uint64_t now = now_mono_ms();
    struct cluster_waiter *w;
    int status;
    /* One at a time, from the start again: a callback may add or end waits. */
    while ((w = take_done(c, now, &status))) {
        w->cb(status, w->data);
        free(w);
        if (c->closing)
            return;
    }
    uint64_t next = UINT64_MAX;
    for (w = c->waiters; w; w = w->next)
        if (w->deadline < next)
            next = w->deadline;
    if (next == UINT64_MAX)
        uv_timer_stop(t);
    else
        uv_timer_start(t, wake_tick, next - now, 0);
}

void cluster__applied(struct cluster *c)
{
    /* Nobody waits before cluster_open returns (its Raft node applies its log from there,
     * before the timer exists). */
    if (c->waiters && !c->closing)
        uv_timer_start(&c->wake, wake_tick, 0, 0);
}

int cluster_wait_until(struct cluster *c, cluster_wait_pred pred, unsigned timeout_ms,
                       cluster_wait_cb cb, void *data, struct ferr *e)
{
    if (c->closing)
        return ferr_set(e, -ECANCELED, "cluster: ferryd is shutting down");
    struct cluster_waiter *w = calloc(1, sizeof(*w)), **tail = &c->waiters;
    if (!w)
        return ferr_set(e, -ENOMEM, "cluster: out of memory");
    w->pred = pred;
    w->cb = cb;
    w->data = data;
    w->deadline = now_mono_ms() + timeout_ms;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    uv_timer_start(&c->wake, wake_tick, 0, 0);
    return 0;
}

void cluster__waiters_cancel(struct cluster *c)
{
    struct cluster_waiter *w;
    uv_timer_stop(&c->wake);
    while ((w = c->waiters)) {
        c->waiters = w->next;
        w->cb(-ECANCELED, w->data);
        free(w);
    }
}

/* ---- writes ---- */

struct write_ctx {
    struct cluster *c;
    cluster_reply_cb cb;
    void *data;
    uint64_t index; /* what answer_when_applied waits for */
};

/* NULL when out of memory. */
static struct write_ctx *write_ctx_new(struct cluster *c, cluster_reply_cb cb, void *data,
                                       uint64_t index)
{
    struct write_ctx *w = malloc(sizeof(*w));
    if (w)
        *w = (struct write_ctx){c, cb, data, index};
    return w;
}

static void answer_index(cluster_reply_cb cb, void *data, uint64_t index)
{
    cb(200, json_pack("{s:I}", "index", (json_int_t)index), NULL, data);
}

static bool index_applied(const struct cdb *db, void *data)
{
    const struct write_ctx *w = data;
    return db && cdb_applied_index(db) >= w->index;
}

static void index_waited(int status, void *data)
{
    struct write_ctx *w = data;
    if (status == 0)
        answer_index(w->cb, w->data, w->index);
    else if (status == FERR_TIMEOUT)
        reply_err(w->cb, w->data, FERR_TIMEOUT,
                  "cluster: the write committed (index %llu) but this node has not applied it yet",
                  (unsigned long long)w->index);
    else
        reply_err(w->cb, w->data, status, "cluster: ferryd is shutting down");
    free(w);
}

/* Answers once this node applied index (read-your-writes on followers). */
static void answer_when_applied(struct cluster *c, uint64_t index, cluster_reply_cb cb, void *data)
{
    if (c->db && cdb_applied_index(c->db) >= index) {
        answer_index(cb, data, index);
        return;
    }
    struct write_ctx *w = write_ctx_new(c, cb, data, index);
    struct ferr e = {0};
    if (!w) {
        reply_err(cb, data, -ENOMEM, "cluster: out of memory");
        return;
    }
    if (cluster_wait_until(c, index_applied, WRITE_TIMEOUT_MS, index_waited, w, &e) < 0) {
        free(w);
        cb(0, NULL, &e, data);
    }
}

static void applied_local(struct raftnode *rn, int status, uint64_t index, const char *msg,
                          void *data)
{
    struct write_ctx *w = data;
    if (status == 0) {
        /* Every follower hears of the commit now, not with the next heartbeat (50-100 ms):
         * the node that forwarded this write answers only once it applied it, and a user who
         * wrote through one node and reads through another sees the write (raftnode_nudge). */
        raftnode_nudge(rn);
        answer_index(w->cb, w->data, index);
    } else {
        reply_err(w->cb, w->data, status, "cluster: %s", msg ? msg : ferr_str(status));
    }
    free(w);
}

static void forwarded_write(int status, json_t *body, const char *raw, size_t len,
                            const struct ferr *e, void *data)
{
    struct write_ctx *w = data;
    struct cluster *c = w->c;
    cluster_reply_cb cb = w->cb;
    void *cbdata = w->data;
    free(w);
    c->forwards--;
    if (c->closing) { /* ferryd stops: nothing more is waited for */
        bool last = c->closed && c->forwards == 0;
        reply_err(cb, cbdata, -ECANCELED, "cluster: ferryd is shutting down");
        if (last)
            free(c);
        return;
    }
    if (e) {
        reply_err(cb, cbdata, FERR_UNAVAIL, "cluster: no quorum: the leader is unreachable (%s)",
                  e->msg);
        return;
    }
    json_t *idx = json_object_get(body, "index");
    if (status == 200 && json_is_integer(idx)) {
        answer_when_applied(c, (uint64_t)json_integer_value(idx), cb, cbdata);
        return;
    }
    /* The leader refused it: an error like a local refusal, never a status to misread (a
     * refused compare-and-set taken for success would hand a VM to two owners). */
    struct ferr fe = {0};
    if (reply_failed(status, body, NULL, &fe) == 0)
        ferr_set(&fe, FERR_PROTO, "cluster: the leader answered %d without an index", status);
    cb(0, NULL, &fe, cbdata);
}

static const char *leader_api(struct cluster *c, uint64_t *leader_id)
{
    static char addr[64];
    uint64_t id = c->rn ? raftnode_leader(c->rn, NULL) : 0;
    if (leader_id)
        *leader_id = id;
    if (!id)
        return NULL;
    json_t *n = NULL;
    if (cdb_node_get(c->db, id, &n, NULL) < 0)
        return NULL;
    snprintf(addr, sizeof(addr), "%s", json_string_value(json_object_get(n, "api_addr")));
    json_decref(n);
    return addr[0] ? addr : NULL;
}

int cluster_write(struct cluster *c, const json_t *cmd, cluster_reply_cb cb, void *data,
                  struct ferr *e)
{
    if (!c->active || !c->rn)
        return ferr_set(e, FERR_STATE, "not in a cluster (ferry cluster init or join)");
    struct write_ctx *w = write_ctx_new(c, cb, data, 0);
    if (!w)
        return ferr_set(e, -ENOMEM, "cluster: out of memory");
    if (raftnode_is_leader(c->rn)) {
        int rc = raftnode_apply(c->rn, cmd, applied_local, w, e);
        if (rc < 0)
            free(w);
        return rc;
    }
    const char *api = leader_api(c, NULL);
    if (!api) {
        free(w);
        return ferr_set(e, FERR_UNAVAIL,
                        "cluster: no quorum: no leader is known; writes are refused until the "
                        "cluster elects one");
    }
    json_t *body = json_pack("{s:O}", "cmd", cmd);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc = text
                 ? peer_request(c->loop, api, cluster__ca(c), c->secret, "POST",
                                "/v1/internal/apply", text, WRITE_TIMEOUT_MS, forwarded_write, w, e)
                 : ferr_set(e, -ENOMEM, "cluster: out of memory");
    free(text);
    if (rc < 0)
        free(w);
    else
        c->forwards++;
    return rc;
}

static void ignore_reply(int status, json_t *body, const struct ferr *e, void *data)
{
    if (e)
        log_warn("cluster: %s: %s", (const char *)data, e->msg);
    json_decref(body);
}

void cluster__write_bg(struct cluster *c, json_t *cmd, const char *what)
{
    struct ferr e = {0};
    if (cmd && cluster_write(c, cmd, ignore_reply, (void *)what, &e) < 0)
        log_warn("cluster: %s: %s", what, e.msg);
    json_decref(cmd);
}

/*
 * Cluster events (a migration's record above all) must not be lost to a moment without
 * quorum: they wait in a queue, oldest first, and are written one at a time. A write that
 * fails for a reason that may pass (no leader, a timeout, a lost leadership) is asked again
 * on every heartbeat tick. Each event carries a uid (command version 4), so a try that was
 * applied although its answer was lost is applied as nothing the second time: the record is
 * written once. In a cluster with a node older than version 4 events carry no uid and are
 * tried once, as before. The queue is bounded (EVQ_MAX, the oldest go first) and an event
 * that could not be written for EVQ_MAX_AGE_MS is dropped; both are logged with the event.
 */
#define EVQ_MAX 1000
#define EVQ_MAX_AGE_MS (60 * 60 * 1000)

struct event_queue {
    struct cluster *c; /* NULL once the cluster closed; the answer in flight frees the queue */
    json_t *cmds;      /* event_add commands, oldest first */
    json_t *queued_ms; /* when each was queued (monotonic ms), same order */
    bool inflight;
    bool failing; /* the last try failed: said once per outage */
    uint64_t boot_ms, seq;
};

static void evq_drop(struct event_queue *q, size_t i, const char *why)
{
    json_t *cmd = json_array_get(q->cmds, i);
    log_warn("cluster: event %s (%s) dropped: %s", json_string_value(json_object_get(cmd, "type")),
             json_string_value(json_object_get(cmd, "message")), why);
    json_array_remove(q->cmds, i);
    json_array_remove(q->queued_ms, i);
}

/* The answer to the head's write: true if the head is done with (written, or dropped), false
 * if it waits for the next tick. */
static bool evq_settle(struct event_queue *q, const struct ferr *e)
{
    json_t *cmd = json_array_get(q->cmds, 0);
    if (!e) {
        json_array_remove(q->cmds, 0);
        json_array_remove(q->queued_ms, 0);
        if (q->failing)
            log_info("cluster: events are written again (%zu more wait)", json_array_size(q->cmds));
        q->failing = false;
        return true;
    }
    bool for_good =
        e->code == FERR_INVALID || e->code == FERR_LIMIT || !q->c || !cluster_active(q->c);
    if (for_good || !json_object_get(cmd, "uid")) {
        evq_drop(q, 0, e->msg);
        return true;
    }
    uint64_t queued = (uint64_t)json_integer_value(json_array_get(q->queued_ms, 0));
    if (now_mono_ms() - queued > EVQ_MAX_AGE_MS) {
        evq_drop(q, 0, "it could not be written for an hour");
        return true;
    }
    if (!q->failing)
        log_warn("cluster: cannot write events yet (%s); %zu wait and are asked again every "
                 "heartbeat",
                 e->msg, json_array_size(q->cmds));
    q->failing = true;
    return false;
}

static void evq_pump(struct event_queue *q);

static void evq_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct event_queue *q = data;
    json_decref(body);
    q->inflight = false;
    if (!q->c) {
        json_decref(q->cmds);
        json_decref(q->queued_ms);
        free(q);
        return;
    }
    if (evq_settle(q, e))
        evq_pump(q);
}

static void evq_pump(struct event_queue *q)
{
    while (q->c && !q->c->closing && !q->inflight && json_array_size(q->cmds) > 0) {
        struct ferr e = {0};
        q->inflight = true;
        if (cluster_write(q->c, json_array_get(q->cmds, 0), evq_written, q, &e) == 0)
            return;
        q->inflight = false;
        if (!evq_settle(q, &e))
            return;
    }
}

void cluster__events_pump(struct cluster *c)
{
    if (c->evq)
        evq_pump(c->evq);
}

void cluster__events_close(struct cluster *c)
{
    struct event_queue *q = c->evq;
    if (!q)
        return;
    c->evq = NULL;
    q->c = NULL;
    if (json_array_size(q->cmds) > (q->inflight ? 1u : 0u))
        log_warn("cluster: %zu events were not written before ferryd stopped",
                 json_array_size(q->cmds) - (q->inflight ? 1u : 0u));
    if (q->inflight)
        return;
    json_decref(q->cmds);
    json_decref(q->queued_ms);
    free(q);
}

void cluster_event_add(struct cluster *c, const char *type, const char *vm, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        log_warn("cluster: event: out of memory");
        return;
    }
    if (!cluster_active(c) || c->closing) {
        log_warn("cluster: event %s (%s) not written: not in a cluster", type, msg);
        free(msg);
        return;
    }
    if (!c->evq) {
        c->evq = calloc(1, sizeof(*c->evq));
        if (c->evq) {
            c->evq->c = c;
            c->evq->cmds = json_array();
            c->evq->queued_ms = json_array();
            c->evq->boot_ms = now_wall_ms();
        }
        if (!c->evq || !c->evq->cmds || !c->evq->queued_ms) {
            if (c->evq) {
                json_decref(c->evq->cmds);
                json_decref(c->evq->queued_ms);
            }
            free(c->evq);
            c->evq = NULL;
            log_warn("cluster: event %s (%s) not written: out of memory", type, msg);
            free(msg);
            return;
        }
    }
    struct event_queue *q = c->evq;
    char uid[64];
    snprintf(uid, sizeof(uid), "%" PRIx64 "-%" PRIx64 "-%" PRIx64, c->node_id, q->boot_ms,
             ++q->seq);
    bool with_uid = c->db && cdb_cmd_version_min(c->db) >= 4;
    json_t *cmd = cdb_cmd_event_add_uid(now_wall_ms(), type, c->cfg.node_name, vm ? vm : "", msg,
                                        with_uid ? uid : NULL);
    free(msg);
    if (!cmd || json_array_append_new(q->cmds, cmd) < 0 ||
        json_array_append_new(q->queued_ms, json_integer((json_int_t)now_mono_ms())) < 0) {
        log_warn("cluster: event %s not written: out of memory", type);
        if (json_array_size(q->cmds) > json_array_size(q->queued_ms))
            json_array_remove(q->cmds, json_array_size(q->cmds) - 1);
        return;
    }
    while (json_array_size(q->cmds) > EVQ_MAX) /* the oldest not in flight goes */
        evq_drop(q, q->inflight ? 1 : 0, "too many events wait for the cluster database");
    evq_pump(q);
}

void cluster__to_leader(struct cluster *c, const char *path, const json_t *body, const char *bearer,
                        cluster_reply_cb cb, void *data)
{
    const char *api = leader_api(c, NULL);
    if (!api) {
        reply_err(cb, data, FERR_UNAVAIL, "cluster: no leader is known right now; try again");
        return;
    }
    struct pending *p = malloc(sizeof(*p));
    char *text = json_dumps(body, JSON_COMPACT);
    struct ferr e = {0};
    if (!p || !text) {
        free(p);
        free(text);
        reply_err(cb, data, -ENOMEM, "cluster: out of memory");
        return;
    }
    p->cb = cb;
    p->data = data;
    if (peer_request(c->loop, api, cluster__ca(c), bearer, "POST", path, text, WRITE_TIMEOUT_MS,
                     cluster__relay, p, &e) < 0) {
        free(p);
        cb(0, NULL, &e, data);
    }
    free(text);
}

/* ---- writes from other nodes ---- */

void cluster_on_apply(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data)
{
    json_t *cmd = json_object_get(body, "cmd");
    struct ferr e = {0};
    if (!c->active || !json_is_object(cmd)) {
        reply_err(cb, data, FERR_INVALID, "apply: expected {\"cmd\": {...}} on a member");
        return;
    }
    if (!raftnode_is_leader(c->rn)) {
        /* Leadership moved since the sender looked: pass it on once. */
        cluster__to_leader(c, "/v1/internal/apply", body, c->secret, cb, data);
        return;
    }
    if (cluster_write(c, cmd, cb, data, &e) < 0)
        cb(0, NULL, &e, data);
}
