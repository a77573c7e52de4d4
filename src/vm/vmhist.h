/* SPDX-License-Identifier: MIT */
/* A VM's resource history for the dashboard's graphs: CPU, memory, disk and network sampled
 * every 10 s, the last hour at 10 s and the last day at 5 min, in fixed rings in memory. Pure:
 * the caller reads the counters and passes the clock. */
#ifndef FERRY_VM_VMHIST_H
#define FERRY_VM_VMHIST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

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

/* Adds the points of o (another node's history of the same VM, older) to h: both rings
 * become the points of both by time (h's where both have one at the same t), the newest kept;
 * the 5 minutes o was summing are added to h's when they are the same ones, else closed into
 * the day's ring. h's counters stay: h goes on sampling its own QEMU. */
void vmhist_merge(struct vmhist *h, const struct vmhist *o);

/* h as JSON for a file or a peer: {"fine": [[t, cpu, memory_bytes, disk_read_bps,
 * disk_write_bps, net_rx_bps, net_tx_bps], ...], "coarse": [...], "acc": [bucket, n, cpu,
 * ...]} (points oldest first; "acc" only while 5 minutes are being summed). The counters are
 * not in it: whoever loads it samples a QEMU of its own. New JSON, NULL out of memory. */
json_t *vmhist_dump(const struct vmhist *h);
/* Reads vmhist_dump's JSON into h after checking every field: at most the rings' sizes,
 * times in increasing order, none later than now_s + VMHIST_SKEW_S, numbers finite, 0 or
 * more, below VMHIST_VALUE_MAX. 0, or FERR_INVALID naming the bad field with h untouched. */
#define VMHIST_SKEW_S 3600
#define VMHIST_VALUE_MAX 1e18
int vmhist_undump(struct vmhist *h, const json_t *j, uint64_t now_s, struct ferr *e);

/* The histories of this node's VMs by name, and for a while those of VMs that left it (a
 * migration's destination asks for them, api/history.c). */
struct vmhist_set;
int vmhist_set_new(struct vmhist_set **out);
void vmhist_set_free(struct vmhist_set *s);
/* The history of VM name, made (empty) when create and there is room (a departed VM's history
 * makes room: the longest gone first); NULL otherwise. With create, a departed VM's history
 * is taken back. One made or taken back is flagged as arrived. */
struct vmhist *vmhist_set_get(struct vmhist_set *s, const char *name, bool create);
/* Whether VM name arrived here since this was last asked (clears the flag). */
bool vmhist_set_take_arrived(struct vmhist_set *s, const char *name);
/* Starts a sweep: histories not marked by vmhist_set_get(create) before vmhist_set_sweep are
 * departed by it (their VMs left this node) at now_s; departed ones are dropped keep_s after
 * they left (0: at once). */
void vmhist_set_mark(struct vmhist_set *s);
void vmhist_set_sweep(struct vmhist_set *s, uint64_t now_s, uint64_t keep_s);
/* Calls fn for each history with its name and when it left (0: here); those it answers false
 * for are dropped. */
typedef bool (*vmhist_set_fn)(const char *name, struct vmhist *h, uint64_t departed_s, void *data);
void vmhist_set_each(struct vmhist_set *s, vmhist_set_fn fn, void *data);
unsigned vmhist_set_count(const struct vmhist_set *s);

/* The file of a node's histories: {"format": VMHIST_FILE_FORMAT, "version":
 * VMHIST_FILE_VERSION, "saved_s", "node": vmhist_dump of the node's own, "vms": [{"name",
 * "departed_s", "history": vmhist_dump}]}. New text (caller frees), NULL out of memory. */
#define VMHIST_FILE_FORMAT "ferry-vm-history"
#define VMHIST_FILE_VERSION 1
char *vmhist_file_text(struct vmhist_set *s, const struct vmhist *node, uint64_t now_s,
                       size_t *len);
/* Replaces the histories of s and node with those of text (len bytes): 0, or FERR_INVALID
 * (not JSON, cut short, another format or version, any bad field; the message names it)
 * with s and node untouched. Histories that were here at the save are here again (not
 * flagged arrived); VMs with the same name twice, or over VMHIST_VMS_MAX, are refused. */
int vmhist_file_load(struct vmhist_set *s, struct vmhist *node, const char *text, size_t len,
                     uint64_t now_s, struct ferr *e);

#endif
