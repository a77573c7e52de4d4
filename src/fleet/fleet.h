/* SPDX-License-Identifier: MIT */
/* The cluster's VMs: which node owns each, where a new one goes, creating and deleting them
 * cluster-wide, and keeping the cluster database's record of this node's VMs true. */
#ifndef FERRY_FLEET_FLEET_H
#define FERRY_FLEET_FLEET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/reply.h"
#include "host/events.h"
#include "vm/vm.h"

/*
 * Every decision about the cluster's VMs is made here, from the cluster database's typed
 * records (cluster/cdb.h), and recorded there: who owns a VM (fleet_owner_of), where a VM goes
 * (fleet_place), creating one (checked, placed, made by its owner, then published; undone when
 * the record is refused), deleting one, the hand-over at the end of a migration
 * (fleet_hand_over, a compare-and-set of the owner), and keeping the records of this node's
 * VMs in step with what runs here (fleet_reconcile). Outside a cluster the node is alone and
 * owns every VM it has.
 *
 * A VM whose owner is down is "unknown" (the record's state is what the owner said last, which
 * nobody can confirm), with the reason and since when, until its node answers again.
 * Failover will decide here what happens to it.
 */
struct fleet;
struct cluster;

struct fleet_env {
    uv_loop_t *loop;
    struct vmset *vms;
    struct cluster *cluster; /* may run no cluster (a standalone node) */
    struct events *events;
    const char *node_name; /* borrowed; outlives the fleet */
    const char *accel;     /* this node's accelerator, published with running VMs */
    /* Self-fencing (fleet_tick): after fence_after_ms without the cluster's quorum this node
     * kills its HA VMs' QEMUs and stops renewing its volume leases (fence(data, true)), so
     * that the cluster may start them elsewhere once those leases are stale; fence(data,
     * false) when the quorum is back. 0: never fences (a standalone node). */
    unsigned fence_after_ms;
    void (*fence)(void *data, bool on);
    void *fence_data;
};

/* Answer of a fleet operation (common/reply.h): status and body, or e. */
typedef reply_cb fleet_cb;

/* env copied. Only -ENOMEM. */
int fleet_new(const struct fleet_env *env, struct fleet **out, struct ferr *e);
/* Frees f; answers still pending are dropped (call it when the loop no longer runs them). */
void fleet_free(struct fleet *f);

/* This node is a member of a cluster (else it is alone and owns its VMs). */
bool fleet_clustered(const struct fleet *f);

/* The node that owns VM name as this node's copy of the database says: 0 and out filled;
 * FERR_NOTFOUND when the database has no such VM or there is no cluster. */
int fleet_owner_of(const struct fleet *f, const char *name, char out[64]);

/* The API's object of a VM of this node (docs/api.md), with "owner"; new JSON. */
json_t *fleet_vm_json(const struct fleet *f, struct vm *vm);
/* The API's object of a VM that runs elsewhere, as the database knows it (with "unknown" as
 * its state when its owner is down); new JSON, NULL when there is no record of it. */
json_t *fleet_vm_record_json(const struct fleet *f, const char *name);
/* Every VM of the cluster (or of this node, alone), sorted by name: {"vms": [...],
 * "stale_ms"}; new JSON. */
json_t *fleet_list(const struct fleet *f);

/*
 * Creates the VM spec describes (borrowed): alone, here; in a cluster the spec is checked,
 * refused if the name is taken, placed (want: the node asked for, or NULL), made by its owner
 * (a request forwarded there unless it is this node; forwarded: the request came from another
 * node, which placed it here) and published; a record the database refuses makes the owner
 * delete the VM again, and the answer says so, also when that undo failed. cb gets 201 and the
 * VM's object once this node's copy of the database shows it too. Synchronous refusals (no
 * quorum, bad spec, taken name, no room) return negative with e set.
 */
int fleet_create(struct fleet *f, const json_t *spec, const char *want, bool forwarded, fleet_cb cb,
                 void *data, struct ferr *e);
/* Writes vm's spec (changed here, e.g. a disk moved) into its record; cb gets 200 once this
 * node's copy of the database has it (at once outside a cluster). */
int fleet_publish_spec(struct fleet *f, struct vm *vm, fleet_cb cb, void *data, struct ferr *e);
/* Deletes vm (of this node; force: kill it first) and its record. cb gets 200 {"deleted":
 * true}; a record the database keeps is only logged (the VM is gone). */
int fleet_delete(struct fleet *f, struct vm *vm, bool force, fleet_cb cb, void *data,
                 struct ferr *e);

