/* SPDX-License-Identifier: MIT */
/* The leader's half of failover (failover.h): dead nodes' HA VMs given to others. */
#include "fleet/failover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/failplan.h"
#include "fleet/volumes.h"
#include "host/events.h"

#define PLAN_MAX 256 /* VMs placed per tick */

struct failover {
    struct failover_env env;
    json_t *inflight; /* VM name -> true while its vm_failover is being written */
    json_t *said;     /* what was said once: "isolated:NODE" / "wait:VM" -> the text */
    bool old_cluster; /* a node does not apply command version 6 yet: said once */
};

int failover_new(const struct failover_env *env, struct failover **out, struct ferr *e)
{
    struct failover *fo = calloc(1, sizeof(*fo));
    if (!fo || !(fo->inflight = json_object()) || !(fo->said = json_object())) {
        if (fo)
            json_decref(fo->inflight);
        free(fo);
        return ferr_set(e, -ENOMEM, "failover: out of memory");
    }
    fo->env = *env;
    *out = fo;
    return 0;
}

void failover_free(struct failover *fo)
{
    if (!fo)
        return;
    json_decref(fo->inflight);
    json_decref(fo->said);
    free(fo);
}

/* Whether text is new under key (then remembered): each thing is said once, not every tick. */
static bool say_once(struct failover *fo, const char *key, const char *text)
{
    const char *old = json_string_value(json_object_get(fo->said, key));
    if (old && strcmp(old, text) == 0)
        return false;
    json_object_set_new(fo->said, key, json_string(text));
    return true;
}

struct given {
    struct failover *fo;
    char vm[64], from[64], to[64];
};

static void given(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct given *g = data;
    json_object_del(g->fo->inflight, g->vm);
    if (e)
        log_warn("failover: %s not given to %s: %s (tried again)", g->vm, g->to, e->msg);
    else
        events_add(g->fo->env.events, g->vm, "vm.failover",
                   "%s is dead: the cluster gives the VM to %s, which starts it", g->from, g->to);
    free(g);
}

/* The nodes that are dead: down and stale on storage; [names], and the times for the record
 * in info (name -> {"down_ms", "stale_ms"}). */
static json_t *dead_nodes(struct failover *fo, const json_t *nodes, json_t *info)
{
    json_t *dead = json_array();
    uint64_t wall = now_wall_ms();
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = jfield_text(n, "name");
        char key[80], why[256];
        snprintf(key, sizeof(key), "isolated:%s", name);
        if (strcmp(jfield_text(n, "state"), "down") != 0 || strcmp(name, fo->env.node_name) == 0) {
            json_object_del(fo->said, key);
            continue;
        }
        uint64_t age = 0;
        if (!volumes_node_stale(fo->env.volumes, name, &age, why, sizeof(why))) {
            char text[400];
            snprintf(text, sizeof(text),
                     "%s is silent on the network but not stale on storage (%s): nothing moves "
                     "until it fenced itself and its leases expired",
                     name, why);
            if (say_once(fo, key, text))
                events_add(fo->env.events, NULL, "node.isolated", "%s", text);
            continue;
        }
        json_object_del(fo->said, key);
        json_array_append_new(dead, json_string(name));
        json_object_set_new(
            info, name,
            json_pack("{sI sI}", "down_ms", json_integer_value(json_object_get(n, "state_changed_ms")),
                      "stale_ms", (json_int_t)(wall - age)));
    }
    return dead;
}

static void written(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    (void)data;
    json_decref(body);
    if (e)
        log_debug("failover: a waiting VM's record does not say why yet: %s", e->msg);
}

/* A VM that fits nowhere: its record and an event say why, once. */
static void wait_said(struct failover *fo, const struct failplan_move *m)
{
    char key[80], text[400];
    snprintf(key, sizeof(key), "wait:%s", m->vm);
    snprintf(text, sizeof(text), "failover from %s waits: %s", m->from, m->why);
    if (!say_once(fo, key, text))
        return;
    log_warn("failover: %s: %s", m->vm, text);
    events_add(fo->env.events, m->vm, "vm.failover_waiting", "%s", text);
    const struct cdb *db = cluster_db(fo->env.cluster);
    json_t *cmd = cdb_cmd_vm_state_at(cdb_cmd_version_min(db), m->vm, "recovering", text, NULL);
    struct ferr e;
    if (cmd && cluster_write(fo->env.cluster, cmd, written, NULL, &e) < 0)
        log_debug("failover: %s: the record does not say why yet: %s", m->vm, e.msg);
    json_decref(cmd);
}

static void give(struct failover *fo, const struct failplan_move *m, const json_t *info)
{
    struct given *g = calloc(1, sizeof(*g));
    if (!g)
        return;
    *g = (struct given){.fo = fo};
    char key[80];
    snprintf(key, sizeof(key), "wait:%s", m->vm);
    json_object_del(fo->said, key);
    snprintf(g->vm, sizeof(g->vm), "%s", m->vm);
    snprintf(g->from, sizeof(g->from), "%s", m->from);
    snprintf(g->to, sizeof(g->to), "%s", m->to);
    const json_t *t = json_object_get(info, m->from);
    char why[256];
    snprintf(why, sizeof(why), "%s: no heartbeat and every lease stale", m->from);
    struct cdb_failover rec = {
        .from = m->from,
        .to = m->to,
        .why = why,
        .down_ms = (uint64_t)json_integer_value(json_object_get(t, "down_ms")),
        .stale_ms = (uint64_t)json_integer_value(json_object_get(t, "stale_ms")),
        .decided_ms = now_wall_ms(),
    };
    char reason[300];
    snprintf(reason, sizeof(reason), "failover from %s: %s starts it", m->from, m->to);
    json_t *cmd = cdb_cmd_vm_failover(m->vm, "recovering", reason, &rec);
    struct ferr e = {0};
    log_info("failover: %s: %s is dead; giving it to %s", m->vm, m->from, m->to);
    json_object_set_new(fo->inflight, m->vm, json_true());
    if (!cmd || cluster_write(fo->env.cluster, cmd, given, g, &e) < 0) {
        if (!cmd)
            ferr_set(&e, -ENOMEM, "out of memory");
        given(0, NULL, &e, g);
    }
    json_decref(cmd);
}

void failover_tick(struct failover *fo)
{
    struct cluster *c = fo->env.cluster;
    if (!c || !cluster_leading(c) || !cluster_quorum(c) || !fo->env.volumes)
        return;
    const struct cdb *db = cluster_db(c);
    if (cdb_cmd_version_min(db) < 6) {
        if (!fo->old_cluster)
            log_warn("failover: a node does not apply command version 6 yet (upgrade it): "
                     "dead nodes' VMs are not restarted elsewhere until then");
        fo->old_cluster = true;
        return;
    }
    fo->old_cluster = false;
    json_t *all = cluster_nodes(c), *info = json_object();
    const json_t *nodes = json_object_get(all, "nodes");
    json_t *dead = dead_nodes(fo, nodes, info);
    if (json_array_size(dead) > 0) {
        json_t *vms = cdb_vms(db, NULL);
        struct failplan_move *moves = calloc(PLAN_MAX, sizeof(*moves));
        size_t n = moves ? failplan_make(dead, nodes, vms, moves, PLAN_MAX) : 0;
        for (size_t i = 0; i < n; i++) {
            if (json_object_get(fo->inflight, moves[i].vm))
                continue;
            if (!moves[i].to[0])
                wait_said(fo, &moves[i]);
            else
                give(fo, &moves[i], info);
        }
        free(moves);
        json_decref(vms);
    }
    json_decref(dead);
    json_decref(info);
    json_decref(all);
}
