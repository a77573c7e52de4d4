/* SPDX-License-Identifier: MIT */
/* Live migration, source side: the source drives QEMU's migration to an incoming QEMU that the
 * destination ferryd prepared, then hands the VM's ownership over in the cluster database. */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "migrate/destwatch.h"
#include "migrate/migrate_internal.h"
#include "migrate/takeover.h"

/* ---- source: the end of a migration ---- */

static void unlist(struct mig *g)
{
    for (struct mig **p = &g->m->migs; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            return;
        }
}

/* Leaves the list; the memory goes once the last call in flight returned. */
static void finish(struct mig *g)
{
    g->finished = true;
    explicit_bzero(&g->tls_key, sizeof(g->tls_key));
    if (!g->vm_gone) {
        migrate__journal_remove(g->vm);
        vm_mig_tls_remove(g->vm, false);
    }
    unlist(g);
    destwatch_stop(g->watch);
    g->watch = NULL;
    uv_close((uv_handle_t *)&g->timer, migrate__timer_closed);
    migrate__unref(g); /* the list's reference */
}

/*
 * Continuing the VM here after a failed migration. QEMU stops the guest for the switchover,
 * and a failure after that leaves it stopped ("postmigrate"): cont re-activates its disks and
 * runs it again.
 */
struct cont_ctx {
    struct migrator *m;
    char name[VM_NAME_MAX + 1];
};

static void after_cont(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct cont_ctx *x = d;
    if (status < 0 && status != -ECANCELED)
        log_warn("migrate %s: cont after the failure: %s", x->name, err ? err : ferr_str(status));
    free(x);
}

static void after_status(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct cont_ctx *x = d;
    const char *st = status == 0 ? json_string_value(json_object_get(r, "status")) : NULL;
    struct vm *vm = st ? vmset_find(x->m->env.vms, x->name) : NULL;
    struct ferr e = {0};
    if (vm && strcmp(st, "running") != 0 && strcmp(st, "shutdown") != 0) {
        if (vm_qmp(vm, "cont", NULL, after_cont, x, &e) == 0) {
            log_info("migrate %s: QEMU was %s after the failure; cont", x->name, st);
            return;
        }
        log_warn("migrate %s: %s", x->name, e.msg);
    }
    free(x);
}

/* Runs the VM called name here again if the failed migration left its QEMU stopped. */
static void continue_here(struct migrator *m, const char *name)
{
    struct cont_ctx *x = calloc(1, sizeof(*x));
    struct vm *vm = vmset_find(m->env.vms, name);
    struct ferr e = {0};
    if (!x || !vm) {
        free(x);
        return;
    }
    x->m = m;
    snprintf(x->name, sizeof(x->name), "%s", name);
    if (vm_qmp(vm, "query-status", NULL, after_status, x, &e) < 0) {
        log_warn("migrate %s: %s", name, e.msg);
        free(x);
    }
}

/* The destination's answer to the abort of a migration whose QEMU had completed. */
static void aborted_after_completed(int status, const struct ferr *e, void *data)
{
    struct cont_ctx *x = data;
    if (status == 0) {
        continue_here(x->m, x->name);
    } else {
        /* Its copy may run there: a second one must not run here too. */
        log_warn("migrate %s: not continued here: its destination did not confirm that its "
                 "copy is gone: %s",
                 x->name, e->msg);
        events_add(x->m->env.events, x->name, "vm.migrate_unknown",
                   "stays stopped here: its destination did not confirm that its copy is gone "
                   "(%s); it may run there",
                   e->msg);
    }
    free(x);
}

/* Boots a VM again once its killed QEMU is fully cleaned up (vm_start refuses until then). */
struct reboot {
    uv_timer_t timer;
    struct vmset *vms;
    char name[VM_NAME_MAX + 1];
    unsigned tries;
};

static void reboot_closed(uv_handle_t *h)
{
    free(h->data);
}

static void rebooted(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    if (status < 0)
        log_warn("migrate: boot after the lost post-copy: %s", e->msg);
}

static void reboot_tick(uv_timer_t *t)
{
    struct reboot *r = t->data;
    struct vm *vm = vmset_find(r->vms, r->name);
    struct ferr e = {0};
    if (vm && vm_start(vm, rebooted, NULL, &e) < 0 && e.code == FERR_STATE && ++r->tries < 50) {
        uv_timer_start(&r->timer, reboot_tick, 100, 0); /* still cleaning up */
        return;
    }
    if (!vm || e.code)
        log_warn("migrate %s: boot after the lost post-copy: %s", r->name,
                 vm ? e.msg : "the VM is gone");
    else
        log_info("migrate %s: booting it again from its disks", r->name);
    uv_close((uv_handle_t *)&r->timer, reboot_closed);
}

/* data: the migrator. */
static void reboot_after_lost(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                              void *data)
{
    struct migrator *m = data;
    struct reboot *r = calloc(1, sizeof(*r));
    if (!r || !vm) {
        free(r);
        return;
    }
    r->vms = set;
    snprintf(r->name, sizeof(r->name), "%s", vm_name(vm));
    uv_timer_init(m->env.loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, reboot_tick, 0, 0);
}

