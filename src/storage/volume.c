/* SPDX-License-Identifier: MIT */
/* One cluster shared volume as this host sees it (volume.h). */
#include "storage/volume.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "storage/lease.h"

#define ID_FILE_MAX 4096

static int copy_str(const json_t *o, const char *key, char *out, size_t size, struct ferr *e)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || !*s || strlen(s) >= size)
        return ferr_set(e, FERR_INVALID, "%s: expected a string of 1-%zu bytes", key, size - 1);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

int volume_id_parse(const char *text, char id[VOLUME_ID_MAX], char cluster[64], char name[64],
                    struct ferr *e)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return ferr_set(e, FERR_INVALID, "not a ferry volume id file (%s)",
                        o ? "not an object" : je.text);
    }
    int rc = copy_str(o, "id", id, VOLUME_ID_MAX, e);
    if (rc == 0)
        rc = copy_str(o, "cluster", cluster, 64, e);
    if (rc == 0)
        rc = copy_str(o, "name", name, 64, e);
    json_decref(o);
    return rc;
}

/* path/leaf into out; -ENAMETOOLONG. */
static int join(const char *dir, const char *leaf, char *out, size_t size, struct ferr *e)
{
    int n = snprintf(out, size, "%s/%s", dir, leaf);
    if (n < 0 || (size_t)n >= size)
        return ferr_set(e, -ENAMETOOLONG, "%s/%s: path too long", dir, leaf);
    return 0;
}

/* Reads the id file of dir: 0, -ENOENT (none) or an error with e set. */
static int read_id(const char *dir, char id[VOLUME_ID_MAX], char cluster[64], char name[64],
                   struct ferr *e)
{
    char path[PATH_MAX];
    if (join(dir, VOLUME_ID_FILE, path, sizeof(path), e) < 0)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return -ENOENT;
        return ferr_set(e, -err, "%s: %s", path, strerror(err));
    }
    char buf[ID_FILE_MAX + 1];
    ssize_t n = read(fd, buf, ID_FILE_MAX);
    int err = errno;
    close(fd);
    if (n < 0)
        return ferr_set(e, -err, "%s: %s", path, strerror(err));
    buf[n] = '\0';
    int rc = volume_id_parse(buf, id, cluster, name, e);
    if (rc < 0)
        return ferr_prefix(e, "%s", path);
    return 0;
}

