/* SPDX-License-Identifier: MIT */
/* The machine types this host's QEMU offers (qemu-system-x86_64 -machine help), so a VM can be
 * pinned to a versioned type ("pc-i440fx-7.2" rather than the alias "pc") that every host of
 * a migration must build identically. */
#ifndef FERRY_QEMU_MACHINES_H
#define FERRY_QEMU_MACHINES_H

#include <stdbool.h>

#include "common/err.h"

#define QEMU_MACHINES_MAX 128
#define QEMU_MACHINE_NAME_MAX 63

struct qemu_machines {
    unsigned n;
    char names[QEMU_MACHINES_MAX][QEMU_MACHINE_NAME_MAX + 1];
    char pc[QEMU_MACHINE_NAME_MAX + 1]; /* the versioned type "pc" stands for; "" if unknown */
};

/* Parses the output of `-machine help`. Pure; for unit tests. FERR_INVALID when it lists no
 * machine at all. */
int qemu_machines_parse(const char *text, struct qemu_machines *out, struct ferr *e);
/* Runs `qemu_binary -machine help` (blocks for a moment) and parses it. */
int qemu_machines_probe(const char *qemu_binary, struct qemu_machines *out, struct ferr *e);
/* name is one of them (an alias like "pc" counts). */
bool qemu_machines_has(const struct qemu_machines *m, const char *name);

#endif
