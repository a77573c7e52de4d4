/* SPDX-License-Identifier: MIT */
/* The tasks of the cluster: every long operation (migrate, drain, storage move, failover) as a
 * record with phase, progress and result that every node can list (cluster/taskrec.h). */
#ifndef FERRY_FLEET_TASKS_H
#define FERRY_FLEET_TASKS_H

#include <jansson.h>
#include <uv.h>

#include "cluster/taskrec.h"
#include "common/err.h"
#include "host/events.h"

struct cluster;
struct tasks;

/* What the operation behind a task offers; data is the operation's. */
struct task_ops {
    /* Its progress now: new JSON {"phase", "percent", "detail"} (each optional) the tasks
     * take over, or NULL for no news. NULL: the operation reports with tasks_update alone. */
    json_t *(*progress)(void *data);
    /* Cancels it; its end comes later through tasks_end. NULL: not cancellable, and
     * no_cancel says why (the 409's message). */
    int (*cancel)(void *data, struct ferr *e);
    const char *no_cancel;
};

struct tasks_env {
    uv_loop_t *loop;
    struct cluster *cluster; /* NULL or inactive: a standalone host; tasks stay here */
    struct events *events;   /* task.created / task.progress / task.ended go here */
    const char *node_name;   /* borrowed; outlives the tasks */
};

/* env copied. Only -ENOMEM. The tasks listen to the cluster's task_put applies (events). */
int tasks_new(const struct tasks_env *env, struct tasks **out, struct ferr *e);
/* Stops the timer and every write (ferryd's shutdown); records not written yet are lost (the
 * next ferryd closes them as failed). t itself stays for operations that end meanwhile. */
void tasks_free(struct tasks *t);

/*
 * Starts a task of kind on target for user (an HTTP principal's name, or "ferryd"), running
 * on this node, with ops (copied; may be NULL) and data (the caller's, until tasks_end). id
 * gets the new task's id (TASKREC_ID_MAX + 1 bytes). It is written to the cluster database
 * when every node applies command version 8 (else kept here only), its progress polled every
 * second and written only when it changed. Returns 0, or FERR_INVALID (a bad kind, target or
 * user) / -ENOMEM with e set and no task.
 */
int tasks_begin(struct tasks *t, const char *kind, const char *target, const char *user,
                const struct task_ops *ops, void *data, char *id, struct ferr *e);
/* Progress told by the operation itself: phase (NULL keeps it), percent (< 0 keeps it) and
 * detail (stolen, NULL keeps it). Unknown ids are ignored. */
void tasks_update(struct tasks *t, const char *id, const char *phase, int percent, json_t *detail);
/* Ends the task: state "done", "failed" or "cancelled", a short result text (cut at
 * TASKREC_RESULT_MAX), detail (stolen, NULL keeps it), percent 100 when done. The ops are not
 * called any more. Unknown ids are ignored (e.g. "" of an operation without a task). */
void tasks_end(struct tasks *t, const char *id, const char *state, const char *result,
               json_t *detail);

/* The tasks of the cluster (or of this host) that pass f (checked by the caller), newest
 * first: a new array, NULL when out of memory. Running tasks of this node show their newest
 * progress, not yet written. */
json_t *tasks_list(struct tasks *t, const struct taskrec_filter *f);
/* One task: 0 and *out (new), FERR_NOTFOUND or -ENOMEM. */
int tasks_get(struct tasks *t, const char *id, json_t **out, struct ferr *e);
/* Cancels a task that runs on this node: FERR_NOTFOUND (not here), FERR_STATE (ended, or
 * its operation cannot be cancelled: the message says why), or what its cancel said. */
int tasks_cancel(struct tasks *t, const char *id, struct ferr *e);

#endif
