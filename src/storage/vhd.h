/* SPDX-License-Identifier: MIT */
/* VHD files (QEMU format "vpc"): their metadata checked before anything uses them, and fixed or
 * dynamic ones created, converted and described through qemu-img. */
#ifndef FERRY_STORAGE_VHD_H
#define FERRY_STORAGE_VHD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define VHD_MAX_SIZE_MIB (2040ull * 1024) /* VHD's own limit is about 2040 GiB */
#define VHD_MAX_SIZE (VHD_MAX_SIZE_MIB << 20)
#define VHD_FOOTER_SIZE 512
#define VHD_HEADER_SIZE 1024 /* the dynamic disk header */
/* The smallest block of a dynamic VHD ferry takes (see vhd_check). */
#define VHD_MIN_BLOCK_SIZE (512u * 1024)

/* ---- the pure part (vhdcheck.c): no I/O but through the caller's read function ---- */

/* Parses a VHD footer, the last 512 bytes of every VHD file (Microsoft's "Virtual Hard Disk
 * Image Format Specification"): checks the "conectix" cookie and the checksum, writes the disk
 * type ("fixed", "dynamic", "differencing") into subformat and the disk's current size in bytes
 * into *current_size (may be NULL). Pure. FERR_INVALID if it is no valid footer. */
int vhd_footer_parse(const uint8_t footer[VHD_FOOTER_SIZE], char subformat[16],
                     uint64_t *current_size, struct ferr *e);

/* A footer for the same disk grown (or shrunk) to new_size bytes: the current size, the CHS
 * geometry (the specification's algorithm; QEMU reads the size of images ferry and Hyper-V
 * make from the current size) and the checksum are rewritten. Pure. FERR_INVALID for a
 * footer that does not parse or a size that is not a multiple of 512 up to VHD_MAX_SIZE. */
int vhd_footer_resize(uint8_t footer[VHD_FOOTER_SIZE], uint64_t new_size, struct ferr *e);

/* Reads exactly len bytes at offset of the file being checked into buf: 0, or a negative code
 * with e set. vhd_check only asks for bytes inside the file_size it was given. */
typedef int (*vhd_read_fn)(void *ctx, uint64_t offset, void *buf, size_t len, struct ferr *e);

/* What vhd_check learnt of a VHD it accepted. */
struct vhd_layout {
    char subformat[16];         /* "fixed" or "dynamic" */
    uint64_t current_size;      /* the disk's size in bytes, as the footer says */
    uint32_t block_size;        /* dynamic: data bytes per block; 0 for fixed */
    uint32_t max_table_entries; /* dynamic: entries of the block allocation table (BAT) */
    uint32_t used_blocks;       /* dynamic: BAT entries that point to a block */
};

/*
 * Checks the metadata of a whole VHD of file_size bytes named name (for messages), reading it
 * through read(ctx, ...). Nothing else is touched: unit tests feed in-memory images. What is
 * checked, after Microsoft's VHD specification (2006, version 1.0) and what QEMU's vpc driver
 * (block/vpc.c) does with the file:
 *  - the footer at the end: cookie "conectix", checksum, file format version 1.x, disk type;
 *    differencing disks are refused (QEMU's vpc driver ignores the parent);
 *  - the disk size: a positive multiple of 512, at most VHD_MAX_SIZE (QEMU refuses more);
 *  - fixed: the file is exactly the data and the footer (ferry attaches it as raw);
 *  - dynamic: the footer copy at offset 0 equals the footer (QEMU reads the copy, a writer
 *    rewrites the end); the dynamic header at the footer's data offset, inside the file:
 *    cookie "cxsparse", checksum, version 1.x, block size a power of two of at least
 *    VHD_MIN_BLOCK_SIZE, a BAT with at least enough entries for the disk size and no more than
 *    a disk of VHD_MAX_SIZE needs; the BAT inside the file; every used BAT entry (not
 *    0xFFFFFFFF) a block (bitmap + data) that lies inside the file before the footer, overlaps
 *    neither the metadata nor another block.
 * Returns 0 with *out filled (out may be NULL); FERR_INVALID with a message that names the file,
 * says what is wrong and what to do; -ENOMEM; or what read returned.
 */
int vhd_check(const char *name, uint64_t file_size, vhd_read_fn read, void *ctx,
              struct vhd_layout *out, struct ferr *e);

