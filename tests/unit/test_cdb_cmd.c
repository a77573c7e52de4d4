/* SPDX-License-Identifier: MIT */
/* Unit tests of the command builders (cdb_cmd.c): wire format, effect when applied, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cdb.h"
#include "common/err.h"

/* ---- helpers ---- */

/* Asserts that got encodes to the same bytes as want (the JSON a call site packed by hand
 * before the builders existed) and, if literal is not NULL, that its JSON is literal. Both
 * commands are freed. */
static void same_wire(json_t *got, json_t *want, const char *literal)
{
    char *gbuf, *wbuf;
    size_t glen, wlen;
    struct ferr e;
    assert_non_null(got);
    assert_non_null(want);
    if (cdb_cmd_encode(got, &gbuf, &glen, &e) != 0)
        fail_msg("builder's command refused: %s", e.msg);
    assert_int_equal(cdb_cmd_encode(want, &wbuf, &wlen, &e), 0);
    assert_int_equal(glen, wlen);
    assert_memory_equal(gbuf, wbuf, glen);
    if (literal) {
        char *text = json_dumps(got, JSON_COMPACT);
        assert_string_equal(text, literal);
        free(text);
    }
    free(gbuf);
    free(wbuf);
    json_decref(got);
    json_decref(want);
}

/* Checks and applies cmd (freed) at the next index; returns the code, message in e. */
static int apply(struct cdb *db, json_t *cmd, struct ferr *e)
{
    assert_non_null(cmd);
    if (cdb_cmd_check(cmd, e) != 0)
        fail_msg("cdb_cmd_check refused a builder's command: %s", e->msg);
    int rc = cdb_apply_cmd(db, cdb_applied_index(db) + 1, cmd, 1, e);
    json_decref(cmd);
    return rc;
}

static void apply_ok(struct cdb *db, json_t *cmd)
{
    struct ferr e;
    if (apply(db, cmd, &e) != 0)
        fail_msg("%s", e.msg);
}

/* Asserts that cdb_cmd_check refuses cmd (freed) with a message that contains what. */
static void refused(json_t *cmd, const char *what)
{
    struct ferr e;
    assert_non_null(cmd);
    assert_int_equal(cdb_cmd_check(cmd, &e), FERR_INVALID);
    if (!strstr(e.msg, what))
        fail_msg("expected \"%s\" in \"%s\"", what, e.msg);
    json_decref(cmd);
}

