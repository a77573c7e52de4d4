/* SPDX-License-Identifier: MIT */
/* Unit tests of src/migrate/destjudge.c: when the source of a migration gives its destination
 * up, driven tick by tick on a fake clock the way destwatch.c drives it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrate/destjudge.h"

#define T0 100000 /* the watch starts here (monotonic ms) */

/* A watch as destwatch.c runs it: a timer every DESTWATCH_PING_MS, one request at a time. */
struct watch {
    struct destjudge j;
    uint64_t now;
    unsigned sent;    /* requests sent */
    bool lost;        /* the judge said lost */
    char why[400];    /* ... and why */
    uint64_t lost_at; /* ... and when */
};

static void watch_init(struct watch *w)
{
    memset(w, 0, sizeof(*w));
    w->now = T0;
    destjudge_init(&w->j, "host2", "vm1", T0);
}

/* One timer tick at w->now; sends a request when told to. */
static enum destjudge_tick tick(struct watch *w)
{
    enum destjudge_tick t = destjudge_tick(&w->j, w->now, w->why, sizeof(w->why));
    if (t == DESTJUDGE_PING) {
        destjudge_sent(&w->j);
        w->sent++;
    } else if (t == DESTJUDGE_LOST && !w->lost) {
        w->lost = true;
        w->lost_at = w->now;
    }
    return t;
}

/* The pending request answers at w->now: state, or an error with code and msg. */
static bool answer(struct watch *w, int code, const char *msg, const char *state)
{
    struct ferr e = {0};
    if (code)
        ferr_set(&e, code, "%s", msg);
    bool lost = destjudge_answer(&w->j, w->now, code ? &e : NULL, state, w->why, sizeof(w->why));
    if (lost && !w->lost) {
        w->lost = true;
        w->lost_at = w->now;
    }
    return lost;
}

/* Ticks every DESTWATCH_PING_MS until until_ms after T0 or until lost; each request is
 * answered at once with state (NULL: never answered; the request hangs). */
static void run(struct watch *w, uint64_t until_ms, int code, const char *msg, const char *state)
{
    while (!w->lost && w->now + DESTWATCH_PING_MS <= T0 + until_ms) {
        w->now += DESTWATCH_PING_MS;
        if (tick(w) == DESTJUDGE_PING && (state || code))
            answer(w, code, msg, state);
    }
}

static void test_the_rule_is_three_seconds(void **state)
{
    /* docs/architecture.md and the post-copy recovery depend on it */
    assert_int_equal(DESTWATCH_LOST_MS, 3000);
    assert_true(DESTWATCH_PING_MS < DESTWATCH_LOST_MS);
}

static void test_a_destination_that_answers_is_never_lost(void **state)
{
    struct watch w;
    watch_init(&w);
    run(&w, 60000, 0, NULL, "incoming");
    assert_false(w.lost);
    assert_int_equal(w.sent, 60000 / DESTWATCH_PING_MS);
    /* after the switchover the destination's VM runs: still good */
    run(&w, 120000, 0, NULL, "running");
    assert_false(w.lost);
}

static void test_a_hanging_request_is_lost_after_three_seconds(void **state)
{
    struct watch w;
    watch_init(&w);
    run(&w, 60000, 0, NULL, NULL); /* the first request hangs for good (a cut link) */
    assert_true(w.lost);
    assert_int_equal(w.lost_at, T0 + DESTWATCH_LOST_MS);
    assert_int_equal(w.sent, 1); /* no second request while the first hangs */
    assert_string_equal(w.why, "host2's ferryd has not answered for 3000 ms");
}

static void test_lost_exactly_at_the_limit(void **state)
{
    struct watch w;
    watch_init(&w);
    assert_int_equal(tick(&w), DESTJUDGE_PING);
    w.now = T0 + DESTWATCH_LOST_MS - 1;
    assert_int_equal(tick(&w), DESTJUDGE_WAIT);
    w.now = T0 + DESTWATCH_LOST_MS;
    assert_int_equal(tick(&w), DESTJUDGE_LOST);
    /* a late timer reports the silence it saw */
    w.now = T0 + 4321;
    assert_int_equal(tick(&w), DESTJUDGE_LOST);
    assert_string_equal(w.why, "host2's ferryd has not answered for 4321 ms");
}

