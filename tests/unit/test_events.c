/* SPDX-License-Identifier: MIT */
/* Unit tests of the host's event log (host/events.c): ids, the ring, listing, the JSON-lines
 * file and what a restart finds in it. */
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
#include "host/events.h"

/* EVENTS_FILE_MAX in events.c: the file rotates once it is over this size. */
#define FILE_MAX (1024 * 1024)

/* ---- a scratch directory per test, removed in the teardown ------------------------------- */

struct scratch {
    char dir[PATH_MAX];
    char path[PATH_MAX + 32];  /* dir/events.jsonl */
    char path1[PATH_MAX + 32]; /* dir/events.jsonl.1 */
    struct events *ev;         /* closed in the teardown */
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    strcpy(s->dir, "/tmp/ferry-test-events-XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    snprintf(s->path, sizeof(s->path), "%s/events.jsonl", s->dir);
    snprintf(s->path1, sizeof(s->path1), "%s/events.jsonl.1", s->dir);
    log_threshold = LOG_LVL_ERROR; /* events_add logs every event at info */
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;
    events_close(s->ev);
    int rc = rm_rf(s->dir);
    free(s);
    return rc;
}

/* (Re)opens s->path keeping keep events into s->ev. */
static void reopen(struct scratch *s, unsigned keep)
{
    events_close(s->ev);
    s->ev = NULL;
    struct ferr e = {0};
    int rc = events_open(s->path, keep, &s->ev, &e);
    if (rc != 0)
        fail_msg("events_open: %d %s", rc, e.msg);
    assert_non_null(s->ev);
}

/* The ids of events_list(since, limit) as "1,2,3" ("" for none). */
static void ids_are(const struct events *ev, uint64_t since, unsigned limit, const char *want)
{
    json_t *arr = events_list(ev, since, limit);
    assert_true(json_is_array(arr));
    char got[4096] = "";
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        json_t *id = json_object_get(o, "id");
        assert_true(json_is_integer(id));
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", i ? "," : "",
                 (long long)json_integer_value(id));
    }
    json_decref(arr);
    if (strcmp(got, want) != 0)
        fail_msg("events_list(%llu, %u): ids %s, want %s", (unsigned long long)since, limit, got,
                 want);
}

static void put_file(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void put_text(const char *path, const char *text)
{
    put_file(path, text, strlen(text));
}

/* The lines of a file, each parsed; asserts that each is a JSON object. */
static json_t *file_lines(const char *path)
{
    char *text = NULL;
    assert_int_equal(file_read_all(path, 4 << 20, &text, NULL, NULL), 0);
    json_t *arr = json_array();
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!json_is_object(o))
            fail_msg("%s: a line that is not a JSON object: '%.80s'", path, line);
        json_array_append_new(arr, o);
    }
    free(text);
    return arr;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void add_n(struct events *ev, int n)
{
    for (int i = 0; i < n; i++)
        events_add(ev, "vm1", "vm.test", "event %d", i);
}

/* ---- ids, fields, the ring --------------------------------------------------------------- */

static void test_first_events(void **state)
{
    struct scratch *s = *state;
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "");
    assert_int_equal(file_size(s->path), -1); /* the first event creates the file */
    uint64_t before = now_wall_ms();
    events_add(s->ev, "web1", "vm.started", "QEMU pid %d, accel %s", 1234, "kvm");
    events_add(s->ev, NULL, "daemon.started", "no vm");
    events_add(s->ev, "", "node.resumed", "empty vm");
    uint64_t after = now_wall_ms();
    ids_are(s->ev, 0, 100, "1,2,3");

    json_t *arr = events_list(s->ev, 0, 100);
    json_t *o = json_array_get(arr, 0);
    assert_int_equal(json_object_size(o), 5);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "vm")), "web1");
    assert_string_equal(json_string_value(json_object_get(o, "type")), "vm.started");
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "QEMU pid 1234, accel kvm");
    json_int_t t = json_integer_value(json_object_get(o, "time_ms"));
    assert_true((uint64_t)t >= before && (uint64_t)t <= after);
    /* No VM is "". */
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "vm")), "");
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 2), "vm")), "");

    /* The file has the same objects, one per line. */
    json_t *lines = file_lines(s->path);
    assert_true(json_equal(lines, arr));
    json_decref(lines);
    json_decref(arr);
}