static const char *field(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static json_int_t number(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static json_t *spec_of(const char *name)
{
    return json_pack("{s:s, s:i}", "name", name, "memory_mib", 256);
}

/* Every field of a node_upsert set, as a node writes its own record (self_upsert). */
static struct cdb_node_fields full_node(uint64_t id, const char *name, const json_t *memory)
{
    return (struct cdb_node_fields){.id = id,
                                    .name = name,
                                    .api_addr = "10.0.0.1:7000",
                                    .raft_addr = "10.0.0.1:7001",
                                    .role = "voter",
                                    .state = "up",
                                    .last_heartbeat_ms = 1700000000000,
                                    .cmd_version = CDB_CMD_VERSION,
                                    .memory = memory,
                                    .accel = "kvm"};
}

/* ---- the wire format: the bytes the hand-packed call sites wrote ---- */

static void test_wire_format(void **state)
{
    (void)state;
    json_t *mem = json_pack("{s:i, s:i}", "total_mib", 8000, "free_mib", 6000);

    /* api/routes.c, a VM created here. */
    same_wire(cdb_cmd_vm_put("web1", spec_of("web1"), "n1", "running"),
              json_pack("{s:i, s:s, s:s, s:o, s:s, s:s}", "v", 1, "op", "vm_put", "name", "web1",
                        "spec", spec_of("web1"), "owner", "n1", "state", "running"),
              "{\"v\":1,\"op\":\"vm_put\",\"name\":\"web1\",\"spec\":{\"name\":\"web1\","
              "\"memory_mib\":256},\"owner\":\"n1\",\"state\":\"running\"}");
    /* api/routes.c, a VM deleted. */
    same_wire(cdb_cmd_vm_remove("web1"),
              json_pack("{s:i, s:s, s:s}", "v", 1, "op", "vm_remove", "name", "web1"),
              "{\"v\":1,\"op\":\"vm_remove\",\"name\":\"web1\"}");
    /* ferryd.c, the owner's VM state. */
    same_wire(cdb_cmd_vm_state("web1", "paused", "paused by the user"),
              json_pack("{s:i, s:s, s:s, s:s, s:s}", "v", 1, "op", "vm_state", "name", "web1",
                        "state", "paused", "reason", "paused by the user"),
              NULL);
    /* migrate/migrate.c, the owner switch of a migration (compare-and-set). */
    same_wire(cdb_cmd_vm_owner("web1", "n2", "n1"),
              json_pack("{s:i, s:s, s:s, s:s, s:s}", "v", 1, "op", "vm_owner", "name", "web1",
                        "owner", "n2", "expect_owner", "n1"),
              "{\"v\":1,\"op\":\"vm_owner\",\"name\":\"web1\",\"owner\":\"n2\","
              "\"expect_owner\":\"n1\"}");
    /* cluster.c and migrate.c, an event. */
    same_wire(cdb_cmd_event_add(1700000000123, "node.joined", "n1", "", "n2 joined"),
              json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s}", "v", 1, "op", "event_add", "time_ms",
                        (json_int_t)1700000000123, "type", "node.joined", "node", "n1", "vm", "",
                        "message", "n2 joined"),
              "{\"v\":1,\"op\":\"event_add\",\"time_ms\":1700000000123,\"type\":\"node.joined\","
              "\"node\":\"n1\",\"vm\":\"\",\"message\":\"n2 joined\"}");
    /* api/routes.c, a client's measurement: an integer stays an integer, a real a real. */
    static const char *const measured[] = {
        "{\"v\":1,\"op\":\"migration_measure\",\"id\":42,\"client_gap_ms\":12,"
        "\"source\":\"manual\",\"replace\":false}",
        "{\"v\":1,\"op\":\"migration_measure\",\"id\":42,\"client_gap_ms\":12.5,"
        "\"source\":\"lab-probe\",\"replace\":true}",
    };
    for (int i = 0; i < 2; i++) {
        json_t *gap = i ? json_real(12.5) : json_integer(12);
        const char *source = i ? "lab-probe" : "manual";
        same_wire(cdb_cmd_migration_measure(42, gap, source, i == 1),
                  json_pack("{s:i, s:s, s:I, s:O, s:s, s:b}", "v", 1, "op", "migration_measure",
                            "id", (json_int_t)42, "client_gap_ms", gap, "source", source, "replace",
                            i),
                  measured[i]);
        json_decref(gap);
    }

    /* cluster.c self_upsert: the record a node writes of itself (memory and accel after). */
    json_t *want =
        json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:i}", "v", 1, "op", "node_upsert",
                  "id", (json_int_t)77, "name", "n1", "api_addr", "10.0.0.1:7000", "raft_addr",
                  "10.0.0.1:7001", "role", "voter", "state", "up", "last_heartbeat_ms",
                  (json_int_t)1700000000000, "cmd_version", CDB_CMD_VERSION);
    json_object_set(want, "memory", mem);
    json_object_set_new(want, "accel", json_string("kvm"));
    struct cdb_node_fields self = full_node(77, "n1", mem);
    same_wire(cdb_cmd_node_upsert(&self), want, NULL);
    /* cluster.c admit: a newcomer's record as a spare. */
    want = json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "v", 1, "op", "node_upsert", "id",
                     (json_int_t)78, "name", "n2", "api_addr", "10.0.0.2:7000", "raft_addr",
                     "10.0.0.2:7001", "role", "spare", "state", "up");
    json_object_set(want, "memory", mem);
    json_object_set_new(want, "accel", json_string("tcg"));
    struct cdb_node_fields admit = self; /* the same but for these */
    admit.id = 78;
    admit.name = "n2";
    admit.api_addr = "10.0.0.2:7000";
    admit.raft_addr = "10.0.0.2:7001";
    admit.role = "spare";
    admit.last_heartbeat_ms = 0;
    admit.cmd_version = 0;
    admit.accel = "tcg";
    same_wire(cdb_cmd_node_upsert(&admit), want,
              "{\"v\":1,\"op\":\"node_upsert\",\"id\":78,\"name\":\"n2\",\"api_addr\":"
              "\"10.0.0.2:7000\",\"raft_addr\":\"10.0.0.2:7001\",\"role\":\"spare\",\"state\":"
              "\"up\",\"memory\":{\"total_mib\":8000,\"free_mib\":6000},\"accel\":\"tcg\"}");
    /* cluster.c promote and announce_version. */
    same_wire(cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 78, .role = "voter"}),
              json_pack("{s:i, s:s, s:I, s:s}", "v", 1, "op", "node_upsert", "id", (json_int_t)78,
                        "role", "voter"),
              "{\"v\":1,\"op\":\"node_upsert\",\"id\":78,\"role\":\"voter\"}");
    same_wire(
        cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 78, .cmd_version = CDB_CMD_VERSION}),
        json_pack("{s:i, s:s, s:I, s:i}", "v", 1, "op", "node_upsert", "id", (json_int_t)78,
                  "cmd_version", CDB_CMD_VERSION),
        NULL);
    /* cluster.c remove and init. */
    same_wire(cdb_cmd_node_remove(78),
              json_pack("{s:i, s:s, s:I}", "v", 1, "op", "node_remove", "id", (json_int_t)78),
              "{\"v\":1,\"op\":\"node_remove\",\"id\":78}");
    same_wire(cdb_cmd_cluster_meta("0123abcd", "lab", 1700000000000),
              json_pack("{s:i, s:s, s:s, s:s, s:I}", "v", 1, "op", "cluster_meta", "id", "0123abcd",
                        "name", "lab", "created_ms", (json_int_t)1700000000000),
              "{\"v\":1,\"op\":\"cluster_meta\",\"id\":\"0123abcd\",\"name\":\"lab\","
              "\"created_ms\":1700000000000}");
    /* A VM's writer epoch (version 5), with and without the compare-and-set. */
    same_wire(cdb_cmd_vm_epoch("web1", 3, 2),
              json_pack("{s:i, s:s, s:s, s:I, s:I}", "v", 5, "op", "vm_epoch", "name", "web1",
                        "epoch", (json_int_t)3, "expect_epoch", (json_int_t)2),
              "{\"v\":5,\"op\":\"vm_epoch\",\"name\":\"web1\",\"epoch\":3,"
              "\"expect_epoch\":2}");
    same_wire(cdb_cmd_vm_epoch("web1", 1, 0),
              json_pack("{s:i, s:s, s:s, s:I, s:I}", "v", 5, "op", "vm_epoch", "name", "web1",
                        "epoch", (json_int_t)1, "expect_epoch", (json_int_t)0),
              "{\"v\":5,\"op\":\"vm_epoch\",\"name\":\"web1\",\"epoch\":1,"
              "\"expect_epoch\":0}");
    same_wire(cdb_cmd_vm_epoch("web1", CDB_ID_MAX, -1),
              json_pack("{s:i, s:s, s:s, s:I}", "v", 5, "op", "vm_epoch", "name", "web1", "epoch",
                        (json_int_t)CDB_ID_MAX),
              "{\"v\":5,\"op\":\"vm_epoch\",\"name\":\"web1\",\"epoch\":9007199254740991}");
    json_decref(mem);
}

