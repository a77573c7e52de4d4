/* SPDX-License-Identifier: MIT */
/* This node's membership in a ferry cluster: init, join, leave, heartbeats and node health,
 * and writes to the cluster database, forwarded to the Raft leader. */
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/http.h"
#include "cluster/peer.h"
#include "cluster/raftnode.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_PEERS 64
#define JOIN_TRIES 20
#define JOIN_RETRY_MS 500
#define PROMOTE_TRIES 120
#define PROMOTE_RETRY_MS 500
#define CATCHUP_WAIT_MS 15000
#define WRITE_TIMEOUT_MS 5000

struct peer_state {
    uint64_t id;
    uint64_t first_seen; /* monotonic ms this node first knew of it */
    uint64_t last_heard; /* monotonic ms; 0 = never */
    json_t *info;        /* last heartbeat body */
    char proposed[16];   /* a health write ("up"|"down") in flight ("" = none) */
    uint64_t proposed_at;
};

struct pending {
    cluster_reply_cb cb;
    void *data;
};

struct cluster {
    uv_loop_t *loop;
    struct cluster_config cfg;
    struct events *events;
    /* membership, persisted in cluster.json */
    bool active;
    char cluster_id[40];
    char name[64];
    char secret[100];
    char token[100];
    uint64_t node_id;
    struct cdb *db;
    struct raftnode *rn;
    uint64_t leader_since; /* monotonic ms when this node last became leader; 0 otherwise */
    uint64_t announced_at; /* monotonic ms of the last write of this node's cmd_version */
    bool busy;             /* an init, join or leave is under way */
    struct pending op;     /* its caller */
    bool init_pending;     /* waiting to lead, to write the cluster's first records */
    uint64_t catchup_deadline;
    uv_timer_t hb;
    uv_timer_t health;
    uv_timer_t op_timer;
    struct peer_state peers[MAX_PEERS];
    unsigned npeers;
    /* join retries */
    char join_addr[64];
    char join_body[1024];
    char join_token[100];
    unsigned join_tries;
    bool closing;
    void (*close_cb)(void *);
    void *close_data;
    unsigned close_pending;
};

/* ---- small helpers ---- */

static void rand_hex(char *out, size_t bytes)
{
    unsigned char raw[64];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, raw, bytes) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)bytes) /* never expected; still not a predictable secret */
        for (size_t i = 0; i < bytes; i++)
            raw[i] = (unsigned char)(rand() ^ (int)now_mono_ms());
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static uint64_t rand_id(void)
{
    char hex[17];
    rand_hex(hex, 8);
    uint64_t v = strtoull(hex, NULL, 16) & CDB_ID_MAX;
    return v ? v : 1;
}

static void reply(cluster_reply_cb cb, void *data, int status, json_t *body)
{
    cb(status, body, NULL, data);
}

static void finish_op(struct cluster *c, int status, json_t *body, const struct ferr *e)
{
    struct pending op = c->op;
    c->busy = false;
    c->op.cb = NULL;
    uv_timer_stop(&c->op_timer);
    if (op.cb)
        op.cb(status, body, e, op.data);
    else
        json_decref(body);
}

static struct peer_state *peer(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    if (c->npeers == MAX_PEERS)
        return NULL;
    struct peer_state *p = &c->peers[c->npeers++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->first_seen = now_mono_ms();
    return p;
}

/* ---- cluster.json ---- */

static int path_of(const struct cluster *c, const char *leaf, char *out, size_t size)
{
    return fmt_path(out, size, "%s/%s", c->cfg.state_dir, leaf);
}

static int save_state(struct cluster *c, struct ferr *e)
{
    char p[1200];
    if (path_of(c, "cluster.json", p, sizeof(p)) < 0)
        return ferr_set(e, FERR_INVALID, "cluster: state dir path too long");
    json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "format", 1, "cluster_id",
                          c->cluster_id, "name", c->name, "node_id", (json_int_t)c->node_id,
                          "secret", c->secret, "token", c->token, "raft_addr", c->cfg.raft_addr,
                          "api_addr", c->cfg.api_addr);
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text)
        return ferr_set(e, -ENOMEM, "cluster: out of memory");
    int rc = file_write_atomic(p, text, strlen(text), e);
    free(text);
    return rc;
}

/* Forgets membership: cluster.json goes now; the raft dir goes with stop_raft_wipe (or here
 * when no Raft member runs). */
static void forget_state(struct cluster *c)
{
    char p[1200];
    if (path_of(c, "cluster.json", p, sizeof(p)) == 0)
        unlink(p);
    if (!c->rn && path_of(c, "raft", p, sizeof(p)) == 0)
        rm_rf(p);
    c->active = false;
    c->cluster_id[0] = c->name[0] = c->secret[0] = c->token[0] = '\0';
    c->node_id = 0;
    for (unsigned i = 0; i < c->npeers; i++)
        json_decref(c->peers[i].info);
    c->npeers = 0;
}

static int load_state(struct cluster *c, struct ferr *e)
{
    char p[1200], *text = NULL;
    if (path_of(c, "cluster.json", p, sizeof(p)) < 0)
        return ferr_set(e, FERR_INVALID, "cluster: state dir path too long");
    if (access(p, F_OK) != 0)
        return 0; /* not a member */
    int rc = file_read_all(p, 65536, &text, NULL, e);
    if (rc < 0)
        return rc;
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    const char *id = json_string_value(json_object_get(o, "cluster_id"));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *secret = json_string_value(json_object_get(o, "secret"));
    const char *token = json_string_value(json_object_get(o, "token"));
    json_int_t nid = json_integer_value(json_object_get(o, "node_id"));
    if (!o || json_integer_value(json_object_get(o, "format")) != 1 || !id || !name || !secret ||
        !token || nid <= 0 || strlen(id) >= sizeof(c->cluster_id) ||
        strlen(name) >= sizeof(c->name) || strlen(secret) >= sizeof(c->secret) ||
        strlen(token) >= sizeof(c->token)) {
        json_decref(o);
        return ferr_set(e, FERR_INVALID,
                        "cluster: %s is damaged; to rejoin, remove it and %s/raft, then run "
                        "ferry cluster join",
                        p, c->cfg.state_dir);
    }
    strcpy(c->cluster_id, id);
    strcpy(c->name, name);
    strcpy(c->secret, secret);
    strcpy(c->token, token);
    c->node_id = (uint64_t)nid;
    json_decref(o);
    c->active = true;
    return 0;
}