/* Failure before completion: the VM keeps running here, the destination is cleaned up. */
void migrate__fail(struct mig *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void migrate__fail(struct mig *g, int code, const char *fmt, ...)
{
    if (g->finished)
        return;
    struct ferr e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    char why[300];
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* A cancel makes the destination fail too, and that may be seen first: the user who
     * cancelled is told so either way. */
    if (g->cancelled && !strstr(why, "cancel")) {
        char was[sizeof(why)];
        snprintf(was, sizeof(was), "%s", why);
        snprintf(why, sizeof(why), "cancelled by request (%.250s)", was);
    }
    /* After migrate-start-postcopy the guest runs on the destination with part of its memory
     * still here: neither copy is whole. A broken stream is resumed (try_recover); this is
     * reached only when the destination has no copy left (its QEMU died) or QEMU failed
     * outright. Then the newest whole state is the disks: the VM boots again here. */
    int n = g->postcopy
                ? snprintf(e.msg, sizeof(e.msg),
                           "migrate %.64s to %.63s: %s, after the post-copy switchover: the "
                           "VM's memory was split between %.63s and %.63s and no whole copy "
                           "is left; %.64s %s on %.63s from its disks (its memory state is "
                           "lost)",
                           g->name, g->to, why, g->m->env.node_name, g->to, g->name,
                           g->dest_has_none ? "boots again" : "is stopped; start it again",
                           g->m->env.node_name)
                : snprintf(e.msg, sizeof(e.msg),
                           "migrate %.64s to %.63s: %s; %.64s keeps running on %.63s", g->name,
                           g->to, why, g->name, g->m->env.node_name);
    if (n < 0)
        e.msg[0] = '\0';
    uv_timer_stop(&g->timer);
    vm_set_migrating(g->vm, NULL, NULL);
    struct ferr qe = {0};
    struct cont_ctx *x = NULL;
    if (!g->postcopy && g->completed && g->prepared) {
        /* The destination's QEMU started the guest by itself and holds the disks: the VM
         * may run here again only once that copy is gone (cont would also find the disks
         * locked until then). */
        x = calloc(1, sizeof(*x));
        if (x) {
            x->m = g->m;
            snprintf(x->name, sizeof(x->name), "%s", g->name);
        }
    }
    if (g->prepared) /* retried while the destination cannot be reached (destwatch.c) */
        destwatch_abort(g->m->env.loop, g->m->env.cluster, g->to, g->name, false,
                        x ? aborted_after_completed : NULL, x);
    if (g->postcopy) {
        /* Only when the destination said it has no copy may one run here again. */
        if (vm_kill(g->vm, g->dest_has_none ? reboot_after_lost : NULL, g->m, &qe) < 0)
            log_warn("migrate %s: kill after the failed post-copy: %s", g->name, qe.msg);
    } else if (!g->completed || !g->prepared) {
        continue_here(g->m, g->name);
    }
    log_warn("%s", e.msg);
    events_add(g->m->env.events, g->name,
               g->cancelled ? "vm.migrate_cancelled" : "vm.migrate_failed", "%s", e.msg);
    migrate__record(g, g->cancelled ? MIGRATE_CANCELLED : MIGRATE_FAILED, e.msg);
    migrate__task_end(g, g->cancelled ? MIGRATE_CANCELLED : MIGRATE_FAILED, e.msg);
    g->cb(0, NULL, &e, g->data);
    finish(g);
}

static void source_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                           void *data)
{
    struct mig *g = data;
    if (status < 0)
        log_warn("migrate %s: removing the source definition: %s", g->name, e->msg);
    g->vm_gone = true; /* removed, or not: either way g->vm is not to be touched again */
    char msg[400];
    snprintf(msg, sizeof(msg),
             "to %s: %s, total %lld ms, downtime %lld ms, setup %lld ms, %lld bytes, "
             "%lld passes, budget %llu ms, downtime-limit %llu ms",
             g->to, migrate__strategy(g), (long long)g->total_ms, (long long)g->downtime_ms,
             (long long)g->setup_ms, (long long)g->bytes, (long long)g->passes,
             (unsigned long long)g->policy.budget_ms, (unsigned long long)migrate__limit_ms(g));
    events_add(g->m->env.events, g->name, "vm.migrated", "%s", msg);
    migrate__record(g, MIGRATE_COMPLETED, NULL);
    log_info("migrate %s %s", g->name, msg);
    migrate__task_end(g, MIGRATE_COMPLETED, NULL);
    json_t *fig = migrate__figures(g, MIGRATE_COMPLETED, NULL);
    if (fig && g->task[0])
        json_object_set_new(fig, "task", json_string(g->task));
    g->cb(200, fig, NULL, g->data);
    finish(g);
    migrate__unref(g); /* the quit/delete chain */
}

static void source_quit(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                        void *data)
{
    struct mig *g = data;
    struct ferr e2 = {0};
    if (!vm || vmset_delete(set, vm, true, source_removed, g, &e2) < 0)
        source_removed(set, vm, vm ? e2.code : 0, &e2, g);
}

