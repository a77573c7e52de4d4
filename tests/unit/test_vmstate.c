/* SPDX-License-Identifier: MIT */
/* Unit tests of src/vm/vmstate.c: the per-VM state machine. What every action does in every
 * state, and the state QEMU's events, its status and its end lead to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "vm/vmstate.h"

#define NSTATES VM_STATES
#define NACTIONS (VM_ACT_DELETE + 1)

static const char *action_name(enum vm_action a)
{
    static const char *n[] = {"start", "stop", "kill", "quit", "pause", "resume", "delete"};
    return n[a];
}

/* A VM in state s with a QEMU that answers QMP (where it has one), nothing else going on. */
static struct vmstate_facts facts(enum vm_state s)
{
    return (struct vmstate_facts){.name = "vm1",
                                  .state = s,
                                  .qmp_ready = vmstate_has_qemu(s),
                                  .has_pid = vmstate_has_qemu(s)};
}

static enum vmstate_do decide(enum vm_action a, const struct vmstate_facts *f, struct ferr *e)
{
    ferr_clear(e);
    enum vmstate_do d = vmstate_decide(a, f, e);
    if (d == VMSTATE_REFUSE) {
        assert_int_equal(e->code, FERR_STATE);
        assert_true(strncmp(e->msg, "vm1", 3) == 0); /* every refusal names the VM */
    } else {
        assert_int_equal(e->code, 0);
    }
    return d;
}

static void test_state_names(void **state)
{
    static const char *want[NSTATES] = {"stopped",  "starting", "running", "paused",
                                        "stopping", "failed",   "incoming"};
    for (int s = 0; s < NSTATES; s++)
        assert_string_equal(vm_state_name((enum vm_state)s), want[s]);
    assert_string_equal(vm_state_name((enum vm_state)NSTATES), "unknown");
    assert_string_equal(vm_state_name((enum vm_state) - 1), "unknown");
}

static void test_which_states_have_a_qemu(void **state)
{
    /* what counts towards the host's allocated memory, and has a pid and an uptime */
    assert_false(vmstate_has_qemu(VM_STOPPED));
    assert_false(vmstate_has_qemu(VM_FAILED));
    assert_true(vmstate_has_qemu(VM_STARTING));
    assert_true(vmstate_has_qemu(VM_RUNNING));
    assert_true(vmstate_has_qemu(VM_PAUSED));
    assert_true(vmstate_has_qemu(VM_STOPPING));
    assert_true(vmstate_has_qemu(VM_INCOMING));
}

/* Every action in every state, for a VM with a QEMU that answers (where it has one). */
static void test_every_action_in_every_state(void **state)
{
    enum { R = VMSTATE_REFUSE, G = VMSTATE_GO, J = VMSTATE_JOIN, P = VMSTATE_POWERDOWN };
    /* clang-format off */
    static const int want[NSTATES][NACTIONS] = {
        /*              start stop kill quit pause resume delete */
        [VM_STOPPED]  = {G,   R,   R,   R,   R,    R,     G},
        [VM_STARTING] = {R,   R,   G,   G,   R,    R,     R},
        [VM_RUNNING]  = {R,   P,   G,   G,   G,    R,     R},
        [VM_PAUSED]   = {R,   VMSTATE_KILL, G, G, R, G,   R},
        [VM_STOPPING] = {R,   J,   G,   G,   R,    R,     R},
        [VM_FAILED]   = {G,   R,   R,   R,   R,    R,     G},
        [VM_INCOMING] = {R,   VMSTATE_KILL, G, G, R, R,   R},
    };
    /* clang-format on */
    for (int s = 0; s < NSTATES; s++) {
        for (int a = 0; a < NACTIONS; a++) {
            struct vmstate_facts f = facts((enum vm_state)s);
            struct ferr e;
            int got = decide((enum vm_action)a, &f, &e);
            if (got != want[s][a])
                fail_msg("%s of a %s VM: got %d, want %d (%s)", action_name((enum vm_action)a),
                         vm_state_name((enum vm_state)s), got, want[s][a], e.msg);
        }
    }
}