/* ---- raft ---- */

static void write_self_voter(struct cluster *c);

static void on_state(struct raftnode *rn, const struct raftnode_info *info, void *data)
{
    struct cluster *c = data;
    if (info->state == RAFTNODE_LEADER) {
        if (!c->leader_since) {
            c->leader_since = now_mono_ms();
            log_info("cluster: this node leads (term %llu)", (unsigned long long)info->term);
            events_add(c->events, NULL, "cluster.leader", "this node leads, term %llu",
                       (unsigned long long)info->term);
        }
        if (c->init_pending) {
            c->init_pending = false;
            write_self_voter(c);
        }
    } else {
        c->leader_since = 0;
    }
}

static void on_apply_cb(struct raftnode *rn, uint64_t index, const json_t *cmd, int status,
                        const char *msg, void *data)
{
    struct cluster *c = data;
    if (status != 0 || !cmd)
        return;
    const char *op = cdb_cmd_op(cmd);
    if (op && strcmp(op, "node_remove") == 0 &&
        (uint64_t)json_integer_value(json_object_get(cmd, "id")) == c->node_id)
        log_info("cluster: this node was removed from the cluster");
}

static void stop_raft(struct cluster *c, void (*cb)(void *), void *data);

static int start_raft(struct cluster *c, bool bootstrap, struct ferr *e)
{
    char dir[1200];
    if (path_of(c, "raft", dir, sizeof(dir)) < 0)
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
        stop_raft(c, NULL, NULL);
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

/* Stops this node's Raft member; its database is freed (and, with wipe, its data dir removed)
 * once libraft has closed its files. */
static void stop_raft_wipe(struct cluster *c, bool wipe)
{
    struct raft_closing *rc = calloc(1, sizeof(*rc));
    if (rc) {
        rc->db = c->db;
        if (wipe)
            path_of(c, "raft", rc->wipe, sizeof(rc->wipe));
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

static void stop_raft(struct cluster *c, void (*cb)(void *), void *data)
{
    stop_raft_wipe(c, false);
    if (cb)
        cb(data);
}

/* ---- writes ---- */

struct write_ctx {
    struct cluster *c;
    cluster_reply_cb cb;
    void *data;
    uint64_t index;
    uint64_t deadline;
    uv_timer_t wait;
};

static void write_ctx_closed(uv_handle_t *h)
{
    free(h->data);
}

static void write_wait_tick(uv_timer_t *t)
{
    struct write_ctx *w = t->data;
    struct cluster *c = w->c;
    bool done = c->db && cdb_applied_index(c->db) >= w->index;
    if (!done && now_mono_ms() < w->deadline)
        return;
    uv_timer_stop(t);
    if (done)
        reply(w->cb, w->data, 200, json_pack("{s:I}", "index", (json_int_t)w->index));
    else
        reply_err(w->cb, w->data, FERR_TIMEOUT,
                  "cluster: the write committed (index %llu) but this node has not applied it yet",
                  (unsigned long long)w->index);
    uv_close((uv_handle_t *)t, write_ctx_closed);
}

/* Answers once this node applied index (read-your-writes on followers). */
static void answer_when_applied(struct cluster *c, uint64_t index, cluster_reply_cb cb, void *data)
{
    if (c->db && cdb_applied_index(c->db) >= index) {
        reply(cb, data, 200, json_pack("{s:I}", "index", (json_int_t)index));
        return;
    }
    struct write_ctx *w = calloc(1, sizeof(*w));
    if (!w) {
        reply_err(cb, data, -ENOMEM, "cluster: out of memory");
        return;
    }
    w->c = c;
    w->cb = cb;
    w->data = data;
    w->index = index;
    w->deadline = now_mono_ms() + WRITE_TIMEOUT_MS;
    uv_timer_init(c->loop, &w->wait);
    w->wait.data = w;
    uv_timer_start(&w->wait, write_wait_tick, 10, 10);
}

static void applied_local(struct raftnode *rn, int status, uint64_t index, const char *msg,
                          void *data)
{
    struct write_ctx *w = data;
    if (status == 0)
        reply(w->cb, w->data, 200, json_pack("{s:I}", "index", (json_int_t)index));
    else
        reply_err(w->cb, w->data, status, "cluster: %s", msg ? msg : ferr_str(status));
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
    struct write_ctx *w = calloc(1, sizeof(*w));
    if (!w)
        return ferr_set(e, -ENOMEM, "cluster: out of memory");
    w->c = c;
    w->cb = cb;
    w->data = data;
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
    int rc = text ? peer_request(c->loop, api, c->secret, "POST", "/v1/internal/apply", text,
                                 WRITE_TIMEOUT_MS, forwarded_write, w, e)
                  : ferr_set(e, -ENOMEM, "cluster: out of memory");
    free(text);
    if (rc < 0)
        free(w);
    return rc;
}

static void ignore_reply(int status, json_t *body, const struct ferr *e, void *data)
{
    if (e)
        log_warn("cluster: %s: %s", (const char *)data, e->msg);
    json_decref(body);
}

/* Fire-and-forget write; failures are logged. what must be a static string. */
static void write_bg(struct cluster *c, json_t *cmd, const char *what)
{
    struct ferr e = {0};
    if (cmd && cluster_write(c, cmd, ignore_reply, (void *)what, &e) < 0)
        log_warn("cluster: %s: %s", what, e.msg);
    json_decref(cmd);
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
    write_bg(c, cdb_cmd_event_add(now_wall_ms(), type, c->cfg.node_name, vm ? vm : "", msg),
             "event");
    free(msg);
}

/* ---- init ---- */

static json_t *self_upsert(struct cluster *c, const char *role)
{
    json_t *info = json_object();
    if (c->cfg.self_info)
        c->cfg.self_info(info, c->cfg.self_data);
    json_t *mem = json_object_get(info, "memory");
    struct cdb_node_fields f = {.id = c->node_id,
                                .name = c->cfg.node_name,
                                .api_addr = c->cfg.api_addr,
                                .raft_addr = c->cfg.raft_addr,
                                .role = role,
                                .state = "up",
                                .last_heartbeat_ms = now_wall_ms(),
                                .cmd_version = CDB_CMD_VERSION,
                                .memory = json_is_object(mem) ? mem : NULL,
                                .accel = json_string_value(json_object_get(info, "accel"))};
    json_t *cmd = cdb_cmd_node_upsert(&f);
    json_decref(info);
    return cmd;
}

static void init_wrote_self(int status, json_t *body, const struct ferr *e, void *data)
{
    struct cluster *c = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "cluster init");
        stop_raft_wipe(c, true);
        forget_state(c);
        finish_op(c, 0, NULL, &e2);
        return;
    }
    events_add(c->events, NULL, "cluster.init", "cluster %s (%s) created", c->cluster_id, c->name);
    cluster_event_add(c, "cluster.init", NULL, "cluster %s created on %s", c->name,
                      c->cfg.node_name);
    finish_op(c, 201,
              json_pack("{s:s, s:s, s:I, s:s, s:s}", "cluster_id", c->cluster_id, "name", c->name,
                        "node_id", (json_int_t)c->node_id, "token", c->token, "api_addr",
                        c->cfg.api_addr),
              NULL);
}

static void init_wrote_meta(int status, json_t *body, const struct ferr *e, void *data)
{
    struct cluster *c = data;
    json_decref(body);
    if (e) {
        init_wrote_self(status, NULL, e, data);
        return;
    }
    struct ferr e2 = {0};
    json_t *cmd = self_upsert(c, "voter");
    if (cluster_write(c, cmd, init_wrote_self, c, &e2) < 0)
        init_wrote_self(0, NULL, &e2, c);
    json_decref(cmd);
}

static void write_self_voter(struct cluster *c)
{
    struct ferr e = {0};
    json_t *cmd = cdb_cmd_cluster_meta(c->cluster_id, c->name, now_wall_ms());
    if (cluster_write(c, cmd, init_wrote_meta, c, &e) < 0)
        init_wrote_meta(0, NULL, &e, c);
    json_decref(cmd);
}

static void op_timeout(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (!c->busy)
        return;
    if (c->init_pending) {
        c->init_pending = false;
        struct ferr e;
        ferr_set(&e, FERR_TIMEOUT, "cluster init: this node did not become leader in time");
        stop_raft_wipe(c, true);
        forget_state(c);
        finish_op(c, 0, NULL, &e);
    }
}

static int need_api(struct cluster *c, const char *what, struct ferr *e)
{
    if (c->busy)
        return ferr_set(e, FERR_STATE, "%s: another cluster operation is under way; try again",
                        what);
    if (!c->cfg.api_addr[0])
        return ferr_set(e, FERR_STATE,
                        "%s: ferryd has no TCP API; start it with --listen ADDR:PORT so other "
                        "nodes can reach it",
                        what);
    return 0;
}

int cluster_init(struct cluster *c, const char *name, cluster_reply_cb cb, void *data,
                 struct ferr *e)
{
    if (c->active)
        return ferr_set(e, FERR_EXISTS, "cluster init: this node is already in cluster %s (%s)",
                        c->name, c->cluster_id);
    int rc = need_api(c, "cluster init", e);
    if (rc < 0)
        return rc;
    if (name && !name_valid(name, 63))
        return ferr_set(e, FERR_INVALID,
                        "name: \"%.64s\" is invalid: use 1-63 of a-z 0-9 -, starting with a letter",
                        name);
    rand_hex(c->cluster_id, 8);
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "ferry");
    rand_hex(c->secret, 24);
    rand_hex(c->token, 24);
    c->node_id = rand_id();
    rc = save_state(c, e);
    if (rc < 0)
        goto err;
    rc = start_raft(c, true, e);
    if (rc < 0)
        goto err;
    c->active = true;
    c->busy = true;
    c->op.cb = cb;
    c->op.data = data;
    c->init_pending = true;
    uv_timer_start(&c->op_timer, op_timeout, 10000, 0);
    if (raftnode_is_leader(c->rn)) {
        c->init_pending = false;
        write_self_voter(c);
    }
    return 0;
err:
    ferr_prefix(e, "cluster init");
    forget_state(c);
    return rc;
}

