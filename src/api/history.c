/* SPDX-License-Identifier: MIT */
/* Samples this node's VMs into their resource histories (history.h). */
#include "api/history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "host/host.h"
#include "vm/vm.h"
#include "vm/vmhist.h"

struct history {
    uv_timer_t timer;
    struct vmset *vms;
    struct vmhist_set *set;
    struct vmhist node; /* this node: CPUs busy and memory used (no disk or network) */
    struct history_node now;
    struct host_load last;
    bool has_last;
};

/* This node's load now, its CPU use since the last sample, and a point of its history. */
static void sample_node(struct history *h)
{
    struct host_load l;
    struct host_info hi = {0};
    struct ferr e = {0};
    char *text = NULL;
    int rc = host_load_read(&l, &e);
    if (rc == 0 && (rc = file_read_all("/proc/meminfo", 1 << 20, &text, NULL, &e)) == 0) {
        rc = host_parse_meminfo(text, &hi);
        free(text);
        if (rc < 0)
            ferr_set(&e, rc, "/proc/meminfo has no readable MemTotal line");
    }
    if (rc < 0) {
        log_debug("history: %s", e.msg);
        return;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* /proc/cpuinfo is big on big hosts: not it */
    h->now.cpus = cpus > 0 ? (unsigned)cpus : 1;
    memcpy(h->now.load, l.load, sizeof(l.load));
    h->now.busy_ratio = h->has_last ? host_busy_ratio(&h->last, &l) : -1;
    h->now.mem_used_bytes = (hi.mem_total_mib - hi.mem_avail_mib) << 20;
    h->now.mem_total_bytes = hi.mem_total_mib << 20;
    h->last = l;
    h->has_last = true;
    struct vmhist_counters c = {.cpu_s = l.busy_s, .memory_bytes = h->now.mem_used_bytes};
    vmhist_sample(&h->node, now_wall_ms() / 1000, &c);
}

/* QEMU's resident memory in bytes (/proc/PID/statm, its second field in pages); 0 unknown. */
static uint64_t rss_bytes(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    unsigned long long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void sample_one(struct vm *vm, void *data)
{
    struct history *h = data;
    struct vmhist *vh = vmhist_set_get(h->set, vm_name(vm), true);
    if (!vh)
        return;
    enum vm_state st = vm_state(vm);
    int pid = vm_pid(vm);
    if ((st != VM_RUNNING && st != VM_PAUSED) || pid <= 0) {
        vmhist_pause(vh);
        return;
    }
    struct vm_stats s;
    vm_stats_get(vm, &s);
    struct vmhist_counters c = {.cpu_s = s.cpu_seconds, .memory_bytes = rss_bytes(pid)};
    for (unsigned i = 0; i < s.ndisks; i++) {
        c.disk_read_bytes += s.disks[i].rd_bytes;
        c.disk_write_bytes += s.disks[i].wr_bytes;
    }
    for (unsigned i = 0; i < s.nnics; i++) {
        c.net_rx_bytes += s.nics[i].rx_bytes;
        c.net_tx_bytes += s.nics[i].tx_bytes;
    }
    vmhist_sample(vh, now_wall_ms() / 1000, &c);
}

static void on_sample(uv_timer_t *t)
{
    struct history *h = t->data;
    vmhist_set_mark(h->set);
    vmset_foreach(h->vms, sample_one, h);
    vmhist_set_sweep(h->set); /* VMs that left this node take their history with them */
    sample_node(h);
}

int history_new(uv_loop_t *loop, struct vmset *vms, struct history **out, struct ferr *e)
{
    struct history *h = calloc(1, sizeof(*h));
    if (!h || vmhist_set_new(&h->set) < 0) {
        free(h);
        return ferr_set(e, -ENOMEM, "history: out of memory");
    }
    h->vms = vms;
    vmhist_init(&h->node);
    h->now.busy_ratio = -1;
    sample_node(h); /* the first CPU use comes 10 s later, from the difference */
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, on_sample, VMHIST_STEP_S * 1000, VMHIST_STEP_S * 1000);
    *out = h;
    return 0;
}

static void on_closed(uv_handle_t *t)
{
    struct history *h = t->data;
    vmhist_set_free(h->set);
    free(h);
}

void history_close(struct history *h)
{
    if (h)
        uv_close((uv_handle_t *)&h->timer, on_closed);
}

json_t *history_json(struct history *h, const char *name, bool day)
{
    struct vmhist *vh = h ? vmhist_set_get(h->set, name, false) : NULL;
    if (vh)
        return vmhist_json(vh, day, now_wall_ms() / 1000);
    struct vmhist empty;
    vmhist_init(&empty);
    return vmhist_json(&empty, day, now_wall_ms() / 1000);
}

json_t *history_node_json(struct history *h, bool day)
{
    struct vmhist empty;
    vmhist_init(&empty);
    return vmhist_json(h ? &h->node : &empty, day, now_wall_ms() / 1000);
}

void history_node_now(const struct history *h, struct history_node *out)
{
    if (h) {
        *out = h->now;
    } else {
        memset(out, 0, sizeof(*out));
        out->busy_ratio = -1;
    }
}

void history_node_info(const struct history *h, json_t *obj)
{
    struct history_node hn;
    history_node_now(h, &hn);
    if (!hn.cpus)
        return;
    json_t *cpu = json_pack("{s:i, s:f, s:f, s:f}", "count", (int)hn.cpus, "load1", hn.load[0],
                            "load5", hn.load[1], "load15", hn.load[2]);
    if (cpu && hn.busy_ratio >= 0)
        json_object_set_new(cpu, "busy_ratio", json_real(hn.busy_ratio));
    json_object_set_new(obj, "cpu", cpu);
    json_object_set_new(obj, "host_memory",
                        json_pack("{s:I, s:I}", "used_bytes", (json_int_t)hn.mem_used_bytes,
                                  "total_bytes", (json_int_t)hn.mem_total_bytes));
}
