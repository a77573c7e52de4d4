/* SPDX-License-Identifier: MIT */
/* GET /metrics: the node and its VMs in Prometheus text exposition format 0.0.4. */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promtext.h"
#include "cluster/cdb.h"
#include "cluster/cluster.h"
#include "common/util.h"
#include "host/host.h"
#include "common/jsonfield.h"
#include "fleet/fleet.h"
#include "fleet/tasks.h"
#include "fleet/volumes.h"
#include "migrate/migrate.h"

/* One family of per-VM metrics, for every VM. */
struct pass {
    struct promtext *o;
    int what;
    const struct api_ctx *ctx;
};

enum {
    M_INFO,
    M_STATE,
    M_MIG_ELAPSED,
    M_MIG_REMAINING,
    M_MEM,
    M_VCPU,
    M_CPU,
    M_DISK_RB,
    M_DISK_WB,
    M_DISK_RO,
    M_DISK_WO,
    M_NET_RX,
    M_NET_TX
};

static void one_vm(struct vm *vm, void *data)
{
    struct pass *p = data;
    struct promtext *o = p->o;
    const char *n = vm_name(vm);
    struct vm_stats st;
    switch (p->what) {
    case M_INFO: {
        const struct vm_ha *ha = &vm_spec(vm)->ha;
        promtext_sample(o, "ferry_vm_info",
                        (struct promtext_label[]){{"vm", n},
                                                  {"node", p->ctx->node_name},
                                                  {"ha", ha->enabled ? ha->priority : "off"}},
                        3, "1");
        return;
    }
    case M_MIG_ELAPSED:
    case M_MIG_REMAINING: {
        json_t *g = migrate_progress(p->ctx->migrator, n);
        if (!g)
            return;
        json_t *mem = json_object_get(g, "memory");
        if (p->what == M_MIG_ELAPSED)
            promtext_sample(o, "ferry_migration_elapsed_seconds",
                            (struct promtext_label[]){{"vm", n}, {"to", jfield_text(g, "to")}}, 2,
                            "%.3f",
                            (double)json_integer_value(json_object_get(g, "elapsed_ms")) / 1e3);
        else
            promtext_sample(o, "ferry_migration_remaining_bytes",
                            (struct promtext_label[]){{"vm", n}, {"to", jfield_text(g, "to")}}, 2,
                            "%lld",
                            (long long)json_integer_value(json_object_get(mem, "remaining")));
        json_decref(g);
        return;
    }
    case M_STATE:
        for (int s = 0; s < VM_STATES; s++)
            promtext_sample(o, "ferry_vm_state",
                            (struct promtext_label[]){{"vm", n}, {"state", vm_state_name(s)}}, 2,
                            "%d", vm_state(vm) == (enum vm_state)s);
        return;
    case M_MEM:
        promtext_sample(o, "ferry_vm_memory_bytes", &(struct promtext_label){"vm", n}, 1, "%llu",
                        (unsigned long long)vm_spec(vm)->memory_mib * 1024 * 1024);
        return;
    case M_VCPU:
        promtext_sample(o, "ferry_vm_vcpus", &(struct promtext_label){"vm", n}, 1, "%u",
                        vm_spec_vcpus(vm_spec(vm)));
        return;
    default:
        break;
    }
    vm_stats_get(vm, &st);
    switch (p->what) {
    case M_CPU:
        promtext_sample(o, "ferry_vm_cpu_seconds_total", &(struct promtext_label){"vm", n}, 1,
                        "%.2f", st.cpu_seconds);
        return;
    case M_DISK_RB:
    case M_DISK_WB:
    case M_DISK_RO:
    case M_DISK_WO:
        for (unsigned i = 0; i < st.ndisks; i++) {
            static const char *names[] = {
                "ferry_vm_disk_read_bytes_total", "ferry_vm_disk_write_bytes_total",
                "ferry_vm_disk_read_ops_total", "ferry_vm_disk_write_ops_total"};
            uint64_t v = p->what == M_DISK_RB   ? st.disks[i].rd_bytes
                         : p->what == M_DISK_WB ? st.disks[i].wr_bytes
                         : p->what == M_DISK_RO ? st.disks[i].rd_ops
                                                : st.disks[i].wr_ops;
            char disk[16];
            snprintf(disk, sizeof(disk), "disk%u", i);
            promtext_sample(o, names[p->what - M_DISK_RB],
                            (struct promtext_label[]){{"vm", n}, {"disk", disk}}, 2, "%llu",
                            (unsigned long long)v);
        }
        return;
    case M_NET_RX:
    case M_NET_TX:
        for (unsigned i = 0; i < st.nnics; i++)
            promtext_sample(
                o,
                p->what == M_NET_RX ? "ferry_vm_net_rx_bytes_total" : "ferry_vm_net_tx_bytes_total",
                (struct promtext_label[]){{"vm", n}, {"nic", st.nics[i].tap}}, 2, "%llu",
                (unsigned long long)(p->what == M_NET_RX ? st.nics[i].rx_bytes
                                                         : st.nics[i].tx_bytes));
        return;
    }
}

