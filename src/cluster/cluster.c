/* SPDX-License-Identifier: MIT */
/* This node in a ferry cluster: open and close, its Raft member, status, views, peer calls. */
#include "cluster/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster_internal.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"

/* ---- state dir ---- */

int cluster__path(const struct cluster *c, const char *leaf, char *out, size_t size)
{
    return fmt_path(out, size, "%s/%s", c->cfg.state_dir, leaf);
}

/* ---- raft ---- */

void cluster__note_leader(struct cluster *c)
{
    if (!c->rn)
        return;
    struct raftnode_info ri;
    raftnode_info(c->rn, &ri);
    if (ri.leader_id && ri.leader_id != c->seen_leader) {
        if (c->seen_leader)
            c->leader_changes++;
        c->seen_leader = ri.leader_id;
    }
}

int cluster_metrics(struct cluster *c, struct cluster_metrics *out)
{
    memset(out, 0, sizeof(*out));
    if (!c->active || !c->rn)
        return -1;
    struct raftnode_info ri;
    raftnode_info(c->rn, &ri);
    cluster__note_leader(c);
    json_t *members = raftnode_members(c->rn);
    out->has_leader = ri.leader_id != 0;
    out->leading = ri.state == RAFTNODE_LEADER;
    out->quorum = cluster_quorum(c);
    out->term = ri.term;
    out->commit_index = ri.commit_index;
    out->leader_changes = c->leader_changes;
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        out->members++;
        if (role && strcmp(role, "voter") == 0)
            out->voters++;
    }
    json_decref(members);
    return 0;
}

static void on_state(struct raftnode *rn, const struct raftnode_info *info, void *data)
{
    struct cluster *c = data;
    cluster__note_leader(c);
    if (info->state == RAFTNODE_LEADER) {
        if (!c->leader_since) {
            c->leader_since = now_mono_ms();
            log_info("cluster: this node leads (term %llu)", (unsigned long long)info->term);
            events_add(c->events, NULL, "cluster.leader", "this node leads, term %llu",
                       (unsigned long long)info->term);
        }
        if (c->init_pending) {
            c->init_pending = false;
            cluster__write_first_records(c);
        }
    } else {
        c->leader_since = 0;
    }
}

static void on_apply_cb(struct raftnode *rn, uint64_t index, const json_t *cmd, int status,
                        const char *msg, void *data)
{
    struct cluster *c = data;
    cluster__applied(c);
    if (status != 0 || !cmd)
        return;
    const char *op = cdb_cmd_op(cmd);
    if (op && strcmp(op, "task_put") == 0 && c->task_fn) {
        json_t *rec = NULL;
        struct ferr e;
        const char *id = json_string_value(json_object_get(json_object_get(cmd, "task"), "id"));
        if (cdb_task_get(cluster_db(c), id, &rec, &e) == 0)
            c->task_fn(rec, c->task_data);
        json_decref(rec);
    }
    if (op && strcmp(op, "node_remove") == 0 &&
        (uint64_t)json_integer_value(json_object_get(cmd, "id")) == c->node_id)
        log_info("cluster: this node was removed from the cluster");
}

void cluster_set_task_fn(struct cluster *c, cluster_task_fn fn, void *data)
{
    c->task_fn = fn;
    c->task_data = data;
}

int cluster__start_raft(struct cluster *c, bool bootstrap, struct ferr *e)
{
    char dir[1200];
    if (cluster__path(c, "raft", dir, sizeof(dir)) < 0)
        return ferr_set(e, FERR_INVALID, "cluster: state dir path too long");
    c->db = cdb_new();
    if (!c->db)
        return ferr_set(e, -ENOMEM, "cluster: out of memory");
    struct raftnode_config rc;
    raftnode_config_init(&rc);
    rc.id = c->node_id;
    rc.address = c->cfg.raft_addr;
    rc.data_dir = dir;
    struct raftnode_callbacks cb = {.on_apply = on_apply_cb, .on_state = on_state, .data = c};
    int r = raftnode_new(c->loop, &rc, c->db, &cb, &c->rn, e);
    if (r < 0) {
        cdb_free(c->db);
        c->db = NULL;
        return r;
    }
    r = raftnode_start(c->rn, bootstrap, e);
    if (r < 0) {
        cluster__stop_raft(c, false);
        return r;
    }
    return 0;
}

