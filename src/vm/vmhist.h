/* SPDX-License-Identifier: MIT */
/* A VM's resource history for the dashboard's graphs: CPU, memory, disk and network sampled
 * every 10 s, the last hour at 10 s and the last day at 5 min, in fixed rings in memory. Pure:
 * the caller reads the counters and passes the clock. */
#ifndef FERRY_VM_VMHIST_H
#define FERRY_VM_VMHIST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define VMHIST_STEP_S 10    /* one sample every 10 s ... */
#define VMHIST_FINE_N 360   /* ... for an hour */
#define VMHIST_COARSE_S 300 /* then averages of 5 min ... */
#define VMHIST_COARSE_N 288 /* ... for a day */
#define VMHIST_VMS_MAX 1024 /* VMs with a history on one node */

/* Counters as read at one moment (they only grow while the same QEMU runs). */
struct vmhist_counters {
    double cpu_s;          /* QEMU's user + system CPU time */
    uint64_t memory_bytes; /* QEMU's resident memory (a gauge) */
    uint64_t disk_read_bytes, disk_write_bytes;
    uint64_t net_rx_bytes, net_tx_bytes; /* as the guest sees them */
};

/* One point of a graph: rates over the step before t. */
struct vmhist_point {
    uint64_t t; /* unix seconds, the end of the step */
    float cpu;  /* CPUs busy (1.0: one host CPU all the time) */
    float memory_bytes;
    float disk_read_bps, disk_write_bps, net_rx_bps, net_tx_bps;
};

struct vmhist {
    struct vmhist_point fine[VMHIST_FINE_N];
    unsigned fine_n, fine_next;
    struct vmhist_point coarse[VMHIST_COARSE_N];
    unsigned coarse_n, coarse_next;
    struct vmhist_point acc; /* sums of the current 5 minutes */
    unsigned acc_n;
    uint64_t acc_bucket; /* which 5 minutes (t / VMHIST_COARSE_S) acc sums */
    struct vmhist_counters last;
    uint64_t last_t;
    bool has_last;
};

void vmhist_init(struct vmhist *h);
/* Adds the counters read at t (unix seconds): a point of the rates since the previous sample
 * (none for the first, or when the clock went back, or a counter did: a new QEMU). A point
 * closes the 5 minutes before it into the day's ring when it starts new ones. */
void vmhist_sample(struct vmhist *h, uint64_t t, const struct vmhist_counters *c);
/* Forgets the previous counters (the VM stopped): the next sample starts afresh. */
void vmhist_pause(struct vmhist *h);
/* {"range": "hour"|"day", "step_s": 10|300, "points": [{"t", "cpu", "memory_bytes",
 * "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps"}]} oldest first, the points
 * within the range before now_s; new JSON. */
json_t *vmhist_json(const struct vmhist *h, bool day, uint64_t now_s);

/* The histories of this node's VMs by name. */
struct vmhist_set;
int vmhist_set_new(struct vmhist_set **out);
void vmhist_set_free(struct vmhist_set *s);
/* The history of VM name, made (empty) when create and there is room; NULL otherwise. */
struct vmhist *vmhist_set_get(struct vmhist_set *s, const char *name, bool create);
/* Starts a sweep: histories not marked by vmhist_set_get(create) before vmhist_set_sweep are
 * dropped by it (their VMs are gone from this node). */
void vmhist_set_mark(struct vmhist_set *s);
void vmhist_set_sweep(struct vmhist_set *s);
unsigned vmhist_set_count(const struct vmhist_set *s);

#endif
