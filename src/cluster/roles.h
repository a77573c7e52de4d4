/* SPDX-License-Identifier: MIT */
/* Which Raft role each node should have (pure; tests/unit/test_roles.c). A cluster keeps at
 * most max_voters voters (odd, default 5): each write waits for a majority of them and elections
 * slow down as they grow, as etcd and Consul know. The other nodes are standbys: they receive
 * the log and can be made voters at once. The leader applies one change at a time. */
#ifndef FERRY_CLUSTER_ROLES_H
#define FERRY_CLUSTER_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROLES_MAX_VOTERS_DEFAULT 5
#define ROLES_MAX_VOTERS_LIMIT 9

enum roles_role { ROLES_VOTER, ROLES_STANDBY, ROLES_SPARE };

struct roles_node {
    uint64_t id;
    enum roles_role role; /* in the Raft configuration */
    bool up;              /* the cluster's health check calls it up */
};

enum roles_act { ROLES_NONE, ROLES_PROMOTE, ROLES_DEMOTE };

struct roles_change {
    enum roles_act act;
    uint64_t id;
    const char *why; /* static text for logs and events */
};

/* Whether max is an allowed --max-voters: odd, 1..ROLES_MAX_VOTERS_LIMIT. */
bool roles_max_ok(unsigned max);

/* The role a node that just joined (and caught up) gets: voter while the cluster has fewer
 * than max voters, standby otherwise. */
enum roles_role roles_for_newcomer(const struct roles_node *n, size_t count, unsigned max);

/*
 * The next change the leader (self) makes, or ROLES_NONE. In this order:
 * 1. a voter that is down (never self) becomes a standby when an up standby can take its place:
 *    the cluster keeps its fault tolerance instead of counting a dead vote;
 * 2. while there are fewer voters than min(max, nodes), the up standby with the lowest id
 *    becomes a voter;
 * 3. while there are more voters than max (max lowered), the up voter with the highest id
 *    (never self) becomes a standby.
 * Spares (a node joining, not caught up yet) are left to the join.
 */
struct roles_change roles_next(const struct roles_node *n, size_t count, uint64_t self,
                               unsigned max);

#endif
