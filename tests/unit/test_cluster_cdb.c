/* SPDX-License-Identifier: MIT */
/* Unit tests of the cluster database state machine: apply, bad commands, snapshots, padding. */
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

/* Tests write JSON with single quotes; this turns them into double quotes and parses. */
static json_t *sq(const char *text)
{
    char *t = strdup(text);
    assert_non_null(t);
    for (char *c = t; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t jerr;
    json_t *j = json_loads(t, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("bad test JSON %s: %s", t, jerr.text);
    free(t);
    return j;
}

/* Encodes and applies a command at the next index; returns the code, message in e. */
static int run(struct cdb *db, const char *text, struct ferr *e)
{
    json_t *cmd = sq(text);
    char *buf = NULL;
    size_t len = 0;
    uint64_t index = cdb_applied_index(db) + 1;
    int rc = cdb_cmd_encode(cmd, &buf, &len, e);
    if (rc == 0) {
        assert_int_equal(len % 8, 0);
        rc = cdb_apply(db, index, buf, len, 1000 + index, e);
        assert_int_equal(cdb_applied_index(db), index);
        free(buf);
    } else {
        /* What the encoder refuses, apply refuses the same way when it arrives anyway. */
        struct ferr e2;
        int rc2 = cdb_apply_cmd(db, index, cmd, 1000 + index, &e2);
        assert_int_equal(rc2, rc);
        assert_string_equal(e2.msg, e->msg);
    }
    json_decref(cmd);
    return rc;
}

static void ok(struct cdb *db, const char *text)
{
    struct ferr e;
    int rc = run(db, text, &e);
    if (rc != 0)
        fail_msg("%s: %s", text, e.msg);
}

#define NODE1                                                                                      \
    "{'v':1,'op':'node_upsert','id':1,'name':'n1','api_addr':'127.0.0.1:7001',"                    \
    "'raft_addr':'127.0.0.1:8001','role':'voter','memory':{'total_mib':8000,"                      \
    "'free_mib':6000},'vm_count':0,'accel':'kvm','last_heartbeat_ms':100}"
#define NODE2                                                                                      \
    "{'v':1,'op':'node_upsert','id':2,'name':'n2','api_addr':'[::1]:7002',"                        \
    "'raft_addr':'127.0.0.1:8002'}"

/* A database with a cluster, two nodes, one VM and one event. */
static struct cdb *populated(void)
{
    struct cdb *db = cdb_new();
    assert_non_null(db);
    ok(db, "{'v':1,'op':'cluster_meta','id':'c-123','name':'lab','created_ms':5}");
    ok(db, NODE1);
    ok(db, NODE2);
    ok(db, "{'v':1,'op':'vm_put','name':'web1','spec':{'name':'web1','memory_mib':256},"
           "'owner':'n1','state':'running'}");
    ok(db, "{'v':1,'op':'event_add','time_ms':7,'type':'vm.started','node':'n1','vm':'web1',"
           "'message':'started'}");
    return db;
}

/* A new database restored from a snapshot of db (caller frees). */
static struct cdb *restored(const struct cdb *db)
{
    char *snap = NULL;
    size_t len = 0;
    struct ferr e;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    struct cdb *copy = cdb_new();
    assert_non_null(copy);
    assert_int_equal(cdb_restore(copy, snap, len, 5, &e), 0);
    free(snap);
    return copy;
}

/* The replicated state without the applied index, as text (caller frees). */
static char *state_text(const struct cdb *db)
{
    json_t *s = json_pack("{so so so so}", "meta", cdb_meta(db), "nodes", cdb_nodes(db), "vms",
                          cdb_vms(db, NULL), "events", cdb_events(db, 0, 0));
    assert_non_null(s);
    char *t = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(s);
    assert_non_null(t);
    return t;
}

static void test_apply_sequence(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *db = populated();
    assert_int_equal(cdb_applied_index(db), 5);
    assert_int_equal(cdb_applied_wall_ms(db), 1005);

    json_t *n = NULL;
    assert_int_equal(cdb_node_get(db, 1, &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "name")), "n1");
    assert_string_equal(json_string_value(json_object_get(n, "role")), "voter");
    assert_string_equal(json_string_value(json_object_get(n, "state")), "up");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "memory"), "free_mib")),
                     6000);
    json_decref(n);

    /* Defaults of a node created with the required fields only. */
    assert_int_equal(cdb_node_find(db, "n2", &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "role")), "spare");
    assert_string_equal(json_string_value(json_object_get(n, "accel")), "");
    assert_int_equal(json_integer_value(json_object_get(n, "cmd_version")), 1);
    json_decref(n);

    /* An upsert replaces only the fields given. */
    ok(db, "{'v':1,'op':'node_upsert','id':2,'role':'voter','vm_count':3,'cmd_version':2}");
    assert_int_equal(cdb_node_get(db, 2, &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "role")), "voter");
    assert_string_equal(json_string_value(json_object_get(n, "api_addr")), "[::1]:7002");
    assert_int_equal(json_integer_value(json_object_get(n, "vm_count")), 3);
    json_decref(n);
    assert_int_equal(cdb_cmd_version_min(db), 1);

    ok(db, "{'v':2,'op':'node_admin','id':2,'admin':'draining','reason':'maintenance',"
           "'time_ms':50}");
    assert_int_equal(cdb_node_get(db, 2, &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "state")), "up");
    assert_string_equal(json_string_value(json_object_get(n, "admin")), "draining");
    assert_string_equal(json_string_value(json_object_get(n, "admin_reason")), "maintenance");
    assert_int_equal(json_integer_value(json_object_get(n, "admin_changed_ms")), 50);
    json_decref(n);

    /* Owner moves are compare-and-set when asked. */
    assert_int_equal(run(db,
                         "{'v':1,'op':'vm_owner','name':'web1','owner':'n2',"
                         "'expect_owner':'n2'}",
                         &e),
                     FERR_STATE);
    assert_non_null(strstr(e.msg, "owned by \"n1\""));
    ok(db, "{'v':1,'op':'vm_owner','name':'web1','owner':'n2','expect_owner':'n1'}");
    ok(db, "{'v':1,'op':'vm_state','name':'web1','state':'failed','reason':'host died'}");
    json_t *vm = NULL;
    assert_int_equal(cdb_vm_get(db, "web1", &vm, &e), 0);
    assert_string_equal(json_string_value(json_object_get(vm, "owner")), "n2");
    assert_string_equal(json_string_value(json_object_get(vm, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(vm, "reason")), "host died");
    assert_int_equal(json_integer_value(json_object_get(vm, "generation")), 3);
    json_decref(vm);

    /* vm_put keeps owner and state when they are not given. */
    ok(db, "{'v':1,'op':'vm_put','name':'web1','spec':{'memory_mib':512}}");
    ok(db, "{'v':1,'op':'vm_put','name':'db1','spec':{}}");
    assert_int_equal(cdb_vm_get(db, "web1", &vm, &e), 0);
    assert_string_equal(json_string_value(json_object_get(vm, "owner")), "n2");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(vm, "spec"), "memory_mib")),
                     512);
    json_decref(vm);
    assert_int_equal(cdb_vm_get(db, "db1", &vm, &e), 0);
    assert_string_equal(json_string_value(json_object_get(vm, "owner")), "");
    assert_string_equal(json_string_value(json_object_get(vm, "state")), "stopped");
    json_decref(vm);

    json_t *l = cdb_vms(db, NULL);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "name")), "db1");
    json_decref(l);
    l = cdb_vms(db, "n2");
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    l = cdb_vms(db, "");
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);

    /* A node that owns VMs cannot go; once they are gone it can. */
    assert_int_equal(run(db, "{'v':1,'op':'node_remove','id':2}", &e), FERR_STATE);
    assert_non_null(strstr(e.msg, "still owns 1 VM"));
    ok(db, "{'v':1,'op':'vm_remove','name':'web1'}");
    ok(db, "{'v':1,'op':'node_remove','id':2}");
    assert_int_equal(cdb_node_get(db, 2, &n, &e), FERR_NOTFOUND);
    l = cdb_nodes(db);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);

    /* The name of a removed node is free again. */
    ok(db, "{'v':1,'op':'node_upsert','id':9,'name':'n2','api_addr':'10.0.0.9:1',"
           "'raft_addr':'10.0.0.9:2'}");
    json_t *m = cdb_meta(db);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "c-123");
    json_decref(m);
    ok(db, "{'v':1,'op':'cluster_meta','id':'c-123','name':'renamed','created_ms':5}");
    cdb_free(db);
}

/* Asserts node id's health and admin state (and, when not NULL, the admin state's reason). */
static void node_is(const struct cdb *db, uint64_t id, const char *health, const char *admin,
                    const char *admin_reason)
{
    json_t *n = NULL;
    struct ferr e;
    assert_int_equal(cdb_node_get(db, id, &n, &e), 0);
    const char *h = json_string_value(json_object_get(n, "state"));
    const char *a = json_string_value(json_object_get(n, "admin"));
    const char *r = json_string_value(json_object_get(n, "admin_reason"));
    if (!h || !a || strcmp(h, health) != 0 || strcmp(a, admin) != 0 ||
        (admin_reason && (!r || strcmp(r, admin_reason) != 0)))
        fail_msg("node %llu is %s/%s (%s), want %s/%s (%s)", (unsigned long long)id, h, a, r,
                 health, admin, admin_reason ? admin_reason : "any");
    json_decref(n);
}

/* Version 2: health (node_state) and admin state (node_admin) change apart. */
static void test_health_and_admin(void **state)
{
    (void)state;
    struct cdb *db = populated();
    json_t *n = NULL;
    struct ferr e;
    /* A new node is up and active. */
    node_is(db, 2, "up", "active", "");
    assert_int_equal(cdb_node_get(db, 2, &n, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(n, "admin_changed_ms")), 0);
    json_decref(n);

    ok(db, "{'v':2,'op':'node_admin','id':1,'admin':'draining','reason':'drain requested',"
           "'time_ms':60}");
    node_is(db, 1, "up", "draining", "drain requested");
    ok(db, "{'v':2,'op':'node_admin','id':1,'admin':'paused','reason':'drained','time_ms':61}");
    node_is(db, 1, "up", "paused", "drained");
    /* Health goes down and up again; the admin state stays, with its reason and time. */
    ok(db, "{'v':2,'op':'node_state','id':1,'state':'down','reason':'no heartbeat for 5000 ms',"
           "'time_ms':70}");
    node_is(db, 1, "down", "paused", "drained");
    ok(db, "{'v':2,'op':'node_state','id':1,'state':'up','reason':'heartbeats again',"
           "'time_ms':80}");
    node_is(db, 1, "up", "paused", "drained");
    assert_int_equal(cdb_node_get(db, 1, &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "state_reason")), "heartbeats again");
    assert_int_equal(json_integer_value(json_object_get(n, "state_changed_ms")), 80);
    assert_int_equal(json_integer_value(json_object_get(n, "admin_changed_ms")), 61);
    json_decref(n);
    /* The admin state changes while the node is down, too; health is left alone. */
    ok(db, "{'v':2,'op':'node_state','id':1,'state':'down','time_ms':90}");
    ok(db, "{'v':2,'op':'node_admin','id':1,'admin':'active','time_ms':91}");
    node_is(db, 1, "down", "active", "");
    /* The same admin state again records the new reason and time. */
    ok(db, "{'v':2,'op':'node_admin','id':1,'admin':'active','reason':'again','time_ms':92}");
    node_is(db, 1, "down", "active", "again");
    /* A version 2 upsert sets the health only. */
    ok(db, "{'v':2,'op':'node_admin','id':2,'admin':'paused','time_ms':93}");
    ok(db, "{'v':2,'op':'node_upsert','id':2,'state':'down','vm_count':1}");
    node_is(db, 2, "down", "paused", "");
    ok(db, "{'v':2,'op':'node_upsert','id':2,'state':'up'}");
    node_is(db, 2, "up", "paused", "");
    /* Other ops are the same in both versions. */
    ok(db, "{'v':2,'op':'vm_state','name':'web1','state':'stopped'}");
    cdb_free(db);
}

