/* SPDX-License-Identifier: MIT */
/* The convergence policy of a live migration (src/migrate/policy.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "migrate/policy.h"

static const struct mig_policy pol = {.budget_ms = 300, .postcopy = true};

static struct mig_observation obs(uint64_t ms, int64_t passes, uint64_t dirty, uint64_t tput)
{
    return (struct mig_observation){
        .elapsed_ms = ms, .passes = passes, .dirty_rate = dirty, .throughput = tput};
}

static enum mig_action step(const struct mig_policy *p, struct mig_observation o)
{
    return mig_policy_step(p, &o);
}

static const char *reason(struct mig_observation o, char *buf, unsigned len)
{
    return mig_policy_reason(&o, buf, len);
}

static uint64_t limit(uint64_t budget)
{
    struct mig_policy p = {.budget_ms = budget};
    return mig_policy_limit_ms(&p);
}

static void test_limit_from_the_budget(void **state)
{
    (void)state;
    assert_int_equal(limit(300), 100); /* a third */
    assert_int_equal(limit(900), 300);
    assert_int_equal(limit(200), 100); /* not below 100 ms: smaller broke TCG guests ... */
    assert_int_equal(limit(100), 100);
    assert_int_equal(limit(60), 60); /* ... unless the budget is smaller */
    assert_int_equal(limit(1), 1);
}

static void test_converging_guest_stays_precopy(void **state)
{
    (void)state;
    /* a guest dirtying 8 MB/s over a 100 MB/s link: pre-copy, however long it takes */
    for (int64_t pass = 1; pass < MIG_POLICY_ESCALATE_PASSES; pass++)
        assert_int_equal(step(&pol, obs(pass * 900, pass, 8000000, 100000000)), MIG_CONTINUE);
}

static void test_outpaced_link_escalates_early(void **state)
{
    (void)state;
    uint64_t link = 100000000;
    /* too early: the first passes send the bulk of memory, their rates mean little */
    assert_int_equal(step(&pol, obs(1000, 2, link * 2, link)), MIG_CONTINUE);
    assert_int_equal(step(&pol, obs(MIG_POLICY_EARLY_MS - 1, 5, link * 2, link)), MIG_CONTINUE);
    assert_int_equal(
        step(&pol, obs(MIG_POLICY_EARLY_MS, MIG_POLICY_EARLY_PASSES - 1, link * 2, link)),
        MIG_CONTINUE);
    /* from EARLY_PASSES and EARLY_MS on, a rate of 90 % of the link is enough */
    assert_int_equal(
        step(&pol, obs(MIG_POLICY_EARLY_MS, MIG_POLICY_EARLY_PASSES, link * 9 / 10, link)),
        MIG_POSTCOPY);
    assert_int_equal(
        step(&pol, obs(MIG_POLICY_EARLY_MS, MIG_POLICY_EARLY_PASSES, link * 9 / 10 - 1, link)),
        MIG_CONTINUE);
    /* no throughput figure yet (QEMU reports 0 at first): never "outpaced" */
    assert_int_equal(step(&pol, obs(4000, 5, link, 0)), MIG_CONTINUE);
    char why[200];
    reason(obs(4000, 5, 200000000, link), why, sizeof(why));
    assert_non_null(strstr(why, "dirties 200.0 MB/s"));
    assert_non_null(strstr(why, "sends 100.0 MB/s"));
}

static void test_late_escalation_by_passes_or_time(void **state)
{
    (void)state;
    assert_int_equal(step(&pol, obs(2000, MIG_POLICY_ESCALATE_PASSES, 1, 100)), MIG_POSTCOPY);
    assert_int_equal(step(&pol, obs(MIG_POLICY_ESCALATE_MS, 3, 1, 100)), MIG_POSTCOPY);
    assert_int_equal(step(&pol, obs(MIG_POLICY_ESCALATE_MS, 2, 1, 100)), MIG_POSTCOPY);
    /* still in the first pass (a big guest, a slow link): converging, whatever the time */
    assert_int_equal(step(&pol, obs(60000, 1, 1, 100)), MIG_CONTINUE);
    assert_int_equal(
        step(&pol, obs(MIG_POLICY_ESCALATE_MS - 1, MIG_POLICY_ESCALATE_PASSES - 1, 1, 100)),
        MIG_CONTINUE);
    char why[200];
    reason(obs(MIG_POLICY_ESCALATE_MS, 3, 1, 100), why, sizeof(why));
    assert_string_equal(why, "not converged after 3 passes and 10000 ms");
}

static void test_no_postcopy_never_escalates(void **state)
{
    (void)state;
    struct mig_policy off = {.budget_ms = 300, .postcopy = false};
    assert_int_equal(step(&off, obs(60000, 100, 1000000000, 1)), MIG_CONTINUE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_from_the_budget),
        cmocka_unit_test(test_converging_guest_stays_precopy),
        cmocka_unit_test(test_outpaced_link_escalates_early),
        cmocka_unit_test(test_late_escalation_by_passes_or_time),
        cmocka_unit_test(test_no_postcopy_never_escalates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
