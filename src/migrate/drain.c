/* SPDX-License-Identifier: MIT */
/* Draining a node: set its admin state to draining, live-migrate its running VMs away a few at
 * a time, then to paused; resuming sets it to active again. Health (cluster.c) is a separate
 * state ("up"|"down"), so the admin state stays whatever the node's health does. */
#include "migrate/drain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "fleet/tasks.h"

#define DRAIN_BUSY_RETRY_MS 500

struct drain {
    struct drain_env env;
    migrate_cb cb;
    void *data;
    unsigned parallel;      /* asked for (0: the default) */
    struct drain_plan plan; /* which VMs, what became of them (drainplan.c) */
    json_t *node;           /* the node's record when the drain started, owned */
    uint64_t t0_ms;
    bool finishing;
    bool cancelled;   /* its task was cancelled: no further VM is moved */
    uv_timer_t timer; /* the next pump: after a migration's answer, or while the host is busy */
    migrate_cb ucb;   /* the caller's answer; cb is drain_answered */
    void *udata;
    char user[33];
    char task[TASKREC_ID_MAX + 1]; /* "" for none */
};

/* The drain of this process, if one runs: a second one for the same node would only race the
 * first for the same VMs. */
static struct drain *running_drain;

static void drain_closed(uv_handle_t *h)
{
    struct drain *d = h->data;
    drain_plan_free(&d->plan);
    json_decref(d->node);
    free(d);
}

/* The memory goes once the timer is closed. */
static void drain_free(struct drain *d)
{
    if (running_drain == d)
        running_drain = NULL;
    uv_close((uv_handle_t *)&d->timer, drain_closed);
}

/* The write that sets the admin state of the node whose record is rec (borrowed). */
static json_t *node_admin_cmd(struct cluster *c, const json_t *rec, const char *admin,
                              const char *reason)
{
    return cdb_node_cmd(cdb_cmd_version_min(cluster_db(c)), rec, NULL, admin, reason,
                        now_wall_ms());
}

/* The node's record from this node's copy of the cluster database (*rec: new, the caller's),
 * refused while the node is down. */
static int node_lookup(const struct cluster *c, const char *node, const char *what, json_t **rec,
                       struct ferr *e)
{
    if (cdb_node_find(cluster_db(c), node, rec, e) < 0)
        return ferr_set(e, FERR_NOTFOUND, "no node named %s in the cluster (ferry node list)",
                        node);
    const char *health = json_string_value(json_object_get(*rec, "state"));
    if (health && strcmp(health, "down") == 0) {
        char admin[16];
        snprintf(admin, sizeof(admin), "%s",
                 json_string_value(json_object_get(*rec, "admin")) ?: "?");
        json_decref(*rec);
        *rec = NULL;
        if (strcmp(what, "resume") == 0)
            return ferr_set(e, FERR_STATE,
                            "resume: %s is down (and %s); it comes up by itself when it "
                            "heartbeats again, then resume it",
                            node, admin);
        return ferr_set(e, FERR_STATE, "%s: %s is down", what, node);
    }
    return 0;
}

static json_t *result(struct drain *d, const char *admin)
{
    return drain_plan_result(&d->plan, d->env.node_name, admin, now_mono_ms() - d->t0_ms);
}

static void marked_paused(int status, json_t *body, const struct ferr *e, void *data)
{
    struct drain *d = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "drain %s: every VM moved, but marking the node paused failed",
                    d->env.node_name);
        d->cb(0, NULL, &e2, d->data);
    } else {
        events_add(d->env.events, NULL, "node.drained", "%s paused: %u VMs migrated, %u stayed",
                   d->env.node_name, d->plan.migrated, d->plan.stayed);
        log_info("drain %s: done, paused (%u migrated, %u stayed)", d->env.node_name,
                 d->plan.migrated, d->plan.stayed);
        d->cb(200, result(d, "paused"), NULL, d->data);
    }
    drain_free(d);
}

