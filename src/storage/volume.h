/* SPDX-License-Identifier: MIT */
/* One cluster shared volume as this host sees it: a directory mounted at the same path on every
 * node, its id file, and what this host can do with it. Blocking file I/O: callers on the loop
 * run these in the thread pool (a volume on a hung NFS server must not stop the loop). */
#ifndef FERRY_STORAGE_VOLUME_H
#define FERRY_STORAGE_VOLUME_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

#define VOLUME_DIR ".ferry-csv"                 /* ferry's own directory on a volume */
#define VOLUME_ID_FILE ".ferry-csv/volume.json" /* {"id", "cluster", "name"} */
#define VOLUME_ID_MAX 65

/*
 * Claims dir for volume name of cluster cluster_id: dir must be an existing, writable directory
 * given as an absolute path without symlinks in it (realpath(dir) == dir, so every node means
 * the same thing); a new random id is written into VOLUME_ID_FILE (fsync'd, by rename) and
 * copied to id. Refused (FERR_EXISTS) when the id file names another cluster, or this cluster
 * with another volume name: a directory is one volume of one cluster.
 */
int volume_claim(const char *dir, const char *cluster_id, const char *name, char id[VOLUME_ID_MAX],
                 struct ferr *e);
/* Removes VOLUME_ID_FILE (and VOLUME_DIR when empty) if it holds id; 0 also when it is gone. */
int volume_release(const char *dir, const char *id, struct ferr *e);

/*
 * What this host sees at dir, for a volume whose id is want_id: {"access": "direct"|"none",
 * "why": "" or why not, "size_bytes", "free_bytes" (0 when unknown)}. direct means the id file
 * is there with want_id and the directory is writable; anything else is none, with the reason
 * (not mounted, another volume, not writable, ...). New JSON; NULL only without memory.
 */
json_t *volume_probe(const char *dir, const char *want_id);

/* The *.vhd files directly in dir: [{"file", "path", "size_bytes"}] sorted by name; new JSON,
 * an empty array when dir cannot be read. */
json_t *volume_vhds(const char *dir);

/* Pure: parses the id file's text; 0 and the fields copied, or FERR_INVALID with e set. */
int volume_id_parse(const char *text, char id[VOLUME_ID_MAX], char cluster[64], char name[64],
                    struct ferr *e);

#endif
