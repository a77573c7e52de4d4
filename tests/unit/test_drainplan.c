/* SPDX-License-Identifier: MIT */
/* Unit tests of src/migrate/drainplan.c: which of a draining node's VMs move, in what order,
 * how many at once, and what counts as done or failed. A fake host (its VMs, its migration
 * slots, the other nodes' free memory) drives the plan the way drain.c does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cluster/placement.h"
#include "migrate/drainplan.h"
#include "migrate/migrate.h"

#define NODE "host1"
#define MAX_VMS 16

/* A VM of the draining host. */
struct fake_vm {
    const char *name;
    enum vm_state state;
    uint64_t memory_mib;
};

/* The draining host: its VMs, the migrations it runs, the cluster's other nodes. */
struct host {
    struct fake_vm vms[MAX_VMS];
    size_t nvms;
    unsigned max_out;   /* ferryd --max-migrations */
    unsigned others;    /* outgoing migrations that are not the drain's */
    json_t *nodes;      /* the other nodes, as GET /v1/nodes lists them */
    const char *refuse; /* a VM migrate_start refuses, with refusal */
    const char *refusal;
    struct drain_plan p;
    struct drain_item *started[MAX_VMS]; /* in the order their migrations started */
    size_t nstarted;
};

static struct fake_vm *find(struct host *h, const char *name)
{
    for (size_t i = 0; i < h->nvms; i++)
        if (strcmp(h->vms[i].name, name) == 0)
            return &h->vms[i];
    return NULL;
}

static void add_vm(struct host *h, const char *name, enum vm_state st, uint64_t mib)
{
    h->vms[h->nvms++] = (struct fake_vm){name, st, mib};
}

/* What the cluster database says host1 owns: the VMs named, in its order (by name). */
static void plan(struct host *h, unsigned parallel, const char *const *names, size_t n)
{
    json_t *recs = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(recs, json_pack("{s:s, s:s}", "name", names[i], "owner", NODE));
    assert_int_equal(drain_plan_init(&h->p, recs, parallel), 0);
    json_decref(recs);
}

static void host_init(struct host *h)
{
    memset(h, 0, sizeof(*h));
    h->max_out = MIGRATE_DEFAULT_OUT;
    h->nodes = json_pack("[{s:s, s:s, s:s, s:{s:i}}, {s:s, s:s, s:s, s:{s:i}}]", "name", "host2",
                         "state", "up", "admin", "active", "memory", "free_mib", 100000, "name",
                         "host3", "state", "up", "admin", "active", "memory", "free_mib", 100000);
}

static void host_free(struct host *h)
{
    drain_plan_free(&h->p);
    json_decref(h->nodes);
}

/* migrate_start as the migrator answers it (src/migrate/source.c's refusals). */
static int migrate_start_fake(struct host *h, struct fake_vm *vm, struct ferr *e)
{
    if (h->refuse && strcmp(vm->name, h->refuse) == 0)
        return ferr_set(e, FERR_STATE, "%s", h->refusal);
    if (h->p.running + h->others >= h->max_out)
        return ferr_set(e, FERR_STATE,
                        "%s already runs %u " MIGRATE_BUSY_WORDS "%s (at most %u at once: "
                        "ferryd --max-migrations); migrate %s when one has finished",
                        NODE, h->p.running + h->others, h->p.running + h->others == 1 ? "" : "s",
                        h->max_out, vm->name);
    if (vm->state != VM_RUNNING)
        return ferr_set(e, FERR_STATE, "%s is %s; only a running VM can be live-migrated", vm->name,
                        vm_state_name(vm->state));
    return 0;
}

/* drain.c's pump: starts what the plan lets start; returns true when the host was busy. */
static bool pump(struct host *h)
{
    struct drain_item *it;
    while ((it = drain_plan_next(&h->p))) {
        struct fake_vm *vm = find(h, it->name);
        if (drain_plan_judge(&h->p, it, NODE, vm != NULL, vm ? vm->state : VM_STOPPED) ==
            DRAIN_SETTLED)
            continue;
        struct ferr e = {0};
        if (placement_pick_pending(h->nodes, vm->memory_mib, NULL, NODE, drain_plan_sent(&h->p),
                                   it->to, &e) < 0 ||
            migrate_start_fake(h, vm, &e) < 0) {
            if (drain_plan_host_busy(&e)) {
                drain_plan_wait(&h->p, it);
                return true;
            }
            drain_plan_fail(&h->p, it, e.msg);
            continue;
        }
        drain_plan_started(&h->p, it, it->to, vm->memory_mib);
        h->started[h->nstarted++] = it;
    }
    return false;
}