static void test_errors_count_as_silence_and_are_named(void **state)
{
    struct watch w;
    watch_init(&w);
    /* every request fails at once: a new one goes out at every tick, but nothing is good */
    run(&w, 60000, FERR_UNAVAIL, "peer host2: Couldn't connect to server", NULL);
    assert_true(w.lost);
    assert_int_equal(w.lost_at, T0 + DESTWATCH_LOST_MS);
    assert_int_equal(w.sent, DESTWATCH_LOST_MS / DESTWATCH_PING_MS - 1);
    assert_string_equal(w.why, "host2's ferryd has not answered for 3000 ms: peer host2: "
                               "Couldn't connect to server");

    /* a refusal (401, 500, a timeout) is no good answer either */
    static const int codes[] = {FERR_AUTH, FERR_INTERNAL, FERR_TIMEOUT, FERR_STATE};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        watch_init(&w);
        run(&w, 60000, codes[i], "no", NULL);
        assert_true(w.lost);
        assert_int_equal(w.lost_at, T0 + DESTWATCH_LOST_MS);
    }
}

/* Ticks until lost, every request failing at once with FERR_TIMEOUT. */
static void run_failing(struct watch *w)
{
    while (!w->lost) {
        w->now += DESTWATCH_PING_MS;
        if (tick(w) == DESTJUDGE_PING)
            answer(w, FERR_TIMEOUT, "timed out", NULL);
    }
}

static void test_one_good_answer_restarts_the_clock(void **state)
{
    struct watch w;
    watch_init(&w);
    run(&w, 2000, FERR_UNAVAIL, "unreachable", NULL);
    assert_false(w.lost);
    w.now += DESTWATCH_PING_MS; /* 2.5 s of errors, then one good answer */
    assert_int_equal(tick(&w), DESTJUDGE_PING);
    assert_false(answer(&w, 0, NULL, "incoming"));
    uint64_t good = w.now;
    run_failing(&w);
    /* lost 3 s after that answer, not 3 s after the first error */
    assert_int_equal(w.lost_at, good + DESTWATCH_LOST_MS);
    assert_string_equal(w.why, "host2's ferryd has not answered for 3000 ms: timed out");
}

static void test_a_slow_answer_in_time_is_good(void **state)
{
    struct watch w;
    watch_init(&w);
    w.now += DESTWATCH_PING_MS;
    assert_int_equal(tick(&w), DESTJUDGE_PING);
    /* the request hangs until 2.9 s after the start: the ticks meanwhile send nothing */
    while (w.now + DESTWATCH_PING_MS < T0 + 2900) {
        w.now += DESTWATCH_PING_MS;
        assert_int_equal(tick(&w), DESTJUDGE_WAIT);
    }
    assert_int_equal(w.sent, 1);
    w.now = T0 + 2900;
    assert_false(answer(&w, 0, NULL, "running"));
    w.now = T0 + 3000;
    assert_int_equal(tick(&w), DESTJUDGE_PING); /* not lost: the answer came in time */
    answer(&w, FERR_UNAVAIL, "unreachable", NULL);
    run_failing(&w);
    assert_int_equal(w.lost_at, T0 + 2900 + DESTWATCH_LOST_MS + 100); /* the next tick after */
}

static void test_no_such_vm_is_lost_at_once(void **state)
{
    struct watch w;
    watch_init(&w);
    w.now += DESTWATCH_PING_MS;
    tick(&w);
    assert_true(answer(&w, FERR_NOTFOUND, "no VM named vm1", NULL));
    assert_int_equal(w.lost_at, T0 + DESTWATCH_PING_MS);
    assert_string_equal(w.why, "host2 no longer holds the incoming vm1");
}