static void finish(struct drain *d)
{
    d->finishing = true;
    const char *admin = drain_plan_admin(&d->plan);
    if (strcmp(admin, "paused") != 0) {
        events_add(d->env.events, NULL, "node.drain_failed",
                   "%s stays %s: %u of %zu VMs could not be migrated", d->env.node_name, admin,
                   d->plan.failed, d->plan.n);
        log_warn("drain %s: %u VMs could not be migrated; the node stays %s", d->env.node_name,
                 d->plan.failed, admin);
        d->cb(200, result(d, admin), NULL, d->data);
        drain_free(d);
        return;
    }
    struct ferr e = {0};
    json_t *cmd = node_admin_cmd(d->env.cluster, d->node, admin, "drained");
    if (!cmd || cluster_write(d->env.cluster, cmd, marked_paused, d, &e) < 0) {
        if (!cmd)
            ferr_set(&e, -ENOMEM, "out of memory");
        marked_paused(0, NULL, &e, d);
    }
    json_decref(cmd);
}

/*
 * The destination for vm: the up node but this one with the most free memory, counting the
 * memory of the VMs this drain already sent there (heartbeats report it only later, and
 * without this every VM of a burst would go to the same node).
 */
static int pick(struct drain *d, struct vm *vm, char out[64], struct ferr *e)
{
    int rc = fleet_place(d->env.fleet, vm_spec(vm)->memory_mib, NULL, d->env.node_name,
                         drain_plan_sent(&d->plan), out, e);
    if (rc < 0)
        ferr_prefix(e, "no destination");
    return rc;
}

static void pump(struct drain *d);

static void pump_tick(uv_timer_t *t)
{
    pump(t->data);
}

struct drain_call {
    struct drain *d;
    struct drain_item *it;
};

static void migrated(int status, json_t *body, const struct ferr *e, void *data)
{
    struct drain_call *call = data;
    struct drain *d = call->d;
    struct drain_item *it = call->it;
    free(call);
    drain_plan_answered(&d->plan, it, e, body);
    const char *outcome = drain_outcome_name(it->outcome);
    events_add(d->env.events, it->name, "node.drain_vm", "%s: %s%s%s%s", outcome,
               it->to[0] ? "to " : "", it->to, it->to[0] && it->msg[0] ? ": " : "", it->msg);
    log_info("drain %s: %s %s %s", d->env.node_name, it->name, outcome, it->msg);
    /* Next loop pass: the migrator still counts the migration that answers now. */
    uv_timer_start(&d->timer, pump_tick, 0, 0);
}

/* Starts migrations until the plan says enough run or none is left; finishes once all have
 * answered. */
static void pump(struct drain *d)
{
    struct drain_item *it;
    while ((it = drain_plan_next(&d->plan))) {
        if (d->cancelled) {
            drain_plan_fail(&d->plan, it, "not moved: the drain was cancelled");
            continue;
        }
        struct vm *vm = vmset_find(d->env.vms, it->name);
        if (drain_plan_judge(&d->plan, it, d->env.node_name, vm != NULL,
                             vm ? vm_state(vm) : VM_STOPPED) == DRAIN_SETTLED)
            continue;
        struct drain_call *call = calloc(1, sizeof(*call));
        if (!call) {
            drain_plan_fail(&d->plan, it, "out of memory");
            continue;
        }
        call->d = d;
        call->it = it;
        struct ferr e = {0};
        /* it->to: where it goes, also kept in the answer when migrate_start refuses */
        if (pick(d, vm, it->to, &e) < 0 ||
            migrate_start(d->env.migrator, vm,
                          &(struct migrate_opts){.to = it->to, .user = d->user}, migrated, call,
                          &e) < 0) {
            free(call);
            if (drain_plan_host_busy(&e)) {
                /* The host runs its most migrations at once (ferryd --max-migrations, some
                 * perhaps not ours): this VM waits for a slot. */
                drain_plan_wait(&d->plan, it);
                uv_timer_start(&d->timer, pump_tick, DRAIN_BUSY_RETRY_MS, 0);
                break;
            }
            drain_plan_fail(&d->plan, it, e.msg);
            events_add(d->env.events, it->name, "node.drain_vm", "failed: %s", e.msg);
            continue;
        }
        drain_plan_started(&d->plan, it, it->to, vm_spec(vm)->memory_mib);
        log_info("drain %s: migrating %s to %s", d->env.node_name, it->name, it->to);
    }
    if (drain_plan_done(&d->plan) && !d->finishing)
        finish(d);
}

