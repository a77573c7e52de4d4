/* SPDX-License-Identifier: MIT */
/* Unit tests of src/api/metrics.c: the /metrics page of a made-up node (its VMs, their
 * counters, its migrations) read back by the exposition format's rules. The VMs and the
 * migrator are fakes defined here; everything else is the real code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "fleet/fleet.h"
#include "fleet/tasks.h"
#include "migrate/migrate.h"

/* ---- the fakes: a VM set and a migrator ---- */

struct vm {
    enum vm_state state;
    struct vm_spec spec;
    struct vm_stats stats;
};

struct vmset {
    struct vm *vms;
    unsigned n;
};

struct migrator {
    struct migrate_stats stats;
};

/* The fleet's failover figures (fleet.h). */
struct fleet {
    struct fleet_failover_stats st;
    bool fenced;
};

void fleet_failover_stats(const struct fleet *f, struct fleet_failover_stats *out)
{
    *out = f->st;
}

/* No cluster here: cluster_part renders nothing. */
int cluster_metrics(struct cluster *c, struct cluster_metrics *out)
{
    (void)c;
    memset(out, 0, sizeof(*out));
    return -1;
}

json_t *cluster_nodes(struct cluster *c)
{
    (void)c;
    return NULL;
}

const struct cdb *cluster_db(const struct cluster *c)
{
    (void)c;
    return NULL;
}

json_t *cdb_vms(const struct cdb *db, const char *owner)
{
    (void)db;
    (void)owner;
    return NULL;
}

bool fleet_fenced(const struct fleet *f)
{
    return f->fenced;
}

const char *vm_name(const struct vm *vm)
{
    return vm->spec.name;
}

enum vm_state vm_state(const struct vm *vm)
{
    return vm->state;
}

const struct vm_spec *vm_spec(const struct vm *vm)
{
    return &vm->spec;
}

void vm_stats_get(const struct vm *vm, struct vm_stats *out)
{
    *out = vm->stats;
}

void vmset_foreach(struct vmset *set, void (*fn)(struct vm *vm, void *data), void *data)
{
    for (unsigned i = 0; i < set->n; i++)
        fn(&set->vms[i], data);
}

unsigned vmset_count(const struct vmset *set)
{
    return set->n;
}

uint64_t vmset_allocated_mib(const struct vmset *set)
{
    return 4242;
}

void migrator_stats(const struct migrator *m, struct migrate_stats *out)
{
    *out = m->stats;
}

/* The cluster's running tasks: two migrations and a drain. */
struct tasks {
    int unused;
};

json_t *tasks_list(struct tasks *t, const struct taskrec_filter *f)
{
    (void)t;
    assert_string_equal(f->state, "running");
    return json_pack("[{ss}, {ss}, {ss}]", "kind", "migrate", "kind", "drain", "kind", "migrate");
}

/* One migration under way: db, to host2, 12.5 s in, 3 MiB still to send. */
json_t *migrate_progress(struct migrator *m, const char *name)
{
    (void)m;
    if (strcmp(name, "db") != 0)
        return NULL;
    return json_pack("{ss ss sI s{sI}}", "vm", "db", "to", "host2", "elapsed_ms", (json_int_t)12500,
                     "memory", "remaining", (json_int_t)3145728);
}

const char *migrate_outcome_name(enum migrate_outcome o)
{
    static const char *names[] = {"completed", "failed", "cancelled"};
    return names[o];
}

/* The volumes this node sees: one reached directly, one not. */
json_t *volumes_local_view(struct volumes *v)
{
    (void)v;
    return json_pack("[{ss ss ss sI ss sI sI s{sI sI}}, {ss ss ss sI ss sI sI s{}}]", "name",
                     "csv1", "path", "/srv/csv1", "coordinator", "host1", "epoch", (json_int_t)3,
                     "access", "direct", "size_bytes", (json_int_t)1000000, "free_bytes",
                     (json_int_t)400, "leases", "host1", (json_int_t)250, "host2", (json_int_t)7500,
                     "name", "csv2", "path", "/srv/csv2", "coordinator", "host2", "epoch",
                     (json_int_t)1, "access", "none", "size_bytes", (json_int_t)0, "free_bytes",
                     (json_int_t)0, "leases");
}

/* ---- the node ---- */

