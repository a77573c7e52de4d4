/* SPDX-License-Identifier: MIT */
/* Unit tests of the failover plan (failplan.c): order, placement, capacity, anti-affinity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fleet/failplan.h"

#define MOVES 16

/* The records a plan is made from, and the moves it made. */
struct plan {
    json_t *dead, *nodes, *vms;
    struct failplan_move out[MOVES];
    size_t n;
};

/* JSON from text with ' for " (for readability); the caller owns it. */
static json_t *J(const char *text)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *c = buf; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t err;
    json_t *j = json_loads(buf, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("bad test JSON %s: %s", buf, err.text);
    return j;
}

/* A plan whose dead nodes are dead_text (a JSON array) with no nodes and no VMs yet. */
static void plan_init(struct plan *p, const char *dead_text)
{
    memset(p, 0, sizeof(*p));
    p->dead = J(dead_text);
    p->nodes = json_array();
    p->vms = json_array();
}

static void plan_free(struct plan *p)
{
    json_decref(p->dead);
    json_decref(p->nodes);
    json_decref(p->vms);
}

static void node(struct plan *p, const char *name, const char *state, const char *admin,
                 json_int_t free_mib)
{
    json_array_append_new(p->nodes,
                          json_pack("{s:s, s:s, s:s, s:{s:I}}", "name", name, "state", state,
                                    "admin", admin, "memory", "free_mib", free_mib));
}

/* An up, active node. */
static void up(struct plan *p, const char *name, json_int_t free_mib)
{
    node(p, name, "up", "active", free_mib);
}

/* A VM record: priority < 0 leaves the spec's numeric priority out; ha_text NULL leaves ha
 * out. */
static void vm(struct plan *p, const char *name, const char *owner, const char *state,
               json_int_t memory_mib, int priority, const char *ha_text)
{
    json_t *spec = json_pack("{s:s, s:I}", "name", name, "memory_mib", memory_mib);
    if (priority >= 0)
        json_object_set_new(spec, "priority", json_integer(priority));
    if (ha_text)
        json_object_set_new(spec, "ha", J(ha_text));
    json_array_append_new(p->vms, json_pack("{s:s, s:s, s:s, s:o}", "name", name, "owner", owner,
                                            "state", state, "spec", spec));
}

/* A running VM of owner with ha ha_text, its numeric priority absent. */
static void ha_vm(struct plan *p, const char *name, const char *owner, json_int_t memory_mib,
                  const char *ha_text)
{
    vm(p, name, owner, "running", memory_mib, -1, ha_text);
}

static size_t make(struct plan *p)
{
    p->n = failplan_make(p->dead, p->nodes, p->vms, p->out, MOVES);
    return p->n;
}

/* Asserts that move i brings name back from `from` on `to` ("" with why). */
static void moved(const struct plan *p, size_t i, const char *name, const char *from,
                  const char *to)
{
    assert_true(i < p->n);
    assert_string_equal(p->out[i].vm, name);
    assert_string_equal(p->out[i].from, from);
    assert_string_equal(p->out[i].to, to);
    if (to[0])
        assert_string_equal(p->out[i].why, "");
    else
        assert_true(p->out[i].why[0] != '\0');
}

/* High, then medium, then low; in a tier the numeric priority (500 when absent), higher
 * first, then the name. A missing ha.priority is medium. */
static void test_tier_order(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 100000);
    vm(&p, "low-a", "n1", "running", 512, 900, "{'priority': 'low'}");
    vm(&p, "high-b", "n1", "running", 512, 100, "{'priority': 'high'}");
    vm(&p, "med-c", "n1", "running", 512, -1, "{'priority': 'medium'}");
    vm(&p, "high-a", "n1", "running", 512, 100, "{'priority': 'high'}");
    vm(&p, "high-z", "n1", "running", 512, 900, "{'priority': 'high'}");
    vm(&p, "med-a", "n1", "running", 512, 499, "{}");
    vm(&p, "high-m", "n1", "running", 512, -1, "{'priority': 'high'}");
    assert_int_equal(make(&p), 7);
    moved(&p, 0, "high-z", "n1", "n2");
    moved(&p, 1, "high-m", "n1", "n2");
    moved(&p, 2, "high-a", "n1", "n2");
    moved(&p, 3, "high-b", "n1", "n2");
    moved(&p, 4, "med-c", "n1", "n2");
    moved(&p, 5, "med-a", "n1", "n2");
    moved(&p, 6, "low-a", "n1", "n2");
    plan_free(&p);
}

