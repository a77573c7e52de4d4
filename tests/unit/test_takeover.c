/* SPDX-License-Identifier: MIT */
/* Unit tests of src/migrate/takeover.c: what a restarted ferryd does with a migration its
 * predecessor left under way. Every rule that keeps a VM in one place is pinned here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "migrate/takeover.h"

/* A journal found, a VM running here, a cluster with quorum, the destination not the owner. */
static struct takeover_facts usual(void)
{
    return (struct takeover_facts){
        .journal_valid = true, .clustered = true, .quorum = true, .qemu_runs = true};
}

static void test_first_waits_for_the_cluster_and_the_vm(void **state)
{
    struct takeover_facts f = usual();
    assert_int_equal(takeover_first(&f), TAKEOVER_DRIVE);
    f.quorum = false; /* nothing is decided without asking the database */
    assert_int_equal(takeover_first(&f), TAKEOVER_WAIT);
    f = usual();
    f.clustered = false;
    assert_int_equal(takeover_first(&f), TAKEOVER_WAIT);
    f = usual();
    f.vm_settling = true; /* re-attaching, starting, stopping */
    assert_int_equal(takeover_first(&f), TAKEOVER_WAIT);
    /* even a bad journal waits: it is removed only by a node that could act on it */
    f.journal_valid = false;
    assert_int_equal(takeover_first(&f), TAKEOVER_WAIT);
}

static void test_first_bad_journal_is_dropped(void **state)
{
    struct takeover_facts f = usual();
    f.journal_valid = false;
    assert_int_equal(takeover_first(&f), TAKEOVER_DROP_JOURNAL);
    f.qemu_runs = false;
    f.dest_owns = true; /* no destination can be believed from a bad journal */
    assert_int_equal(takeover_first(&f), TAKEOVER_DROP_JOURNAL);
}

static void test_first_without_qemu(void **state)
{
    struct takeover_facts f = usual();
    f.qemu_runs = false;
    /* QEMU gone and the database does not name the destination: nobody can tell whether the
     * destination has the whole VM; never boot it here nor declare it moved. */
    assert_int_equal(takeover_first(&f), TAKEOVER_UNKNOWN);
    f.dest_owns = true; /* the hand-over was recorded: only the source's leftovers remain */
    assert_int_equal(takeover_first(&f), TAKEOVER_FINISH_SOURCE);
    /* with QEMU running, ownership alone decides nothing: QEMU is asked */
    f.qemu_runs = true;
    assert_int_equal(takeover_first(&f), TAKEOVER_DRIVE);
}

static void test_query(void **state)
{
    assert_int_equal(takeover_query(NULL, false), TAKEOVER_NOT_STARTED);
    assert_int_equal(takeover_query("none", false), TAKEOVER_NOT_STARTED);
    /* a QEMU that came here by migration reports its incoming one as completed, without ram
     * figures: that is not this migration */
    assert_int_equal(takeover_query("completed", false), TAKEOVER_NOT_STARTED);
    assert_int_equal(takeover_query("completed", true), TAKEOVER_CONFIRM);
    assert_int_equal(takeover_query("active", true), TAKEOVER_ON);
    assert_int_equal(takeover_query("postcopy-active", true), TAKEOVER_ON);
    assert_int_equal(takeover_query("postcopy-paused", true), TAKEOVER_ON);
    assert_int_equal(takeover_query("failed", false), TAKEOVER_ON);
    assert_int_equal(takeover_query("cancelled", true), TAKEOVER_ON);
}

static void test_confirm(void **state)
{
    /* only a destination that runs the VM proves the "completed" is this migration's */
    assert_int_equal(takeover_confirm(TAKEOVER_DEST_RUNS), TAKEOVER_HAND_OVER);
    assert_int_equal(takeover_confirm(TAKEOVER_DEST_UNREACHABLE), TAKEOVER_ASK_AGAIN);
    assert_int_equal(takeover_confirm(TAKEOVER_DEST_OTHER), TAKEOVER_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_waits_for_the_cluster_and_the_vm),
        cmocka_unit_test(test_first_bad_journal_is_dropped),
        cmocka_unit_test(test_first_without_qemu),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_confirm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
