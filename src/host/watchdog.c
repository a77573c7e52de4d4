/* SPDX-License-Identifier: MIT */
/* The watchdog backstop (watchdog.h): a Linux watchdog device, or the lab's emulated file. */
#include "host/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/watchdog.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define WHAT_TO_GIVE                                                                               \
    "give a watchdog device (/dev/watchdog of a hardware driver, or of softdog: modprobe "         \
    "softdog) or, in a lab, a regular file for the emulated watchdog"

enum kind { KIND_DEVICE, KIND_FILE, KIND_FIFO };

struct watchdog {
    int fd;
    enum kind kind;
    unsigned timeout_ms; /* what it fires after */
    const char *caveat;
    char path[PATH_MAX];
    char describe[PATH_MAX + 64];
};

int watchdog_timing_check(unsigned timeout_ms, unsigned lease_ms, unsigned lease_expiry_ms,
                          struct ferr *e)
{
    uint64_t need = (uint64_t)timeout_ms + lease_ms + WATCHDOG_MARGIN_MS;
    if (need <= lease_expiry_ms)
        return 0;
    uint64_t room = (uint64_t)lease_expiry_ms > (uint64_t)lease_ms + WATCHDOG_MARGIN_MS
                        ? (uint64_t)lease_expiry_ms - lease_ms - WATCHDOG_MARGIN_MS
                        : 0;
    char fix[200];
    if (room >= WATCHDOG_TIMEOUT_MS_MIN)
        snprintf(fix, sizeof(fix),
                 "use --watchdog-timeout-ms %llu or less, or raise --lease-expiry-ms to %llu",
                 (unsigned long long)room, (unsigned long long)need);
    else
        snprintf(fix, sizeof(fix), "raise --lease-expiry-ms to %llu or more",
                 (unsigned long long)need);
    return ferr_set(e, FERR_INVALID,
                    "watchdog_timeout_ms %u is too long for lease_ms %u and lease_expiry_ms %u: "
                    "the watchdog must reset this host %d ms before another node may call its "
                    "leases stale (watchdog_timeout_ms + lease_ms + %d <= lease_expiry_ms); %s",
                    timeout_ms, lease_ms, lease_expiry_ms, WATCHDOG_MARGIN_MS, WATCHDOG_MARGIN_MS,
                    fix);
}

static const char *kind_of(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return "a directory";
    case S_IFSOCK:
        return "a socket";
    case S_IFBLK:
        return "a block device";
    default:
        return "neither a character device nor a regular file";
    }
}

/* The emulated watchdog's line, written over the file (or appended to the FIFO). */
static int emulated_write(struct watchdog *w, bool armed, struct ferr *e)
{
    char line[160];
    int n = snprintf(
        line, sizeof(line), "{\"pid\": %ld, \"timeout_ms\": %u, \"fed_ms\": %llu, \"armed\": %s}\n",
        (long)getpid(), w->timeout_ms, (unsigned long long)now_mono_ms(), armed ? "true" : "false");
    /* A reader may see the new line over the tail of a longer old one until the truncation: it
     * reads the first line only. */
    ssize_t wr =
        w->kind == KIND_FIFO ? write(w->fd, line, (size_t)n) : pwrite(w->fd, line, (size_t)n, 0);
    if (wr < 0 && w->kind == KIND_FIFO && errno == EAGAIN)
        return ferr_set(e, -EAGAIN, "watchdog %s: the FIFO is full: nothing reads it", w->path);
    if (wr < 0)
        return ferr_set(e, -errno, "watchdog %s: %s", w->path, strerror(errno));
    if (wr != n)
        return ferr_set(e, -EIO, "watchdog %s: short write (%zd of %d bytes)", w->path, wr, n);
    if (w->kind == KIND_FILE && ftruncate(w->fd, n) < 0)
        return ferr_set(e, -errno, "watchdog %s: truncate: %s", w->path, strerror(errno));
    return 0;
}

/* The magic close: 'V' tells the driver the close that follows is meant (a driver without the
 * magic close stops on any close; one with nowayout never stops). */
static void magic_close(int fd)
{
    ssize_t r = write(fd, "V", 1);
    (void)r;
    close(fd);
}

/* Sets the device's timeout and checks what it took. Opening the device armed it already (with
 * its own timeout), so the caller disarms it when this fails. *is_watchdog says whether the
 * device answered like one (only then may the caller write the magic 'V' to it). */