static void owner_switched(int status, json_t *body, const struct ferr *e, void *data);

/* Asks the cluster database to make the destination the owner, unless this node's copy of it
 * says so already (a write that timed out may have been made). */
static void hand_over(struct mig *g)
{
    if (migrate__owner_is(g->m, g->name, g->to)) {
        owner_switched(200, NULL, NULL, g);
        return;
    }
    struct ferr e = {0};
    if (fleet_hand_over(g->m->env.fleet, g->name, g->to, owner_switched, g, &e) < 0)
        owner_switched(0, NULL, &e, g);
}

static void hand_over_tick(uv_timer_t *t)
{
    hand_over(t->data);
}

/* A refusal that asking again cannot change: the database applied the compare-and-set and
 * names another owner, or has no such VM. No quorum, a timeout or a lost leader may all
 * change. */
static bool refused_for_good(const struct ferr *e)
{
    return e->code == FERR_STATE || e->code == FERR_NOTFOUND || e->code == FERR_INVALID;
}

/* The cluster database took the new owner: the source QEMU and definition go (disks stay).
 *
 * Once QEMU said completed, the destination's QEMU runs the guest (it starts by itself) and
 * the source's holds the state of the switch-over, stopped. Going back to the source would
 * undo what the guest did on the destination since: acknowledged disk writes, packets sent,
 * and after a post-copy even the memory (the source's copy is not whole). So a write that
 * could not be made (no quorum, a timeout) is asked again every HANDOVER_RETRY_MS for as long
 * as it takes, while the VM runs on the destination and the source QEMU stays stopped; only a
 * refusal for good (the database names another owner) fails the migration. */
static void owner_switched(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    json_decref(body);
    if (g->finished) {
        migrate__unref(g);
        return;
    }
    if (e && !refused_for_good(e)) {
        if (!g->handover_waiting) {
            g->handover_waiting = true;
            log_warn("migrate %s: QEMU completed and %s runs on %s, but the cluster database "
                     "cannot record its new owner yet (%s); asking again every %d ms",
                     g->name, g->name, g->to, e->msg, HANDOVER_RETRY_MS);
            events_add(g->m->env.events, g->name, "vm.migrate_handover_waiting",
                       "QEMU completed and the VM runs on %s; the cluster database cannot "
                       "record its new owner yet (%s): asking again until it does; the source "
                       "QEMU stays stopped",
                       g->to, e->msg);
        }
        uv_timer_start(&g->timer, hand_over_tick, HANDOVER_RETRY_MS, 0);
        return; /* the reference passes to the next try */
    }
    if (e) {
        /* The database names another owner: the destination's copy must not run. The abort
         * kills it there; after a pre-copy the source QEMU continues once that copy is gone
         * (migrate__fail). */
        migrate__fail(g, e->code, "the cluster database refused the owner change: %.200s", e->msg);
        migrate__unref(g);
        return;
    }
    if (g->handover_waiting)
        log_info("migrate %s: the cluster database names %s as the owner now", g->name, g->to);
    vm_set_migrating(g->vm, NULL, NULL);
    struct ferr qe = {0};
    if (vm_quit(g->vm, source_quit, g, &qe) < 0)
        source_quit(vm_vmset(g->vm), g->vm, 0, NULL, g);
    /* the reference of this call passes to the quit/delete chain */
}

/* The cluster database (this node's copy) names node as the owner of the VM called name. */
bool migrate__owner_is(struct migrator *m, const char *name, const char *node)
{
    char owner[64];
    return fleet_owner_of(m->env.fleet, name, owner) == 0 && strcmp(owner, node) == 0;
}

json_int_t migrate__jint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

void migrate__completed(struct mig *g, json_t *r)
{
    json_t *ram = json_object_get(r, "ram");
    g->total_ms = migrate__jint(r, "total-time");
    g->downtime_ms = migrate__jint(r, "downtime");
    g->setup_ms = migrate__jint(r, "setup-time");
    g->bytes = migrate__jint(ram, "transferred");
    g->passes = migrate__jint(ram, "dirty-sync-count");
    g->completed = true;
    uv_timer_stop(&g->timer);
    g->refs++;
    hand_over(g); /* owner already switched before a ferryd restart: hand_over sees it */
}

/* After a ferryd restart QEMU's "completed" may be an older migration's (one whose owner
 * change the database refused, say): only a destination that runs the VM proves it is ours. */

/* query-migrate's figures as the policy wants them. */
static struct mig_observation observe(const struct mig *g, const json_t *r)
{
    const json_t *ram = json_object_get(r, "ram");
    json_int_t page = migrate__jint(ram, "page-size") ? migrate__jint(ram, "page-size") : 4096;
    const json_t *mbps = json_object_get(ram, "mbps");
    double bps = json_is_number(mbps) ? json_number_value(mbps) * 1e6 / 8 : 0;
    return (struct mig_observation){
        .elapsed_ms = now_mono_ms() - g->t0_ms,
        .passes = migrate__jint(ram, "dirty-sync-count"),
        .dirty_rate = (uint64_t)(migrate__jint(ram, "dirty-pages-rate") * page),
        .throughput = bps > 0 ? (uint64_t)bps : 0,
    };
}