static void test_start_refusals_say_what_to_do(void **state)
{
    struct ferr e;
    struct vmstate_facts f = facts(VM_RUNNING);
    decide(VM_ACT_START, &f, &e);
    assert_string_equal(e.msg, "vm1 is already running");
    f = facts(VM_PAUSED);
    decide(VM_ACT_START, &f, &e);
    assert_string_equal(e.msg, "vm1 is already paused");
    f = facts(VM_STOPPING);
    decide(VM_ACT_START, &f, &e);
    assert_string_equal(e.msg, "vm1 is stopping; wait until it settles");
    f = facts(VM_INCOMING);
    decide(VM_ACT_START, &f, &e);
    assert_string_equal(e.msg, "vm1 is incoming; wait until it settles");
    /* the last QEMU's handles still close: a new one would race them */
    f = facts(VM_FAILED);
    f.cleaning_up = true;
    assert_int_equal(decide(VM_ACT_START, &f, &e), VMSTATE_REFUSE);
    assert_string_equal(e.msg, "vm1 is still cleaning up; try again");
}

static void test_stop(void **state)
{
    struct ferr e;
    struct vmstate_facts f = facts(VM_STOPPED);
    decide(VM_ACT_STOP, &f, &e);
    assert_string_equal(e.msg, "vm1 is not running");
    f = facts(VM_STARTING); /* it cannot react to the power button yet */
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_REFUSE);
    assert_string_equal(e.msg, "vm1 is starting; wait, or use kill");
    /* the power button needs QMP; without it QEMU is killed */
    f = facts(VM_RUNNING);
    f.qmp_ready = false;
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_KILL);
    /* a paused guest cannot power off, QMP or not */
    f = facts(VM_PAUSED);
    assert_true(f.qmp_ready);
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_KILL);
    /* an incoming VM has no guest running yet to press the power button for */
    f = facts(VM_INCOMING);
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_KILL);
    /* a second stop joins the first, even without QMP */
    f = facts(VM_STOPPING);
    f.qmp_ready = false;
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_JOIN);
}

static void test_kill_and_quit_need_a_known_pid(void **state)
{
    struct ferr e;
    for (int s = 0; s < NSTATES; s++) {
        struct vmstate_facts f = facts((enum vm_state)s);
        f.has_pid = false; /* never a signal to a pid we do not know */
        assert_int_equal(decide(VM_ACT_KILL, &f, &e), VMSTATE_REFUSE);
        assert_string_equal(e.msg, "vm1 is not running");
        assert_int_equal(decide(VM_ACT_QUIT, &f, &e), VMSTATE_REFUSE);
    }
    /* QMP does not matter: kill is the way out of a QEMU that does not answer */
    struct vmstate_facts f = facts(VM_RUNNING);
    f.qmp_ready = false;
    assert_int_equal(decide(VM_ACT_KILL, &f, &e), VMSTATE_GO);
}

static void test_pause_and_resume(void **state)
{
    struct ferr e;
    struct vmstate_facts f = facts(VM_PAUSED);
    decide(VM_ACT_PAUSE, &f, &e);
    assert_string_equal(e.msg, "vm1 is paused; pause needs it running");
    f = facts(VM_RUNNING);
    decide(VM_ACT_RESUME, &f, &e);
    assert_string_equal(e.msg, "vm1 is running; resume needs it paused");
    f = facts(VM_INCOMING);
    decide(VM_ACT_PAUSE, &f, &e);
    assert_string_equal(e.msg, "vm1 is incoming; pause needs it running");
    /* both go over QMP: without it the refusal says so, not that the state is wrong */
    f = facts(VM_RUNNING);
    f.qmp_ready = false;
    assert_int_equal(decide(VM_ACT_PAUSE, &f, &e), VMSTATE_REFUSE);
    assert_string_equal(e.msg,
                        "vm1: ferryd is not connected to its QEMU yet; try again in a moment");
    f = facts(VM_PAUSED);
    f.qmp_ready = false;
    assert_int_equal(decide(VM_ACT_RESUME, &f, &e), VMSTATE_REFUSE);
    /* a QEMU whose state went to another host by a migration is never resumed here */
    f = facts(VM_PAUSED);
    f.postmigrate = true;
    assert_int_equal(decide(VM_ACT_RESUME, &f, &e), VMSTATE_REFUSE);
    assert_non_null(strstr(e.msg, "could run it twice"));
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_KILL);
}

