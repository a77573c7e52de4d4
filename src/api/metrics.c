/* SPDX-License-Identifier: MIT */
/* GET /metrics: the node and its VMs in Prometheus text exposition format 0.0.4. */
#include "api/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "migrate/migrate.h"

struct out {
    char *buf;
    size_t len, cap;
    int failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 + (size_t)n;
        char *nb = realloc(o->buf, ncap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

static void help(struct out *o, const char *name, const char *type, const char *text)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* VM names are [a-z0-9-] and tap/disk ids are ours, so label values need no escaping. */
struct pass {
    struct out *o;
    int what;
};

enum {
    M_STATE,
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

static const char *states[] = {"stopped", "starting", "running", "paused", "stopping", "failed"};

static void one_vm(struct vm *vm, void *data)
{
    struct pass *p = data;
    struct out *o = p->o;
    const char *n = vm_name(vm);
    struct vm_stats st;
    switch (p->what) {
    case M_STATE:
        for (unsigned i = 0; i < ARRAY_SIZE(states); i++)
            put(o, "ferry_vm_state{vm=\"%s\",state=\"%s\"} %d\n", n, states[i],
                strcmp(vm_state_name(vm_state(vm)), states[i]) == 0);
        return;
    case M_MEM:
        put(o, "ferry_vm_memory_bytes{vm=\"%s\"} %llu\n", n,
            (unsigned long long)vm_spec(vm)->memory_mib * 1024 * 1024);
        return;
    case M_VCPU:
        put(o, "ferry_vm_vcpus{vm=\"%s\"} %u\n", n, vm_spec_vcpus(vm_spec(vm)));
        return;
    default:
        break;
    }
    vm_stats_get(vm, &st);
    switch (p->what) {
    case M_CPU:
        put(o, "ferry_vm_cpu_seconds_total{vm=\"%s\"} %.2f\n", n, st.cpu_seconds);
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
            put(o, "%s{vm=\"%s\",disk=\"disk%u\"} %llu\n", names[p->what - M_DISK_RB], n, i,
                (unsigned long long)v);
        }
        return;
    case M_NET_RX:
    case M_NET_TX:
        for (unsigned i = 0; i < st.nnics; i++)
            put(o, "ferry_vm_net_%s_bytes_total{vm=\"%s\",nic=\"%s\"} %llu\n",
                p->what == M_NET_RX ? "rx" : "tx", n, st.nics[i].tap,
                (unsigned long long)(p->what == M_NET_RX ? st.nics[i].rx_bytes
                                                         : st.nics[i].tx_bytes));
        return;
    }
}

static void histogram(struct out *o, const char *name, const char *text,
                      const struct migrate_hist *h)
{
    static const double bounds[MIGRATE_HIST_N] = MIGRATE_HIST_BOUNDS;
    help(o, name, "histogram", text);
    uint64_t cum = 0;
    for (unsigned i = 0; i < MIGRATE_HIST_N; i++) {
        cum += h->buckets[i];
        put(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(o, "%s_sum %.3f\n%s_count %llu\n", name, h->sum_s, name, (unsigned long long)h->count);
}

/* Migrations this node ran as source (src/migrate/). */
static void migrations(struct out *o, const struct api_ctx *ctx)
{
    struct migrate_stats st;
    migrator_stats(ctx->migrator, &st);
    help(o, "ferry_migrations_total", "counter", "live migrations this node ran as source");
    for (unsigned i = 0; i < MIGRATE_OUTCOMES; i++)
        put(o, "ferry_migrations_total{status=\"%s\"} %llu\n", migrate_outcome_name(i),
            (unsigned long long)st.outcomes[i]);
    histogram(o, "ferry_migration_blackout_seconds",
              "QEMU's downtime of completed migrations this node ran as source", &st.blackout);
    histogram(o, "ferry_migration_total_seconds",
              "total time of completed migrations this node ran as source", &st.total);
    histogram(o, "ferry_migration_client_gap_seconds",
              "client-observed gaps recorded on migrations through this node's API",
              &st.client_gap);
}

int metrics_render(struct api_ctx *ctx, char **out_text, size_t *len)
{
    struct out o = {.buf = malloc(8192), .cap = 8192};
    if (!o.buf)
        return -ENOMEM;
    o.buf[0] = '\0';
    struct host_info h;
    if (host_info_read(&h, NULL) < 0)
        h = ctx->host;
    help(&o, "ferry_up", "gauge", "1 while ferryd serves");
    put(&o, "ferry_up{node=\"%s\",accel=\"%s\",version=\"%s\"} 1\n", ctx->node_name, ctx->accel,
        ctx->version);
    help(&o, "ferry_node_memory_total_bytes", "gauge", "host memory");
    put(&o, "ferry_node_memory_total_bytes %llu\n",
        (unsigned long long)h.mem_total_mib * 1024 * 1024);
    help(&o, "ferry_node_memory_available_bytes", "gauge", "host memory available");
    put(&o, "ferry_node_memory_available_bytes %llu\n",
        (unsigned long long)h.mem_avail_mib * 1024 * 1024);
    help(&o, "ferry_node_memory_allocated_bytes", "gauge", "memory of VMs that run here");
    put(&o, "ferry_node_memory_allocated_bytes %llu\n",
        (unsigned long long)vmset_allocated_mib(ctx->vms) * 1024 * 1024);
    help(&o, "ferry_node_vms", "gauge", "VMs defined on this node");
    put(&o, "ferry_node_vms %u\n", vmset_count(ctx->vms));

    static const struct {
        int what;
        const char *name, *type, *help;
    } fams[] = {
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
    };
    for (unsigned i = 0; i < ARRAY_SIZE(fams); i++) {
        help(&o, fams[i].name, fams[i].type, fams[i].help);
        struct pass p = {&o, fams[i].what};
        vmset_foreach(ctx->vms, one_vm, &p);
    }
    migrations(&o, ctx);
    if (o.failed) {
        free(o.buf);
        return -ENOMEM;
    }
    *out_text = o.buf;
    *len = o.len;
    return 0;
}