static void on_query(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    g->query_busy = false;
    if (g->finished)
        goto out;
    if (status < 0) {
        migrate__fail(g, FERR_QEMU, "query-migrate: %.300s", err ? err : ferr_str(status));
        goto out;
    }
    const char *st = json_string_value(json_object_get(r, "status"));
    /* Taken over after a restart, QEMU may say no migration ever left it (takeover.h). */
    if (g->recovering &&
        takeover_query(st, json_object_get(r, "ram") != NULL) == TAKEOVER_NOT_STARTED) {
        migrate__fail(g, FERR_STATE, "ferryd restarted before QEMU started the migration");
        goto out;
    }
    if (!st || strcmp(st, "none") == 0)
        goto out;
    json_decref(g->last);
    g->last = json_incref(r);
    json_t *ram = json_object_get(r, "ram");
    if (ram) {
        g->bytes = migrate__jint(ram, "transferred");
        g->passes = migrate__jint(ram, "dirty-sync-count");
        g->setup_ms = migrate__jint(r, "setup-time");
    }
    if (strcmp(st, "completed") == 0) {
        if (g->completed)
            goto out; /* the hand-over is under way (a poll after a cancel or a lost watch) */
        /* QEMU 7.2 can answer completed with total-time and downtime still 0. */
        if ((migrate__jint(r, "total-time") == 0 || migrate__jint(r, "downtime") == 0) &&
            ++g->completed_polls < COMPLETED_REPOLLS) {
            uv_timer_start(&g->timer, migrate__poll_timer, 5, POLL_MS);
            goto out;
        }
        if (g->recovering)
            migrate__confirm_completed(g, r);
        else
            migrate__completed(g, r);
    } else if (strcmp(st, "failed") == 0) {
        const char *desc = json_string_value(json_object_get(r, "error-desc"));
        migrate__fail(g, FERR_QEMU, "QEMU: migration failed: %.300s",
                      desc ? desc : "no reason given");
    } else if (strcmp(st, "cancelled") == 0) {
        migrate__fail(g, g->lost[0] ? FERR_UNAVAIL : FERR_STATE, "%s",
                      g->lost[0]     ? g->lost
                      : g->cancelled ? "cancelled by request"
                                     : "QEMU cancelled it");
    } else if (strcmp(st, "postcopy-paused") == 0) {
        if (!g->pc_paused) {
            g->pc_paused = true;
            log_warn("migrate %s: the post-copy stream to %s broke; resuming it once %s answers",
                     g->name, g->to, g->to);
            events_add(g->m->env.events, g->name, "vm.migrating",
                       "to %s: the post-copy stream broke; resuming it once %s answers", g->to,
                       g->to);
        }
        migrate__try_recover(g);
    } else if (strcmp(st, "postcopy-active") == 0 && g->pc_paused) {
        g->pc_paused = false;
        g->recoveries++;
        /* Watch the destination afresh: the old watch reported its loss once and stopped. */
        destwatch_stop(g->watch);
        g->watch = destwatch_start(g->m->env.loop, g->m->env.cluster, g->to, g->name,
                                   migrate__dest_lost, g);
        log_info("migrate %s: post-copy to %s resumed", g->name, g->to);
        events_add(g->m->env.events, g->name, "vm.migrating", "to %s: post-copy resumed", g->to);
    } else if (strcmp(st, "active") == 0 && !g->postcopy) {
        struct mig_observation o = observe(g, r);
        if (mig_policy_step(&g->policy, &o) == MIG_POSTCOPY) {
            char why[200];
            mig_policy_reason(&o, why, sizeof(why));
            g->postcopy = true;
            struct ferr je = {0};
            if (migrate__journal_write(g, &je) < 0) /* a restarted ferryd then assumes pre-copy */
                log_warn("migrate %s: %s", g->name, je.msg);
            log_info("migrate %s: pre-copy does not converge (%s); post-copy", g->name, why);
            events_add(g->m->env.events, g->name, "vm.migrating",
                       "to %s: pre-copy does not converge (%s); switching to post-copy", g->to,
                       why);
            migrate__qmp_step(g, "migrate-start-postcopy", NULL, migrate__on_setup);
        }
    }
out:
    migrate__unref(g);
}

void migrate__poll_now(struct mig *g)
{
    if (g->finished || g->query_busy)
        return;
    struct ferr e = {0};
    g->refs++;
    g->query_busy = true;
    if (vm_qmp(g->vm, "query-migrate", NULL, on_query, g, &e) < 0) {
        g->query_busy = false;
        g->refs--;
        migrate__fail(g, FERR_QEMU, "%s", e.msg);
    }
}

void migrate__poll_timer(uv_timer_t *t)
{
    migrate__poll_now(t->data);
}

/* QMP events of the source QEMU while migrating: MIGRATION says the status changed. */
void migrate__on_vm_event(struct vm *vm, const char *event, json_t *data, void *d)
{
    struct mig *g = d;
    if (strcmp(event, "MIGRATION") == 0 && g->started)
        migrate__poll_now(g);
}