/* ---- join: the node that joins ---- */

static void join_send(struct cluster *c);

static void join_fail(struct cluster *c, int code, const char *msg)
{
    struct ferr e;
    ferr_set(&e, code, "cluster join: %s", msg);
    stop_raft_wipe(c, true);
    forget_state(c);
    finish_op(c, 0, NULL, &e);
}

static void join_catchup_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    json_t *meta = c->db ? cdb_meta(c->db) : NULL;
    bool caught = meta && json_object_get(meta, "id");
    json_decref(meta);
    if (caught) {
        json_t *nodes = cdb_nodes(c->db);
        size_t n = json_array_size(nodes);
        json_decref(nodes);
        events_add(c->events, NULL, "cluster.joined", "joined cluster %s (%s)", c->name,
                   c->cluster_id);
        finish_op(c, 200,
                  json_pack("{s:s, s:s, s:I, s:i}", "cluster_id", c->cluster_id, "name", c->name,
                            "node_id", (json_int_t)c->node_id, "members", (int)n),
                  NULL);
        return;
    }
    if (now_mono_ms() > c->catchup_deadline)
        finish_op(c, 200,
                  json_pack("{s:s, s:s, s:I, s:s}", "cluster_id", c->cluster_id, "name", c->name,
                            "node_id", (json_int_t)c->node_id, "warning",
                            "joined, but this node has not caught up with the log yet"),
                  NULL);
}