/* A higher tier is placed first, so it gets the capacity even when listed after. */
static void test_tier_gets_capacity_first(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 1000);
    vm(&p, "a", "n1", "running", 1000, 1000, "{'priority': 'low'}");
    vm(&p, "z", "n1", "running", 1000, 0, "{'priority': 'high'}");
    assert_int_equal(make(&p), 2);
    moved(&p, 0, "z", "n1", "n2");
    moved(&p, 1, "a", "n1", "");
    assert_string_equal(p.out[1].why, "no up, active node has 1000 MiB free (largest: n2, 0 MiB)");
    plan_free(&p);
}

/* The first preferred node that is a candidate and fits wins over more free memory. */
static void test_preferred_honored(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 1000);
    up(&p, "n3", 8000);
    up(&p, "n4", 4000);
    node(&p, "n5", "down", "active", 9000);
    ha_vm(&p, "a", "n1", 512, "{'priority': 'high', 'preferred': ['n2']}");
    /* a down, an unknown and the dead node are passed over, in list order */
    ha_vm(&p, "b", "n1", 512, "{'priority': 'high', 'preferred': ['n5', 'nx', 'n1', 'n4', 'n2']}");
    assert_int_equal(make(&p), 2);
    moved(&p, 0, "a", "n1", "n2");
    moved(&p, 1, "b", "n1", "n4");
    plan_free(&p);
}

/* A preferred node without room is passed over: the next preferred one, else the most free
 * candidate; equal free memory goes to the first name. */
static void test_preferred_full_falls_back(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 1000);
    up(&p, "n4", 3000);
    up(&p, "n3", 3000);
    ha_vm(&p, "a", "n1", 2000, "{'priority': 'high', 'preferred': ['n2']}");
    ha_vm(&p, "b", "n1", 2000, "{'priority': 'low', 'preferred': ['n2', 'n4']}");
    assert_int_equal(make(&p), 2);
    moved(&p, 0, "a", "n1", "n3"); /* n3 and n4 both 3000: the first name */
    moved(&p, 1, "b", "n1", "n4"); /* its second preferred node */
    plan_free(&p);
}

/* A node outside a non-empty ha.possible is never chosen; an empty one allows every node. */
static void test_possible_restricts(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 1000);
    up(&p, "n3", 8000);
    node(&p, "n4", "down", "active", 8000);
    node(&p, "n5", "up", "draining", 8000);
    ha_vm(&p, "a", "n1", 512, "{'priority': 'high', 'possible': ['n2']}");
    ha_vm(&p, "b", "n1", 512, "{'priority': 'medium', 'possible': []}");
    ha_vm(&p, "c", "n1", 2048, "{'priority': 'low', 'possible': ['n2']}");
    ha_vm(&p, "d", "n1", 512, "{'priority': 'low', 'possible': ['n4', 'n5', 'n1']}");
    assert_int_equal(make(&p), 4);
    moved(&p, 0, "a", "n1", "n2");
    moved(&p, 1, "b", "n1", "n3");
    moved(&p, 2, "c", "n1", "");
    assert_string_equal(p.out[2].why,
                        "no up, active node of ha.possible has 2048 MiB free (largest: n2, 488 "
                        "MiB)");
    moved(&p, 3, "d", "n1", "");
    assert_string_equal(p.out[3].why, "none of ha.possible (n4, n5, n1) is up, active and alive");
    plan_free(&p);
}

/* Memory given to earlier moves is gone: the second VM goes elsewhere, the third nowhere,
 * and its why has the numbers. */