/* ---- destination watch (destwatch.c) ---- */

/* The destination's ferryd stopped answering (killed, cut off) or lost the incoming VM:
 * cancel QEMU's pre-copy, so the migration fails with this reason and the VM stays here,
 * instead of completing into a QEMU that no ferryd manages. Post-copy cannot go back. */
void migrate__dest_lost(const char *why, void *data)
{
    struct mig *g = data;
    if (g->finished || g->lost[0])
        return;
    if (g->completed) {
        /* The destination runs the VM; going back is no longer an option (owner_switched). */
        log_warn("migrate %s: %s, after QEMU completed; the hand-over goes on", g->name, why);
        return;
    }
    if (g->postcopy) {
        /* Post-copy cannot go back; break the stream now (QEMU would wait for TCP to give
         * up, minutes) and resume it once the destination answers (try_recover). */
        log_warn("migrate %s: %s; pausing the post-copy", g->name, why);
        struct ferr qe = {0};
        if (vm_qmp_oob(g->vm, "migrate-pause", NULL, NULL, NULL, &qe) < 0)
            log_warn("migrate %s: migrate-pause: %s", g->name, qe.msg);
        return;
    }
    snprintf(g->lost, sizeof(g->lost), "%s", why);
    log_warn("migrate %s: %s; cancelling", g->name, why);
    struct ferr qe = {0};
    g->refs++;
    if (vm_qmp(g->vm, "migrate_cancel", NULL, migrate__after_cancel, g, &qe) < 0) {
        g->refs--;
        migrate__fail(g, FERR_UNAVAIL, "%s", g->lost);
    }
}

/* ---- source: start ---- */

static void on_migrate(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (!g->finished) {
        if (status < 0) {
            migrate__fail(g, FERR_QEMU, "migrate %.160s: %.300s", g->uri,
                          err ? err : ferr_str(status));
        } else {
            g->started = true;
            uv_timer_start(&g->timer, migrate__poll_timer, POLL_MS, POLL_MS);
            g->watch = destwatch_start(g->m->env.loop, g->m->env.cluster, g->to, g->name,
                                       migrate__dest_lost, g);
        }
    }
    migrate__unref(g);
}

void migrate__on_setup(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (!g->finished && status < 0)
        migrate__fail(g, FERR_QEMU, "migration parameters: %.300s", err ? err : ferr_str(status));
    migrate__unref(g);
}

int migrate__qmp_step(struct mig *g, const char *cmd, json_t *args, vm_qmp_cb cb)
{
    struct ferr e = {0};
    g->refs++;
    if (vm_qmp(g->vm, cmd, args, cb, g, &e) < 0) {
        g->refs--;
        migrate__fail(g, FERR_QEMU, "%s: %s", cmd, e.msg);
        return -1;
    }
    return 0;
}

static void console_sent(int status, json_t *body, const struct ferr *e, void *data)
{
    char *name = data;
    if (e) /* an older destination has no such call: its history starts empty */
        log_info("migrate %s: console history not carried over: %s", name, e->msg);
    json_decref(body);
    free(name);
}

/* Sends the tail of the console to the destination, so its history follows the VM. Best
 * effort and in parallel with the copy, which takes far longer than this one call. */
static void send_console(struct mig *g)
{
    char *data = NULL;
    size_t len = 0;
    uint64_t from, start, end;
    if (vm_console_read(g->vm, VM_CONSOLE_TAIL, CONSOLE_CARRY, &data, &len, &from, &start, &end) <
        0)
        return;
    if (len == 0) {
        free(data);
        return;
    }
    size_t skip = 0; /* a cut UTF-8 sequence at the start */
    while (skip < len && ((unsigned char)data[skip] & 0xC0) == 0x80)
        skip++;
    json_t *body = json_pack("{s:s, s:s, s:s%}", "name", g->name, "from", g->m->env.node_name,
                             "data", data + skip, len - skip);
    free(data);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *name = strdup(g->name);
    struct ferr e = {0};
    if (text && name &&
        cluster_call(g->m->env.cluster, g->to, "POST", "/v1/internal/migrate/console", text,
                     console_sent, name, &e) == 0)
        name = NULL;
    else
        log_info("migrate %s: console history not sent: %s", g->name, text ? e.msg : "no text");
    free(name);
    free(text);
}

/* The client credential is loaded (QEMU read the key file when it made the object): the
 * file goes now; the key stays only in the two QEMUs and the destination's keys.psk. */
static void on_tls_added(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (!g->vm_gone)
        vm_mig_tls_remove(g->vm, false);
    if (!g->finished && status < 0)
        migrate__fail(g, FERR_QEMU, "encrypted migration set-up, object-add: %.300s",
                      err ? err : ferr_str(status));
    migrate__unref(g);
}

/* An object of an earlier migration (this QEMU's own incoming one, or a failed outgoing one)
 * may hold the id; none is fine. */
static void on_tls_deleted(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    migrate__unref(d);
}

/* Source of an encrypted migration: QEMU's client credential over this migration's key
 * (tls-creds-psk endpoint=client with its identity, QEMU's docs/system/tls.rst); the migration
 * parameters name it. -1 after failing g. */
