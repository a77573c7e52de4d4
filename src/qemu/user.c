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
    int n = QEMU_USER_GROUPS_MAX;
    if (getgrouplist(name, u->gid, u->groups, &n) < 0)
        return ferr_set(e, FERR_INVALID,
                        "qemu_user: %s is in more than %d groups; QEMU needs only its own "
                        "(and kvm where /dev/kvm is used): remove the others",
                        name, QEMU_USER_GROUPS_MAX);
    u->ngroups = n;
    return 0;
}

/* The largest FIRST..LAST: below systemd's foreign-image range (2147352576..2147418111). */
#define QEMU_UIDS_MIN 65536u
#define QEMU_UIDS_MAX 2147352575u

static bool parse_id(const char *s, const char **end, uint32_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && p - s < 10)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == s || (*p >= '0' && *p <= '9') || v > UINT32_MAX)
        return false;
    *end = p;
    *out = (uint32_t)v;
    return true;
}

int qemu_uids_parse(const char *s, uid_t *first, uint32_t *count, struct ferr *e)
{
    *first = 0;
    *count = 0;
    if (s && strcmp(s, "shared") == 0)
        return 0;
    const char *p = s ? s : "";
    uint32_t a, b;
    if (!parse_id(p, &p, &a) || *p++ != '-' || !parse_id(p, &p, &b) || *p || a > b ||
        a < QEMU_UIDS_MIN || b > QEMU_UIDS_MAX)
        return ferr_set(e, FERR_INVALID,
                        "qemu_uids: expected FIRST-LAST, %u <= FIRST <= LAST <= %u (default "
                        "%s, the same on every node), or shared (every VM's QEMU runs as "
                        "qemu_user itself)",
                        QEMU_UIDS_MIN, QEMU_UIDS_MAX, QEMU_UIDS_DEFAULT);
    *first = (uid_t)a;
    *count = b - a + 1;
    return 0;
}

int qemu_user_set_vm_uids(struct qemu_user *u, uid_t first, uint32_t count, struct ferr *e)
{
    if (!u->drop)
        return 0;
    uint64_t last = (uint64_t)first + count; /* exclusive */
    if (count && ((u->uid >= first && u->uid < last) || (u->gid >= first && u->gid < last)))
        return ferr_set(e, FERR_INVALID,
                        "qemu_uids: the range holds %s's own uid %u or gid %u; choose a range "
                        "outside it",
                        u->name, (unsigned)u->uid, (unsigned)u->gid);
    u->vm_first = first;
    u->vm_count = count;
    return 0;
}

uid_t qemu_user_vm_uid(const struct qemu_user *tmpl, const char *vm)
{
    if (!tmpl->drop)
        return 0;
    if (!tmpl->vm_count)
        return tmpl->uid;
    /* FNV-1a, 64 bits: fixed for good, as every node and every version must agree. */
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)vm; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (uid_t)(tmpl->vm_first + (uid_t)(h % tmpl->vm_count));
}

void qemu_user_for_vm(const struct qemu_user *tmpl, const char *vm, struct qemu_user *out)
{
    *out = *tmpl;
    if (!tmpl->drop || !tmpl->vm_count)
        return;
    out->uid = out->gid = qemu_user_vm_uid(tmpl, vm);
    snprintf(out->name, sizeof(out->name), "VM %.60s's QEMU user", vm);
}

int qemu_user_of_pid(int pid, struct qemu_user *out, struct ferr *e)
{
    *out = (struct qemu_user){0};
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return ferr_set(e, -errno, "%s: %s", path, strerror(errno));
    bool uid = false, gid = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long v;
        if (sscanf(line, "Uid: %lu", &v) == 1) {
            out->uid = (uid_t)v;
            uid = true;
        } else if (sscanf(line, "Gid: %lu", &v) == 1) {
            out->gid = (gid_t)v;
            gid = true;
        } else if (strncmp(line, "Groups:", 7) == 0) {
            char *p = line + 7, *end;
            while (out->ngroups < QEMU_USER_GROUPS_MAX && (v = strtoul(p, &end, 10), end != p)) {
                out->groups[out->ngroups++] = (gid_t)v;
                p = end;
            }
        }
    }
    fclose(f);
    if (!uid || !gid)
        return ferr_set(e, -EIO, "%s: no Uid or Gid line", path);
    out->drop = out->uid != 0;
    snprintf(out->name, sizeof(out->name), "QEMU pid %d's user", pid);
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

int qemu_user_give_file(const struct qemu_user *u, const char *path, struct ferr *e)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return ferr_set(e, -errno, "%s: %s", path, strerror(errno));
    return qemu_user_give(u, real, 0600, e);
}

/* The permission bits (rwx, 0..7) that apply to the user on a file of status st. */
static unsigned bits_for(const struct qemu_user *u, const struct stat *st)
{
    if (st->st_uid == u->uid)
        return (st->st_mode >> 6) & 7;
    if (st->st_gid == u->gid)
        return (st->st_mode >> 3) & 7;
    for (int i = 0; i < u->ngroups; i++)
        if (u->groups[i] == st->st_gid)
            return (st->st_mode >> 3) & 7;
    return st->st_mode & 7;
}

bool qemu_user_may_rw(const struct qemu_user *u, const char *path)
{
    if (!u || !u->drop)
        return true;
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    return (bits_for(u, &st) & 6) == 6;
}

int qemu_user_check_reach(const struct qemu_user *u, const char *dir, struct ferr *e)
{
    if (!u || !u->drop)
        return 0;
    char path[PATH_MAX];
    if (!realpath(dir, path))
        return ferr_set(e, -errno, "%s: %s", dir, strerror(errno));
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
        if (!(bits_for(u, &st) & 1))
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