static void marked_draining(int status, json_t *body, const struct ferr *e, void *data)
{
    struct drain *d = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "drain %s: marking the node draining", d->env.node_name);
        d->cb(0, NULL, &e2, d->data);
        drain_free(d);
        return;
    }
    /* The VMs this node owns now; the node takes no new ones from here on. */
    json_t *recs = cdb_vms(cluster_db(d->env.cluster), d->env.node_name);
    int rc = drain_plan_init(&d->plan, recs, d->parallel);
    json_decref(recs);
    if (rc < 0) {
        struct ferr e2 = {0};
        ferr_set(&e2, -ENOMEM, "drain %s: out of memory", d->env.node_name);
        d->cb(0, NULL, &e2, d->data);
        drain_free(d);
        return;
    }
    events_add(d->env.events, NULL, "node.draining", "%s: %zu VMs, %u at a time", d->env.node_name,
               d->plan.n, d->plan.parallel);
    log_info("drain %s: %zu VMs, %u at a time", d->env.node_name, d->plan.n, d->plan.parallel);
    pump(d);
}

/* The drain's task: how many VMs moved of how many. */
static json_t *task_progress(void *data)
{
    struct drain *d = data;
    const struct drain_plan *p = &d->plan;
    size_t settled = p->migrated + p->failed + p->stayed;
    return json_pack("{s:s, s:i, s:{s:I, s:I, s:I, s:I, s:I}}", "phase", p->n ? "moving" : "setup",
                     "percent", p->n ? (int)(settled * 100 / p->n) : 0, "detail", "total",
                     (json_int_t)p->n, "moved", (json_int_t)p->migrated, "failed",
                     (json_int_t)p->failed, "stayed", (json_int_t)p->stayed, "running",
                     (json_int_t)p->running);
}

/* Its task's cancel: no further VM is moved; the migrations under way finish (each is a task
 * that can be cancelled on its own); the node stays draining. */
static int task_cancel(void *data, struct ferr *e)
{
    struct drain *d = data;
    if (d->finishing)
        return ferr_set(e, FERR_STATE, "the drain of %s is finishing", d->env.node_name);
    d->cancelled = true;
    events_add(d->env.events, NULL, "node.drain_cancelled",
               "%s: no further VM is moved; it stays draining (ferry node resume %s)",
               d->env.node_name, d->env.node_name);
    return 0;
}

/* Every answer of the drain passes here: its task ends with it. */
static void drain_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct drain *d = data;
    if (d->task[0]) {
        char text[TASKREC_RESULT_MAX + 1];
        json_t *detail = task_progress(d);
        const char *admin = json_string_value(json_object_get(body, "admin"));
        bool ok = !e && admin && strcmp(admin, "paused") == 0;
        if (e)
            snprintf(text, sizeof(text), "%s", e->msg);
        else
            snprintf(text, sizeof(text), "%u of %zu VMs moved, %u failed, %u stayed; %s is %s",
                     d->plan.migrated, d->plan.n, d->plan.failed, d->plan.stayed, d->env.node_name,
                     admin ? admin : "?");
        tasks_end(d->env.tasks, d->task,
                  ok             ? "done"
                  : d->cancelled ? "cancelled"
                                 : "failed",
                  text, json_incref(json_object_get(detail, "detail")));
        json_decref(detail);
        if (body)
            json_object_set_new(body, "task", json_string(d->task));
    }
    d->ucb(status, body, e, d->udata);
}

