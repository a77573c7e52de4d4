/* SPDX-License-Identifier: MIT */
/* VMware's VMDK disks: the text descriptor (standalone or embedded in a sparse extent) and the
 * sparse extent header, after VMware's "Virtual Disk Format 5.0" specification. No I/O. */
#ifndef FERRY_IMPORT_VMDK_H
#define FERRY_IMPORT_VMDK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define VMDK_MAX_DESCRIPTOR (1u << 20)
#define VMDK_MAX_EXTENTS 256 /* a twoGbMaxExtent disk of 512 GiB has 256 */
#define VMDK_PATH_MAX 1024
#define VMDK_SPARSE_HEADER_SIZE 512
#define VMDK_SECTOR 512u

enum vmdk_extent_type {
    VMDK_EXTENT_FLAT,       /* FLAT: raw sectors at an offset of a file */
    VMDK_EXTENT_SPARSE,     /* SPARSE: a hosted sparse extent (KDMV header) */
    VMDK_EXTENT_ZERO,       /* ZERO: no file, reads zeros */
    VMDK_EXTENT_VMFS,       /* VMFS: an ESXi flat file */
    VMDK_EXTENT_VMFSSPARSE, /* VMFSSPARSE: an ESXi delta (snapshot) */
    VMDK_EXTENT_SESPARSE,   /* SESPARSE: an ESXi space-efficient delta */
};

struct vmdk_extent {
    bool readonly;    /* RDONLY rather than RW */
    uint64_t sectors; /* its size in 512-byte sectors */
    enum vmdk_extent_type type;
    char file[VMDK_PATH_MAX]; /* relative to the descriptor's folder; "" for ZERO */
    uint64_t offset;          /* FLAT/VMFS: first sector in the file */
    unsigned line;
};

struct vmdk_desc {
    char create_type[32];            /* as written: "monolithicSparse", "vmfs", ... */
    bool sparse;                     /* the create type's data is sparse (a file of grains) */
    uint32_t cid, parent_cid;        /* parent_cid 0xffffffff: no parent */
    char parent_hint[VMDK_PATH_MAX]; /* parentFileNameHint, "" without a parent */
    unsigned parent_line;
    char adapter[32]; /* ddb.adapterType, "" when absent */
    unsigned nextents;
    struct vmdk_extent extents[VMDK_MAX_EXTENTS];
    uint64_t capacity_sectors; /* the sum of the extents */
};

/*
 * Parses a descriptor (len bytes, a NUL ends it early as in an embedded descriptor's padding)
 * of the file name (for messages). Accepted create types: monolithicSparse,
 * twoGbMaxExtentSparse, monolithicFlat, twoGbMaxExtentFlat, vmfs, vmfsThin, vmfsSparse,
 * streamOptimized, seSparse. Each extent must match them (a SPARSE extent in a flat disk is
 * refused) and name a file that stays inside the descriptor's folder (text_path_inside: no
 * absolute path, no ".."). Refused: no extents, unknown extent types (VMFSRDM, VMFSRAW: raw
 * devices), NOACCESS extents, unknown access, a descriptor without createType, CID or
 * parentCID, a version other than 1..3. Unknown keys are ignored. Returns 0, or FERR_INVALID with
 * "NAME:LINE: ..." in e.
 */
int vmdk_desc_parse(const char *name, const char *text, size_t len, struct vmdk_desc *out,
                    struct ferr *e);

/* The header of a hosted sparse extent ("KDMV"). */
struct vmdk_sparse {
    uint32_t version, flags;
    uint64_t capacity_sectors;
    uint64_t grain_sectors;
    uint64_t desc_offset, desc_sectors; /* the embedded descriptor; 0, 0 when none */
    uint64_t overhead_sectors;          /* metadata before the first grain */
    bool compressed;                    /* streamOptimized (deflate grains) */
};

/*
 * Parses the first 512 bytes of a sparse extent of file_size bytes named name. Checks the
 * magic, the version (1..3), the grain size (a power of two of at least 8 sectors), the
 * capacity, and that an embedded descriptor lies inside the file and is at most
 * VMDK_MAX_DESCRIPTOR. FERR_INVALID with a message naming the file otherwise.
 */
int vmdk_sparse_parse(const char *name, const uint8_t hdr[VMDK_SPARSE_HEADER_SIZE],
                      uint64_t file_size, struct vmdk_sparse *out, struct ferr *e);

/* Whether a file begins with the sparse magic (4 bytes at least). */
bool vmdk_is_sparse(const uint8_t *hdr, size_t len);

#endif
