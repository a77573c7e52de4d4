/* SPDX-License-Identifier: MIT */
/* The EFI firmware of a VM (firmware.h): OVMF found on this host, the variable store made. */
#include "vm/firmware.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define VARS_MAX (16u << 20) /* far above any OVMF variable store (540 KiB for the 4M build) */

/* dir/leaf, a readable regular file: 0 and its size. */
static int ovmf_file(const char *dir, const char *leaf, char *path, size_t size, off_t *bytes,
                     struct ferr *e)
{
    struct stat st;
    if (fmt_path(path, size, "%s/%s", dir, leaf) < 0)
        return ferr_set(e, FERR_INVALID, "firmware efi: %s/%s: path too long", dir, leaf);
    const char *why = stat(path, &st) < 0      ? strerror(errno)
                      : !S_ISREG(st.st_mode)   ? "not a regular file"
                      : access(path, R_OK) < 0 ? strerror(errno)
                                               : NULL;
    if (why)
        return ferr_set(e, FERR_UNAVAIL,
                        "firmware efi: this host has no OVMF (%s: %s): install Debian's %s "
                        "package (apt-get install %s)",
                        path, why, FIRMWARE_PACKAGE, FIRMWARE_PACKAGE);
    *bytes = st.st_size;
    return 0;
}

int firmware_find(const char *dir, char *code, size_t size, struct ferr *e)
{
    char vars[1100];
    off_t n;
    int rc = ovmf_file(dir, FIRMWARE_CODE, code, size, &n, e);
    if (rc == 0)
        rc = ovmf_file(dir, FIRMWARE_VARS, vars, sizeof(vars), &n, e);
    return rc;
}

/* Writes len bytes of data to a new file tmp (mode 0600) and syncs it. */
static int write_new(const char *tmp, const char *data, size_t len, struct ferr *e)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return ferr_set(e, -errno, "efi_vars: create %s: %s", tmp, strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return ferr_set(e, -err, "efi_vars: write %s: %s", tmp, strerror(err));
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int err = errno;
        unlink(tmp);
        return ferr_set(e, -err, "efi_vars: sync %s: %s", tmp, strerror(err));
    }
    return 0;
}

int firmware_vars_ready(const char *dir, const char *vars, bool create, bool *made, struct ferr *e)
{
    char tmpl[1100], tmp[1100];
    off_t want;
    struct stat st;
    *made = false;
    int rc = ovmf_file(dir, FIRMWARE_VARS, tmpl, sizeof(tmpl), &want, e);
    if (rc < 0)
        return rc;
    if (lstat(vars, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return ferr_set(e, FERR_INVALID,
                            "efi_vars: %s is not a regular file (the VM's EFI variable store)",
                            vars);
        if (st.st_size != want)
            return ferr_set(e, FERR_INVALID,
                            "efi_vars: %s is %lld bytes, but an %s variable store is %lld (another "
                            "firmware's? move it away and the VM starts with fresh variables)",
                            vars, (long long)st.st_size, FIRMWARE_VARS, (long long)want);
        if (access(vars, R_OK | W_OK) < 0)
            return ferr_set(e, -errno, "efi_vars: %s: %s", vars, strerror(errno));
        return 0;
    }
    if (errno != ENOENT)
        return ferr_set(e, -errno, "efi_vars: %s: %s", vars, strerror(errno));
    if (!create)
        return ferr_set(e, FERR_NOTFOUND,
                        "efi_vars: %s does not exist here: this node does not see the volume "
                        "the VM's EFI variables are on",
                        vars);
    char *data = NULL;
    size_t len = 0;
    if ((rc = file_read_all(tmpl, VARS_MAX, &data, &len, e)) < 0)
        return ferr_prefix(e, "efi_vars: the template");
    if (fmt_path(tmp, sizeof(tmp), "%s.tmp.%d", vars, (int)getpid()) < 0) {
        free(data);
        return ferr_set(e, FERR_INVALID, "efi_vars: %s: path too long", vars);
    }
    unlink(tmp); /* a leftover of this pid's crashed predecessor */
    rc = write_new(tmp, data, len, e);
    free(data);
    if (rc < 0)
        return rc;
    /* link, not rename: a store another node made meanwhile is kept, never replaced */
    int linked = link(tmp, vars), err = linked < 0 ? errno : 0;
    unlink(tmp);
    if (linked < 0 && err != EEXIST)
        return ferr_set(e, -err, "efi_vars: create %s: %s", vars, strerror(err));
    *made = linked == 0;
    return 0;
}