#define NVMS 6

struct node {
    struct vm vms[NVMS];
    struct vmset set;
    struct migrator mig;
    struct fleet fleet;
    struct api_ctx ctx;
    char *text;
};

static void vm_init(struct vm *vm, const char *name, enum vm_state st, unsigned vcpus, uint64_t mib)
{
    memset(vm, 0, sizeof(*vm));
    snprintf(vm->spec.name, sizeof(vm->spec.name), "%s", name);
    vm->spec.sockets = 1;
    vm->spec.cores = vcpus;
    vm->spec.threads = 1;
    vm->spec.memory_mib = mib;
    vm->state = st;
}

static int node_setup(void **state)
{
    struct node *n = calloc(1, sizeof(*n));
    vm_init(&n->vms[0], "db", VM_RUNNING, 2, 1024);
    n->vms[0].spec.ha.enabled = true;
    snprintf(n->vms[0].spec.ha.priority, sizeof(n->vms[0].spec.ha.priority), "high");
    n->vms[0].stats.cpu_seconds = 12.5;
    n->vms[0].stats.ndisks = 2;
    n->vms[0].stats.disks[0].rd_bytes = 100;
    n->vms[0].stats.disks[0].wr_bytes = 200;
    n->vms[0].stats.disks[0].rd_ops = 3;
    n->vms[0].stats.disks[0].wr_ops = 4;
    n->vms[0].stats.disks[1].rd_bytes = 5000000000ull;
    n->vms[0].stats.nnics = 1;
    snprintf(n->vms[0].stats.nics[0].tap, sizeof(n->vms[0].stats.nics[0].tap), "fy0a1b2c3d0");
    n->vms[0].stats.nics[0].rx_bytes = 77;
    n->vms[0].stats.nics[0].tx_bytes = 88;
    vm_init(&n->vms[1], "web", VM_PAUSED, 1, 512);
    vm_init(&n->vms[2], "old", VM_STOPPED, 4, 2048);
    vm_init(&n->vms[3], "broken", VM_FAILED, 1, 256);
    vm_init(&n->vms[4], "boot", VM_STARTING, 1, 256);
    vm_init(&n->vms[5], "arriving", VM_INCOMING, 1, 256); /* a migration's destination */
    n->set = (struct vmset){n->vms, NVMS};

    struct migrate_stats *st = &n->mig.stats;
    st->outcomes[MIGRATE_COMPLETED] = 4;
    st->outcomes[MIGRATE_FAILED] = 1;
    /* blackouts of 5 ms, 40 ms, 40 ms and 90 s (over the last bound: +Inf only) */
    st->blackout.buckets[0] = 1;
    st->blackout.buckets[2] = 2;
    st->blackout.buckets[MIGRATE_HIST_N] = 1;
    st->blackout.count = 4;
    st->blackout.sum_s = 90.085;

    n->ctx.vms = &n->set;
    n->ctx.migrator = &n->mig;
    static struct tasks tasks;
    n->ctx.tasks = &tasks;
    /* failovers that ended here: 3 s and 9 s, and one of 200 s (over the last bound) */
    n->fleet.fenced = true;
    n->fleet.st.adopted = 4;
    n->fleet.st.started.buckets[1] = 1;
    n->fleet.st.started.buckets[4] = 1;
    n->fleet.st.started.count = 3;
    n->fleet.st.started.sum_s = 212;
    n->fleet.st.net.buckets[2] = 2;
    n->fleet.st.net.count = 2;
    n->fleet.st.net.sum_s = 11.5;
    n->ctx.fleet = &n->fleet;
    n->ctx.node_name = "host1";
    n->ctx.accel = "tcg";
    n->ctx.version = "0.1.0";
    *state = n;
    return 0;
}

static int node_teardown(void **state)
{
    struct node *n = *state;
    free(n->text);
    free(n);
    return 0;
}

static char *render(struct node *n)
{
    size_t len = 0;
    free(n->text);
    n->text = NULL;
    assert_int_equal(metrics_render(&n->ctx, &n->text, &len), 0);
    assert_int_equal(strlen(n->text), len);
    return n->text;
}

