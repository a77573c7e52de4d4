/* SPDX-License-Identifier: MIT */
/* ferryd's side of systemd's service protocol (sd_notify(3)): READY=1 once the API answers,
 * STATUS= lines, STOPPING=1, and the service watchdog (WatchdogSec=) fed from the loop. This
 * is not the fencing watchdog of host/watchdog.h: systemd restarts a hung ferryd here, and its
 * VMs keep running (KillMode=process); the fencing watchdog resets the host. */
#ifndef FERRY_HOST_SDNOTIFY_H
#define FERRY_HOST_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"

struct sdnotify;

/* Reads NOTIFY_SOCKET and the service watchdog's interval (sd_watchdog_enabled(3): WATCHDOG_USEC,
 * for this pid if WATCHDOG_PID is set). Without NOTIFY_SOCKET every call below does nothing. The
 * caller owns *out and ends it with sdnotify_close. Returns 0 or -ENOMEM. */
int sdnotify_new(uv_loop_t *loop, struct sdnotify **out, struct ferr *e);

/* Whether a service manager listens (NOTIFY_SOCKET is set). */
bool sdnotify_enabled(const struct sdnotify *n);
/* The watchdog's interval in microseconds (WatchdogSec=), 0 when there is none. */
uint64_t sdnotify_watchdog_usec(const struct sdnotify *n);

/* STATUS=: one line for `systemctl status`, sent now. */
void sdnotify_status(struct sdnotify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* READY=1 with a STATUS line, sent from the loop's next turn: call it once the API socket
 * listens and nothing that could still stop the start is left, so that READY means the loop
 * that answers the API runs. From then on it feeds the watchdog (WATCHDOG=1) every half of its
 * interval, from the loop: a loop that hangs stops feeding and systemd restarts ferryd. Only
 * the first call counts. */
void sdnotify_ready(struct sdnotify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* STOPPING=1 with a STATUS line, sent now. A READY not sent yet is not sent any more; the
 * watchdog is still fed while the clean shutdown runs the loop, until sdnotify_close. */
void sdnotify_stopping(struct sdnotify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Stops feeding and frees n once its timer is closed (on a later loop turn). NULL is a no-op. */
void sdnotify_close(struct sdnotify *n);

#endif
