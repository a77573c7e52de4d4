/* SPDX-License-Identifier: MIT */
/* A VM's serial console: bounded ring in memory with byte offsets, mirrored to a rotated file. */
#include "vm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct console {
    char path[4096];
    size_t file_max;
    char *ring;
    size_t cap;
    uint64_t end; /* logical offset after the newest byte; oldest kept = end - min(end, cap) */
};

static void ring_put(struct console *c, const char *data, size_t len)
{
    if (len > c->cap) {
        data += len - c->cap;
        c->end += len - c->cap;
        len = c->cap;
    }
    size_t pos = (size_t)(c->end % c->cap);
    size_t first = c->cap - pos < len ? c->cap - pos : len;
    memcpy(c->ring + pos, data, first);
    memcpy(c->ring, data + first, len - first);
    c->end += len;
}

int console_open(const char *path, size_t ring_bytes, size_t file_max, struct console **out,
                 struct ferr *e)
{
    if (ring_bytes == 0) /* console_start and console_read divide by it */
        return ferr_set(e, FERR_INVALID, "console: the ring must hold at least one byte");
    struct console *c = calloc(1, sizeof(*c));
    if (!c)
        return ferr_set(e, -ENOMEM, "console: out of memory");
    c->ring = malloc(ring_bytes);
    if (!c->ring) {
        free(c);
        return ferr_set(e, -ENOMEM, "console: out of memory");
    }
    if (fmt_path(c->path, sizeof(c->path), "%s", path) < 0) {
        free(c->ring);
        free(c);
        return ferr_set(e, -ENAMETOOLONG, "console: path too long: %s", path);
    }
    c->cap = ring_bytes;
    c->file_max = file_max;
    /* Reload the tail of the previous log so `console` shows the boot after a ferryd restart. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            off_t from = st.st_size > (off_t)ring_bytes ? st.st_size - (off_t)ring_bytes : 0;
            size_t n = (size_t)(st.st_size - from);
            char *buf = malloc(n);
            ssize_t r = buf ? pread(fd, buf, n, from) : -1;
            if (r > 0) {
                c->end = (uint64_t)from;
                ring_put(c, buf, (size_t)r);
            }
            free(buf);
        }
        close(fd);
    }
    *out = c;
    return 0;
}

void console_close(struct console *c)
{
    if (!c)
        return;
    free(c->ring);
    free(c);
}

void console_append(struct console *c, const char *data, size_t len)
{
    if (len == 0)
        return;
    ring_put(c, data, len);
    struct stat st;
    if (stat(c->path, &st) == 0 && (size_t)st.st_size + len > c->file_max) {
        char old[4200];
        snprintf(old, sizeof(old), "%s.1", c->path);
        rename(c->path, old);
    }
    int fd = open(c->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("console: cannot append to %s: %s", c->path, strerror(errno));
        return;
    }
    if (write(fd, data, len) < 0)
        log_warn("console: write %s: %s", c->path, strerror(errno));
    close(fd);
}

uint64_t console_start(const struct console *c)
{
    return c->end > c->cap ? c->end - c->cap : 0;
}

uint64_t console_end(const struct console *c)
{
    return c->end;
}

int console_read(const struct console *c, uint64_t offset, size_t max, char **out, size_t *len,
                 uint64_t *from)
{
    uint64_t start = console_start(c);
    if (offset < start)
        offset = start;
    if (offset > c->end)
        offset = c->end;
    size_t n = (size_t)(c->end - offset);
    if (n > max)
        n = max;
    char *buf = malloc(n + 1);
    if (!buf)
        return -ENOMEM;
    size_t pos = (size_t)(offset % c->cap);
    size_t first = c->cap - pos < n ? c->cap - pos : n;
    memcpy(buf, c->ring + pos, first);
    memcpy(buf + first, c->ring, n - first);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    *from = offset;
    return 0;
}
