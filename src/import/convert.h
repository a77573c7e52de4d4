/* SPDX-License-Identifier: MIT */
/* The conversions of an import plan: each source disk to a VHD on the volume with qemu-img,
 * progress and cancel. Blocking: run it in the libuv thread pool. */
#ifndef FERRY_IMPORT_CONVERT_H
#define FERRY_IMPORT_CONVERT_H

#include <stdatomic.h>

#include "common/err.h"
#include "import/plan.h"

/* Shared between the worker that converts and the loop that watches. */
struct import_progress {
    atomic_int cancel;    /* set by the loop: stop, remove what was made */
    atomic_uint disk;     /* the disk being converted (index into the plan) */
    atomic_uint permille; /* of all the plan's bytes, 0..1000 */
};

/*
 * Converts every disk of plan, in order: `qemu-img convert -p -O vpc -o
 * subformat=fixed|dynamic,force_size=on` from the VMDK (an OVA's member is read in place
 * through QEMU's raw driver with offset and size) into a hidden temporary file beside the
 * target, a fixed one's space reserved (fallocate), checked with vhd_check, then linked to the
 * target name (never over an existing file). Progress is qemu-img's own (-p), weighted by the
 * disks' sizes. When p->cancel is set the qemu-img running is ended. On any failure or cancel every
 * file this call made (targets already linked and the temporary one) is removed: nothing is left.
 * Returns 0, -ECANCELED, or a negative code with e naming the disk.
 */
int import_convert(const char *qemu_img, const struct import_plan *plan, struct import_progress *p,
                   struct ferr *e);

/* Removes the plan's targets (after a define that failed). */
void import_convert_undo(const struct import_plan *plan);

#endif
