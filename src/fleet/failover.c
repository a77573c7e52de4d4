/* SPDX-License-Identifier: MIT */
/* The leader's half of failover (failover.h): dead nodes' HA VMs given to others. */
#include "fleet/failover.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/failplan.h"
#include "fleet/tasks.h"
#include "fleet/volumes.h"
#include "host/events.h"

#define PLAN_MAX 256                 /* VMs placed per tick */
#define FAILBACK_RETRY_MS 60000      /* a failback that did not happen is tried again after */
#define FLAP_DOWNS 3                 /* a node down this often ... */
#define FLAP_WINDOW_MS (3600 * 1000) /* ... within this time is quarantined ... */
#define FLAP_QUARANTINE_MS (3600 * 1000) /* ... for this long: nothing is placed on it */

struct failover {
    struct failover_env env;
    json_t *inflight; /* VM name -> true while its vm_failover is being written */
    json_t *said;     /* what was said once: "isolated:NODE" / "wait:VM" -> the text */
    json_t *downs;    /* node -> [state_changed_ms of each down seen], for flapping */
    json_t *failback; /* VM -> monotonic ms of the failback asked for */
    bool old_cluster; /* a node does not apply command version 6 yet: said once */
};

int failover_new(const struct failover_env *env, struct failover **out, struct ferr *e)
{
    struct failover *fo = calloc(1, sizeof(*fo));
    if (!fo || !(fo->inflight = json_object()) || !(fo->said = json_object()) ||
        !(fo->downs = json_object()) || !(fo->failback = json_object())) {
        if (fo) {
            json_decref(fo->inflight);
            json_decref(fo->said);
            json_decref(fo->downs);
        }
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
    json_decref(fo->downs);
    json_decref(fo->failback);
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
    char task[TASKREC_ID_MAX + 1]; /* "" for none */
};

static void given(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct given *g = data;
    json_object_del(g->fo->inflight, g->vm);
    char text[400];
    if (e)
        log_warn("failover: %s not given to %s: %s (tried again)", g->vm, g->to, e->msg);
    else
        events_add(g->fo->env.events, g->vm, "vm.failover",
                   "%s is dead: the cluster gives the VM to %s, which starts it", g->from, g->to);
    if (e)
        snprintf(text, sizeof(text), "not given to %.63s: %.300s (tried again)", g->to, e->msg);
    else
        snprintf(text, sizeof(text), "%.63s is dead: %.63s was given to %.63s, which starts it",
                 g->from, g->vm, g->to);
    if (g->task[0])
        tasks_end(g->fo->env.tasks, g->task, e ? "failed" : "done", text,
                  json_pack("{s:s, s:s}", "from", g->from, "to", g->to));
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
            if (say_once(fo, key, "isolated")) /* once per silence, not per tick */
                events_add(fo->env.events, NULL, "node.isolated", "%s", text);
            continue;
        }
        json_object_del(fo->said, key);
        json_array_append_new(dead, json_string(name));
        json_t *heard = json_object_get(n, "last_heartbeat_ms");
        json_object_set_new(
            info, name,
            json_pack("{sI sI sI}", "heard_ms",
                      json_is_integer(heard) ? (json_int_t)wall - json_integer_value(heard) : 0,
                      "down_ms", json_integer_value(json_object_get(n, "state_changed_ms")),
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
        .heard_ms = (uint64_t)json_integer_value(json_object_get(t, "heard_ms")),
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
    static const struct task_ops ops = {
        .no_cancel = "a failover cannot be cancelled: the VM's node is dead and the VM must run "
                     "somewhere; migrate it afterwards to move it elsewhere",
    };
    struct ferr te = {0};
    if (fo->env.tasks &&
        tasks_begin(fo->env.tasks, "failover", m->vm, "ferryd", &ops, NULL, g->task, &te) < 0)
        log_warn("failover: %s: no task: %s", m->vm, te.msg);
    if (!cmd || cluster_write(fo->env.cluster, cmd, given, g, &e) < 0) {
        if (!cmd)
            ferr_set(&e, -ENOMEM, "out of memory");
        given(0, NULL, &e, g);
    }
    json_decref(cmd);
}

/* -- guards: a node that keeps going down is kept out of placement for a while -- */

/* Counts node's down episodes (keyed by when its record went down) and says whether it is
 * quarantined: down FLAP_DOWNS times within FLAP_WINDOW_MS, the last of them less than
 * FLAP_QUARANTINE_MS ago. What the leader saw itself: a new leader starts counting again. */
static bool quarantined(struct failover *fo, const json_t *node, uint64_t wall)
{
    const char *name = jfield_text(node, "name");
    json_t *list = json_object_get(fo->downs, name);
    if (!list) {
        list = json_array();
        json_object_set_new(fo->downs, name, list);
    }
    json_int_t since = json_integer_value(json_object_get(node, "state_changed_ms"));
    if (strcmp(jfield_text(node, "state"), "down") == 0 && since > 0) {
        bool seen = false;
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x) seen |= json_integer_value(x) == since;
        if (!seen)
            json_array_append_new(list, json_integer(since));
    }
    for (size_t i = json_array_size(list); i-- > 0;)
        if ((json_int_t)wall - json_integer_value(json_array_get(list, i)) >
            FLAP_WINDOW_MS + FLAP_QUARANTINE_MS)
            json_array_remove(list, i);
    size_t n = json_array_size(list);
    if (n < FLAP_DOWNS)
        return false;
    json_int_t first = json_integer_value(json_array_get(list, n - FLAP_DOWNS));
    json_int_t last = json_integer_value(json_array_get(list, n - 1));
    return last - first <= FLAP_WINDOW_MS && (json_int_t)wall - last < FLAP_QUARANTINE_MS;
}

/* The nodes as placement sees them: a copy of nodes where a quarantined node's admin state is
 * "quarantined" (never chosen), said once. New JSON. */
static json_t *placeable(struct failover *fo, const json_t *nodes)
{
    json_t *out = json_deep_copy(nodes);
    uint64_t wall = now_wall_ms();
    size_t i;
    json_t *n;
    json_array_foreach(out, i, n)
    {
        const char *name = jfield_text(n, "name");
        char key[80];
        snprintf(key, sizeof(key), "quarantine:%s", name);
        if (quarantined(fo, n, wall)) {
            json_object_set_new(n, "admin", json_string("quarantined"));
            char text[200];
            snprintf(text, sizeof(text),
                     "%s went down %d times within %d min: no VM is placed on it for %d min", name,
                     FLAP_DOWNS, FLAP_WINDOW_MS / 60000, FLAP_QUARANTINE_MS / 60000);
            if (say_once(fo, key, "quarantined"))
                events_add(fo->env.events, NULL, "node.quarantined", "%s", text);
        } else {
            json_object_del(fo->said, key);
        }
    }
    return out;
}

/* -- failback: a VM that failed over goes back to its most preferred node by live migration -- */

/* Whether the hour now (local time) is in window "HH-HH" (may wrap midnight), "immediate" is
 * always, anything else never. */
static bool in_window(const char *w)
{
    if (strcmp(w, "immediate") == 0)
        return true;
    int a, b;
    if (sscanf(w, "%d-%d", &a, &b) != 2)
        return false;
    time_t t = time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return false;
    int h = tm.tm_hour;
    return a < b ? h >= a && h < b : h >= a || h < b;
}

static const json_t *node_named(const json_t *nodes, const char *name)
{
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) if (strcmp(jfield_text(n, "name"), name) == 0) return n;
    return NULL;
}