static void test_delete(void **state)
{
    struct ferr e;
    struct vmstate_facts f = facts(VM_RUNNING);
    decide(VM_ACT_DELETE, &f, &e);
    assert_string_equal(e.msg, "vm1 is running; stop it first (or delete --force)");
    /* --force kills it first, whatever runs, but a QEMU still starting */
    static const enum vm_state killed[] = {VM_RUNNING, VM_PAUSED, VM_STOPPING, VM_INCOMING};
    for (size_t i = 0; i < sizeof(killed) / sizeof(killed[0]); i++) {
        f = facts(killed[i]);
        f.force = true;
        assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_KILL);
    }
    f = facts(VM_STARTING);
    f.force = true;
    assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_REFUSE);
    assert_string_equal(e.msg, "vm1 is starting; wait, then delete --force");
    f = facts(VM_STOPPED);
    f.force = true;
    assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_GO);
    /* never while it migrates away, not even with --force */
    static const enum vm_state any[] = {VM_RUNNING, VM_STOPPED, VM_FAILED};
    for (size_t i = 0; i < sizeof(any) / sizeof(any[0]); i++) {
        f = facts(any[i]);
        f.migrating_out = true;
        f.force = true;
        assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_REFUSE);
        assert_string_equal(e.msg, "vm1 is migrating; cancel it first (ferry vm migrate "
                                   "--cancel vm1)");
    }
}

static void test_refusals_without_an_error_to_fill(void **state)
{
    struct vmstate_facts f = facts(VM_STOPPED);
    assert_int_equal(vmstate_decide(VM_ACT_STOP, &f, NULL), VMSTATE_REFUSE);
    assert_int_equal(vmstate_decide(VM_ACT_START, &f, NULL), VMSTATE_GO);
}

static void test_qemu_events(void **state)
{
    /* the guest's vCPUs stop and run again: paused and running follow */
    assert_int_equal(vmstate_on_event(VM_RUNNING, "STOP", false), VM_PAUSED);
    assert_int_equal(vmstate_on_event(VM_PAUSED, "RESUME", false), VM_RUNNING);
    /* a migration's switchover stops the source's vCPUs: not a pause */
    assert_int_equal(vmstate_on_event(VM_RUNNING, "STOP", true), VM_RUNNING);
    /* the destination: the migration completed and QEMU started the guest */
    assert_int_equal(vmstate_on_event(VM_INCOMING, "RESUME", false), VM_RUNNING);
    /* a STOP while starting or stopping changes nothing */
    assert_int_equal(vmstate_on_event(VM_STARTING, "STOP", false), VM_STARTING);
    assert_int_equal(vmstate_on_event(VM_STOPPING, "STOP", false), VM_STOPPING);
    assert_int_equal(vmstate_on_event(VM_STOPPING, "RESUME", false), VM_STOPPING);
    assert_int_equal(vmstate_on_event(VM_RUNNING, "RESUME", false), VM_RUNNING);
    assert_int_equal(vmstate_on_event(VM_PAUSED, "STOP", false), VM_PAUSED);
    /* the power-off is vm.c's to finish; no state of its own */
    assert_int_equal(vmstate_on_event(VM_RUNNING, "SHUTDOWN", false), VM_RUNNING);
    assert_int_equal(vmstate_on_event(VM_RUNNING, "GUEST_PANICKED", false), VM_RUNNING);
    assert_int_equal(vmstate_on_event(VM_RUNNING, "MIGRATION", true), VM_RUNNING);
}

static void test_qemu_status_after_connecting(void **state)
{
    assert_int_equal(vmstate_on_status("running", false, false), VM_RUNNING);
    assert_int_equal(vmstate_on_status("paused", false, false), VM_PAUSED);
    assert_int_equal(vmstate_on_status("prelaunch", false, false), VM_PAUSED);
    /* re-attached after a ferryd restart: as QEMU says */
    assert_int_equal(vmstate_on_status("running", false, true), VM_RUNNING);
    assert_int_equal(vmstate_on_status("paused", false, true), VM_PAUSED);
    /* the guest powered off while nobody listened: it is ended now */
    assert_int_equal(vmstate_on_status("shutdown", false, true), VM_STOPPING);
    assert_int_equal(vmstate_on_status("shutdown", true, false), VM_STOPPING);
    /* a migration's destination waits for the stream */
    assert_int_equal(vmstate_on_status("inmigrate", true, false), VM_INCOMING);
    /* a migration completed while no ferryd watched: vCPUs stopped, the VM runs elsewhere */
    assert_int_equal(vmstate_on_status("postmigrate", false, true), VM_PAUSED);
    assert_int_equal(vmstate_on_status("inmigrate", true, true), VM_RUNNING);
    assert_int_equal(vmstate_on_status(NULL, false, false), VM_RUNNING);
}

/* The end of QEMU: the state, the reason, what the waiters hear. */
static enum vm_state ended(struct vmstate_end *end, char *reason, int *status)
{
    snprintf(reason, FERR_MSG_MAX, "%s", "(as before)");
    return vmstate_on_exit(end, reason, FERR_MSG_MAX, status);
}