static void join_retry(uv_timer_t *t)
{
    join_send(t->data);
}

static void join_reply(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                       void *data)
{
    struct cluster *c = data;
    if (e) {
        join_fail(c, FERR_UNAVAIL, e->msg);
        return;
    }
    if (status == 503 && ++c->join_tries < JOIN_TRIES) {
        /* The leader is busy with another membership change: try again shortly. */
        uv_timer_start(&c->op_timer, join_retry, JOIN_RETRY_MS, 0);
        return;
    }
    if (status != 200) {
        const char *m =
            json_string_value(json_object_get(json_object_get(body, "error"), "message"));
        int code = status == 401 ? FERR_AUTH : status == 409 ? FERR_EXISTS : FERR_UNAVAIL;
        char msg[FERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s answered %d: %.300s", c->join_addr, status,
                 m ? m : "no reason given");
        join_fail(c, code, msg);
        return;
    }
    const char *id = json_string_value(json_object_get(body, "cluster_id"));
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *secret = json_string_value(json_object_get(body, "secret"));
    const char *token = json_string_value(json_object_get(body, "token"));
    if (!id || !name || !secret || !token || strlen(id) >= sizeof(c->cluster_id) ||
        strlen(name) >= sizeof(c->name) || strlen(secret) >= sizeof(c->secret) ||
        strlen(token) >= sizeof(c->token)) {
        join_fail(c, FERR_PROTO, "the member's answer lacks the cluster's identity");
        return;
    }
    strcpy(c->cluster_id, id);
    strcpy(c->name, name);
    strcpy(c->secret, secret);
    strcpy(c->token, token);
    struct ferr e2 = {0};
    if (save_state(c, &e2) < 0 || start_raft(c, false, &e2) < 0) {
        join_fail(c, e2.code, e2.msg);
        return;
    }
    c->active = true;
    c->catchup_deadline = now_mono_ms() + CATCHUP_WAIT_MS;
    uv_timer_start(&c->op_timer, join_catchup_tick, 20, 20);
}

static void join_send(struct cluster *c)
{
    struct ferr e = {0};
    if (peer_request(c->loop, c->join_addr, c->join_token, "POST", "/v1/internal/join",
                     c->join_body, 5000, join_reply, c, &e) < 0)
        join_fail(c, e.code, e.msg);
}

int cluster_join(struct cluster *c, const char *addr, const char *token, cluster_reply_cb cb,
                 void *data, struct ferr *e)
{
    if (c->active)
        return ferr_set(e, FERR_EXISTS, "cluster join: this node is already in cluster %s (%s)",
                        c->name, c->cluster_id);
    int rc = need_api(c, "cluster join", e);
    if (rc < 0)
        return rc;
    if (!addr || !strchr(addr, ':') || strlen(addr) >= sizeof(c->join_addr))
        return ferr_set(e, FERR_INVALID, "address: expected IP:PORT of a member's API");
    if (!token || !token[0] || strlen(token) >= sizeof(c->join_token))
        return ferr_set(e, FERR_INVALID, "token: expected the token printed by cluster init");
    c->node_id = rand_id();
    json_t *body =
        json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)c->node_id, "name", c->cfg.node_name,
                  "api_addr", c->cfg.api_addr, "raft_addr", c->cfg.raft_addr);
    /* What node lists show about this node until its first heartbeat arrives. */
    json_t *info = json_object();
    if (c->cfg.self_info && info)
        c->cfg.self_info(info, c->cfg.self_data);
    if (body && json_is_object(json_object_get(info, "memory")))
        json_object_set(body, "memory", json_object_get(info, "memory"));
    if (body && json_is_string(json_object_get(info, "accel")))
        json_object_set(body, "accel", json_object_get(info, "accel"));
    json_decref(info);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text || strlen(text) >= sizeof(c->join_body)) {
        free(text);
        return ferr_set(e, -ENOMEM, "cluster join: out of memory");
    }
    strcpy(c->join_body, text);
    free(text);
    strcpy(c->join_addr, addr);
    strcpy(c->join_token, token);
    c->join_tries = 0;
    c->busy = true;
    c->op.cb = cb;
    c->op.data = data;
    join_send(c);
    return 0;
}

/* ---- join: the member that admits a node ---- */

struct admit {
    struct cluster *c;
    cluster_reply_cb cb;
    void *data;
    json_t *record; /* node_upsert of the newcomer, written once Raft knows it */
    uint64_t id;
    unsigned tries;
    uv_timer_t timer;
};

static void relay(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                  void *data)
{
    struct pending *p = data;
    if (e)
        p->cb(0, NULL, e, p->data);
    else
        p->cb(status, json_incref(body), NULL, p->data);
    free(p);
}