struct back {
    struct failover *fo;
    char vm[64], to[64];
};

static void went_back(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct back *b = data;
    if (e)
        log_warn("failback: %s did not move to %s: %s (tried again in %d s)", b->vm, b->to,
                 e->msg, FAILBACK_RETRY_MS / 1000);
    else
        log_info("failback: %s is back on %s", b->vm, b->to);
    free(b);
}

/* The first node of the VM's preferred list that is up and active for settle_ms, has room
 * (free_mib) and is not its owner; "" if its owner comes first or none qualifies. */
static void failback_target(const json_t *rec, const json_t *nodes, uint64_t wall,
                            unsigned settle_ms, char out[64])
{
    out[0] = '\0';
    json_t *spec = json_object_get(rec, "spec"), *ha = json_object_get(spec, "ha");
    const char *owner = jfield_text(rec, "owner");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ha, "preferred"), i, p)
    {
        const char *name = json_string_value(p);
        if (!name || strcmp(name, owner) == 0)
            return; /* it runs on a node it prefers at least as much */
        const json_t *n = node_named(nodes, name);
        json_int_t since = json_integer_value(json_object_get(n, "state_changed_ms"));
        if (!n || strcmp(jfield_text(n, "state"), "up") != 0 ||
            strcmp(jfield_text(n, "admin"), "active") != 0 ||
            (json_int_t)wall - since < (json_int_t)settle_ms ||
            json_integer_value(json_object_get(json_object_get(n, "memory"), "free_mib")) <
                json_integer_value(json_object_get(spec, "memory_mib")))
            continue;
        snprintf(out, 64, "%s", name);
        return;
    }
}

