/* SPDX-License-Identifier: MIT */
/* Reading a VMware machine from files: a .vmx with its VMDKs, an .ovf with its files and
 * manifest, or an OVA read in place. Blocking I/O: call it from the libuv thread pool. */
#ifndef FERRY_IMPORT_LOAD_H
#define FERRY_IMPORT_LOAD_H

#include <stdbool.h>

#include "common/err.h"
#include "import/plan.h"

#define IMPORT_MAX_CHAIN 32 /* snapshots under a disk */

/*
 * Loads the machine at path (absolute; .vmx, .ovf or .ova by its extension) into *out: parses
 * it, and for every disk reads its descriptor (a text file, or the one a sparse file embeds),
 * follows parentFileNameHint through the snapshot chain, and checks every extent: inside the
 * machine's folder also after symlinks (realpath), a regular file, not shorter than the
 * descriptor says (FLAT: offset + size; SPARSE: its header's metadata), a sparse extent's
 * capacity equal to its line in the descriptor, a parent as big as its child. An OVF's files
 * must match their ovf:size and their disks' capacity; the manifest beside it (NAME.mf, or
 * the OVA's .mf member) is checked entry by entry with its digests before this returns
 * (digests false: parsed and its files found, but not read: a preview's plan, with a note). An
 * OVA is indexed in place (ova.h) and its disks, which must be single-file sparse VMDKs
 * (streamOptimized, monolithicSparse), are described by their offset in it.
 * Returns 0, or FERR_INVALID (naming the file and line, element or byte) / -errno with e.
 */
int import_load(const char *path, bool digests, struct import_source *out, struct ferr *e);

#endif
