/* SPDX-License-Identifier: MIT */
/* The journal of a migration: what a restarted ferryd needs to finish or undo it. */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "migrate/migrate_internal.h"

/* ---- the journal: what a restarted ferryd needs to finish a migration ----
 * STATE/vms/NAME/migration.json exists from before the destination is asked to prepare until
 * the migration is over: {"to": NODE, "budget_ms": N, "postcopy": BOOL, "tls": BOOL} (tls:
 * whether the stream is encrypted, for the record; absent in a journal of an older ferryd). QEMU
 * migrates on when ferryd dies; the journal tells the next ferryd whose migration it was
 * (migrate_recover). */

int migrate__journal_path(const struct vm *vm, char *out, size_t size)
{
    return fmt_path(out, size, "%s/migration.json", vm_state_dir(vm));
}

int migrate__journal_write(const struct mig *g, struct ferr *e)
{
    char path[1300];
    if (migrate__journal_path(g->vm, path, sizeof(path)) < 0)
        return ferr_set(e, FERR_INVALID, "migration journal: path too long");
    json_t *j = json_pack("{s:s, s:I, s:b, s:b}", "to", g->to, "budget_ms",
                          (json_int_t)g->policy.budget_ms, "postcopy", g->postcopy, "tls", g->tls);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return ferr_set(e, -ENOMEM, "migration journal: out of memory");
    int rc = file_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

void migrate__journal_remove(const struct vm *vm)
{
    char path[1300];
    if (migrate__journal_path(vm, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
        log_warn("migrate %s: unlink %s: %s", vm_name(vm), path, strerror(errno));
}

/* QEMU's downtime-limit for this migration (policy.c). */
