/* SPDX-License-Identifier: MIT */
/* Unit tests of ferry-probe's shared parts (probe/probe.c): the gap bookkeeping that every
 * client-gap verdict rests on, and the pure helpers around it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "probe/probe.h"

#define MS NS_PER_MS
/* A monotonic start far from 0, as on a host that has been up for a while. */
#define T0 (123456ull * NS_PER_S)

/* A fresh gap record for a run that started at T0. */
static struct gaps fresh(void)
{
    struct gaps g;
    memset(&g, 0, sizeof(g));
    g.start = T0;
    return g;
}

/* Asserts the whole record but start. */
static void assert_gaps(const struct gaps *g, uint64_t last, uint64_t longest, uint64_t at,
                        uint64_t o50, uint64_t o100, uint64_t o300)
{
    assert_int_equal(g->start, T0);
    assert_int_equal(g->last, last);
    assert_int_equal(g->longest, longest);
    assert_int_equal(g->longest_at, at);
    assert_int_equal(g->over[0], o50);
    assert_int_equal(g->over[1], o100);
    assert_int_equal(g->over[2], o300);
}

static void test_limits(void **state)
{
    (void)state;
    assert_int_equal(probe_gap_limits_ms[0], 50);
    assert_int_equal(probe_gap_limits_ms[1], 100);
    assert_int_equal(probe_gap_limits_ms[2], 300);
}

static void test_first_event_sets_no_gap(void **state)
{
    (void)state;
    struct gaps g = fresh();
    /* Even 10 s after the start: the time before the first event is no gap between events. */
    probe_gaps_note(&g, T0 + 10 * NS_PER_S);
    assert_gaps(&g, T0 + 10 * NS_PER_S, 0, 0, 0, 0, 0);
}

static void test_longest_and_where(void **state)
{
    (void)state;
    struct gaps g = fresh();
    probe_gaps_note(&g, T0 + 1000 * MS);
    probe_gaps_note(&g, T0 + 1020 * MS); /* 20 ms gap that started 1.0 s in */
    assert_gaps(&g, T0 + 1020 * MS, 20 * MS, 1000 * MS, 0, 0, 0);
    probe_gaps_note(&g, T0 + 1030 * MS); /* 10 ms: shorter, nothing moves */
    assert_gaps(&g, T0 + 1030 * MS, 20 * MS, 1000 * MS, 0, 0, 0);
    probe_gaps_note(&g, T0 + 1070 * MS); /* 40 ms from 1.03 s */
    assert_gaps(&g, T0 + 1070 * MS, 40 * MS, 1030 * MS, 0, 0, 0);
    /* A gap as long as the longest does not move where it was: the first one stays. */
    probe_gaps_note(&g, T0 + 1110 * MS);
    assert_gaps(&g, T0 + 1110 * MS, 40 * MS, 1030 * MS, 0, 0, 0);
    /* One nanosecond longer does. */
    probe_gaps_note(&g, T0 + 1150 * MS + 1);
    assert_gaps(&g, T0 + 1150 * MS + 1, 40 * MS + 1, 1110 * MS, 0, 0, 0);
}

/* Gaps of exactly a limit are not over it; one nanosecond more is. */
static void test_over_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint64_t gap;
        uint64_t o50, o100, o300; /* counters after this gap alone */
    } cases[] = {
        {0, 0, 0, 0},
        {1, 0, 0, 0},
        {50 * MS - 1, 0, 0, 0},
        {50 * MS, 0, 0, 0},
        {50 * MS + 1, 1, 0, 0},
        {100 * MS - 1, 1, 0, 0},
        {100 * MS, 1, 0, 0},
        {100 * MS + 1, 1, 1, 0},
        {300 * MS, 1, 1, 0},
        {300 * MS + 1, 1, 1, 1},
        {60 * NS_PER_S, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gaps g = fresh();
        probe_gaps_note(&g, T0 + 5 * MS);
        probe_gaps_note(&g, T0 + 5 * MS + cases[i].gap);
        if (g.over[0] != cases[i].o50 || g.over[1] != cases[i].o100 || g.over[2] != cases[i].o300)
            fail_msg("gap %llu ns: over 50/100/300 = %llu/%llu/%llu, want %llu/%llu/%llu",
                     (unsigned long long)cases[i].gap, (unsigned long long)g.over[0],
                     (unsigned long long)g.over[1], (unsigned long long)g.over[2],
                     (unsigned long long)cases[i].o50, (unsigned long long)cases[i].o100,
                     (unsigned long long)cases[i].o300);
        assert_int_equal(g.longest, cases[i].gap);
        assert_int_equal(g.longest_at, cases[i].gap ? 5 * MS : 0);
    }
}

/* Each gap counts once in every counter it is over; the counters add up over a run. */
static void test_over_counts_add_up(void **state)
{
    (void)state;
    struct gaps g = fresh();
    uint64_t t = T0;
    static const uint64_t gaps_ms[] = {1, 51, 1, 101, 50, 301, 100, 2, 300, 1000};
    probe_gaps_note(&g, t);
    for (size_t i = 0; i < sizeof(gaps_ms) / sizeof(gaps_ms[0]); i++) {
        t += gaps_ms[i] * MS;
        probe_gaps_note(&g, t);
    }
    /* Over 50: 51 101 301 100 300 1000 (not 50). */
    assert_int_equal(g.over[0], 6);
    /* Over 100: 101 301 300 1000 (not 100). */
    assert_int_equal(g.over[1], 4);
    /* Over 300: 301 1000 (not 300). */
    assert_int_equal(g.over[2], 2);
    assert_int_equal(g.longest, 1000 * MS);
    /* The 1000 ms gap began after all the others: 1+51+1+101+50+301+100+2+300 ms in. */
    assert_int_equal(g.longest_at, 907 * MS);
    assert_int_equal(g.last, t);
}