/*
 * Version 1 entries still in a Raft log: one state word for both, and version 1's health
 * check kept a down node's admin state in the reason. Replayed, they give what version 2
 * says directly.
 */
static void test_v1_node_states(void **state)
{
    (void)state;
    struct cdb *db = populated();
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'draining','reason':'drain requested',"
           "'time_ms':10}");
    node_is(db, 1, "up", "draining", "drain requested");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'paused','reason':'drained','time_ms':11}");
    node_is(db, 1, "up", "paused", "drained");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'down','reason':'no heartbeat for 5012 ms "
           "(was paused)','time_ms':12}");
    node_is(db, 1, "down", "paused", "drained");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'paused','reason':'heartbeats again',"
           "'time_ms':13}");
    node_is(db, 1, "up", "paused", "drained");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'up','reason':'resumed','time_ms':14}");
    node_is(db, 1, "up", "active", "resumed");
    /* A down state that does not say keeps the admin state known; "up" means active. */
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'draining','time_ms':15}");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'down','reason':'no heartbeat','time_ms':16}");
    node_is(db, 1, "down", "draining", "");
    ok(db, "{'v':1,'op':'node_state','id':1,'state':'up','reason':'heartbeats again',"
           "'time_ms':17}");
    node_is(db, 1, "up", "active", "heartbeats again");
    /* A down state that names another admin state than the known one wins (version 1 would
     * have brought the node back in it). */
    ok(db, "{'v':1,'op':'node_state','id':2,'state':'down','reason':'x (was draining)',"
           "'time_ms':18}");
    node_is(db, 2, "down", "draining", "x (was draining)");
    /* A version 1 upsert's state is the one word too. */
    ok(db, "{'v':1,'op':'node_upsert','id':2,'state':'paused'}");
    node_is(db, 2, "up", "paused", "");
    ok(db, "{'v':1,'op':'node_upsert','id':2,'state':'up'}");
    node_is(db, 2, "up", "active", "");
    cdb_free(db);
}

/* cdb_node_cmd writes version 2 when every node applies it, else version 1 that old nodes
 * understand; new nodes reach the same state from either. */
static void test_node_cmd_versions(void **state)
{
    (void)state;
    static const struct {
        const char *state, *admin, *reason, *health_after, *admin_after;
    } steps[] = {
        {NULL, "draining", "drain requested", "up", "draining"},
        {NULL, "paused", "drained", "up", "paused"},
        {"down", NULL, "no heartbeat for 5000 ms", "down", "paused"},
        {"up", NULL, "heartbeats again", "up", "paused"},
        {NULL, "active", "resumed", "up", "active"},
        {"down", NULL, "no heartbeat", "down", "active"},
        {NULL, "draining", NULL, "down", "draining"},
        {"up", NULL, "heartbeats again", "up", "draining"},
    };
    struct cdb *v2 = populated(), *v1 = populated();
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct cdb *dbs[] = {v1, v2};
        for (int k = 0; k < 2; k++) {
            json_t *rec = NULL, *cmd;
            struct ferr e;
            char *buf;
            size_t len;
            assert_int_equal(cdb_node_get(dbs[k], 1, &rec, &e), 0);
            cmd =
                cdb_node_cmd(k + 1, rec, steps[i].state, steps[i].admin, steps[i].reason, 100 + i);
            json_decref(rec);
            assert_non_null(cmd);
            assert_int_equal(json_integer_value(json_object_get(cmd, "v")), k + 1);
            const char *op = json_string_value(json_object_get(cmd, "op"));
            assert_string_equal(op, k == 0 || steps[i].state ? "node_state" : "node_admin");
            if (k == 0 && steps[i].state && strcmp(steps[i].state, "down") == 0 &&
                strcmp(steps[i].admin_after, "active") != 0)
                assert_non_null(
                    strstr(json_string_value(json_object_get(cmd, "reason")), "(was paused)"));
            assert_int_equal(cdb_cmd_encode(cmd, &buf, &len, &e), 0);
            if (cdb_apply(dbs[k], cdb_applied_index(dbs[k]) + 1, buf, len, 1, &e) != 0)
                fail_msg("step %zu, version %d: %s", i, k + 1, e.msg);
            free(buf);
            json_decref(cmd);
            node_is(dbs[k], 1, steps[i].health_after, steps[i].admin_after, NULL);
        }
    }
    cdb_free(v1);
    cdb_free(v2);
}

/* Version 3: the owner publishes what runs with the state; a version 3 vm_state without it
 * clears it, an older one leaves it; a snapshot keeps it; a version 2 vm_state cannot carry
 * it. */
static void refused(struct cdb *db, const char *text, int code, const char *want);

static void test_vm_runtime(void **state)
{
    (void)state;
    struct cdb *db = populated();
    json_t *v = NULL;
    struct ferr e;
    ok(db, "{'v':3,'op':'vm_state','name':'web1','state':'running','reason':'',"
           "'runtime':{'accel':'tcg','pid':4242,'started_ms':1700000000000}}");
    assert_int_equal(cdb_vm_get(db, "web1", &v, &e), 0);
    json_t *rt = json_object_get(v, "runtime");
    assert_string_equal(json_string_value(json_object_get(rt, "accel")), "tcg");
    assert_int_equal(json_integer_value(json_object_get(rt, "pid")), 4242);
    assert_int_equal(json_integer_value(json_object_get(rt, "started_ms")), 1700000000000);
    json_decref(v);
    /* older commands leave it as it is */
    ok(db, "{'v':1,'op':'vm_state','name':'web1','state':'paused'}");
    assert_int_equal(cdb_vm_get(db, "web1", &v, &e), 0);
    assert_non_null(json_object_get(v, "runtime"));
    assert_string_equal(json_string_value(json_object_get(v, "state")), "paused");
    json_decref(v);
    /* it survives a snapshot and its restore */
    struct cdb *db2 = restored(db);
    assert_int_equal(cdb_vm_get(db2, "web1", &v, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "runtime"), "pid")),
                     4242);
    json_decref(v);
    cdb_free(db2);
    /* a version 3 vm_state without it: nothing runs */
    ok(db, "{'v':3,'op':'vm_state','name':'web1','state':'stopped','reason':'by request'}");
    assert_int_equal(cdb_vm_get(db, "web1", &v, &e), 0);
    assert_null(json_object_get(v, "runtime"));
    json_decref(v);
    /* the builder writes version 1 below version 3, the runtime from 3 on */
    struct cdb_vm_runtime r = {.accel = "kvm", .pid = 7, .started_ms = 9};
    json_t *c2 = cdb_cmd_vm_state_at(2, "web1", "running", "", &r);
    assert_int_equal(json_integer_value(json_object_get(c2, "v")), 1);
    assert_null(json_object_get(c2, "runtime"));
    assert_int_equal(cdb_cmd_check(c2, &e), 0);
    json_t *c3 = cdb_cmd_vm_state_at(3, "web1", "running", "", &r);
    char *t = json_dumps(c3, JSON_COMPACT);
    assert_string_equal(t, "{\"v\":3,\"op\":\"vm_state\",\"name\":\"web1\",\"state\":"
                           "\"running\",\"reason\":\"\",\"runtime\":{\"accel\":\"kvm\","
                           "\"pid\":7,\"started_ms\":9}}");
    free(t);
    assert_int_equal(cdb_cmd_check(c3, &e), 0);
    json_t *c4 = cdb_cmd_vm_state_at(3, "web1", "stopped", NULL, NULL);
    assert_null(json_object_get(c4, "runtime"));
    assert_int_equal(cdb_cmd_check(c4, &e), 0);
    json_decref(c2);
    json_decref(c3);
    json_decref(c4);
    /* net_ms (the guest's first packet) from version 7: the builder writes it only there */
    r.net_ms = 12;
    json_t *c6 = cdb_cmd_vm_state_at(6, "web1", "running", "", &r);
    assert_int_equal(json_integer_value(json_object_get(c6, "v")), 3);
    assert_null(json_object_get(json_object_get(c6, "runtime"), "net_ms"));
    json_t *c7 = cdb_cmd_vm_state_at(7, "web1", "running", "", &r);
    assert_int_equal(json_integer_value(json_object_get(c7, "v")), 7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(c7, "runtime"), "net_ms")),
                     12);
    assert_int_equal(cdb_cmd_check(c7, &e), 0);
    json_decref(c6);
    json_decref(c7);
    refused(db,
            "{'v':6,'op':'vm_state','name':'web1','state':'running','reason':'',"
            "'runtime':{'pid':7,'started_ms':9,'net_ms':12}}",
            FERR_INVALID, "unknown field \"net_ms\"");
    ok(db, "{'v':7,'op':'vm_state','name':'web1','state':'running','reason':'',"
           "'runtime':{'pid':7,'started_ms':9,'net_ms':12}}");
    db2 = restored(db);
    assert_int_equal(cdb_vm_get(db2, "web1", &v, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "runtime"), "net_ms")),
                     12);
    json_decref(v);
    cdb_free(db2);
    cdb_free(db);
}

