/* SPDX-License-Identifier: MIT */
/* A task's record (a long operation: migrate, drain, storage move, failover) as the cluster
 * database keeps it and the API shows it: its checks, list filters and the mapping of a
 * migration's QEMU status to a phase. Pure: no I/O, no clock. */
#ifndef FERRY_CLUSTER_TASKREC_H
#define FERRY_CLUSTER_TASKREC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TASKREC_ID_MAX 64      /* bytes of an id: 1-64 of [a-z0-9_.-] */
#define TASKREC_RESULT_MAX 512 /* bytes of a result text */
#define TASKREC_DETAIL_MAX 24  /* members of "detail" */
#define TASKREC_DETAIL_STR 128 /* bytes of a string in "detail" */
#define TASKREC_LIMIT_MAX 500  /* most records a list answers (and the cluster keeps ended) */

/*
 * A record: {"id", "kind" (migrate|drain|storage-move|failover|import), "target" (a VM or
 * node name), "node" (where it runs), "user" (who asked: local|client|peer|ferryd, a token of
 * 1-32 [a-z0-9_.-]), "state" (running|done|failed|cancelled), "phase" (a token of 0-32
 * [a-z0-9_.-]: for a migration setup|data-transfer|switchover|done), "percent" (0..100),
 * "start_ms", "end_ms" (wall clock; 0 while running), "result" (a short text, "" while
 * running), "detail" (an object of at most TASKREC_DETAIL_MAX members, each a number, a
 * boolean, null or a string of at most TASKREC_DETAIL_STR bytes: a migration's transferred /
 * remaining / dirty rate / MB/s, a drain's moved of total)}; the cluster database adds
 * "generation" (1 for a new record, +1 per change). with_generation says whether rec must
 * carry it (a stored record) or must not (a command). Returns 0 or FERR_INVALID naming the
 * field.
 */
int taskrec_check(const json_t *rec, bool with_generation, struct ferr *e);

/* Whether state ends a task (done, failed, cancelled): an ended record never changes. */
bool taskrec_final(const char *state);
/* Whether kind / state is one of the names above. */
bool taskrec_kind_valid(const char *kind);
bool taskrec_state_valid(const char *state);

/* A list's filters, each NULL for any; limit 1..TASKREC_LIMIT_MAX. */
struct taskrec_filter {
    const char *state, *kind, *target, *node;
    unsigned limit;
};
/* Checks f's values: 0, or FERR_INVALID saying which values are allowed. */
int taskrec_filter_check(const struct taskrec_filter *f, struct ferr *e);
/* Whether rec passes f. */
bool taskrec_matches(const json_t *rec, const struct taskrec_filter *f);
/* The records of recs (an array, borrowed) that pass f, newest start first (then id), at most
 * f->limit: a new array the caller owns (NULL when out of memory). */
json_t *taskrec_select(const json_t *recs, const struct taskrec_filter *f);

/*
 * Whether a running task rec (borrowed) is left with nobody to end it, and why (into why):
 * on its own node (self) when no operation of this process holds it (held false: a previous
 * ferryd's), and on the leader (leading) when its node is down or no longer in nodes (the
 * cluster's node records, borrowed). Ended tasks and the tasks of up nodes are not.
 */
bool taskrec_orphaned(const json_t *rec, const json_t *nodes, const char *self, bool held,
                      bool leading, char *why, size_t size);

/* The task phase of a migration whose QEMU status (MigrationStatus, qapi/migration.json) is
 * status ("preparing" before QEMU was asked): setup, data-transfer, switchover. */
const char *taskrec_migration_phase(const char *status);
/* How far a pre-copy is, 0..99: transferred against what is left; 0 when nothing is known. */
int taskrec_percent(uint64_t transferred, uint64_t remaining);

#endif
