/* SPDX-License-Identifier: MIT */
/* Unit tests of VM placement: most free memory among up, active nodes, or the node asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/placement.h"

#define NODE "{s:s, s:s, s:s, s:{s:i}}"

/* Health (state) and admin state apart: only h1 and h2 are up and active. */
static json_t *nodes(void)
{
    return json_pack("[" NODE "," NODE "," NODE "," NODE "," NODE "," NODE "]", "name", "h1",
                     "state", "up", "admin", "active", "memory", "free_mib", 1000, "name", "h2",
                     "state", "up", "admin", "active", "memory", "free_mib", 4000, "name", "h3",
                     "state", "down", "admin", "active", "memory", "free_mib", 9000, "name", "h4",
                     "state", "up", "admin", "paused", "memory", "free_mib", 8000, "name", "h5",
                     "state", "up", "admin", "draining", "memory", "free_mib", 7000, "name", "h6",
                     "state", "down", "admin", "paused", "memory", "free_mib", 9500);
}

static void most_free_up_node_wins(void **state)
{
    json_t *n = nodes();
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick(n, 512, NULL, out, &e), 0);
    assert_string_equal(out, "h2");
    json_decref(n);
}

static void nothing_fits(void **state)
{
    json_t *n = nodes();
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick(n, 5000, NULL, out, &e), FERR_LIMIT);
    assert_non_null(strstr(e.msg, "no up, active node has 5000 MiB free (the most free is 4000"));
    json_decref(n);
}

static void asked_node(void **state)
{
    json_t *n = nodes();
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick(n, 512, "h1", out, &e), 0);
    assert_string_equal(out, "h1");
    assert_int_equal(placement_pick(n, 512, "h3", out, &e), FERR_STATE);
    assert_string_equal(e.msg, "node h3 is down; it takes no new VMs");
    assert_int_equal(placement_pick(n, 512, "h4", out, &e), FERR_STATE);
    assert_string_equal(e.msg, "node h4 is paused; it takes no new VMs until it is resumed "
                               "(ferry node resume h4)");
    assert_int_equal(placement_pick(n, 512, "h5", out, &e), FERR_STATE);
    assert_non_null(strstr(e.msg, "node h5 is draining;"));
    assert_int_equal(placement_pick(n, 512, "h6", out, &e), FERR_STATE);
    assert_string_equal(e.msg, "node h6 is down and paused; it takes no new VMs");
    assert_int_equal(placement_pick(n, 2000, "h1", out, &e), FERR_LIMIT);
    assert_int_equal(placement_pick(n, 1, "nope", out, &e), FERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "nope"));
    json_decref(n);
}

/* A node without an admin state (a record from elsewhere) is never chosen. */
static void no_admin_state(void **state)
{
    json_t *n =
        json_pack("[{s:s, s:s, s:{s:i}}]", "name", "h1", "state", "up", "memory", "free_mib", 1000);
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick(n, 1, NULL, out, &e), FERR_LIMIT);
    assert_int_equal(placement_pick(n, 1, "h1", out, &e), FERR_STATE);
    assert_non_null(strstr(e.msg, "no known admin state"));
    json_decref(n);
}

static void empty_cluster(void **state)
{
    json_t *n = json_array();
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick(n, 1, NULL, out, &e), FERR_LIMIT);
    json_decref(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(most_free_up_node_wins),
        cmocka_unit_test(nothing_fits),
        cmocka_unit_test(asked_node),
        cmocka_unit_test(no_admin_state),
        cmocka_unit_test(empty_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
