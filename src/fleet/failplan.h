/* SPDX-License-Identifier: MIT */
/* Where the HA VMs of dead nodes start again, and in what order. No I/O, no clock. */
#ifndef FERRY_FLEET_FAILPLAN_H
#define FERRY_FLEET_FAILPLAN_H

#include <jansson.h>
#include <stddef.h>

/*
 * The leader plans a failover from the records alone (docs/architecture.md, "High
 * availability"): which VMs of the nodes it declared dead to start again, where, and in what
 * order. The rules:
 *   - A VM is recovered when its owner is dead, its spec has "ha" with a priority other than
 *     "none", and its record's state says it should run: running, paused, starting,
 *     migrating, failed or recovering. A stopped, stopping or created VM, or one in any other
 *     state, is not recovered and not listed; nor is a VM of a live owner.
 *   - Order: ha.priority high, then medium, then low; within one tier the spec's numeric
 *     "priority" (0..1000, 500 when absent), higher first; then the name. VMs are placed in
 *     that order, so a higher tier gets the capacity first.
 *   - Candidates: nodes whose state is "up" and admin "active", not dead, and, when
 *     ha.possible is not empty, named in it. No other node is ever chosen.
 *   - Capacity: a node fits when its memory.free_mib, less the memory of the VMs this plan
 *     already placed there, is at least the VM's spec.memory_mib ("free" below means that
 *     remainder).
 *   - Choice: the first node of ha.preferred, in list order, that is a candidate and fits;
 *     else the candidate that fits with the most free memory, then the first name.
 *   - Anti-affinity: a VM with a class (ha.anti_affinity not "") avoids the nodes that hold a
 *     VM of that class: a record owned by the node whose state is not "stopped", or a VM this
 *     plan placed there earlier. When every candidate that fits holds one, a VM with
 *     ha.anti_affinity_strict is not placed; any other falls back to the choice above as if
 *     it had no class.
 *   - A VM not placed has to "" and a why that names the rule and the numbers: "none of
 *     ha.possible (n3, n4) is up, active and alive", "no up, active node has 2048 MiB free
 *     (largest: n2, 1024 MiB)", "ha.anti_affinity_strict: every up, active node with 2048
 *     MiB free holds a VM of class db (n1, n2)". It takes no capacity.
 * Records are read as GET /v1/nodes and cdb_vms() give them. A node without a string name,
 * state and admin and an integer memory.free_mib is never chosen; of a name given twice, the
 * first record that may take VMs counts. A VM record is skipped (not listed) without a string
 * name, owner and state and an object spec with an integer memory_mib above 0, or with a
 * member of the wrong kind: spec.priority not an integer 0..1000; in ha, priority not high,
 * medium, low or none, preferred or possible not a list of names, anti_affinity not a string,
 * anti_affinity_strict not a boolean. Absent or null members take their defaults
 * (ha.priority "medium", as the spec parser gives, vm/spec.h); an ha that is absent or null
 * means no HA.
 */

/* One VM to bring back after its node died: where it goes, or why it cannot. Names longer
 * than 63 bytes are cut. */
struct failplan_move {
    char vm[64];   /* VM name */
    char from[64]; /* the dead node */
    char to[64];   /* chosen node, "" if none */
    char why[256]; /* when to is "": why not (names the numbers / the rule that refused) */
};

/*
 * Plans by the rules above. dead: an array of the names of the nodes the caller declared
 * dead (other entries are ignored); nodes: an array of node records ("name", "state",
 * "admin", "memory": {"free_mib"}), as placement_pick reads (cluster/placement.h); vms: an
 * array of VM records ("name", "owner", "state", "spec"). All three are borrowed and left as
 * they are. Writes the first max moves, in the order the VMs must be started, to out (a VM
 * that cannot be placed is listed too, with its why) and returns how many. Returns 0 also
 * when the memory for its work lists (one entry per node and per VM) is short: the caller
 * plans again on its next pass.
 */
size_t failplan_make(const json_t *dead, const json_t *nodes, const json_t *vms,
                     struct failplan_move *out, size_t max);

#endif
