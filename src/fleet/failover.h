/* SPDX-License-Identifier: MIT */
/* The leader's half of failover: a node that is both silent on the network and stale on
 * storage is dead, and its highly available VMs are given to other nodes (docs/failover.md). */
#ifndef FERRY_FLEET_FAILOVER_H
#define FERRY_FLEET_FAILOVER_H

#include <jansson.h>
#include <uv.h>

#include "common/err.h"

struct cluster;
struct volumes;
struct events;

struct failover_env {
    struct cluster *cluster;
    struct volumes *volumes; /* the storage heartbeats (volumes_node_stale) */
    struct events *events;
    const char *node_name; /* borrowed; outlives the failover */
    struct tasks *tasks;   /* each VM given to another node is a task "failover"; NULL: none */
    unsigned failback_settle_ms; /* a returning node is up this long before VMs go back;
                                  * 0: FAILBACK_SETTLE_MS_DEFAULT */
};

#define FAILBACK_SETTLE_MS_DEFAULT 30000
#define FAILBACK_SETTLE_MS_MIN 1000
#define FAILBACK_SETTLE_MS_MAX 3600000

struct failover;

/* env copied. Only -ENOMEM. */
int failover_new(const struct failover_env *env, struct failover **out, struct ferr *e);
void failover_free(struct failover *fo);

/*
 * Every FLEET_TICK_MS from ferryd; does something only on the leader with the quorum, once
 * every node applies command version 6. A node is dead when its health is "down" (no
 * heartbeat for heartbeat_ms x down_after) and every lease it holds on the volumes is stale
 * (volumes_node_stale); a down node with a fresh lease is isolated: nothing moves until it
 * fenced itself and its leases expired. The dead nodes' HA VMs are placed (failplan.h) and
 * each is given to its new node with one vm_failover (compare-and-set on the dead owner, so
 * a leader that dies half-way leaves records the next leader continues from); the new owner
 * starts it (fleet_tick). A VM that fits nowhere waits: its record says why, and an event
 * says it once.
 */
void failover_tick(struct failover *fo);
/* Every 2 s from ferryd, on the leader: a VM still on the node a failover gave it to goes
 * back to its first preferred node by live migration (ha.failback), once that node has been
 * up and active for FAILBACK_SETTLE_MS and has room; asked of its owner like `ferry vm
 * migrate`, again after FAILBACK_RETRY_MS if it did not happen. */
void failover_failback_tick(struct failover *fo);

#endif
