/* SPDX-License-Identifier: MIT */
/* Unit tests of the timing profiles (fleet/timing.c): each profile keeps the failover
 * timeline's relations, and so does every mix of nodes while a change settles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cluster/cluster.h"
#include "cluster/raftnode.h"
#include "fleet/fleet.h"
#include "fleet/timing.h"
#include "host/watchdog.h"
#include "storage/lease.h"

static const struct timing base = {
    .heartbeat_ms = CLUSTER_HEARTBEAT_MS,
    .down_after = CLUSTER_DOWN_AFTER,
    .lease_ms = LEASE_MS_DEFAULT,
    .lease_expiry_ms = LEASE_EXPIRY_MS_DEFAULT,
    .fence_after_ms = FENCE_AFTER_MS_DEFAULT,
    .watchdog_timeout_ms = WATCHDOG_TIMEOUT_MS_DEFAULT,
};

static void test_profiles(void **state)
{
    (void)state;
    struct ferr e = {0};
    assert_int_equal(timing_profile_check("default", &e), 0);
    assert_int_equal(timing_profile_check("fast", &e), 0);
    assert_int_equal(timing_profile_check("turbo", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "expected default or fast, not \"turbo\""));
    assert_int_equal(timing_profile_check(NULL, &e), FERR_INVALID);
    /* default, "" and NULL are the node's own numbers; fast is the same everywhere */
    struct timing mine = base;
    mine.heartbeat_ms = 500;
    struct timing t = timing_of("default", &mine);
    assert_memory_equal(&t, &mine, sizeof(t));
    assert_int_equal(t.heartbeat_ms, 500);
    t = timing_of(NULL, &mine);
    assert_memory_equal(&t, &mine, sizeof(t));
    t = timing_of("", &mine);
    assert_memory_equal(&t, &mine, sizeof(t));
    t = timing_of("fast", &mine);
    assert_memory_equal(&t, &timing_fast, sizeof(t));
    /* Both keep every relation, with a watchdog too; fast detects a dead node (down and
     * stale) at least twice as fast as the default. */
    assert_int_equal(timing_check(&base, true, &e), 0);
    assert_int_equal(timing_check(&timing_fast, true, &e), 0);
    assert_true(timing_fast.heartbeat_ms * timing_fast.down_after * 2 <=
                base.heartbeat_ms * base.down_after);
    assert_true(timing_fast.lease_expiry_ms * 2 <= base.lease_expiry_ms);
    /* The fast profile never fences during an ordinary election (no quorum for about two
     * election timeouts). */
    assert_true(timing_fast.fence_after_ms >= 2 * 2 * RAFTNODE_ELECTION_TIMEOUT_MS);
}

static void test_check_refuses(void **state)
{
    (void)state;
    struct ferr e = {0};
    struct timing t = timing_fast;
    t.watchdog_timeout_ms = 1500; /* 1500 + 250 + 1000 > 2500 */
    assert_int_equal(timing_check(&t, true, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "watchdog_timeout_ms 1500 is too long"));
    assert_int_equal(timing_check(&t, false, &e), 0); /* no watchdog: no such rule */
    t = timing_fast;
    t.heartbeat_ms = 100;
    assert_int_equal(timing_check(&t, false, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "heartbeat_ms: expected an integer in 250..2000, not 100"));
    t = timing_fast;
    t.down_after = 2;
    assert_int_equal(timing_check(&t, false, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "down_after"));
    t = timing_fast;
    t.fence_after_ms = 999;
    assert_int_equal(timing_check(&t, false, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "fence_after_ms: expected an integer in 1000..60000, not 999"));
    t = timing_fast;
    t.lease_expiry_ms = 700; /* fewer than 3 renewals */
    assert_int_equal(timing_check(&t, false, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "lease_expiry_ms"));
}

/* Judge j and sender s, each on its old, settling or new numbers: s heartbeats and renews at
 * least as often as j expects, and its watchdog resets it before j may call its leases
 * stale. */
