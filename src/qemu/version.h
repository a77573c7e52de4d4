/* SPDX-License-Identifier: MIT */
/* Which QEMU this host runs (qemu-system-x86_64 --version), and what that version may be
 * trusted with: QEMU before 9.0 loses guest writes in a live migration under TCG. */
#ifndef FERRY_QEMU_VERSION_H
#define FERRY_QEMU_VERSION_H

#include <stdbool.h>

#include "common/err.h"

#define QEMU_VERSION_TEXT_MAX 127

struct qemu_version {
    unsigned major, minor, micro;
    char text[QEMU_VERSION_TEXT_MAX + 1]; /* "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" */
};

/*
 * The oldest QEMU whose TCG dirty tracking does not lose writes during live migration.
 * QEMU's fast path that syncs the migration bitmap 64 pages at a time (aa8dc044772,
 * "migration: synchronize memory bitmap 64bits at a time", 2017) cleared dirty bits without
 * bringing the TCG TLB up to date, so stores through TLB entries made writable before a sync
 * set no dirty bit and the page was never sent again: memory corruption or a panic on the
 * destination. Fixed in QEMU 9.0 by "physmem: Fix migration dirty bitmap coherency with TCG
 * memory access" (Nicholas Piggin, 2024; cpu_physical_memory_dirty_bits_cleared). Debian
 * 12's QEMU 7.2.22 does not carry the fix; bookworm-backports' 10.0 does. KVM tracks dirty
 * pages in the kernel and is not affected. Measured: docs/architecture.md, "Guest integrity".
 */
#define QEMU_TCG_MIGRATION_MAJOR 9
#define QEMU_TCG_MIGRATION_MINOR 0

/* Parses `--version` output ("QEMU emulator version 7.2.22 (Debian ...)"). Pure; for unit
 * tests. FERR_INVALID when it is no QEMU version line. */
int qemu_version_parse(const char *text, struct qemu_version *out, struct ferr *e);
/* Runs `qemu_binary --version` (blocks for a moment) and parses it. */
int qemu_version_probe(const char *qemu_binary, struct qemu_version *out, struct ferr *e);
/* v is at least major.minor. */
bool qemu_version_at_least(const struct qemu_version *v, unsigned major, unsigned minor);
/* Live migration under TCG keeps every guest write with this QEMU (see above). */
bool qemu_version_tcg_migration_safe(const struct qemu_version *v);

#endif
