/* SPDX-License-Identifier: MIT */
/* Draining a node for maintenance: set its admin state to draining, live-migrate every running
 * VM it owns to the other up, active nodes (a few at a time), then to paused; and resuming it. */
#ifndef FERRY_MIGRATE_DRAIN_H
#define FERRY_MIGRATE_DRAIN_H

#include <jansson.h>
#include <uv.h>

#include "common/err.h"
#include "migrate/drainplan.h"
#include "migrate/migrate.h"

struct fleet;

struct drain_env {
    uv_loop_t *loop;
    struct vmset *vms;
    struct events *events;
    struct cluster *cluster;
    struct fleet *fleet;
    struct migrator *migrator;
    const char *node_name; /* borrowed; outlives the drain */
    struct tasks *tasks;   /* the drain is a task (fleet/tasks.h); NULL: none */
    const char *user;      /* who asked, for the task (NULL: "ferryd"); borrowed, copied */
};

/*
 * Drains this node (env->node_name): admin state "draining", then every running VM the
 * cluster database says this node owns is live-migrated (migrate_start, destination: the up,
 * active node with the most free memory), at most parallel at a time. Stopped and failed VMs
 * stay here (their definition and disks live with their owner; they are listed as "stayed").
 * When every migration succeeded the node's admin state becomes "paused"; when one failed,
 * that VM keeps running here, the node stays "draining" and the answer says so ("failed" > 0).
 * The rules in full are drainplan.h's. Synchronous refusals (no cluster, no quorum, a drain
 * already running, the node is down) return negative with e set. Otherwise cb answers once,
 * 200 with {"node", "admin", "parallel", "total_ms", "migrated", "failed", "stayed", "vms":
 * [{"name", "outcome", "to", "message", ...}], "task"}, or with e when the node could not be
 * marked. The drain is a task of kind "drain" (phase "moving", detail moved/failed/stayed of
 * total); cancelling it moves no further VM (those under way finish; each has a task of its
 * own), they count as failed, and the node stays draining.
 * env copied. One drain at a time per process.
 */
int drain_start(const struct drain_env *env, unsigned parallel, migrate_cb cb, void *data,
                struct ferr *e);

/* What drain_start and drain_resume check first of node, in this node's copy of the cluster
 * database, so a request for a node that is down is refused here rather than forwarded to
 * it: FERR_NOTFOUND (no such node) or FERR_STATE (it is down), with what ("drain",
 * "resume") leading the message; 0 otherwise, and outside a cluster. */
int drain_check_node(const struct cluster *c, const char *node, const char *what, struct ferr *e);

/* Sets the admin state of node (any member but a down one) to "active" again; cb gets
 * {"node", "admin": "active"}. Refused while this process drains it. */
int drain_resume(const struct drain_env *env, const char *node, migrate_cb cb, void *data,
                 struct ferr *e);

#endif