static void assert_compatible(const struct timing_now *j, const struct timing_now *s)
{
    assert_true(s->heartbeat_send_ms <= j->heartbeat_ms);
    assert_true((unsigned long long)s->heartbeat_send_ms * 2 <=
                (unsigned long long)j->heartbeat_ms * j->down_after);
    assert_true(s->lease_ms * LEASE_EXPIRY_FACTOR_MIN <= j->lease_expiry_ms);
    assert_true(s->watchdog_timeout_ms + s->lease_ms + WATCHDOG_MARGIN_MS <= j->lease_expiry_ms);
}

static void test_settling(void **state)
{
    (void)state;
    const struct timing *p[2] = {&base, &timing_fast};
    for (int from = 0; from < 2; from++) {
        const struct timing *old = p[from], *new = p[1 - from];
        struct timing_now was = timing_now(old, old, false);
        struct timing_now mid = timing_now(old, new, true);
        struct timing_now now = timing_now(old, new, false);
        /* settled: the new profile itself */
        assert_int_equal(now.heartbeat_send_ms, new->heartbeat_ms);
        assert_int_equal(now.lease_expiry_ms, new->lease_expiry_ms);
        assert_int_equal(now.watchdog_timeout_ms, new->watchdog_timeout_ms);
        /* while settling: the faster sender, the more patient judge */
        assert_int_equal(mid.heartbeat_send_ms, 250);
        assert_int_equal(mid.lease_ms, 250);
        assert_int_equal(mid.watchdog_timeout_ms, 1000);
        assert_int_equal(mid.heartbeat_ms * mid.down_after, 5000);
        assert_int_equal(mid.lease_expiry_ms, 5000);
        assert_int_equal(mid.fence_after_ms, 3000);
        /* every pair of nodes a moment apart: one still on the old numbers (or already on
         * the new ones) and the other settling */
        const struct timing_now *all[3] = {&was, &mid, &now};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                if ((a == 0 && b == 2) || (a == 2 && b == 0))
                    continue; /* never both: a change settles for TIMING_SETTLE_MS */
                assert_compatible(all[a], all[b]);
            }
    }
}

/* A node follows the cluster's profile: a change settles, then applies; the same profile
 * again, or an unknown one, changes nothing. */
static void test_follow(void **state)
{
    (void)state;
    struct timing_state s;
    timing_state_init(&s, &base);
    assert_string_equal(s.profile, "default");
    assert_false(timing_follow(&s, "", 1000));
    assert_false(timing_follow(&s, NULL, 1000));
    assert_false(timing_follow(&s, "default", 1000));
    assert_false(timing_follow(&s, "turbo", 1000));
    assert_int_equal(s.now.heartbeat_send_ms, 1000);
    assert_true(timing_follow(&s, "fast", 2000));
    assert_string_equal(s.profile, "fast");
    assert_true(s.settling);
    assert_int_equal(s.now.heartbeat_send_ms, 250);
    assert_int_equal(s.now.lease_expiry_ms, 5000);
    assert_false(timing_follow(&s, "fast", 2000 + TIMING_SETTLE_MS - 1));
    assert_true(timing_follow(&s, "fast", 2000 + TIMING_SETTLE_MS));
    assert_false(s.settling);
    assert_int_equal(s.now.lease_expiry_ms, 2500);
    assert_int_equal(s.now.heartbeat_ms * s.now.down_after, 1000);
    assert_false(timing_follow(&s, "fast", 99999));
    /* back: the senders stay fast while it settles */
    assert_true(timing_follow(&s, "", 100000));
    assert_string_equal(s.profile, "default");
    assert_int_equal(s.now.heartbeat_send_ms, 250);
    assert_int_equal(s.now.lease_expiry_ms, 5000);
    assert_true(timing_follow(&s, "", 100000 + TIMING_SETTLE_MS));
    assert_int_equal(s.now.heartbeat_send_ms, 1000);
    assert_int_equal(s.now.watchdog_timeout_ms, 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_check_refuses),
        cmocka_unit_test(test_settling),
        cmocka_unit_test(test_follow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
