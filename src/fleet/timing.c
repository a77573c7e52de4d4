/* SPDX-License-Identifier: MIT */
/* The cluster's timing profiles (timing.h). */
#include "fleet/timing.h"

#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "host/watchdog.h"
#include "storage/lease.h"

/*
 * Power loss at t: down at t + 1000, leases stale at t - 250 + 2500 (+ one read, 250), so the
 * VMs are given at about t + 2.5 s. Isolation: no quorum at t + ~1000, fenced at t + 3000,
 * stale at t + 5250. A frozen ferryd: reset at t + 1000, stale at t + 2250 at the earliest
 * (1000 + 250 + 1000 = 2250 <= 2500). fence_after_ms stays well above a Raft election (the
 * cluster has no quorum for about 2 x 500 ms when its leader dies): a shorter one fences
 * healthy nodes during an ordinary election.
 */
const struct timing timing_fast = {
    .heartbeat_ms = 250,
    .down_after = 4,
    .lease_ms = 250,
    .lease_expiry_ms = 2500,
    .fence_after_ms = 2000,
    .watchdog_timeout_ms = 1000,
};

int timing_profile_check(const char *name, struct ferr *e)
{
    if (name &&
        (strcmp(name, TIMING_PROFILE_DEFAULT) == 0 || strcmp(name, TIMING_PROFILE_FAST) == 0))
        return 0;
    return ferr_set(e, FERR_INVALID, "profile: expected %s or %s, not \"%.40s\"",
                    TIMING_PROFILE_DEFAULT, TIMING_PROFILE_FAST, name ? name : "");
}

struct timing timing_of(const char *name, const struct timing *base)
{
    return name && strcmp(name, TIMING_PROFILE_FAST) == 0 ? timing_fast : *base;
}

int timing_check(const struct timing *t, bool watchdog, struct ferr *e)
{
    if (t->heartbeat_ms < CLUSTER_HEARTBEAT_MIN_MS || t->heartbeat_ms > CLUSTER_HEARTBEAT_MAX_MS)
        return ferr_set(e, FERR_INVALID, "heartbeat_ms: expected an integer in %d..%d, not %u",
                        CLUSTER_HEARTBEAT_MIN_MS, CLUSTER_HEARTBEAT_MAX_MS, t->heartbeat_ms);
    if (t->down_after < CLUSTER_DOWN_AFTER_MIN || t->down_after > CLUSTER_DOWN_AFTER_MAX)
        return ferr_set(e, FERR_INVALID, "down_after: expected an integer in %d..%d, not %u",
                        CLUSTER_DOWN_AFTER_MIN, CLUSTER_DOWN_AFTER_MAX, t->down_after);
    if (t->fence_after_ms < FENCE_AFTER_MS_MIN || t->fence_after_ms > FENCE_AFTER_MS_MAX)
        return ferr_set(e, FERR_INVALID, "fence_after_ms: expected an integer in %d..%d, not %u",
                        FENCE_AFTER_MS_MIN, FENCE_AFTER_MS_MAX, t->fence_after_ms);
    if (lease_config_check(t->lease_ms, t->lease_expiry_ms, e) < 0)
        return FERR_INVALID;
    if (watchdog &&
        watchdog_timing_check(t->watchdog_timeout_ms, t->lease_ms, t->lease_expiry_ms, e) < 0)
        return FERR_INVALID;
    return 0;
}

static unsigned min_u(unsigned a, unsigned b)
{
    return a < b ? a : b;
}

static unsigned max_u(unsigned a, unsigned b)
{
    return a > b ? a : b;
}

struct timing_now timing_now(const struct timing *old, const struct timing *new, bool settling)
{
    const struct timing *o = settling ? old : new;
    /* The judge with the longer down time, as one pair (its reason texts name the ms). */
    const struct timing *down = (unsigned long long)o->heartbeat_ms * o->down_after >
                                        (unsigned long long)new->heartbeat_ms *new->down_after
                                    ? o
                                    : new;
    return (struct timing_now){
        .heartbeat_ms = down->heartbeat_ms,
        .down_after = down->down_after,
        .lease_expiry_ms = max_u(o->lease_expiry_ms, new->lease_expiry_ms),
        .fence_after_ms = max_u(o->fence_after_ms, new->fence_after_ms),
        .heartbeat_send_ms = min_u(o->heartbeat_ms, new->heartbeat_ms),
        .lease_ms = min_u(o->lease_ms, new->lease_ms),
        .watchdog_timeout_ms = min_u(o->watchdog_timeout_ms, new->watchdog_timeout_ms),
    };
}

void timing_state_init(struct timing_state *s, const struct timing *base)
{
    *s = (struct timing_state){.base = *base, .old = *base, .target = *base};
    snprintf(s->profile, sizeof(s->profile), "%s", TIMING_PROFILE_DEFAULT);
    s->now = timing_now(base, base, false);
}

bool timing_follow(struct timing_state *s, const char *profile, uint64_t now)
{
    const char *name = profile && *profile ? profile : TIMING_PROFILE_DEFAULT;
    if (timing_profile_check(name, NULL) == 0 && strcmp(name, s->profile) != 0) {
        snprintf(s->profile, sizeof(s->profile), "%s", name);
        s->old = s->target;
        s->target = timing_of(name, &s->base);
        s->changed_at = now;
        s->settling = true;
    } else if (s->settling && now - s->changed_at >= TIMING_SETTLE_MS) {
        s->settling = false;
    } else {
        return false;
    }
    struct timing_now n = timing_now(&s->old, &s->target, s->settling);
    bool changed = memcmp(&n, &s->now, sizeof(n)) != 0;
    s->now = n;
    return changed;
}
