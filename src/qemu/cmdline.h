/* SPDX-License-Identifier: MIT */
/* Builds the QEMU command line of a VM from its spec and where it runs on this host. */
#ifndef FERRY_QEMU_CMDLINE_H
#define FERRY_QEMU_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "vm/spec.h"

struct qemu_launch {
    const struct vm_spec *spec;
    const char *qemu_binary; /* e.g. "qemu-system-x86_64" */
    const char *accel;       /* "kvm" or "tcg" */
    const char *run_dir;     /* holds qmp.sock and qemu.pid */
    const char *const *taps; /* spec->nnics tap names */
    const uint64_t
        *disk_bytes; /* spec->ndisks: virtual size of each fixed VHD (data before the footer) */
    const char *incoming; /* NULL, or an -incoming argument ("defer") for migration */
    bool prealloc;        /* -mem-prealloc: QEMU touches all guest RAM before it runs */
};

/*
 * Returns a new NULL-terminated argv (caller frees with qemu_argv_free). Devices get stable
 * ids (disk0, net0, ...) so both sides of a migration build the same machine. Fixed VHDs are
 * attached as "raw" limited to their virtual size, so the footer is never touched and the
 * disk migrates. The console is a QEMU ring buffer chardev "console" (read with ringbuf-read)
 * so it survives a ferryd restart. QMP at run_dir/qmp.sock, pid file run_dir/qemu.pid.
 * -no-shutdown: a guest power-off leaves QEMU in "shutdown" state until told to quit.
 */
int qemu_argv_build(const struct qemu_launch *l, char ***argv_out, struct ferr *e);
void qemu_argv_free(char **argv);

#endif