/* Sends a request to the leader and relays its answer. */
static void to_leader(struct cluster *c, const char *path, const json_t *body, const char *bearer,
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
    if (peer_request(c->loop, api, bearer, "POST", path, text, WRITE_TIMEOUT_MS, relay, p, &e) <
        0) {
        free(p);
        cb(0, NULL, &e, data);
    }
    free(text);
}

static void admit_closed(uv_handle_t *h)
{
    free(h->data);
}

static void promote_try(uv_timer_t *t);

static void promoted(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct admit *a = data;
    struct cluster *c = a->c;
    if (status == 0 || status == FERR_STATE) {
        if (status == FERR_STATE && !strstr(msg ? msg : "", "already")) {
            /* another membership change is running: retry */
        } else {
            write_bg(c,
                     cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = a->id, .role = "voter"}),
                     "promote");
            log_info("cluster: node %llu is a voter now", (unsigned long long)a->id);
            uv_close((uv_handle_t *)&a->timer, admit_closed);
            return;
        }
    }
    if (status == -ECANCELED || ++a->tries >= PROMOTE_TRIES) {
        log_warn("cluster: node %llu stays a non-voter: %s", (unsigned long long)a->id,
                 msg ? msg : "gave up");
        uv_close((uv_handle_t *)&a->timer, admit_closed);
        return;
    }
    uv_timer_start(&a->timer, promote_try, PROMOTE_RETRY_MS, 0);
}

static void promote_try(uv_timer_t *t)
{
    struct admit *a = t->data;
    struct cluster *c = a->c;
    struct ferr e = {0};
    if (!c->rn || !raftnode_is_leader(c->rn)) {
        log_warn("cluster: lost leadership before node %llu was promoted",
                 (unsigned long long)a->id);
        uv_close((uv_handle_t *)&a->timer, admit_closed);
        return;
    }
    if (raftnode_assign(c->rn, a->id, RAFTNODE_VOTER, promoted, a, &e) < 0)
        promoted(c->rn, e.code, e.msg, a);
}

static void admit_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct admit *a = data;
    struct cluster *c = a->c;
    json_decref(body);
    if (e) {
        /* Undo the Raft side; the newcomer was never announced. */
        if (c->rn && raftnode_is_leader(c->rn))
            raftnode_remove(c->rn, a->id, NULL, NULL, NULL);
        a->cb(0, NULL, e, a->data);
        free(a);
        return;
    }
    json_t *nodes = cdb_nodes(c->db);
    a->cb(200,
          json_pack("{s:s, s:s, s:s, s:s, s:o}", "cluster_id", c->cluster_id, "name", c->name,
                    "secret", c->secret, "token", c->token, "members",
                    nodes ? nodes : json_array()),
          NULL, a->data);
    /* Promote once the new node runs and caught up (raftnode_assign waits for that). */
    uv_timer_init(c->loop, &a->timer);
    a->timer.data = a;
    a->cb = NULL;
    uv_timer_start(&a->timer, promote_try, PROMOTE_RETRY_MS, 0);
}

static void admit_added(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct admit *a = data;
    struct cluster *c = a->c;
    if (status != 0) {
        reply_err(a->cb, a->data, status == FERR_STATE ? FERR_UNAVAIL : status,
                  "cluster: adding node %llu failed: %s", (unsigned long long)a->id,
                  msg ? msg : ferr_str(status));
        json_decref(a->record);
        free(a);
        return;
    }
    a->tries = 0;
    struct ferr e = {0};
    json_t *cmd = a->record;
    a->record = NULL;
    cluster_event_add(c, "node.joined", NULL, "%s joined",
                      json_string_value(json_object_get(cmd, "name")));
    if (cluster_write(c, cmd, admit_written, a, &e) < 0)
        admit_written(0, NULL, &e, a);
    json_decref(cmd);
}

void cluster_on_join(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data)
{
    if (!c->active || !c->rn) {
        reply_err(cb, data, FERR_STATE, "this node is not in a cluster");
        return;
    }
    json_t *jid = json_object_get(body, "id");
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *api = json_string_value(json_object_get(body, "api_addr"));
    const char *raft = json_string_value(json_object_get(body, "raft_addr"));
    if (!json_is_integer(jid) || json_integer_value(jid) < 1 ||
        (uint64_t)json_integer_value(jid) > CDB_ID_MAX || !name_valid(name, 63) || !api || !raft ||
        strlen(api) > 60 || strlen(raft) > 60) {
        reply_err(cb, data, FERR_INVALID, "join: expected id, name, api_addr and raft_addr");
        return;
    }
    if (!raftnode_is_leader(c->rn)) {
        to_leader(c, "/v1/internal/join", body, c->token, cb, data);
        return;
    }
    uint64_t id = (uint64_t)json_integer_value(jid);
    json_t *existing = NULL;
    if (cdb_node_find(c->db, name, &existing, NULL) == 0) {
        json_decref(existing);
        reply_err(cb, data, FERR_EXISTS,
                  "a node named %s is already a member; give this host another --name, or "
                  "remove the old member first",
                  name);
        return;
    }
    struct admit *a = calloc(1, sizeof(*a));
    if (!a) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    a->c = c;
    a->cb = cb;
    a->data = data;
    a->id = id;
    /* Raft first (a spare gets no votes and no entries), then the record that announces the
     * newcomer's name and API address; only then the answer that hands it the secret. */
    struct ferr e = {0};
    json_t *mem = json_object_get(body, "memory");
    const char *accel = json_string_value(json_object_get(body, "accel"));
    struct cdb_node_fields f = {
        .id = id, .name = name, .api_addr = api, .raft_addr = raft, .role = "spare", .state = "up"};
    if (json_is_object(mem) && json_is_integer(json_object_get(mem, "total_mib")) &&
        json_is_integer(json_object_get(mem, "free_mib")) && json_object_size(mem) == 2)
        f.memory = mem;
    if (accel && (strcmp(accel, "kvm") == 0 || strcmp(accel, "tcg") == 0))
        f.accel = accel;
    a->record = cdb_cmd_node_upsert(&f);
    int rc = a->record ? raftnode_add(c->rn, id, raft, admit_added, a, &e)
                       : ferr_set(&e, -ENOMEM, "out of memory");
    if (rc < 0) {
        json_decref(a->record);
        reply_err(cb, data, rc == FERR_STATE ? FERR_UNAVAIL : rc, "join: %s", e.msg);
        free(a);
    }
}