/* Every kind of bad command: the right code, a message naming the problem, no change. */
static void test_bad_commands(void **state)
{
    (void)state;
    static const struct {
        const char *cmd;
        int code;
        const char *msg;
    } cases[] = {
        {"{'op':'vm_remove','name':'web1'}", FERR_INVALID, "v (the command version) is missing"},
        {"{'v':'1','op':'vm_remove','name':'web1'}", FERR_INVALID, "v: expected an integer"},
        {"{'v':9,'op':'vm_remove','name':'web1'}", FERR_INVALID,
         "command version 9 is not supported (this node applies versions 1 to 8): upgrade"},
        /* vm_state's runtime is new in version 3 and checked like every field */
        {"{'v':2,'op':'vm_state','name':'web1','state':'running','runtime':{}}", FERR_INVALID,
         "vm_state: unknown field \"runtime\""},
        {"{'v':3,'op':'vm_state','name':'web1','state':'running','runtime':[]}", FERR_INVALID,
         "vm_state: runtime: expected an object"},
        {"{'v':3,'op':'vm_state','name':'web1','state':'running','runtime':{'pid':0}}",
         FERR_INVALID, "vm_state: runtime: pid"},
        {"{'v':3,'op':'vm_state','name':'web1','state':'running','runtime':{'pid':4194305}}",
         FERR_INVALID, "vm_state: runtime: pid"},
        {"{'v':3,'op':'vm_state','name':'web1','state':'running','runtime':{'accel':'xen'}}",
         FERR_INVALID, "vm_state: runtime: accel"},
        {"{'v':3,'op':'vm_state','name':'web1','state':'running','runtime':{'cpu':1}}",
         FERR_INVALID, "vm_state: runtime: unknown field \"cpu\""},
        {"{'v':0,'op':'vm_remove','name':'web1'}", FERR_INVALID, "command version 0 is not"},
        {"{'v':1,'name':'web1'}", FERR_INVALID, "op is missing"},
        {"{'v':1,'op':7}", FERR_INVALID, "op: expected a string"},
        {"{'v':1,'op':'vm_explode','name':'web1'}", FERR_INVALID, "unknown op \"vm_explode\""},
        {"{'v':1,'op':'vm_remove\\u0000x','name':'web1'}", FERR_INVALID, "unknown op"},
        {"{'v':1,'op':'vm_remove','name':'web1','force':true}", FERR_INVALID,
         "vm_remove: unknown field \"force\""},
        {"[1,2]", FERR_INVALID, "expected an object, not an array"},
        /* node_upsert */
        {"{'v':1,'op':'node_upsert'}", FERR_INVALID, "node_upsert: id: missing"},
        {"{'v':1,'op':'node_upsert','id':0}", FERR_INVALID, "id: 0 is out of range"},
        {"{'v':1,'op':'node_upsert','id':9007199254740992}", FERR_INVALID, "out of range"},
        {"{'v':1,'op':'node_upsert','id':-3}", FERR_INVALID, "out of range"},
        {"{'v':1,'op':'node_upsert','id':1.5}", FERR_INVALID, "expected an integer"},
        {"{'v':1,'op':'node_upsert','id':3}", FERR_INVALID, "name: missing (required for a new"},
        {"{'v':1,'op':'node_upsert','id':3,'name':'n3','raft_addr':'1.2.3.4:5'}", FERR_INVALID,
         "api_addr: missing"},
        {"{'v':1,'op':'node_upsert','id':3,'name':'n3','api_addr':'1.2.3.4:5'}", FERR_INVALID,
         "raft_addr: missing"},
        {"{'v':1,'op':'node_upsert','id':3,'name':'N3'}", FERR_INVALID, "name: \"N3\" is invalid"},
        {"{'v':1,'op':'node_upsert','id':3,'name':'n1','api_addr':'1.2.3.4:5',"
         "'raft_addr':'1.2.3.4:6'}",
         FERR_EXISTS, "taken by node 1"},
        {"{'v':1,'op':'node_upsert','id':1,'name':'other'}", FERR_INVALID, "never changes"},
        {"{'v':1,'op':'node_upsert','id':1,'api_addr':'1.2.3.4'}", FERR_INVALID,
         "api_addr: \"1.2.3.4\" is invalid: use IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'api_addr':'1.2.3.4:0'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'api_addr':'1.2.3.4:65536'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'api_addr':'1.2.3.4:08'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'api_addr':'host.example:80'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'raft_addr':'::1:80'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'raft_addr':'[::1]'}", FERR_INVALID, "IP:PORT"},
        {"{'v':1,'op':'node_upsert','id':1,'raft_addr':7}", FERR_INVALID, "expected a string"},
        {"{'v':1,'op':'node_upsert','id':1,'role':'king'}", FERR_INVALID,
         "use voter, standby or spare"},
        {"{'v':1,'op':'node_upsert','id':1,'state':'sleepy'}", FERR_INVALID, "use up, down"},
        {"{'v':1,'op':'node_upsert','id':1,'accel':'xen'}", FERR_INVALID, "kvm or tcg"},
        {"{'v':1,'op':'node_upsert','id':1,'memory':5}", FERR_INVALID,
         "memory: expected an object"},
        {"{'v':1,'op':'node_upsert','id':1,'memory':{'total_mib':5}}", FERR_INVALID,
         "memory: free_mib: missing"},
        {"{'v':1,'op':'node_upsert','id':1,'memory':{'total_mib':5,'free_mib':6}}", FERR_INVALID,
         "exceeds total_mib"},
        {"{'v':1,'op':'node_upsert','id':1,'memory':{'total_mib':5,'free_mib':1,'x':1}}",
         FERR_INVALID, "unknown field \"x\""},
        {"{'v':1,'op':'node_upsert','id':1,'vm_count':-1}", FERR_INVALID, "vm_count: -1"},
        {"{'v':1,'op':'node_upsert','id':1,'last_heartbeat_ms':true}", FERR_INVALID,
         "expected an integer, not a boolean"},
        {"{'v':1,'op':'node_upsert','id':1,'cmd_version':0}", FERR_INVALID, "cmd_version"},
        {"{'v':1,'op':'node_upsert','id':1,'state_reason':'x'}", FERR_INVALID,
         "unknown field \"state_reason\""},
        /* node_remove, node_state */
        {"{'v':1,'op':'node_remove','id':44}", FERR_NOTFOUND, "no node 44"},
        {"{'v':1,'op':'node_remove','id':1}", FERR_STATE, "still owns 1 VM"},
        {"{'v':1,'op':'node_remove'}", FERR_INVALID, "id: missing"},
        {"{'v':1,'op':'node_state','id':44,'state':'down','time_ms':1}", FERR_NOTFOUND,
         "no node 44"},
        {"{'v':1,'op':'node_state','id':1,'state':'down'}", FERR_INVALID, "time_ms: missing"},
        {"{'v':1,'op':'node_state','id':1,'state':'gone','time_ms':1}", FERR_INVALID, "use up"},
        {"{'v':1,'op':'node_state','id':1,'state':'down','time_ms':1,'reason':7}", FERR_INVALID,
         "reason: expected a string"},
        /* health and admin state apart, from version 2 on */
        {"{'v':2,'op':'node_state','id':1,'state':'paused','time_ms':1}", FERR_INVALID,
         "node_state: state: \"paused\" is invalid: use up or down: since command version 2"},
        {"{'v':2,'op':'node_state','id':1,'state':'active','time_ms':1}", FERR_INVALID,
         "state: \"active\" is invalid: use up or down"},
        {"{'v':2,'op':'node_upsert','id':1,'state':'draining'}", FERR_INVALID,
         "node_upsert: state: \"draining\" is invalid: use up or down"},
        {"{'v':2,'op':'node_upsert','id':1,'admin':'paused'}", FERR_INVALID,
         "node_upsert: unknown field \"admin\""},
        {"{'v':2,'op':'node_state','id':1,'admin':'paused','state':'up','time_ms':1}", FERR_INVALID,
         "node_state: unknown field \"admin\""},
        {"{'v':1,'op':'node_admin','id':1,'admin':'paused','time_ms':1}", FERR_INVALID,
         "op node_admin is not in command version 1 (it is new in version 2)"},
        {"{'v':2,'op':'node_admin','id':1,'admin':'asleep','time_ms':1}", FERR_INVALID,
         "node_admin: admin: \"asleep\" is invalid: use active, draining or paused"},
        {"{'v':2,'op':'node_admin','id':1,'admin':'up','time_ms':1}", FERR_INVALID,
         "use active, draining or paused"},
        {"{'v':2,'op':'node_admin','id':1,'admin':7,'time_ms':1}", FERR_INVALID,
         "admin: expected a string, not an integer"},
        {"{'v':2,'op':'node_admin','id':1,'time_ms':1}", FERR_INVALID, "admin: missing"},
        {"{'v':2,'op':'node_admin','id':1,'admin':'paused'}", FERR_INVALID, "time_ms: missing"},
        {"{'v':2,'op':'node_admin','admin':'paused','time_ms':1}", FERR_INVALID, "id: missing"},
        {"{'v':2,'op':'node_admin','id':44,'admin':'paused','time_ms':1}", FERR_NOTFOUND,
         "node_admin: no node 44"},
        {"{'v':2,'op':'node_admin','id':1,'admin':'paused','state':'up','time_ms':1}", FERR_INVALID,
         "node_admin: unknown field \"state\""},
        /* vm_put */
        {"{'v':1,'op':'vm_put','spec':{}}", FERR_INVALID, "vm_put: name: missing"},
        {"{'v':1,'op':'vm_put','name':'web1'}", FERR_INVALID, "spec: missing"},
        {"{'v':1,'op':'vm_put','name':'web1','spec':[]}", FERR_INVALID, "spec: expected an object"},
        {"{'v':1,'op':'vm_put','name':'web1','spec':{'name':'web2'}}", FERR_INVALID,
         "must be the VM's name"},
        {"{'v':1,'op':'vm_put','name':'-web','spec':{}}", FERR_INVALID, "name: \"-web\""},
        {"{'v':1,'op':'vm_put','name':'web\\u0000x','spec':{}}", FERR_INVALID, "NUL"},
        {"{'v':1,'op':'vm_put','name':'web1','spec':{},'owner':'n7'}", FERR_NOTFOUND,
         "no node named \"n7\""},
        {"{'v':1,'op':'vm_put','name':'web1','spec':{},'state':'Running'}", FERR_INVALID,
         "use 1-32 of a-z"},
        {"{'v':1,'op':'vm_put','name':'web1','spec':{},'state':''}", FERR_INVALID,
         "use 1-32 of a-z"},
        /* vm_owner, vm_state, vm_remove */
        {"{'v':1,'op':'vm_owner','name':'web9','owner':'n1'}", FERR_NOTFOUND, "no VM named"},
        {"{'v':1,'op':'vm_owner','name':'web1'}", FERR_INVALID, "owner: missing"},
        {"{'v':1,'op':'vm_owner','name':'web1','owner':'n7'}", FERR_NOTFOUND, "no node named"},
        {"{'v':1,'op':'vm_owner','name':'web1','owner':'n2','expect_owner':''}", FERR_STATE,
         "owned by \"n1\", not \"\""},
        {"{'v':1,'op':'vm_state','name':'web9','state':'running'}", FERR_NOTFOUND, "no VM"},
        {"{'v':1,'op':'vm_state','name':'web1'}", FERR_INVALID, "state: missing"},
        {"{'v':1,'op':'vm_remove','name':'web9'}", FERR_NOTFOUND, "no VM named \"web9\""},
        /* event_add */
        {"{'v':1,'op':'event_add','type':'x'}", FERR_INVALID, "time_ms: missing"},
        {"{'v':1,'op':'event_add','time_ms':1}", FERR_INVALID, "type: missing"},
        {"{'v':1,'op':'event_add','time_ms':1,'type':'A B'}", FERR_INVALID, "type: \"A B\""},
        {"{'v':1,'op':'event_add','time_ms':1,'type':'x','vm':'Bad'}", FERR_INVALID, "vm: "},
        {"{'v':1,'op':'event_add','time_ms':-1,'type':'x'}", FERR_INVALID, "time_ms: -1"},
        /* cluster_meta */
        {"{'v':1,'op':'cluster_meta','id':'c-999','name':'lab','created_ms':5}", FERR_STATE,
         "cluster's id is \"c-123\""},
        {"{'v':1,'op':'cluster_meta','id':'c-123','name':'lab','created_ms':6}", FERR_STATE,
         "created_ms is 5"},
        {"{'v':1,'op':'cluster_meta','id':'c 1','name':'lab','created_ms':5}", FERR_INVALID,
         "id: \"c 1\" is invalid"},
        {"{'v':1,'op':'cluster_meta','id':'c-123','created_ms':5}", FERR_INVALID, "name: missing"},
    };
    struct cdb *db = populated();
    char *before = state_text(db);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ferr e;
        uint64_t index = cdb_applied_index(db);
        int rc = run(db, cases[i].cmd, &e);
        if (rc != cases[i].code || !strstr(e.msg, cases[i].msg))
            fail_msg("%s: got %d \"%s\", want %d \"...%s...\"", cases[i].cmd, rc, e.msg,
                     cases[i].code, cases[i].msg);
        assert_true(strncmp(e.msg, "cdb: ", 5) == 0);
        assert_int_equal(cdb_applied_index(db), index + 1);
        char *after = state_text(db);
        assert_string_equal(after, before);
        free(after);
    }
    free(before);
    cdb_free(db);
}