struct raft_closing {
    struct cdb *db;
    char wipe[1200]; /* the raft dir to remove once libraft let go of it; "" keeps it */
};

static void raft_closed(void *data)
{
    struct raft_closing *rc = data;
    cdb_free(rc->db);
    if (rc->wipe[0])
        rm_rf(rc->wipe);
    free(rc);
}

void cluster__stop_raft(struct cluster *c, bool wipe)
{
    struct raft_closing *rc = calloc(1, sizeof(*rc));
    if (rc) {
        rc->db = c->db;
        if (wipe)
            cluster__path(c, "raft", rc->wipe, sizeof(rc->wipe));
    }
    if (c->rn && rc)
        raftnode_close(c->rn, raft_closed, rc);
    else if (c->rn)
        raftnode_close(c->rn, NULL, NULL); /* out of memory: leak the db rather than crash */
    else if (rc)
        raft_closed(rc);
    c->rn = NULL;
    c->db = NULL;
    c->leader_since = 0;
}

/* ---- views ---- */

static json_t *node_view(struct cluster *c, const json_t *n, uint64_t leader)
{
    uint64_t id = (uint64_t)json_integer_value(json_object_get(n, "id"));
    json_t *info = NULL;
    json_int_t last_contact = -1;
    if (id == c->node_id) {
        info = json_object();
        if (c->cfg.self_info)
            c->cfg.self_info(info, c->cfg.self_data);
        last_contact = 0;
    } else {
        struct health_peer *p = cluster__peer(c, id);
        if (p && p->info)
            info = json_incref(p->info);
        if (p && p->last_heard)
            last_contact = (json_int_t)(now_mono_ms() - p->last_heard);
    }
    json_t *mem = json_object_get(info, "memory");
    if (!json_is_object(mem))
        mem = json_object_get(n, "memory");
    json_int_t total = json_integer_value(json_object_get(mem, "total_mib"));
    json_int_t freem = json_integer_value(json_object_get(mem, "free_mib"));
    const char *accel = json_string_value(json_object_get(info, "accel"));
    if (!accel)
        accel = json_string_value(json_object_get(n, "accel"));
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:I, s:s, s:b, s:s, s:i, s:{s:I, s:I, s:I}, s:s, s:O, s:s, "
                  "s:s}",
                  "id", (json_int_t)id, "name", json_string_value(json_object_get(n, "name")),
                  "state", json_string_value(json_object_get(n, "state")), "state_changed_ms",
                  json_integer_value(json_object_get(n, "state_changed_ms")), "admin",
                  json_string_value(json_object_get(n, "admin")), "leader", id == leader, "role",
                  json_string_value(json_object_get(n, "role")), "vms",
                  (int)json_integer_value(json_object_get(info, "vms")), "memory", "total_mib",
                  total, "used_mib", total - freem, "free_mib", freem, "accel", accel ? accel : "",
                  "last_heartbeat_ms", last_contact >= 0 ? json_integer(last_contact) : json_null(),
                  "api_addr", json_string_value(json_object_get(n, "api_addr")), "raft_addr",
                  json_string_value(json_object_get(n, "raft_addr")));
    json_int_t late = cluster__late_ms(c, id);
    if (o)
        json_object_set_new(o, "heartbeat_late_ms", late >= 0 ? json_integer(late) : json_null());
    /* The node's CPUs, load and CPU use, and its host's memory, as it measured them (a node
     * older than these sends none: absent here too). */
    json_t *cpu = json_object_get(info, "cpu"), *hmem = json_object_get(info, "host_memory");
    if (o && json_is_object(cpu))
        json_object_set(o, "cpu", cpu);
    if (o && json_is_object(hmem))
        json_object_set(o, "host_memory", hmem);
    json_decref(info);
    return o;
}

static json_int_t stale_of(const struct raftnode_info *ri)
{
    return ri->leader_contact_ms == UINT64_MAX ? -1 : (json_int_t)ri->leader_contact_ms;
}

json_int_t cluster_stale_ms(struct cluster *c)
{
    if (!c || !c->active || !c->rn)
        return 0;
    struct raftnode_info ri;
    raftnode_info(c->rn, &ri);
    return stale_of(&ri);
}

