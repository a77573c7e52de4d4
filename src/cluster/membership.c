/* SPDX-License-Identifier: MIT */
/* This node's membership: cluster.json, init, join (both sides), promotion, leave, remove. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"
#include "common/log.h"
#include "common/util.h"

#define JOIN_TRIES 20
#define JOIN_RETRY_MS 500
#define PROMOTE_TRIES 120
#define PROMOTE_RETRY_MS 500
#define CATCHUP_WAIT_MS 15000

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

void cluster__finish_op(struct cluster *c, int status, json_t *body, const struct ferr *e)
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

/* ---- cluster.json ---- */

static int save_state(struct cluster *c, struct ferr *e)
{
    char p[1200];
    if (cluster__path(c, "cluster.json", p, sizeof(p)) < 0)
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

static void tls_changed(struct cluster *c)
{
    if (c->cfg.tls_changed)
        c->cfg.tls_changed(c->cfg.tls_data);
}

/* A node out of a cluster trusts a CA of its own again, so the old cluster's nodes (which
 * all hold that cluster's CA key) cannot impersonate anyone to it. */
static void tls_own_ca(struct cluster *c)
{
    struct ferr e = {0};
    c->cluster_ca = false;
    if (!c->cfg.certs)
        return;
    if (certs_new_ca(c->cfg.certs, c->cfg.node_name, &e) < 0) {
        log_error("cluster: %s; this node keeps the cluster's CA until it restarts", e.msg);
        return;
    }
    tls_changed(c);
}

/* The token a joiner gives: the secret and the pinned CA fingerprint, "SECRET.SHA256HEX". */
static void join_token_text(const struct cluster *c, char *out, size_t size)
{
    char pin[CERTS_PIN_HEX + 1] = "";
    if (c->cfg.certs)
        certs_pin_hex(certs_ca_fingerprint(c->cfg.certs), pin);
    snprintf(out, size, "%s.%s", c->token, pin);
}

/* Forgets membership: cluster.json goes now; the raft dir goes with cluster__stop_raft (or here
 * when no Raft member runs). */
static void forget_state(struct cluster *c)
{
    char p[1200];
    if (cluster__path(c, "cluster.json", p, sizeof(p)) == 0)
        unlink(p);
    if (!c->rn && cluster__path(c, "raft", p, sizeof(p)) == 0)
        rm_rf(p);
    c->active = false;
    c->cluster_id[0] = c->name[0] = c->secret[0] = c->token[0] = '\0';
    c->node_id = 0;
    cluster__peers_clear(c);
    if (c->cluster_ca)
        tls_own_ca(c);
}

int cluster__load_state(struct cluster *c, struct ferr *e)
{
    char p[1200], *text = NULL;
    if (cluster__path(c, "cluster.json", p, sizeof(p)) < 0)
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
        cluster__stop_raft(c, true);
        forget_state(c);
        cluster__finish_op(c, 0, NULL, &e2);
        return;
    }
    events_add(c->events, NULL, "cluster.init", "cluster %s (%s) created", c->cluster_id, c->name);
    cluster_event_add(c, "cluster.init", NULL, "cluster %s created on %s", c->name,
                      c->cfg.node_name);
    char token[256];
    join_token_text(c, token, sizeof(token));
    json_t *answer =
        json_pack("{s:s, s:s, s:I, s:s, s:s}", "cluster_id", c->cluster_id, "name", c->name,
                  "node_id", (json_int_t)c->node_id, "token", token, "api_addr", c->cfg.api_addr);
    json_t *tls = cluster_tls_info(c);
    if (answer && tls)
        json_object_set(answer, "ca_fingerprint", json_object_get(tls, "ca_fingerprint"));
    json_decref(tls);
    cluster__finish_op(c, 201, answer, NULL);
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

void cluster__write_first_records(struct cluster *c)
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
        cluster__stop_raft(c, true);
        forget_state(c);
        cluster__finish_op(c, 0, NULL, &e);
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
    /* The cluster's CA: every member gets it (with its key) when it joins and issues its own
     * certificate with it, as Proxmox VE shares its cluster CA. */
    if (c->cfg.certs) {
        if ((rc = certs_new_ca(c->cfg.certs, c->name, e)) < 0) {
            c->cluster_id[0] = c->name[0] = c->secret[0] = c->token[0] = '\0';
            ferr_prefix(e, "cluster init");
            return rc;
        }
        c->cluster_ca = true;
        tls_changed(c);
    }
    rc = save_state(c, e);
    if (rc < 0)
        goto err;
    rc = cluster__start_raft(c, true, e);
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
        cluster__write_first_records(c);
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
    free(c->join_ca);
    c->join_ca = NULL;
    cluster__stop_raft(c, true);
    forget_state(c);
    cluster__finish_op(c, 0, NULL, &e);
}