/* Bytes that are not a command at all are rejected like any bad command. */
static void test_bad_bytes(void **state)
{
    (void)state;
    /* Each is text jansson refuses for what it is, never for want of memory; cdb must say
     * FERR_INVALID (counted as applied everywhere), not -ENOMEM (retried). */
    static const char *const bad[] = {
        "\0\0\0\0\0\0\0\0",
        "{",
        "{\"v\":1,\"v\":1}",
        "nul\0l",
        "{}x",
        "\"str\"",
        "{\"v\":1}\0{\"v\":1}",
        "{\"a\":\"x\001\"}",
        "{\"a\":\"\xc3\x28\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xe0\x80\xaf\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800x\"}",
        "{\"a\":\"\\q\"}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1e999}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":tru}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "[1,]",
        "{1:2}",
        "{\"a\":[1 2]}",
        "  7  ",
        "{\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"a\":\"unterminated}",
    };
    struct cdb *db = populated();
    char *before = state_text(db);
    struct ferr e;
    assert_int_equal(cdb_apply(db, cdb_applied_index(db) + 1, "", 0, 1, &e), FERR_INVALID);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t index = cdb_applied_index(db) + 1;
        size_t len = i == 0 ? 8 : i == 3 ? 5 : i == 6 ? 16 : strlen(bad[i]);
        int rc = cdb_apply(db, index, bad[i], len, 1, &e);
        if (rc != FERR_INVALID)
            fail_msg("bad[%zu]: got %d %s", i, rc, e.msg);
        assert_int_equal(cdb_applied_index(db), index);
    }
    /* Nesting beyond jansson's 2048 levels. */
    char *deep = malloc(2 * 2049 + 16);
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 2048; i++)
        deep[n++] = '[';
    for (int i = 0; i < 2048; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    assert_int_equal(cdb_apply(db, cdb_applied_index(db) + 1, deep, n, 1, &e), FERR_INVALID);
    assert_null(strstr(e.msg, "memory"));
    free(deep);
    /* An index that does not move forward is refused and changes nothing at all. */
    uint64_t index = cdb_applied_index(db);
    assert_int_equal(cdb_apply(db, index, "{}", 2, 1, &e), FERR_STATE);
    assert_int_equal(cdb_applied_index(db), index);
    char *after = state_text(db);
    assert_string_equal(after, before);
    free(after);
    free(before);
    /* An oversized command is refused before it is ever proposed. */
    json_t *cmd = json_pack("{si ss sI ss ss}", "v", 1, "op", "event_add", "time_ms", (json_int_t)1,
                            "type", "x", "message", "m");
    char *big = malloc(CDB_CMD_MAX);
    memset(big, 'a', CDB_CMD_MAX - 1);
    big[CDB_CMD_MAX - 1] = '\0';
    json_object_set_new(cmd, "message", json_string(big));
    char *buf;
    size_t len;
    assert_int_equal(cdb_cmd_encode(cmd, &buf, &len, &e), FERR_INVALID); /* message > 1024 */
    json_object_set_new(cmd, "op", json_string("vm_put"));
    json_object_clear(cmd);
    json_object_set_new(cmd, "v", json_integer(1));
    json_object_set_new(cmd, "op", json_string("vm_put"));
    json_object_set_new(cmd, "name", json_string("big"));
    json_object_set_new(cmd, "spec", json_pack("{ss}", "blob", big));
    assert_int_equal(cdb_cmd_encode(cmd, &buf, &len, &e), FERR_TOOBIG);
    assert_int_equal(cdb_apply(db, cdb_applied_index(db) + 1, big, CDB_CMD_MAX + 1, 1, &e),
                     FERR_TOOBIG);
    free(big);
    json_decref(cmd);
    cdb_free(db);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *db = populated();
    for (int i = 0; i < 30; i++) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd),
                 "{'v':1,'op':'event_add','time_ms':%d,'type':'t.%d',"
                 "'message':'m\\u00e9 %d'}",
                 i, i, i);
        ok(db, cmd);
    }
    char *snap;
    size_t len;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    struct cdb *copy = cdb_new();
    assert_int_equal(cdb_restore(copy, snap, len, 777, &e), 0);
    assert_int_equal(cdb_applied_index(copy), cdb_applied_index(db));
    assert_int_equal(cdb_applied_wall_ms(copy), 777);
    char *a = state_text(db), *b = state_text(copy);
    assert_string_equal(a, b);
    free(a);
    free(b);
    char *snap2;
    size_t len2;
    assert_int_equal(cdb_snapshot(copy, &snap2, &len2, &e), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(snap, snap2, len);
    free(snap2);

    /* The copy goes on exactly like the original: event ids continue. */
    ok(db, "{'v':1,'op':'event_add','time_ms':1,'type':'after'}");
    ok(copy, "{'v':1,'op':'event_add','time_ms':1,'type':'after'}");
    a = state_text(db);
    b = state_text(copy);
    assert_string_equal(a, b);
    free(a);
    free(b);

    /* A restore replaces what was there; padding after the JSON is fine. */
    char *padded = calloc(1, len + 8);
    memcpy(padded, snap, len);
    assert_int_equal(cdb_restore(copy, padded, len + 5, 1, &e), 0);
    assert_int_equal(cdb_applied_index(copy), cdb_applied_index(db) - 1);
    free(padded);
    free(snap);
    cdb_free(copy);
    cdb_free(db);
}

/* Replaces the first occurrence of from with to in s (caller frees the result). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    assert_non_null(p);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    size_t head = (size_t)(p - s);
    memcpy(r, s, head);
    strcpy(r + head, to);
    strcat(r, p + strlen(from));
    return r;
}

static void test_snapshot_refusals(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *db = populated();
    char *snap;
    size_t len;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_non_null(strstr(snap, "\"format\":2"));
    static const struct {
        const char *from, *to, *msg;
    } edits[] = {
        {"\"format\":2", "\"format\":3",
         "snapshot format 3 is not supported (this node reads "
         "formats 1 to 2): upgrade"},
        {"\"format\":2", "\"format\":0", "snapshot format 0 is not supported"},
        {"\"format\":2", "\"format\":\"2\"", "no format"},
        {"\"format\":2", "\"formats\":2", "no format"},
        {"\"admin\":\"active\"", "\"admin\":\"asleep\"", "nodes[0]: admin: \"asleep\" is invalid"},
        {"\"state\":\"up\"", "\"state\":\"paused\"", "nodes[0]: state: \"paused\" is invalid"},
        {",\"admin_reason\":\"\"", "", "nodes[0]: admin_reason: missing"},
        /* A format 2 snapshot does not pass for format 1. */
        {"\"format\":2", "\"format\":1", "nodes[0]: unknown field \"admin\" (format 1 has none)"},
        {"\"name\":\"n2\"", "\"name\":\"n1\"", "nodes[1]: name \"n1\" appears twice"},
        {"\"id\":2", "\"id\":1", "nodes[1]: id 1 appears twice"},
        {"\"owner\":\"n1\"", "\"owner\":\"n5\"", "owner \"n5\" is not a node"},
        {"\"role\":\"voter\"", "\"role\":\"boss\"", "nodes[0]: role"},
        {"\"generation\":1", "\"generation\":0", "vms[0]: generation"},
        {"\"type\":\"vm.started\"", "\"type\":\"VM\"", "events[0]: type"},
        {"\"next_event_id\":2", "\"next_event_id\":1", "events[0]: id 1 is out of order"},
        {"\"vms\":[", "\"x\":1,\"vms\":[", "unknown field \"x\""},
        {"\"index\":5", "\"index\":-5", "index: -5"},
        {"\"meta\":{", "\"meta\":{\"y\":0,", "meta: unknown field"},
        {"{", "[", "not JSON"},
    };
    struct cdb *other = populated();
    ok(other, "{'v':1,'op':'vm_put','name':'x','spec':{}}");
    char *before = state_text(other);
    uint64_t index = cdb_applied_index(other);
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *bad = replace(snap, edits[i].from, edits[i].to);
        int rc = cdb_restore(other, bad, strlen(bad), 1, &e);
        if (rc != FERR_INVALID || !strstr(e.msg, edits[i].msg))
            fail_msg("edit %zu: got %d \"%s\", want \"...%s...\"", i, rc, e.msg, edits[i].msg);
        free(bad);
        char *after = state_text(other);
        assert_string_equal(after, before);
        assert_int_equal(cdb_applied_index(other), index);
        free(after);
    }
    assert_int_equal(cdb_restore(other, "", 0, 1, &e), FERR_INVALID);
    free(before);
    free(snap);
    cdb_free(other);
    cdb_free(db);
}

/* A snapshot as ferry wrote it before admin states were apart (format 1), with a node of each
 * kind: up, paused, down after paused (the admin state in the reason), down, draining. */
#define SNAPSHOT_V1                                                                                \
    "{'format':1,'index':12,'next_event_id':1,'meta':{'id':'c-1','name':'lab','created_ms':5},"    \
    "'nodes':[" V1_NODE(1, "up", "") "," V1_NODE(2, "paused", "drained") "," V1_NODE(              \
        3, "down",                                                                                 \
        "no heartbeat for 5012 ms (was paused)") "," V1_NODE(4, "down",                            \
                                                             "no heartbeat for 6000 "              \
                                                             "ms") "," V1_NODE(5,                  \
                                                                               "draini"            \
                                                                               "ng",               \
                                                                               "drain "            \
                                                                               "reques"            \
                                                                               "ted") "],'vms':[]" \
                                                                                      ",'events':" \
                                                                                      "[]}"
#define V1_NODE(id, state, reason)                                                                 \
    "{'id':" #id ",'name':'n" #id "','api_addr':'10.0.0." #id ":7000','raft_addr':'10.0.0." #id    \
    ":7001','role':'voter','state':'" state "','state_reason':'" reason "',"                       \
    "'state_changed_ms':" #id "00,'memory':{'total_mib':100,'free_mib':50},'vm_count':0,"          \
    "'accel':'kvm','last_heartbeat_ms':9,'cmd_version':1}"

/* Turns single quotes into double quotes (caller frees). */
static char *dq(const char *text)
{
    char *t = strdup(text);
    assert_non_null(t);
    for (char *c = t; *c; c++)
        if (*c == '\'')
            *c = '"';
    return t;
}

