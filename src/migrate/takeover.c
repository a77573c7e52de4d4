/* SPDX-License-Identifier: MIT */
/* The decisions of a migration taken over after a ferryd restart; pure, no I/O. */
#include "migrate/takeover.h"

#include <stddef.h>
#include <string.h>

enum takeover_first takeover_first(const struct takeover_facts *f)
{
    if (f->vm_settling || !f->clustered || !f->quorum)
        return TAKEOVER_WAIT; /* the database must be asked before anything is decided */
    if (!f->journal_valid)
        return TAKEOVER_DROP_JOURNAL;
    if (f->qemu_runs)
        return TAKEOVER_DRIVE;
    return f->dest_owns ? TAKEOVER_FINISH_SOURCE : TAKEOVER_UNKNOWN;
}

enum takeover_query takeover_query(const char *status, bool has_ram)
{
    if (!status || strcmp(status, "none") == 0)
        return TAKEOVER_NOT_STARTED;
    if (strcmp(status, "completed") == 0)
        return has_ram ? TAKEOVER_CONFIRM : TAKEOVER_NOT_STARTED;
    return TAKEOVER_ON;
}

enum takeover_confirm takeover_confirm(enum takeover_dest d)
{
    switch (d) {
    case TAKEOVER_DEST_RUNS:
        return TAKEOVER_HAND_OVER;
    case TAKEOVER_DEST_UNREACHABLE:
        return TAKEOVER_ASK_AGAIN;
    case TAKEOVER_DEST_OTHER:
    default:
        return TAKEOVER_FAILED;
    }
}