/* An absolute directory path that names itself: no symlink, ".", ".." or "//" in it. */
static int check_dir(const char *dir, struct ferr *e)
{
    struct stat st;
    if (dir[0] != '/')
        return ferr_set(e, FERR_INVALID, "%s: use an absolute path", dir);
    if (stat(dir, &st) < 0)
        return ferr_set(e, FERR_NOTFOUND, "%s: %s (mount the volume there on every node first)",
                        dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ferr_set(e, FERR_INVALID, "%s: not a directory", dir);
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return ferr_set(e, -errno, "%s: %s", dir, strerror(errno));
    if (strcmp(real, dir) != 0)
        return ferr_set(e, FERR_INVALID,
                        "%s is %s: give the path without symlinks, . or .. (every node must "
                        "mean the same directory)",
                        dir, real);
    return 0;
}

static int random_id(char id[VOLUME_ID_MAX], struct ferr *e)
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return ferr_set(e, -EIO, "getrandom: %s", strerror(errno));
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(id + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* Writes text to path atomically and durably (a temp file, fsync, rename, fsync of the dir). */
static int write_durably(const char *dirpath, const char *path, const char *text, struct ferr *e)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ferr_set(e, -ENAMETOOLONG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return ferr_set(e, -errno, "%s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int err = w < 0 ? errno : (size_t)w != len ? ENOSPC : 0;
    if (!err && fsync(fd) < 0)
        err = errno;
    close(fd);
    if (!err && rename(tmp, path) < 0)
        err = errno;
    if (err) {
        unlink(tmp);
        return ferr_set(e, -err, "%s: %s", path, strerror(err));
    }
    int dfd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int volume_claim(const char *dir, const char *cluster_id, const char *name, char id[VOLUME_ID_MAX],
                 struct ferr *e)
{
    int rc = check_dir(dir, e);
    if (rc < 0)
        return rc;
    if (access(dir, W_OK) < 0)
        return ferr_set(e, -errno, "%s: not writable here: %s", dir, strerror(errno));
    char old_id[VOLUME_ID_MAX], old_cluster[64], old_name[64];
    rc = read_id(dir, old_id, old_cluster, old_name, e);
    if (rc == 0 && strcmp(old_cluster, cluster_id) != 0)
        return ferr_set(e, FERR_EXISTS,
                        "%s is volume \"%s\" of another cluster (%s): remove it there first, or "
                        "delete %s/%s if that cluster is gone",
                        dir, old_name, old_cluster, dir, VOLUME_ID_FILE);
    if (rc == 0 && strcmp(old_name, name) != 0)
        return ferr_set(e, FERR_EXISTS,
                        "%s says it is volume \"%s\" of this cluster: remove that one first "
                        "(ferry csv remove %s), or delete %s/%s if it is gone",
                        dir, old_name, old_name, dir, VOLUME_ID_FILE);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    char vdir[PATH_MAX], path[PATH_MAX];
    if (join(dir, VOLUME_DIR, vdir, sizeof(vdir), e) < 0 ||
        join(dir, VOLUME_ID_FILE, path, sizeof(path), e) < 0)
        return -ENAMETOOLONG;
    if (mkdir(vdir, 0755) < 0 && errno != EEXIST)
        return ferr_set(e, -errno, "%s: %s", vdir, strerror(errno));
    if ((rc = random_id(id, e)) < 0)
        return rc;
    json_t *o = json_pack("{ss ss ss}", "id", id, "cluster", cluster_id, "name", name);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return ferr_set(e, -ENOMEM, "out of memory");
    rc = write_durably(vdir, path, text, e);
    free(text);
    return rc;
}

int volume_release(const char *dir, const char *id, struct ferr *e)
{
    char have[VOLUME_ID_MAX], cluster[64], name[64], path[PATH_MAX], vdir[PATH_MAX];
    int rc = read_id(dir, have, cluster, name, e);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (strcmp(have, id) != 0)
        return 0; /* another volume's now: not ours to remove */
    if (join(dir, VOLUME_ID_FILE, path, sizeof(path), e) < 0 ||
        join(dir, VOLUME_DIR, vdir, sizeof(vdir), e) < 0)
        return -ENAMETOOLONG;
    if (unlink(path) < 0 && errno != ENOENT)
        return ferr_set(e, -errno, "%s: %s", path, strerror(errno));
    lease_remove_all(dir); /* after the id: lease writers stop once it is gone */
    rmdir(vdir);           /* only when empty */
    return 0;
}

static json_t *probe_answer(const char *access, const char *why, unsigned long long size,
                            unsigned long long avail)
{
    return json_pack("{ss ss sI sI}", "access", access, "why", why, "size_bytes", (json_int_t)size,
                     "free_bytes", (json_int_t)avail);
}

json_t *volume_probe(const char *dir, const char *want_id)
{
    struct ferr e = {0};
    char why[600];
    if (check_dir(dir, &e) < 0)
        return probe_answer("none", e.msg, 0, 0);
    struct statvfs vfs;
    unsigned long long size = 0, avail = 0;
    if (statvfs(dir, &vfs) == 0) {
        size = (unsigned long long)vfs.f_blocks * vfs.f_frsize;
        avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
    }
    char id[VOLUME_ID_MAX], cluster[64], name[64];
    int rc = read_id(dir, id, cluster, name, &e);
    if (rc == -ENOENT) {
        snprintf(why, sizeof(why),
                 "%s has no %s: another directory than the volume's (is it mounted here?)", dir,
                 VOLUME_ID_FILE);
        return probe_answer("none", why, size, avail);
    }
    if (rc < 0)
        return probe_answer("none", e.msg, size, avail);
    if (strcmp(id, want_id) != 0) {
        snprintf(why, sizeof(why),
                 "%s holds volume id %s (\"%s\"), not %s: another directory than the volume's "
                 "(is the right one mounted here?)",
                 dir, id, name, want_id);
        return probe_answer("none", why, size, avail);
    }
    if (access(dir, W_OK) < 0) {
        snprintf(why, sizeof(why), "%s: not writable here: %s", dir, strerror(errno));
        return probe_answer("none", why, size, avail);
    }
    return probe_answer("direct", "", size, avail);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "file")),
                  json_string_value(json_object_get(*(json_t *const *)b, "file")));
}

json_t *volume_vhds(const char *dir)
{
    json_t *arr = json_array();
    DIR *d = arr ? opendir(dir) : NULL;
    if (!d)
        return arr;
    struct dirent *de;
    size_t n = 0, cap = 0;
    json_t **items = NULL;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".vhd") != 0 || de->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
            lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            json_t **ni = realloc(items, nc * sizeof(*ni));
            if (!ni)
                break;
            items = ni;
            cap = nc;
        }
        items[n] = json_pack("{ss ss sI}", "file", de->d_name, "path", path, "size_bytes",
                             (json_int_t)st.st_size);
        if (items[n])
            n++;
    }
    closedir(d);
    qsort(items, n, sizeof(*items), cmp_file);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    free(items);
    return arr;
}