static void histogram(struct promtext *o, const char *name, const char *text,
                      const struct migrate_hist *h)
{
    static const double bounds[MIGRATE_HIST_N] = MIGRATE_HIST_BOUNDS;
    promtext_histogram(o, name, text, bounds, h->buckets, MIGRATE_HIST_N, h->count, h->sum_s);
}

/* Migrations this node ran as source (src/migrate/). */
static void migrations(struct promtext *o, const struct api_ctx *ctx)
{
    struct migrate_stats st;
    migrator_stats(ctx->migrator, &st);
    promtext_help(o, "ferry_migrations_total", "counter",
                  "live migrations this node ran as source");
    for (unsigned i = 0; i < MIGRATE_OUTCOMES; i++)
        promtext_sample(o, "ferry_migrations_total",
                        &(struct promtext_label){"status", migrate_outcome_name(i)}, 1, "%llu",
                        (unsigned long long)st.outcomes[i]);
    histogram(o, "ferry_migration_blackout_seconds",
              "QEMU's downtime of completed migrations this node ran as source", &st.blackout);
    histogram(o, "ferry_migration_total_seconds",
              "total time of completed migrations this node ran as source", &st.total);
    histogram(o, "ferry_migration_client_gap_seconds",
              "client-observed gaps recorded on migrations through this node's API",
              &st.client_gap);
}

/* Failover on this node (src/fleet/). */
static void failovers(struct promtext *o, const struct api_ctx *ctx)
{
    if (!ctx->fleet)
        return;
    struct fleet_failover_stats st;
    fleet_failover_stats(ctx->fleet, &st);
    static const double bounds[FLEET_FAILOVER_HIST_N] = FLEET_FAILOVER_HIST_BOUNDS;
    promtext_help(o, "ferry_node_fenced", "gauge",
                  "1 while this node, without quorum, has fenced itself");
    promtext_sample(o, "ferry_node_fenced", NULL, 0, "%d", fleet_fenced(ctx->fleet) ? 1 : 0);
    promtext_help(o, "ferry_failovers_adopted_total", "counter",
                  "VMs a failover gave this node that it started");
    promtext_sample(o, "ferry_failovers_adopted_total", NULL, 0, "%llu",
                    (unsigned long long)st.adopted);
    promtext_histogram(o, "ferry_failover_seconds",
                       "dead node's last heartbeat heard to the VM's QEMU started here", bounds,
                       st.started.buckets, FLEET_FAILOVER_HIST_N, st.started.count,
                       st.started.sum_s);
    promtext_histogram(o, "ferry_failover_guest_net_seconds",
                       "dead node's last heartbeat heard to the VM's guest sending its first "
                       "packet here",
                       bounds, st.net.buckets, FLEET_FAILOVER_HIST_N, st.net.count, st.net.sum_s);
}

/* The cluster as this node sees it (Raft, node health), and on the leader the HA VMs of the
 * whole cluster: one series each, so that an alert can name them (contrib/prometheus). */