static int tls_client_setup(struct mig *g)
{
    char dir[700];
    struct ferr e = {0};
    if (vm_mig_tls_write(g->vm, false, &g->tls_key, &e) < 0 ||
        vm_mig_tls_dir(g->vm, false, dir, sizeof(dir)) < 0) {
        migrate__fail(g, e.code ? e.code : FERR_INVALID, "encrypted migration set-up: %s",
                      e.code ? e.msg : "key path too long");
        return -1;
    }
    json_t *add = json_pack("{s:s, s:s, s:s, s:s, s:s}", "qom-type", "tls-creds-psk", "id",
                            VM_MIG_TLS_CREDS_ID, "endpoint", "client", "dir", dir, "username",
                            g->tls_key.user);
    explicit_bzero(g->tls_key.key, sizeof(g->tls_key.key)); /* on disk until QEMU read it */
    if (migrate__qmp_step(g, "object-del", json_pack("{s:s}", "id", VM_MIG_TLS_CREDS_ID),
                          on_tls_deleted) < 0) {
        json_decref(add);
        return -1;
    }
    return migrate__qmp_step(g, "object-add", add, on_tls_added);
}

/* The destination listens: set QEMU's migration policy (and its TLS credential), then start.
 * QMP answers in order, so the commands go out at once; a TLS set-up that fails leaves
 * tls-creds naming no client credential, and "migrate" then fails: never a plain stream. */
static void prepared(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    const char *uri = json_string_value(json_object_get(body, "uri"));
    bool tls_confirmed = json_is_true(json_object_get(body, "tls"));
    if (uri) {
        g->prepared = true;
        snprintf(g->uri, sizeof(g->uri), "%s", uri);
    }
    json_decref(body);
    if (g->finished)
        goto out;
    if (e) {
        /* A ferryd that predates encrypted migration refuses the body with the key (it checks
         * every field): it never gets a plain stream instead (docs/architecture.md). */
        migrate__fail(g, e->code, "prepare on %s: %.300s%s", g->to, e->msg,
                      g->tls && e->code == FERR_INVALID && !strstr(e->msg, "\"tls\"")
                          ? "; its ferryd may predate encrypted migration: upgrade it, or "
                            "migrate with --insecure-migration"
                          : "");
        goto out;
    }
    if (!uri) {
        migrate__fail(g, FERR_PROTO, "prepare on %s: the answer has no uri", g->to);
        goto out;
    }
    if (g->tls && !tls_confirmed) {
        migrate__fail(g, FERR_PROTO,
                      "prepare on %s: its answer does not confirm an encrypted stream; upgrade "
                      "its ferryd, or migrate with --insecure-migration",
                      g->to);
        goto out;
    }
    if (g->cancelled) {
        migrate__fail(g, FERR_STATE, "cancelled by request");
        goto out;
    }
    if (vm_state(g->vm) != VM_RUNNING) {
        migrate__fail(g, FERR_STATE, "the VM is %s now", vm_state_name(vm_state(g->vm)));
        goto out;
    }
    json_t *caps = json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability", "events",
                             "state", 1, "capability", "postcopy-ram", "state", 1);
    /* tls-creds "" for a plain stream: this QEMU may keep those of an earlier migration. */
    json_t *params =
        json_pack("{s:I, s:I, s:I, s:s, s:s}", "downtime-limit", (json_int_t)migrate__limit_ms(g),
                  "max-bandwidth", (json_int_t)g->bandwidth, "max-postcopy-bandwidth",
                  (json_int_t)g->pc_bandwidth, "tls-creds", g->tls ? VM_MIG_TLS_CREDS_ID : "",
                  "tls-authz", "");
    json_t *mig = json_pack("{s:s}", "uri", g->uri);
    if (g->tls && tls_client_setup(g) < 0) {
        json_decref(caps);
        json_decref(params);
        json_decref(mig);
    } else if (migrate__qmp_step(g, "migrate-set-capabilities", caps, migrate__on_setup) < 0) {
        json_decref(params);
        json_decref(mig);
    } else if (migrate__qmp_step(g, "migrate-set-parameters", params, migrate__on_setup) < 0) {
        json_decref(mig);
    } else if (migrate__qmp_step(g, "migrate", mig, on_migrate) == 0) {
        send_console(g);
        log_info("migrate %s: to %s at %s (%s), downtime-limit %llu ms (budget %llu ms)", g->name,
                 g->to, g->uri, g->tls ? "TLS" : "plain stream",
                 (unsigned long long)migrate__limit_ms(g), (unsigned long long)g->policy.budget_ms);
    }
out:
    migrate__unref(g);
}