static void test_ring_bounds(void **state)
{
    struct scratch *s = *state;
    reopen(s, 3);
    add_n(s->ev, 2);
    ids_are(s->ev, 0, 100, "1,2");
    add_n(s->ev, 1);
    ids_are(s->ev, 0, 100, "1,2,3");
    add_n(s->ev, 1); /* the oldest goes */
    ids_are(s->ev, 0, 100, "2,3,4");
    add_n(s->ev, 7);
    ids_are(s->ev, 0, 100, "9,10,11");
    /* The file keeps them all. */
    json_t *lines = file_lines(s->path);
    assert_int_equal(json_array_size(lines), 11);
    json_decref(lines);

    /* A ring of one. */
    reopen(s, 1);
    ids_are(s->ev, 0, 100, "11");
    add_n(s->ev, 1);
    ids_are(s->ev, 0, 100, "12");
}

static void test_list_since_and_limit(void **state)
{
    struct scratch *s = *state;
    reopen(s, 10);
    add_n(s->ev, 5);
    ids_are(s->ev, 0, 100, "1,2,3,4,5");
    ids_are(s->ev, 0, 5, "1,2,3,4,5");
    /* Oldest first, at most limit. */
    ids_are(s->ev, 0, 2, "1,2");
    ids_are(s->ev, 0, 1, "1");
    ids_are(s->ev, 0, 0, "");
    /* Strictly after since. */
    ids_are(s->ev, 1, 100, "2,3,4,5");
    ids_are(s->ev, 3, 100, "4,5");
    ids_are(s->ev, 3, 1, "4");
    ids_are(s->ev, 4, 100, "5");
    ids_are(s->ev, 5, 100, "");
    ids_are(s->ev, 6, 100, "");
    ids_are(s->ev, UINT64_MAX, 100, "");
    /* Since before the ring's oldest: what is kept. */
    reopen(s, 2);
    ids_are(s->ev, 0, 100, "4,5");
    ids_are(s->ev, 2, 100, "4,5");
    ids_are(s->ev, 4, 100, "5");
}

/* The list holds its own references: dropping it leaves the ring intact. */
static void test_list_references(void **state)
{
    struct scratch *s = *state;
    reopen(s, 2);
    add_n(s->ev, 1);
    json_t *a = events_list(s->ev, 0, 10);
    json_t *o = json_array_get(a, 0);
    assert_int_equal(o->refcount, 2); /* the ring's and the list's */
    json_incref(o);
    json_decref(a);
    assert_int_equal(o->refcount, 2);
    add_n(s->ev, 2); /* event 1 leaves the ring */
    assert_int_equal(o->refcount, 1);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
    json_decref(o);
}

/* ---- restarts ---------------------------------------------------------------------------- */

static void test_reopen_continues_ids(void **state)
{
    struct scratch *s = *state;
    reopen(s, 3);
    add_n(s->ev, 5);
    /* A restart with a larger ring: the last events of the file, ids go on. */
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "1,2,3,4,5");
    add_n(s->ev, 1);
    ids_are(s->ev, 4, 100, "5,6");
    /* With a smaller one: only the last ones. */
    reopen(s, 2);
    ids_are(s->ev, 0, 100, "5,6");
    add_n(s->ev, 1);
    ids_are(s->ev, 0, 100, "6,7");
    /* The messages come back as they were written. */
    json_t *arr = events_list(s->ev, 6, 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "message")),
                        "event 0");
    json_decref(arr);
}

/* Ids continue after the highest id in the file, even if lines are not in order. */
static void test_reopen_highest_id(void **state)
{
    struct scratch *s = *state;
    put_text(s->path, "{\"id\":7,\"time_ms\":1,\"vm\":\"\",\"type\":\"a\",\"message\":\"\"}\n"
                      "{\"id\":3,\"time_ms\":2,\"vm\":\"\",\"type\":\"b\",\"message\":\"\"}\n");
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "7,3"); /* file order */
    add_n(s->ev, 1);
    ids_are(s->ev, 0, 100, "7,3,8");
}