static void test_snapshot_format_1(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *db = cdb_new();
    char *text = dq(SNAPSHOT_V1);
    if (cdb_restore(db, text, strlen(text), 3, &e) != 0)
        fail_msg("format 1: %s", e.msg);
    assert_int_equal(cdb_applied_index(db), 12);
    node_is(db, 1, "up", "active", "");
    node_is(db, 2, "up", "paused", "drained");
    node_is(db, 3, "down", "paused", "");
    node_is(db, 4, "down", "active", "");
    node_is(db, 5, "up", "draining", "drain requested");
    json_t *n = NULL;
    assert_int_equal(cdb_node_get(db, 2, &n, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(n, "admin_changed_ms")), 200);
    assert_string_equal(json_string_value(json_object_get(n, "state_reason")), "drained");
    json_decref(n);
    assert_int_equal(cdb_node_get(db, 3, &n, &e), 0);
    assert_string_equal(json_string_value(json_object_get(n, "state_reason")),
                        "no heartbeat for 5012 ms (was paused)");
    json_decref(n);

    /* Written again it is format 2, and reads back the same. */
    char *snap;
    size_t len;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_non_null(strstr(snap, "\"format\":2"));
    struct cdb *copy = cdb_new();
    assert_int_equal(cdb_restore(copy, snap, len, 3, &e), 0);
    char *a = state_text(db), *b = state_text(copy);
    assert_string_equal(a, b);
    free(a);
    free(b);
    free(snap);

    /* A node that comes back from a format 1 snapshot goes on as in version 2. */
    ok(db, "{'v':2,'op':'node_state','id':3,'state':'up','reason':'heartbeats again',"
           "'time_ms':500}");
    node_is(db, 3, "up", "paused", "");

    /* Bad format 1 records are refused with the record named; nothing changes. */
    static const struct {
        const char *from, *to, *msg;
    } edits[] = {
        {"'state':'paused'", "'state':'sleepy'",
         "nodes[1]: state: \"sleepy\" is invalid: use up, down, paused or draining"},
        {"'state':'paused'", "'state':'paused','admin':'paused'",
         "nodes[1]: unknown field \"admin\" (format 1 has none)"},
        {"'state_reason':'drained'", "'state_reasons':'drained'",
         "nodes[1]: state_reason: missing"},
        {"'state_changed_ms':200", "'state_changed_ms':-1", "nodes[1]: state_changed_ms"},
        {"'role':'voter'", "'role':'boss'", "nodes[0]: role"},
        {V1_NODE(1, "up", ""), "7", "nodes[0]: expected an object, not an integer"},
    };
    char *before = state_text(copy);
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *edited = replace(SNAPSHOT_V1, edits[i].from, edits[i].to);
        char *bad = dq(edited);
        free(edited);
        int rc = cdb_restore(copy, bad, strlen(bad), 1, &e);
        if (rc != FERR_INVALID || !strstr(e.msg, edits[i].msg))
            fail_msg("edit %zu: got %d \"%s\", want \"...%s...\"", i, rc, e.msg, edits[i].msg);
        free(bad);
        char *after = state_text(copy);
        assert_string_equal(after, before);
        free(after);
    }
    free(before);
    free(text);
    cdb_free(copy);
    cdb_free(db);
}

/* Builds a JSON object text of exactly n bytes (n >= 2): {} or {"a":"xxx"} or {"aaa":1}. */
static void json_of_len(char *buf, size_t n)
{
    if (n < 8) {
        /* {} then {"":0}-like shapes are not all possible below 8; use spaces inside. */
        buf[0] = '{';
        memset(buf + 1, ' ', n - 2);
        buf[n - 1] = '}';
    } else {
        size_t fill = n - 8; /* {"a":""} is 8 bytes */
        memcpy(buf, "{\"a\":\"", 6);
        memset(buf + 6, 'x', fill);
        memcpy(buf + 6 + fill, "\"}", 2);
    }
    buf[n] = '\0';
}

/* Entries of every length 1..64 pad to a multiple of 8 and decode to what went in, also
 * when several padded entries share one buffer, as they do in one Raft message. */
static void test_padding(void **state)
{
    (void)state;
    struct ferr e;
    char text[80];
    for (size_t n = 1; n <= 64; n++) {
        char buf[80] = {0};
        size_t padded = (n + 7) & ~(size_t)7;
        json_t *j = NULL;
        if (n == 1) {
            assert_int_equal(cdb_cmd_decode("{\0\0\0\0\0\0\0", 8, &j, &e), FERR_INVALID);
            continue;
        }
        json_of_len(text, n);
        memcpy(buf, text, n);
        assert_int_equal(cdb_cmd_decode(buf, padded, &j, &e), 0);
        json_t *want = json_loads(text, 0, NULL);
        assert_non_null(want);
        assert_true(json_equal(j, want));
        json_decref(j);
        /* Space padding is stripped the same way. */
        memset(buf + n, ' ', padded - n);
        assert_int_equal(cdb_cmd_decode(buf, padded, &j, &e), 0);
        assert_true(json_equal(j, want));
        json_decref(j);
        json_decref(want);
    }

    /* Real commands whose JSON has every length modulo 8, applied from one shared buffer. */
    struct cdb *db = cdb_new();
    char *batch = NULL;
    size_t batch_len = 0, count = 0, lens[64];
    for (size_t m = 0; m < 64; m++) {
        char msg[80];
        memset(msg, 'm', m);
        msg[m] = '\0';
        json_t *cmd = json_pack("{si ss sI ss ss}", "v", 1, "op", "event_add", "time_ms",
                                (json_int_t)m, "type", "pad", "message", msg);
        char *buf;
        size_t len;
        assert_int_equal(cdb_cmd_encode(cmd, &buf, &len, &e), 0);
        size_t raw = json_dumpb(cmd, NULL, 0, JSON_COMPACT);
        assert_int_equal(len % 8, 0);
        assert_true(len >= raw && len - raw < 8);
        batch = realloc(batch, batch_len + len);
        memcpy(batch + batch_len, buf, len);
        lens[count++] = len;
        batch_len += len;
        free(buf);
        json_decref(cmd);
    }
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(off % 8, 0);
        assert_int_equal(cdb_apply(db, i + 1, batch + off, lens[i], 1, &e), 0);
        off += lens[i];
    }
    json_t *evs = cdb_events(db, 0, 0);
    assert_int_equal(json_array_size(evs), 64);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(
            strlen(json_string_value(json_object_get(json_array_get(evs, i), "message"))), i);
    json_decref(evs);
    free(batch);
    cdb_free(db);
}

static void test_events_ring(void **state)
{
    (void)state;
    struct cdb *db = cdb_new();
    for (int i = 1; i <= CDB_EVENTS_MAX + 5; i++) {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "{'v':1,'op':'event_add','time_ms':%d,'type':'tick'}", i);
        ok(db, cmd);
    }
    json_t *all = cdb_events(db, 0, 0);
    assert_int_equal(json_array_size(all), CDB_EVENTS_MAX);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 0), "id")), 6);
    json_decref(all);
    json_t *some = cdb_events(db, 1000, 3);
    assert_int_equal(json_array_size(some), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(some, 0), "id")), 1001);
    json_decref(some);
    json_t *none = cdb_events(db, 5000, 0);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    /* The ring survives a snapshot. */
    struct ferr e;
    char *snap;
    size_t len;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    struct cdb *copy = cdb_new();
    assert_int_equal(cdb_restore(copy, snap, len, 1, &e), 0);
    ok(copy, "{'v':1,'op':'event_add','time_ms':1,'type':'tick'}");
    all = cdb_events(copy, 1004, 0);
    assert_int_equal(json_array_size(all), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 1), "id")), 1006);
    json_decref(all);
    free(snap);
    cdb_free(copy);
    cdb_free(db);
}

/* ---- migration_measure: a client-observed gap joins a migration's record ---- */

#define MIG_EVENT                                                                                  \
    "{'v':1,'op':'event_add','time_ms':50,'type':'vm.migration','node':'n1','vm':'web1',"          \
    "'message':'{\\'vm\\':\\'web1\\',\\'from\\':\\'n1\\',\\'to\\':\\'n2\\',\\'status\\':"          \
    "\\'completed\\',\\'total_ms\\':900,\\'downtime_ms\\':5,\\'client_gap_ms\\':null,"             \
    "\\'error\\':null}'}"

/* The record (the parsed message) of event id; caller decrefs. */
static json_t *record_of(const struct cdb *db, json_int_t id)
{
    json_t *evs = cdb_events(db, (uint64_t)id - 1, 1);
    json_t *ev = json_array_get(evs, 0);
    assert_non_null(ev);
    assert_int_equal(json_integer_value(json_object_get(ev, "id")), id);
    json_t *rec = json_loads(json_string_value(json_object_get(ev, "message")), 0, NULL);
    assert_true(json_is_object(rec));
    json_decref(evs);
    return rec;
}

/* Applies text, expects code, that the message has want in it, and that nothing but the
 * applied index changed. */
static void refused(struct cdb *db, const char *text, int code, const char *want)
{
    struct ferr e;
    char *before = state_text(db);
    uint64_t index = cdb_applied_index(db);
    int rc = run(db, text, &e);
    if (rc != code)
        fail_msg("%s: expected %d, got %d (%s)", text, code, rc, rc ? e.msg : "");
    if (!strstr(e.msg, want))
        fail_msg("%s: message \"%s\" lacks \"%s\"", text, e.msg, want);
    assert_int_equal(cdb_applied_index(db), index + 1);
    char *after = state_text(db);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static const char *const measure_log[] = {
    MIG_EVENT, /* event 2 (the populated database has event 1, a vm.started) */
    "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':64.123,'source':'lab-probe'}",
    "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':70,'source':'lab-probe'}",
    "{'v':1,'op':'migration_measure','id':9,'client_gap_ms':1,'source':'x'}",
    "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':71.04,'source':'manual',"
    "'replace':true}",
};

static void test_migration_measure(void **state)
{
    (void)state;
    struct cdb *db = populated();
    ok(db, MIG_EVENT);
    json_t *rec = record_of(db, 2);
    assert_true(json_is_null(json_object_get(rec, "client_gap_ms")));
    json_decref(rec);

    /* Bad input: refused by every node alike, nothing changes. */
    refused(db, "{'v':1,'op':'migration_measure','id':99,'client_gap_ms':5,'source':'lab-probe'}",
            FERR_NOTFOUND, "no migration 99");
    refused(db, "{'v':1,'op':'migration_measure','id':1,'client_gap_ms':5,'source':'lab-probe'}",
            FERR_NOTFOUND, "no migration 1");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':-1,'source':'lab-probe'}",
            FERR_INVALID, "client_gap_ms: -1 is out of range 0..3600000");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':-0.5,'source':'lab-probe'}",
            FERR_INVALID, "out of range");
    refused(db,
            "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':3600001,'source':'lab-probe'}",
            FERR_INVALID, "out of range");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':'5','source':'lab-probe'}",
            FERR_INVALID, "client_gap_ms: expected a number, not a string");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'source':'lab-probe'}", FERR_INVALID,
            "client_gap_ms: missing");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':5}", FERR_INVALID,
            "source: missing");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':5,'source':'Lab Probe'}",
            FERR_INVALID, "source: \"Lab Probe\" is invalid");
    refused(db,
            "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':5,'source':'p','replace':1}",
            FERR_INVALID, "replace: expected a boolean");
    refused(db, "{'v':1,'op':'migration_measure','id':0,'client_gap_ms':5,'source':'p'}",
            FERR_INVALID, "id: 0 is out of range");
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':5,'source':'p','x':1}",
            FERR_INVALID, "unknown field \"x\"");

    /* The first measurement: 0.1 ms, the source, the event's id and time kept. */
    ok(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':64.123,'source':'lab-probe'}");
    rec = record_of(db, 2);
    assert_true(json_is_real(json_object_get(rec, "client_gap_ms")));
    assert_true(json_real_value(json_object_get(rec, "client_gap_ms")) == 64.1);
    assert_string_equal(json_string_value(json_object_get(rec, "client_gap_source")), "lab-probe");
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "completed");
    assert_int_equal(json_integer_value(json_object_get(rec, "downtime_ms")), 5);
    json_decref(rec);
    json_t *evs = cdb_events(db, 1, 1);
    json_t *ev = json_array_get(evs, 0);
    assert_int_equal(json_integer_value(json_object_get(ev, "time_ms")), 50);
    assert_non_null(
        strstr(json_string_value(json_object_get(ev, "message")), "\"client_gap_ms\":64.1,"));
    assert_non_null(strstr(json_string_value(json_object_get(ev, "message")),
                           "\"client_gap_source\":\"lab-probe\"}"));
    json_decref(evs);

    /* Once set, it stays unless replaced on purpose. */
    refused(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':70,'source':'lab-probe'}",
            FERR_EXISTS, "already has a client gap of 64.1 ms (source lab-probe)");
    refused(db,
            "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':70,'source':'lab-probe',"
            "'replace':false}",
            FERR_EXISTS, "needs force");
    ok(db, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':0,'source':'manual',"
           "'replace':true}");
    rec = record_of(db, 2);
    assert_true(json_real_value(json_object_get(rec, "client_gap_ms")) == 0.0);
    assert_string_equal(json_string_value(json_object_get(rec, "client_gap_source")), "manual");
    json_decref(rec);

    /* A vm.migration event whose message is not a record, and one too long to grow. */
    ok(db, "{'v':1,'op':'event_add','time_ms':60,'type':'vm.migration','message':'oops'}");
    refused(db, "{'v':1,'op':'migration_measure','id':3,'client_gap_ms':5,'source':'p'}",
            FERR_STATE, "no readable record");
    char big[1200];
    int n = snprintf(big, sizeof(big),
                     "{'v':1,'op':'event_add','time_ms':61,'type':'vm.migration','message':'{"
                     "\\'status\\':\\'failed\\',\\'error\\':\\'");
    while (n < 1000 + 80)
        big[n++] = 'x';
    snprintf(big + n, sizeof(big) - (size_t)n, "\\'}'}");
    ok(db, big);
    refused(db, "{'v':1,'op':'migration_measure','id':4,'client_gap_ms':5,'source':'p'}",
            FERR_LIMIT, "over 1024 bytes");
    cdb_free(db);
}