/* Whether this node has the cluster's first records: it caught up with the log. */
static bool caught_up(const struct cdb *db, void *data)
{
    json_t *meta = db ? cdb_meta(db) : NULL;
    bool caught = meta && json_object_get(meta, "id");
    json_decref(meta);
    return caught;
}

static void join_caught_up(int status, void *data)
{
    struct cluster *c = data;
    if (!c->busy)
        return; /* closed meanwhile: cluster_close answered the join */
    if (status == 0) {
        json_t *nodes = cdb_nodes(c->db);
        size_t n = json_array_size(nodes);
        json_decref(nodes);
        events_add(c->events, NULL, "cluster.joined", "joined cluster %s (%s)", c->name,
                   c->cluster_id);
        cluster__finish_op(c, 200,
                           json_pack("{s:s, s:s, s:I, s:i}", "cluster_id", c->cluster_id, "name",
                                     c->name, "node_id", (json_int_t)c->node_id, "members", (int)n),
                           NULL);
        return;
    }
    cluster__finish_op(c, 200,
                       json_pack("{s:s, s:s, s:I, s:s}", "cluster_id", c->cluster_id, "name",
                                 c->name, "node_id", (json_int_t)c->node_id, "warning",
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
    const char *ca_cert = json_string_value(json_object_get(body, "ca_cert"));
    const char *ca_key = json_string_value(json_object_get(body, "ca_key"));
    if (!id || !name || !secret || !token || strlen(id) >= sizeof(c->cluster_id) ||
        strlen(name) >= sizeof(c->name) || strlen(secret) >= sizeof(c->secret) ||
        strlen(token) >= sizeof(c->token)) {
        join_fail(c, FERR_PROTO, "the member's answer lacks the cluster's identity");
        return;
    }
    char fp[PKI_FINGERPRINT_SIZE];
    struct ferr e2 = {0};
    if (!ca_cert || !ca_key || pki_fingerprint(ca_cert, fp, &e2) < 0 ||
        !certs_pin_matches(c->join_pin, fp)) {
        join_fail(c, FERR_PROTO,
                  "the member's answer lacks the cluster's CA, or it is not the CA the token "
                  "pins (a ferryd older than this one cannot admit this node)");
        return;
    }
    if (c->cfg.certs) {
        if (certs_adopt(c->cfg.certs, ca_cert, ca_key, &e2) < 0) {
            join_fail(c, e2.code, e2.msg);
            return;
        }
        c->cluster_ca = true;
        tls_changed(c);
    }
    strcpy(c->cluster_id, id);
    strcpy(c->name, name);
    strcpy(c->secret, secret);
    strcpy(c->token, token);
    if (save_state(c, &e2) < 0 || cluster__start_raft(c, false, &e2) < 0) {
        join_fail(c, e2.code, e2.msg);
        return;
    }
    c->active = true;
    if (cluster_wait_until(c, caught_up, CATCHUP_WAIT_MS, join_caught_up, c, NULL) < 0)
        join_caught_up(FERR_TIMEOUT, c); /* out of memory: say it has not caught up */
}

static void join_send(struct cluster *c)
{
    struct ferr e = {0};
    if (peer_request(c->loop, c->join_addr, c->join_ca, c->join_token, "POST", "/v1/internal/join",
                     c->join_body, 5000, join_reply, c, &e) < 0)
        join_fail(c, e.code, e.msg);
}

/* The member's CA came (unverified: peer_fetch_ca). Only one whose SHA-256 is the token's pin
 * is trusted, and only then does the token go out, over TLS checked against that CA. */
static void join_ca_fetched(int status, json_t *body, const char *raw, size_t len,
                            const struct ferr *e, void *data)
{
    struct cluster *c = data;
    char msg[FERR_MSG_MAX], fp[PKI_FINGERPRINT_SIZE];
    if (e) {
        snprintf(msg, sizeof(msg), "fetching the cluster's CA: %.400s", e->msg);
        join_fail(c, e->code, msg);
        return;
    }
    const char *ca = json_string_value(json_object_get(body, "ca"));
    struct ferr e2 = {0};
    if (status != 200 || !ca || pki_fingerprint(ca, fp, &e2) < 0) {
        snprintf(msg, sizeof(msg),
                 "%s answered %d to GET /v1/cluster/ca without a CA certificate: is it a "
                 "ferryd of this version?",
                 c->join_addr, status);
        join_fail(c, FERR_PROTO, msg);
        return;
    }
    if (!certs_pin_matches(c->join_pin, fp)) {
        snprintf(msg, sizeof(msg),
                 "the CA of %s has the SHA-256 fingerprint %s, not the one the token pins: "
                 "refused before the token was sent; check the address and the token (ferry "
                 "cluster status on a member shows the CA's fingerprint)",
                 c->join_addr, fp);
        join_fail(c, FERR_AUTH, msg);
        return;
    }
    free(c->join_ca);
    if (!(c->join_ca = strdup(ca))) {
        join_fail(c, -ENOMEM, "out of memory");
        return;
    }
    join_send(c);
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
    if (!token || !token[0])
        return ferr_set(e, FERR_INVALID, "token: expected the token printed by cluster init");
    char secret[sizeof(c->join_token)], pin[CERTS_PIN_HEX + 1];
    if ((rc = certs_token_split(token, secret, sizeof(secret), pin, e)) < 0)
        return rc;
    c->node_id = rand_id();
    json_t *body =
        json_pack("{s:I, s:s, s:s, s:s, s:i}", "id", (json_int_t)c->node_id, "name",
                  c->cfg.node_name, "api_addr", c->cfg.api_addr, "raft_addr", c->cfg.raft_addr,
                  "cmd_version", CDB_CMD_VERSION);
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
    strcpy(c->join_token, secret);
    strcpy(c->join_pin, pin);
    c->join_tries = 0;
    c->busy = true;
    c->op.cb = cb;
    c->op.data = data;
    if ((rc = peer_fetch_ca(c->loop, c->join_addr, 5000, join_ca_fetched, c, e)) < 0) {
        c->busy = false;
        c->op.cb = NULL;
        return rc;
    }
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
    enum raftnode_role role; /* what it is being made: voter or standby */
    uv_timer_t timer;
};

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
            const char *role = raftnode_role_name(a->role);
            cluster__write_bg(
                c, cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = a->id, .role = role}),
                "promote");
            log_info("cluster: node %llu is a %s now", (unsigned long long)a->id, role);
            uv_close((uv_handle_t *)&a->timer, admit_closed);
            return;
        }
    }
    if (status == -ECANCELED || ++a->tries >= PROMOTE_TRIES) {
        log_warn("cluster: node %llu stays a spare: %s", (unsigned long long)a->id,
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
    /* a voter while the cluster has fewer than it keeps, a standby otherwise (roles.h) */
    struct roles_node view[HEALTH_PEERS_MAX];
    size_t n = cluster__roles_view(c, view, HEALTH_PEERS_MAX);
    a->role = roles_for_newcomer(view, n, cluster__max_voters(c)) == ROLES_VOTER ? RAFTNODE_VOTER
                                                                                 : RAFTNODE_STANDBY;
    if (raftnode_assign(c->rn, a->id, a->role, promoted, a, &e) < 0)
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
    json_t *answer =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "cluster_id", c->cluster_id, "name", c->name,
                  "secret", c->secret, "token", c->token, "members", nodes ? nodes : json_array());
    /* The CA and its key go with the secret: the newcomer issues its own certificate. */
    if (answer && c->cfg.certs) {
        json_object_set_new(answer, "ca_cert", json_string(certs_ca(c->cfg.certs)));
        json_object_set_new(answer, "ca_key", json_string(certs_ca_key(c->cfg.certs)));
    }
    a->cb(200, answer, NULL, a->data);
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
        cluster__to_leader(c, "/v1/internal/join", body, c->token, cb, data);
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
    /* The command version the newcomer applies (older ones do not say; they announce it
     * with their first heartbeats): in its record from the start, so a cluster just formed
     * uses the newest version all its nodes know at once. */
    json_t *cv = json_object_get(body, "cmd_version");
    if (json_is_integer(cv) && json_integer_value(cv) >= 1 && json_integer_value(cv) <= 1000)
        f.cmd_version = (int)json_integer_value(cv);
    a->record = cdb_cmd_node_upsert(&f);
    int rc = a->record ? raftnode_add(c->rn, id, raft, admit_added, a, &e)
                       : ferr_set(&e, -ENOMEM, "out of memory");
    if (rc < 0) {
        json_decref(a->record);
        reply_err(cb, data, rc == FERR_STATE ? FERR_UNAVAIL : rc, "join: %s", e.msg);
        free(a);
    }
}

