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

/* Starts sampling the VMs of vms (borrowed; outlives h) on loop. 0 with *out or -ENOMEM. */
int history_new(uv_loop_t *loop, struct vmset *vms, struct history **out, struct ferr *e);
/* Stops sampling; h is freed once its timer is closed. */
void history_close(struct history *h);
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