json_t *cluster_nodes(struct cluster *c)
{
    json_t *arr = json_array();
    json_int_t stale = 0;
    if (c->active && c->db) {
        struct raftnode_info ri;
        raftnode_info(c->rn, &ri);
        json_t *nodes = cdb_nodes(c->db);
        size_t i;
        json_t *n;
        json_array_foreach(nodes, i, n)
        {
            json_t *v = node_view(c, n, ri.leader_id);
            if (v)
                json_array_append_new(arr, v);
        }
        json_decref(nodes);
        stale = stale_of(&ri);
    }
    return json_pack("{s:o, s:I}", "nodes", arr, "stale_ms", stale);
}

int cluster_status(struct cluster *c, json_t **out, struct ferr *e)
{
    if (!c->active || !c->rn)
        return ferr_set(e, FERR_STATE,
                        "not in a cluster (ferry cluster init, or ferry cluster join)");
    struct raftnode_info ri;
    raftnode_info(c->rn, &ri);
    json_t *members = json_array();
    json_t *raft_members = raftnode_members(c->rn);
    size_t i, voters = 0;
    json_t *m;
    json_t *leader = json_null();
    json_array_foreach(raft_members, i, m)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(m, "id"));
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "voter") == 0)
            voters++;
        json_t *n = NULL;
        cdb_node_get(c->db, id, &n, NULL);
        json_int_t contact = -1;
        if (id == c->node_id) {
            contact = 0;
        } else {
            struct health_peer *p = cluster__peer(c, id);
            if (p && p->last_heard)
                contact = (json_int_t)(now_mono_ms() - p->last_heard);
        }
        const char *name = n ? json_string_value(json_object_get(n, "name")) : NULL;
        json_array_append_new(
            members,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o}", "id", (json_int_t)id, "name",
                      name ? name : "?", "api_addr",
                      n ? json_string_value(json_object_get(n, "api_addr")) : "", "raft_addr",
                      json_string_value(json_object_get(m, "address")), "role", role ? role : "?",
                      "state", n ? json_string_value(json_object_get(n, "state")) : "joining",
                      "admin", n ? json_string_value(json_object_get(n, "admin")) : "active",
                      "leader", id == ri.leader_id, "last_contact_ms",
                      contact >= 0 ? json_integer(contact) : json_null()));
        if (id == ri.leader_id) {
            json_decref(leader);
            leader =
                json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "name", name ? name : "?",
                          "api_addr", n ? json_string_value(json_object_get(n, "api_addr")) : "");
        }
        json_decref(n);
    }
    json_decref(raft_members);
    bool quorum = cluster_quorum(c);
    *out = json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:o, s:b, s:i, s:I, "
        "s:{s:i, s:i, s:i, s:i}, s:o}",
        "cluster_id", c->cluster_id, "name", c->name, "node_id", (json_int_t)c->node_id,
        "node_name", c->cfg.node_name, "state", raftnode_state_name(ri.state), "term",
        (json_int_t)ri.term, "commit_index", (json_int_t)ri.commit_index, "last_applied",
        (json_int_t)ri.last_applied, "leader", leader, "quorum", quorum, "voters", (int)voters,
        "stale_ms", stale_of(&ri), "timeouts", "election_ms", RAFTNODE_ELECTION_TIMEOUT_MS,
        "heartbeat_ms", RAFTNODE_HEARTBEAT_TIMEOUT_MS, "node_heartbeat_ms",
        (int)c->cfg.heartbeat_ms, "node_down_after", (int)c->cfg.down_after, "members", members);
    json_t *tls = cluster_tls_info(c);
    if (*out && tls)
        json_object_set_new(*out, "tls", tls);
    else
        json_decref(tls);
    return *out ? 0 : ferr_set(e, -ENOMEM, "out of memory");
}

void cluster__relay(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                    void *data)
{
    struct pending *p = data;
    if (e)
        p->cb(0, NULL, e, p->data);
    else
        p->cb(status, json_incref(body), NULL, p->data);
    free(p);
}

/* ---- forwarding to a node ---- */

static int forward(struct cluster *c, const char *node, const char *method, const char *path,
                   const char *body, unsigned timeout_ms, peer_cb relay_cb, cluster_reply_cb cb,
                   void *data, struct ferr *e);

int cluster_forward(struct cluster *c, const char *node, const char *method, const char *path,
                    const char *body, cluster_reply_cb cb, void *data, struct ferr *e)
{
    return forward(c, node, method, path, body, 120000, cluster__relay, cb, data, e);
}

