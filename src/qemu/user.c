/* SPDX-License-Identifier: MIT */
/* The QEMU user: looked up, given files, checked that it can reach a directory. */
#include "qemu/user.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

int qemu_user_lookup(const char *name, struct qemu_user *u, struct ferr *e)
{
    *u = (struct qemu_user){0};
    size_t len = name ? strnlen(name, QEMU_USER_NAME_MAX + 1) : 0;
    if (len == 0 || len > QEMU_USER_NAME_MAX || name[0] == '-' || strchr(name, ':') ||
        strchr(name, '/'))
        return ferr_set(e, FERR_INVALID,
                        "qemu_user: expected a user name of 1..%d characters (default %s, or "
                        "root to run QEMU as root)",
                        QEMU_USER_NAME_MAX, QEMU_USER_DEFAULT);
    snprintf(u->name, sizeof(u->name), "%s", name);
    struct passwd pw, *res = NULL;
    char buf[4096];
    int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
    if (!res)
        return ferr_set(e, FERR_NOTFOUND,
                        "qemu_user: this host has no user \"%s\"%s%s: create it (the ferry "
                        "package does; by hand: adduser --system --group --no-create-home "
                        "--home /nonexistent %s), or set qemu_user to root to run QEMU as root",
                        name, rc ? ": " : "", rc ? strerror(rc) : "", name);
    u->uid = pw.pw_uid;
    u->gid = pw.pw_gid;
    u->drop = pw.pw_uid != 0;
    return 0;
}

int qemu_user_give(const struct qemu_user *u, const char *path, unsigned mode, struct ferr *e)
{
    if (!u || !u->drop)
        return 0;
    /* O_PATH | O_NOFOLLOW pins the very file (a socket too) so that its owner and mode are
     * changed on what was checked, not on whatever the name points to a moment later. */
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "give %s to %s: %s", path, u->name, strerror(errno));
    struct stat st;
    int rc = 0;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (fstat(fd, &st) < 0) {
        rc = ferr_set(e, -errno, "give %s to %s: %s", path, u->name, strerror(errno));
    } else if (S_ISLNK(st.st_mode)) {
        rc = ferr_set(e, -ELOOP, "give %s to %s: it is a symbolic link, not a file", path, u->name);
    } else if (st.st_uid == u->uid && st.st_gid == u->gid && (st.st_mode & 07777) == mode) {
        rc = 0;
    } else if (fchownat(fd, "", u->uid, u->gid, AT_EMPTY_PATH) < 0) {
        rc = ferr_set(e, -errno,
                      "give %s to %s (uid %u): chown: %s: QEMU runs as that user and must "
                      "open it; make it theirs (on a network volume that squashes root: on the "
                      "server), or set ferryd's qemu_user to root",
                      path, u->name, (unsigned)u->uid, strerror(errno));
    } else if (!S_ISSOCK(st.st_mode) && chmod(proc, mode) < 0) {
        /* chmod through the descriptor's /proc link: fchmod refuses an O_PATH descriptor. A
         * socket's mode is left as bind made it: its owner is what lets QEMU connect. */
        rc = ferr_set(e, -errno, "give %s to %s: chmod: %s", path, u->name, strerror(errno));
    }
    close(fd);
    return rc;
}

/* The permission bits (rwx, 0..7) that apply to the user on a file of status st. */
static unsigned bits_for(const struct qemu_user *u, const gid_t *groups, int ngroups,
                         const struct stat *st)
{
    if (st->st_uid == u->uid)
        return (st->st_mode >> 6) & 7;
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == st->st_gid)
            return (st->st_mode >> 3) & 7;
    return st->st_mode & 7;
}

static int user_groups(const struct qemu_user *u, gid_t *groups, int max)
{
    int n = max;
    if (getgrouplist(u->name, u->gid, groups, &n) < 0) {
        groups[0] = u->gid;
        n = 1;
    }
    return n;
}

bool qemu_user_may_rw(const struct qemu_user *u, const char *path)
{
    if (!u || !u->drop)
        return true;
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    gid_t groups[64];
    int n = user_groups(u, groups, (int)ARRAY_SIZE(groups));
    return (bits_for(u, groups, n, &st) & 6) == 6;
}

int qemu_user_check_reach(const struct qemu_user *u, const char *dir, struct ferr *e)
{
    if (!u || !u->drop)
        return 0;
    char path[PATH_MAX];
    if (!realpath(dir, path))
        return ferr_set(e, -errno, "%s: %s", dir, strerror(errno));
    gid_t groups[64];
    int ngroups = user_groups(u, groups, (int)ARRAY_SIZE(groups));
    size_t len = strlen(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char save = path[i];
        path[i] = '\0';
        struct stat st;
        if (stat(path, &st) < 0) {
            int rc = ferr_set(e, -errno, "%s: %s", path, strerror(errno));
            return rc;
        }
        if (!(bits_for(u, groups, ngroups, &st) & 1))
            return ferr_set(e, FERR_STATE,
                            "QEMU's user %s cannot pass %s (mode %04o, owner %u:%u) on the way "
                            "to %s: give others search permission (chmod o+x %s), or choose "
                            "another directory",
                            u->name, path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                            (unsigned)st.st_gid, dir, path);
        path[i] = save;
    }
    return 0;
}