static void cluster_part(struct promtext *o, const struct api_ctx *ctx)
{
    struct cluster_metrics cm;
    if (!ctx->cluster || cluster_metrics(ctx->cluster, &cm) < 0)
        return;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"ferry_cluster_has_leader", "gauge", "1 while this node knows a leader"},
        {"ferry_cluster_is_leader", "gauge", "1 while this node leads"},
        {"ferry_cluster_quorum", "gauge", "1 while this node hears a leader recently, or leads"},
        {"ferry_cluster_members", "gauge", "members of the Raft configuration"},
        {"ferry_cluster_voters", "gauge", "voting members"},
        {"ferry_cluster_term", "gauge", "the Raft term"},
        {"ferry_cluster_commit_index", "gauge", "the highest log entry known committed"},
        {"ferry_cluster_leader_changes_total", "counter",
         "changes of the leader this node knows, since ferryd started"},
    };
    unsigned long long v[] = {cm.has_leader,
                              cm.leading,
                              cm.quorum,
                              cm.members,
                              cm.voters,
                              (unsigned long long)cm.term,
                              (unsigned long long)cm.commit_index,
                              (unsigned long long)cm.leader_changes};
    for (size_t i = 0; i < ARRAY_SIZE(fam); i++) {
        promtext_help(o, fam[i].name, fam[i].type, fam[i].help);
        promtext_sample(o, fam[i].name, NULL, 0, "%llu", v[i]);
    }
    json_t *nodes = cluster_nodes(ctx->cluster);
    json_t *list = json_object_get(nodes, "nodes"), *n;
    size_t i;
    promtext_help(o, "ferry_cluster_node_up", "gauge",
                  "1 for each node the cluster's health check calls up, 0 down");
    json_t *up = json_object(); /* name -> true for up nodes, for the HA VMs below */
    json_array_foreach(list, i, n)
    {
        bool is_up = strcmp(jfield_text(n, "state"), "up") == 0;
        promtext_sample(o, "ferry_cluster_node_up",
                        &(struct promtext_label){"node", jfield_text(n, "name")}, 1, "%d", is_up);
        if (is_up)
            json_object_set_new(up, jfield_text(n, "name"), json_true());
    }
    promtext_help(o, "ferry_cluster_node_heartbeat_late_seconds", "gauge",
                  "how late each node's heartbeats came, the most in the last 1-2 minutes, as "
                  "this node heard them");
    json_array_foreach(list, i, n)
    {
        json_t *late = json_object_get(n, "heartbeat_late_ms");
        if (json_is_integer(late))
            promtext_sample(o, "ferry_cluster_node_heartbeat_late_seconds",
                            &(struct promtext_label){"node", jfield_text(n, "name")}, 1, "%.3f",
                            (double)json_integer_value(late) / 1000.0);
    }
    json_decref(nodes);
    promtext_help(o, "ferry_cluster_ha_vm_running", "gauge",
                  "on the leader only: 1 for each HA VM that runs on an up node, 0 for one that "
                  "should and does not");
    json_t *vms = cm.leading ? cdb_vms(cluster_db(ctx->cluster), NULL) : NULL;
    json_t *r;
    json_array_foreach(vms, i, r)
    {
        json_t *ha = json_object_get(json_object_get(r, "spec"), "ha");
        const char *state = jfield_text(r, "state"), *owner = jfield_text(r, "owner");
        /* a stopped HA VM was stopped on purpose; priority none is never started by HA */
        if (!json_is_object(ha) || strcmp(jfield_text(ha, "priority"), "none") == 0 ||
            strcmp(state, "stopped") == 0)
            continue;
        promtext_sample(o, "ferry_cluster_ha_vm_running",
                        (struct promtext_label[]){{"vm", jfield_text(r, "name")}, {"owner", owner}},
                        2, "%d",
                        strcmp(state, "running") == 0 && json_is_true(json_object_get(up, owner)));
    }
    json_decref(vms);
    json_decref(up);
}

