/* SPDX-License-Identifier: MIT */
/* Unit tests of running a helper program (common/run.c), with /bin/sh scripts as helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/run.h"

/* Runs `sh -c script`; asserts that it could be started. */
static void sh(const char *script, struct run *r)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    struct ferr e = {0};
    int rc = run(argv, r, &e);
    if (rc != 0)
        fail_msg("run sh -c '%s': %d %s", script, rc, e.msg);
    assert_non_null(r->out);
    assert_int_equal(strlen(r->out), r->out_len);
    assert_int_equal(strlen(r->err), r->err_len);
}

/* The lowest file descriptor that is free. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

/* ---- how the child ended ----------------------------------------------------------------- */

static void test_exit_status(void **state)
{
    (void)state;
    struct run r;
    char buf[64];
    sh("exit 0", &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
    assert_true(run_ok(&r));
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "exit status 0");
    assert_string_equal(r.out, "");
    assert_int_equal(r.out_len, 0);
    assert_int_equal(r.err_len, 0);
    run_free(&r);
    assert_null(r.out);
    run_free(&r); /* twice is fine */

    sh("exit 3", &r);
    assert_false(run_ok(&r));
    assert_int_equal(WEXITSTATUS(r.status), 3);
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "exit status 3");
    assert_ptr_equal(run_why(&r, buf, sizeof(buf)), buf);
    run_free(&r);

    sh("exit 255", &r);
    assert_false(run_ok(&r));
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "exit status 255");
    run_free(&r);
}

static void test_killed_by_signal(void **state)
{
    (void)state;
    struct run r;
    char buf[64];
    sh("kill -KILL $$; exit 0", &r);
    assert_true(WIFSIGNALED(r.status));
    assert_int_equal(WTERMSIG(r.status), SIGKILL);
    assert_false(run_ok(&r));
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "killed by signal 9");
    run_free(&r);
}

/* The child starts with no blocked signals and SIGPIPE at its default, whatever the caller
 * (a daemon) did to its own. */
static void test_signals_clean_slate(void **state)
{
    (void)state;
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);

    struct run r1, r2;
    char buf[64];
    sh("kill -TERM $$; exit 7", &r1);
    sh("kill -PIPE $$; exit 7", &r2);

    signal(SIGPIPE, old_pipe);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    assert_string_equal(run_why(&r1, buf, sizeof(buf)), "killed by signal 15");
    assert_string_equal(run_why(&r2, buf, sizeof(buf)), "killed by signal 13");
    run_free(&r1);
    run_free(&r2);
}

static void test_why_other_status(void **state)
{
    (void)state;
    /* A stopped child (what waitpid would report with WUNTRACED) is neither. */
    struct run r = {0};
    char buf[64];
    r.status = 0x137f; /* stopped by SIGSTOP */
    assert_false(run_ok(&r));
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "status 0x137f");
    /* The text is cut to the buffer, NUL included. */
    r.status = 3 << 8;
    assert_string_equal(run_why(&r, buf, 7), "exit s");
    /* Stderr, when there is some, is the account, whatever the status. */
    r.status = 0;
    strcpy(r.err, "qemu-img: bad file");
    r.err_len = strlen(r.err);
    assert_true(run_ok(&r));
    assert_ptr_equal(run_why(&r, buf, sizeof(buf)), r.err);
}

/* ---- starting it ------------------------------------------------------------------------- */

static void test_missing_program(void **state)
{
    (void)state;
    char *argv[] = {"ferry-test-no-such-program", NULL};
    struct run r;
    memset(&r, 0x5a, sizeof(r));
    struct ferr e = {0};
    assert_int_equal(run(argv, &r, &e), -ENOENT);
    assert_int_equal(e.code, -ENOENT);
    assert_string_equal(e.msg, "ferry-test-no-such-program: not found in PATH (is it installed?)");
    assert_null(r.out); /* freed, so run_free is harmless */
    run_free(&r);
    /* A path that does not exist. */
    char *argv2[] = {"/nonexistent/prog", NULL};
    assert_int_equal(run(argv2, &r, NULL), -ENOENT);
}

static void test_not_executable(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-test-run-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\necho hi\n", 18), 18);
    close(fd);
    assert_int_equal(chmod(path, 0644), 0);
    char *argv[] = {path, NULL};
    struct run r;
    struct ferr e = {0};
    int rc = run(argv, &r, &e);
    unlink(path);
    assert_int_equal(rc, -EACCES);
    char want[128];
    snprintf(want, sizeof(want), "%s: cannot start: Permission denied", path);
    assert_string_equal(e.msg, want);
    assert_null(r.out);
}

/* With no descriptor left for a pipe, run fails with EMFILE and leaks nothing. */
static void test_no_pipe(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int low = lowest_free_fd();
    for (int room = 0; room <= 2; room += 2) {
        /* room 0: the stdout pipe fails; room 2: it works and the stderr pipe fails. */
        lim = old;
        lim.rlim_cur = (rlim_t)(low + room);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
        struct run r;
        struct ferr e = {0};
        int rc = run(argv, &r, &e);
        setrlimit(RLIMIT_NOFILE, &old);
        assert_int_equal(rc, -EMFILE);
        assert_string_equal(e.msg, "/bin/sh: pipe: Too many open files");
        assert_null(r.out);
        assert_int_equal(lowest_free_fd(), low);
    }
    /* And it works again with room. */
    struct run r;
    sh("exit 0", &r);
    run_free(&r);
    assert_int_equal(lowest_free_fd(), low);
}