static void test_qemu_ends(void **state)
{
    char reason[FERR_MSG_MAX];
    int status = 12345;
    struct qemu_exit killed = {.reaped = true, .signal = 9};
    struct qemu_exit exit1 = {.reaped = true, .status = 1};
    struct qemu_exit adopted = {.reaped = false}; /* not our child: nothing known */

    /* asked for: stopped, whatever the exit says */
    struct vmstate_end end = {.was = VM_STOPPING, .stop_requested = true, .how = &killed};
    assert_int_equal(ended(&end, reason, &status), VM_STOPPED);
    assert_string_equal(reason, "stopped by request");
    assert_int_equal(status, 0);
    end.killed_after_timeout = true;
    assert_int_equal(ended(&end, reason, &status), VM_STOPPED);
    assert_string_equal(reason, "killed: the guest did not power off in time");

    /* the guest powered off by itself */
    end = (struct vmstate_end){.was = VM_RUNNING, .guest_shutdown = true, .how = &exit1};
    assert_int_equal(ended(&end, reason, &status), VM_STOPPED);
    assert_string_equal(reason, "guest powered off");
    assert_int_equal(status, 0);

    /* nobody asked: failed, with what is known of the end and QEMU's last words */
    end = (struct vmstate_end){.was = VM_RUNNING, .how = &killed, .log_tail = "oom"};
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_string_equal(reason, "QEMU was killed by signal 9: oom");
    assert_int_equal(status, FERR_QEMU);
    end.how = &exit1;
    end.log_tail = "";
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_string_equal(reason, "QEMU exited with status 1");
    end.how = &adopted;
    end.log_tail = "qemu-system-x86_64: terminating on signal 15";
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_string_equal(reason,
                        "QEMU exited unexpectedly: qemu-system-x86_64: terminating on signal 15");
    end.how = NULL;
    end.log_tail = NULL;
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_string_equal(reason, "QEMU exited unexpectedly");

    /* failed by vm.c before (QMP broke): that reason stays, even if a stop was asked */
    end = (struct vmstate_end){
        .was = VM_RUNNING, .fail_pending = true, .stop_requested = true, .how = &killed};
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_string_equal(reason, "(as before)");
    assert_int_equal(status, FERR_QEMU);
    /* ... but a stop that ends that way is still down, as asked */
    end.was = VM_STOPPING;
    assert_int_equal(ended(&end, reason, &status), VM_FAILED);
    assert_int_equal(status, 0);
}

/* A VM's life, as vm.c walks it: each step legal only where the diagram in vm.h allows. */
static void test_a_life(void **state)
{
    struct ferr e;
    struct vmstate_facts f = facts(VM_STOPPED);
    assert_int_equal(decide(VM_ACT_START, &f, &e), VMSTATE_GO);
    f.state = VM_STARTING; /* vm_start */
    assert_int_equal(decide(VM_ACT_START, &f, &e), VMSTATE_REFUSE);
    f.state = vmstate_on_status("running", false, false); /* QMP answered */
    f.qmp_ready = f.has_pid = true;
    assert_int_equal(f.state, VM_RUNNING);
    assert_int_equal(decide(VM_ACT_PAUSE, &f, &e), VMSTATE_GO);
    f.state = vmstate_on_event(f.state, "STOP", false);
    assert_int_equal(f.state, VM_PAUSED);
    assert_int_equal(decide(VM_ACT_RESUME, &f, &e), VMSTATE_GO);
    f.state = vmstate_on_event(f.state, "RESUME", false);
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_POWERDOWN);
    f.state = VM_STOPPING; /* vm_stop */
    assert_int_equal(decide(VM_ACT_STOP, &f, &e), VMSTATE_JOIN);
    assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_REFUSE);
    char reason[FERR_MSG_MAX];
    int status;
    struct vmstate_end end = {.was = f.state, .stop_requested = true};
    f.state = vmstate_on_exit(&end, reason, sizeof(reason), &status);
    f.qmp_ready = f.has_pid = false;
    assert_int_equal(f.state, VM_STOPPED);
    assert_int_equal(decide(VM_ACT_DELETE, &f, &e), VMSTATE_GO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_which_states_have_a_qemu),
        cmocka_unit_test(test_every_action_in_every_state),
        cmocka_unit_test(test_start_refusals_say_what_to_do),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_kill_and_quit_need_a_known_pid),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_refusals_without_an_error_to_fill),
        cmocka_unit_test(test_qemu_events),
        cmocka_unit_test(test_qemu_status_after_connecting),
        cmocka_unit_test(test_qemu_ends),
        cmocka_unit_test(test_a_life),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
