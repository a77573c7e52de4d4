/* SPDX-License-Identifier: MIT */
/* Heartbeats between nodes, and the leader's health tick that writes health_judge()'s advice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"

#define HEALTH_CHECK_MS 100    /* how often the leader judges the nodes */
#define ANNOUNCE_RETRY_MS 3000 /* a cmd_version write not seen in the record is made again */
#define LATE_WINDOW_MS 60000   /* lateness is the most seen in this window and the one before */
#define HB_TIMEOUT_MIN_MS 1000 /* a heartbeat request may take this long at least */

/* ---- how late heartbeats come (cluster_heartbeat_late) ---- */

static void late_note(uint64_t late[2], uint64_t *window, uint64_t now, uint64_t v)
{
    if (now - *window >= LATE_WINDOW_MS) {
        late[1] = now - *window >= 2 * LATE_WINDOW_MS ? 0 : late[0];
        late[0] = 0;
        *window = now;
    }
    if (v > late[0])
        late[0] = v;
}

static uint64_t late_of(const uint64_t late[2], uint64_t window, uint64_t now)
{
    if (now - window >= 2 * LATE_WINDOW_MS)
        return 0;
    if (now - window >= LATE_WINDOW_MS)
        return late[0];
    return late[0] > late[1] ? late[0] : late[1];
}

static void hb_tick(uv_timer_t *t);

void cluster_set_timing(struct cluster *c, unsigned send_ms, unsigned judge_ms, unsigned down_after)
{
    uint64_t now = now_mono_ms();
    bool restart = send_ms != c->hb_send_ms;
    c->cfg.heartbeat_ms = judge_ms;
    c->cfg.down_after = down_after;
    c->hb_send_ms = send_ms;
    c->late_since = c->self_late_window = now;
    c->self_late[0] = c->self_late[1] = 0;
    c->hb_last = 0;
    for (size_t i = 0; i < c->peers.n; i++) {
        c->peers.peer[i].late[0] = c->peers.peer[i].late[1] = 0;
        c->peers.peer[i].late_window = now;
    }
    if (restart && uv_is_active((uv_handle_t *)&c->hb))
        uv_timer_start(&c->hb, hb_tick, send_ms, send_ms);
}

json_int_t cluster__late_ms(struct cluster *c, uint64_t id)
{
    uint64_t now = now_mono_ms();
    if (id == c->node_id)
        return (json_int_t)late_of(c->self_late, c->self_late_window, now);
    struct health_peer *p = cluster__peer(c, id);
    if (!p || !p->last_heard)
        return -1;
    /* a follower hears only the leader: for the others it has the leader's word */
    if (p->late_said >= 0 && !(c->rn && raftnode_is_leader(c->rn)))
        return (json_int_t)p->late_said;
    return (json_int_t)late_of(p->late, p->late_window, now);
}

json_int_t cluster_heartbeat_late(struct cluster *c, char *worst, size_t size,
                                  uint64_t *measured_ms)
{
    if (!c->active || !c->db)
        return -1;
    json_int_t most = cluster__late_ms(c, c->node_id);
    snprintf(worst, size, "%s", c->cfg.node_name);
    *measured_ms = now_mono_ms() - c->late_since;
    json_t *nodes = cdb_nodes(c->db);
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(n, "id"));
        const char *state = json_string_value(json_object_get(n, "state"));
        if (id == c->node_id || !state || strcmp(state, "up") != 0)
            continue;
        json_int_t v = cluster__late_ms(c, id);
        if (v > most) {
            most = v;
            snprintf(worst, size, "%s", json_string_value(json_object_get(n, "name")));
        }
    }
    json_decref(nodes);
    return most;
}

/* ---- what this node heard from the others ---- */

struct health_peer *cluster__peer(struct cluster *c, uint64_t id)
{
    return health_peer(&c->peers, id, now_mono_ms());
}

void cluster__peers_clear(struct cluster *c)
{
    for (size_t i = 0; i < c->peers.n; i++)
        json_decref(c->peers.peer[i].info);
    c->peers.n = 0;
}

/* ---- node health, judged by the leader ---- */

/* Writes the health proposed for a node; its admin state is not health's business
 * (cdb_node_cmd keeps it when the cluster still speaks command version 1). */
static void propose_state(struct cluster *c, const struct health_proposal *p)
{
    const char *type = strcmp(p->state, "down") == 0 ? "node.down" : "node.up";
    cluster__write_bg(
        c,
        cdb_node_cmd(cdb_cmd_version_min(c->db), p->node, p->state, NULL, p->reason, now_wall_ms()),
        "node state");
    cluster_event_add(c, type, NULL, "%s: %s", p->name, p->reason);
    events_add(c->events, NULL, type, "%s: %s", p->name, p->reason);
}

/* ---- Raft roles, kept by the leader (cluster/roles.h) ---- */

unsigned cluster__max_voters(const struct cluster *c)
{
    return c->cfg.max_voters ? c->cfg.max_voters : ROLES_MAX_VOTERS_DEFAULT;
}