/* Asks the device for timeout_ms in whole seconds (rounded up, at least 1: *asked) and reads
 * back what it took (*got, 0 if unknown); the ioctls' errnos, 0 when they worked. Setting the
 * timeout also pings the watchdog on most drivers. */
static void device_timeout(struct watchdog *w, unsigned timeout_ms, int *asked, int *got,
                           int *set_err, int *get_err)
{
    *asked = (int)(((uint64_t)timeout_ms + 999) / 1000);
    if (*asked < 1)
        *asked = 1;
    int secs = *asked;
    *set_err = ioctl(w->fd, WDIOC_SETTIMEOUT, &secs) < 0 ? errno : 0;
    *got = 0;
    *get_err = ioctl(w->fd, WDIOC_GETTIMEOUT, got) < 0 ? errno : 0;
}

static int device_arm(struct watchdog *w, unsigned timeout_ms, bool *is_watchdog, struct ferr *e)
{
    struct watchdog_info info;
    memset(&info, 0, sizeof(info));
    bool have_info = ioctl(w->fd, WDIOC_GETSUPPORT, &info) == 0;
    int asked, got, set_err, get_err;
    device_timeout(w, timeout_ms, &asked, &got, &set_err, &get_err);
    *is_watchdog = have_info || !set_err || !get_err;
    if (!*is_watchdog)
        return ferr_set(e, FERR_INVALID,
                        "watchdog %s: not a watchdog device (its driver does not know the "
                        "watchdog ioctls: %s); " WHAT_TO_GIVE,
                        w->path, strerror(get_err));
    if (get_err || got <= 0)
        return ferr_set(e, get_err ? -get_err : FERR_INVALID,
                        "watchdog %s: cannot read the device's timeout (%s)%s%s", w->path,
                        get_err ? strerror(get_err) : "it says 0",
                        set_err ? "; setting it failed too: " : "",
                        set_err ? strerror(set_err) : "");
    if (got > asked)
        return ferr_set(e, FERR_INVALID,
                        "watchdog %s: the device chose a timeout of %d s for the %d s asked (%u "
                        "ms rounded up to whole seconds)%s%s; it cannot fire sooner: give "
                        "--watchdog-timeout-ms %d000 with a --lease-expiry-ms that fits it, or "
                        "another watchdog",
                        w->path, got, asked, timeout_ms, set_err ? "; setting it failed: " : "",
                        set_err ? strerror(set_err) : "", got);
    w->timeout_ms = (unsigned)got * 1000;
    char ident[sizeof(info.identity) + 1];
    memcpy(ident, info.identity, sizeof(info.identity));
    ident[sizeof(info.identity)] = '\0';
    snprintf(w->describe, sizeof(w->describe), "device %s (%s)", w->path,
             have_info && ident[0] ? ident : "identity unknown");
    if (have_info && !(info.options & WDIOF_MAGICCLOSE))
        w->caveat = "the device has no magic close, so it stops whenever it is closed, also "
                    "when the kernel closes it for a ferryd that crashed: only a hang is "
                    "covered (a driver loaded with nowayout=1 never stops)";
    /* The first feed: the timeout counts from now, not from the open. */
    return watchdog_feed(w, e);
}

/* stat of path, refused unless a character device, a regular file or a FIFO. */
static int stat_path(const char *path, struct stat *st, struct ferr *e)
{
    if (!path || !path[0])
        return ferr_set(e, FERR_INVALID, "watchdog: no path; " WHAT_TO_GIVE);
    if (strlen(path) >= PATH_MAX)
        return ferr_set(e, -ENAMETOOLONG, "watchdog: path too long");
    if (stat(path, st) < 0) {
        if (errno == ENOENT)
            return ferr_set(e, FERR_INVALID, "watchdog %s: no such file; " WHAT_TO_GIVE, path);
        return ferr_set(e, -errno, "watchdog %s: %s", path, strerror(errno));
    }
    if (!S_ISCHR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISFIFO(st->st_mode))
        return ferr_set(e, FERR_INVALID, "watchdog %s: is %s; " WHAT_TO_GIVE, path,
                        kind_of(st->st_mode));
    return 0;
}

int watchdog_check_path(const char *path, struct ferr *e)
{
    struct stat st;
    return stat_path(path, &st, e);
}