/* The arguments reach the program as they are: no shell in between. */
static void test_argv_verbatim(void **state)
{
    (void)state;
    char *argv[] = {"printf", "%s|", "a b", "'c'", "$HOME", "*", "", NULL};
    struct run r;
    assert_int_equal(run(argv, &r, NULL), 0);
    assert_string_equal(r.out, "a b|'c'|$HOME|*||");
    run_free(&r);
}

/* Only our child is reaped: another child of the caller is left for its owner. */
static void test_reaps_only_its_child(void **state)
{
    (void)state;
    pid_t other = fork();
    assert_true(other >= 0);
    if (other == 0)
        _exit(42);
    struct run r;
    sh("sleep 0.1; exit 1", &r); /* the other child is a zombie by then */
    run_free(&r);
    int status = 0;
    assert_int_equal(waitpid(other, &status, 0), other);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
}

/* ---- output ------------------------------------------------------------------------------ */

static void test_output_capture(void **state)
{
    (void)state;
    struct run r;
    char buf[64];
    sh("printf 'hello\\nworld'; printf 'oops: bad  \\n \\n\\n' >&2; exit 2", &r);
    assert_string_equal(r.out, "hello\nworld");
    assert_int_equal(r.out_len, 11);
    /* Stderr loses its trailing newlines and spaces, nothing else. */
    assert_string_equal(r.err, "oops: bad");
    assert_int_equal(r.err_len, 9);
    assert_false(run_ok(&r));
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "oops: bad");
    run_free(&r);

    /* Only blanks on stderr: nothing is left, and the status is the account. */
    sh("echo '   ' >&2; exit 4", &r);
    assert_int_equal(r.err_len, 0);
    assert_string_equal(run_why(&r, buf, sizeof(buf)), "exit status 4");
    run_free(&r);

    /* Leading blanks and inner newlines stay. */
    sh("printf '  a\\nb\\n' >&2", &r);
    assert_string_equal(r.err, "  a\nb");
    run_free(&r);
}

/* The child's stdin is /dev/null: a program that reads it ends at once. */
static void test_stdin_is_dev_null(void **state)
{
    (void)state;
    struct run r;
    sh("cat; readlink /proc/self/fd/0", &r);
    assert_string_equal(r.out, "/dev/null\n");
    run_free(&r);
}

/* Both streams at once, each over a pipe's capacity: no deadlock, nothing lost. */
static void test_both_streams_large(void **state)
{
    (void)state;
    struct run r;
    sh("i=0; while [ $i -lt 2000 ]; do echo 0123456789012345678901234567890123456789012345678; "
       "echo e >&2; i=$((i+1)); done",
       &r);
    assert_true(run_ok(&r));
    assert_int_equal(r.out_len, 2000 * 50);
    for (size_t i = 0; i < r.out_len; i += 50)
        if (memcmp(r.out + i, "0123456789012345678901234567890123456789012345678\n", 50))
            fail_msg("stdout differs at %zu", i);
    /* Stderr keeps its first RUN_STDERR_MAX - 1 bytes: "e\n" 1023 times and an "e" (no
     * trailing blank to trim). */
    assert_int_equal(r.err_len, RUN_STDERR_MAX - 1);
    assert_int_equal(r.err[RUN_STDERR_MAX - 2], 'e');
    run_free(&r);
}

/* Output over the limits is drained and dropped: the child is not stopped by a full pipe or
 * killed by SIGPIPE, and what is kept is the beginning. */
static void test_output_limits(void **state)
{
    (void)state;
    struct run r;
    /* 2 MiB of 'x' on stdout, then a status of its own. */
    sh("head -c 2097152 /dev/zero | tr '\\0' x; exit 5", &r);
    assert_int_equal(WEXITSTATUS(r.status), 5);
    assert_int_equal(r.out_len, RUN_STDOUT_MAX - 1);
    assert_int_equal(r.out[RUN_STDOUT_MAX - 1], '\0');
    assert_int_equal(r.out[0], 'x');
    assert_int_equal(r.out[RUN_STDOUT_MAX - 2], 'x');
    run_free(&r);

    /* Exactly RUN_STDOUT_MAX - 1 bytes are all kept. */
    sh("head -c 1048575 /dev/zero | tr '\\0' y", &r);
    assert_int_equal(r.out_len, RUN_STDOUT_MAX - 1);
    run_free(&r);

    /* 5000 bytes on stderr, the first ones kept. */
    sh("head -c 5000 /dev/zero | tr '\\0' e >&2; printf ok", &r);
    assert_int_equal(r.err_len, RUN_STDERR_MAX - 1);
    assert_string_equal(r.out, "ok");
    assert_true(run_ok(&r));
    run_free(&r);

    /* A short stderr whose end is blank after the cut is trimmed there. */
    sh("head -c 2046 /dev/zero | tr '\\0' e >&2; printf '   more' >&2", &r);
    assert_int_equal(r.err_len, 2046);
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_signals_clean_slate),
        cmocka_unit_test(test_why_other_status),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_not_executable),
        cmocka_unit_test(test_no_pipe),
        cmocka_unit_test(test_argv_verbatim),
        cmocka_unit_test(test_reaps_only_its_child),
        cmocka_unit_test(test_output_capture),
        cmocka_unit_test(test_stdin_is_dev_null),
        cmocka_unit_test(test_both_streams_large),
        cmocka_unit_test(test_output_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