size_t cluster__roles_view(struct cluster *c, struct roles_node *out, size_t max)
{
    json_t *members = c->rn ? raftnode_members(c->rn) : NULL, *m;
    size_t i, n = 0;
    json_array_foreach(members, i, m)
    {
        if (n == max)
            break;
        enum raftnode_role r;
        json_t *rec = NULL;
        uint64_t id = (uint64_t)json_integer_value(json_object_get(m, "id"));
        if (raftnode_role_parse(json_string_value(json_object_get(m, "role")), &r) < 0)
            continue;
        bool up = id == c->node_id;
        if (!up && c->db && cdb_node_get(c->db, id, &rec, NULL) == 0)
            up = strcmp(jfield_text(rec, "state"), "up") == 0;
        json_decref(rec);
        out[n++] = (struct roles_node){id,
                                       r == RAFTNODE_VOTER     ? ROLES_VOTER
                                       : r == RAFTNODE_STANDBY ? ROLES_STANDBY
                                                               : ROLES_SPARE,
                                       up};
    }
    json_decref(members);
    return n;
}

struct role_change {
    struct cluster *c;
    uint64_t id;
    bool to_voter;
    const char *why;
};

static void role_changed(struct raftnode *rn, int status, const char *msg, void *data)
{
    struct role_change *rc = data;
    struct cluster *c = rc->c;
    (void)rn;
    c->roles_busy = false;
    char name[64];
    json_t *rec = NULL;
    snprintf(name, sizeof(name), "%llu", (unsigned long long)rc->id);
    if (c->db && cdb_node_get(c->db, rc->id, &rec, NULL) == 0 && jfield_text(rec, "name")[0])
        snprintf(name, sizeof(name), "%s", jfield_text(rec, "name"));
    json_decref(rec);
    const char *role = rc->to_voter ? "voter" : "standby";
    if (status == 0) {
        cluster__write_bg(
            c, cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = rc->id, .role = role}), "role");
        log_info("cluster: %s is a %s now: %s", name, role, rc->why);
        cluster_event_add(c, "node.role", NULL, "%s is a %s now: %s", name, role, rc->why);
        events_add(c->events, NULL, "node.role", "%s is a %s now: %s", name, role, rc->why);
    } else if (status != FERR_STATE) {
        log_warn("cluster: %s stays as it is (not a %s): %s", name, role,
                 msg ? msg : ferr_str(status));
    }
    free(rc);
}

/* One role change at a time, on the leader, when the view says one is due. */
static void roles_tick(struct cluster *c)
{
    struct roles_node view[HEALTH_PEERS_MAX];
    if (c->roles_busy)
        return;
    size_t n = cluster__roles_view(c, view, HEALTH_PEERS_MAX);
    struct roles_change ch = roles_next(view, n, c->node_id, cluster__max_voters(c));
    if (ch.act == ROLES_NONE)
        return;
    struct role_change *rc = malloc(sizeof(*rc));
    if (!rc)
        return;
    *rc = (struct role_change){c, ch.id, ch.act == ROLES_PROMOTE, ch.why};
    struct ferr e = {0};
    c->roles_busy = true;
    if (raftnode_assign(c->rn, ch.id, rc->to_voter ? RAFTNODE_VOTER : RAFTNODE_STANDBY,
                        role_changed, rc, &e) < 0)
        role_changed(c->rn, e.code, e.msg, rc);
}

static void health_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (!c->active || !c->rn || !c->db || !raftnode_is_leader(c->rn))
        return;
    json_t *nodes = cdb_nodes(c->db);
    struct health_params hp = {.self_id = c->node_id,
                               .leader_since = c->leader_since,
                               .now = now_mono_ms(),
                               .heartbeat_ms = c->cfg.heartbeat_ms,
                               .down_after = c->cfg.down_after};
    struct health_proposal props[HEALTH_PEERS_MAX];
    size_t n = health_judge(&c->peers, nodes, &hp, props, HEALTH_PEERS_MAX);
    for (size_t i = 0; i < n; i++)
        propose_state(c, &props[i]);
    json_decref(nodes);
    roles_tick(c);
}

/* ---- heartbeats ---- */

/*
 * Heartbeats go to the leader only (every node to every other made N x (N - 1) requests per
 * interval: 240/s on 16 nodes); the leader answers each with its view of every node (how long
 * ago it heard it, how late its heartbeats came, what it said), so every node still knows
 * every node's last contact, memory and VMs, a leader elected next starts with fresh
 * contacts, and the leader judges health from what it heard itself, as before. A node that
 * knows no leader (an election) sends to every node.
 */
