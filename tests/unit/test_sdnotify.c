/* SPDX-License-Identifier: MIT */
/* Unit tests of systemd's notification protocol for ferryd (host/sdnotify.c): what a service
 * manager receives on NOTIFY_SOCKET, in what order, and nothing without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "host/sdnotify.h"

/* A datagram socket in a scratch directory, standing in for systemd's. */
struct manager {
    char dir[64];
    char path[96];
    int fd;
};

static void manager_open(struct manager *m)
{
    strcpy(m->dir, "/tmp/ferry-sdn-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->path, sizeof(m->path), "%s/notify", m->dir);
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(m->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, m->path);
    assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setenv("NOTIFY_SOCKET", m->path, 1);
}

static void manager_close(struct manager *m)
{
    close(m->fd);
    unlink(m->path);
    rmdir(m->dir);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

/* The next datagram, or NULL when none is waiting. */
static const char *manager_recv(struct manager *m)
{
    static char buf[1024];
    ssize_t n = recv(m->fd, buf, sizeof(buf) - 1, 0);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static void stop_loop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void close_all(uv_loop_t *loop, struct sdnotify *n)
{
    sdnotify_close(n);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_ready_status_watchdog_stopping(void **state)
{
    (void)state;
    struct manager m;
    manager_open(&m);
    setenv("WATCHDOG_USEC", "100000", 1); /* 100 ms: fed every 50 ms */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sdnotify *n = NULL;
    struct ferr e = {0};
    assert_int_equal(sdnotify_new(&loop, &n, &e), 0);
    assert_true(sdnotify_enabled(n));
    assert_int_equal(sdnotify_watchdog_usec(n), 100000);

    sdnotify_status(n, "starting:\nreading");
    assert_string_equal(manager_recv(&m), "STATUS=starting: reading"); /* one line */
    /* READY waits for the loop: nothing before it runs. */
    sdnotify_ready(n, "node %s", "a1");
    assert_null(manager_recv(&m));
    sdnotify_ready(n, "node %s", "again"); /* only the first counts */
    run_for(&loop, 180);
    assert_string_equal(manager_recv(&m), "READY=1\nSTATUS=node a1");
    unsigned feeds = 0;
    const char *msg;
    while ((msg = manager_recv(&m))) {
        assert_string_equal(msg, "WATCHDOG=1");
        feeds++;
    }
    assert_true(feeds >= 3 && feeds <= 5); /* at 0, 50, 100, 150 ms */

    /* STOPPING, and the watchdog is still fed while the shutdown runs the loop. */
    sdnotify_stopping(n, "stopping");
    assert_string_equal(manager_recv(&m), "STOPPING=1\nSTATUS=stopping");
    run_for(&loop, 120);
    feeds = 0;
    while ((msg = manager_recv(&m))) {
        assert_string_equal(msg, "WATCHDOG=1");
        feeds++;
    }
    assert_true(feeds >= 1);
    close_all(&loop, n);
    manager_close(&m);
}

static void test_stopping_before_ready_sends_no_ready(void **state)
{
    (void)state;
    struct manager m;
    manager_open(&m);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sdnotify *n = NULL;
    assert_int_equal(sdnotify_new(&loop, &n, NULL), 0);
    assert_int_equal(sdnotify_watchdog_usec(n), 0);
    sdnotify_ready(n, "ready");
    sdnotify_stopping(n, "a start-up step failed");
    run_for(&loop, 20);
    assert_string_equal(manager_recv(&m), "STOPPING=1\nSTATUS=a start-up step failed");
    assert_null(manager_recv(&m)); /* no READY, no WATCHDOG */
    close_all(&loop, n);
    manager_close(&m);
}

static void test_ready_without_watchdog_sends_once(void **state)
{
    (void)state;
    struct manager m;
    manager_open(&m);
    setenv("WATCHDOG_USEC", "100000", 1);
    setenv("WATCHDOG_PID", "1", 1); /* the watchdog is someone else's */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sdnotify *n = NULL;
    assert_int_equal(sdnotify_new(&loop, &n, NULL), 0);
    assert_int_equal(sdnotify_watchdog_usec(n), 0);
    sdnotify_ready(n, "ready");
    run_for(&loop, 60);
    assert_string_equal(manager_recv(&m), "READY=1\nSTATUS=ready");
    assert_null(manager_recv(&m));
    close_all(&loop, n);
    manager_close(&m);
}

static void test_without_notify_socket_nothing(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "100000", 1);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sdnotify *n = NULL;
    assert_int_equal(sdnotify_new(&loop, &n, NULL), 0);
    assert_false(sdnotify_enabled(n));
    assert_int_equal(sdnotify_watchdog_usec(n), 0);
    sdnotify_status(n, "x");
    sdnotify_ready(n, "x");
    /* No timer runs: the loop has nothing to do and returns at once. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    sdnotify_stopping(n, "x");
    close_all(&loop, n);
    unsetenv("WATCHDOG_USEC");
    /* NULL is allowed everywhere. */
    sdnotify_status(NULL, "x");
    sdnotify_ready(NULL, "x");
    sdnotify_stopping(NULL, "x");
    sdnotify_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_status_watchdog_stopping),
        cmocka_unit_test(test_stopping_before_ready_sends_no_ready),
        cmocka_unit_test(test_ready_without_watchdog_sends_once),
        cmocka_unit_test(test_without_notify_socket_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