static void test_a_vm_that_is_not_incoming_or_running_is_lost_at_once(void **state)
{
    static const char *bad[] = {"failed", "stopped", "stopping", "paused", "starting"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct watch w;
        watch_init(&w);
        w.now += DESTWATCH_PING_MS;
        tick(&w);
        assert_true(answer(&w, 0, NULL, bad[i]));
        char want[100];
        snprintf(want, sizeof(want), "the incoming vm1 on host2 is %s", bad[i]);
        assert_string_equal(w.why, want);
    }
    /* an answer without a state: the VM is gone */
    struct watch w;
    watch_init(&w);
    tick(&w);
    assert_true(answer(&w, 0, NULL, NULL));
    assert_string_equal(w.why, "the incoming vm1 on host2 is gone");
}

static void test_a_request_that_cannot_be_sent_is_tried_at_the_next_tick(void **state)
{
    struct watch w;
    watch_init(&w);
    w.now += DESTWATCH_PING_MS;
    assert_int_equal(destjudge_tick(&w.j, w.now, w.why, sizeof(w.why)), DESTJUDGE_PING);
    destjudge_sent(&w.j);
    destjudge_not_sent(&w.j, "no node named host2 in the cluster");
    w.now += DESTWATCH_PING_MS;
    assert_int_equal(tick(&w), DESTJUDGE_PING); /* not WAIT: nothing is in flight */
    w.now = T0 + DESTWATCH_LOST_MS;
    assert_int_equal(tick(&w), DESTJUDGE_LOST);
    assert_string_equal(w.why, "host2's ferryd has not answered for 3000 ms: no node named "
                               "host2 in the cluster");
}

static void test_long_names_and_errors_are_cut_not_overrun(void **state)
{
    struct destjudge j;
    char to[200], err[600], why[64];
    memset(to, 'h', sizeof(to) - 1);
    to[sizeof(to) - 1] = '\0';
    memset(err, 'e', sizeof(err) - 1);
    err[sizeof(err) - 1] = '\0';
    destjudge_init(&j, to, "vm1", 0);
    assert_int_equal(strlen(j.to), sizeof(j.to) - 1);
    destjudge_not_sent(&j, err);
    assert_int_equal(strlen(j.last_err), sizeof(j.last_err) - 1);
    assert_int_equal(destjudge_tick(&j, DESTWATCH_LOST_MS, why, sizeof(why)), DESTJUDGE_LOST);
    assert_int_equal(strlen(why), sizeof(why) - 1);
}

static void test_clean_up_is_retried_only_while_unreachable(void **state)
{
    struct ferr e = {0};
    uint64_t deadline = T0 + DESTWATCH_ABORT_MAX_MS;
    assert_false(destjudge_abort_again(NULL, T0, deadline)); /* done */
    ferr_set(&e, FERR_UNAVAIL, "connection refused");
    assert_true(destjudge_abort_again(&e, T0, deadline));
    assert_true(destjudge_abort_again(&e, deadline - 1, deadline));
    assert_false(destjudge_abort_again(&e, deadline, deadline)); /* given up */
    ferr_set(&e, FERR_TIMEOUT, "timed out");
    assert_true(destjudge_abort_again(&e, T0, deadline));
    /* any answer of the destination's is final */
    static const int final[] = {FERR_STATE, FERR_NOTFOUND, FERR_AUTH, FERR_INTERNAL, -ENOMEM};
    for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
        ferr_set(&e, final[i], "no");
        assert_false(destjudge_abort_again(&e, T0, deadline));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_rule_is_three_seconds),
        cmocka_unit_test(test_a_destination_that_answers_is_never_lost),
        cmocka_unit_test(test_a_hanging_request_is_lost_after_three_seconds),
        cmocka_unit_test(test_lost_exactly_at_the_limit),
        cmocka_unit_test(test_errors_count_as_silence_and_are_named),
        cmocka_unit_test(test_one_good_answer_restarts_the_clock),
        cmocka_unit_test(test_a_slow_answer_in_time_is_good),
        cmocka_unit_test(test_no_such_vm_is_lost_at_once),
        cmocka_unit_test(test_a_vm_that_is_not_incoming_or_running_is_lost_at_once),
        cmocka_unit_test(test_a_request_that_cannot_be_sent_is_tried_at_the_next_tick),
        cmocka_unit_test(test_long_names_and_errors_are_cut_not_overrun),
        cmocka_unit_test(test_clean_up_is_retried_only_while_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
