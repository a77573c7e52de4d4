/* SPDX-License-Identifier: MIT */
/* Liveness leases on a cluster shared volume (lease.h). */
#include "storage/lease.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/volume.h"

int lease_encode(const char *node, uint64_t counter, uint64_t wall_ms, char *buf)
{
    int n = snprintf(buf, LEASE_SLOT, "{\"node\":\"%s\",\"counter\":%llu,\"wall_ms\":%llu}", node,
                     (unsigned long long)counter, (unsigned long long)wall_ms);
    if (n < 0 || n >= LEASE_SLOT - 1)
        return FERR_INVALID;
    memset(buf + n, ' ', LEASE_SLOT - 1 - (size_t)n);
    buf[LEASE_SLOT - 1] = '\n';
    return 0;
}

int lease_decode(const char *buf, size_t len, char node[64], uint64_t *counter, struct ferr *e)
{
    json_error_t je;
    json_t *o = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &je);
    const char *n = json_string_value(json_object_get(o, "node"));
    json_t *c = json_object_get(o, "counter");
    int rc = 0;
    if (!json_is_object(o) || !n || !name_valid(n, 63) || !json_is_integer(c) ||
        json_integer_value(c) < 0)
        rc = ferr_set(e, FERR_INVALID, "not a ferry lease slot");
    else {
        snprintf(node, 64, "%s", n);
        *counter = (uint64_t)json_integer_value(c);
    }
    json_decref(o);
    return rc;
}

void lease_observe(struct lease_seen *s, uint64_t counter, uint64_t now_ms)
{
    if (!s->known || counter != s->counter) {
        s->counter = counter;
        s->changed_ms = now_ms;
        s->known = true;
    }
}

uint64_t lease_age_ms(const struct lease_seen *s, uint64_t now_ms)
{
    return now_ms > s->changed_ms ? now_ms - s->changed_ms : 0;
}

bool lease_stale(const struct lease_seen *s, uint64_t now_ms, uint64_t expiry_ms)
{
    return !s->known || lease_age_ms(s, now_ms) > expiry_ms;
}

int lease_config_check(uint64_t lease_ms, uint64_t expiry_ms, struct ferr *e)
{
    if (lease_ms < LEASE_MS_MIN || lease_ms > LEASE_MS_MAX)
        return ferr_set(e, FERR_INVALID, "lease_ms: expected an integer in %d..%d", LEASE_MS_MIN,
                        LEASE_MS_MAX);
    if (expiry_ms < lease_ms * LEASE_EXPIRY_FACTOR_MIN || expiry_ms > LEASE_EXPIRY_MS_MAX)
        return ferr_set(e, FERR_INVALID,
                        "lease_expiry_ms: expected an integer in %llu..%d (at least %d renewals "
                        "of lease_ms %llu)",
                        (unsigned long long)lease_ms * LEASE_EXPIRY_FACTOR_MIN, LEASE_EXPIRY_MS_MAX,
                        LEASE_EXPIRY_FACTOR_MIN, (unsigned long long)lease_ms);
    return 0;
}

static int slot_path(const char *dir, const char *node, char *out, size_t size)
{
    int n = node ? snprintf(out, size, "%s/%s/%s", dir, LEASE_DIR, node)
                 : snprintf(out, size, "%s/%s", dir, LEASE_DIR);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int lease_write(const char *dir, const char *node, uint64_t counter, bool *direct, struct ferr *e)
{
    char path[PATH_MAX], ldir[PATH_MAX], idf[PATH_MAX];
    if (slot_path(dir, node, path, sizeof(path)) < 0 || slot_path(dir, NULL, ldir, sizeof(ldir)) ||
        snprintf(idf, sizeof(idf), "%s/%s", dir, VOLUME_ID_FILE) >= (int)sizeof(idf))
        return ferr_set(e, -ENAMETOOLONG, "%s: path too long", dir);
    /* Only on a volume: its id file is there before the leases directory is made and after
     * (a volume removed meanwhile gets nothing left behind). */
    if (access(idf, F_OK) < 0)
        return ferr_set(e, FERR_NOTFOUND, "%s: no volume id (%s)", dir, strerror(errno));
    if (mkdir(ldir, 0755) < 0 && errno != EEXIST)
        return ferr_set(e, -errno, "%s: %s", ldir, strerror(errno));
    if (access(idf, F_OK) < 0) {
        rmdir(ldir);
        return ferr_set(e, FERR_NOTFOUND, "%s: no volume id any more", dir);
    }
    void *buf = NULL;
    if (posix_memalign(&buf, LEASE_SLOT, LEASE_SLOT) != 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = lease_encode(node, counter, now_wall_ms(), buf);
    if (rc < 0) {
        free(buf);
        return ferr_set(e, rc, "lease: node name too long");
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_DSYNC;
    int fd = open(path, flags | O_DIRECT, 0644);
    *direct = fd >= 0;
    if (fd < 0 && errno == EINVAL) /* tmpfs and others without O_DIRECT */
        fd = open(path, flags, 0644);
    if (fd < 0) {
        rc = ferr_set(e, -errno, "%s: %s", path, strerror(errno));
        free(buf);
        return rc;
    }
    ssize_t w = pwrite(fd, buf, LEASE_SLOT, 0);
    int err = w < 0 ? errno : w != LEASE_SLOT ? EIO : 0;
    close(fd);
    free(buf);
    if (err)
        return ferr_set(e, -err, "%s: %s", path, strerror(err));
    return 0;
}

/* Reads one slot, bypassing the page cache where the file system allows (an NFS client
 * would otherwise serve an old copy). */
static int read_slot(const char *path, char *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT);
    if (fd < 0 && errno == EINVAL)
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, buf, LEASE_SLOT, 0);
    close(fd);
    return n < 0 ? -EIO : (int)n;
}

json_t *lease_read_all(const char *dir)
{
    json_t *out = json_object();
    char ldir[PATH_MAX];
    DIR *d = out && slot_path(dir, NULL, ldir, sizeof(ldir)) == 0 ? opendir(ldir) : NULL;
    if (!d)
        return out;
    void *buf = NULL;
    if (posix_memalign(&buf, LEASE_SLOT, LEASE_SLOT) != 0) {
        closedir(d);
        return out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[PATH_MAX], node[64];
        uint64_t counter;
        struct ferr e;
        if (de->d_name[0] == '.' || !name_valid(de->d_name, 63) ||
            snprintf(path, sizeof(path), "%s/%s", ldir, de->d_name) >= (int)sizeof(path))
            continue;
        int n = read_slot(path, buf);
        if (n <= 0 || lease_decode(buf, (size_t)n, node, &counter, &e) < 0 ||
            strcmp(node, de->d_name) != 0)
            continue;
        json_object_set_new(out, node, json_integer((json_int_t)counter));
    }
    closedir(d);
    free(buf);
    return out;
}

void lease_remove_all(const char *dir)
{
    char ldir[PATH_MAX];
    if (slot_path(dir, NULL, ldir, sizeof(ldir)) < 0)
        return;
    DIR *d = opendir(ldir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[PATH_MAX];
        if (de->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "%s/%s", ldir, de->d_name) >= (int)sizeof(path))
            continue;
        unlink(path);
    }
    closedir(d);
    rmdir(ldir);
}