/*
 * Where a VM of memory_mib goes: want if it can take it, else the up, active node with the
 * most free memory (cluster/placement.h), never exclude (NULL: none). pending (NULL, or an
 * object node name -> MiB) is memory already on its way to a node that its heartbeats do not
 * report yet (a drain sending VMs one after another). Writes the node's name to out. Alone:
 * this node. Errors as placement_pick; FERR_STATE outside a cluster when want is another node.
 */
int fleet_place(struct fleet *f, uint64_t memory_mib, const char *want, const char *exclude,
                const json_t *pending, char out[64], struct ferr *e);

/* The end of a migration: the owner of VM name becomes `to`, if it still is this node
 * (compare-and-set, so two hand-overs cannot both win). cb gets 200, or e (FERR_STATE when
 * another node owns it now). Synchronous refusals return negative. */
int fleet_hand_over(struct fleet *f, const char *name, const char *to, fleet_cb cb, void *data,
                    struct ferr *e);

/*
 * Starts vm (of this node) from its disks. A VM with a disk on a cluster shared volume gets a
 * new writer epoch first (docs/architecture.md, "Writer epochs"): a compare-and-set in the
 * database, applied here before QEMU starts, so that the volume's coordinator serves its
 * redirected disks to this QEMU only and refuses any older one still somewhere. That needs
 * the cluster's quorum: without it such a start is refused. cb as vm_start's.
 */
int fleet_start(struct fleet *f, struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);

/* Whether spec may be highly available here: a cluster, every disk on a cluster shared volume
 * (else the message names `ferry vm storage-move`), every preferred and possible node a
 * member. 0 or FERR_INVALID / FERR_STATE with e set. */
int fleet_ha_check(const struct fleet *f, const struct vm_spec *spec, struct ferr *e);
/* Sets vm's HA settings (ha_json: the spec's "ha" object, or NULL/null to disable), checked
 * with fleet_ha_check, saved and published. cb gets 200 and the VM's object. */
int fleet_set_ha(struct fleet *f, struct vm *vm, const json_t *ha_json, fleet_cb cb, void *data,
                 struct ferr *e);

/* Writes the state (and what runs) of every VM this node owns whose record says otherwise;
 * one write per VM in flight at a time. ferryd calls it after every VM change and every 2 s. */
void fleet_reconcile(struct fleet *f);

/*
 * Failover on this node, every FLEET_TICK_MS from ferryd (docs/failover.md):
 *   - self-fencing: without quorum for fence_after_ms, the HA VMs' QEMUs are killed and the
 *     leases stop (env.fence); with the quorum back they are renewed and HA VMs the cluster
 *     left to this node start again;
 *   - adoption: a VM whose record the leader gave to this node (state "recovering", vm_failover)
 *     is defined here from its record and started (a new writer epoch fences any older writer),
 *     at most FLEET_ADOPT_MAX at a time;
 * and with fleet_reconcile: a VM failed over away from this node while it was cut off is
 * removed here (its QEMU killed first if one started before the failover; disks kept).
 */
#define FLEET_TICK_MS 250
#define FENCE_AFTER_MS_DEFAULT 3000 /* FENCE_AFTER_MS_MIN, _MAX: fleet/timing.h */
#define FLEET_ADOPT_MAX 2
void fleet_tick(struct fleet *f);
/* Whether this node fenced itself and every HA QEMU it killed is gone; false with why while a
 * fence kill is late (the watchdog's health: a host that cannot fence itself is reset). */
bool fleet_fence_ok(const struct fleet *f, char *why, size_t size);
/* Whether this node is fenced now (no quorum for fence_after_ms). */
bool fleet_fenced(const struct fleet *f);
/* The fence delay in use (fleet/timing.h); ignored by a node that never fences (0). */
void fleet_set_fence_after(struct fleet *f, unsigned ms);

/* Failovers that ended on this node since ferryd started: VMs a failover gave it that run
 * here now, and the seconds from the dead node's last heartbeat heard (the record's
 * heard_ms) to their QEMU's start, as a histogram. */
#define FLEET_FAILOVER_HIST_N 9
#define FLEET_FAILOVER_HIST_BOUNDS                                                                 \
    {                                                                                              \
        2, 4, 6, 8, 10, 15, 30, 60, 120                                                            \
    }
struct fleet_hist {
    uint64_t buckets[FLEET_FAILOVER_HIST_N]; /* per bound, not cumulative (promtext.h) */
    uint64_t count;
    double sum_s;
};
struct fleet_failover_stats {
    uint64_t adopted;
    struct fleet_hist started; /* the dead node's last heartbeat heard -> QEMU started here */
    struct fleet_hist net;     /* -> the guest's first packet here (vm_net_ms) */
};
void fleet_failover_stats(const struct fleet *f, struct fleet_failover_stats *out);

#endif
