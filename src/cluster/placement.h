/* SPDX-License-Identifier: MIT */
/* Where a new VM goes: the up, active node with the most free memory that fits it. Pure. */
#ifndef FERRY_CLUSTER_PLACEMENT_H
#define FERRY_CLUSTER_PLACEMENT_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"

/*
 * Picks a node for a VM of memory_mib MiB from nodes (the "nodes" array of GET /v1/nodes:
 * objects with "name", "state", "admin" and "memory": {"free_mib"}). want: a node the user
 * named, or NULL to choose. The choice: state (health) "up" and admin "active" (a node without
 * an admin state is never chosen), free_mib >= memory_mib, most free memory, then the first
 * name. Writes the name into out. Errors: FERR_NOTFOUND (want is not a member), FERR_STATE
 * (want is down, draining or paused), FERR_LIMIT (nothing fits; the message says the largest
 * free).
 */
int placement_pick(const json_t *nodes, uint64_t memory_mib, const char *want, char out[64],
                   struct ferr *e);

/*
 * placement_pick among nodes but exclude (NULL: none; the node a VM leaves), with the memory
 * already on its way to a node taken off its free_mib: pending (NULL, or an object node name ->
 * MiB) is what a caller sent there that the node's heartbeats do not report yet (a drain
 * sending VMs one after another would otherwise send them all to the same node). nodes is
 * borrowed and left as it is.
 */
int placement_pick_pending(const json_t *nodes, uint64_t memory_mib, const char *want,
                           const char *exclude, const json_t *pending, char out[64],
                           struct ferr *e);

#endif
