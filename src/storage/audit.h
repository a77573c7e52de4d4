/* SPDX-License-Identifier: MIT */
/* The writers' audit of a cluster shared volume (docs/architecture.md, "Writer epochs"): an
 * append-only file on the volume itself, written by whichever node coordinates it, one JSON
 * record per line. It says who could write each redirected disk and when: an "open" when the
 * coordinator's storage daemon exports a disk to a writer (a VM at a writer epoch, for a node
 * that asked), a "close" when that export ends. Being on the volume, it outlives the
 * coordinator that wrote it and every node reads the same file. */
#ifndef FERRY_STORAGE_AUDIT_H
#define FERRY_STORAGE_AUDIT_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

#define AUDIT_FILE ".ferry-csv/audit.jsonl"
#define AUDIT_READ_MAX (4u * 1024 * 1024) /* the newest bytes of the file read back */

/*
 * Appends rec (borrowed; "time_ms", the wall clock, is added unless rec has it) to the audit
 * of the volume at
 * dir with one O_APPEND write. Records: {"op": "open"|"close", "file" (inside the volume),
 * "vm", "epoch" (the VM's writer epoch), "node" (open: the node the writer runs on),
 * "coordinator", "coord_epoch" (the volume's coordinator epoch), "why" (close)}, and
 * {"op": "daemon", "coordinator", "coord_epoch", "why"} when a coordinator starts a storage
 * daemon: the exports of its earlier daemons ended with them (a daemon dies with its ferryd,
 * and a new one could not bind the port or lock the files while an old one lived). Blocking
 * file I/O (one short write).
 */
int audit_append(const char *dir, const json_t *rec, struct ferr *e);

/* The records of the volume at dir, oldest first, from the newest AUDIT_READ_MAX bytes (a
 * partial first line is skipped); lines that are not JSON objects are counted in *bad. New
 * JSON array ([] when there is no audit yet); NULL with e set when the file cannot be read. */
json_t *audit_read(const char *dir, unsigned *bad, struct ferr *e);

/*
 * Pure: replays records (in file order) and says whether at most one writer could write each
 * disk at every moment: {"writers_ok": bool, "violations": [{"file", "time_ms", "writer":
 * {"vm", "epoch", "nodes"}, "other": {"vm", "epoch", "nodes"}}], "open": [{"file", "vm",
 * "epoch", "nodes": [...], "coordinator", "since_ms"}]}. A writer is a VM at one writer epoch
 * (live migration moves it between nodes without a second writer: QEMU hands the disk over).
 * An export counts as closed at its "close", at a "daemon" of its coordinator, and when it was
 * opened under an older coordinator epoch once a record of a newer one appears: the old
 * coordinator's daemon ended (released, or died with its ferryd) before a new coordinator took the
 * volume. New JSON; NULL only without memory.
 */
json_t *audit_check(const json_t *records);

#endif