/* cluster__relay, with an error answer turned into e. */
static void relay_checked(int status, json_t *body, const char *raw, size_t len,
                          const struct ferr *e, void *data)
{
    struct pending *p = data;
    struct ferr fe = {0};
    if (reply_failed(status, body, e, &fe) < 0)
        p->cb(0, NULL, &fe, p->data);
    else
        p->cb(status, json_incref(body), NULL, p->data);
    free(p);
}

int cluster_call(struct cluster *c, const char *node, const char *method, const char *path,
                 const char *body, cluster_reply_cb cb, void *data, struct ferr *e)
{
    return forward(c, node, method, path, body, 120000, relay_checked, cb, data, e);
}

int cluster_call_within(struct cluster *c, const char *node, const char *method, const char *path,
                        const char *body, unsigned timeout_ms, cluster_reply_cb cb, void *data,
                        struct ferr *e)
{
    return forward(c, node, method, path, body, timeout_ms, relay_checked, cb, data, e);
}

/* The API address of node into api (size bytes), or an error: not in a cluster, no such node,
 * or a node the cluster counts down (said at once rather than after a connect that may hang
 * until the timeout: a node cut off the network drops every packet). */
static int node_api(struct cluster *c, const char *node, char *api, size_t size, struct ferr *e)
{
    json_t *n = NULL;
    if (!c->active || !c->db)
        return ferr_set(e, FERR_STATE, "not in a cluster");
    if (cdb_node_find(c->db, node, &n, e) < 0)
        return ferr_set(e, FERR_NOTFOUND, "no node named %s in the cluster", node);
    snprintf(api, size, "%s", jfield_text(n, "api_addr"));
    int rc = 0;
    if (strcmp(jfield_text(n, "state"), "down") == 0) {
        json_int_t since = json_integer_value(json_object_get(n, "state_changed_ms"));
        json_int_t ago = since > 0 ? ((json_int_t)now_wall_ms() - since) / 1000 : 0;
        rc = ferr_set(e, FERR_UNAVAIL, "node %s is down (for %lld s%s%s)", node,
                      (long long)(ago > 0 ? ago : 0), jfield_text(n, "state_reason")[0] ? ": " : "",
                      jfield_text(n, "state_reason"));
    }
    json_decref(n);
    return rc;
}

static int forward(struct cluster *c, const char *node, const char *method, const char *path,
                   const char *body, unsigned timeout_ms, peer_cb relay_cb, cluster_reply_cb cb,
                   void *data, struct ferr *e)
{
    char api[64];
    if (node_api(c, node, api, sizeof(api), e) < 0)
        return e->code;
    struct pending *p = malloc(sizeof(*p));
    if (!p)
        return ferr_set(e, -ENOMEM, "out of memory");
    p->cb = cb;
    p->data = data;
    int rc = peer_request(c->loop, api, cluster__ca(c), c->secret, method, path, body, timeout_ms,
                          relay_cb, p, e);
    if (rc < 0)
        free(p);
    return rc;
}

int cluster_upgrade(struct cluster *c, const char *node, const char *path, unsigned timeout_ms,
                    peer_upgrade_cb cb, void *data, struct ferr *e)
{
    char api[64];
    if (node_api(c, node, api, sizeof(api), e) < 0)
        return e->code;
    return peer_upgrade(c->loop, api, cluster__ca(c), c->secret, path, timeout_ms, cb, data, e);
}

/* ---- auth, open, close ---- */

const char *cluster__ca(const struct cluster *c)
{
    return c->cfg.certs ? certs_ca(c->cfg.certs) : NULL;
}

const char *cluster_ca(const struct cluster *c)
{
    return cluster__ca(c);
}

json_t *cluster_tls_info(const struct cluster *c)
{
    const struct certs *t = c->cfg.certs;
    if (!t)
        return NULL;
    char until[32];
    time_t end = certs_node_not_after(t);
    struct tm tm;
    gmtime_r(&end, &tm);
    strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_pack("{s:s, s:s, s:s}", "ca_fingerprint", certs_ca_fingerprint(t),
                     "node_fingerprint", certs_node_fingerprint(t), "node_not_after", until);
}

bool cluster_secret_matches(const struct cluster *c, const char *bearer)
{
    return c->active && c->secret[0] && secret_equal(bearer, c->secret);
}

bool cluster_join_token_matches(const struct cluster *c, const char *bearer)
{
    return c->active && c->token[0] && secret_equal(bearer, c->token);
}