/* A new identity and key for one migration's TLS (vm_mig_tls): random, from the kernel. */
static int new_tls_key(struct vm_mig_tls *t, struct ferr *e)
{
    unsigned char rnd[8 + VM_MIG_TLS_KEY_HEX / 2];
    static const char hex[] = "0123456789abcdef";
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n < 0 && errno != EINTR)
            return ferr_set(e, -errno, "migration key: getrandom: %s", strerror(errno));
        if (n > 0)
            got += (size_t)n;
    }
    char *u = t->user + snprintf(t->user, sizeof(t->user), "ferry-mig-");
    for (unsigned i = 0; i < 8; i++) {
        *u++ = hex[rnd[i] >> 4];
        *u++ = hex[rnd[i] & 15];
    }
    *u = '\0';
    for (unsigned i = 0; i < VM_MIG_TLS_KEY_HEX / 2; i++) {
        t->key[2 * i] = hex[rnd[8 + i] >> 4];
        t->key[2 * i + 1] = hex[rnd[8 + i] & 15];
    }
    t->key[VM_MIG_TLS_KEY_HEX] = '\0';
    explicit_bzero(rnd, sizeof(rnd));
    return 0;
}

/* The destination: the named node, or the up node with the most free memory but this one. */
static int pick_destination(struct migrator *m, struct vm *vm, const char *to, char out[64],
                            struct ferr *e)
{
    if (to && strcmp(to, m->env.node_name) == 0)
        return ferr_set(e, FERR_INVALID, "to: %s already runs on %s", vm_name(vm), to);
    int rc = fleet_place(m->env.fleet, vm_spec(vm)->memory_mib, to, m->env.node_name, NULL, out, e);
    if (rc < 0)
        ferr_prefix(e, "to");
    return rc;
}