/* The same log (refusals included) gives the same state on every node, and a snapshot keeps
 * the measurement and its refusal of a second one. */
static void test_migration_measure_replay(void **state)
{
    (void)state;
    struct cdb *a = populated(), *b = populated();
    struct ferr e;
    for (size_t i = 0; i < sizeof(measure_log) / sizeof(measure_log[0]); i++) {
        int ra = run(a, measure_log[i], &e);
        int rb = run(b, measure_log[i], &e);
        assert_int_equal(ra, rb);
    }
    char *sa, *sb;
    size_t la, lb;
    assert_int_equal(cdb_snapshot(a, &sa, &la, &e), 0);
    assert_int_equal(cdb_snapshot(b, &sb, &lb, &e), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(sa, sb, la);
    json_t *rec = record_of(a, 2);
    assert_true(json_real_value(json_object_get(rec, "client_gap_ms")) == 71.0);
    assert_string_equal(json_string_value(json_object_get(rec, "client_gap_source")), "manual");
    json_decref(rec);

    struct cdb *c = cdb_new();
    assert_int_equal(cdb_restore(c, sa, la, 1, &e), 0);
    rec = record_of(c, 2);
    assert_true(json_real_value(json_object_get(rec, "client_gap_ms")) == 71.0);
    json_decref(rec);
    refused(c, "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':3,'source':'p'}",
            FERR_EXISTS, "already has a client gap of 71 ms (source manual)");
    free(sa);
    free(sb);
    cdb_free(a);
    cdb_free(b);
    cdb_free(c);
}

/* ---- allocation failures: a failed apply is -ENOMEM and changes nothing ---- */

static long alloc_budget = -1; /* allocations left before failing; -1: never fail */

static void *counting_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    static const char *const cmds[] = {
        "{'v':1,'op':'cluster_meta','id':'c-1','name':'lab','created_ms':5}",
        NODE1,
        "{'v':1,'op':'node_upsert','id':1,'vm_count':4}",
        "{'v':1,'op':'node_state','id':1,'state':'down','time_ms':9}",
        "{'v':1,'op':'node_state','id':1,'state':'paused','reason':'x','time_ms':10}",
        "{'v':2,'op':'node_state','id':1,'state':'down','reason':'y','time_ms':11}",
        "{'v':2,'op':'node_admin','id':1,'admin':'draining','reason':'z','time_ms':12}",
        "{'v':1,'op':'vm_put','name':'a','spec':{'k':[1,2,{'z':null}]},'owner':'n1'}",
        "{'v':1,'op':'vm_owner','name':'a','owner':''}",
        "{'v':1,'op':'vm_state','name':'a','state':'running'}",
        "{'v':5,'op':'vm_epoch','name':'a','epoch':3,'expect_epoch':0}",
        "{'v':1,'op':'event_add','time_ms':1,'type':'x','message':'hello'}",
        "{'v':1,'op':'event_add','time_ms':2,'type':'vm.migration','message':'{\\'status\\':"
        "\\'completed\\',\\'client_gap_ms\\':null}'}",
        "{'v':1,'op':'migration_measure','id':2,'client_gap_ms':12.5,'source':'lab-probe'}",
        "{'v':1,'op':'vm_remove','name':'a'}",
        "{'v':1,'op':'node_remove','id':1}",
    };
    json_set_alloc_funcs(counting_malloc, free);
    struct cdb *db = cdb_new();
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        json_t *cmd = sq(cmds[i]);
        char *buf;
        size_t len;
        struct ferr e;
        assert_int_equal(cdb_cmd_encode(cmd, &buf, &len, &e), 0);
        json_decref(cmd);
        char *before = state_text(db);
        uint64_t index = cdb_applied_index(db) + 1;
        int rc;
        long budget = 0;
        do {
            alloc_budget = budget++;
            rc = cdb_apply(db, index, buf, len, 1, &e);
            alloc_budget = -1;
            if (rc == -ENOMEM) {
                assert_int_equal(cdb_applied_index(db), index - 1);
                char *after = state_text(db);
                assert_string_equal(after, before);
                free(after);
            }
        } while (rc == -ENOMEM);
        if (rc != 0)
            fail_msg("%s: %s", cmds[i], e.msg);
        assert_true(budget > 1);
        free(before);
        free(buf);
    }
    cdb_free(db);
    json_set_alloc_funcs(malloc, free);
}

/* Two databases fed the same entries end in the same bytes. */
static void test_determinism(void **state)
{
    (void)state;
    struct cdb *a = populated(), *b = populated();
    struct ferr e;
    run(a, "{'v':1,'op':'vm_owner','name':'web1','owner':'n2','expect_owner':'n9'}", &e);
    run(b, "{'v':1,'op':'vm_owner','name':'web1','owner':'n2','expect_owner':'n9'}", &e);
    char *sa, *sb;
    size_t la, lb;
    assert_int_equal(cdb_snapshot(a, &sa, &la, &e), 0);
    assert_int_equal(cdb_snapshot(b, &sb, &lb, &e), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(sa, sb, la);
    free(sa);
    free(sb);
    cdb_free(a);
    cdb_free(b);
}

/* Version 4's event uid: the same event sent twice (its first answer lost) is kept once. */
static void test_event_uid(void **state)
{
    (void)state;
    struct cdb *db = cdb_new();
    ok(db, "{'v':4,'op':'event_add','time_ms':5,'type':'vm.migration','vm':'web1',"
           "'message':'one','uid':'2-19a-1'}");
    ok(db, "{'v':4,'op':'event_add','time_ms':5,'type':'vm.migration','vm':'web1',"
           "'message':'one','uid':'2-19a-1'}");
    ok(db, "{'v':4,'op':'event_add','time_ms':6,'type':'vm.migration','vm':'web1',"
           "'message':'two','uid':'2-19a-2'}");
    ok(db, "{'v':4,'op':'event_add','time_ms':7,'type':'node.down','message':'no uid'}");
    ok(db, "{'v':3,'op':'event_add','time_ms':8,'type':'node.down','message':'no uid'}");
    json_t *evs = cdb_events(db, 0, 0);
    assert_int_equal(json_array_size(evs), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 0), "message")),
                        "one");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 0), "uid")),
                        "2-19a-1");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1), "id")), 2);
    assert_null(json_object_get(json_array_get(evs, 2), "uid"));
    json_decref(evs);
    /* before version 4 there is no uid; a uid is a token */
    refused(db, "{'v':3,'op':'event_add','time_ms':5,'type':'x','uid':'a'}", FERR_INVALID,
            "unknown field \"uid\"");
    refused(db, "{'v':4,'op':'event_add','time_ms':5,'type':'x','uid':'A b'}", FERR_INVALID, "uid");
    refused(db, "{'v':4,'op':'event_add','time_ms':5,'type':'x','uid':''}", FERR_INVALID, "uid");
    /* the uids survive a snapshot: a replica restored from it skips the same event again */
    char *snap = NULL;
    size_t len = 0;
    struct ferr e;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    struct cdb *db2 = cdb_new();
    assert_int_equal(cdb_restore(db2, snap, len, cdb_applied_index(db), &e), 0);
    free(snap);
    ok(db2, "{'v':4,'op':'event_add','time_ms':6,'type':'vm.migration','vm':'web1',"
            "'message':'two','uid':'2-19a-2'}");
    evs = cdb_events(db2, 0, 0);
    assert_int_equal(json_array_size(evs), 4);
    json_decref(evs);
    /* the builder writes version 4 only with a uid */
    json_t *cmd = cdb_cmd_event_add_uid(9, "vm.migration", "n1", "web1", "m", "1-2-3");
    assert_int_equal(json_integer_value(json_object_get(cmd, "v")), 4);
    assert_string_equal(json_string_value(json_object_get(cmd, "uid")), "1-2-3");
    json_decref(cmd);
    cmd = cdb_cmd_event_add_uid(9, "vm.migration", "n1", "web1", "m", NULL);
    assert_int_equal(json_integer_value(json_object_get(cmd, "v")), 1);
    assert_null(json_object_get(cmd, "uid"));
    json_decref(cmd);
    cdb_free(db2);
    cdb_free(db);
}

/* Version 4's cluster shared volumes: add, compare-and-set coordinator moves, what is
 * refused, removal while VMs use them, node removal while coordinating, snapshots. */
