/* SPDX-License-Identifier: MIT */
/* The cluster's timing profiles: heartbeats, leases, fencing and the watchdog, as one set. */
#ifndef FERRY_FLEET_TIMING_H
#define FERRY_FLEET_TIMING_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/*
 * Every number of the failover timeline (docs/failover.md, "The timeline") in one place, so a
 * profile is one consistent set and its relations are checked once:
 *   - heartbeat_ms x down_after: the leader marks a silent node down (cluster/health.h);
 *   - lease_ms, lease_expiry_ms: each node renews its lease on every volume; a reader calls a
 *     lease stale once its counter did not move for lease_expiry_ms (storage/lease.h);
 *   - fence_after_ms: a node without the cluster's quorum this long fences itself (fleet.h);
 *   - watchdog_timeout_ms: the watchdog resets a node this long after its last feed, and must
 *     do so before its leases can be stale (host/watchdog.h: timeout + lease_ms + 1000 <=
 *     lease_expiry_ms).
 * The "default" profile is the node's command-line values (1000 x 5, 1000 / 5000, 3000,
 * 3000 unless changed); "fast" is timing_fast, the same for every node. The cluster's profile
 * is in its database (`ferry cluster set --profile`), and every node applies it when it sees
 * it. Pure: no I/O, no clock.
 */
struct timing {
    unsigned heartbeat_ms;
    unsigned down_after;
    unsigned lease_ms;
    unsigned lease_expiry_ms;
    unsigned fence_after_ms;
    unsigned watchdog_timeout_ms;
};

#define TIMING_PROFILE_DEFAULT "default"
#define TIMING_PROFILE_FAST "fast"
/*
 * A change settles for TIMING_SETTLE_MS on every node, so that nodes which see it a moment
 * apart never misjudge each other: meanwhile the senders (heartbeat and lease intervals, the
 * watchdog's timeout) use the faster of the old and the new values and the judges (down
 * after, stale after, fence after) the more patient ones. Any mix of nodes on the old
 * timings, settling, or on the new ones then keeps every relation: a sender is never slower
 * than a judge expects, and a watchdog never slower than a judge allows. What this does not
 * cover: a node that applies the change more than TIMING_SETTLE_MS after the others (it
 * has been cut off; it fences itself after fence_after_ms then).
 */
#define TIMING_SETTLE_MS 10000
/* The fast profile is refused while a node's heartbeats arrive later than this after they
 * were due (the measured jitter): it calls a node down after 4 missed 250 ms heartbeats. */
#define TIMING_FAST_JITTER_MAX_MS 250

#define FENCE_AFTER_MS_MIN 1000
#define FENCE_AFTER_MS_MAX 60000

/* ...measured on the node asked, for at least this long (after its start or a change). */
#define TIMING_JITTER_MEASURE_MS 10000

extern const struct timing timing_fast;

/* 0 if name is a profile, else FERR_INVALID naming the profiles. */
int timing_profile_check(const char *name, struct ferr *e);

/* The timings of profile name: the fast one, or base (the node's own) for "default", "" and
 * NULL (a cluster that never set a profile). */
struct timing timing_of(const char *name, const struct timing *base);

/* Checks every relation of t; watchdog: whether a watchdog is armed (its timeout counts
 * only then). 0, or FERR_INVALID with the rule broken and the numbers. */
int timing_check(const struct timing *t, bool watchdog, struct ferr *e);

/* The numbers a node uses: new's, or while a change from old to new settles, the senders'
 * fastest and the judges' most patient (above). */
struct timing_now {
    unsigned heartbeat_ms, down_after; /* judging: down after heartbeat_ms x down_after */
    unsigned lease_expiry_ms;          /* judging: stale after */
    unsigned fence_after_ms;           /* judging itself */
    unsigned heartbeat_send_ms;        /* sending */
    unsigned lease_ms;                 /* sending */
    unsigned watchdog_timeout_ms;      /* sending */
};
struct timing_now timing_now(const struct timing *old, const struct timing *new, bool settling);

/* What one node follows: the cluster's profile and the numbers it uses now. */
struct timing_state {
    struct timing base;   /* this node's own numbers: the default profile */
    char profile[16];     /* the profile applied: "default" or "fast" */
    struct timing old;    /* before the last change */
    struct timing target; /* the profile's numbers */
    uint64_t changed_at;  /* monotonic ms of the last change; 0: none since the start */
    bool settling;        /* within TIMING_SETTLE_MS of it */
    struct timing_now now;
};

/* s follows the default profile, base (copied), settled. */
void timing_state_init(struct timing_state *s, const struct timing *base);

/* s follows profile (the cluster database's: "" or NULL is the default; an unknown name is
 * ignored) at monotonic time now. True when s->now changed: the caller applies it. */
bool timing_follow(struct timing_state *s, const char *profile, uint64_t now);

#endif
