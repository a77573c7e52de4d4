/* SPDX-License-Identifier: MIT */
/* The per-VM state machine's decisions (vmstate.h): pure, no I/O. */
#include "vm/vmstate.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *state_names[] = {"stopped",  "starting", "running", "paused",
                                    "stopping", "failed",   "incoming"};
_Static_assert(ARRAY_SIZE(state_names) == VM_STATES, "a name for every state");

const char *vm_state_name(enum vm_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

bool vmstate_has_qemu(enum vm_state s)
{
    return s == VM_STARTING || s == VM_RUNNING || s == VM_PAUSED || s == VM_STOPPING ||
           s == VM_INCOMING;
}

static enum vmstate_do start(const struct vmstate_facts *f, struct ferr *e)
{
    if (f->state == VM_RUNNING || f->state == VM_PAUSED) {
        ferr_set(e, FERR_STATE, "%s is already %s", f->name, vm_state_name(f->state));
        return VMSTATE_REFUSE;
    }
    if (f->state != VM_STOPPED && f->state != VM_FAILED) {
        ferr_set(e, FERR_STATE, "%s is %s; wait until it settles", f->name,
                 vm_state_name(f->state));
        return VMSTATE_REFUSE;
    }
    if (f->cleaning_up) {
        ferr_set(e, FERR_STATE, "%s is still cleaning up; try again", f->name);
        return VMSTATE_REFUSE;
    }
    return VMSTATE_GO;
}

static enum vmstate_do stop(const struct vmstate_facts *f, struct ferr *e)
{
    if (f->state == VM_STOPPED || f->state == VM_FAILED) {
        ferr_set(e, FERR_STATE, "%s is not running", f->name);
        return VMSTATE_REFUSE;
    }
    if (f->state == VM_STARTING) {
        ferr_set(e, FERR_STATE, "%s is starting; wait, or use kill", f->name);
        return VMSTATE_REFUSE;
    }
    if (f->state == VM_STOPPING)
        return VMSTATE_JOIN;
    /* A paused guest cannot react to the power button; an incoming VM has no guest running
     * yet (its state is still on its way), so there is nobody to press it for either. */
    if (f->state == VM_PAUSED || f->state == VM_INCOMING || !f->qmp_ready)
        return VMSTATE_KILL;
    return VMSTATE_POWERDOWN;
}

static enum vmstate_do pause_resume(bool pause, const struct vmstate_facts *f, struct ferr *e)
{
    enum vm_state need = pause ? VM_RUNNING : VM_PAUSED;
    if (f->state == need && !f->qmp_ready) {
        ferr_set(e, FERR_STATE,
                 "%s: ferryd is not connected to its QEMU yet; try again in a moment", f->name);
        return VMSTATE_REFUSE;
    }
    if (!pause && f->state == need && f->postmigrate) {
        ferr_set(e, FERR_STATE,
                 "%s: its QEMU here handed the VM to another host by a live migration (QEMU is "
                 "postmigrate); resuming it here could run it twice",
                 f->name);
        return VMSTATE_REFUSE;
    }
    if (f->state != need) {
        ferr_set(e, FERR_STATE, "%s is %s; %s needs it %s", f->name, vm_state_name(f->state),
                 pause ? "pause" : "resume", vm_state_name(need));
        return VMSTATE_REFUSE;
    }
    return VMSTATE_GO;
}

static enum vmstate_do remove_def(const struct vmstate_facts *f, struct ferr *e)
{
    if (f->migrating_out) {
        ferr_set(e, FERR_STATE, "%s is migrating; cancel it first (ferry vm migrate --cancel %s)",
                 f->name, f->name);
        return VMSTATE_REFUSE;
    }
    if (f->state == VM_STOPPED || f->state == VM_FAILED)
        return VMSTATE_GO;
    if (!f->force) {
        ferr_set(e, FERR_STATE, "%s is %s; stop it first (or delete --force)", f->name,
                 vm_state_name(f->state));
        return VMSTATE_REFUSE;
    }
    if (f->state == VM_STARTING) {
        ferr_set(e, FERR_STATE, "%s is starting; wait, then delete --force", f->name);
        return VMSTATE_REFUSE;
    }
    return VMSTATE_KILL;
}

enum vmstate_do vmstate_decide(enum vm_action a, const struct vmstate_facts *f, struct ferr *e)
{
    switch (a) {
    case VM_ACT_START:
        return start(f, e);
    case VM_ACT_STOP:
        return stop(f, e);
    case VM_ACT_KILL:
    case VM_ACT_QUIT:
        if (!vmstate_has_qemu(f->state) || !f->has_pid) {
            ferr_set(e, FERR_STATE, "%s is not running", f->name);
            return VMSTATE_REFUSE;
        }
        return VMSTATE_GO;
    case VM_ACT_PAUSE:
    case VM_ACT_RESUME:
        return pause_resume(a == VM_ACT_PAUSE, f, e);
    case VM_ACT_DELETE:
        return remove_def(f, e);
    }
    ferr_set(e, FERR_STATE, "%s: no such action (%d)", f->name, (int)a);
    return VMSTATE_REFUSE;
}

enum vm_state vmstate_on_event(enum vm_state s, const char *event, bool migrating_out)
{
    if (strcmp(event, "RESUME") == 0 && (s == VM_INCOMING || s == VM_PAUSED))
        return VM_RUNNING;
    if (strcmp(event, "STOP") == 0 && s == VM_RUNNING && !migrating_out)
        return VM_PAUSED;
    return s;
}

enum vm_state vmstate_on_status(const char *status, bool incoming, bool attaching)
{
    if (status && strcmp(status, "shutdown") == 0)
        return VM_STOPPING;
    if (incoming && !attaching)
        return VM_INCOMING;
    if (status && (strcmp(status, "paused") == 0 || strcmp(status, "prelaunch") == 0 ||
                   strcmp(status, "postmigrate") == 0))
        return VM_PAUSED;
    return VM_RUNNING;
}

enum vm_state vmstate_on_exit(const struct vmstate_end *f, char *reason, size_t size, int *status)
{
    const char *tail = f->log_tail ? f->log_tail : "";
    const char *sep = tail[0] ? ": " : "";
    enum vm_state s;
    if (f->fail_pending) {
        s = VM_FAILED;
    } else if (f->stop_requested || f->guest_shutdown) {
        s = VM_STOPPED;
        snprintf(reason, size, "%s",
                 f->killed_after_timeout ? "killed: the guest did not power off in time"
                 : f->stop_requested     ? "stopped by request"
                                         : "guest powered off");
    } else {
        s = VM_FAILED;
        if (f->how && f->how->reaped && f->how->signal)
            snprintf(reason, size, "QEMU was killed by signal %d%s%s", f->how->signal, sep, tail);
        else if (f->how && f->how->reaped)
            snprintf(reason, size, "QEMU exited with status %lld%s%s", (long long)f->how->status,
                     sep, tail);
        else
            snprintf(reason, size, "QEMU exited unexpectedly%s%s", sep, tail);
    }
    *status = s == VM_FAILED && f->was != VM_STOPPING ? FERR_QEMU : 0;
    return s;
}
