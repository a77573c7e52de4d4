/* SPDX-License-Identifier: MIT */
/* What a restarted ferryd does with a migration its predecessor left under way: pure decisions
 * from what the journal, the VM, QEMU, the cluster database and the destination say. */
#ifndef FERRY_MIGRATE_TAKEOVER_H
#define FERRY_MIGRATE_TAKEOVER_H

#include <stdbool.h>

/*
 * QEMU migrates on when the source's ferryd dies; the journal (STATE/vms/NAME/migration.json)
 * tells the next ferryd whose migration it was. The rules below never let a VM run in two
 * places and never lose the newest copy: a QEMU that completed a migration hands the VM over
 * only when the destination proves it runs it; a source QEMU gone meanwhile leaves the VM's
 * fate open unless the database already names the destination (docs/architecture.md).
 */

/* What the restarted ferryd knows when it finds a journal. */
struct takeover_facts {
    bool journal_valid; /* names a destination, a budget and the strategy */
    bool vm_settling;   /* the VM starts, stops, is re-attached, or is an incoming copy */
    bool clustered;     /* this node is in a cluster ... */
    bool quorum;        /* ... and can write to it now */
    bool qemu_runs;     /* the source QEMU runs (the VM is running or paused here) */
    bool dest_owns;     /* the database names the journal's destination as the owner */
};

enum takeover_first {
    TAKEOVER_WAIT,          /* ask again on the next tick */
    TAKEOVER_DROP_JOURNAL,  /* not a journal: remove it, nothing else */
    TAKEOVER_FINISH_SOURCE, /* the hand-over was done but for removing the source's definition */
    TAKEOVER_UNKNOWN,       /* QEMU is gone and nobody can tell whether the destination has the
                             * whole VM: say so, drop the journal, guess neither way */
    TAKEOVER_DRIVE,         /* take the migration over from what QEMU says (takeover_query) */
};
enum takeover_first takeover_first(const struct takeover_facts *f);

/* QEMU's answer to query-migrate after a take-over: status ("none", "active", ...; NULL if
 * none) and whether it has "ram" figures (an outgoing migration's). */
enum takeover_query {
    TAKEOVER_NOT_STARTED, /* no migration left this QEMU (ferryd died between prepare and
                           * "migrate"; a QEMU that came here by migration says "completed"
                           * about that incoming one, without ram figures): failed */
    TAKEOVER_CONFIRM,     /* "completed": ask the destination whether it runs the VM */
    TAKEOVER_ON,          /* under way, failed or cancelled: the usual handling */
};
enum takeover_query takeover_query(const char *status, bool has_ram);

/* The destination's answer about the VM, after TAKEOVER_CONFIRM. */
enum takeover_dest {
    TAKEOVER_DEST_RUNS,        /* it runs the VM: this QEMU's "completed" is this migration's */
    TAKEOVER_DEST_UNREACHABLE, /* no answer (down, cut off, timed out) */
    TAKEOVER_DEST_OTHER,       /* it answered that it does not run it (or has no such VM) */
};
enum takeover_confirm {
    TAKEOVER_HAND_OVER, /* switch the owner, quit the source */
    TAKEOVER_ASK_AGAIN, /* nothing is decided while the destination cannot answer */
    TAKEOVER_FAILED,    /* an older migration's "completed": this one never started */
};
enum takeover_confirm takeover_confirm(enum takeover_dest d);

#endif