static void test_capacity_consumed(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 3000);
    up(&p, "n3", 2000);
    ha_vm(&p, "a", "n1", 2000, "{'priority': 'high'}");
    ha_vm(&p, "b", "n1", 2000, "{'priority': 'high'}");
    ha_vm(&p, "c", "n1", 1500, "{'priority': 'high'}");
    ha_vm(&p, "d", "n1", 1000, "{'priority': 'high'}");
    assert_int_equal(make(&p), 4);
    moved(&p, 0, "a", "n1", "n2");
    moved(&p, 1, "b", "n1", "n3"); /* n2 has 1000 left */
    moved(&p, 2, "c", "n1", "");
    assert_string_equal(p.out[2].why,
                        "no up, active node has 1500 MiB free (largest: n2, 1000 MiB)");
    moved(&p, 3, "d", "n1", "n2"); /* c took nothing */
    plan_free(&p);
}

/* Draining, paused, down and dead nodes are never chosen, even preferred and roomy. */
static void test_unfit_nodes_never_chosen(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1', 'n5']");
    node(&p, "n2", "up", "draining", 90000);
    node(&p, "n3", "up", "paused", 90000);
    node(&p, "n4", "down", "active", 90000);
    node(&p, "n5", "up", "active", 90000); /* dead, though its record says up */
    ha_vm(&p, "a", "n1", 512, "{'priority': 'high', 'preferred': ['n2', 'n3', 'n4', 'n5']}");
    assert_int_equal(make(&p), 1);
    moved(&p, 0, "a", "n1", "");
    assert_string_equal(p.out[0].why, "no node is up, active and alive");
    up(&p, "n6", 600);
    assert_int_equal(make(&p), 1);
    moved(&p, 0, "a", "n1", "n6");
    plan_free(&p);
}

/* Soft anti-affinity avoids a node with a live VM of the class (not a stopped one, not one
 * of a dead node), and falls back when every fitting node holds one. */
static void test_anti_affinity_soft_live(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 2000);
    up(&p, "n3", 8000);
    up(&p, "n4", 9000);
    vm(&p, "live", "n3", "running", 512, -1, "{'anti_affinity': 'db', 'priority': 'none'}");
    vm(&p, "off", "n4", "stopped", 512, -1, "{'anti_affinity': 'db'}");
    vm(&p, "other", "n4", "running", 512, -1, "{'anti_affinity': 'web'}");
    vm(&p, "gone", "n1", "stopped", 512, -1, "{'anti_affinity': 'db'}"); /* not recovered */
    ha_vm(&p, "a", "n1", 1024, "{'priority': 'high', 'anti_affinity': 'db', 'preferred': ['n3']}");
    assert_int_equal(make(&p), 1);
    moved(&p, 0, "a", "n1", "n4"); /* n3 holds live; n4's db VM is stopped */
    /* n4 runs one too now: n2 is the only node without; too small, it falls back to n3 */
    json_object_set_new(json_array_get(p.vms, 1), "state", json_string("paused"));
    json_object_set_new(json_object_get(json_array_get(p.vms, 4), "spec"), "memory_mib",
                        json_integer(4096));
    assert_int_equal(make(&p), 1);
    moved(&p, 0, "a", "n1", "n3"); /* the preferred node, as if it had no class */
    plan_free(&p);
}

/* VMs of one class placed by the plan spread over the nodes, even onto one with less free. */
static void test_anti_affinity_soft_plan(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 2000);
    up(&p, "n3", 8000);
    ha_vm(&p, "a", "n1", 1024, "{'priority': 'high', 'anti_affinity': 'db'}");
    ha_vm(&p, "b", "n1", 1024, "{'priority': 'high', 'anti_affinity': 'db'}");
    ha_vm(&p, "c", "n1", 1024, "{'priority': 'high', 'anti_affinity': 'db'}");
    ha_vm(&p, "d", "n1", 1024, "{'priority': 'high', 'anti_affinity': 'web'}");
    assert_int_equal(make(&p), 4);
    moved(&p, 0, "a", "n1", "n3");
    moved(&p, 1, "b", "n1", "n2");
    moved(&p, 2, "c", "n1", "n3"); /* both hold one: the normal choice */
    moved(&p, 3, "d", "n1", "n3"); /* another class is no obstacle */
    plan_free(&p);
}

