/* SPDX-License-Identifier: MIT */
/* Unit tests of a VM's console (vm/console.c): the ring's offsets, reads, and the log file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "vm/console.h"

/* ---- a scratch directory per test, removed in the teardown ------------------------------- */

struct scratch {
    char dir[PATH_MAX];
    char log[PATH_MAX + 32];  /* dir/console.log */
    char log1[PATH_MAX + 32]; /* dir/console.log.1 */
    struct console *c;        /* closed in the teardown */
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    strcpy(s->dir, "/tmp/ferry-test-console-XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    snprintf(s->log, sizeof(s->log), "%s/console.log", s->dir);
    snprintf(s->log1, sizeof(s->log1), "%s/console.log.1", s->dir);
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;
    console_close(s->c);
    int rc = rm_rf(s->dir);
    free(s);
    return rc;
}

/* Opens s->log with these sizes into s->c (closing the one before). */
static void open_console(struct scratch *s, size_t ring, size_t file_max)
{
    console_close(s->c);
    s->c = NULL;
    struct ferr e = {0};
    int rc = console_open(s->log, ring, file_max, &s->c, &e);
    if (rc != 0)
        fail_msg("console_open: %d %s", rc, e.msg);
    assert_non_null(s->c);
}

static void append(struct console *c, const char *text)
{
    console_append(c, text, strlen(text));
}

/* Reads from offset at most max bytes; asserts the text and the offset actually used. */
static void read_is(const struct console *c, uint64_t offset, size_t max, const char *want,
                    uint64_t want_from)
{
    char *out = NULL;
    size_t len = 99;
    uint64_t from = 12345;
    assert_int_equal(console_read(c, offset, max, &out, &len, &from), 0);
    assert_non_null(out);
    if (len != strlen(want) || memcmp(out, want, len) != 0 || from != want_from)
        fail_msg("read(%llu, %zu): got '%.*s' from %llu, want '%s' from %llu",
                 (unsigned long long)offset, max, (int)len, out, (unsigned long long)from, want,
                 (unsigned long long)want_from);
    assert_int_equal(out[len], '\0');
    free(out);
}

/* Asserts the start and end offsets. */
static void offsets_are(const struct console *c, uint64_t start, uint64_t end)
{
    if (console_start(c) != start || console_end(c) != end)
        fail_msg("offsets %llu..%llu, want %llu..%llu", (unsigned long long)console_start(c),
                 (unsigned long long)console_end(c), (unsigned long long)start,
                 (unsigned long long)end);
}

/* Asserts that a file holds exactly want; NULL: that it does not exist. */
static void file_is(const char *path, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(path, 1 << 20, &text, &len, NULL);
    if (!want) {
        assert_int_equal(rc, -ENOENT);
        return;
    }
    if (rc != 0)
        fail_msg("%s: %d", path, rc);
    if (len != strlen(want) || memcmp(text, want, len) != 0)
        fail_msg("%s holds '%s', want '%s'", path, text, want);
    free(text);
}

static void put_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* ---- the ring and its offsets ------------------------------------------------------------ */

static void test_empty(void **state)
{
    struct scratch *s = *state;
    open_console(s, 8, 1000);
    offsets_are(s->c, 0, 0);
    read_is(s->c, 0, 100, "", 0);
    read_is(s->c, 5, 100, "", 0);
    file_is(s->log, NULL); /* nothing written, nothing created */
    /* An empty append changes nothing and creates no file. */
    console_append(s->c, "", 0);
    offsets_are(s->c, 0, 0);
    file_is(s->log, NULL);
}

static void test_within_ring(void **state)
{
    struct scratch *s = *state;
    open_console(s, 8, 1000);
    append(s->c, "abc");
    offsets_are(s->c, 0, 3);
    append(s->c, "defgh"); /* exactly full */
    offsets_are(s->c, 0, 8);
    read_is(s->c, 0, 100, "abcdefgh", 0);
    read_is(s->c, 3, 100, "defgh", 3);
    read_is(s->c, 3, 2, "de", 3);
    read_is(s->c, 7, 100, "h", 7);
    read_is(s->c, 8, 100, "", 8);
    read_is(s->c, 0, 0, "", 0);
}

/* Past the ring's size the oldest bytes go: start moves with end, offsets stay absolute. */
static void test_wrap_around(void **state)
{
    struct scratch *s = *state;
    open_console(s, 8, 1000);
    append(s->c, "abcdef");
    append(s->c, "ghij"); /* 10 bytes: a and b are gone */
    offsets_are(s->c, 2, 10);
    read_is(s->c, 2, 100, "cdefghij", 2);
    /* Reads that cross the ring's physical end (offset 8 sits at index 0). */
    read_is(s->c, 5, 100, "fghij", 5);
    read_is(s->c, 7, 2, "hi", 7);
    read_is(s->c, 8, 100, "ij", 8);
    append(s->c, "klmnopq"); /* 17 */
    offsets_are(s->c, 9, 17);
    read_is(s->c, 9, 100, "jklmnopq", 9);
    read_is(s->c, 16, 100, "q", 16);
    /* Many laps. */
    for (int i = 0; i < 100; i++)
        append(s->c, "xyz");
    offsets_are(s->c, 309, 317);
    read_is(s->c, 309, 100, "yzxyzxyz", 309);
}

/* Offsets before start are clamped to start, beyond end to end (nothing to read). */
static void test_read_clamps(void **state)
{
    struct scratch *s = *state;
    open_console(s, 8, 1000);
    append(s->c, "0123456789");
    offsets_are(s->c, 2, 10);
    read_is(s->c, 0, 100, "23456789", 2);
    read_is(s->c, 1, 3, "234", 2);
    read_is(s->c, 11, 100, "", 10);
    read_is(s->c, 1000, 100, "", 10);
    read_is(s->c, UINT64_MAX, 100, "", 10);
    /* The caller reads "the last max bytes" (VM_CONSOLE_TAIL) as end - max. */
    read_is(s->c, console_end(s->c) - 3, 3, "789", 7);
}

/* An append longer than the ring keeps its last bytes; the offsets count all of them. */
static void test_append_longer_than_ring(void **state)
{
    struct scratch *s = *state;
    open_console(s, 8, 1000);
    append(s->c, "0123456789abcdefghij"); /* 20 */
    offsets_are(s->c, 12, 20);
    read_is(s->c, 0, 100, "cdefghij", 12);
    append(s->c, "XYZ");
    append(s->c, "the quick brown fox"); /* 19 more, from a ring position other than 0 */
    offsets_are(s->c, 34, 42);
    read_is(s->c, 0, 100, "rown fox", 34);
    /* The file has every byte. */
    file_is(s->log, "0123456789abcdefghijXYZthe quick brown fox");
}

/* A ring of one byte still works. */
static void test_ring_of_one(void **state)
{
    struct scratch *s = *state;
    open_console(s, 1, 1000);
    append(s->c, "ab");
    offsets_are(s->c, 1, 2);
    read_is(s->c, 0, 100, "b", 1);
    append(s->c, "c");
    read_is(s->c, 0, 100, "c", 2);
}

/* ---- the log file ------------------------------------------------------------------------ */

static void test_file_mirror(void **state)
{
    struct scratch *s = *state;
    open_console(s, 4, 1000);
    append(s->c, "boot: ");
    append(s->c, "ok\r\n");
    file_is(s->log, "boot: ok\r\n");
    file_is(s->log1, NULL);
    struct stat st;
    assert_int_equal(stat(s->log, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

/* The file rotates once to .1 when an append would take it over file_max. */
static void test_rotation(void **state)
{
    struct scratch *s = *state;
    open_console(s, 64, 10);
    append(s->c, "12345678");
    append(s->c, "90"); /* exactly file_max: no rotation */
    file_is(s->log, "1234567890");
    file_is(s->log1, NULL);
    append(s->c, "a"); /* would be 11 */
    file_is(s->log1, "1234567890");
    file_is(s->log, "a");
    append(s->c, "bcdefghij"); /* 10 again */
    file_is(s->log, "abcdefghij");
    append(s->c, "XYZ"); /* a second rotation replaces .1 */
    file_is(s->log1, "abcdefghij");
    file_is(s->log, "XYZ");
    /* The ring is not affected by the file. */
    offsets_are(s->c, 0, 23);
    read_is(s->c, 0, 100, "1234567890abcdefghijXYZ", 0);
}

/* Reopening loads the tail of the log (as after a ferryd restart): offsets continue from the
 * file's size. */
static void test_reload_tail(void **state)
{
    struct scratch *s = *state;
    put_file(s->log, "0123456789abcdefghij"); /* 20 bytes */
    open_console(s, 8, 1000);
    offsets_are(s->c, 12, 20);
    read_is(s->c, 0, 100, "cdefghij", 12);
    append(s->c, "KL");
    offsets_are(s->c, 14, 22);
    read_is(s->c, 14, 100, "efghijKL", 14);
    file_is(s->log, "0123456789abcdefghijKL");

    /* With a ring larger than the file, all of it, from 0. */
    open_console(s, 64, 1000);
    offsets_are(s->c, 0, 22);
    read_is(s->c, 0, 100, "0123456789abcdefghijKL", 0);
    read_is(s->c, 20, 100, "KL", 20);

    /* A ring of 7 puts offset 15 at index 1: the loaded tail wraps like appended bytes. */
    open_console(s, 7, 1000);
    offsets_are(s->c, 15, 22);
    read_is(s->c, 15, 100, "fghijKL", 15);
    append(s->c, "M");
    read_is(s->c, 0, 100, "ghijKLM", 16);
}

/* Closing and reopening after appends gives the same offsets and bytes. */
static void test_reopen_continues(void **state)
{
    struct scratch *s = *state;
    open_console(s, 16, 1000);
    append(s->c, "first boot\n");
    append(s->c, "login: ");
    uint64_t end = console_end(s->c);
    open_console(s, 16, 1000);
    offsets_are(s->c, 2, end);
    read_is(s->c, 0, 100, "rst boot\nlogin: ", 2);
    append(s->c, "root\n");
    offsets_are(s->c, 7, end + 5);
}

/* An empty log loads nothing. */
static void test_reload_empty_file(void **state)
{
    struct scratch *s = *state;
    put_file(s->log, "");
    open_console(s, 8, 1000);
    offsets_are(s->c, 0, 0);
    append(s->c, "x");
    file_is(s->log, "x");
}

/* Without a writable file, the console still keeps its ring (the failure is logged). */
static void test_no_file(void **state)
{
    struct scratch *s = *state;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/missing-dir/console.log", s->dir);
    struct ferr e = {0};
    enum log_level old = log_threshold;
    log_threshold = LOG_LVL_ERROR; /* keep the test output quiet */
    assert_int_equal(console_open(path, 8, 1000, &s->c, &e), 0);
    append(s->c, "hello");
    log_threshold = old;
    offsets_are(s->c, 0, 5);
    read_is(s->c, 0, 100, "hello", 0);
    file_is(path, NULL);
}

/* ---- refusals ---------------------------------------------------------------------------- */

static void test_open_refusals(void **state)
{
    struct scratch *s = *state;
    struct console *c = (struct console *)0x1;
    struct ferr e = {0};
    /* A ring of 0 bytes is a bad argument, not a lack of memory. */
    assert_int_equal(console_open(s->log, 0, 1000, &c, &e), FERR_INVALID);
    assert_string_equal(e.msg, "console: the ring must hold at least one byte");
    assert_true(c == (struct console *)0x1);
    /* A path that does not fit. */
    static char huge[5000];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[0] = '/';
    ferr_clear(&e);
    assert_int_equal(console_open(huge, 8, 1000, &c, &e), -ENAMETOOLONG);
    assert_int_equal(e.code, -ENAMETOOLONG);
    assert_memory_equal(e.msg, "console: path too long: /aaa", 28);
    assert_true(c == (struct console *)0x1);
    /* A NULL ferr is allowed. */
    assert_int_equal(console_open(s->log, 0, 1000, &c, NULL), FERR_INVALID);
    console_close(NULL); /* harmless */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)
    const struct CMUnitTest tests[] = {
        T(test_empty),
        T(test_within_ring),
        T(test_wrap_around),
        T(test_read_clamps),
        T(test_append_longer_than_ring),
        T(test_ring_of_one),
        T(test_file_mirror),
        T(test_rotation),
        T(test_reload_tail),
        T(test_reopen_continues),
        T(test_reload_empty_file),
        T(test_no_file),
        T(test_open_refusals),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
