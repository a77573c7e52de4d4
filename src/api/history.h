/* SPDX-License-Identifier: MIT */
/* Samples this node's VMs every 10 s into their resource histories (vm/vmhist.h), for
 * GET /v1/vms/{name}/history. */
#ifndef FERRY_API_HISTORY_H
#define FERRY_API_HISTORY_H

#include <jansson.h>
#include <stdbool.h>
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

#endif
