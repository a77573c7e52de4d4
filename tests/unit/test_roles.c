/* SPDX-License-Identifier: MIT */
/* Unit tests of src/cluster/roles.c: how many voters, who joins as what, and which role change
 * the leader makes next when voters die, standbys come and go, or the limit changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster/roles.h"

#define V ROLES_VOTER
#define S ROLES_STANDBY
#define P ROLES_SPARE

static void test_max_voters_is_odd_and_bounded(void **state)
{
    (void)state;
    assert_true(roles_max_ok(1));
    assert_true(roles_max_ok(3));
    assert_true(roles_max_ok(5));
    assert_true(roles_max_ok(9));
    assert_false(roles_max_ok(0));
    assert_false(roles_max_ok(4));
    assert_false(roles_max_ok(11));
}

static void test_the_sixth_node_joins_as_a_standby(void **state)
{
    (void)state;
    struct roles_node five[] = {{1, V, true}, {2, V, true}, {3, V, true},
                                {4, V, true}, {5, V, true}, {6, P, true}};
    assert_int_equal(roles_for_newcomer(five, 6, 5), ROLES_STANDBY);
    struct roles_node four[] = {
        {1, V, true}, {2, V, true}, {3, V, true}, {4, V, true}, {5, P, true}};
    assert_int_equal(roles_for_newcomer(four, 5, 5), ROLES_VOTER);
    assert_int_equal(roles_for_newcomer(four, 5, 3), ROLES_STANDBY);
}

static void test_a_steady_cluster_changes_nothing(void **state)
{
    (void)state;
    struct roles_node three[] = {{1, V, true}, {2, V, true}, {3, V, true}};
    assert_int_equal(roles_next(three, 3, 1, 5).act, ROLES_NONE);
    struct roles_node seven[] = {{1, V, true}, {2, V, true}, {3, V, true}, {4, V, true},
                                 {5, V, true}, {6, S, true}, {7, S, true}};
    assert_int_equal(roles_next(seven, 7, 1, 5).act, ROLES_NONE);
    /* a dead voter with no standby to replace it: nothing to gain */
    struct roles_node dead3[] = {{1, V, true}, {2, V, false}, {3, V, true}};
    assert_int_equal(roles_next(dead3, 3, 1, 5).act, ROLES_NONE);
    /* a dead voter and only dead standbys */
    struct roles_node deadall[] = {{1, V, true}, {2, V, false}, {3, V, true}, {4, S, false}};
    assert_int_equal(roles_next(deadall, 4, 1, 3).act, ROLES_NONE);
}

static void test_a_dead_voter_is_replaced_by_an_up_standby(void **state)
{
    (void)state;
    struct roles_node n[] = {{1, V, true}, {2, V, true},  {3, V, false}, {4, V, true},
                             {5, V, true}, {6, S, false}, {7, S, true},  {8, S, true}};
    /* first the dead voter steps down ... */
    struct roles_change c = roles_next(n, 8, 1, 5);
    assert_int_equal(c.act, ROLES_DEMOTE);
    assert_int_equal(c.id, 3);
    n[2].role = S;
    /* ... then the up standby with the lowest id (7; 6 is down) takes its place */
    c = roles_next(n, 8, 1, 5);
    assert_int_equal(c.act, ROLES_PROMOTE);
    assert_int_equal(c.id, 7);
    n[6].role = V;
    assert_int_equal(roles_next(n, 8, 1, 5).act, ROLES_NONE);
    /* the dead node comes back: it stays a standby */
    n[2].up = true;
    assert_int_equal(roles_next(n, 8, 1, 5).act, ROLES_NONE);
}

static void test_the_leader_never_demotes_itself(void **state)
{
    (void)state;
    /* the leader's own health record may lag; it is alive by definition */
    struct roles_node n[] = {{1, V, false}, {2, V, true}, {3, V, true}, {4, S, true}};
    struct roles_change c = roles_next(n, 4, 1, 3);
    assert_int_equal(c.act, ROLES_NONE);
    struct roles_node over[] = {
        {1, V, true}, {2, V, true}, {3, V, true}, {4, V, true}, {5, V, true}};
    c = roles_next(over, 5, 5, 3); /* the leader has the highest id: the next one goes */
    assert_int_equal(c.act, ROLES_DEMOTE);
    assert_int_equal(c.id, 4);
}

static void test_fewer_voters_than_wanted_promotes(void **state)
{
    (void)state;
    /* a voter was removed: 4 voters of 6 nodes with max 5 */
    struct roles_node n[] = {{1, V, true}, {2, V, true}, {3, V, true},
                             {4, V, true}, {9, S, true}, {6, S, true}};
    struct roles_change c = roles_next(n, 6, 2, 5);
    assert_int_equal(c.act, ROLES_PROMOTE);
    assert_int_equal(c.id, 6);
    /* spares are the join's business */
    struct roles_node j[] = {{1, V, true}, {2, P, true}};
    assert_int_equal(roles_next(j, 2, 1, 5).act, ROLES_NONE);
}

static void test_a_lowered_limit_demotes_the_extra_voters(void **state)
{
    (void)state;
    struct roles_node n[] = {{1, V, true}, {2, V, true}, {3, V, true}, {4, V, false}, {5, V, true}};
    struct roles_change c = roles_next(n, 5, 1, 3);
    assert_int_equal(c.act, ROLES_DEMOTE); /* the up voter with the highest id */
    assert_int_equal(c.id, 5);
    assert_int_equal(roles_next(n, 5, 1, 4).act, ROLES_NONE); /* not a valid limit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_voters_is_odd_and_bounded),
        cmocka_unit_test(test_the_sixth_node_joins_as_a_standby),
        cmocka_unit_test(test_a_steady_cluster_changes_nothing),
        cmocka_unit_test(test_a_dead_voter_is_replaced_by_an_up_standby),
        cmocka_unit_test(test_the_leader_never_demotes_itself),
        cmocka_unit_test(test_fewer_voters_than_wanted_promotes),
        cmocka_unit_test(test_a_lowered_limit_demotes_the_extra_voters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
