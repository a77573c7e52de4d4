/* SPDX-License-Identifier: MIT */
/* Unit tests of VM placement: most free memory among up nodes, or the node asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/placement.h"

static json_t *nodes(void)
{
    return json_pack("[{s:s, s:s, s:{s:i}}, {s:s, s:s, s:{s:i}}, {s:s, s:s, s:{s:i}}, {s:s, s:s, s:{s:i}}]",
                     "name", "h1", "state", "up", "memory", "free_mib", 1000,
                     "name", "h2", "state", "up", "memory", "free_mib", 4000,
                     "name", "h3", "state", "down", "memory", "free_mib", 9000,
                     "name", "h4", "state", "paused", "memory", "free_mib", 8000);
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
    assert_non_null(strstr(e.msg, "4000"));
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
    assert_non_null(strstr(e.msg, "down"));
    assert_int_equal(placement_pick(n, 2000, "h1", out, &e), FERR_LIMIT);
    assert_int_equal(placement_pick(n, 1, "nope", out, &e), FERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "nope"));
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
        cmocka_unit_test(empty_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