/* A strict class is not placed where every fitting node holds one, live or planned; the why
 * names the class and the nodes. */
static void test_anti_affinity_strict(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 4000);
    up(&p, "n3", 8000);
    up(&p, "n4", 512); /* holds none, too small */
    vm(&p, "live", "n3", "starting", 512, -1, "{'anti_affinity': 'db'}");
    ha_vm(&p, "a", "n1", 1024,
          "{'priority': 'high', 'anti_affinity': 'db', 'anti_affinity_strict': true}");
    ha_vm(&p, "b", "n1", 1024,
          "{'priority': 'medium', 'anti_affinity': 'db', 'anti_affinity_strict': true}");
    ha_vm(&p, "c", "n1", 1024,
          "{'priority': 'low', 'anti_affinity': 'db', 'anti_affinity_strict': false}");
    ha_vm(&p, "d", "n1", 9000,
          "{'priority': 'low', 'anti_affinity': 'db', 'anti_affinity_strict': true}");
    assert_int_equal(make(&p), 4);
    moved(&p, 0, "a", "n1", "n2"); /* n3 holds live */
    moved(&p, 1, "b", "n1", "");   /* n2 holds a (planned), n3 holds live */
    assert_string_equal(p.out[1].why, "ha.anti_affinity_strict: every up, active node with 1024 "
                                      "MiB free holds a VM of class db (n2, n3)");
    moved(&p, 2, "c", "n1", "n3"); /* not strict: the most free */
    moved(&p, 3, "d", "n1", "");   /* fits nowhere: that is the reason given */
    assert_string_equal(p.out[3].why,
                        "no up, active node has 9000 MiB free (largest: n3, 6976 MiB)");
    plan_free(&p);
}

/* Listed only: HA VMs (priority not none) of dead owners that should run. */
static void test_only_recoverable_listed(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 100000);
    static const char *const run[] = {"running",   "paused", "starting",
                                      "migrating", "failed", "recovering"};
    static const char *const norun[] = {"stopped", "stopping", "created", "deleting", ""};
    char name[32];
    for (size_t i = 0; i < sizeof(run) / sizeof(run[0]); i++) {
        snprintf(name, sizeof(name), "r%zu", i);
        vm(&p, name, "n1", run[i], 256, -1, "{'priority': 'high'}");
    }
    for (size_t i = 0; i < sizeof(norun) / sizeof(norun[0]); i++) {
        snprintf(name, sizeof(name), "s%zu", i);
        vm(&p, name, "n1", norun[i], 256, -1, "{'priority': 'high'}");
    }
    vm(&p, "plain", "n1", "running", 256, -1, NULL);
    vm(&p, "nullha", "n1", "running", 256, -1, "null");
    vm(&p, "never", "n1", "running", 256, -1, "{'priority': 'none'}");
    vm(&p, "alive", "n2", "running", 256, -1, "{'priority': 'high'}");
    vm(&p, "unowned", "", "running", 256, -1, "{'priority': 'high'}");
    assert_int_equal(make(&p), 6);
    for (size_t i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "r%zu", i);
        moved(&p, i, name, "n1", "n2");
    }
    /* nothing dead, nothing to do */
    json_decref(p.dead);
    p.dead = json_array();
    assert_int_equal(make(&p), 0);
    plan_free(&p);
}