/* ---- the documented effect of every builder's command ---- */

static void test_effects(void **state)
{
    (void)state;
    struct ferr e;
    json_t *rec = NULL;
    struct cdb *db = cdb_new();
    assert_non_null(db);

    apply_ok(db, cdb_cmd_cluster_meta("c-1", "lab", 5));
    rec = cdb_meta(db);
    assert_string_equal(field(rec, "id"), "c-1");
    assert_string_equal(field(rec, "name"), "lab");
    assert_int_equal(number(rec, "created_ms"), 5);
    json_decref(rec);

    /* A node as it writes itself, then one admitted with the required fields only. */
    json_t *mem = json_pack("{s:i, s:i}", "total_mib", 8000, "free_mib", 6000);
    struct cdb_node_fields n1 = full_node(1, "n1", mem);
    apply_ok(db, cdb_cmd_node_upsert(&n1));
    json_decref(mem);
    assert_int_equal(cdb_node_get(db, 1, &rec, &e), 0);
    assert_string_equal(field(rec, "name"), "n1");
    assert_string_equal(field(rec, "role"), "voter");
    assert_string_equal(field(rec, "accel"), "kvm");
    assert_int_equal(number(rec, "last_heartbeat_ms"), 1700000000000);
    assert_int_equal(number(rec, "cmd_version"), CDB_CMD_VERSION);
    assert_int_equal(number(json_object_get(rec, "memory"), "free_mib"), 6000);
    json_decref(rec);
    apply_ok(db, cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 2,
                                                               .name = "n2",
                                                               .api_addr = "127.0.0.1:7002",
                                                               .raft_addr = "127.0.0.1:8002",
                                                               .role = "spare",
                                                               .state = "up"}));
    /* Promotion and a version announcement replace those fields alone. */
    apply_ok(db, cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 2, .role = "voter"}));
    apply_ok(db, cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 2, .cmd_version = 2}));
    assert_int_equal(cdb_node_get(db, 2, &rec, &e), 0);
    assert_string_equal(field(rec, "name"), "n2");
    assert_string_equal(field(rec, "role"), "voter");
    assert_string_equal(field(rec, "state"), "up");
    assert_string_equal(field(rec, "admin"), "active");
    assert_int_equal(number(rec, "cmd_version"), 2);
    json_decref(rec);
    assert_int_equal(cdb_cmd_version_min(db), 2);

    /* VMs: a full put, and one that takes the defaults. */
    apply_ok(db, cdb_cmd_vm_put("web1", spec_of("web1"), "n1", "running"));
    apply_ok(db, cdb_cmd_vm_put("web2", spec_of("web2"), NULL, NULL));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), 0);
    assert_string_equal(field(rec, "owner"), "n1");
    assert_string_equal(field(rec, "state"), "running");
    assert_int_equal(number(json_object_get(rec, "spec"), "memory_mib"), 256);
    assert_int_equal(number(rec, "generation"), 1);
    json_decref(rec);
    assert_int_equal(cdb_vm_get(db, "web2", &rec, &e), 0);
    assert_string_equal(field(rec, "owner"), "");
    assert_string_equal(field(rec, "state"), "stopped");
    json_decref(rec);

    /* A move is a compare-and-set: the second, expecting the old owner, is refused. */
    apply_ok(db, cdb_cmd_vm_owner("web1", "n2", "n1"));
    assert_int_equal(apply(db, cdb_cmd_vm_owner("web1", "n1", "n1"), &e), FERR_STATE);
    apply_ok(db, cdb_cmd_vm_owner("web2", "n1", NULL));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), 0);
    assert_string_equal(field(rec, "owner"), "n2");
    json_decref(rec);

    apply_ok(db, cdb_cmd_vm_state("web1", "paused", "paused by the user"));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), 0);
    assert_string_equal(field(rec, "state"), "paused");
    assert_string_equal(field(rec, "reason"), "paused by the user");
    json_decref(rec);
    apply_ok(db, cdb_cmd_vm_state("web1", "running", NULL));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), 0);
    assert_string_equal(field(rec, "reason"), "");
    json_decref(rec);

    /* A VM's writer epoch: set, compare-and-set, only rising; a state change keeps it. */
    assert_int_equal(cdb_vm_epoch(db, "web1"), 0);
    apply_ok(db, cdb_cmd_vm_epoch("web1", 1, 0));
    apply_ok(db, cdb_cmd_vm_epoch("web1", 4, -1));
    assert_int_equal(apply(db, cdb_cmd_vm_epoch("web1", 5, 1), &e), FERR_STATE);
    assert_int_equal(apply(db, cdb_cmd_vm_epoch("web1", 4, 4), &e), FERR_STATE);
    assert_int_equal(apply(db, cdb_cmd_vm_epoch("web9", 5, -1), &e), FERR_NOTFOUND);
    apply_ok(db, cdb_cmd_vm_state("web1", "running", NULL));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), 0);
    assert_int_equal(number(rec, "epoch"), 4);
    json_decref(rec);
    assert_int_equal(cdb_vm_epoch(db, "web1"), 4);
    assert_int_equal(cdb_vm_epoch(db, "web2"), 0);

    /* Events, with and without the optional fields. */
    apply_ok(db, cdb_cmd_event_add(7, "vm.started", "n1", "web1", "started"));
    apply_ok(db, cdb_cmd_event_add(8, "cluster.note", NULL, NULL, NULL));
    apply_ok(db, cdb_cmd_event_add(9, "vm.migration", "n1", "web1",
                                   "{\"status\":\"completed\",\"downtime_ms\":20}"));
    json_t *evs = cdb_events(db, 0, 0);
    assert_int_equal(json_array_size(evs), 3);
    json_t *ev = json_array_get(evs, 0);
    assert_int_equal(number(ev, "time_ms"), 7);
    assert_string_equal(field(ev, "type"), "vm.started");
    assert_string_equal(field(ev, "vm"), "web1");
    assert_string_equal(field(ev, "message"), "started");
    ev = json_array_get(evs, 1);
    assert_string_equal(field(ev, "node"), "");
    assert_string_equal(field(ev, "vm"), "");
    assert_string_equal(field(ev, "message"), "");
    json_int_t mig = number(json_array_get(evs, 2), "id");
    json_decref(evs);

    /* A client's measurement joins the migration's record; a second one only with replace. */
    json_t *gap = json_real(12.5);
    apply_ok(db, cdb_cmd_migration_measure((uint64_t)mig, gap, "lab-probe", false));
    assert_int_equal(
        apply(db, cdb_cmd_migration_measure((uint64_t)mig, gap, "lab-probe", false), &e),
        FERR_EXISTS);
    json_decref(gap);
    gap = json_integer(30);
    apply_ok(db, cdb_cmd_migration_measure((uint64_t)mig, gap, "manual", true));
    json_decref(gap);
    evs = cdb_events(db, (uint64_t)mig - 1, 1);
    json_t *figures = json_loads(field(json_array_get(evs, 0), "message"), 0, NULL);
    assert_non_null(figures);
    assert_true(json_number_value(json_object_get(figures, "client_gap_ms")) == 30.0);
    assert_string_equal(field(figures, "client_gap_source"), "manual");
    json_decref(figures);
    json_decref(evs);

    /* A node that owns a VM stays; once the VM is gone it can be removed. */
    assert_int_equal(apply(db, cdb_cmd_node_remove(2), &e), FERR_STATE);
    apply_ok(db, cdb_cmd_vm_remove("web1"));
    assert_int_equal(cdb_vm_get(db, "web1", &rec, &e), FERR_NOTFOUND);
    apply_ok(db, cdb_cmd_node_remove(2));
    assert_int_equal(cdb_node_get(db, 2, &rec, &e), FERR_NOTFOUND);
    cdb_free(db);
}