/* Lines that are not events are skipped wherever they are. */
static void test_reopen_corrupt_lines(void **state)
{
    struct scratch *s = *state;
    put_text(s->path, "{\"id\":1,\"time_ms\":1,\"vm\":\"\",\"type\":\"a\",\"message\":\"\"}\n"
                      "garbage\n"
                      "\n"
                      "{\"id\":\"2\",\"type\":\"id is a string\"}\n"
                      "{\"type\":\"no id\"}\n"
                      "[1,2]\n"
                      "{\"id\":4,\"time_ms\":1,\"vm\":\"\",\"type\":\"b\",\"message\":\"\"}\n"
                      "{\"id\":5,\"time_ms\":1,\"vm\":\"\",\"ty\n"); /* torn, with newline */
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "1,4");
    add_n(s->ev, 1);
    ids_are(s->ev, 0, 100, "1,4,5");
}

/* A last line cut short by a crash, without its newline: the next event must not be glued to
 * it (it would be lost on the next restart, and its id given out again). */
static void test_reopen_torn_last_line(void **state)
{
    struct scratch *s = *state;
    put_text(s->path, "{\"id\":1,\"time_ms\":1,\"vm\":\"\",\"type\":\"a\",\"message\":\"\"}\n"
                      "{\"id\":2,\"time_ms\":1,\"vm\":\"\",\"type\":\"b\",\"message\":\"\"}\n"
                      "{\"id\":3,\"time_ms\":1,\"v");
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "1,2");
    events_add(s->ev, "vm1", "vm.started", "after the crash");
    ids_are(s->ev, 0, 100, "1,2,3");
    events_add(s->ev, "vm1", "vm.stopped", "and one more");
    /* Another restart finds both new events. */
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "1,2,3,4");
    add_n(s->ev, 1);
    ids_are(s->ev, 3, 100, "4,5");
    /* The torn bytes stay on a line of their own. */
    char *text = NULL;
    assert_int_equal(file_read_all(s->path, 1 << 20, &text, NULL, NULL), 0);
    assert_non_null(strstr(text, "\"type\":\"b\",\"message\":\"\"}\n{\"id\":3,\"time_ms\":1,\"v\n"
                                 "{\"id\":3,"));
    free(text);
}

/* Writes a file of exactly size bytes: events 1..n in lines of 128 bytes, the last line
 * padded. */
static int put_big_file(const char *path, size_t size)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    size_t done = 0;
    int id = 0;
    while (done < size) {
        size_t line = size - done < 256 ? size - done : 128;
        char head[64];
        int n =
            snprintf(head, sizeof(head),
                     "{\"id\":%d,\"time_ms\":1,\"vm\":\"\",\"type\":\"t\",\"message\":\"", ++id);
        assert_true(line >= (size_t)n + 3);
        fputs(head, f);
        for (size_t i = (size_t)n; i < line - 3; i++)
            fputc('x', f);
        fputs("\"}\n", f);
        done += line;
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(file_size(path), (off_t)size);
    return id;
}

/* The file rotates to .1 once it is over FILE_MAX; ids continue from the new file. */
static void test_file_rotation(void **state)
{
    struct scratch *s = *state;
    /* Exactly FILE_MAX: not over it, the event is appended. */
    int last = put_big_file(s->path, FILE_MAX);
    reopen(s, 4);
    char want[64];
    snprintf(want, sizeof(want), "%d,%d,%d,%d", last - 3, last - 2, last - 1, last);
    ids_are(s->ev, 0, 100, want);
    add_n(s->ev, 1);
    assert_int_equal(file_size(s->path1), -1);
    assert_true(file_size(s->path) > FILE_MAX);

    /* Now over it: the next event rotates the file and starts a new one. */
    off_t before = file_size(s->path);
    add_n(s->ev, 1);
    assert_int_equal(file_size(s->path1), before);
    json_t *lines = file_lines(s->path);
    assert_int_equal(json_array_size(lines), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 0), "id")), last + 2);
    json_decref(lines);

    /* A restart reads the new file only, and ids still go on. */
    reopen(s, 4);
    snprintf(want, sizeof(want), "%d", last + 2);
    ids_are(s->ev, 0, 100, want);
    add_n(s->ev, 1);
    snprintf(want, sizeof(want), "%d,%d", last + 2, last + 3);
    ids_are(s->ev, 0, 100, want);
}

