/* SPDX-License-Identifier: MIT */
/* A migration the previous ferryd left under way, taken over by this one (takeover.h decides). */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/destwatch.h"
#include "migrate/migrate_internal.h"
#include "migrate/takeover.h"

struct confirm {
    struct mig *g;
    json_t *r; /* QEMU's answer */
};

static void confirmed(int status, json_t *body, const struct ferr *e, void *data)
{
    struct confirm *c = data;
    struct mig *g = c->g;
    const char *st = json_string_value(json_object_get(body, "state"));
    enum takeover_dest d = st && strcmp(st, "running") == 0 ? TAKEOVER_DEST_RUNS
                           : e && (e->code == FERR_UNAVAIL || e->code == FERR_TIMEOUT)
                               ? TAKEOVER_DEST_UNREACHABLE
                               : TAKEOVER_DEST_OTHER;
    enum takeover_confirm what = takeover_confirm(d);
    if (g->finished) {
        /* over meanwhile */
    } else if (what == TAKEOVER_HAND_OVER) {
        migrate__completed(g, c->r);
    } else if (what == TAKEOVER_ASK_AGAIN) {
        uv_timer_start(&g->timer, migrate__poll_timer, 1000, POLL_MS);
    } else {
        migrate__fail(g, FERR_STATE, "ferryd restarted before QEMU started the migration (%s: %s)",
                      g->to,
                      st  ? st
                      : e ? e->msg
                          : "no state");
    }
    json_decref(body);
    json_decref(c->r);
    free(c);
    migrate__unref(g);
}

void migrate__confirm_completed(struct mig *g, json_t *r)
{
    char path[128 + VM_NAME_MAX];
    snprintf(path, sizeof(path), "/v1/vms/%s", g->name);
    struct confirm *c = calloc(1, sizeof(*c));
    struct ferr e = {0};
    uv_timer_stop(&g->timer);
    if (!c) {
        migrate__fail(g, -ENOMEM, "out of memory");
        return;
    }
    c->g = g;
    c->r = json_incref(r);
    g->refs++;
    if (cluster_call(g->m->env.cluster, g->to, "GET", path, NULL, confirmed, c, &e) < 0) {
        json_decref(c->r);
        free(c);
        g->refs--;
        uv_timer_start(&g->timer, migrate__poll_timer, 1000, POLL_MS);
    }
}

/* ---- source: a migration the previous ferryd left behind ---- */

static void recovered(int status, json_t *body, const struct ferr *e, void *data)
{
    json_decref(body); /* nobody waits for this answer: the events and the record tell */
}

static void leftover_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                             void *data)
{
    if (status < 0)
        log_warn("migrate: removing the source definition: %s", e->msg);
}

struct unknown_ctx {
    struct migrator *m;
    char name[VM_NAME_MAX + 1];
    char to[64];
};

static void unknown_cleaned(int status, const struct ferr *e, void *data)
{
    struct unknown_ctx *u = data;
    if (status == 0) {
        log_info("migrate %s: %s holds no copy of it any more", u->name, u->to);
        events_add(u->m->env.events, u->name, "vm.migrate_cleaned",
                   "%s holds no copy any more (a copy that had received nothing of the VM is "
                   "discarded)",
                   u->to);
    } else {
        events_add(u->m->env.events, u->name, "vm.migrate_unknown", "%s keeps its copy: %s", u->to,
                   e ? e->msg : "no answer");
    }
    free(u);
}

/* The VM's QEMU is gone (stopped or failed here) and a journal names a destination, which the
 * database names as the owner (dest_owns) or not (takeover.h). */