/* ---- leave and remove ---- */

struct remove_ctx {
    struct cluster *c;
    cluster_reply_cb cb;
    void *data;
    uint64_t id;
};

static void removed_written(int status, json_t *body, const struct ferr *e, void *data)
{
    struct remove_ctx *r = data;
    json_decref(body);
    if (e)
        r->cb(0, NULL, e, r->data);
    else
        r->cb(200, json_pack("{s:I}", "removed", (json_int_t)r->id), NULL, r->data);
    free(r);
}

static void removed_raft(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct remove_ctx *r = data;
    struct cluster *c = r->c;
    if (status != 0) {
        reply_err(r->cb, r->data, status, "remove: %s", msg ? msg : ferr_str(status));
        free(r);
        return;
    }
    struct ferr e = {0};
    json_t *cmd = cdb_cmd_node_remove(r->id);
    if (cluster_write(c, cmd, removed_written, r, &e) < 0)
        removed_written(0, NULL, &e, r);
    json_decref(cmd);
}

static int owned_vms(struct cluster *c, uint64_t id)
{
    json_t *n = NULL;
    if (!c->db || cdb_node_get(c->db, id, &n, NULL) < 0)
        return 0;
    json_t *vms = cdb_vms(c->db, json_string_value(json_object_get(n, "name")));
    int count = (int)json_array_size(vms);
    json_decref(vms);
    json_decref(n);
    return count;
}

void cluster_on_remove(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data)
{
    json_t *jid = json_object_get(body, "id");
    if (!c->active || !c->rn || !json_is_integer(jid)) {
        reply_err(cb, data, FERR_INVALID, "remove: expected {\"id\": N} on a cluster member");
        return;
    }
    if (!raftnode_is_leader(c->rn)) {
        to_leader(c, "/v1/internal/remove", body, c->secret, cb, data);
        return;
    }
    uint64_t id = (uint64_t)json_integer_value(jid);
    if (owned_vms(c, id) > 0) {
        reply_err(cb, data, FERR_STATE, "node %llu still owns VMs; move or delete them first",
                  (unsigned long long)id);
        return;
    }
    struct remove_ctx *r = calloc(1, sizeof(*r));
    if (!r) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    r->c = c;
    r->cb = cb;
    r->data = data;
    r->id = id;
    struct ferr e = {0};
    if (raftnode_remove(c->rn, id, removed_raft, r, &e) < 0)
        removed_raft(c->rn, e.code, e.msg, r);
}

static void left(struct cluster *c)
{
    char id[40];
    snprintf(id, sizeof(id), "%s", c->cluster_id);
    stop_raft_wipe(c, true);
    forget_state(c);
    events_add(c->events, NULL, "cluster.left", "left cluster %s", id);
    finish_op(c, 200, json_pack("{s:s}", "left", id), NULL);
}

static void leave_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct cluster *c = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "cluster leave");
        finish_op(c, 0, NULL, &e2);
        return;
    }
    if (status != 200) {
        struct ferr e2;
        ferr_set(&e2, FERR_UNAVAIL, "cluster leave: the leader refused (%d)", status);
        finish_op(c, 0, NULL, &e2);
        return;
    }
    left(c);
}

static void leave_ask_leader(uv_timer_t *t)
{
    struct cluster *c = t->data;
    json_t *body = json_pack("{s:I}", "id", (json_int_t)c->node_id);
    to_leader(c, "/v1/internal/remove", body, c->secret, leave_answered, c);
    json_decref(body);
}

static void leave_transferred(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct cluster *c = data;
    if (status != 0) {
        struct ferr e;
        ferr_set(&e, status, "cluster leave: handing over leadership failed: %s", msg ? msg : "");
        finish_op(c, 0, NULL, &e);
        return;
    }
    /* This node learns who leads a moment later: ask the new leader then. */
    uv_timer_start(&c->op_timer, leave_ask_leader, RAFTNODE_HEARTBEAT_TIMEOUT_MS * 3, 0);
}

int cluster_leave(struct cluster *c, cluster_reply_cb cb, void *data, struct ferr *e)
{
    if (!c->active)
        return ferr_set(e, FERR_STATE, "not in a cluster");
    if (c->busy)
        return ferr_set(e, FERR_STATE, "another cluster operation is under way; try again");
    if (owned_vms(c, c->node_id) > 0)
        return ferr_set(e, FERR_STATE,
                        "cluster leave: this node owns VMs; move or delete them first");
    c->busy = true;
    c->op.cb = cb;
    c->op.data = data;
    json_t *members = c->rn ? raftnode_members(c->rn) : NULL;
    size_t n = json_array_size(members);
    json_decref(members);
    if (n <= 1) {
        left(c);
        return 0;
    }
    if (raftnode_is_leader(c->rn)) {
        int rc = raftnode_transfer(c->rn, 0, leave_transferred, c, e);
        if (rc < 0) {
            c->busy = false;
            c->op.cb = NULL;
            return rc;
        }
        return 0;
    }
    json_t *body = json_pack("{s:I}", "id", (json_int_t)c->node_id);
    to_leader(c, "/v1/internal/remove", body, c->secret, leave_answered, c);
    json_decref(body);
    return 0;
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
        to_leader(c, "/v1/internal/apply", body, c->secret, cb, data);
        return;
    }
    if (cluster_write(c, cmd, cb, data, &e) < 0)
        cb(0, NULL, &e, data);
}