/* The value of the sample `series` (name and labels exactly as written), or fails. */
static double value_of(const char *text, const char *series)
{
    char key[512];
    snprintf(key, sizeof(key), "\n%s ", series);
    const char *p = strstr(text, key);
    if (!p)
        fail_msg("no sample %s in:\n%s", series, text);
    if (strstr(p + 1, key))
        fail_msg("sample %s twice", series);
    return strtod(p + strlen(key), NULL);
}

/* ---- the format's rules ---- */

/*
 * Every line is a HELP, a TYPE or a sample; a family has one HELP and one TYPE, before its
 * samples, which all come together; a sample's value is a number; no series appears twice;
 * counters are named *_total; a histogram has _bucket, _sum and _count only, its buckets do
 * not decrease and its +Inf bucket equals its _count.
 */
static void check_format(const char *text)
{
    char family[128] = "", type[16] = "", seen[64][128];
    unsigned nseen = 0;
    double last_bucket = -1, inf = -1, count = -2;
    char *copy = strdup(text), *save = NULL;
    json_t *series = json_object();
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128], rest[512];
        if (sscanf(line, "# HELP %127s %511[^\n]", name, rest) == 2) {
            if (strcmp(type, "histogram") == 0 && inf != count)
                fail_msg("%s: +Inf bucket %g, count %g", family, inf, count);
            for (unsigned i = 0; i < nseen; i++)
                if (strcmp(seen[i], name) == 0)
                    fail_msg("family %s declared twice", name);
            assert_true(nseen < 64);
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
            snprintf(family, sizeof(family), "%s", name);
            type[0] = '\0';
            last_bucket = -1;
            inf = -1;
            count = -2;
            continue;
        }
        if (sscanf(line, "# TYPE %127s %15s", name, type) == 2) {
            assert_string_equal(name, family);
            assert_true(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0) {
                size_t l = strlen(name);
                assert_true(l > 6 && strcmp(name + l - 6, "_total") == 0);
            }
            continue;
        }
        assert_true(line[0] != '#');
        assert_true(type[0] != '\0'); /* a sample after its family's TYPE */
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        double v = strtod(sp + 1, &end);
        if (*end != '\0' || end == sp + 1)
            fail_msg("not a number: %s", line);
        char id[512];
        snprintf(id, sizeof(id), "%.*s", (int)(sp - line), line);
        if (json_object_get(series, id))
            fail_msg("series twice: %s", id);
        json_object_set_new(series, id, json_true());
        size_t nl = strcspn(id, "{");
        snprintf(name, sizeof(name), "%.*s", (int)nl, id);
        if (strcmp(type, "histogram") != 0) {
            if (strcmp(name, family) != 0)
                fail_msg("sample %s under family %s", name, family);
            continue;
        }
        size_t fl = strlen(family);
        assert_true(strncmp(name, family, fl) == 0);
        const char *suffix = name + fl;
        if (strcmp(suffix, "_bucket") == 0) {
            assert_true(v >= last_bucket); /* cumulative */
            last_bucket = v;
            if (strstr(id, "le=\"+Inf\""))
                inf = v;
        } else if (strcmp(suffix, "_count") == 0) {
            count = v;
        } else if (strcmp(suffix, "_sum") != 0) {
            fail_msg("histogram %s has a sample %s", family, name);
        }
    }
    if (strcmp(type, "histogram") == 0 && inf != count)
        fail_msg("%s: +Inf bucket %g, count %g", family, inf, count);
    json_decref(series);
    free(copy);
}

static void test_the_page_follows_the_format(void **state)
{
    struct node *n = *state;
    check_format(render(n));
}

static void test_the_node(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    assert_int_equal(value_of(t, "ferry_up{node=\"host1\",accel=\"tcg\",version=\"0.1.0\"}"), 1);
    assert_int_equal(value_of(t, "ferry_node_vms"), NVMS);
    assert_int_equal(value_of(t, "ferry_node_memory_allocated_bytes"), 4242.0 * 1024 * 1024);
    /* the host's memory as this host reads it */
    assert_true(value_of(t, "ferry_node_memory_total_bytes") > 0);
    assert_true(value_of(t, "ferry_node_memory_available_bytes") <=
                value_of(t, "ferry_node_memory_total_bytes"));
}

