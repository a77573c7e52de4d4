/* SPDX-License-Identifier: MIT */
/* A node drain's plan, pure: which of the node's VMs move and in what order, how many at
 * once, what became of each, and what the drain answers. drain.c does the I/O. */
#ifndef FERRY_MIGRATE_DRAINPLAN_H
#define FERRY_MIGRATE_DRAINPLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vm/vm.h"

#define DRAIN_PARALLEL_DEFAULT 2
#define DRAIN_PARALLEL_MAX 16

/*
 * The rules:
 *   - The VMs are those the cluster database says the node owns when the drain starts, taken
 *     in the database's order (by name).
 *   - A running VM is live-migrated; at most `parallel` migrations of the drain run at once.
 *     A VM the host cannot migrate yet because it already runs its most outgoing migrations
 *     (ferryd --max-migrations, some perhaps not the drain's) waits for a slot and is taken
 *     again, first.
 *   - A stopped or failed VM stays (its definition and disks live with its owner); it takes
 *     no slot and does not keep the node from being paused.
 *   - Anything else fails for that VM (a paused or settling VM, no destination, a refused or
 *     failed migration, a VM the database names but this host lacks): the VM keeps running
 *     here, the others go on.
 *   - The drain is done when every VM was taken and every migration answered; the node is
 *     then "paused" if no VM failed, else it stays "draining".
 */

enum drain_outcome {
    DRAIN_PENDING,   /* not taken yet, or waiting for a slot */
    DRAIN_MIGRATING, /* its migration runs */
    DRAIN_MIGRATED,
    DRAIN_FAILED,
    DRAIN_STAYED,
};
/* "pending", "migrating", "migrated", "failed", "stayed" (the API's words). */
const char *drain_outcome_name(enum drain_outcome o);

struct drain_item {
    char name[VM_NAME_MAX + 1];
    enum drain_outcome outcome;
    char to[64];            /* where it goes or went, "" if nowhere yet */
    char msg[FERR_MSG_MAX]; /* why it failed or stayed, "" otherwise */
    json_t *figures;        /* a migrated VM's migration answer, owned */
};

struct drain_plan {
    unsigned parallel; /* migrations at once */
    unsigned running, migrated, failed, stayed;
    size_t n, next; /* items, and the first not taken yet */
    struct drain_item *items;
    json_t *sent; /* node name -> MiB of the VMs sent there, owned */
};

/* Fills p with the VMs of recs (an array of VM records with "name", borrowed), all pending;
 * parallel 0 means DRAIN_PARALLEL_DEFAULT. -ENOMEM (p then holds nothing to free). */
int drain_plan_init(struct drain_plan *p, const json_t *recs, unsigned parallel);
/* Frees what p holds. */
void drain_plan_free(struct drain_plan *p);

/* The next VM to take, or NULL: `parallel` migrations run, or every VM was taken. The caller
 * then settles it with drain_plan_judge and, for DRAIN_MOVE, one of drain_plan_started,
 * drain_plan_wait or drain_plan_fail. */
struct drain_item *drain_plan_next(struct drain_plan *p);

enum drain_step {
    DRAIN_MOVE,    /* migrate it */
    DRAIN_SETTLED, /* it stayed or failed: take the next one */
};
/* What becomes of it: found is false when this host has no such VM (node: this node's name,
 * for the message); st is its state. A stopped or failed VM stays, a missing one fails; any
 * other is to be moved (the migrator refuses what it cannot move, with its reason). */
enum drain_step drain_plan_judge(struct drain_plan *p, struct drain_item *it, const char *node,
                                 bool found, enum vm_state st);
/* Its migration to `to` (may be it->to) started; memory_mib is counted as sent there
 * (drain_plan_sent). */
void drain_plan_started(struct drain_plan *p, struct drain_item *it, const char *to,
                        uint64_t memory_mib);
/* The host runs its most migrations: it is taken again first, once a slot may be free. */
void drain_plan_wait(struct drain_plan *p, struct drain_item *it);
/* It cannot be migrated: msg says why (copied). */
void drain_plan_fail(struct drain_plan *p, struct drain_item *it, const char *msg);
/* Its migration answered: e NULL and the answer body (stolen; its "to" names the destination),
 * or the error e (body then dropped). */
void drain_plan_answered(struct drain_plan *p, struct drain_item *it, const struct ferr *e,
                         json_t *body);

/* Whether a refusal of migrate_start means "no free slot" rather than "this VM cannot go". */
bool drain_plan_host_busy(const struct ferr *e);

/* The MiB this drain sent to each node so far ({"node": MiB}, borrowed): placement takes them
 * off the free memory heartbeats report, which counts them only later. */
const json_t *drain_plan_sent(const struct drain_plan *p);

/* Every VM was taken and every migration answered. */
bool drain_plan_done(const struct drain_plan *p);
/* The node's admin state once done: "paused" when no VM failed, else "draining". */
const char *drain_plan_admin(const struct drain_plan *p);
/* The drain's answer (docs/api.md): {"node", "admin", "parallel", "total_ms", "migrated",
 * "failed", "stayed", "vms": [{"name", "outcome", "to", "message", and for a migrated VM its
 * "total_ms", "downtime_ms", "bytes", "passes", "strategy"}]}. New; NULL without memory. */
json_t *drain_plan_result(const struct drain_plan *p, const char *node, const char *admin,
                          uint64_t total_ms);

#endif