/* Records with members missing or of the wrong kind are skipped; nothing crashes. */
static void test_malformed_skipped(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "[7, null, 'n1', {'n2': 1}]");
    static const char *const bad_nodes[] = {
        "{'state': 'up', 'admin': 'active', 'memory': {'free_mib': 99000}}",
        "{'name': 'b1', 'admin': 'active', 'memory': {'free_mib': 99000}}",
        "{'name': 'b2', 'state': 'up', 'memory': {'free_mib': 99000}}",
        "{'name': 'b3', 'state': 'up', 'admin': 'active'}",
        "{'name': 'b4', 'state': 'up', 'admin': 'active', 'memory': 99000}",
        "{'name': 'b5', 'state': 'up', 'admin': 'active', 'memory': {'free_mib': '99000'}}",
        "{'name': 7, 'state': 'up', 'admin': 'active', 'memory': {'free_mib': 99000}}",
        "'n9'",
        "null",
    };
    for (size_t i = 0; i < sizeof(bad_nodes) / sizeof(bad_nodes[0]); i++)
        json_array_append_new(p.nodes, J(bad_nodes[i]));
    up(&p, "good", 2000);
    static const char *const bad_vms[] = {
        "{'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': {}}}",
        "{'name': '', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': {}}}",
        "{'name': 'v1', 'owner': 5, 'state': 'running', 'spec': {'memory_mib': 1, 'ha': {}}}",
        "{'name': 'v2', 'owner': 'n1', 'spec': {'memory_mib': 1, 'ha': {}}}",
        "{'name': 'v3', 'owner': 'n1', 'state': 'running', 'spec': 'x'}",
        "{'name': 'v4', 'owner': 'n1', 'state': 'running', 'spec': {'ha': {}}}",
        "{'name': 'v5', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': '1', 'ha': {}}}",
        "{'name': 'v6', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 0, 'ha': {}}}",
        "{'name': 'v7', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1.5, 'ha': {}}}",
        "{'name': 'v8', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': 'on'}}",
        "{'name': 'v9', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'priority': 'urgent'}}}",
        "{'name': 'va', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'priority': 1}}}",
        "{'name': 'vb', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, "
        "'priority': 'high', 'ha': {}}}",
        "{'name': 'vc', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, "
        "'priority': 1001, 'ha': {}}}",
        "{'name': 'vd', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, "
        "'priority': -1, 'ha': {}}}",
        "{'name': 've', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'preferred': 'good'}}}",
        "{'name': 'vf', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'possible': ['good', 3]}}}",
        "{'name': 'vg', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'anti_affinity': 5}}}",
        "{'name': 'vh', 'owner': 'n1', 'state': 'running', 'spec': {'memory_mib': 1, 'ha': "
        "{'anti_affinity_strict': 'yes'}}}",
        "{'name': 'vi', 'owner': 'n1', 'state': 7, 'spec': {'memory_mib': 1, 'ha': {}}}",
        "[]",
        "42",
    };
    for (size_t i = 0; i < sizeof(bad_vms) / sizeof(bad_vms[0]); i++)
        json_array_append_new(p.vms, J(bad_vms[i]));
    /* null members take their defaults */
    json_array_append_new(
        p.vms, J("{'name': 'ok', 'owner': 'n1', 'state': 'failed', 'spec': {'memory_mib': 2000, "
                 "'priority': null, 'ha': {'priority': null, 'preferred': null, 'possible': null, "
                 "'anti_affinity': null, 'anti_affinity_strict': null}}}"));
    /* a live VM without a class string or a state blocks nothing */
    json_array_append_new(p.vms, J("{'name': 'l1', 'owner': 'good', 'spec': {'ha': "
                                   "{'anti_affinity': 'db'}}}"));
    json_array_append_new(p.vms, J("{'name': 'l2', 'owner': 'good', 'state': 'running', "
                                   "'spec': {'ha': {'anti_affinity': 3}}}"));
    ha_vm(&p, "okdb", "n1", 1,
          "{'priority': 'low', 'anti_affinity': 'x', "
          "'anti_affinity_strict': true}");
    assert_int_equal(make(&p), 2);
    moved(&p, 0, "ok", "n1", "good");
    moved(&p, 1, "okdb", "n1", ""); /* ok took all of good's memory */
    assert_string_equal(p.out[1].why, "no up, active node has 1 MiB free (largest: good, 0 MiB)");
    /* arrays that are not arrays, or none at all */
    json_t *obj = json_object();
    assert_int_equal(failplan_make(NULL, NULL, NULL, p.out, MOVES), 0);
    assert_int_equal(failplan_make(p.dead, obj, p.vms, p.out, MOVES), 2);
    moved(&p, 0, "ok", "n1", "");
    assert_string_equal(p.out[0].why, "no node is up, active and alive");
    assert_int_equal(failplan_make(obj, p.nodes, p.vms, p.out, MOVES), 0);
    assert_int_equal(failplan_make(p.dead, p.nodes, obj, p.out, MOVES), 0);
    json_decref(obj);
    plan_free(&p);
}

