/* SPDX-License-Identifier: MIT */
/* Samples this node's VMs every 10 s into their resource histories (vm/vmhist.h), for
 * GET /v1/vms/{name}/history, and this node's own CPU use, load and memory, for
 * GET /v1/nodes/{name}/history and the node lists. */
#ifndef FERRY_API_HISTORY_H
#define FERRY_API_HISTORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"

struct history;
struct vmset;
struct cluster;

/* Where a node keeps its histories, under its state dir (docs/architecture.md, "Resource
 * history"); read at most HISTORY_FILE_MAX bytes. */
#define HISTORY_FILE "vm-history.json"
#define HISTORY_FILE_MAX (64u << 20)
#define HISTORY_SAVE_S 300 /* saved this often, and when ferryd stops */
/* A departed VM's history is kept this long for the node it went to (a day: the graphs' span);
 * at once dropped when the VM is no longer in the cluster (deleted). */
#define HISTORY_DEPARTED_KEEP_S (24 * 3600)
#define HISTORY_ASK_MAX 32  /* VM names in one question to a peer */
#define HISTORY_ASK_MS 5000 /* a peer that has not answered by then is not waited for */

/* Starts sampling the VMs of vms (borrowed; outlives h) on loop. state_dir (copied; NULL: no
 * file) holds HISTORY_FILE: loaded now (a file that cannot be read, is cut short, of another
 * version or with any bad field is set aside with a log line, and the histories start empty),
 * written every HISTORY_SAVE_S and by history_close. 0 with *out, -ENOMEM or
 * -ENAMETOOLONG. */
int history_new(uv_loop_t *loop, struct vmset *vms, const char *state_dir, struct history **out,
                struct ferr *e);
/* The cluster (borrowed; outlives h; NULL: none) whose nodes are asked for the past of each VM
 * that arrives here (migrated, or started here after running elsewhere), and whose database
 * tells which departed VMs were deleted. */
void history_set_cluster(struct history *h, struct cluster *c, const char *self);
/* Writes the file once more and stops sampling; h is freed once its timer is closed and what
 * it asked peers or wrote is done. */
void history_close(struct history *h);
/* POST /v1/internal/vm-history {"names": [VM, ...]} from a peer: {"vms": [{"name", "history":
 * vmhist_dump}]} for those of names this node has a history of (here or departed). 0 with
 * *out (new JSON), or FERR_INVALID naming the bad field. */
int history_for_peer(struct history *h, const json_t *body, json_t **out, struct ferr *e);
/* The history of VM name (range hour, or day) as vmhist_json answers it; a VM with no samples
 * yet has no points. New JSON. */
json_t *history_json(struct history *h, const char *name, bool day);

/* This node as the last sample found it (every 10 s). */
struct history_node {
    unsigned cpus;     /* online logical CPUs; 0 before the first sample */
    double load[3];    /* load averages over 1, 5, 15 minutes */
    double busy_ratio; /* share of all CPUs' time spent busy over the last 10 s, 0..1; -1
                        * unknown (the first 10 s) */
    uint64_t mem_used_bytes, mem_total_bytes; /* MemTotal - MemAvailable, MemTotal */
};
void history_node_now(const struct history *h, struct history_node *out);
/* Adds "cpu": {"count", "load1", "load5", "load15", "busy_ratio" (absent in the first 10 s)}
 * and "host_memory": {"used_bytes", "total_bytes"} to obj (nothing before the first sample):
 * what heartbeats and node lists say about this node. */
void history_node_info(const struct history *h, json_t *obj);
/* This node's history like a VM's (vmhist_json): "cpu" is CPUs busy (2.0: two CPUs all the
 * time), "memory_bytes" the host's memory in use; the disk and network fields are 0. */
json_t *history_node_json(struct history *h, bool day);

#endif