/* Every VM is in exactly one state, and it is the one the page says. */
static void test_one_state_per_vm(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    for (unsigned i = 0; i < NVMS; i++) {
        const struct vm *vm = &n->vms[i];
        unsigned ones = 0;
        for (int s = 0; s < VM_STATES; s++) {
            char series[256];
            snprintf(series, sizeof(series), "ferry_vm_state{vm=\"%s\",state=\"%s\"}",
                     vm->spec.name, vm_state_name((enum vm_state)s));
            double v = value_of(t, series); /* every state has its sample */
            assert_true(v == 0 || v == 1);
            ones += v == 1;
        }
        char own[256];
        snprintf(own, sizeof(own), "ferry_vm_state{vm=\"%s\",state=\"%s\"}", vm->spec.name,
                 vm_state_name(vm->state));
        assert_int_equal(value_of(t, own), 1);
        assert_int_equal(ones, 1);
    }
    /* and one info series each: its node and HA priority */
    assert_int_equal(value_of(t, "ferry_vm_info{vm=\"db\",node=\"host1\",ha=\"high\"}"), 1);
    assert_int_equal(value_of(t, "ferry_vm_info{vm=\"web\",node=\"host1\",ha=\"off\"}"), 1);
}

static void test_vm_figures(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    assert_int_equal(value_of(t, "ferry_vm_memory_bytes{vm=\"db\"}"), 1024.0 * 1024 * 1024);
    assert_int_equal(value_of(t, "ferry_vm_memory_bytes{vm=\"old\"}"), 2048.0 * 1024 * 1024);
    assert_int_equal(value_of(t, "ferry_vm_vcpus{vm=\"db\"}"), 2);
    assert_int_equal(value_of(t, "ferry_vm_vcpus{vm=\"old\"}"), 4);
    assert_true(value_of(t, "ferry_vm_cpu_seconds_total{vm=\"db\"}") == 12.5);
    assert_int_equal(value_of(t, "ferry_vm_disk_read_bytes_total{vm=\"db\",disk=\"disk0\"}"), 100);
    assert_int_equal(value_of(t, "ferry_vm_disk_write_bytes_total{vm=\"db\",disk=\"disk0\"}"), 200);
    assert_int_equal(value_of(t, "ferry_vm_disk_read_ops_total{vm=\"db\",disk=\"disk0\"}"), 3);
    assert_int_equal(value_of(t, "ferry_vm_disk_write_ops_total{vm=\"db\",disk=\"disk0\"}"), 4);
    assert_true(value_of(t, "ferry_vm_disk_read_bytes_total{vm=\"db\",disk=\"disk1\"}") ==
                5000000000.0);
    /* the guest's view of its NIC */
    assert_int_equal(value_of(t, "ferry_vm_net_rx_bytes_total{vm=\"db\",nic=\"fy0a1b2c3d0\"}"), 77);
    assert_int_equal(value_of(t, "ferry_vm_net_tx_bytes_total{vm=\"db\",nic=\"fy0a1b2c3d0\"}"), 88);
    /* a VM without disks or NICs has no such samples */
    assert_null(strstr(t, "disk_read_bytes_total{vm=\"web\""));
    assert_null(strstr(t, "net_rx_bytes_total{vm=\"web\""));
}

static void test_failovers(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    assert_int_equal(value_of(t, "ferry_node_fenced"), 1);
    assert_int_equal(value_of(t, "ferry_failovers_adopted_total"), 4);
    static const struct {
        const char *le;
        int cum;
    } want[] = {{"2", 0}, {"4", 1}, {"8", 1}, {"10", 2}, {"120", 2}, {"+Inf", 3}};
    char s[128];
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(s, sizeof(s), "ferry_failover_seconds_bucket{le=\"%s\"}", want[i].le);
        assert_int_equal(value_of(t, s), want[i].cum);
    }
    assert_int_equal(value_of(t, "ferry_failover_seconds_count"), 3);
    assert_true(value_of(t, "ferry_failover_seconds_sum") == 212);
    assert_int_equal(value_of(t, "ferry_failover_guest_net_seconds_bucket{le=\"4\"}"), 0);
    assert_int_equal(value_of(t, "ferry_failover_guest_net_seconds_bucket{le=\"6\"}"), 2);
    assert_int_equal(value_of(t, "ferry_failover_guest_net_seconds_count"), 2);
    assert_true(value_of(t, "ferry_failover_guest_net_seconds_sum") == 11.5);
}

