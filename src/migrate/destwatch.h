/* SPDX-License-Identifier: MIT */
/* The source's watch over a migration's destination: is its ferryd still there and does it
 * still hold the incoming VM? And the clean-up call to a destination, retried until it lands. */
#ifndef FERRY_MIGRATE_DESTWATCH_H
#define FERRY_MIGRATE_DESTWATCH_H

#include <stdbool.h>
#include <uv.h>

#include "common/err.h"

struct cluster;
struct destwatch;

#define DESTWATCH_PING_MS 500  /* GET /v1/vms/NAME on the destination this often */
#define DESTWATCH_LOST_MS 3000 /* no good answer for this long: the destination is lost */
#define DESTWATCH_ABORT_RETRY_MS 2000
#define DESTWATCH_ABORT_MAX_MS (10 * 60 * 1000)

/* Called once when the destination is lost; why is a sentence ("host2's ferryd has not
 * answered for 3000 ms: ..."), borrowed for the call. */
typedef void (*destwatch_lost_cb)(const char *why, void *data);

/* Starts pinging node `to` about VM `name` (both copied). NULL when out of memory (then
 * nothing watches). lost may run any time until destwatch_stop. */
struct destwatch *destwatch_start(uv_loop_t *loop, struct cluster *c, const char *to,
                                  const char *name, destwatch_lost_cb lost, void *data);
/* Stops the watch; lost never runs after this. The memory goes once no ping is in flight.
 * NULL is fine. */
void destwatch_stop(struct destwatch *w);

/* How an abort ended: 0 when the destination answered that it holds no copy (any more), else
 * its refusal or the last error (a refusal means it owns the VM); e is NULL on success and
 * borrowed for the call. */
typedef void (*destwatch_abort_cb)(int status, const struct ferr *e, void *data);

/* Asks node `to` to throw its incoming copy of `name` away (POST /v1/internal/migrate/abort),
 * and keeps asking every DESTWATCH_ABORT_RETRY_MS while it cannot be reached (a killed
 * ferryd, a cut link), for at most DESTWATCH_ABORT_MAX_MS; then calls done (may be NULL)
 * once. The retries do not keep the loop alive. only_unstarted: only a copy that holds
 * nothing of the guest (its QEMU never received a byte, or is gone); the destination refuses
 * (FERR_STATE) to throw away any other, as it may be the only one. */
void destwatch_abort(uv_loop_t *loop, struct cluster *c, const char *to, const char *name,
                     bool only_unstarted, destwatch_abort_cb done, void *data);

#endif
