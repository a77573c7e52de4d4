/* SPDX-License-Identifier: MIT */
/* systemd's notification protocol for ferryd (sdnotify.h), on libsystemd's sd_notify(3). */
#include "host/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"

struct sdnotify {
    uv_timer_t timer; /* READY on its first tick, WATCHDOG=1 on every tick */
    bool enabled;     /* NOTIFY_SOCKET is set */
    uint64_t watchdog_usec;
    bool ready_asked, ready_sent, stopping;
    bool failed; /* a send failed and the log said so: said once, not on every tick */
    char ready_status[256];
};

int sdnotify_new(uv_loop_t *loop, struct sdnotify **out, struct ferr *e)
{
    struct sdnotify *n = calloc(1, sizeof(*n));
    if (!n)
        return ferr_set(e, -ENOMEM, "sdnotify: out of memory");
    const char *sock = getenv("NOTIFY_SOCKET");
    n->enabled = sock && sock[0];
    uint64_t usec = 0;
    /* 0 = keep the variables: they are read again by nothing but us, and a QEMU that inherits
     * them sees another WATCHDOG_PID (and NotifyAccess=main ignores its messages anyway). */
    if (n->enabled && sd_watchdog_enabled(0, &usec) > 0)
        n->watchdog_usec = usec;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    *out = n;
    return 0;
}

bool sdnotify_enabled(const struct sdnotify *n)
{
    return n && n->enabled;
}

uint64_t sdnotify_watchdog_usec(const struct sdnotify *n)
{
    return n ? n->watchdog_usec : 0;
}

static void send_state(struct sdnotify *n, const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0 && !n->failed) {
        log_warn("sdnotify: sending \"%.*s\" to NOTIFY_SOCKET %s: %s; systemd may not see this "
                 "ferryd's state",
                 (int)strcspn(state, "\n"), state, getenv("NOTIFY_SOCKET"), strerror(-rc));
        n->failed = true;
    } else if (rc > 0 && n->failed) {
        log_info("sdnotify: sending works again");
        n->failed = false;
    }
}

/* "PREFIX" + "STATUS=" + the formatted line, its newlines made spaces (one line per field). */
static void send_with_status(struct sdnotify *n, const char *prefix, const char *fmt, va_list ap)
{
    char status[512], msg[600];
    vsnprintf(status, sizeof(status), fmt, ap);
    for (char *p = status; *p; p++)
        if (*p == '\n')
            *p = ' ';
    snprintf(msg, sizeof(msg), "%sSTATUS=%s", prefix, status);
    send_state(n, msg);
}

void sdnotify_status(struct sdnotify *n, const char *fmt, ...)
{
    if (!n || !n->enabled)
        return;
    va_list ap;
    va_start(ap, fmt);
    send_with_status(n, "", fmt, ap);
    va_end(ap);
}

static void tick(uv_timer_t *t)
{
    struct sdnotify *n = t->data;
    if (n->ready_asked && !n->ready_sent && !n->stopping) {
        char msg[300];
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", n->ready_status);
        send_state(n, msg);
        n->ready_sent = true;
    }
    if (n->watchdog_usec)
        send_state(n, "WATCHDOG=1");
}

void sdnotify_ready(struct sdnotify *n, const char *fmt, ...)
{
    if (!n || !n->enabled || n->ready_asked)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->ready_status, sizeof(n->ready_status), fmt, ap);
    va_end(ap);
    for (char *p = n->ready_status; *p; p++)
        if (*p == '\n')
            *p = ' ';
    n->ready_asked = true;
    /* Half the interval, as sd_watchdog_enabled(3) advises: one late tick is not a restart. */
    uint64_t every_ms = n->watchdog_usec / 2000;
    if (n->watchdog_usec && every_ms == 0)
        every_ms = 1;
    uv_timer_start(&n->timer, tick, 0, every_ms);
    if (n->watchdog_usec)
        log_info("sdnotify: the service watchdog (WatchdogSec %llu ms) is fed every %llu ms "
                 "from the loop",
                 (unsigned long long)(n->watchdog_usec / 1000), (unsigned long long)every_ms);
}

void sdnotify_stopping(struct sdnotify *n, const char *fmt, ...)
{
    if (!n || !n->enabled)
        return;
    n->stopping = true;
    va_list ap;
    va_start(ap, fmt);
    send_with_status(n, "STOPPING=1\n", fmt, ap);
    va_end(ap);
    if (!n->watchdog_usec)
        uv_timer_stop(&n->timer);
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void sdnotify_close(struct sdnotify *n)
{
    if (!n)
        return;
    uv_close((uv_handle_t *)&n->timer, closed);
}