int watchdog_open(const char *path, unsigned timeout_ms, struct watchdog **out, struct ferr *e)
{
    struct stat st;
    int rc = stat_path(path, &st, e);
    if (rc < 0)
        return rc;
    if (timeout_ms == 0)
        return ferr_set(e, FERR_INVALID, "watchdog %s: a timeout of 0 ms", path);
    enum kind kind;
    int flags = O_CLOEXEC | O_NOCTTY;
    if (S_ISCHR(st.st_mode)) {
        kind = KIND_DEVICE;
        flags |= O_WRONLY;
    } else if (S_ISREG(st.st_mode)) {
        kind = KIND_FILE;
        flags |= O_WRONLY;
    } else {
        /* Read-write never waits for a reader; non-blocking never waits for room. */
        kind = KIND_FIFO;
        flags |= O_RDWR | O_NONBLOCK;
    }
    struct watchdog *w = calloc(1, sizeof(*w));
    if (!w)
        return ferr_set(e, -ENOMEM, "watchdog: out of memory");
    w->kind = kind;
    w->timeout_ms = timeout_ms;
    snprintf(w->path, sizeof(w->path), "%s", path);
    snprintf(w->describe, sizeof(w->describe), "emulated %s", path);
    w->fd = open(path, flags);
    if (w->fd < 0) {
        int err = errno;
        rc = ferr_set(e, -err, "watchdog %s: %s%s", path, strerror(err),
                      err == EBUSY ? " (another process holds it: only one may)" : "");
        goto err_after_alloc;
    }
    struct stat fst;
    if (fstat(w->fd, &fst) < 0 || (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
        rc = ferr_set(e, FERR_INVALID, "watchdog %s: replaced while it was opened", path);
        goto err_after_open;
    }
    bool is_watchdog = false;
    rc = kind == KIND_DEVICE ? device_arm(w, timeout_ms, &is_watchdog, e)
                             : emulated_write(w, true, e);
    if (rc < 0) {
        if (is_watchdog) {
            magic_close(w->fd);
            goto err_after_alloc;
        }
        goto err_after_open;
    }
    *out = w;
    return 0;

err_after_open:
    close(w->fd);
err_after_alloc:
    free(w);
    return rc;
}

int watchdog_feed(struct watchdog *w, struct ferr *e)
{
    if (w->kind != KIND_DEVICE)
        return emulated_write(w, true, e);
    if (ioctl(w->fd, WDIOC_KEEPALIVE, 0) == 0)
        return 0;
    int err = errno;
    /* A driver without WDIOF_KEEPALIVEPING: any write but 'V' is a keepalive too. */
    if (err == EOPNOTSUPP && write(w->fd, "\n", 1) == 1)
        return 0;
    return ferr_set(e, -err, "watchdog %s: keepalive: %s", w->path, strerror(err));
}

int watchdog_set_timeout(struct watchdog *w, unsigned timeout_ms, struct ferr *e)
{
    if (timeout_ms < WATCHDOG_TIMEOUT_MS_MIN || timeout_ms > WATCHDOG_TIMEOUT_MS_MAX)
        return ferr_set(e, FERR_INVALID, "watchdog timeout: expected %d..%d ms, not %u",
                        WATCHDOG_TIMEOUT_MS_MIN, WATCHDOG_TIMEOUT_MS_MAX, timeout_ms);
    if (w->kind != KIND_DEVICE) {
        w->timeout_ms = timeout_ms;
        return emulated_write(w, true, e); /* a feed: the new timeout counts from now */
    }
    int asked, got, set_err, get_err;
    device_timeout(w, timeout_ms, &asked, &got, &set_err, &get_err);
    if (get_err || got <= 0)
        return ferr_set(e, get_err ? -get_err : FERR_INVALID,
                        "watchdog %s: cannot read the device's timeout after setting "
                        "it to %d s; it keeps %u ms as far as ferryd knows",
                        w->path, asked, w->timeout_ms);
    w->timeout_ms = (unsigned)got * 1000;
    if (got > asked)
        return ferr_set(e, FERR_INVALID,
                        "watchdog %s: the device chose %d s for the %d s asked%s%s", w->path, got,
                        asked, set_err ? ": " : "", set_err ? strerror(set_err) : "");
    return watchdog_feed(w, e);
}

void watchdog_disarm_close(struct watchdog *w)
{
    if (!w)
        return;
    if (w->kind == KIND_DEVICE)
        magic_close(w->fd);
    else {
        emulated_write(w, false, NULL);
        close(w->fd);
    }
    free(w);
}

const char *watchdog_describe(const struct watchdog *w)
{
    return w->describe;
}

unsigned watchdog_timeout_ms(const struct watchdog *w)
{
    return w->timeout_ms;
}

const char *watchdog_caveat(const struct watchdog *w)
{
    return w->caveat;
}