static void failback(struct failover *fo, const json_t *nodes, const json_t *vms)
{
    uint64_t wall = now_wall_ms(), now = now_mono_ms();
    size_t i;
    json_t *rec;
    json_array_foreach(vms, i, rec)
    {
        const char *name = jfield_text(rec, "name");
        json_t *spec = json_object_get(rec, "spec"), *ha = json_object_get(spec, "ha");
        json_t *fov = json_object_get(rec, "failover");
        const char *fb = jfield_text(ha, "failback");
        json_t *asked = json_object_get(fo->failback, name);
        /* only a VM still where a failover put it, running, in its window */
        if (!ha || !fov || !fb[0] || strcmp(fb, "never") == 0 ||
            strcmp(jfield_text(rec, "state"), "running") != 0 ||
            strcmp(jfield_text(rec, "owner"), jfield_text(fov, "to")) != 0 || !in_window(fb) ||
            (asked && now - (uint64_t)json_integer_value(asked) < FAILBACK_RETRY_MS))
            continue;
        char to[64];
        failback_target(rec, nodes, wall,
                        fo->env.failback_settle_ms ? fo->env.failback_settle_ms
                                                   : FAILBACK_SETTLE_MS_DEFAULT,
                        to);
        if (!to[0])
            continue;
        struct back *b = calloc(1, sizeof(*b));
        if (!b)
            return;
        *b = (struct back){.fo = fo};
        snprintf(b->vm, sizeof(b->vm), "%s", name);
        snprintf(b->to, sizeof(b->to), "%s", to);
        json_object_set_new(fo->failback, name, json_integer((json_int_t)now));
        char path[128], body[128];
        snprintf(path, sizeof(path), "/v1/vms/%s/migrate", name);
        snprintf(body, sizeof(body), "{\"to\": \"%s\"}", to);
        log_info("failback: %s goes back to %s (ha.failback %s), live", name, to, fb);
        events_add(fo->env.events, name, "vm.failback",
                   "%s is up again and preferred: the VM migrates back live from %s", to,
                   jfield_text(rec, "owner"));
        struct ferr e = {0};
        if (cluster_call(fo->env.cluster, jfield_text(rec, "owner"), "POST", path, body, went_back,
                         b, &e) < 0)
            went_back(0, NULL, &e, b);
    }
}

/* Whether this node acts: the leader with the quorum, once every node applies version 6. */
static bool acting(struct failover *fo)
{
    struct cluster *c = fo->env.cluster;
    if (!c || !cluster_leading(c) || !cluster_quorum(c) || !fo->env.volumes)
        return false;
    bool old = cdb_cmd_version_min(cluster_db(c)) < 6;
    if (old && !fo->old_cluster)
        log_warn("failover: a node does not apply command version 6 yet (upgrade it): "
                 "dead nodes' VMs are not restarted elsewhere until then");
    fo->old_cluster = old;
    return !old;
}

void failover_tick(struct failover *fo)
{
    if (!acting(fo))
        return;
    json_t *all = cluster_nodes(fo->env.cluster), *info = json_object();
    json_t *nodes = placeable(fo, json_object_get(all, "nodes"));
    json_t *dead = dead_nodes(fo, nodes, info);
    if (json_array_size(dead) > 0) {
        json_t *vms = cdb_vms(cluster_db(fo->env.cluster), NULL);
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
    json_decref(nodes);
    json_decref(dead);
    json_decref(info);
    json_decref(all);
}

void failover_failback_tick(struct failover *fo)
{
    if (!acting(fo))
        return;
    json_t *all = cluster_nodes(fo->env.cluster);
    json_t *nodes = placeable(fo, json_object_get(all, "nodes"));
    json_t *vms = cdb_vms(cluster_db(fo->env.cluster), NULL);
    failback(fo, nodes, vms);
    json_decref(vms);
    json_decref(nodes);
    json_decref(all);
}