static void recover_without_qemu(struct migrator *m, struct vm *vm, const char *to, bool dest_owns)
{
    const char *name = vm_name(vm);
    struct ferr e = {0};
    if (dest_owns) {
        /* The hand-over was complete but for removing the source's definition. */
        log_info("migrate %s: %s owns it; removing what is left here", name, to);
        events_add(m->env.events, name, "vm.migrated", "to %s: finished after a ferryd restart",
                   to);
        if (vmset_delete(m->env.vms, vm, true, leftover_removed, NULL, &e) < 0)
            log_warn("migrate %s: removing the source definition: %s", name, e.msg);
        return;
    }
    /* QEMU exited during the migration while no ferryd watched: whether the destination got
     * the whole VM cannot be told from here. Say so; do not guess either way. */
    log_warn("migrate %s: QEMU exited during the migration to %s while ferryd was down; "
             "check the VM on %s (ferry vm show %s)",
             name, to, to, name);
    events_add(m->env.events, name, "vm.migrate_unknown",
               "QEMU exited during the migration to %s while ferryd was down; check %s there", to,
               name);
    migrate__journal_remove(vm);
    /* But the destination can tell: a copy whose QEMU never received a byte (the source died
     * before its QEMU connected) would wait for ever, paused, holding memory. Only such a
     * copy (or one whose QEMU is gone) goes; one that received state stays (destination.c). */
    struct unknown_ctx *u = calloc(1, sizeof(*u));
    if (u) {
        u->m = m;
        snprintf(u->name, sizeof(u->name), "%s", name);
        snprintf(u->to, sizeof(u->to), "%s", to);
    }
    destwatch_abort(m->env.loop, m->env.cluster, to, name, true, u ? unknown_cleaned : NULL, u);
}

void migrate_recover(struct migrator *m, struct vm *vm)
{
    char path[1300];
    const char *name = vm_name(vm);
    if (!m || migrate__journal_path(vm, path, sizeof(path)) < 0 || access(path, F_OK) != 0 ||
        migrate__find(m, name))
        return;
    enum vm_state st = vm_state(vm);
    char *text = NULL;
    json_t *j = NULL;
    if (file_read_all(path, 4096, &text, NULL, NULL) == 0)
        j = json_loads(text, 0, NULL);
    free(text);
    const char *to = json_string_value(json_object_get(j, "to"));
    json_t *budget = json_object_get(j, "budget_ms");
    json_t *pc = json_object_get(j, "postcopy");
    struct takeover_facts facts = {
        .journal_valid = to && name_valid(to, 63) && json_is_integer(budget) &&
                         json_integer_value(budget) > 0 && json_is_boolean(pc),
        .vm_settling = st == VM_STARTING || st == VM_STOPPING || st == VM_INCOMING,
        .clustered = m->env.cluster && cluster_active(m->env.cluster),
        .quorum = m->env.cluster && cluster_quorum(m->env.cluster),
        .qemu_runs = st == VM_RUNNING || st == VM_PAUSED,
    };
    facts.dest_owns = facts.journal_valid && facts.clustered && migrate__owner_is(m, name, to);
    switch (takeover_first(&facts)) {
    case TAKEOVER_WAIT:
        json_decref(j);
        return; /* the next tick */
    case TAKEOVER_DROP_JOURNAL:
        log_warn("migrate %s: %s is not a migration journal; removed", name, path);
        json_decref(j);
        migrate__journal_remove(vm);
        return;
    case TAKEOVER_FINISH_SOURCE:
    case TAKEOVER_UNKNOWN:
        recover_without_qemu(m, vm, to, facts.dest_owns);
        json_decref(j);
        return;
    case TAKEOVER_DRIVE:
        break;
    }
    struct mig *g = calloc(1, sizeof(*g));
    if (!g) {
        json_decref(j);
        return;
    }
    g->m = m;
    g->vm = vm;
    snprintf(g->name, sizeof(g->name), "%s", name);
    snprintf(g->to, sizeof(g->to), "%s", to);
    g->postcopy = json_is_true(pc);
    g->tls = json_is_true(json_object_get(j, "tls")); /* QEMU keeps its credential */
    g->policy =
        (struct mig_policy){.budget_ms = (uint64_t)json_integer_value(budget), .postcopy = true};
    json_decref(j);
    g->cb = recovered; /* QEMU keeps the parameters it was given; nothing is set again */
    g->t0_ms = now_mono_ms();
    g->prepared = g->started = g->recovering = true;
    g->refs = 2; /* the list, the timer */
    uv_timer_init(m->env.loop, &g->timer);
    g->timer.data = g;
    g->next = m->migs;
    m->migs = g;
    vm_set_migrating(vm, migrate__on_vm_event, g);
    g->watch = destwatch_start(m->env.loop, m->env.cluster, g->to, g->name, migrate__dest_lost, g);
    log_info("migrate %s: ferryd restarted during the migration to %s (%s); taking it over", name,
             g->to, migrate__strategy(g));
    events_add(m->env.events, name, "vm.migrating",
               "to %s: ferryd restarted during the migration; taking it over", g->to);
    uv_timer_start(&g->timer, migrate__poll_timer, 0, POLL_MS);
}