/* At most max moves, the first in the order; nothing beyond is written. The records are left
 * as they were. */
static void test_max_respected(void **state)
{
    (void)state;
    struct plan p;
    plan_init(&p, "['n1']");
    up(&p, "n2", 100000);
    ha_vm(&p, "e", "n1", 512, "{'priority': 'low'}");
    ha_vm(&p, "d", "n1", 512, "{'priority': 'high'}");
    ha_vm(&p, "c", "n1", 512, "{'priority': 'medium'}");
    ha_vm(&p, "b", "n1", 512, "{'priority': 'high'}");
    char *before = json_dumps(p.vms, JSON_SORT_KEYS);
    memset(p.out, 'x', sizeof(p.out));
    assert_int_equal(failplan_make(p.dead, p.nodes, p.vms, p.out, 2), 2);
    p.n = 2;
    moved(&p, 0, "b", "n1", "n2");
    moved(&p, 1, "d", "n1", "n2");
    assert_int_equal(p.out[2].vm[0], 'x');
    assert_int_equal(failplan_make(p.dead, p.nodes, p.vms, NULL, 0), 0);
    char *after = json_dumps(p.vms, JSON_SORT_KEYS);
    assert_string_equal(before, after);
    free(before);
    free(after);
    plan_free(&p);
}

/* Names over 63 bytes are cut, as is a long why, never past its end. */
static void test_long_names_cut(void **state)
{
    (void)state;
    struct plan p;
    char vmname[101], dead[101], live[101];
    memset(vmname, 'v', 100);
    memset(dead, 'd', 100);
    memset(live, 'l', 100);
    vmname[100] = dead[100] = live[100] = '\0';
    plan_init(&p, "[]");
    json_array_append_new(p.dead, json_string(dead));
    up(&p, live, 1000);
    ha_vm(&p, vmname, dead, 512, "{}");
    assert_int_equal(make(&p), 1);
    assert_int_equal(strlen(p.out[0].vm), 63);
    assert_int_equal(strlen(p.out[0].from), 63);
    assert_int_equal(strlen(p.out[0].to), 63);
    assert_int_equal(strncmp(p.out[0].to, live, 63), 0);
    /* a why that lists four 100-byte names is cut at 255 bytes */
    json_t *possible = json_array();
    for (char c = 'a'; c < 'e'; c++) {
        char name[101];
        memset(name, c, 100);
        name[100] = '\0';
        json_array_append_new(possible, json_string(name));
    }
    json_object_set_new(json_object_get(json_object_get(json_array_get(p.vms, 0), "spec"), "ha"),
                        "possible", possible);
    assert_int_equal(make(&p), 1);
    assert_string_equal(p.out[0].to, "");
    assert_int_equal(strlen(p.out[0].why), 255);
    assert_int_equal(strncmp(p.out[0].why, "none of ha.possible (aaaa", 25), 0);
    plan_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier_order),
        cmocka_unit_test(test_tier_gets_capacity_first),
        cmocka_unit_test(test_preferred_honored),
        cmocka_unit_test(test_preferred_full_falls_back),
        cmocka_unit_test(test_possible_restricts),
        cmocka_unit_test(test_capacity_consumed),
        cmocka_unit_test(test_unfit_nodes_never_chosen),
        cmocka_unit_test(test_anti_affinity_soft_live),
        cmocka_unit_test(test_anti_affinity_soft_plan),
        cmocka_unit_test(test_anti_affinity_strict),
        cmocka_unit_test(test_only_recoverable_listed),
        cmocka_unit_test(test_malformed_skipped),
        cmocka_unit_test(test_max_respected),
        cmocka_unit_test(test_long_names_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
