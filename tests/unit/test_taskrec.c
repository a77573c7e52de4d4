/* SPDX-License-Identifier: MIT */
/* cluster/taskrec.c: task records, list filters, a migration's phase and percent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/taskrec.h"

static json_t *rec(const char *id, const char *state, json_int_t start, json_int_t end)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:s, s:{s:i}}", "id", id,
                     "kind", "migrate", "target", "vm1", "node", "n1", "user", "local", "state",
                     state, "phase", "setup", "percent", 5, "start_ms", start, "end_ms", end,
                     "result", "", "detail", "pass", 1);
}

static void expect_invalid(json_t *r, bool gen, const char *words)
{
    struct ferr e = {0};
    assert_int_equal(taskrec_check(r, gen, &e), FERR_INVALID);
    if (!strstr(e.msg, words))
        fail_msg("\"%s\" lacks \"%s\"", e.msg, words);
    json_decref(r);
}

static void test_check(void **state)
{
    struct ferr e = {0};
    json_t *r = rec("n1-1", "running", 1000, 0);
    assert_int_equal(taskrec_check(r, false, &e), 0);
    expect_invalid(json_incref(r), true, "generation");
    json_object_set_new(r, "generation", json_integer(1));
    assert_int_equal(taskrec_check(r, true, &e), 0);
    expect_invalid(json_incref(r), false, "unknown field \"generation\"");
    json_decref(r);

    json_t *x = rec("n1-1", "running", 1000, 0);
    json_object_set_new(x, "kind", json_string("reboot"));
    expect_invalid(x, false, "kind: \"reboot\" is not one of");
    x = rec("n1-1", "paused", 1000, 0);
    expect_invalid(x, false, "state: \"paused\"");
    x = rec("N1 1", "running", 1000, 0);
    expect_invalid(x, false, "id: expected 1-64");
    expect_invalid(rec("n1-1", "running", 1000, 2000), false, "a running task has none");
    expect_invalid(rec("n1-1", "done", 1000, 999), false, "at or after its start");
    x = rec("n1-1", "done", 1000, 1000);
    assert_int_equal(taskrec_check(x, false, &e), 0);
    json_object_set_new(x, "percent", json_integer(101));
    expect_invalid(x, false, "percent");
    x = rec("n1-1", "running", 1000, 0);
    json_object_set_new(json_object_get(x, "detail"), "nested", json_object());
    expect_invalid(x, false, "detail.nested");
    x = rec("n1-1", "running", 1000, 0);
    char big[TASKREC_RESULT_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_object_set_new(x, "result", json_string(big));
    expect_invalid(x, false, "result: over");
    x = rec("n1-1", "running", 1000, 0);
    json_object_del(x, "result");
    expect_invalid(x, false, "result is missing");
    x = rec("n1-1", "running", 1000, 0);
    json_object_set_new(x, "extra", json_true());
    expect_invalid(x, false, "unknown field \"extra\"");
    assert_true(taskrec_final("done") && taskrec_final("failed") && taskrec_final("cancelled"));
    assert_false(taskrec_final("running") || taskrec_final("bogus") || taskrec_final(NULL));
}

static void test_filter(void **state)
{
    struct ferr e = {0};
    struct taskrec_filter f = {.state = "running", .kind = "drain", .limit = 10};
    assert_int_equal(taskrec_filter_check(&f, &e), 0);
    f.state = "runing";
    assert_int_equal(taskrec_filter_check(&f, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "running, done, failed or cancelled"));
    f = (struct taskrec_filter){.kind = "move", .limit = 1};
    assert_int_equal(taskrec_filter_check(&f, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not a task kind"));
    f = (struct taskrec_filter){.limit = 0};
    assert_int_equal(taskrec_filter_check(&f, &e), FERR_INVALID);
    f = (struct taskrec_filter){.limit = TASKREC_LIMIT_MAX + 1};
    assert_int_equal(taskrec_filter_check(&f, &e), FERR_INVALID);
    f = (struct taskrec_filter){.target = "a b", .limit = 1};
    assert_int_equal(taskrec_filter_check(&f, &e), FERR_INVALID);

    json_t *all =
        json_pack("[o, o, o, o]", rec("n1-a", "done", 1000, 1500), rec("n1-b", "running", 3000, 0),
                  rec("n1-c", "running", 2000, 0), rec("n1-d", "running", 3000, 0));
    f = (struct taskrec_filter){.state = "running", .limit = 2};
    json_t *sel = taskrec_select(all, &f);
    assert_int_equal(json_array_size(sel), 2);
    /* newest start first; the same start by id, descending: the same order on every node */
    assert_string_equal(json_string_value(json_object_get(json_array_get(sel, 0), "id")), "n1-d");
    assert_string_equal(json_string_value(json_object_get(json_array_get(sel, 1), "id")), "n1-b");
    json_decref(sel);
    f = (struct taskrec_filter){.target = "vm2", .limit = 10};
    sel = taskrec_select(all, &f);
    assert_int_equal(json_array_size(sel), 0);
    json_decref(sel);
    json_decref(all);
}