/* ---- heartbeats and node health ---- */

static void hb_sent(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                    void *data)
{
    (void)status;
    (void)body;
}

#define PROPOSE_RETRY_MS 3000
#define HEALTH_CHECK_MS 100

/* Writes node n's health; its admin state is not health's business (cdb_node_cmd keeps it
 * when the cluster still speaks command version 1). */
static void propose_state(struct cluster *c, struct peer_state *p, const json_t *n,
                          const char *name, const char *state, const char *reason)
{
    snprintf(p->proposed, sizeof(p->proposed), "%s", state);
    p->proposed_at = now_mono_ms();
    write_bg(c, cdb_node_cmd(cdb_cmd_version_min(c->db), n, state, NULL, reason, now_wall_ms()),
             "node state");
    cluster_event_add(c, strcmp(state, "down") == 0 ? "node.down" : "node.up", NULL, "%s: %s", name,
                      reason);
    events_add(c->events, NULL, strcmp(state, "down") == 0 ? "node.down" : "node.up", "%s: %s",
               name, reason);
}

/*
 * The leader's judgement of every node, itself included. A node is down once nothing was
 * heard from it for down_after heartbeat periods, counted from its last heartbeat, or, if none
 * came yet, from when this leader first knew of it or took office, whichever is later. All on
 * the monotonic clock. A write in flight is not repeated until it shows in the database or a
 * few seconds passed.
 */
static void check_health(struct cluster *c, json_t *nodes)
{
    uint64_t now = now_mono_ms();
    uint64_t limit = (uint64_t)c->cfg.heartbeat_ms * c->cfg.down_after;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(n, "id"));
        const char *state = json_string_value(json_object_get(n, "state"));
        const char *name = json_string_value(json_object_get(n, "name"));
        struct peer_state *p = peer(c, id);
        if (!p || !state || !name)
            continue;
        if (p->proposed[0]) {
            bool landed = strcmp(p->proposed, state) == 0;
            if (!landed && now - p->proposed_at < PROPOSE_RETRY_MS)
                continue;
            p->proposed[0] = '\0';
        }
        bool down = strcmp(state, "down") == 0;
        if (id == c->node_id) {
            if (down)
                propose_state(c, p, n, name, "up", "it leads the cluster");
            continue;
        }
        uint64_t base = p->last_heard;
        if (!base)
            base = p->first_seen > c->leader_since ? p->first_seen : c->leader_since;
        bool silent = now - base > limit;
        if (silent && !down) {
            char why[64];
            snprintf(why, sizeof(why), "no heartbeat for %llu ms",
                     (unsigned long long)(now - base));
            propose_state(c, p, n, name, "down", why);
        } else if (!silent && down && p->last_heard) {
            propose_state(c, p, n, name, "up", "heartbeats again");
        }
    }
}

static void health_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (!c->active || !c->rn || !c->db || !raftnode_is_leader(c->rn))
        return;
    json_t *nodes = cdb_nodes(c->db);
    check_health(c, nodes);
    json_decref(nodes);
}

/*
 * Writes this node's cmd_version (the command version it applies) when its record says
 * another: after it joined (the leader wrote its record) or ferry was upgraded or downgraded
 * here. The leader proposes the lowest version of all nodes (cdb_cmd_version_min), so a
 * newer version is used only once every node applies it.
 */
static void announce_version(struct cluster *c)
{
    json_t *n = NULL;
    if (!cluster_quorum(c) || cdb_node_get(c->db, c->node_id, &n, NULL) < 0)
        return;
    json_int_t v = json_integer_value(json_object_get(n, "cmd_version"));
    json_decref(n);
    uint64_t now = now_mono_ms();
    if (v == CDB_CMD_VERSION || (c->announced_at && now - c->announced_at < PROPOSE_RETRY_MS))
        return;
    c->announced_at = now;
    write_bg(c,
             cdb_cmd_node_upsert(
                 &(struct cdb_node_fields){.id = c->node_id, .cmd_version = CDB_CMD_VERSION}),
             "command version");
}

static void hb_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (!c->active || !c->rn || !c->db)
        return;
    announce_version(c);
    json_t *info = json_object();
    if (c->cfg.self_info)
        c->cfg.self_info(info, c->cfg.self_data);
    json_object_set_new(info, "id", json_integer((json_int_t)c->node_id));
    json_object_set_new(info, "name", json_string(c->cfg.node_name));
    json_object_set_new(info, "time_ms", json_integer((json_int_t)now_wall_ms()));
    char *text = json_dumps(info, JSON_COMPACT);
    json_decref(info);
    json_t *nodes = cdb_nodes(c->db);
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(n, "id"));
        const char *api = json_string_value(json_object_get(n, "api_addr"));
        if (id == c->node_id || !api || !api[0] || !text)
            continue;
        peer_request(c->loop, api, c->secret, "POST", "/v1/internal/heartbeat", text,
                     c->cfg.heartbeat_ms, hb_sent, NULL, NULL);
    }
    free(text);
    json_decref(nodes);
}

