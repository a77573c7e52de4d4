/* SPDX-License-Identifier: MIT */
/* The per-VM state machine's decisions, pure: which action a state allows and how it goes on,
 * and the state that QEMU's events, its status and its end lead to. vm.c and vmset.c do the
 * I/O; the states and their diagram are vm.h's. */
#ifndef FERRY_VM_VMSTATE_H
#define FERRY_VM_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "qemu/process.h"
#include "vm/vm.h"

/* The states in which a QEMU runs for the VM (starting, running, paused, stopping, incoming):
 * it holds the VM's memory, has a pid and an uptime. */
bool vmstate_has_qemu(enum vm_state s);

enum vm_action {
    VM_ACT_START,
    VM_ACT_STOP, /* power off, kill after the timeout */
    VM_ACT_KILL,
    VM_ACT_QUIT, /* a migration's source after the hand-over */
    VM_ACT_PAUSE,
    VM_ACT_RESUME,
    VM_ACT_DELETE, /* the definition (vmset_delete) */
};

/* What vm.c knows of the VM when an action is asked. */
struct vmstate_facts {
    const char *name;
    enum vm_state state;
    bool qmp_ready;     /* QEMU's QMP is connected and answered */
    bool cleaning_up;   /* the last QEMU's handles are still closing */
    bool has_pid;       /* the QEMU's pid is known */
    bool migrating_out; /* a live migration from here runs */
    bool force;         /* delete --force */
    bool postmigrate;   /* QEMU is "postmigrate": a migration moved its state to another */
};

enum vmstate_do {
    VMSTATE_REFUSE,    /* e (FERR_STATE; may be NULL) says why and what to do instead */
    VMSTATE_GO,        /* do it */
    VMSTATE_JOIN,      /* stop: a stop is under way already; wait for its end */
    VMSTATE_POWERDOWN, /* stop: press the power button, kill QEMU after the timeout */
    VMSTATE_KILL,      /* stop: kill QEMU at once (a paused guest cannot power off, or no
                        * QMP); delete --force: kill it, then delete */
};

/*
 * The rules:
 *   start   a stopped or failed VM, once the last QEMU is cleaned up;
 *   stop    a running, paused or incoming VM; joins a stop under way; a starting VM must
 *           be killed (it cannot power off yet);
 *   kill, quit  any VM with a QEMU whose pid is known;
 *   pause   a running VM, resume a paused one, both over QMP;
 *   delete  a stopped or failed VM; with force also one with a QEMU (killed first) but a
 *           starting one; never while it migrates away.
 */
enum vmstate_do vmstate_decide(enum vm_action a, const struct vmstate_facts *f, struct ferr *e);

/* The state QEMU's event (QMP event name) leads to from s, s if none: RESUME makes an
 * incoming VM running (the migration completed) and a paused one running; STOP makes a
 * running VM paused, except while it migrates away (migrating_out: the switchover). Any other
 * event (SHUTDOWN: vm.c ends QEMU) changes no state. */
enum vm_state vmstate_on_event(enum vm_state s, const char *event, bool migrating_out);

/* The state a QEMU that just answered query-status puts the VM in (status: its RunState, NULL
 * if none): stopping when the guest powered off meanwhile ("shutdown": vm.c ends QEMU),
 * incoming for a migration's destination that was just started (incoming and not attaching),
 * paused for "paused", "prelaunch" and "postmigrate" (a migration completed while no ferryd
 * watched: the vCPUs are stopped and the VM runs elsewhere), running otherwise. */
enum vm_state vmstate_on_status(const char *status, bool incoming, bool attaching);

/* How a VM's QEMU ended. */
struct vmstate_end {
    enum vm_state was;           /* the VM's state before */
    bool fail_pending;           /* vm.c failed it already (QMP broke, no answer in time) */
    bool stop_requested;         /* stop, kill or quit was asked */
    bool guest_shutdown;         /* the guest powered off */
    bool killed_after_timeout;   /* the stop's deadline passed */
    const struct qemu_exit *how; /* NULL when not known */
    const char *log_tail;        /* QEMU's last log words, "" if none */
};
/* The state the VM is left in once its QEMU is gone: stopped when that was asked for or the
 * guest powered off, failed otherwise. Writes the reason to reason (size bytes), but for a
 * fail_pending VM, whose reason was given already. *status gets what the waiters are told:
 * 0, or FERR_QEMU for a VM that failed unless it was stopping (then it is down, as asked). */
enum vm_state vmstate_on_exit(const struct vmstate_end *f, char *reason, size_t size, int *status);

#endif