/* The cluster's shared volumes as this node sees them (src/fleet/volumes.c). */
static void volumes(struct promtext *o, const struct api_ctx *ctx)
{
    static const char *const accesses[] = {"direct", "none", "unknown"};
    json_t *view = volumes_local_view(ctx->volumes);
    size_t i;
    json_t *c;
    promtext_help(o, "ferry_csv_info", "gauge",
                  "1 per cluster shared volume, with its path and coordinator");
    json_array_foreach(view, i, c)
    {
        promtext_sample(o, "ferry_csv_info",
                        (struct promtext_label[]){
                            {"csv", json_string_value(json_object_get(c, "name"))},
                            {"path", json_string_value(json_object_get(c, "path"))},
                            {"coordinator", json_string_value(json_object_get(c, "coordinator"))}},
                        3, "1");
    }
    promtext_help(o, "ferry_csv_epoch", "gauge", "the volume's coordinator epoch");
    json_array_foreach(view, i, c)
    {
        promtext_sample(
            o, "ferry_csv_epoch",
            &(struct promtext_label){"csv", json_string_value(json_object_get(c, "name"))}, 1,
            "%lld", (long long)json_integer_value(json_object_get(c, "epoch")));
    }
    promtext_help(o, "ferry_csv_access", "gauge", "1 for how this node reaches the volume");
    json_array_foreach(view, i, c)
    {
        const char *a = json_string_value(json_object_get(c, "access"));
        for (size_t k = 0; k < ARRAY_SIZE(accesses); k++)
            promtext_sample(
                o, "ferry_csv_access",
                (struct promtext_label[]){{"csv", json_string_value(json_object_get(c, "name"))},
                                          {"access", accesses[k]}},
                2, "%d", a && strcmp(a, accesses[k]) == 0);
    }
    static const char *const sizes[][2] = {{"size_bytes", "ferry_csv_size_bytes"},
                                           {"free_bytes", "ferry_csv_free_bytes"}};
    for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
        promtext_help(o, sizes[k][1], "gauge",
                      k == 0 ? "the volume's size as this node sees it"
                             : "space on the volume free for ferry, as this node sees it");
        json_array_foreach(view, i, c)
        {
            promtext_sample(
                o, sizes[k][1],
                &(struct promtext_label){"csv", json_string_value(json_object_get(c, "name"))}, 1,
                "%lld", (long long)json_integer_value(json_object_get(c, sizes[k][0])));
        }
    }
    promtext_help(o, "ferry_csv_lease_age_seconds", "gauge",
                  "how long ago each node's lease on the volume last moved, as this node read it");
    json_array_foreach(view, i, c)
    {
        const char *node;
        json_t *age;
        json_object_foreach(json_object_get(c, "leases"), node, age)
        {
            promtext_sample(
                o, "ferry_csv_lease_age_seconds",
                (struct promtext_label[]){{"csv", json_string_value(json_object_get(c, "name"))},
                                          {"node", node}},
                2, "%.3f", (double)json_integer_value(age) / 1000.0);
        }
    }
    json_decref(view);
}

/* The tasks running in the cluster (or on this host), by kind (src/fleet/tasks.c). */
static void tasks_part(struct promtext *o, const struct api_ctx *ctx)
{
    static const char *const kinds[] = {"migrate", "drain", "storage-move", "failover", "import"};
    if (!ctx->tasks)
        return;
    struct taskrec_filter f = {.state = "running"};
    json_t *running = tasks_list(ctx->tasks, &f), *r;
    size_t i;
    promtext_help(o, "ferry_tasks_running", "gauge",
                  "tasks running in the cluster as this node knows them, by kind");
    for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
        unsigned n = 0;
        json_array_foreach(running, i, r) n += strcmp(jfield_text(r, "kind"), kinds[k]) == 0;
        promtext_sample(o, "ferry_tasks_running", &(struct promtext_label){"kind", kinds[k]}, 1,
                        "%u", n);
    }
    json_decref(running);
}