/* ---- optional fields, the op, bad input ---- */

static void test_optional_fields_absent(void **state)
{
    (void)state;
    json_t *cmd = cdb_cmd_vm_put("web1", spec_of("web1"), NULL, NULL);
    assert_null(json_object_get(cmd, "owner"));
    assert_null(json_object_get(cmd, "state"));
    assert_int_equal(json_object_size(cmd), 4);
    json_decref(cmd);
    cmd = cdb_cmd_vm_owner("web1", "n2", NULL);
    assert_null(json_object_get(cmd, "expect_owner"));
    assert_int_equal(json_object_size(cmd), 4);
    json_decref(cmd);
    cmd = cdb_cmd_vm_state("web1", "running", NULL);
    assert_null(json_object_get(cmd, "reason"));
    json_decref(cmd);
    cmd = cdb_cmd_event_add(1, "x", NULL, NULL, NULL);
    assert_int_equal(json_object_size(cmd), 4); /* v, op, time_ms, type */
    json_decref(cmd);
    cmd = cdb_cmd_vm_epoch("web1", 2, -1);
    assert_null(json_object_get(cmd, "expect_epoch"));
    assert_int_equal(json_object_size(cmd), 4); /* v, op, name, epoch */
    assert_string_equal(cdb_cmd_op(cmd), "vm_epoch");
    json_decref(cmd);
    cmd = cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 3});
    assert_int_equal(json_object_size(cmd), 3);
    assert_string_equal(cdb_cmd_op(cmd), "node_upsert");
    json_decref(cmd);
    json_t *not_cmd = json_pack("{s:i}", "v", 1);
    assert_null(cdb_cmd_op(not_cmd));
    assert_null(cdb_cmd_op(NULL));
    json_decref(not_cmd);
}

