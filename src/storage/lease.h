/* SPDX-License-Identifier: MIT */
/* Liveness leases on a cluster shared volume: every node that reaches a volume rewrites its own
 * slot, VOLUME/.ferry-csv/leases/NODE, with a counter every --lease-ms (O_DIRECT|O_DSYNC where
 * the file system allows it); a reader calls a slot stale when its counter did not move for
 * --lease-expiry-ms on the reader's own monotonic clock, so no clock is shared. This is the
 * storage heartbeat: a node silent on the network but renewing is isolated, not dead. */
#ifndef FERRY_STORAGE_LEASE_H
#define FERRY_STORAGE_LEASE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define LEASE_DIR ".ferry-csv/leases"
#define LEASE_SLOT 4096 /* bytes of a slot: one aligned O_DIRECT block */
#define LEASE_MS_DEFAULT 1000
#define LEASE_MS_MIN 100
#define LEASE_MS_MAX 10000
#define LEASE_EXPIRY_MS_DEFAULT 5000
#define LEASE_EXPIRY_FACTOR_MIN 3 /* expiry must be at least 3 renewals */
#define LEASE_EXPIRY_MS_MAX 600000

/* ---- pure: a slot's bytes and the reader's judgement ---- */

/* The slot's text for node at counter (wall_ms only informs people): JSON padded with spaces
 * and a final newline to LEASE_SLOT bytes. buf must hold LEASE_SLOT bytes. */
int lease_encode(const char *node, uint64_t counter, uint64_t wall_ms, char *buf);
/* Parses a slot's bytes (len of them): 0 with node and counter, or FERR_INVALID. */
int lease_decode(const char *buf, size_t len, char node[64], uint64_t *counter, struct ferr *e);

/* What a reader knows of one slot: the counter it saw last and when (its monotonic ms) the
 * counter last moved. */
struct lease_seen {
    uint64_t counter;
    uint64_t changed_ms;
    bool known;
};
/* The reader read counter at now_ms: the age restarts when the counter moved (or on the
 * first sight: a slot first seen is given a whole expiry before it can be stale). */
void lease_observe(struct lease_seen *s, uint64_t counter, uint64_t now_ms);
/* ms since the counter last moved, as of now_ms. */
uint64_t lease_age_ms(const struct lease_seen *s, uint64_t now_ms);
bool lease_stale(const struct lease_seen *s, uint64_t now_ms, uint64_t expiry_ms);
/* Checks --lease-ms and --lease-expiry-ms together; 0 or FERR_INVALID with what to use. */
int lease_config_check(uint64_t lease_ms, uint64_t expiry_ms, struct ferr *e);

/* ---- file I/O (blocking; in the thread pool) ---- */

/* Writes node's slot on the volume at dir with counter: O_DIRECT|O_DSYNC, or O_DSYNC alone
 * where the file system refuses O_DIRECT (tmpfs); *direct says which. The leases directory is
 * made only while the volume's id file is there. */
int lease_write(const char *dir, const char *node, uint64_t counter, bool *direct, struct ferr *e);
/* Reads every slot on the volume at dir: {"NODE": counter, ...}; new JSON (empty when none
 * can be read). A slot that does not parse is left out. */
json_t *lease_read_all(const char *dir);
/* Removes the leases directory and its slots (when the volume is removed). */
void lease_remove_all(const char *dir);

#endif