int metrics_render(struct api_ctx *ctx, char **out_text, size_t *len)
{
    struct promtext o;
    if (promtext_init(&o) < 0)
        return -ENOMEM;
    struct host_info h;
    if (host_info_read(&h, NULL) < 0)
        h = ctx->host;
    promtext_help(&o, "ferry_up", "gauge", "1 while ferryd serves");
    promtext_sample(&o, "ferry_up",
                    (struct promtext_label[]){
                        {"node", ctx->node_name}, {"accel", ctx->accel}, {"version", ctx->version}},
                    3, "1");
    promtext_help(&o, "ferry_node_memory_total_bytes", "gauge", "host memory");
    promtext_sample(&o, "ferry_node_memory_total_bytes", NULL, 0, "%llu",
                    (unsigned long long)h.mem_total_mib * 1024 * 1024);
    promtext_help(&o, "ferry_node_memory_available_bytes", "gauge", "host memory available");
    promtext_sample(&o, "ferry_node_memory_available_bytes", NULL, 0, "%llu",
                    (unsigned long long)h.mem_avail_mib * 1024 * 1024);
    promtext_help(&o, "ferry_node_memory_allocated_bytes", "gauge", "memory of VMs that run here");
    promtext_sample(&o, "ferry_node_memory_allocated_bytes", NULL, 0, "%llu",
                    (unsigned long long)vmset_allocated_mib(ctx->vms) * 1024 * 1024);
    promtext_help(&o, "ferry_node_cpus", "gauge", "online logical CPUs of this node");
    promtext_sample(&o, "ferry_node_cpus", NULL, 0, "%u", h.cpus);
    struct host_load hl;
    if (host_load_read(&hl, NULL) == 0) {
        static const char *const load[] = {"ferry_node_load1", "ferry_node_load5",
                                           "ferry_node_load15"};
        static const char *const help[] = {"load average over 1 minute",
                                           "load average over 5 minutes",
                                           "load average over 15 minutes"};
        for (int i = 0; i < 3; i++) {
            promtext_help(&o, load[i], "gauge", help[i]);
            promtext_sample(&o, load[i], NULL, 0, "%.2f", hl.load[i]);
        }
        promtext_help(&o, "ferry_node_cpu_seconds_total", "counter",
                      "CPU time of all CPUs since boot, busy (user, nice, system, irq, softirq, "
                      "steal) or idle (idle, iowait)");
        promtext_sample(&o, "ferry_node_cpu_seconds_total",
                        (struct promtext_label[]){{"mode", "busy"}}, 1, "%.2f", hl.busy_s);
        promtext_sample(&o, "ferry_node_cpu_seconds_total",
                        (struct promtext_label[]){{"mode", "idle"}}, 1, "%.2f",
                        hl.total_s - hl.busy_s);
    }
    promtext_help(&o, "ferry_node_vms", "gauge", "VMs defined on this node");
    promtext_sample(&o, "ferry_node_vms", NULL, 0, "%u", vmset_count(ctx->vms));

    static const struct {
        int what;
        const char *name, *type, *help;
    } fams[] = {
        {M_INFO, "ferry_vm_info", "gauge",
         "1 per VM defined on this node, with its node and HA priority (off: not HA)"},
        {M_STATE, "ferry_vm_state", "gauge", "1 for the state the VM is in"},
        {M_MEM, "ferry_vm_memory_bytes", "gauge", "guest memory"},
        {M_VCPU, "ferry_vm_vcpus", "gauge", "virtual CPUs"},
        {M_CPU, "ferry_vm_cpu_seconds_total", "counter", "CPU time of the QEMU process"},
        {M_DISK_RB, "ferry_vm_disk_read_bytes_total", "counter", "bytes read by the guest"},
        {M_DISK_WB, "ferry_vm_disk_write_bytes_total", "counter", "bytes written by the guest"},
        {M_DISK_RO, "ferry_vm_disk_read_ops_total", "counter", "read requests"},
        {M_DISK_WO, "ferry_vm_disk_write_ops_total", "counter", "write requests"},
        {M_NET_RX, "ferry_vm_net_rx_bytes_total", "counter", "bytes received by the guest"},
        {M_NET_TX, "ferry_vm_net_tx_bytes_total", "counter", "bytes sent by the guest"},
        {M_MIG_ELAPSED, "ferry_migration_elapsed_seconds", "gauge",
         "for each live migration under way from this node: how long it has run"},
        {M_MIG_REMAINING, "ferry_migration_remaining_bytes", "gauge",
         "for each live migration under way from this node: guest memory still to send "
         "(QEMU's last figure)"},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(fams); i++) {
        promtext_help(&o, fams[i].name, fams[i].type, fams[i].help);
        struct pass p = {&o, fams[i].what, ctx};
        vmset_foreach(ctx->vms, one_vm, &p);
    }
    migrations(&o, ctx);
    failovers(&o, ctx);
    cluster_part(&o, ctx);
    volumes(&o, ctx);
    tasks_part(&o, ctx);
    return promtext_take(&o, out_text, len);
}
