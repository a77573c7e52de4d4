/* SPDX-License-Identifier: MIT */
/* cluster/cdb.c: task_put (command version 8): records, generations, an ended task that
 * never changes, pruning, snapshots, and the builder in cdb_cmd.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cdb.h"

static json_t *task(const char *id, const char *state, json_int_t start, json_int_t end)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:s, s:{}}", "id", id,
                     "kind", "migrate", "target", "vm1", "node", "n1", "user", "local", "state",
                     state, "phase", end ? "done" : "setup", "percent", end ? 100 : 0, "start_ms",
                     start, "end_ms", end, "result", end ? "ok" : "", "detail");
}

/* Encodes (as raftnode would get it) and applies task_put of t (stolen) at time_ms. */
static int put(struct cdb *db, json_t *t, uint64_t time_ms, struct ferr *e)
{
    json_t *cmd = cdb_cmd_task_put(t, time_ms);
    json_decref(t);
    assert_non_null(cmd);
    char *buf = NULL;
    size_t len = 0;
    int rc = cdb_cmd_encode(cmd, &buf, &len, e);
    json_decref(cmd);
    if (rc < 0)
        return rc;
    rc = cdb_apply(db, cdb_applied_index(db) + 1, buf, len, time_ms, e);
    free(buf);
    return rc;
}

static json_int_t gen_of(struct cdb *db, const char *id)
{
    json_t *r = NULL;
    struct ferr e;
    assert_int_equal(cdb_task_get(db, id, &r, &e), 0);
    json_int_t g = json_integer_value(json_object_get(r, "generation"));
    json_decref(r);
    return g;
}

static void test_put_and_end(void **state)
{
    struct cdb *db = cdb_new();
    struct ferr e = {0};
    assert_int_equal(put(db, task("n1-1", "running", 1000, 0), 1000, &e), 0);
    assert_int_equal(gen_of(db, "n1-1"), 1);
    json_t *p = task("n1-1", "running", 1000, 0);
    json_object_set_new(p, "phase", json_string("data-transfer"));
    json_object_set_new(p, "percent", json_integer(40));
    assert_int_equal(put(db, p, 2000, &e), 0);
    assert_int_equal(gen_of(db, "n1-1"), 2);
    /* Who, what and when never change. */
    p = task("n1-1", "running", 1000, 0);
    json_object_set_new(p, "node", json_string("n2"));
    assert_int_equal(put(db, p, 2500, &e), FERR_STATE);
    assert_non_null(strstr(e.msg, "its node is \"n1\""));
    assert_int_equal(put(db, task("n1-1", "running", 999, 0), 2500, &e), FERR_STATE);
    assert_int_equal(put(db, task("n1-1", "done", 1000, 3000), 3000, &e), 0);
    assert_int_equal(gen_of(db, "n1-1"), 3);
    /* An ended task stays ended: a node that comes back cannot reopen what the leader closed. */
    assert_int_equal(put(db, task("n1-1", "running", 1000, 0), 4000, &e), FERR_STATE);
    assert_non_null(strstr(e.msg, "task n1-1 has ended (done)"));
    assert_int_equal(put(db, task("n1-1", "failed", 1000, 4000), 4000, &e), FERR_STATE);
    assert_int_equal(gen_of(db, "n1-1"), 3);
    json_t *r = NULL;
    assert_int_equal(cdb_task_get(db, "n1-2", &r, &e), FERR_NOTFOUND);
    /* A bad record is refused as a command. */
    json_t *bad = task("n1-3", "running", 1000, 0);
    json_object_set_new(bad, "kind", json_string("reboot"));
    assert_int_equal(put(db, bad, 5000, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "task_put: task: kind"));
    cdb_free(db);
}

static void test_version(void **state)
{
    struct ferr e = {0};
    json_t *cmd = cdb_cmd_task_put(NULL, 1);
    assert_non_null(cmd);
    assert_int_equal(json_integer_value(json_object_get(cmd, "v")), 8);
    assert_int_equal(cdb_cmd_check(cmd, &e), FERR_INVALID); /* no task */
    json_decref(cmd);
    json_t *t = task("n1-1", "running", 1, 0);
    cmd = cdb_cmd_task_put(t, 1);
    json_decref(t);
    assert_int_equal(cdb_cmd_check(cmd, &e), 0);
    /* Version 7 nodes know no task_put: the op is new in 8. */
    json_object_set_new(cmd, "v", json_integer(7));
    assert_int_equal(cdb_cmd_check(cmd, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "it is new in version 8"));
    json_decref(cmd);
    assert_int_equal(CDB_CMD_VERSION, 8);
}

static void test_prune(void **state)
{
    struct cdb *db = cdb_new();
    struct ferr e = {0};
    char id[32];
    /* A running task is never pruned; ended ones over CDB_TASKS_MAX go, oldest end first. */
    assert_int_equal(put(db, task("n1-run", "running", 1, 0), 1, &e), 0);
    for (int i = 0; i < CDB_TASKS_MAX + 5; i++) {
        snprintf(id, sizeof(id), "n1-%d", i);
        assert_int_equal(put(db, task(id, "done", 10 + i, 10 + i), 100, &e), 0);
    }
    json_t *all = cdb_tasks(db);
    assert_int_equal(json_array_size(all), CDB_TASKS_MAX + 1);
    json_decref(all);
    json_t *r = NULL;
    assert_int_equal(cdb_task_get(db, "n1-4", &r, &e), FERR_NOTFOUND);
    assert_int_equal(cdb_task_get(db, "n1-5", &r, &e), 0);
    json_decref(r);
    /* Ended more than CDB_TASKS_KEEP_MS ago: gone at the next write. */
    assert_int_equal(put(db, task("n1-new", "running", 1, 0), 10 + CDB_TASKS_KEEP_MS + 501, &e), 0);
    all = cdb_tasks(db);
    assert_int_equal(json_array_size(all), 2 + 4); /* the two running; ended at 511..514 stay */
    json_decref(all);
    assert_int_equal(cdb_task_get(db, "n1-run", &r, &e), 0);
    json_decref(r);
    cdb_free(db);
}

static void test_snapshot(void **state)
{
    struct cdb *db = cdb_new(), *other = cdb_new();
    struct ferr e = {0};
    char *snap = NULL;
    size_t len = 0;
    /* No tasks: no "tasks" member, the bytes a version 7 node reads. */
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_null(strstr(snap, "\"tasks\""));
    free(snap);
    assert_int_equal(put(db, task("n1-1", "running", 1000, 0), 1000, &e), 0);
    assert_int_equal(put(db, task("n1-2", "failed", 1000, 2000), 2000, &e), 0);
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_non_null(strstr(snap, "\"tasks\""));
    assert_int_equal(cdb_restore(other, snap, len, 5, &e), 0);
    free(snap);
    json_t *a = cdb_tasks(db), *b = cdb_tasks(other);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    assert_int_equal(gen_of(other, "n1-1"), 1);
    /* A snapshot with a bad task record is refused whole. */
    const char *bad = "{\"format\":2,\"index\":3,\"next_event_id\":1,\"meta\":{},\"nodes\":[],"
                      "\"vms\":[],\"events\":[],\"tasks\":[{\"id\":\"x\"}]}";
    assert_int_equal(cdb_restore(other, bad, strlen(bad), 5, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "tasks[0]"));
    assert_int_equal(gen_of(other, "n1-1"), 1); /* unchanged */
    cdb_free(db);
    cdb_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_and_end),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