static void hb_sent(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                    void *data)
{
    struct cluster *c = data;
    (void)raw;
    (void)len;
    c->forwards--;
    if (c->closing) { /* the view is not needed any more; the last answer frees c */
        if (c->closed && c->forwards == 0)
            free(c);
        return;
    }
    json_t *view = e || status != 200 ? NULL : json_object_get(body, "view");
    uint64_t now = now_mono_ms();
    size_t i;
    json_t *v;
    json_array_foreach(view, i, v)
    {
        json_t *jid = json_object_get(v, "id"), *age = json_object_get(v, "age_ms");
        json_t *info = json_object_get(v, "info");
        if (!json_is_integer(jid) || json_integer_value(jid) < 1 ||
            (uint64_t)json_integer_value(jid) == c->node_id || !json_is_integer(age) ||
            json_integer_value(age) < 0 || (uint64_t)json_integer_value(age) >= now ||
            !json_is_object(info))
            continue;
        struct health_peer *p = cluster__peer(c, (uint64_t)json_integer_value(jid));
        uint64_t heard = now - (uint64_t)json_integer_value(age);
        if (!p || heard <= p->last_heard)
            continue;
        p->last_heard = heard;
        json_decref(p->info);
        p->info = json_deep_copy(info);
        json_t *late = json_object_get(v, "late_ms");
        p->late_said = json_is_integer(late) ? (long long)json_integer_value(late) : -1;
    }
}

/* The leader's view for a heartbeat's answer: every node it heard, and itself. */
static json_t *leader_view(struct cluster *c)
{
    uint64_t now = now_mono_ms();
    json_t *view = json_array(), *self = json_object();
    if (!view || !self) {
        json_decref(view);
        json_decref(self);
        return NULL;
    }
    if (c->cfg.self_info)
        c->cfg.self_info(self, c->cfg.self_data);
    json_object_set_new(self, "id", json_integer((json_int_t)c->node_id));
    json_object_set_new(self, "name", json_string(c->cfg.node_name));
    json_array_append_new(view, json_pack("{s:I, s:I, s:I, s:o}", "id", (json_int_t)c->node_id,
                                          "age_ms", (json_int_t)0, "late_ms",
                                          cluster__late_ms(c, c->node_id), "info", self));
    for (size_t i = 0; i < c->peers.n; i++) {
        const struct health_peer *p = &c->peers.peer[i];
        if (!p->last_heard || !p->info)
            continue;
        json_array_append_new(
            view, json_pack("{s:I, s:I, s:I, s:O}", "id", (json_int_t)p->id, "age_ms",
                            (json_int_t)(now - p->last_heard), "late_ms",
                            (json_int_t)late_of(p->late, p->late_window, now), "info", p->info));
    }
    return view;
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
    if (v == CDB_CMD_VERSION || (c->announced_at && now - c->announced_at < ANNOUNCE_RETRY_MS))
        return;
    c->announced_at = now;
    cluster__write_bg(c,
                      cdb_cmd_node_upsert(&(struct cdb_node_fields){
                          .id = c->node_id, .cmd_version = CDB_CMD_VERSION}),
                      "command version");
}

static void hb_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (!c->active || !c->rn || !c->db)
        return;
    uint64_t now = now_mono_ms();
    if (c->hb_last && now - c->hb_last > c->hb_send_ms)
        late_note(c->self_late, &c->self_late_window, now, now - c->hb_last - c->hb_send_ms);
    c->hb_last = now;
    cluster__note_leader(c);
    announce_version(c);
    cluster__events_pump(c);
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
    bool leading = raftnode_is_leader(c->rn);
    uint64_t leader = leading ? c->node_id : raftnode_leader(c->rn, NULL);
    json_array_foreach(nodes, i, n)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(n, "id"));
        const char *api = json_string_value(json_object_get(n, "api_addr"));
        if (id == c->node_id || !api || !api[0] || !text || leading || (leader && id != leader))
            continue;
        if (peer_request(c->loop, api, cluster__ca(c), c->secret, "POST", "/v1/internal/heartbeat",
                         text,
                         c->hb_send_ms > HB_TIMEOUT_MIN_MS ? c->hb_send_ms : HB_TIMEOUT_MIN_MS,
                         hb_sent, c, NULL) == 0)
            c->forwards++;
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
    struct health_peer *p = cluster__peer(c, (uint64_t)json_integer_value(jid));
    if (p) {
        uint64_t now = now_mono_ms();
        uint64_t gap = now - p->last_heard;
        /* a gap past the down time is an outage (node.down says so), not jitter */
        if (p->last_heard && p->last_heard >= c->late_since && gap > c->hb_send_ms &&
            gap <= (uint64_t)c->cfg.heartbeat_ms * c->cfg.down_after)
            late_note(p->late, &p->late_window, now, gap - c->hb_send_ms);
        p->last_heard = now;
        p->late_said = -1;
        json_decref(p->info);
        p->info = json_deep_copy(body);
    }
    json_t *view = c->rn && raftnode_is_leader(c->rn) ? leader_view(c) : NULL;
    cb(200, view ? json_pack("{s:b, s:o}", "ok", 1, "view", view) : json_pack("{s:b}", "ok", 1),
       NULL, data);
}

void cluster__heartbeat_start(struct cluster *c)
{
    if (!c->hb_send_ms)
        c->hb_send_ms = c->cfg.heartbeat_ms;
    c->late_since = c->self_late_window = now_mono_ms();
    uv_timer_start(&c->hb, hb_tick, c->hb_send_ms, c->hb_send_ms);
    uv_timer_start(&c->health, health_tick, HEALTH_CHECK_MS, HEALTH_CHECK_MS);
}
