/* SPDX-License-Identifier: MIT */
/* Moving a VM's disk to another file (onto a cluster shared volume, or between volumes) while
 * the VM runs: QEMU's blockdev-mirror in write-blocking mode, which always converges, then the
 * pivot; the spec changes only after the pivot. A stopped VM's disk is copied with qemu-img. */
#ifndef FERRY_FLEET_STORAGEMOVE_H
#define FERRY_FLEET_STORAGEMOVE_H

#include <jansson.h>
#include <uv.h>

#include "common/err.h"
#include "common/reply.h"

struct fleet;
struct vm;

struct storage_move_env {
    uv_loop_t *loop;
    struct fleet *fleet;
    const char *qemu_img; /* NULL: "qemu-img" */
};

/*
 * Moves disk `disk` of vm (of this node) to the new fixed VHD `to` (absolute; must not exist;
 * its directory must). speed_mib caps the copy (0: no cap). cb gets 200 and the VM's object
 * once the VM runs on the new file and its record says so, or the error; on any failure or a
 * cancel the VM keeps running on its old disk and the new file is removed. Synchronous
 * refusals (bad disk index, a move or migration under way, a read-only or dynamic disk while
 * running, a VM that is neither running, paused nor stopped) return negative with e set.
 */
int storage_move_start(const struct storage_move_env *env, struct vm *vm, unsigned disk,
                       const char *to, unsigned speed_mib, reply_cb cb, void *data,
                       struct ferr *e);
/* Cancels vm's move: its answer says "cancelled". FERR_NOTFOUND when none runs. */
int storage_move_cancel(const char *vm_name, struct ferr *e);
/* The move of vm_name under way: {"disk", "from", "to", "phase", "done_bytes", "total_bytes"};
 * NULL when none. */
json_t *storage_move_progress(const char *vm_name);

/*
 * A move the previous ferryd left in vm's QEMU (it ended mid-move): asked once per QEMU
 * (ferryd's 2 s tick calls it for every VM). A copy that did not finish is undone as a failed
 * move is (the job cancelled, the new nodes and the new file gone: the VM stays on its disk);
 * a switch that happened but did not reach the spec is finished (the old nodes go, the spec
 * and the cluster record name the new file). Logged either way.
 */
void storage_move_recover(const struct storage_move_env *env, struct vm *vm);

#endif