static void test_migrations(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    assert_int_equal(value_of(t, "ferry_migrations_total{status=\"completed\"}"), 4);
    assert_int_equal(value_of(t, "ferry_migrations_total{status=\"failed\"}"), 1);
    assert_int_equal(value_of(t, "ferry_migrations_total{status=\"cancelled\"}"), 0);
    const char *h = "ferry_migration_blackout_seconds";
    char s[128];
    static const struct {
        const char *le;
        int cum;
    } want[] = {{"0.01", 1}, {"0.025", 1}, {"0.05", 3}, {"0.1", 3}, {"60", 3}, {"+Inf", 4}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(s, sizeof(s), "%s_bucket{le=\"%s\"}", h, want[i].le);
        assert_int_equal(value_of(t, s), want[i].cum);
    }
    snprintf(s, sizeof(s), "%s_count", h);
    assert_int_equal(value_of(t, s), 4);
    snprintf(s, sizeof(s), "%s_sum", h);
    assert_true(value_of(t, s) == 90.085);
    /* no migration yet: every bucket 0 */
    assert_int_equal(value_of(t, "ferry_migration_total_seconds_bucket{le=\"+Inf\"}"), 0);
    assert_int_equal(value_of(t, "ferry_migration_client_gap_seconds_count"), 0);
    /* the one under way, and no series for the VMs that do not migrate */
    assert_true(value_of(t, "ferry_migration_elapsed_seconds{vm=\"db\",to=\"host2\"}") == 12.5);
    assert_int_equal(value_of(t, "ferry_migration_remaining_bytes{vm=\"db\",to=\"host2\"}"),
                     3145728);
    assert_null(strstr(t, "ferry_migration_elapsed_seconds{vm=\"web\""));
    assert_int_equal(value_of(t, "ferry_tasks_running{kind=\"migrate\"}"), 2);
    assert_int_equal(value_of(t, "ferry_tasks_running{kind=\"drain\"}"), 1);
    assert_int_equal(value_of(t, "ferry_tasks_running{kind=\"failover\"}"), 0);
}

static void test_volumes(void **state)
{
    struct node *n = *state;
    const char *t = render(n);
    check_format(t);
    assert_int_equal(
        value_of(t, "ferry_csv_info{csv=\"csv1\",path=\"/srv/csv1\",coordinator=\"host1\"}"), 1);
    assert_int_equal(value_of(t, "ferry_csv_epoch{csv=\"csv1\"}"), 3);
    assert_int_equal(value_of(t, "ferry_csv_access{csv=\"csv1\",access=\"direct\"}"), 1);
    assert_int_equal(value_of(t, "ferry_csv_access{csv=\"csv1\",access=\"none\"}"), 0);
    assert_int_equal(value_of(t, "ferry_csv_access{csv=\"csv2\",access=\"none\"}"), 1);
    assert_int_equal(value_of(t, "ferry_csv_access{csv=\"csv2\",access=\"direct\"}"), 0);
    assert_int_equal(value_of(t, "ferry_csv_size_bytes{csv=\"csv1\"}"), 1000000);
    assert_int_equal(value_of(t, "ferry_csv_free_bytes{csv=\"csv1\"}"), 400);
    assert_true(value_of(t, "ferry_csv_lease_age_seconds{csv=\"csv1\",node=\"host1\"}") == 0.25);
    assert_true(value_of(t, "ferry_csv_lease_age_seconds{csv=\"csv1\",node=\"host2\"}") == 7.5);
}

static void test_label_values_are_escaped_on_the_page(void **state)
{
    struct node *n = *state;
    n->ctx.node_name = "a \"quoted\\\" name"; /* ferryd allows none, but the page stays valid */
    const char *t = render(n);
    check_format(t);
    assert_int_equal(
        value_of(t, "ferry_up{node=\"a \\\"quoted\\\\\\\" name\",accel=\"tcg\",version=\"0.1.0\"}"),
        1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_the_page_follows_the_format, node_setup,
                                        node_teardown),
        cmocka_unit_test_setup_teardown(test_the_node, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_one_state_per_vm, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_vm_figures, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_migrations, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_failovers, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_volumes, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_label_values_are_escaped_on_the_page, node_setup,
                                        node_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
