/* SPDX-License-Identifier: MIT */
/* Unit tests of VM placement: most free memory among up, active nodes, or the node asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The node a VM leaves is never its destination, even with the most free memory. */
static void excluded_node(void **state)
{
    json_t *n = nodes();
    char out[64];
    struct ferr e = {0};
    assert_int_equal(placement_pick_pending(n, 512, NULL, "h2", NULL, out, &e), 0);
    assert_string_equal(out, "h1");
    assert_int_equal(placement_pick_pending(n, 512, "h2", "h2", NULL, out, &e), FERR_NOTFOUND);
    assert_int_equal(placement_pick_pending(n, 2000, NULL, "h2", NULL, out, &e), FERR_LIMIT);
    assert_non_null(strstr(e.msg, "the most free is 1000 MiB"));
    json_decref(n);
}

/* Memory on its way to a node counts as used: a burst spreads instead of piling up. */
static void pending_memory_is_taken_off(void **state)
{
    json_t *n = nodes();
    char before[2048];
    char *text = json_dumps(n, JSON_SORT_KEYS);
    snprintf(before, sizeof(before), "%s", text);
    free(text);
    char out[64];
    struct ferr e = {0};
    json_t *pending = json_pack("{s:i}", "h2", 3500); /* h2: 4000 - 3500 = 500 left */
    assert_int_equal(placement_pick_pending(n, 400, NULL, NULL, pending, out, &e), 0);
    assert_string_equal(out, "h1"); /* 1000 free beats 500 */
    assert_int_equal(placement_pick_pending(n, 600, NULL, NULL, pending, out, &e), 0);
    assert_string_equal(out, "h1");
    assert_int_equal(placement_pick_pending(n, 1200, NULL, NULL, pending, out, &e), FERR_LIMIT);
    /* asked for by name, the pending memory counts too */
    assert_int_equal(placement_pick_pending(n, 600, "h2", NULL, pending, out, &e), FERR_LIMIT);
    assert_string_equal(e.msg, "node h2 has 500 MiB free; the VM needs 600");
    /* more on its way than free: nothing left, never negative */
    json_object_set_new(pending, "h1", json_integer(5000));
    assert_int_equal(placement_pick_pending(n, 1, "h1", NULL, pending, out, &e), FERR_LIMIT);
    assert_string_equal(e.msg, "node h1 has 0 MiB free; the VM needs 1");
    /* the caller's node list is left as it was */
    text = json_dumps(n, JSON_SORT_KEYS);
    assert_string_equal(text, before);
    free(text);
    json_decref(pending);
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
        cmocka_unit_test(excluded_node),
        cmocka_unit_test(pending_memory_is_taken_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