static void test_csv_volumes(void **state)
{
    (void)state;
    struct cdb *db = populated();
    struct ferr e;
#define CSV1                                                                                       \
    "{'v':4,'op':'csv_put','name':'csv1','path':'/srv/csv1','id':'a1b2','coordinator':'n1',"       \
    "'epoch':1,'time_ms':100,'expect_epoch':0}"
    ok(db, CSV1);
    json_t *v = NULL;
    assert_int_equal(cdb_csv_get(db, "csv1", &v, &e), 0);
    assert_string_equal(json_string_value(json_object_get(v, "coordinator")), "n1");
    assert_int_equal(json_integer_value(json_object_get(v, "epoch")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "created_ms")), 100);
    json_decref(v);
    /* added twice: the compare-and-set says so; overlapping paths and a reused id too */
    refused(db, CSV1, FERR_STATE, "is at epoch 1, not 0");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv2','path':'/srv/csv1/sub','id':'c3','coordinator':"
            "'n1','epoch':1,'time_ms':1}",
            FERR_EXISTS, "overlaps volume \"csv1\"");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv2','path':'/srv','id':'c3','coordinator':'n1',"
            "'epoch':1,'time_ms':1}",
            FERR_EXISTS, "overlaps");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv2','path':'/srv/csv2','id':'a1b2','coordinator':"
            "'n1','epoch':1,'time_ms':1}",
            FERR_EXISTS, "is volume \"csv1\"'s");
    ok(db, "{'v':4,'op':'csv_put','name':'csv2','path':'/srv/csv10','id':'c3','coordinator':'n2',"
           "'epoch':1,'time_ms':1}"); /* a prefix that is not a parent does not overlap */
    /* which volume holds a file: by whole path components, never the volume itself */
    const char *holds[][2] = {{"/srv/csv1/web1.vhd", "csv1"},
                              {"/srv/csv10/a/b.vhd", "csv2"},
                              {"/srv/csv1", NULL},
                              {"/srv/csv100/x.vhd", NULL},
                              {"/elsewhere/x.vhd", NULL}};
    for (size_t i = 0; i < sizeof(holds) / sizeof(holds[0]); i++) {
        json_t *h = cdb_csv_holding(db, holds[i][0]);
        if (holds[i][1])
            assert_string_equal(json_string_value(json_object_get(h, "name")), holds[i][1]);
        else
            assert_null(h);
        json_decref(h);
    }
    /* bad paths, ids, coordinators, epochs */
    const char *bad_paths[] = {"srv/x",    "/",         "/srv/",    "/srv//x",
                               "/srv/./x", "/srv/../x", "/srv/a b", "/srv/a\\\\b"};
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd),
                 "{'v':4,'op':'csv_put','name':'x','path':'%s','id':'q',"
                 "'coordinator':'n1','epoch':1,'time_ms':1}",
                 bad_paths[i]);
        refused(db, cmd, FERR_INVALID, "path");
    }
    refused(db,
            "{'v':4,'op':'csv_put','name':'x','path':'/x','id':'Q!','coordinator':'n1',"
            "'epoch':1,'time_ms':1}",
            FERR_INVALID, "id");
    refused(db,
            "{'v':4,'op':'csv_put','name':'x','path':'/x','id':'q','coordinator':'n9',"
            "'epoch':1,'time_ms':1}",
            FERR_NOTFOUND, "no node named \"n9\"");
    refused(db,
            "{'v':4,'op':'csv_put','name':'x','path':'/x','id':'q','coordinator':'n1',"
            "'epoch':2,'time_ms':1}",
            FERR_INVALID, "starts at epoch 1");
    refused(db,
            "{'v':3,'op':'csv_put','name':'x','path':'/x','id':'q','coordinator':'n1',"
            "'epoch':1,'time_ms':1}",
            FERR_INVALID, "new in version 4");
    /* a coordinator move: compare-and-set on the epoch, which only grows */
    ok(db, "{'v':4,'op':'csv_put','name':'csv1','path':'/srv/csv1','id':'a1b2','coordinator':'n2',"
           "'epoch':2,'time_ms':200,'expect_epoch':1}");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv1','path':'/srv/csv1','id':'a1b2','coordinator':"
            "'n1','epoch':3,'time_ms':300,'expect_epoch':1}",
            FERR_STATE, "at epoch 2, not 1");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv1','path':'/srv/csv1','id':'a1b2','coordinator':"
            "'n1','epoch':2,'time_ms':300}",
            FERR_STATE, "not above 2");
    refused(db,
            "{'v':4,'op':'csv_put','name':'csv1','path':'/srv/other','id':'a1b2','coordinator':"
            "'n1','epoch':3,'time_ms':300}",
            FERR_INVALID, "never change");
    assert_int_equal(cdb_csv_get(db, "csv1", &v, &e), 0);
    assert_string_equal(json_string_value(json_object_get(v, "coordinator")), "n2");
    assert_int_equal(json_integer_value(json_object_get(v, "coordinator_since_ms")), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "created_ms")), 100);
    json_decref(v);
    /* n2 coordinates: it cannot leave the cluster until the volumes move */
    refused(db, "{'v':1,'op':'node_remove','id':2}", FERR_STATE, "coordinates volume");
    /* a VM with a disk on the volume keeps it; without, it goes */
    ok(db, "{'v':1,'op':'vm_put','name':'db1','spec':{'name':'db1','disks':[{'path':"
           "'/srv/csv1/db1.vhd'}]},'owner':'n1'}");
    ok(db, "{'v':1,'op':'vm_put','name':'k1','spec':{'name':'k1','boot':{'kernel':"
           "'/srv/csv1/vmlinuz'}},'owner':'n1'}");
    refused(db, "{'v':4,'op':'csv_remove','name':'csv1'}", FERR_STATE, "in use by 2 VMs (db1, k1)");
    /* the snapshot keeps the volumes */
    char *snap = NULL;
    size_t len = 0;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    struct cdb *copy = cdb_new();
    assert_int_equal(cdb_restore(copy, snap, len, 1, &e), 0);
    free(snap);
    json_t *a = cdb_csvs(db), *b = cdb_csvs(copy);
    assert_int_equal(json_array_size(a), 2);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    cdb_free(copy);
    ok(db, "{'v':1,'op':'vm_remove','name':'db1'}");
    ok(db, "{'v':1,'op':'vm_remove','name':'k1'}");
    ok(db, "{'v':4,'op':'csv_remove','name':'csv1'}");
    refused(db, "{'v':4,'op':'csv_remove','name':'csv1'}", FERR_NOTFOUND, "no volume");
    assert_int_equal(cdb_csv_get(db, "csv1", &v, &e), FERR_NOTFOUND);
    ok(db, "{'v':4,'op':'csv_remove','name':'csv2'}");
    ok(db, "{'v':1,'op':'node_remove','id':2}");
    /* no volumes: the snapshot has no "csvs" (a version 3 reader reads it) */
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_null(strstr(snap, "csvs"));
    free(snap);
    /* the builders */
    json_t *cmd = cdb_cmd_csv_put("v1", "/a", "id1", "n1", 1, 5, 0);
    assert_int_equal(cdb_cmd_check(cmd, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(cmd, "expect_epoch")), 0);
    json_decref(cmd);
    cmd = cdb_cmd_csv_put("v1", "/a", "id1", "n1", 2, 5, -1);
    assert_null(json_object_get(cmd, "expect_epoch"));
    json_decref(cmd);
    cmd = cdb_cmd_csv_remove("v1");
    assert_int_equal(cdb_cmd_check(cmd, &e), 0);
    json_decref(cmd);
    cdb_free(db);
#undef CSV1
}

/* The record of VM name (caller decrefs). */
static json_t *vm_rec(const struct cdb *db, const char *name)
{
    struct ferr e;
    json_t *v = NULL;
    if (cdb_vm_get(db, name, &v, &e) != 0)
        fail_msg("%s", e.msg);
    return v;
}

