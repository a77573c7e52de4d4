/* SPDX-License-Identifier: MIT */
/* The watchdog backstop: a Linux watchdog device (or the lab's emulated one) that ferryd feeds
 * while it is healthy, so that a hung ferryd or host is reset before other nodes act on it. */
#ifndef FERRY_HOST_WATCHDOG_H
#define FERRY_HOST_WATCHDOG_H

#include "common/err.h"

#define WATCHDOG_TIMEOUT_MS_DEFAULT 3000
#define WATCHDOG_TIMEOUT_MS_MIN 500
#define WATCHDOG_TIMEOUT_MS_MAX 60000
/* What the reset may take beyond the timeout: a device that fires late, clocks that run at
 * slightly different rates on two hosts, the lab's emulated watchdog that looks every 100 ms. */
#define WATCHDOG_MARGIN_MS 1000

/*
 * The timeline the timeout must fit (docs/failover.md, "Watchdog"). This node's loop feeds
 * the watchdog and starts a lease renewal every lease_ms; say both stop at t (a hung loop, a
 * frozen process, a dead host).
 *   - The watchdog resets this host at t + timeout_ms at the latest: its VMs die with it.
 *   - The last renewal started at t - lease_ms at the earliest, so another node calls this
 *     node's lease stale (and may start its VMs elsewhere) at t - lease_ms + lease_expiry_ms
 *     at the earliest, on its own clock.
 * The reset must come WATCHDOG_MARGIN_MS before that:
 *     timeout_ms + lease_ms + WATCHDOG_MARGIN_MS <= lease_expiry_ms.
 * The defaults (3000 ms, leases every 1000 ms expiring after 5000 ms) sit exactly at the limit.
 * A feed is only as good as what decides to feed: the loop alone running is not enough (a hung
 * volume stops renewals in the thread pool while the loop goes on), so ferryd feeds only while
 * its health check passes.
 */
/* Pure. 0, or FERR_INVALID with a message that names all three numbers and what to change. */
int watchdog_timing_check(unsigned timeout_ms, unsigned lease_ms, unsigned lease_expiry_ms,
                          struct ferr *e);

struct watchdog;

/* Whether path can be a watchdog (a character device, a regular file or a FIFO) without
 * opening it, for a start-up check before anything runs: opening a device arms it. 0, or
 * FERR_INVALID (or stat's -errno) saying what to give instead. watchdog_open checks it too. */
int watchdog_check_path(const char *path, struct ferr *e);

/*
 * Arms the watchdog at path, which fires timeout_ms (> 0) after the last feed:
 *   - a character device speaks the Linux watchdog API (<linux/watchdog.h>; softdog or a
 *     hardware driver): opening it arms it; the timeout is set in whole seconds, rounded up,
 *     and read back; a device that picked a longer one, or whose timeout cannot be read, is
 *     refused (disarmed with the magic close first; a driver loaded with nowayout=1 cannot be
 *     disarmed, and resets the host when its own timeout passes);
 *   - a regular file or a FIFO is the lab's emulated watchdog: every feed rewrites the file
 *     with one JSON line {"pid": P, "timeout_ms": T, "fed_ms": MONOTONIC-MS, "armed": true}
 *     (a FIFO gets the line appended), and something else (lab/ferry-lab _watchdog) powers the
 *     host off when fed_ms grows older than timeout_ms on CLOCK_MONOTONIC. Opening writes the
 *     first line: it is armed from then on too.
 * Anything else (a missing path, a directory, a socket) is FERR_INVALID saying what to give.
 * Returns 0 with *out, or a negative code with *out untouched and nothing left armed. The
 * descriptor is close-on-exec: QEMU and other children never hold it. *out is the caller's; it
 * is released by watchdog_disarm_close, or not at all: a watchdog never disarmed stays armed
 * until its holder exits, and after that too, which is what covers a crash.
 */
int watchdog_open(const char *path, unsigned timeout_ms, struct watchdog **out, struct ferr *e);

/* Feeds w: WDIOC_KEEPALIVE, or the emulated file rewritten with the time now. 0, or a negative
 * errno with a message naming the path; w stays armed either way. */
int watchdog_feed(struct watchdog *w, struct ferr *e);

/* Sets w's timeout (a timing profile changed, fleet/timing.h) and feeds it (so only while the
 * holder would feed it anyway): a device's in whole
 * seconds rounded up, read back (*w knows the one it has even when this fails). 0, or a
 * negative code with a message. */
int watchdog_set_timeout(struct watchdog *w, unsigned timeout_ms, struct ferr *e);

/* Disarms and frees w (NULL is ignored): the magic close ('V', then close) of a device, or
 * {"armed": false, ...} in the emulated file. Clean shutdowns only. */
void watchdog_disarm_close(struct watchdog *w);

/* What w is, for the log: "device /dev/watchdog (Software Watchdog)" or "emulated
 * /run/ferry-lab/lab/host1/watchdog". Valid until w is closed. */
const char *watchdog_describe(const struct watchdog *w);
/* The timeout w fires after, in ms: the device's own (whole seconds, never longer than asked
 * rounded up, perhaps shorter), or the one asked of the emulated watchdog. Feed well within it
 * and check the timeline with it. */
unsigned watchdog_timeout_ms(const struct watchdog *w);
/* NULL, or why w does not cover a crash of its holder: a device without the magic close stops
 * whenever it is closed, also when the kernel closes it for a process that died. */
const char *watchdog_caveat(const struct watchdog *w);

#endif