int migrate_start(struct migrator *m, struct vm *vm, const struct migrate_opts *o, migrate_cb cb,
                  void *data, struct ferr *e)
{
    const char *to = o->to;
    uint64_t budget_ms = o->budget_ms;
    const char *name = vm_name(vm);
    struct mig *busy = migrate__find(m, name);
    if (busy || vm_migrating(vm))
        return ferr_set(e, FERR_STATE,
                        "%s is already migrating to %s (ferry vm migrate --cancel %s)", name,
                        busy ? busy->to : "another node", name);
    if (m->env.unsafe)
        return ferr_set(e, FERR_STATE, "%s cannot be live-migrated from %s: %s", name,
                        m->env.node_name, m->env.unsafe);
    switch (vm_state(vm)) {
    case VM_RUNNING:
        break;
    case VM_PAUSED:
        return ferr_set(e, FERR_STATE,
                        "%s is paused; resume it first (ferry vm resume %s): a "
                        "live migration moves a running VM",
                        name, name);
    case VM_STOPPED:
    case VM_FAILED:
        return ferr_set(e, FERR_STATE, "%s is %s; only a running VM can be live-migrated", name,
                        vm_state_name(vm_state(vm)));
    default:
        return ferr_set(e, FERR_STATE, "%s is %s; wait until it runs", name,
                        vm_state_name(vm_state(vm)));
    }
    /* QEMU would refuse "migrate" itself, but only after the destination started a QEMU for
     * it: refuse before anything is asked of anyone. */
    char why[VM_PATH_MAX + 160];
    if (!vm_can_migrate(vm, why, sizeof(why)))
        return ferr_set(e, FERR_STATE,
                        "%s cannot be live-migrated: %s; a fixed VHD migrates: stop %s, convert "
                        "the disk (ferry disk convert PATH NEW --type fixed) and create the VM "
                        "again on the new file (ferry vm delete keeps its disks)",
                        name, why, name);
    unsigned max = m->env.max_out ? m->env.max_out : MIGRATE_DEFAULT_OUT, running = 0;
    for (struct mig *x = m->migs; x; x = x->next)
        running++;
    if (running >= max)
        return ferr_set(e, FERR_STATE,
                        "%s already runs %u " MIGRATE_BUSY_WORDS "%s (at most %u at once: "
                        "ferryd --max-migrations); migrate %s when one has finished",
                        m->env.node_name, running, running == 1 ? "" : "s", max, name);
    if (!m->env.cluster || !cluster_active(m->env.cluster))
        return ferr_set(e, FERR_STATE,
                        "this host is not in a cluster: there is nowhere to "
                        "migrate %s to",
                        name);
    if (!cluster_quorum(m->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "no quorum: the owner change could not be recorded; "
                        "try again when the cluster has a leader");
    if (budget_ms == 0)
        budget_ms = vm_spec(vm)->blackout_budget_ms;
    if (budget_ms == 0)
        budget_ms = 300;
    struct mig *g = calloc(1, sizeof(*g));
    if (!g)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = pick_destination(m, vm, to, g->to, e);
    if (rc < 0) {
        free(g);
        return rc;
    }
    g->tls = o->stream == MIGRATE_STREAM_TLS ||
             (o->stream == MIGRATE_STREAM_DEFAULT && !m->env.plain_default);
    if (g->tls && (rc = new_tls_key(&g->tls_key, e)) < 0) {
        free(g);
        return rc;
    }
    json_t *body = json_pack("{s:s, s:o, s:b}", "name", name, "spec", vm_spec_to_json(vm_spec(vm)),
                             "postcopy", 1);
    if (body && g->tls)
        json_object_set_new(
            body, "tls", json_pack("{s:s, s:s}", "user", g->tls_key.user, "key", g->tls_key.key));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        explicit_bzero(&g->tls_key, sizeof(g->tls_key));
        free(g);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    g->m = m;
    g->vm = vm;
    snprintf(g->name, sizeof(g->name), "%s", name);
    g->policy = (struct mig_policy){.budget_ms = budget_ms, .postcopy = true};
    g->bandwidth = o->bandwidth_mib ? o->bandwidth_mib << 20 : MAX_BANDWIDTH;
    g->pc_bandwidth = o->postcopy_bandwidth_mib << 20; /* QEMU: 0 is unlimited */
    g->cb = cb;
    g->data = data;
    g->t0_ms = now_mono_ms();
    rc = migrate__journal_write(g, e);
    if (rc < 0) {
        ferr_prefix(e, "migrate %s", name);
        explicit_bzero(text, strlen(text));
        free(text);
        explicit_bzero(&g->tls_key, sizeof(g->tls_key));
        free(g);
        return rc;
    }
    g->refs = 3; /* the list, the timer, the prepare call */
    uv_timer_init(m->env.loop, &g->timer);
    g->timer.data = g;
    g->next = m->migs;
    m->migs = g;
    vm_set_migrating(vm, migrate__on_vm_event, g);
    rc = cluster_call(m->env.cluster, g->to, "POST", "/v1/internal/migrate/prepare", text, prepared,
                      g, e);
    explicit_bzero(text, strlen(text)); /* the key */
    free(text);
    if (rc < 0) {
        ferr_prefix(e, "migrate %s: prepare on %s", name, g->to);
        vm_set_migrating(vm, NULL, NULL);
        g->refs--; /* no prepare call */
        finish(g);
        return rc;
    }
    events_add(m->env.events, name, "vm.migrating", "to %s, pre-copy, budget %llu ms, %s", g->to,
               (unsigned long long)budget_ms,
               g->tls ? "TLS (per-migration key)" : "plain stream (--insecure-migration)");
    migrate__task_begin(g, o->user);
    return 0;
}

void migrate__after_cancel(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (status < 0 && status != -ECANCELED && !g->finished)
        log_warn("migrate %s: migrate_cancel: %s", g->name, err ? err : ferr_str(status));
    migrate__poll_now(g);
    migrate__unref(g);
}

int migrate_cancel(struct migrator *m, const char *name, struct ferr *e)
{
    struct mig *g = migrate__find(m, name);
    if (!g)
        return ferr_set(e, FERR_STATE, "%s is not migrating", name);
    if (g->completed)
        return ferr_set(e, FERR_STATE,
                        "%s: QEMU completed the migration and the VM runs on %s; what is left "
                        "is recording its new owner in the cluster database, which a cancel "
                        "cannot undo",
                        name, g->to);
    /* After migrate-start-postcopy the guest may run on the destination already, with part of
     * its memory still here: a cancel would leave no complete copy anywhere. */
    if (g->postcopy)
        return ferr_set(e, FERR_STATE,
                        "%s: the migration to %s is in post-copy: the VM already runs there "
                        "and a cancel now would leave no complete copy; it ends shortly",
                        name, g->to);
    g->cancelled = true;
    if (!g->started)
        return 0; /* prepared() sees the flag */
    struct ferr qe = {0};
    g->refs++;
    if (vm_qmp(g->vm, "migrate_cancel", NULL, migrate__after_cancel, g, &qe) < 0) {
        g->refs--;
        migrate__fail(g, FERR_STATE, "cancelled by request");
    }
    return 0;
}

json_t *migrate_progress(struct migrator *m, const char *name)
{
    struct mig *g = m ? migrate__find(m, name) : NULL;
    if (!g)
        return NULL;
    const json_t *r = g->last;
    const json_t *ram = json_object_get(r, "ram");
    const char *st = json_string_value(json_object_get(r, "status"));
    json_t *mbps = json_object_get(ram, "mbps");
    json_int_t page = migrate__jint(ram, "page-size") ? migrate__jint(ram, "page-size") : 4096;
    json_t *exp = json_object_get(r, "expected-downtime");
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I}, s:I, s:f, s:o, s:I, "
                     "s:I, s:I}",
                     "vm", g->name, "from", g->m->env.node_name, "to", g->to, "status",
                     st ? st : (g->started ? "setup" : "preparing"), "strategy",
                     migrate__strategy(g), "pass", migrate__jint(ram, "dirty-sync-count"), "memory",
                     "transferred", migrate__jint(ram, "transferred"), "remaining",
                     migrate__jint(ram, "remaining"), "total", migrate__jint(ram, "total"),
                     "dirty_rate_bytes_per_s", migrate__jint(ram, "dirty-pages-rate") * page,
                     "throughput_mbps", json_is_number(mbps) ? json_number_value(mbps) : 0.0,
                     "expected_downtime_ms", json_is_integer(exp) ? json_incref(exp) : json_null(),
                     "elapsed_ms", (json_int_t)(now_mono_ms() - g->t0_ms), "budget_ms",
                     (json_int_t)g->policy.budget_ms, "downtime_limit_ms",
                     (json_int_t)migrate__limit_ms(g));
}