/* ---- qemu-img and files (vhd.c). These block: call them from the libuv thread pool. ---- */

struct vhd_info {
    char format[16];       /* "vpc" */
    char subformat[16];    /* "fixed" or "dynamic" (vhd_info_read refuses the others) */
    uint64_t virtual_size; /* bytes the guest sees */
    uint64_t actual_size;  /* bytes allocated on the host */
    uint64_t file_size;    /* length of the file */
};

/* Checks the VHD at path with vhd_check (it must be a regular file). Fills *out if not NULL. */
int vhd_check_file(const char *path, struct vhd_layout *out, struct ferr *e);

/* Creates a VHD of exactly size_mib MiB (force_size, so no CHS rounding) at path with qemu-img;
 * subformat is "fixed" or "dynamic". The directory must exist and the file must not
 * (FERR_EXISTS). The new file is checked with vhd_check. On failure no file is left behind.
 * qemu_img is the binary to run ("qemu-img" if NULL). */
int vhd_create(const char *qemu_img, const char *path, const char *subformat, uint64_t size_mib,
               struct ferr *e);

/*
 * Grows the VHD at path to size_mib MiB, keeping its type and every byte the guest had. A
 * fixed VHD grows in place: the file is extended (reserved with fallocate: no room is
 * FERR_LIMIT), the new footer written at the new end and synced before the old one is zeroed
 * (a crash between the two leaves a valid VHD of the new size). A dynamic one is copied with
 * qemu-img into a new dynamic VHD of the new size beside it, which replaces it by rename
 * (qemu-img cannot resize a VHD). The file is checked with vhd_check first; a size not above
 * the current one is FERR_INVALID; a file a QEMU holds (its image lock) is FERR_STATE, and
 * ferry holds that lock itself while it works so no QEMU opens it meanwhile. Blocks.
 */
int vhd_grow(const char *qemu_img, const char *path, uint64_t size_mib, struct ferr *e);

/* Deletes the VHD at path: it must pass vhd_check (ferry deletes nothing but VHDs) and no
 * QEMU may hold it (FERR_STATE). */
int vhd_delete(const char *path, struct ferr *e);

/* Formats vhd_convert reads, and how it names them (qemu-img's names). */
#define VHD_SOURCE_FORMATS "raw, qcow2, vmdk, vhdx, vpc"

/*
 * Converts the disk image src (any of VHD_SOURCE_FORMATS; src_format NULL: detected) into a new
 * VHD dst of subformat "fixed" or "dynamic" with the same virtual size: qemu-img convert -O vpc
 * -o subformat=...,force_size=on. The copy is made under a temporary name in dst's directory
 * and linked to dst only when it is whole and passed vhd_check, so dst never exists half made;
 * an existing dst is refused (FERR_EXISTS) and never overwritten. On failure nothing is left
 * behind. A source VHD must pass vhd_check (so a differencing one is refused). Without
 * src_format a detected image that refers to other files (a backing file, a qcow2 data file,
 * VMDK extents) is refused: a raw image whose first bytes look like such a format would make
 * qemu-img read those files. A source in use by a running QEMU is refused (its lock).
 */
int vhd_convert(const char *qemu_img, const char *src, const char *src_format, const char *dst,
                const char *subformat, struct ferr *e);

/* The verdict on qemu-img info's JSON for a conversion source (pure, for unit tests): fills
 * format (its qemu-img name) and *virtual_size, or refuses as vhd_convert describes. explicit:
 * the caller named the format. */
int vhd_source_parse(const char *json_text, const char *src, int explicit, char format[16],
                     uint64_t *virtual_size, struct ferr *e);

/* Checks path with vhd_check, then runs qemu-img info --output=json on it and fills out;
 * FERR_INVALID if the file is no VHD ferry can use. For a fixed VHD, also checks that
 * file_size == virtual_size + 512 (data then footer), which is what lets ferry attach it as
 * raw. */
int vhd_info_read(const char *qemu_img, const char *path, struct vhd_info *out, struct ferr *e);

/* Parses qemu-img's JSON info text (pure, for unit tests). file_size is not touched. */
int vhd_info_parse(const char *json_text, struct vhd_info *out, struct ferr *e);

#endif
