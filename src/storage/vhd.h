/* SPDX-License-Identifier: MIT */
/* VHD files (QEMU format "vpc") through qemu-img: create fixed disks, read and check their info.
 * These functions block (they run qemu-img): call them from the libuv thread pool. */
#ifndef FERRY_STORAGE_VHD_H
#define FERRY_STORAGE_VHD_H

#include <stdint.h>

#include "common/err.h"

#define VHD_MAX_SIZE_MIB (2040ull * 1024) /* VHD's own limit is about 2040 GiB */

struct vhd_info {
    char format[16];       /* "vpc" */
    char subformat[16];    /* "fixed", "dynamic", "differencing" or "" if unknown */
    uint64_t virtual_size; /* bytes the guest sees */
    uint64_t actual_size;  /* bytes allocated on the host */
    uint64_t file_size;    /* length of the file */
};

/* Creates a fixed VHD of exactly size_mib MiB (force_size, so no CHS rounding) at path with
 * qemu-img. The directory must exist and the file must not (FERR_EXISTS). On failure no file
 * is left behind. qemu_img is the binary to run ("qemu-img" if NULL). */
int vhd_create_fixed(const char *qemu_img, const char *path, uint64_t size_mib, struct ferr *e);

/* Runs qemu-img info --output=json on path and fills out; FERR_INVALID if the file is not a
 * VHD. For a fixed VHD, also checks that file_size == virtual_size + 512 (data then footer),
 * which is what lets ferry attach it as raw. */
int vhd_info_read(const char *qemu_img, const char *path, struct vhd_info *out, struct ferr *e);

/* Parses qemu-img's JSON info text (pure, for unit tests). file_size is not touched. */
int vhd_info_parse(const char *json_text, struct vhd_info *out, struct ferr *e);

#define VHD_FOOTER_SIZE 512

/* Parses a VHD footer, the last 512 bytes of every VHD file (Microsoft's "Virtual Hard Disk
 * Image Format Specification"): checks the "conectix" cookie and the checksum, writes the disk
 * type ("fixed", "dynamic", "differencing") into subformat and the disk's current size in bytes
 * into *current_size (may be NULL). Pure. FERR_INVALID if it is no valid footer. */
int vhd_footer_parse(const uint8_t footer[VHD_FOOTER_SIZE], char subformat[16],
                     uint64_t *current_size, struct ferr *e);

#endif
