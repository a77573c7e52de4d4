/* SPDX-License-Identifier: MIT */
/* The leader's judgement of node health: which nodes to mark down or up. No I/O, no clock. */
#ifndef FERRY_CLUSTER_HEALTH_H
#define FERRY_CLUSTER_HEALTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every node POSTs a heartbeat to every other every heartbeat_ms; the leader judges all of
 * them, itself included, about every 100 ms (heartbeat.c), and writes what this module
 * proposes (node_state, cdb.h). The rules:
 *   - A node is down once nothing was heard from it for down_after heartbeat periods: more
 *     than heartbeat_ms * down_after ms since its last heartbeat, or, if none came yet, since
 *     this node first knew of it or took office, whichever is later (a new leader gives every
 *     node a full period before judging it).
 *   - A down node is up again once a heartbeat is heard within that time; time passing alone
 *     never brings a node up.
 *   - The leader is up: it marks itself up when its record says down.
 *   - A proposal in flight is not repeated until the records show it or
 *     HEALTH_PROPOSE_RETRY_MS passed (a write may be lost with a leadership change).
 * Every time here is on the monotonic clock, passed in; the records' wall-clock fields
 * (last_heartbeat_ms, state_changed_ms) are never read, so a jump of the wall clock changes
 * nothing.
 */

#define HEALTH_PEERS_MAX 64          /* nodes judged; more are ignored */
#define HEALTH_PROPOSE_RETRY_MS 3000 /* a proposal not seen in the records is made again */
#define HEALTH_REASON_MAX 64         /* bytes of a reason, its NUL included */

/* What this node knows of one node of the cluster (itself included). Times: monotonic ms. */
struct health_peer {
    uint64_t id;
    uint64_t first_seen;  /* when this node first knew of it */
    uint64_t last_heard;  /* when its last heartbeat came; 0: never */
    char proposed[8];     /* the health proposed and not yet seen in the records, "" if none */
    uint64_t proposed_at; /* when */
    json_t *info; /* the caller's (heartbeat.c: the last heartbeat's body); never read here */
    /* the caller's too (heartbeat.c): how late its heartbeats came, the most in this window
     * and the one before (late[0], late[1]); never read here */
    uint64_t late[2];
    uint64_t late_window; /* when window late[0] began */
    /* the caller's (heartbeat.c): on a follower, how late the leader said this node's
     * heartbeats came (0 until it says); -1 once this node heard it itself (an election) */
    long long late_said;
};

/* The nodes this node knows of; zero-initialised it is empty. Entries stay until the caller
 * empties it (n = 0, after releasing their info). */
struct health_table {
    struct health_peer peer[HEALTH_PEERS_MAX];
    size_t n;
};

/* Node id's entry in t, added with first_seen = now if it is new. NULL when t is full. */
struct health_peer *health_peer(struct health_table *t, uint64_t id, uint64_t now);

/* What the judgement needs besides the records and the table. */
struct health_params {
    uint64_t self_id;      /* the leader that judges */
    uint64_t leader_since; /* monotonic ms when it took office */
    uint64_t now;          /* monotonic ms */
    unsigned heartbeat_ms;
    unsigned down_after; /* silent heartbeat periods after which a node is down */
};

/* A health to write for one node, and why: "no heartbeat for N ms", "heartbeats again" or "it
 * leads the cluster" (the texts of the events and of the node's state_reason). */
struct health_proposal {
    uint64_t id;
    const json_t *node; /* its record in nodes (borrowed: lives as long as nodes) */
    const char *name;   /* the record's name (borrowed likewise) */
    const char *state;  /* "up" or "down" (static) */
    char reason[HEALTH_REASON_MAX];
};

/*
 * Judges every node of nodes (an array of node records, cdb_nodes(); borrowed) by the rules
 * above, with t for what was heard when and what is in flight, and writes at most max
 * proposals to out, in the order of nodes. t is updated: nodes new to it are added (first
 * seen at p->now), proposals that landed or expired are forgotten and the new ones recorded
 * as in flight since p->now. A record without a string state and name is skipped. Returns
 * the number of proposals. Never fails.
 */
size_t health_judge(struct health_table *t, const json_t *nodes, const struct health_params *p,
                    struct health_proposal *out, size_t max);

#endif