void cluster_on_heartbeat(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data)
{
    json_t *jid = json_object_get(body, "id");
    if (!json_is_integer(jid) || json_integer_value(jid) < 1) {
        reply_err(cb, data, FERR_INVALID, "heartbeat: expected an id");
        return;
    }
    struct peer_state *p = peer(c, (uint64_t)json_integer_value(jid));
    if (p) {
        p->last_heard = now_mono_ms();
        json_decref(p->info);
        p->info = json_deep_copy(body);
    }
    reply(cb, data, 200, json_pack("{s:b}", "ok", 1));
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
        struct peer_state *p = peer(c, id);
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
        json_pack("{s:I, s:s, s:s, s:s, s:b, s:s, s:i, s:{s:I, s:I, s:I}, s:s, s:O, s:s, s:s}",
                  "id", (json_int_t)id, "name", json_string_value(json_object_get(n, "name")),
                  "state", json_string_value(json_object_get(n, "state")), "admin",
                  json_string_value(json_object_get(n, "admin")), "leader", id == leader, "role",
                  json_string_value(json_object_get(n, "role")), "vms",
                  (int)json_integer_value(json_object_get(info, "vms")), "memory", "total_mib",
                  total, "used_mib", total - freem, "free_mib", freem, "accel", accel ? accel : "",
                  "last_heartbeat_ms", last_contact >= 0 ? json_integer(last_contact) : json_null(),
                  "api_addr", json_string_value(json_object_get(n, "api_addr")), "raft_addr",
                  json_string_value(json_object_get(n, "raft_addr")));
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
            struct peer_state *p = peer(c, id);
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
    return *out ? 0 : ferr_set(e, -ENOMEM, "out of memory");
}

/* ---- forwarding to a node ---- */

static int forward(struct cluster *c, const char *node, const char *method, const char *path,
                   const char *body, peer_cb relay_cb, cluster_reply_cb cb, void *data,
                   struct ferr *e);

int cluster_forward(struct cluster *c, const char *node, const char *method, const char *path,
                    const char *body, cluster_reply_cb cb, void *data, struct ferr *e)
{
    return forward(c, node, method, path, body, relay, cb, data, e);
}

/* relay, with an error answer turned into e. */
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
    return forward(c, node, method, path, body, relay_checked, cb, data, e);
}

static int forward(struct cluster *c, const char *node, const char *method, const char *path,
                   const char *body, peer_cb relay_cb, cluster_reply_cb cb, void *data,
                   struct ferr *e)
{
    json_t *n = NULL;
    if (!c->active || !c->db)
        return ferr_set(e, FERR_STATE, "not in a cluster");
    if (cdb_node_find(c->db, node, &n, e) < 0)
        return ferr_set(e, FERR_NOTFOUND, "no node named %s in the cluster", node);
    char api[64];
    snprintf(api, sizeof(api), "%s", json_string_value(json_object_get(n, "api_addr")));
    json_decref(n);
    struct pending *p = malloc(sizeof(*p));
    if (!p)
        return ferr_set(e, -ENOMEM, "out of memory");
    p->cb = cb;
    p->data = data;
    int rc = peer_request(c->loop, api, c->secret, method, path, body, 120000, relay_cb, p, e);
    if (rc < 0)
        free(p);
    return rc;
}

/* ---- auth, open, close ---- */

int cluster_authorize(const char *path, const char *bearer, void *data)
{
    struct cluster *c = data;
    if (!c->active)
        return HTTP_PRINCIPAL_NONE;
    if (c->secret[0] && http_token_equal(bearer, c->secret))
        return HTTP_PRINCIPAL_PEER;
    if (c->token[0] && strcmp(path, "/v1/internal/join") == 0 && http_token_equal(bearer, c->token))
        return HTTP_PRINCIPAL_JOINER;
    return HTTP_PRINCIPAL_NONE;
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

int cluster_remove(struct cluster *c, const char *node, cluster_reply_cb cb, void *data,
                   struct ferr *e)
{
    if (!c->active || !c->db)
        return ferr_set(e, FERR_STATE, "not in a cluster");
    if (!node || strcmp(node, c->cfg.node_name) == 0)
        return ferr_set(e, FERR_INVALID, "node: to take this node out, use ferry cluster leave");
    json_t *n = NULL;
    if (cdb_node_find(c->db, node, &n, NULL) < 0)
        return ferr_set(e, FERR_NOTFOUND, "no node named %s in the cluster", node);
    json_t *body = json_pack("{s:O}", "id", json_object_get(n, "id"));
    json_decref(n);
    cluster_on_remove(c, body, cb, data);
    json_decref(body);
    return 0;
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
    int rc = load_state(c, e);
    if (rc < 0) {
        free(c);
        return rc;
    }
    if (c->active) {
        if (!c->cfg.api_addr[0]) {
            ferr_set(e, FERR_STATE,
                     "cluster: this node is in cluster %s but ferryd has no --listen "
                     "address; start it with the one it joined with",
                     c->cluster_id);
            free(c);
            return FERR_STATE;
        }
        rc = start_raft(c, false, e);
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
    c->hb.data = c;
    c->health.data = c;
    c->op_timer.data = c;
    uv_timer_start(&c->hb, hb_tick, c->cfg.heartbeat_ms, c->cfg.heartbeat_ms);
    uv_timer_start(&c->health, health_tick, HEALTH_CHECK_MS, HEALTH_CHECK_MS);
    *out = c;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    if (--c->close_pending > 0)
        return;
    for (unsigned i = 0; i < c->npeers; i++)
        json_decref(c->peers[i].info);
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    free(c);
    if (cb)
        cb(data);
}

static void raft_done_close(void *data)
{
    struct cluster *c = data;
    cdb_free(c->db);
    c->db = NULL;
    c->close_pending = 3;
    uv_close((uv_handle_t *)&c->hb, handle_closed);
    uv_close((uv_handle_t *)&c->health, handle_closed);
    uv_close((uv_handle_t *)&c->op_timer, handle_closed);
}

void cluster_close(struct cluster *c, void (*cb)(void *data), void *data)
{
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    if (c->busy && c->op.cb) {
        struct ferr e;
        ferr_set(&e, -ECANCELED, "cluster: ferryd is shutting down");
        finish_op(c, 0, NULL, &e);
    }
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