int drain_start(const struct drain_env *env, unsigned parallel, migrate_cb cb, void *data,
                struct ferr *e)
{
    if (!env->cluster || !cluster_active(env->cluster))
        return ferr_set(e, FERR_STATE,
                        "drain: this host is not in a cluster: there is nowhere to move its VMs");
    if (!cluster_quorum(env->cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "drain: no quorum: the node state cannot be recorded; "
                        "try again when the cluster has a leader");
    if (running_drain)
        return ferr_set(e, FERR_STATE, "drain: %s is being drained already; wait for it",
                        env->node_name);
    json_t *rec;
    int rc = node_lookup(env->cluster, env->node_name, "drain", &rec, e);
    if (rc < 0)
        return rc;
    struct drain *d = calloc(1, sizeof(*d));
    if (!d) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "drain: out of memory");
    }
    d->env = *env;
    d->ucb = cb;
    d->udata = data;
    d->cb = drain_answered;
    d->data = d;
    snprintf(d->user, sizeof(d->user), "%s", env->user ? env->user : "ferryd");
    d->env.user = d->user;
    d->parallel = parallel;
    d->node = rec;
    d->t0_ms = now_mono_ms();
    uv_timer_init(env->loop, &d->timer);
    d->timer.data = d;
    json_t *cmd = node_admin_cmd(env->cluster, rec, "draining", "drain requested");
    rc = cmd ? cluster_write(env->cluster, cmd, marked_draining, d, e)
             : ferr_set(e, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0) {
        ferr_prefix(e, "drain %s", env->node_name);
        drain_free(d);
        return rc;
    }
    running_drain = d;
    static const struct task_ops ops = {.progress = task_progress, .cancel = task_cancel};
    struct ferr te = {0};
    if (env->tasks &&
        tasks_begin(env->tasks, "drain", env->node_name, d->user, &ops, d, d->task, &te) < 0) {
        log_warn("drain %s: no task: %s", env->node_name, te.msg);
        d->task[0] = '\0';
    }
    return 0;
}

int drain_check_node(const struct cluster *c, const char *node, const char *what, struct ferr *e)
{
    json_t *rec = NULL;
    if (!c || !cluster_active(c))
        return 0; /* drain_start and drain_resume say what is wrong */
    int rc = node_lookup(c, node, what, &rec, e);
    json_decref(rec);
    return rc;
}

struct resume_call {
    migrate_cb cb;
    void *data;
    char node[64];
};

static void resumed(int status, json_t *body, const struct ferr *e, void *data)
{
    struct resume_call *r = data;
    json_decref(body);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "resume %s", r->node);
        r->cb(0, NULL, &e2, r->data);
    } else {
        r->cb(200, json_pack("{s:s, s:s}", "node", r->node, "admin", "active"), NULL, r->data);
    }
    free(r);
}

int drain_resume(const struct drain_env *env, const char *node, migrate_cb cb, void *data,
                 struct ferr *e)
{
    if (!env->cluster || !cluster_active(env->cluster))
        return ferr_set(e, FERR_STATE, "resume: this host is not in a cluster");
    if (running_drain && strcmp(node, env->node_name) == 0)
        return ferr_set(e, FERR_STATE, "resume: %s is being drained; wait until the drain answers",
                        node);
    json_t *rec;
    int rc = node_lookup(env->cluster, node, "resume", &rec, e);
    if (rc < 0)
        return rc;
    struct resume_call *r = calloc(1, sizeof(*r));
    if (!r) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "resume: out of memory");
    }
    r->cb = cb;
    r->data = data;
    snprintf(r->node, sizeof(r->node), "%s", node);
    json_t *cmd = node_admin_cmd(env->cluster, rec, "active", "resumed");
    json_decref(rec);
    rc = cmd ? cluster_write(env->cluster, cmd, resumed, r, e)
             : ferr_set(e, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0) {
        ferr_prefix(e, "resume %s", node);
        free(r);
        return rc;
    }
    events_add(env->events, NULL, "node.resumed", "%s takes new VMs again", node);
    return 0;
}