/* The migration of VM name answers: completed (error NULL) or failed with error. */
static void answer(struct host *h, const char *name, const char *error)
{
    struct drain_item *it = NULL;
    for (size_t i = 0; i < h->p.n; i++)
        if (strcmp(h->p.items[i].name, name) == 0)
            it = &h->p.items[i];
    assert_non_null(it);
    assert_int_equal(it->outcome, DRAIN_MIGRATING);
    struct ferr e = {0};
    if (error) {
        ferr_set(&e, FERR_QEMU, "%s", error);
        drain_plan_answered(&h->p, it, &e, NULL);
    } else {
        drain_plan_answered(&h->p, it, NULL,
                            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I}", "vm", name,
                                      "from", NODE, "to", it->to, "total_ms", (json_int_t)900,
                                      "downtime_ms", (json_int_t)12, "bytes", (json_int_t)1 << 28,
                                      "passes", (json_int_t)3, "strategy", "pre-copy", "budget_ms",
                                      (json_int_t)300));
    }
}

static const char *started_name(const struct host *h, size_t i)
{
    return h->started[i]->name;
}

static void test_running_vms_move_in_order_at_most_parallel_at_once(void **state)
{
    struct host h;
    host_init(&h);
    h.max_out = 16;
    static const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++)
        add_vm(&h, names[i], VM_RUNNING, 512);
    plan(&h, 2, names, 5);

    assert_false(pump(&h));
    assert_int_equal(h.nstarted, 2);
    assert_string_equal(started_name(&h, 0), "a");
    assert_string_equal(started_name(&h, 1), "b");
    assert_null(drain_plan_next(&h.p)); /* two run: nothing more starts */
    assert_false(drain_plan_done(&h.p));

    answer(&h, "b", NULL); /* answers out of order: c takes b's slot */
    pump(&h);
    assert_int_equal(h.nstarted, 3);
    assert_string_equal(started_name(&h, 2), "c");
    answer(&h, "a", NULL);
    answer(&h, "c", NULL);
    pump(&h);
    assert_int_equal(h.nstarted, 5);
    assert_string_equal(started_name(&h, 3), "d");
    assert_string_equal(started_name(&h, 4), "e");
    assert_false(drain_plan_done(&h.p)); /* every VM taken, two still migrating */
    answer(&h, "d", NULL);
    assert_false(drain_plan_done(&h.p));
    answer(&h, "e", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_int_equal(h.p.migrated, 5);
    assert_int_equal(h.p.failed, 0);
    assert_string_equal(drain_plan_admin(&h.p), "paused");
    host_free(&h);
}

static void test_parallel_default_and_asked(void **state)
{
    struct host h;
    host_init(&h);
    h.max_out = 16;
    static const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++)
        add_vm(&h, names[i], VM_RUNNING, 512);
    plan(&h, 0, names, 5);
    assert_int_equal(h.p.parallel, DRAIN_PARALLEL_DEFAULT);
    pump(&h);
    assert_int_equal(h.nstarted, DRAIN_PARALLEL_DEFAULT);
    host_free(&h);

    host_init(&h);
    h.max_out = 16;
    for (size_t i = 0; i < 5; i++)
        add_vm(&h, names[i], VM_RUNNING, 512);
    plan(&h, 4, names, 5);
    pump(&h);
    assert_int_equal(h.nstarted, 4);
    host_free(&h);
}