/* A torn last line leaves with the rotated file: the new file starts with the event, not with
 * the newline that would have ended the torn line. */
static void test_rotation_after_torn_line(void **state)
{
    struct scratch *s = *state;
    int last = put_big_file(s->path, FILE_MAX + 1);
    int fd = open(s->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"id\":", 6), 6);
    close(fd);
    reopen(s, 4);
    add_n(s->ev, 1);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(s->path, 1 << 20, &text, &len, NULL), 0);
    char want[128];
    snprintf(want, sizeof(want), "{\"id\":%d,", last + 1);
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(memchr(text, '\n', len));
    assert_true(strchr(text, '\n') == text + len - 1); /* one line */
    free(text);
    assert_int_equal(file_size(s->path1), (off_t)FILE_MAX + 1 + 6);
}

/* ---- messages ---------------------------------------------------------------------------- */

/* A message that is not UTF-8 (or that the 1024-byte cut splits inside a character) is still
 * recorded, with '?' for the bytes JSON cannot carry. */
static void test_message_not_utf8(void **state)
{
    struct scratch *s = *state;
    reopen(s, 10);
    events_add(s->ev, "vm1", "vm.failed", "qemu: %s", "caf\xe9 \xff\xfe ok \xc3\xa9");
    ids_are(s->ev, 0, 100, "1");
    json_t *arr = events_list(s->ev, 0, 100);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "message")),
                        "qemu: caf? ?? ok \xc3\xa9");
    json_decref(arr);

    char long_msg[1100];
    memset(long_msg, 'a', 1022);
    strcpy(long_msg + 1022, "\xc3\xa9 tail"); /* é at bytes 1022-1023: cut after its first */
    events_add(s->ev, "vm1", "vm.failed", "%s", long_msg);
    ids_are(s->ev, 0, 100, "1,2");
    arr = events_list(s->ev, 1, 100);
    const char *m = json_string_value(json_object_get(json_array_get(arr, 0), "message"));
    assert_int_equal(strlen(m), 1023);
    assert_int_equal(m[1021], 'a');
    assert_int_equal(m[1022], '?');
    json_decref(arr);
    /* Both are in the file too. */
    reopen(s, 10);
    ids_are(s->ev, 0, 100, "1,2");
}

/* Without a writable file the events are still kept in memory (the failure is logged). */
static void test_no_file(void **state)
{
    struct scratch *s = *state;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/missing-dir/events.jsonl", s->dir);
    assert_int_equal(events_open(path, 4, &s->ev, NULL), 0);
    add_n(s->ev, 2);
    ids_are(s->ev, 0, 100, "1,2");
    assert_int_equal(file_size(path), -1);
}

/* ---- refusals ---------------------------------------------------------------------------- */

static void test_open_refusals(void **state)
{
    struct scratch *s = *state;
    struct events *ev = (struct events *)0x1;
    struct ferr e = {0};
    assert_int_equal(events_open(s->path, 0, &ev, &e), FERR_INVALID);
    assert_string_equal(e.msg, "events: keep must be at least 1");
    assert_true(ev == (struct events *)0x1);
    static char huge[5000];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[0] = '/';
    ferr_clear(&e);
    assert_int_equal(events_open(huge, 4, &ev, &e), -ENAMETOOLONG);
    assert_memory_equal(e.msg, "events: path too long: /aaa", 27);
    assert_true(ev == (struct events *)0x1);
    events_close(NULL); /* harmless */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)
    const struct CMUnitTest tests[] = {
        T(test_first_events),         T(test_ring_bounds),
        T(test_list_since_and_limit), T(test_list_references),
        T(test_reopen_continues_ids), T(test_reopen_highest_id),
        T(test_reopen_corrupt_lines), T(test_reopen_torn_last_line),
        T(test_file_rotation),        T(test_rotation_after_torn_line),
        T(test_message_not_utf8),     T(test_no_file),
        T(test_open_refusals),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
