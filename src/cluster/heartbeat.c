/* SPDX-License-Identifier: MIT */
/* Heartbeats between nodes, and the leader's health tick that writes health_judge()'s advice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "common/log.h"
#include "common/util.h"

#define HEALTH_CHECK_MS 100    /* how often the leader judges the nodes */
#define ANNOUNCE_RETRY_MS 3000 /* a cmd_version write not seen in the record is made again */

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
}

/* ---- heartbeats ---- */

static void hb_sent(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                    void *data)
{
    (void)status;
    (void)body;
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
    struct health_peer *p = cluster__peer(c, (uint64_t)json_integer_value(jid));
    if (p) {
        p->last_heard = now_mono_ms();
        json_decref(p->info);
        p->info = json_deep_copy(body);
    }
    cb(200, json_pack("{s:b}", "ok", 1), NULL, data);
}

void cluster__heartbeat_start(struct cluster *c)
{
    uv_timer_start(&c->hb, hb_tick, c->cfg.heartbeat_ms, c->cfg.heartbeat_ms);
    uv_timer_start(&c->health, health_tick, HEALTH_CHECK_MS, HEALTH_CHECK_MS);
}
