/* SPDX-License-Identifier: MIT */
/* Live migration of a VM between two ferryds of a cluster: the source side (prepare the
 * destination, drive QEMU's pre-copy, switch the owner, clean up) and the destination side
 * (an incoming QEMU with the identical machine). QEMU's migration states are those of the
 * QMP schema (MigrationStatus: setup, active, device, completed, failed, cancelled, ...). */
#ifndef FERRY_MIGRATE_MIGRATE_H
#define FERRY_MIGRATE_MIGRATE_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "vm/events.h"
#include "vm/vm.h"

struct cluster;
struct migrator;

struct migrator_env {
    uv_loop_t *loop;
    struct vmset *vms;
    struct events *events;
    struct cluster *cluster;
    const char *node_name; /* borrowed; outlives the migrator */
};

/* Answer of a migration or of a destination call: HTTP status and a JSON body (stolen), or
 * e set on failure. */
typedef void (*migrate_cb)(int status, json_t *body, const struct ferr *e, void *data);

/* env copied. */
int migrator_new(const struct migrator_env *env, struct migrator **out, struct ferr *e);

/*
 * Source: live-migrates vm (which must be running here) to node `to` (NULL: the up node with
 * the most free memory other than this one) with downtime-limit budget_ms (0: the spec's
 * blackout budget). Synchronous refusals (state, no cluster, no destination) return negative
 * with e set and change nothing. Otherwise cb answers once the migration completed (body:
 * the figures) or failed (the VM keeps running here, the destination is cleaned up).
 */
int migrate_start(struct migrator *m, struct vm *vm, const char *to, uint64_t budget_ms,
                  uint64_t bandwidth_mib, migrate_cb cb, void *data, struct ferr *e);
/* Source: cancels the migration of the VM named name; its migrate_start answer reports the
 * cancel. FERR_NOTFOUND/FERR_STATE when none runs. */
int migrate_cancel(struct migrator *m, const char *name, struct ferr *e);

/* Destination: body {"name", "spec"} (borrowed). Creates the VM here and starts QEMU
 * listening; cb gets {"uri": "tcp:IP:PORT"}. */
void migrate_on_prepare(struct migrator *m, const json_t *body, migrate_cb cb, void *data);
/* Destination: body {"name"}: kills the incoming QEMU and removes the VM (disk files kept).
 * Refused for a VM this node owns in the cluster database. */
void migrate_on_abort(struct migrator *m, const json_t *body, migrate_cb cb, void *data);

#endif
