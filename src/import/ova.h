/* SPDX-License-Identifier: MIT */
/* An OVA: a tar archive (POSIX ustar, pax extended headers, GNU long names) read in place as an
 * index of members and their offsets, never unpacked. No I/O but through the caller's read
 * function. */
#ifndef FERRY_IMPORT_OVA_H
#define FERRY_IMPORT_OVA_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define OVA_MAX_MEMBERS 256
#define OVA_NAME_MAX 256
#define OVA_BLOCK 512u

struct ova_member {
    char name[OVA_NAME_MAX]; /* "./" stripped; inside the archive (text_path_inside) */
    uint64_t offset;         /* of its data in the archive */
    uint64_t size;           /* bytes */
};

struct ova_index {
    unsigned n; /* in archive order: the OVF descriptor first, as DSP0243 requires */
    struct ova_member members[OVA_MAX_MEMBERS];
};

/* Reads exactly len bytes at offset of the archive into buf: 0 or a negative code with e set.
 * ova_index_read only asks for bytes inside file_size. */
typedef int (*ova_read_fn)(void *ctx, uint64_t offset, void *buf, size_t len, struct ferr *e);

/*
 * Indexes the archive of file_size bytes named name (for messages), reading its headers through
 * rd. Regular files are indexed, directories skipped; everything else (links, devices, GNU
 * sparse files) is refused, as are bad header checksums, headers that are neither ustar nor GNU,
 * members that leave the archive (truncated), names outside it, and a name twice. pax "path"
 * and "size" records and GNU long names ('L') replace the header's. Messages name the archive
 * and the member's byte offset. Returns 0, FERR_INVALID, -ENOMEM, or what rd returned.
 */
int ova_index_read(const char *name, uint64_t file_size, ova_read_fn rd, void *ctx,
                   struct ova_index *out, struct ferr *e);

/* The member named name, NULL if none. */
const struct ova_member *ova_find(const struct ova_index *idx, const char *name);

#endif
