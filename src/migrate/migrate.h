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
#include "common/reply.h"
#include "host/events.h"
#include "vm/vm.h"

struct cluster;
struct fleet;
struct migrator;

struct migrator_env {
    uv_loop_t *loop;
    struct vmset *vms;
    struct events *events;
    struct cluster *cluster;
    struct fleet *fleet;   /* who owns the VMs, where they go, the hand-over (src/fleet/) */
    const char *node_name; /* borrowed; outlives the migrator */
    unsigned max_out;      /* concurrent outgoing migrations, 1..MIGRATE_MAX_OUT (0: default) */
    const char *unsafe;    /* borrowed; non-NULL: why a migration from here would corrupt the
                            * guest (e.g. this QEMU's TCG dirty tracking); every migrate_start
                            * is refused with it */
    struct tasks *tasks;   /* every migration from here is a task (fleet/tasks.h); NULL: none */
    bool plain_default;    /* ferryd --migration-tls off: MIGRATE_STREAM_DEFAULT is plain */
};

#define MIGRATE_DEFAULT_OUT 2
#define MIGRATE_MAX_OUT 16
/* Words in migrate_start's refusal when env.max_out migrations already leave this node: a
 * caller that waits for a slot (node drain) tells that refusal from the others by them. */
#define MIGRATE_BUSY_WORDS "outgoing live migration"

/* Answer of a migration or of a destination call (common/reply.h). */
typedef reply_cb migrate_cb;

/* env copied. */
int migrator_new(const struct migrator_env *env, struct migrator **out, struct ferr *e);
/* Frees m when no migration of it is under way any more (ferryd's shutdown); one that still
 * is holds m, and m is left to the process's end. */
void migrator_free(struct migrator *m);

struct migrate_opts {
    const char *to;                  /* NULL: the cluster picks */
    uint64_t budget_ms;              /* 0: the spec's blackout budget */
    uint64_t bandwidth_mib;          /* pre-copy, MiB/s; 0: unlimited */
    uint64_t postcopy_bandwidth_mib; /* post-copy's background stream, MiB/s; 0: unlimited */
    const char *user;                /* who asked, for its task (NULL: "ferryd") */
    /* The stream: QEMU's TLS with a per-migration PSK, or plain (unencrypted and
     * unauthenticated); DEFAULT (0, what drains, failbacks and an API call that does not say
     * use) is TLS unless env.plain_default. */
    enum migrate_stream { MIGRATE_STREAM_DEFAULT, MIGRATE_STREAM_TLS, MIGRATE_STREAM_PLAIN } stream;
};

/*
 * Source: live-migrates vm (which must be running here) to node o->to (NULL: the up node
 * with the most free memory other than this one) within the blackout budget o->budget_ms.
 * Synchronous refusals (state, no cluster, no destination; FERR_STATE when env.max_out
 * migrations already leave this node: no queue, the caller retries) return negative with e
 * set and change nothing. Otherwise the migration is a task (its "task" id is in the figures)
 * and cb answers once the migration completed (body: the figures) or failed (the VM keeps running
 * here, the destination is cleaned up).
 */
int migrate_start(struct migrator *m, struct vm *vm, const struct migrate_opts *o, migrate_cb cb,
                  void *data, struct ferr *e);
/* Source: cancels the migration of the VM named name; its migrate_start answer reports the
 * cancel. FERR_NOTFOUND/FERR_STATE when none runs; FERR_STATE once post-copy has started. */
int migrate_cancel(struct migrator *m, const char *name, struct ferr *e);

/* Destination: POST /v1/internal/migrate/console {"name", "from": NODE, "data": TEXT}: the
 * tail of the source's console, added to the incoming VM's console history (before anything
 * it prints here) with a line that says where it came from. FERR_STATE unless the VM waits
 * here as a migration's destination. */
void migrate_on_console(struct migrator *m, const json_t *body, migrate_cb cb, void *data);

/* Destination: POST /v1/internal/migrate/recover {"name"}: the post-copy stream of the VM
 * broke; break it here too if this side has not noticed, then make QEMU listen again
 * (migrate-recover) and answer {"uri", "node"} for the source's "migrate resume". {"copy":
 * false, "why"} when no copy of the VM runs here (the source then boots it again from its
 * disks; only this answer allows that); FERR_STATE when the caller should ask again. */
void migrate_on_recover(struct migrator *m, const json_t *body, migrate_cb cb, void *data);

/* Source, after a ferryd restart: if the VM's journal says a migration was under way, take it
 * over from what QEMU says (query-migrate): drive it on if it runs, hand the VM over if it
 * completed (owner switch, source QEMU quit, definition removed), undo it if it failed or
 * never started (destination aborted, the VM continues here). Does nothing without a
 * journal, while this node has no quorum, or while the VM is being re-attached; call it
 * again later (ferryd does, every 2 s). */
void migrate_recover(struct migrator *m, struct vm *vm);

/* Source: the live figures of the migration of the VM named name (docs/api.md, GET
 * /v1/vms/{name}/migration) from QEMU's last query-migrate (polled every 50 ms), as new
 * JSON the caller owns; NULL when no migration of it runs here (m may be NULL). */
json_t *migrate_progress(struct migrator *m, const char *name);

/* Figures of the migrations this node ran as source since ferryd started, for /metrics.
 * The histograms count completed migrations only (a failed one has no blackout); their
 * buckets are MIGRATE_HIST_BOUNDS (seconds, upper bounds), not cumulative, the last one
 * being +Inf. */
#define MIGRATE_HIST_BOUNDS                                                                        \
    {                                                                                              \
        0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60                                 \
    }
#define MIGRATE_HIST_N 13
enum migrate_outcome { MIGRATE_COMPLETED, MIGRATE_FAILED, MIGRATE_CANCELLED, MIGRATE_OUTCOMES };
struct migrate_hist {
    uint64_t buckets[MIGRATE_HIST_N + 1];
    uint64_t count;
    double sum_s;
};
struct migrate_stats {
    uint64_t outcomes[MIGRATE_OUTCOMES];
    struct migrate_hist blackout, total;
    struct migrate_hist client_gap; /* client-observed gaps recorded through this node */
};
/* Copies the figures into *out; m may be NULL (no migration yet: all zero). */
void migrator_stats(const struct migrator *m, struct migrate_stats *out);
const char *migrate_outcome_name(enum migrate_outcome o);
/* Counts a client-observed gap (ms) that was recorded on a migration through this node's API
 * (POST /v1/migrations/{id}/measurements), for the client_gap histogram. */
void migrator_note_client_gap(struct migrator *m, double gap_ms);

/* Destination: body {"name", "spec", "postcopy", "tls": {"user", "key"}} (borrowed; postcopy
 * and tls optional). Creates the VM here and starts QEMU listening, for a TLS stream with
 * that identity and key only when tls is given (vm_start_incoming); cb gets {"uri":
 * "tcp:IP:PORT", "node", "tls": BOOL}. */
void migrate_on_prepare(struct migrator *m, const json_t *body, migrate_cb cb, void *data);
/* Destination: body {"name", "only_unstarted" (optional bool)}: kills the incoming QEMU and
 * removes the VM (disk files kept). Refused for a VM this node owns in the cluster database.
 * only_unstarted: only a copy that holds nothing of the guest (a QEMU still listening,
 * query-migrate "setup" or "none", or none at all: failed, stopped); any other is refused
 * with FERR_STATE (it may be the only copy of the guest). */
void migrate_on_abort(struct migrator *m, const json_t *body, migrate_cb cb, void *data);

#endif