static void test_bad_input(void **state)
{
    (void)state;
    json_t *gap = json_real(CDB_CLIENT_GAP_MAX_MS + 1.0);
    /* A missing required value leaves its field out: the check names it. */
    refused(cdb_cmd_vm_remove(NULL), "name: missing");
    refused(cdb_cmd_vm_owner("web1", NULL, "n1"), "owner: missing");
    refused(cdb_cmd_vm_state("web1", NULL, "x"), "state: missing");
    refused(cdb_cmd_event_add(1, NULL, "n1", "", "m"), "type: missing");
    refused(cdb_cmd_cluster_meta(NULL, "lab", 1), "id: missing");
    refused(cdb_cmd_vm_epoch(NULL, 1, -1), "vm_epoch: name: missing");
    refused(cdb_cmd_migration_measure(1, NULL, "manual", false), "client_gap_ms: missing");
    /* Out of range values are written as given and refused by the check. */
    refused(cdb_cmd_node_remove(0), "out of range");
    refused(cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = CDB_ID_MAX + 1}), "out of range");
    refused(cdb_cmd_event_add(CDB_ID_MAX + 1, "x", NULL, NULL, NULL), "out of range");
    refused(cdb_cmd_event_add(UINT64_MAX, "x", NULL, NULL, NULL), "out of range");
    refused(cdb_cmd_vm_epoch("web1", 0, -1), "vm_epoch: epoch: 0 is out of range");
    refused(cdb_cmd_vm_epoch("web1", CDB_ID_MAX + 1, -1),
            "epoch: 9007199254740992 is out of range");
    refused(cdb_cmd_vm_epoch("web1", UINT64_MAX, -1), "epoch: -1 is out of range");
    refused(cdb_cmd_vm_epoch("web1", 2, (long long)CDB_ID_MAX + 1), "expect_epoch");
    refused(cdb_cmd_migration_measure(1, gap, "manual", false), "client_gap_ms");
    refused(cdb_cmd_vm_put("Web1", spec_of("web1"), NULL, NULL), "name");
    refused(cdb_cmd_node_upsert(&(struct cdb_node_fields){.id = 1, .role = "boss"}), "role");
    json_decref(gap);
    /* No spec (the caller ran out of memory making it), or a string jansson cannot hold. */
    assert_null(cdb_cmd_vm_put("web1", NULL, "n1", "running"));
    assert_null(cdb_cmd_vm_remove("bad\xff"));
}