static void test_migration_phase_and_percent(void **state)
{
    assert_string_equal(taskrec_migration_phase(NULL), "setup");
    assert_string_equal(taskrec_migration_phase("preparing"), "setup");
    assert_string_equal(taskrec_migration_phase("setup"), "setup");
    assert_string_equal(taskrec_migration_phase("active"), "data-transfer");
    assert_string_equal(taskrec_migration_phase("device"), "switchover");
    assert_string_equal(taskrec_migration_phase("postcopy-active"), "switchover");
    assert_string_equal(taskrec_migration_phase("completed"), "switchover");
    assert_int_equal(taskrec_percent(0, 0), 0);
    assert_int_equal(taskrec_percent(50, 50), 50);
    assert_int_equal(taskrec_percent(1, 2), 33);
    assert_int_equal(taskrec_percent(100, 0), 99); /* 100 only once the task is done */
    assert_int_equal(taskrec_percent(0, 100), 0);
    assert_int_equal(taskrec_percent(UINT64_MAX / 2, 1), 99);
}

static void test_orphaned(void **state)
{
    char why[300];
    json_t *nodes =
        json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "name", "n1", "state", "up", "state_reason",
                  "", "name", "n2", "state", "down", "state_reason", "no heartbeat for 5 s");
    json_t *mine = rec("n1-1", "running", 1000, 0), *ended = rec("n1-2", "done", 1000, 2000);
    json_t *theirs = rec("n2-1", "running", 1000, 0), *gone = rec("n3-1", "running", 1000, 0);
    json_object_set_new(theirs, "node", json_string("n2"));
    json_object_set_new(gone, "node", json_string("n3"));
    /* This node's own: closed only when no operation of this ferryd holds it. */
    assert_false(taskrec_orphaned(mine, nodes, "n1", true, true, why, sizeof(why)));
    assert_true(taskrec_orphaned(mine, nodes, "n1", false, false, why, sizeof(why)));
    assert_string_equal(why, "ferryd on n1 restarted while the task ran");
    assert_false(taskrec_orphaned(ended, nodes, "n1", false, true, why, sizeof(why)));
    /* Another node's: only the leader closes it, and only when the node is down or gone. */
    assert_false(taskrec_orphaned(theirs, nodes, "n1", false, false, why, sizeof(why)));
    assert_true(taskrec_orphaned(theirs, nodes, "n1", false, true, why, sizeof(why)));
    assert_string_equal(why, "node n2 went down while the task ran: no heartbeat for 5 s");
    assert_false(taskrec_orphaned(mine, nodes, "n2", false, true, why, sizeof(why))); /* n1 up */
    assert_true(taskrec_orphaned(gone, nodes, "n1", false, true, why, sizeof(why)));
    assert_string_equal(why, "node n3 left the cluster while the task ran");
    json_decref(nodes);
    json_decref(mine);
    json_decref(ended);
    json_decref(theirs);
    json_decref(gone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_migration_phase_and_percent),
        cmocka_unit_test(test_orphaned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