/* Events at the same time (a burst of replies read in one poll) make gaps of 0. */
static void test_same_time(void **state)
{
    (void)state;
    struct gaps g = fresh();
    probe_gaps_note(&g, T0 + 7 * MS);
    probe_gaps_note(&g, T0 + 7 * MS);
    probe_gaps_note(&g, T0 + 7 * MS);
    assert_gaps(&g, T0 + 7 * MS, 0, 0, 0, 0, 0);
    probe_gaps_note(&g, T0 + 77 * MS);
    probe_gaps_note(&g, T0 + 77 * MS);
    assert_gaps(&g, T0 + 77 * MS, 70 * MS, 7 * MS, 1, 0, 0);
}

/* A caller may set last itself (the TCP echo does, when the connection is up): the first event
 * then measures from there. */
static void test_preset_last(void **state)
{
    (void)state;
    struct gaps g = fresh();
    g.last = T0 + 2 * NS_PER_S;
    probe_gaps_note(&g, T0 + 2 * NS_PER_S + 400 * MS);
    assert_gaps(&g, T0 + 2 * NS_PER_S + 400 * MS, 400 * MS, 2 * NS_PER_S, 1, 1, 1);
}

/* An event at the very start: the gap that follows starts 0 ns in. */
static void test_event_at_start(void **state)
{
    (void)state;
    struct gaps g = fresh();
    probe_gaps_note(&g, T0);
    probe_gaps_note(&g, T0 + 60 * MS);
    assert_gaps(&g, T0 + 60 * MS, 60 * MS, 0, 1, 0, 0);
}

/* ---- the pure helpers around the reports ------------------------------------------------- */

static void test_ns_to_ms_and_round(void **state)
{
    (void)state;
    assert_true(probe_ns_to_ms(0) == 0.0);
    assert_true(probe_ns_to_ms(1500000) == 1.5);
    assert_true(probe_ns_to_ms(50 * MS) == 50.0);
    assert_true(probe_round1(1.24) == 1.2);
    assert_true(probe_round1(1.25) == 1.3);
    assert_true(probe_round1(0.04) == 0.0);
    assert_true(probe_round1(-1.25) == -1.3);
    assert_true(probe_round1(299.96) == 300.0);
}

static void test_poll_timeout(void **state)
{
    (void)state;
    assert_int_equal(probe_poll_timeout(0, T0), -1); /* no deadline */
    assert_int_equal(probe_poll_timeout(T0, T0), 0);
    assert_int_equal(probe_poll_timeout(T0, T0 + 1), 0); /* past */
    assert_int_equal(probe_poll_timeout(T0 + 1, T0), 1); /* rounded up */
    assert_int_equal(probe_poll_timeout(T0 + MS, T0), 1);
    assert_int_equal(probe_poll_timeout(T0 + MS + 1, T0), 2);
    assert_int_equal(probe_poll_timeout(T0 + 60 * NS_PER_S, T0), 60000);
    assert_int_equal(probe_poll_timeout(T0 + 3600 * NS_PER_S, T0), 60000); /* capped */
}

static void parse_ok(const char *s, uint64_t min, uint64_t max, uint64_t want)
{
    uint64_t v = 0xdeadbeef;
    assert_int_equal(probe_parse_u64(s, min, max, &v), 0);
    assert_true(v == want);
}

static void parse_bad(const char *s, uint64_t min, uint64_t max)
{
    uint64_t v = 0xdeadbeef;
    if (probe_parse_u64(s, min, max, &v) != FERR_INVALID)
        fail_msg("probe_parse_u64('%s') accepted", s ? s : "(null)");
    assert_true(v == 0xdeadbeef);
}

static void test_parse_u64(void **state)
{
    (void)state;
    parse_ok("0", 0, 10, 0);
    parse_ok("10", 0, 10, 10);
    parse_ok("1", 1, 65535, 1);
    parse_ok("65535", 1, 65535, 65535);
    parse_ok("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
    parse_bad(NULL, 0, 10);
    parse_bad("", 0, 10);
    parse_bad("11", 0, 10);
    parse_bad("0", 1, 10);
    parse_bad("-1", 0, 10);
    parse_bad("+1", 0, 10);
    parse_bad("1x", 0, 10);
    parse_bad("1 ", 0, 10);
    parse_bad("18446744073709551616", 0, UINT64_MAX);
    /* "A whole decimal number": no leading blank of any kind either. */
    parse_bad(" 1", 0, 10);
    parse_bad("\t1", 0, 10);
    parse_bad("\n1", 0, 10);
    parse_bad(" -1", 0, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_first_event_sets_no_gap),
        cmocka_unit_test(test_longest_and_where),
        cmocka_unit_test(test_over_boundaries),
        cmocka_unit_test(test_over_counts_add_up),
        cmocka_unit_test(test_same_time),
        cmocka_unit_test(test_preset_last),
        cmocka_unit_test(test_event_at_start),
        cmocka_unit_test(test_ns_to_ms_and_round),
        cmocka_unit_test(test_poll_timeout),
        cmocka_unit_test(test_parse_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
