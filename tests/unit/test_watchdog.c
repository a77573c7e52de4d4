/* SPDX-License-Identifier: MIT */
/* Unit tests of the watchdog backstop (host/watchdog.c): the timeline check, the lab's emulated
 * watchdog in a file and a FIFO, and the paths it refuses. No test opens a real watchdog
 * device: that would reset this machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "host/watchdog.h"

static void test_timing(void **state)
{
    (void)state;
    struct ferr e = {0};
    /* The defaults sit exactly at the limit: 3000 + 1000 + 1000 = 5000. */
    assert_int_equal(watchdog_timing_check(WATCHDOG_TIMEOUT_MS_DEFAULT, 1000, 5000, &e), 0);
    assert_int_equal(watchdog_timing_check(500, 100, 1600, &e), 0);
    assert_int_equal(watchdog_timing_check(10000, 2000, 60000, &e), 0);

    assert_int_equal(watchdog_timing_check(3001, 1000, 5000, &e), FERR_INVALID);
    assert_int_equal(watchdog_timing_check(4500, 1000, 5000, &e), FERR_INVALID);
    /* the message names the three numbers and what to change */
    assert_non_null(strstr(e.msg, "4500"));
    assert_non_null(strstr(e.msg, "lease_ms 1000"));
    assert_non_null(strstr(e.msg, "lease_expiry_ms 5000"));
    assert_non_null(strstr(e.msg, "--watchdog-timeout-ms 3000 or less"));
    assert_non_null(strstr(e.msg, "--lease-expiry-ms to 6500"));

    /* No timeout fits: only the expiry can change. */
    assert_int_equal(watchdog_timing_check(500, 2000, 3000, &e), FERR_INVALID);
    assert_null(strstr(e.msg, "--watchdog-timeout-ms"));
    assert_non_null(strstr(e.msg, "--lease-expiry-ms to 3500 or more"));
    /* No overflow at the extremes. */
    assert_int_equal(watchdog_timing_check(UINT32_MAX, UINT32_MAX, UINT32_MAX, NULL), FERR_INVALID);
}

/* The emulated file's one JSON line. */
static json_t *read_line(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(path, 4096, &text, &len, NULL), 0);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_ptr_equal(strchr(text, '\n'), text + len - 1); /* one line, no old tail */
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_emulated_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-wd-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    /* A longer old content: the first write must not leave its tail behind. */
    static const char junk[] = "{\"old\": \"a line much longer than the one the watchdog "
                               "writes, with padding to be sure..............................\"}\n";
    assert_int_equal(write(fd, junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
    close(fd);

    struct watchdog *w = NULL;
    struct ferr e = {0};
    uint64_t before = now_mono_ms();
    assert_int_equal(watchdog_open(path, 3000, &w, &e), 0);
    assert_non_null(w);
    assert_int_equal(watchdog_timeout_ms(w), 3000);
    assert_null(watchdog_caveat(w));
    assert_non_null(strstr(watchdog_describe(w), "emulated"));
    assert_non_null(strstr(watchdog_describe(w), path));

    /* Armed from the open on. */
    json_t *j = read_line(path);
    assert_true(json_is_true(json_object_get(j, "armed")));
    assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
    assert_int_equal(json_integer_value(json_object_get(j, "timeout_ms")), 3000);
    json_int_t fed0 = json_integer_value(json_object_get(j, "fed_ms"));
    assert_true(fed0 >= (json_int_t)before && fed0 <= (json_int_t)now_mono_ms());
    json_decref(j);

    /* A feed later moves fed_ms on the monotonic clock. */
    usleep(20 * 1000);
    assert_int_equal(watchdog_feed(w, &e), 0);
    j = read_line(path);
    assert_true(json_is_true(json_object_get(j, "armed")));
    assert_true(json_integer_value(json_object_get(j, "fed_ms")) >= fed0 + 20);
    json_decref(j);

    /* A new timeout (a timing profile changed) is written with a feed; a bad one changes
     * nothing. */
    assert_int_equal(watchdog_set_timeout(w, 1000, &e), 0);
    assert_int_equal(watchdog_timeout_ms(w), 1000);
    j = read_line(path);
    assert_int_equal(json_integer_value(json_object_get(j, "timeout_ms")), 1000);
    assert_true(json_is_true(json_object_get(j, "armed")));
    json_decref(j);
    assert_int_equal(watchdog_set_timeout(w, 499, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "500..60000"));
    assert_int_equal(watchdog_timeout_ms(w), 1000);

    /* The clean close says so. */
    watchdog_disarm_close(w);
    j = read_line(path);
    assert_true(json_is_false(json_object_get(j, "armed")));
    assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
    json_decref(j);
    unlink(path);
    watchdog_disarm_close(NULL); /* a no-op */
}

static void test_emulated_fifo(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-wd-XXXXXX", path[PATH_MAX];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int rd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);

    struct watchdog *w = NULL;
    struct ferr e = {0};
    assert_int_equal(watchdog_open(path, 1000, &w, &e), 0);
    assert_int_equal(watchdog_feed(w, &e), 0);
    watchdog_disarm_close(w);
    /* Three lines: the open, the feed, the disarm. */
    char buf[1024];
    ssize_t n = read(rd, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    char *l2 = strchr(buf, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    assert_non_null(strstr(buf, "\"armed\": true"));
    assert_non_null(strstr(l2, "\"armed\": true"));
    assert_non_null(strstr(l3, "\"armed\": false"));
    assert_ptr_equal(strchr(l3, '\n'), buf + n - 1);
    close(rd);
    unlink(path);
    rmdir(dir);
}

static void test_refused_paths(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-wd-XXXXXX", path[PATH_MAX];
    assert_non_null(mkdtemp(dir));
    struct watchdog *w = NULL;
    struct ferr e = {0};

    /* A directory: says what it is and what to give. */
    assert_int_equal(watchdog_open(dir, 3000, &w, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, dir));
    assert_non_null(strstr(e.msg, "is a directory"));
    assert_non_null(strstr(e.msg, "watchdog device"));
    assert_non_null(strstr(e.msg, "regular file"));

    assert_int_equal(watchdog_check_path(dir, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is a directory"));

    /* A missing path. */
    snprintf(path, sizeof(path), "%s/nonexistent", dir);
    assert_int_equal(watchdog_open(path, 3000, &w, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "no such file"));
    assert_non_null(strstr(e.msg, "/dev/watchdog"));
    assert_non_null(strstr(e.msg, "softdog"));
    assert_int_equal(access(path, F_OK), -1); /* not created */
    assert_int_equal(watchdog_check_path(path, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "no such file"));

    /* A unix socket. */
    snprintf(path, sizeof(path), "%s/sock", dir);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(watchdog_open(path, 3000, &w, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is a socket"));
    close(s);
    unlink(path);

    /* A character device that is not a watchdog (never a real watchdog here: it would reset
     * the machine). */
    assert_int_equal(watchdog_open("/dev/null", 3000, &w, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not a watchdog device"));

    /* Nothing else. */
    assert_int_equal(watchdog_open("", 3000, &w, &e), FERR_INVALID);
    snprintf(path, sizeof(path), "%s/file", dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    assert_int_equal(watchdog_check_path(path, &e), 0);
    assert_int_equal(watchdog_check_path("/dev/null", &e), 0); /* by its kind only */
    assert_int_equal(watchdog_open(path, 0, &w, &e), FERR_INVALID);
    assert_null(w);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_emulated_file),
        cmocka_unit_test(test_emulated_fifo),
        cmocka_unit_test(test_refused_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
