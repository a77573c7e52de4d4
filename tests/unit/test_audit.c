/* SPDX-License-Identifier: MIT */
/* Unit tests of the writers' audit (storage/audit.c): the one-writer check over made-up
 * histories, and records appended to and read back from a real directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/audit.h"

static json_t *rec(const char *op, const char *file, const char *vm, int epoch, const char *node,
                   int coord_epoch, int t)
{
    return json_pack("{ss ss ss si ss ss si si}", "op", op, "file", file, "vm", vm, "epoch", epoch,
                     "node", node, "coordinator", "host1", "coord_epoch", coord_epoch, "time_ms",
                     t);
}

/* The check of a history given as records; returns the verdict (owned). */
static json_t *check(json_t *records)
{
    json_t *v = audit_check(records);
    json_decref(records);
    assert_non_null(v);
    return v;
}

static void test_one_writer_and_its_migration(void **state)
{
    (void)state;
    /* a VM at epoch 1 on host2, live-migrated to host3 (same writer, a second node), closed,
     * then started again at epoch 2 */
    json_t *v = check(json_pack("[o o o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                                rec("open", "a.vhd", "vm1", 1, "host3", 1, 20),
                                rec("close", "a.vhd", "vm1", 1, "", 1, 30),
                                rec("open", "a.vhd", "vm1", 2, "host3", 1, 40)));
    assert_true(json_is_true(json_object_get(v, "writers_ok")));
    json_t *open = json_object_get(v, "open");
    assert_int_equal(json_array_size(open), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(open, 0), "epoch")), 2);
    json_decref(v);
    /* the first writer's record names both its nodes while it is open */
    v = check(json_pack("[o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                        rec("open", "a.vhd", "vm1", 1, "host3", 1, 20)));
    json_t *nodes = json_object_get(json_array_get(json_object_get(v, "open"), 0), "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    json_decref(v);
}

static void test_two_writers_are_seen(void **state)
{
    (void)state;
    /* epoch 2 opened while epoch 1 still could write: a violation naming both */
    json_t *v = check(json_pack("[o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                                rec("open", "a.vhd", "vm1", 2, "host3", 1, 20)));
    assert_true(json_is_false(json_object_get(v, "writers_ok")));
    json_t *x = json_array_get(json_object_get(v, "violations"), 0);
    assert_string_equal(json_string_value(json_object_get(x, "file")), "a.vhd");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(x, "writer"), "epoch")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(x, "other"), "epoch")), 1);
    json_t *nodes = json_object_get(json_object_get(x, "other"), "nodes");
    assert_int_equal(json_array_size(nodes), 1);
    assert_string_equal(json_string_value(json_array_get(nodes, 0)), "host2");
    json_decref(v);
    /* another VM on the same file is a second writer too */
    v = check(json_pack("[o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                        rec("open", "a.vhd", "vm2", 1, "host2", 1, 20)));
    assert_true(json_is_false(json_object_get(v, "writers_ok")));
    json_decref(v);
    /* a close of another writer does not close this one */
    v = check(json_pack("[o o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                        rec("close", "a.vhd", "vm1", 2, "", 1, 15),
                        rec("open", "a.vhd", "vm1", 2, "host3", 1, 20)));
    assert_true(json_is_false(json_object_get(v, "writers_ok")));
    json_decref(v);
}

static void test_files_are_separate_and_coordinators_move(void **state)
{
    (void)state;
    json_t *v = check(json_pack("[o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                                rec("open", "b.vhd", "vm2", 1, "host3", 1, 20)));
    assert_true(json_is_true(json_object_get(v, "writers_ok")));
    assert_int_equal(json_array_size(json_object_get(v, "open")), 2);
    json_decref(v);
    /* the coordinator died without closing: its exports end with it (a newer coordinator
     * epoch), so the restarted writer at epoch 2 under coordinator epoch 2 is alone */
    v = check(json_pack("[o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10),
                        rec("open", "a.vhd", "vm1", 2, "host3", 2, 20)));
    assert_true(json_is_true(json_object_get(v, "writers_ok")));
    assert_int_equal(json_array_size(json_object_get(v, "open")), 1);
    json_decref(v);
    /* the same coordinator restarted its daemon (its host lost power and came back within
     * its lease): the old daemon's exports ended with it, another coordinator's did not */
    json_t *other = rec("open", "b.vhd", "vm2", 1, "host3", 1, 12);
    json_object_set_new(other, "coordinator", json_string("host9"));
    v = check(json_pack("[o o o o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10), other,
                        json_pack("{ss ss si si}", "op", "daemon", "coordinator", "host1",
                                  "coord_epoch", 1, "time_ms", 15),
                        rec("open", "a.vhd", "vm1", 2, "host3", 1, 20),
                        rec("open", "b.vhd", "vm2", 2, "host2", 1, 25)));
    json_t *bad = json_object_get(v, "violations");
    assert_int_equal(json_array_size(bad), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "file")),
                        "b.vhd");
    json_decref(v);
    /* without it, the same history is a violation on a.vhd too */
    other = rec("open", "b.vhd", "vm2", 1, "host3", 1, 12);
    json_object_set_new(other, "coordinator", json_string("host9"));
    v = check(json_pack("[o o o o]", rec("open", "a.vhd", "vm1", 1, "host2", 1, 10), other,
                        rec("open", "a.vhd", "vm1", 2, "host3", 1, 20),
                        rec("open", "b.vhd", "vm2", 2, "host2", 1, 25)));
    assert_int_equal(json_array_size(json_object_get(v, "violations")), 2);
    json_decref(v);
    /* records without the fields count as nothing open */
    v = check(json_pack("[{ss} {}]", "op", "something-else"));
    assert_true(json_is_true(json_object_get(v, "writers_ok")));
    json_decref(v);
}

static void test_append_and_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-audit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128], path[160];
    snprintf(sub, sizeof(sub), "%s/.ferry-csv", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    struct ferr e = {0};
    unsigned bad = 99;
    json_t *got = audit_read(dir, &bad, &e);
    assert_int_equal(json_array_size(got), 0); /* no audit yet */
    assert_int_equal(bad, 0);
    json_decref(got);
    json_t *r = rec("open", "a.vhd", "vm1", 1, "host2", 1, 0);
    json_object_del(r, "time_ms");
    assert_int_equal(audit_append(dir, r, &e), 0);
    assert_int_equal(audit_append(dir, r, &e), 0);
    json_decref(r);
    /* a torn or foreign line is counted, not fatal; a line being written is not read */
    snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_FILE);
    FILE *f = fopen(path, "a");
    fputs("not json\n{\"op\":\"open\"", f);
    fclose(f);
    got = audit_read(dir, &bad, &e);
    assert_int_equal(json_array_size(got), 2);
    assert_int_equal(bad, 1);
    json_t *first = json_array_get(got, 0);
    assert_string_equal(json_string_value(json_object_get(first, "vm")), "vm1");
    assert_true(json_integer_value(json_object_get(first, "time_ms")) > 1600000000000);
    json_decref(got);
    /* a volume whose audit cannot be written says where */
    json_t *empty = json_object();
    assert_true(audit_append("/nonexistent-ferry", empty, &e) < 0);
    json_decref(empty);
    assert_non_null(strstr(e.msg, "/nonexistent-ferry/.ferry-csv/audit.jsonl"));
    assert_int_equal(rm_rf(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_writer_and_its_migration),
        cmocka_unit_test(test_two_writers_are_seen),
        cmocka_unit_test(test_files_are_separate_and_coordinators_move),
        cmocka_unit_test(test_append_and_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