/* ---- out of memory: NULL and nothing leaked, never half a command ---- */

static long allocs;           /* made since the limit was set */
static long alloc_limit = -1; /* allocations that succeed before all fail; -1: no limit */

static void *limited_malloc(size_t n)
{
    return alloc_limit >= 0 && allocs++ >= alloc_limit ? NULL : malloc(n);
}

/* Builds command number which; spec and gap are made here, before the limit applies. */
static json_t *build(int which, long limit)
{
    json_t *spec = spec_of("web1"), *gap = json_real(1.5), *cmd = NULL;
    json_t *mem = json_pack("{s:i, s:i}", "total_mib", 1, "free_mib", 1);
    struct cdb_node_fields f = full_node(1, "n1", mem);
    allocs = 0;
    alloc_limit = limit;
    switch (which) {
    case 0:
        cmd = cdb_cmd_vm_put("web1", spec, "n1", "running");
        spec = NULL; /* stolen */
        break;
    case 1:
        cmd = cdb_cmd_vm_owner("web1", "n2", "n1");
        break;
    case 2:
        cmd = cdb_cmd_vm_state("web1", "running", "why");
        break;
    case 3:
        cmd = cdb_cmd_event_add(1, "x", "n1", "web1", "message");
        break;
    case 4:
        cmd = cdb_cmd_migration_measure(1, gap, "manual", true);
        break;
    case 5:
        cmd = cdb_cmd_node_upsert(&f);
        break;
    case 6:
        cmd = cdb_cmd_cluster_meta("c-1", "lab", 1);
        break;
    case 7:
        cmd = cdb_cmd_vm_epoch("web1", 3, 2);
        break;
    default:
        cmd = cdb_cmd_node_remove(1);
        break;
    }
    alloc_limit = -1;
    json_decref(spec);
    json_decref(gap);
    json_decref(mem);
    return cmd;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    json_set_alloc_funcs(limited_malloc, free);
    for (int which = 0; which < 9; which++) {
        json_t *full = build(which, -1);
        assert_non_null(full);
        long limit = 0;
        json_t *cmd;
        while (!(cmd = build(which, limit)))
            limit++;
        assert_true(limit > 0);
        assert_true(json_equal(cmd, full));
        json_decref(cmd);
        json_decref(full);
    }
    json_set_alloc_funcs(malloc, free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_format),
        cmocka_unit_test(test_effects),
        cmocka_unit_test(test_optional_fields_absent),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
