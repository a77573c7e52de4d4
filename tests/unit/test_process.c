/* SPDX-License-Identifier: MIT */
/* Unit tests of what src/qemu/process.c reads of a process's command line: how a VM's QEMU is
 * recognised after a ferryd restart, and how its disks were attached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qemu/process.h"

/* A child whose command line looks like part of a QEMU's: sh -c 'read x' ARGS..., where the
 * shell's own read builtin waits on a pipe, so no grandchild outlives the kill. */
static pid_t spawn_with_args(int *feed)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[0], 0);
        close(p[1]);
        execl("/bin/sh", "sh", "-c", "read x", "guest=web1,debug-threads=on",
              "driver=vpc,file=disk1-file,node-name=disk1", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    *feed = p[1];
    /* Wait (with a deadline) for the exec: until then the child has the test's command line. */
    for (int i = 0; i < 200 && !qemu_pid_has_arg(pid, "read x"); i++)
        usleep(10000);
    return pid;
}

static void test_args(void **state)
{
    (void)state;
    int feed;
    pid_t pid = spawn_with_args(&feed);
    bool guest = qemu_pid_is_guest(pid, "web1"), other = qemu_pid_is_guest(pid, "web");
    bool vpc1 = qemu_pid_has_arg(pid, "driver=vpc,file=disk1-file,");
    bool vpc0 = qemu_pid_has_arg(pid, "driver=vpc,file=disk0-file,");
    bool mid = qemu_pid_has_arg(pid, "file=disk1-file"); /* a prefix, not a substring */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(feed);
    assert_true(guest);
    assert_false(other);
    assert_true(vpc1);
    assert_false(vpc0);
    assert_false(mid);
    /* Gone: nothing to read. */
    assert_false(qemu_pid_has_arg(pid, "sh"));
    assert_false(qemu_pid_is_guest(pid, "web1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