/* How many VMs node id owns; its name into name (its id in digits if it has no record). */
static int owned_vms(struct cluster *c, uint64_t id, char *name, size_t size)
{
    json_t *n = NULL;
    snprintf(name, size, "%llu", (unsigned long long)id);
    if (!c->db || cdb_node_get(c->db, id, &n, NULL) < 0)
        return 0;
    const char *nm = json_string_value(json_object_get(n, "name"));
    if (nm)
        snprintf(name, size, "%s", nm);
    json_t *vms = cdb_vms(c->db, nm);
    int count = (int)json_array_size(vms);
    json_decref(vms);
    json_decref(n);
    return count;
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

void cluster_on_remove(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data)
{
    json_t *jid = json_object_get(body, "id");
    if (!c->active || !c->rn || !json_is_integer(jid)) {
        reply_err(cb, data, FERR_INVALID, "remove: expected {\"id\": N} on a cluster member");
        return;
    }
    if (!raftnode_is_leader(c->rn)) {
        cluster__to_leader(c, "/v1/internal/remove", body, c->secret, cb, data);
        return;
    }
    uint64_t id = (uint64_t)json_integer_value(jid);
    char name[64];
    int owned = owned_vms(c, id, name, sizeof(name));
    if (owned > 0) {
        reply_err(cb, data, FERR_STATE,
                  "node %s still owns %d VM(s); migrate them away (ferry node drain %s) or "
                  "delete them first",
                  name, owned, name);
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
    cluster__stop_raft(c, true);
    forget_state(c);
    events_add(c->events, NULL, "cluster.left", "left cluster %s", id);
    cluster__finish_op(c, 200, json_pack("{s:s}", "left", id), NULL);
}

static void leave_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct cluster *c = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "cluster leave");
        cluster__finish_op(c, 0, NULL, &e2);
        return;
    }
    if (status != 200) {
        struct ferr e2;
        ferr_set(&e2, FERR_UNAVAIL, "cluster leave: the leader refused (%d)", status);
        cluster__finish_op(c, 0, NULL, &e2);
        return;
    }
    left(c);
}

static void leave_ask_leader(uv_timer_t *t)
{
    struct cluster *c = t->data;
    json_t *body = json_pack("{s:I}", "id", (json_int_t)c->node_id);
    cluster__to_leader(c, "/v1/internal/remove", body, c->secret, leave_answered, c);
    json_decref(body);
}

static void leave_transferred(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct cluster *c = data;
    if (status != 0) {
        struct ferr e;
        ferr_set(&e, status, "cluster leave: handing over leadership failed: %s", msg ? msg : "");
        cluster__finish_op(c, 0, NULL, &e);
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
    char name[64];
    int owned = owned_vms(c, c->node_id, name, sizeof(name));
    if (owned > 0)
        return ferr_set(e, FERR_STATE,
                        "cluster leave: this node (%s) owns %d VM(s); migrate them away (ferry "
                        "node drain %s) or delete them first",
                        name, owned, name);
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
    cluster__to_leader(c, "/v1/internal/remove", body, c->secret, leave_answered, c);
    json_decref(body);
    return 0;
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