static void test_stopped_and_failed_vms_stay_and_take_no_slot(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a", "b", "c", "d"};
    add_vm(&h, "a", VM_STOPPED, 512);
    add_vm(&h, "b", VM_RUNNING, 512);
    add_vm(&h, "c", VM_FAILED, 512);
    add_vm(&h, "d", VM_RUNNING, 512);
    plan(&h, 1, names, 4);
    pump(&h);
    /* a stayed at once; b runs in the only slot */
    assert_int_equal(h.nstarted, 1);
    assert_string_equal(started_name(&h, 0), "b");
    assert_int_equal(h.p.items[0].outcome, DRAIN_STAYED);
    assert_string_equal(h.p.items[0].msg,
                        "stopped: stays here; start it after ferry node resume, or delete it");
    answer(&h, "b", NULL);
    pump(&h);
    assert_int_equal(h.nstarted, 2);
    assert_string_equal(started_name(&h, 1), "d");
    assert_int_equal(h.p.items[2].outcome, DRAIN_STAYED);
    assert_string_equal(h.p.items[2].msg,
                        "failed: stays here; start it after ferry node resume, or delete it");
    answer(&h, "d", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_int_equal(h.p.stayed, 2);
    assert_int_equal(h.p.migrated, 2);
    /* VMs that stayed do not keep the node from being paused */
    assert_string_equal(drain_plan_admin(&h.p), "paused");
    host_free(&h);
}

static void test_only_a_stopped_or_failed_vm_stays(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a"};
    plan(&h, 1, names, 1);
    static const enum vm_state move[] = {VM_RUNNING, VM_PAUSED, VM_STARTING, VM_STOPPING,
                                         VM_INCOMING};
    for (size_t i = 0; i < sizeof(move) / sizeof(move[0]); i++) {
        /* the migrator refuses what it cannot move, and says why */
        assert_int_equal(drain_plan_judge(&h.p, &h.p.items[0], NODE, true, move[i]), DRAIN_MOVE);
        assert_int_equal(h.p.stayed, 0);
        assert_int_equal(h.p.failed, 0);
    }
    host_free(&h);
}

static void test_a_failed_migration_keeps_the_node_draining(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a", "b", "c"};
    add_vm(&h, "a", VM_RUNNING, 512);
    add_vm(&h, "b", VM_RUNNING, 512);
    add_vm(&h, "c", VM_RUNNING, 512);
    plan(&h, 2, names, 3);
    pump(&h);
    answer(&h, "a", "QEMU: migration failed: connection reset");
    pump(&h); /* the others go on */
    assert_int_equal(h.nstarted, 3);
    answer(&h, "b", NULL);
    answer(&h, "c", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_int_equal(h.p.failed, 1);
    assert_int_equal(h.p.migrated, 2);
    assert_string_equal(drain_plan_admin(&h.p), "draining");
    assert_int_equal(h.p.items[0].outcome, DRAIN_FAILED);
    assert_string_equal(h.p.items[0].msg, "QEMU: migration failed: connection reset");
    assert_string_equal(h.p.items[0].to, "host2"); /* where it was going */
    host_free(&h);
}

static void test_a_refused_vm_fails_and_the_drain_goes_on(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a", "b"};
    add_vm(&h, "a", VM_PAUSED, 512);
    add_vm(&h, "b", VM_RUNNING, 512);
    h.refuse = "a";
    h.refusal = "a is paused; resume it first (ferry vm resume a): a live migration moves a "
                "running VM";
    plan(&h, 1, names, 2);
    pump(&h);
    /* a failed without taking the slot; b started in it */
    assert_int_equal(h.nstarted, 1);
    assert_string_equal(started_name(&h, 0), "b");
    assert_int_equal(h.p.items[0].outcome, DRAIN_FAILED);
    assert_string_equal(h.p.items[0].msg, h.refusal);
    answer(&h, "b", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_string_equal(drain_plan_admin(&h.p), "draining");
    host_free(&h);
}

static void test_a_vm_the_host_lacks_fails(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"ghost", "real"};
    add_vm(&h, "real", VM_RUNNING, 512);
    plan(&h, 1, names, 2);
    pump(&h);
    assert_int_equal(h.nstarted, 1);
    assert_int_equal(h.p.items[0].outcome, DRAIN_FAILED);
    assert_string_equal(h.p.items[0].msg,
                        "the cluster database says host1 owns ghost, but it has no such VM");
    answer(&h, "real", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_string_equal(drain_plan_admin(&h.p), "draining");
    host_free(&h);
}

static void test_no_destination_fails_that_vm(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"big", "small"};
    add_vm(&h, "big", VM_RUNNING, 200000);
    add_vm(&h, "small", VM_RUNNING, 512);
    plan(&h, 2, names, 2);
    pump(&h);
    assert_int_equal(h.p.items[0].outcome, DRAIN_FAILED);
    assert_non_null(strstr(h.p.items[0].msg, "no up, active node has 200000 MiB free"));
    assert_int_equal(h.p.items[1].outcome, DRAIN_MIGRATING);
    host_free(&h);
}

static void test_a_busy_host_makes_the_vm_wait_for_a_slot(void **state)
{
    struct host h;
    host_init(&h);
    h.max_out = 2;
    h.others = 1; /* someone migrates a VM by hand meanwhile */
    static const char *names[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++)
        add_vm(&h, names[i], VM_RUNNING, 512);
    plan(&h, 3, names, 3);
    assert_true(pump(&h)); /* a started, then the host was full */
    assert_int_equal(h.nstarted, 1);
    assert_int_equal(h.p.items[1].outcome, DRAIN_PENDING);
    assert_int_equal(h.p.failed, 0); /* waiting is no failure */
    assert_false(drain_plan_done(&h.p));
    /* still full on the retry: b waits again, nothing is lost or skipped */
    assert_true(pump(&h));
    assert_int_equal(h.nstarted, 1);
    answer(&h, "a", NULL);
    assert_false(drain_plan_done(&h.p)); /* b and c were never taken */
    assert_true(pump(&h));               /* b starts, c waits */
    assert_int_equal(h.nstarted, 2);
    assert_string_equal(started_name(&h, 1), "b");
    h.others = 0;
    assert_false(pump(&h));
    assert_int_equal(h.nstarted, 3);
    assert_string_equal(started_name(&h, 2), "c");
    answer(&h, "b", NULL);
    answer(&h, "c", NULL);
    assert_true(drain_plan_done(&h.p));
    assert_string_equal(drain_plan_admin(&h.p), "paused");
    host_free(&h);
}

static void test_which_refusal_means_busy(void **state)
{
    struct ferr e = {0};
    assert_false(drain_plan_host_busy(NULL));
    ferr_set(&e, FERR_STATE,
             "host1 already runs 2 " MIGRATE_BUSY_WORDS "s (at most 2 at once: ferryd "
             "--max-migrations); migrate a when one has finished");
    assert_true(drain_plan_host_busy(&e));
    ferr_set(&e, FERR_STATE, "a is already migrating to host2 (ferry vm migrate --cancel a)");
    assert_false(drain_plan_host_busy(&e));
    ferr_set(&e, FERR_STATE,
             "a cannot be live-migrated from host1: this host runs QEMU 7.2.0 under TCG, whose "
             "live migration loses guest writes");
    assert_false(drain_plan_host_busy(&e));
}

static void test_a_burst_spreads_over_the_nodes(void **state)
{
    struct host h;
    host_init(&h);
    json_decref(h.nodes);
    h.nodes = json_pack("[{s:s, s:s, s:s, s:{s:i}}, {s:s, s:s, s:s, s:{s:i}}]", "name", "host2",
                        "state", "up", "admin", "active", "memory", "free_mib", 3000, "name",
                        "host3", "state", "up", "admin", "active", "memory", "free_mib", 2500);
    h.max_out = 16;
    static const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++)
        add_vm(&h, names[i], VM_RUNNING, 1024);
    plan(&h, 5, names, 5);
    pump(&h);
    /* the heartbeats still say 3000 and 2500 free: what the drain sent is taken off */
    assert_string_equal(h.p.items[0].to, "host2");        /* 3000 */
    assert_string_equal(h.p.items[1].to, "host3");        /* 2500 against 1976 */
    assert_string_equal(h.p.items[2].to, "host2");        /* 1976 against 1476 */
    assert_string_equal(h.p.items[3].to, "host3");        /* 952 against 1476 */
    assert_int_equal(h.p.items[4].outcome, DRAIN_FAILED); /* 952 and 452 left: no room */
    json_t *sent = (json_t *)drain_plan_sent(&h.p);
    assert_int_equal(json_integer_value(json_object_get(sent, "host2")), 2048);
    assert_int_equal(json_integer_value(json_object_get(sent, "host3")), 2048);
    host_free(&h);
}

static void test_the_answer(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a", "b", "c"};
    add_vm(&h, "a", VM_RUNNING, 512);
    add_vm(&h, "b", VM_RUNNING, 512);
    add_vm(&h, "c", VM_STOPPED, 512);
    plan(&h, 2, names, 3);
    pump(&h);
    answer(&h, "a", NULL);
    answer(&h, "b", "cancelled by request");
    pump(&h);
    assert_true(drain_plan_done(&h.p));
    json_t *r = drain_plan_result(&h.p, NODE, drain_plan_admin(&h.p), 4321);
    assert_non_null(r);
    json_t *want = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:[{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}, "
        "{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]}",
        "node", NODE, "admin", "draining", "parallel", 2, "total_ms", 4321, "migrated", 1, "failed",
        1, "stayed", 1, "vms", "name", "a", "outcome", "migrated", "to", "host2", "message", "",
        "total_ms", (json_int_t)900, "downtime_ms", (json_int_t)12, "bytes", (json_int_t)1 << 28,
        "passes", (json_int_t)3, "strategy", "pre-copy", "name", "b", "outcome", "failed", "to",
        "host3", "message", "cancelled by request", "name", "c", "outcome", "stayed", "to", "",
        "message", "stopped: stays here; start it after ferry node resume, or delete it");
    if (!json_equal(r, want)) {
        char *got = json_dumps(r, JSON_SORT_KEYS);
        fail_msg("drain answer: %s", got);
    }
    json_decref(want);
    json_decref(r);
    host_free(&h);
}

static void test_the_destination_comes_from_the_answer(void **state)
{
    struct host h;
    host_init(&h);
    static const char *names[] = {"a", "b"};
    plan(&h, 2, names, 2);
    struct drain_item *a = drain_plan_next(&h.p), *b = drain_plan_next(&h.p);
    drain_plan_started(&h.p, a, "host2", 512);
    drain_plan_started(&h.p, b, "host2", 512);
    drain_plan_answered(&h.p, a, NULL, json_pack("{s:s}", "to", "host3"));
    assert_string_equal(a->to, "host3");
    drain_plan_answered(&h.p, b, NULL, json_object()); /* no "to": the one asked stays */
    assert_string_equal(b->to, "host2");
    assert_int_equal(h.p.migrated, 2);
    assert_int_equal(h.p.running, 0);
    host_free(&h);
}

static void test_a_node_without_vms_is_done_at_once(void **state)
{
    struct host h;
    host_init(&h);
    plan(&h, 0, NULL, 0);
    assert_null(drain_plan_next(&h.p));
    assert_true(drain_plan_done(&h.p));
    assert_string_equal(drain_plan_admin(&h.p), "paused");
    json_t *r = drain_plan_result(&h.p, NODE, "paused", 1);
    assert_int_equal(json_array_size(json_object_get(r, "vms")), 0);
    json_decref(r);
    host_free(&h);
}

static void test_outcome_names(void **state)
{
    assert_string_equal(drain_outcome_name(DRAIN_PENDING), "pending");
    assert_string_equal(drain_outcome_name(DRAIN_MIGRATING), "migrating");
    assert_string_equal(drain_outcome_name(DRAIN_MIGRATED), "migrated");
    assert_string_equal(drain_outcome_name(DRAIN_FAILED), "failed");
    assert_string_equal(drain_outcome_name(DRAIN_STAYED), "stayed");
    assert_string_equal(drain_outcome_name((enum drain_outcome)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_vms_move_in_order_at_most_parallel_at_once),
        cmocka_unit_test(test_parallel_default_and_asked),
        cmocka_unit_test(test_stopped_and_failed_vms_stay_and_take_no_slot),
        cmocka_unit_test(test_only_a_stopped_or_failed_vm_stays),
        cmocka_unit_test(test_a_failed_migration_keeps_the_node_draining),
        cmocka_unit_test(test_a_refused_vm_fails_and_the_drain_goes_on),
        cmocka_unit_test(test_a_vm_the_host_lacks_fails),
        cmocka_unit_test(test_no_destination_fails_that_vm),
        cmocka_unit_test(test_a_busy_host_makes_the_vm_wait_for_a_slot),
        cmocka_unit_test(test_which_refusal_means_busy),
        cmocka_unit_test(test_a_burst_spreads_over_the_nodes),
        cmocka_unit_test(test_the_answer),
        cmocka_unit_test(test_the_destination_comes_from_the_answer),
        cmocka_unit_test(test_a_node_without_vms_is_done_at_once),
        cmocka_unit_test(test_outcome_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