/* Version 5's writer epoch of a VM: it only rises, compare-and-set, other ops keep it. */
static void test_vm_epoch(void **state)
{
    (void)state;
    struct cdb *db = populated();
    /* none yet: no field, epoch 0; no VM: 0 too */
    json_t *v = vm_rec(db, "web1");
    assert_null(json_object_get(v, "epoch"));
    json_decref(v);
    assert_int_equal(cdb_vm_epoch(db, "web1"), 0);
    assert_int_equal(cdb_vm_epoch(db, "web9"), 0);
    assert_int_equal(cdb_vm_epoch(db, NULL), 0);

    ok(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':1,'expect_epoch':0}");
    v = vm_rec(db, "web1");
    assert_int_equal(json_integer_value(json_object_get(v, "epoch")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "generation")), 2);
    json_decref(v);
    assert_int_equal(cdb_vm_epoch(db, "web1"), 1);
    ok(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':5}"); /* any higher one */
    assert_int_equal(cdb_vm_epoch(db, "web1"), 5);

    /* the other ops on the VM keep it */
    ok(db, "{'v':1,'op':'vm_put','name':'web1','spec':{'name':'web1','memory_mib':512},"
           "'owner':'n2','state':'stopped','reason':'resized'}");
    assert_int_equal(cdb_vm_epoch(db, "web1"), 5);
    ok(db, "{'v':5,'op':'vm_put','name':'web1','spec':{'memory_mib':1024}}");
    assert_int_equal(cdb_vm_epoch(db, "web1"), 5);
    ok(db, "{'v':1,'op':'vm_owner','name':'web1','owner':'n1','expect_owner':'n2'}");
    assert_int_equal(cdb_vm_epoch(db, "web1"), 5);
    ok(db, "{'v':1,'op':'vm_state','name':'web1','state':'running'}");
    ok(db, "{'v':5,'op':'vm_state','name':'web1','state':'running','runtime':{'pid':9}}");
    ok(db, "{'v':5,'op':'vm_state','name':'web1','state':'stopped'}");
    v = vm_rec(db, "web1");
    assert_int_equal(json_integer_value(json_object_get(v, "epoch")), 5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "spec"), "memory_mib")),
                     1024);
    json_decref(v);

    /* refused: lower or equal, a compare-and-set that does not hold, no VM, other versions */
    refused(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':5}", FERR_STATE,
            "vm_epoch: a VM's writer epoch only rises: VM \"web1\" is at epoch 5, and 5 is "
            "not above it");
    refused(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':4}", FERR_STATE, "only rises");
    refused(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':6,'expect_epoch':4}", FERR_STATE,
            "VM \"web1\" is at epoch 5, not 4");
    refused(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':6,'expect_epoch':0}", FERR_STATE,
            "is at epoch 5, not 0");
    refused(db, "{'v':5,'op':'vm_epoch','name':'web9','epoch':6}", FERR_NOTFOUND,
            "no VM named \"web9\"");
    refused(db, "{'v':4,'op':'vm_epoch','name':'web1','epoch':6}", FERR_INVALID,
            "op vm_epoch is not in command version 4 (it is new in version 5)");
    refused(db, "{'v':1,'op':'vm_epoch','name':'web1','epoch':6}", FERR_INVALID,
            "new in version 5");
    /* bad fields, each named with what is expected */
    static const struct {
        const char *cmd, *msg;
    } bad[] = {
        {"{'v':5,'op':'vm_epoch','epoch':6}", "vm_epoch: name: missing"},
        {"{'v':5,'op':'vm_epoch','name':'Web1','epoch':6}", "vm_epoch: name: \"Web1\" is invalid"},
        {"{'v':5,'op':'vm_epoch','name':7,'epoch':6}", "name: expected a string"},
        {"{'v':5,'op':'vm_epoch','name':'web1'}", "vm_epoch: epoch: missing"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':0}", "epoch: 0 is out of range"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':-1}", "epoch: -1 is out of range"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':9007199254740992}", "out of range"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':'6'}",
         "epoch: expected an integer, not a string"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':6.5}", "epoch: expected an integer"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':6,'expect_epoch':-1}",
         "expect_epoch: -1 is out of range"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':6,'expect_epoch':null}",
         "expect_epoch: expected an integer"},
        {"{'v':5,'op':'vm_epoch','name':'web1','epoch':6,'owner':'n1'}",
         "vm_epoch: unknown field \"owner\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(db, bad[i].cmd, FERR_INVALID, bad[i].msg);
    /* the largest epoch there is */
    ok(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':9007199254740991,'expect_epoch':5}");
    assert_int_equal(cdb_vm_epoch(db, "web1"), CDB_ID_MAX);
    refused(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':9007199254740991}", FERR_STATE,
            "only rises");

    /* a removed VM has no epoch; a new one by that name starts without one */
    ok(db, "{'v':1,'op':'vm_put','name':'tmp','spec':{}}");
    ok(db, "{'v':5,'op':'vm_epoch','name':'tmp','epoch':2}");
    ok(db, "{'v':1,'op':'vm_remove','name':'tmp'}");
    assert_int_equal(cdb_vm_epoch(db, "tmp"), 0);
    ok(db, "{'v':1,'op':'vm_put','name':'tmp','spec':{}}");
    assert_int_equal(cdb_vm_epoch(db, "tmp"), 0);
    cdb_free(db);
}

/* Version 6: a failover gives a VM to another node in one compare-and-set step, with its
 * record; only a VM's owner raises its epoch. */
static void test_vm_failover(void **state)
{
    (void)state;
    struct cdb *db = populated();
    ok(db, "{'v':5,'op':'vm_state','name':'web1','state':'running','runtime':{'pid':9}}");
    ok(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':3}");
    json_t *cmd = cdb_cmd_vm_failover("web1", "recovering", "n1 is down",
                                      &(struct cdb_failover){.from = "n1",
                                                             .to = "n2",
                                                             .why = "no heartbeat for 5000 ms",
                                                             .down_ms = 100,
                                                             .stale_ms = 200,
                                                             .decided_ms = 300});
    assert_non_null(cmd);
    struct ferr e;
    assert_int_equal(cdb_apply_cmd(db, cdb_applied_index(db) + 1, cmd, 1, &e), 0);
    json_decref(cmd);
    json_t *v = vm_rec(db, "web1");
    assert_string_equal(json_string_value(json_object_get(v, "owner")), "n2");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "recovering");
    assert_string_equal(json_string_value(json_object_get(v, "reason")), "n1 is down");
    assert_null(json_object_get(v, "runtime")); /* nothing runs on n2 yet */
    assert_int_equal(json_integer_value(json_object_get(v, "epoch")), 3); /* kept */
    json_t *fo = json_object_get(v, "failover");
    assert_string_equal(json_string_value(json_object_get(fo, "from")), "n1");
    assert_string_equal(json_string_value(json_object_get(fo, "to")), "n2");
    assert_int_equal(json_integer_value(json_object_get(fo, "stale_ms")), 200);
    json_decref(v);

    /* a second failover from n1 (a leader that did not see the first) loses the race */
    refused(db,
            "{'v':6,'op':'vm_failover','name':'web1','owner':'n1','expect_owner':'n1',"
            "'state':'recovering','failover':{'from':'n1','to':'n1'}}",
            FERR_STATE, "VM \"web1\" is owned by \"n2\", not \"n1\"");
    /* the old owner cannot raise the epoch any more; the new one can */
    refused(db, "{'v':6,'op':'vm_epoch','name':'web1','epoch':4,'expect_epoch':3,'owner':'n1'}",
            FERR_STATE, "owned by \"n2\", not \"n1\": only its owner raises its writer epoch");
    ok(db, "{'v':6,'op':'vm_epoch','name':'web1','epoch':4,'expect_epoch':3,'owner':'n2'}");
    assert_int_equal(cdb_vm_epoch(db, "web1"), 4);

    /* the record survives a snapshot */
    struct cdb *db2 = restored(db);
    v = vm_rec(db2, "web1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "failover"), "why")),
                        "no heartbeat for 5000 ms");
    json_decref(v);
    cdb_free(db2);

    static const struct {
        const char *cmd, *msg;
        int code;
    } bad[] = {
        {"{'v':5,'op':'vm_failover','name':'web1','owner':'n1','expect_owner':'n2',"
         "'state':'recovering','failover':{'from':'n2','to':'n1'}}",
         "op vm_failover is not in command version 5 (it is new in version 6)", FERR_INVALID},
        {"{'v':6,'op':'vm_failover','name':'web1','owner':'n1','state':'recovering',"
         "'failover':{'from':'n2','to':'n1'}}",
         "expect_owner: missing", FERR_INVALID},
        {"{'v':6,'op':'vm_failover','name':'web1','owner':'n1','expect_owner':'n2',"
         "'state':'recovering'}",
         "failover: missing", FERR_INVALID},
        {"{'v':6,'op':'vm_failover','name':'web1','owner':'n1','expect_owner':'n2',"
         "'state':'recovering','failover':{'from':'n2'}}",
         "failover: to: missing", FERR_INVALID},
        {"{'v':6,'op':'vm_failover','name':'web1','owner':'n1','expect_owner':'n2',"
         "'state':'recovering','failover':{'from':'n2','to':'n1','x':1}}",
         "failover: unknown field \"x\"", FERR_INVALID},
        {"{'v':6,'op':'vm_failover','name':'web1','owner':'n9','expect_owner':'n2',"
         "'state':'recovering','failover':{'from':'n2','to':'n9'}}",
         "n9", FERR_NOTFOUND},
        {"{'v':6,'op':'vm_failover','name':'web9','owner':'n1','expect_owner':'n2',"
         "'state':'recovering','failover':{'from':'n2','to':'n1'}}",
         "no VM named \"web9\"", FERR_NOTFOUND},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(db, bad[i].cmd, bad[i].code, bad[i].msg);
    cdb_free(db);
}

/* Snapshots carry a VM's epoch, check it like every field, and have none without one. */
static void test_vm_epoch_snapshot(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *db = populated();
    char *snap = NULL;
    size_t len = 0;
    /* never used: no "epoch" in the snapshot (a version 4 reader reads it), and a record
     * without one reads as epoch 0 */
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_null(strstr(snap, "epoch"));
    struct cdb *copy = cdb_new();
    assert_int_equal(cdb_restore(copy, snap, len, 1, &e), 0);
    free(snap);
    assert_int_equal(cdb_vm_epoch(copy, "web1"), 0);
    ok(copy, "{'v':5,'op':'vm_epoch','name':'web1','epoch':1,'expect_epoch':0}");
    cdb_free(copy);

    /* a round trip keeps it, byte for byte, and the copy goes on from it */
    ok(db, "{'v':5,'op':'vm_epoch','name':'web1','epoch':7}");
    ok(db, "{'v':1,'op':'vm_put','name':'web2','spec':{}}");
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_non_null(strstr(snap, "\"epoch\":7"));
    copy = cdb_new();
    if (cdb_restore(copy, snap, len, 1, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(cdb_vm_epoch(copy, "web1"), 7);
    assert_int_equal(cdb_vm_epoch(copy, "web2"), 0);
    char *a = state_text(db), *b = state_text(copy);
    assert_string_equal(a, b);
    free(a);
    free(b);
    char *snap2;
    size_t len2;
    assert_int_equal(cdb_snapshot(copy, &snap2, &len2, &e), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(snap, snap2, len);
    free(snap2);
    refused(copy, "{'v':5,'op':'vm_epoch','name':'web1','epoch':7}", FERR_STATE, "only rises");
    ok(copy, "{'v':5,'op':'vm_epoch','name':'web1','epoch':8,'expect_epoch':7}");

    /* a bad epoch in a record is refused like any bad field; nothing changes */
    static const struct {
        const char *to, *msg;
    } edits[] = {
        {"\"epoch\":0", "vms[0]: epoch: 0 is out of range"},
        {"\"epoch\":-7", "vms[0]: epoch: -7 is out of range"},
        {"\"epoch\":\"7\"", "vms[0]: epoch: expected an integer, not a string"},
        {"\"epoch\":7.0", "vms[0]: epoch: expected an integer"},
        {"\"epoch\":9007199254740992", "vms[0]: epoch: 9007199254740992 is out of range"},
    };
    char *before = state_text(copy);
    uint64_t index = cdb_applied_index(copy);
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *bad = replace(snap, "\"epoch\":7", edits[i].to);
        int rc = cdb_restore(copy, bad, strlen(bad), 1, &e);
        if (rc != FERR_INVALID || !strstr(e.msg, edits[i].msg))
            fail_msg("edit %zu: got %d \"%s\", want \"...%s...\"", i, rc, e.msg, edits[i].msg);
        free(bad);
        char *after = state_text(copy);
        assert_string_equal(after, before);
        assert_int_equal(cdb_applied_index(copy), index);
        free(after);
    }
    free(before);
    free(snap);
    cdb_free(copy);
    cdb_free(db);
}

/* cluster_profile (version 7): the meta record keeps it, a rename keeps it, a snapshot carries
 * it; bad profiles and older versions are refused; an empty cluster has none to set. */
static void test_cluster_profile(void **state)
{
    (void)state;
    struct ferr e;
    struct cdb *empty = cdb_new();
    assert_string_equal(cdb_profile(empty), "default");
    refused(empty, "{'v':7,'op':'cluster_profile','profile':'fast','time_ms':9}", FERR_STATE,
            "no meta record yet");
    cdb_free(empty);
    struct cdb *db = populated();
    assert_string_equal(cdb_profile(db), "default");
    char *snap = NULL;
    size_t len = 0;
    assert_int_equal(cdb_snapshot(db, &snap, &len, &e), 0);
    assert_null(strstr(snap, "profile")); /* never set: what version 6 writes */
    free(snap);
    refused(db, "{'v':6,'op':'cluster_profile','profile':'fast','time_ms':9}", FERR_INVALID,
            "it is new in version 7");
    refused(db, "{'v':7,'op':'cluster_profile','profile':'turbo','time_ms':9}", FERR_INVALID,
            "use default or fast");
    refused(db, "{'v':7,'op':'cluster_profile','profile':'fast'}", FERR_INVALID, "time_ms");
    assert_string_equal(cdb_profile(db), "default");
    json_t *cmd = cdb_cmd_cluster_profile("fast", 9);
    assert_int_equal(cdb_cmd_check(cmd, &e), 0);
    json_decref(cmd);
    ok(db, "{'v':7,'op':'cluster_profile','profile':'fast','time_ms':9}");
    assert_string_equal(cdb_profile(db), "fast");
    ok(db, "{'v':1,'op':'cluster_meta','id':'c-123','name':'renamed','created_ms':5}");
    assert_string_equal(cdb_profile(db), "fast");
    json_t *m = cdb_meta(db);
    assert_int_equal(json_integer_value(json_object_get(m, "profile_ms")), 9);
    json_decref(m);
    struct cdb *copy = restored(db);
    assert_string_equal(cdb_profile(copy), "fast");
    ok(copy, "{'v':7,'op':'cluster_profile','profile':'default','time_ms':10}");
    assert_string_equal(cdb_profile(copy), "default");
    cdb_free(copy);
    cdb_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_sequence),
        cmocka_unit_test(test_bad_commands),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_refusals),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_events_ring),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_health_and_admin),
        cmocka_unit_test(test_v1_node_states),
        cmocka_unit_test(test_node_cmd_versions),
        cmocka_unit_test(test_snapshot_format_1),
        cmocka_unit_test(test_migration_measure),
        cmocka_unit_test(test_migration_measure_replay),
        cmocka_unit_test(test_vm_runtime),
        cmocka_unit_test(test_event_uid),
        cmocka_unit_test(test_csv_volumes),
        cmocka_unit_test(test_vm_epoch),
        cmocka_unit_test(test_vm_failover),
        cmocka_unit_test(test_vm_epoch_snapshot),
        cmocka_unit_test(test_cluster_profile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