bool cluster_quorum(const struct cluster *c)
{
    if (!c->active || !c->rn)
        return false;
    struct raftnode_info ri;
    raftnode_info(c->rn, &ri);
    return ri.state == RAFTNODE_LEADER || (ri.leader_id && ri.leader_contact_ms != UINT64_MAX &&
                                           ri.leader_contact_ms < 2 * RAFTNODE_ELECTION_TIMEOUT_MS);
}

bool cluster_leading(const struct cluster *c)
{
    return c->active && c->rn && raftnode_is_leader(c->rn);
}

bool cluster_active(const struct cluster *c)
{
    return c->active && c->rn;
}

const struct cdb *cluster_db(const struct cluster *c)
{
    return c->db;
}

const char *cluster_self(const struct cluster *c)
{
    return c->cfg.node_name;
}

int cluster_open(uv_loop_t *loop, const struct cluster_config *cfg, struct events *ev,
                 struct cluster **out, struct ferr *e)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return ferr_set(e, -ENOMEM, "out of memory");
    c->loop = loop;
    c->cfg = *cfg;
    c->events = ev;
    if (c->cfg.heartbeat_ms < CLUSTER_HEARTBEAT_MIN_MS ||
        c->cfg.heartbeat_ms > CLUSTER_HEARTBEAT_MAX_MS ||
        c->cfg.down_after < CLUSTER_DOWN_AFTER_MIN || c->cfg.down_after > CLUSTER_DOWN_AFTER_MAX) {
        free(c);
        return ferr_set(e, FERR_INVALID,
                        "cluster: heartbeat must be %d..%d ms and down-after %d..%d beats",
                        CLUSTER_HEARTBEAT_MIN_MS, CLUSTER_HEARTBEAT_MAX_MS, CLUSTER_DOWN_AFTER_MIN,
                        CLUSTER_DOWN_AFTER_MAX);
    }
    int rc = cluster__load_state(c, e);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->cluster_ca = c->active;
    if (c->active) {
        if (!c->cfg.api_addr[0]) {
            ferr_set(e, FERR_STATE,
                     "cluster: this node is in cluster %s but ferryd has no --listen "
                     "address; start it with the one it joined with",
                     c->cluster_id);
            free(c);
            return FERR_STATE;
        }
        rc = cluster__start_raft(c, false, e);
        if (rc < 0) {
            free(c);
            return rc;
        }
        log_info("cluster: member of %s (%s) as node %llu", c->name, c->cluster_id,
                 (unsigned long long)c->node_id);
    }
    uv_timer_init(loop, &c->hb);
    uv_timer_init(loop, &c->health);
    uv_timer_init(loop, &c->op_timer);
    uv_timer_init(loop, &c->wake);
    c->hb.data = c;
    c->health.data = c;
    c->op_timer.data = c;
    c->wake.data = c;
    cluster__heartbeat_start(c);
    *out = c;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    if (--c->close_pending > 0)
        return;
    cluster__peers_clear(c);
    free(c->join_ca);
    c->join_ca = NULL;
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    /* A write forwarded to the leader still owes an answer: its callback comes from the
     * thread pool later and reads c (write.c, forwarded_write), so c stays until then. */
    if (c->forwards > 0)
        c->closed = true;
    else
        free(c);
    if (cb)
        cb(data);
}

static void raft_done_close(void *data)
{
    struct cluster *c = data;
    cdb_free(c->db);
    c->db = NULL;
    c->close_pending = 4;
    uv_close((uv_handle_t *)&c->hb, handle_closed);
    uv_close((uv_handle_t *)&c->health, handle_closed);
    uv_close((uv_handle_t *)&c->op_timer, handle_closed);
    uv_close((uv_handle_t *)&c->wake, handle_closed);
}

void cluster_close(struct cluster *c, void (*cb)(void *data), void *data)
{
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    if (c->busy && c->op.cb) {
        struct ferr e;
        ferr_set(&e, -ECANCELED, "cluster: ferryd is shutting down");
        cluster__finish_op(c, 0, NULL, &e);
    }
    cluster__waiters_cancel(c);
    cluster__events_close(c);
    uv_timer_stop(&c->hb);
    uv_timer_stop(&c->health);
    if (c->rn) {
        struct raftnode *rn = c->rn;
        c->rn = NULL;
        raftnode_close(rn, raft_done_close, c);
    } else {
        raft_done_close(c);
    }
}
