/* SPDX-License-Identifier: MIT */
/* VHD files on disk: checked with vhd_check through pread, created, converted and described with
 * qemu-img (run without a shell). */
#include "storage/vhd.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/run.h"

#define MIB (1024ull * 1024)

/* Paths go to qemu-img as its filename argument: an absolute path can never be taken for a
 * protocol prefix ("nbd:", "json:") or an option. */
static int check_path(const char *path, struct ferr *e)
{
    if (!path || path[0] != '/')
        return ferr_set(e, FERR_INVALID, "vhd: %s is not an absolute path", path ? path : "(null)");
    if (strlen(path) >= PATH_MAX)
        return ferr_set(e, FERR_INVALID, "vhd: path is longer than %d bytes", PATH_MAX - 1);
    return 0;
}

static bool subformat_ok(const char *subformat)
{
    return subformat && (strcmp(subformat, "fixed") == 0 || strcmp(subformat, "dynamic") == 0);
}

static const char *qemu_img_or_default(const char *qemu_img)
{
    return qemu_img ? qemu_img : "qemu-img";
}

/* ---- checking a file ---- */

struct file_reader {
    int fd;
};

static int file_read(void *ctx, uint64_t offset, void *buf, size_t len, struct ferr *e)
{
    struct file_reader *r = ctx;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(r->fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferr_set(e, -errno, "%s", strerror(errno));
        if (n == 0)
            return ferr_set(e, -EIO, "short read (the file shrank?)");
        done += (size_t)n;
    }
    return 0;
}

int vhd_check_file(const char *path, struct vhd_layout *out, struct ferr *e)
{
    int rc;
    if ((rc = check_path(path, e)) < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ferr_set(e, -ENOENT, "vhd: %s does not exist", path);
        return ferr_set(e, -errno, "vhd: open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = ferr_set(e, -errno, "vhd: stat %s: %s", path, strerror(errno));
        goto after_open;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ferr_set(e, FERR_INVALID, "vhd: %s is not a regular file", path);
        goto after_open;
    }
    struct file_reader r = {fd};
    rc = vhd_check(path, (uint64_t)st.st_size, file_read, &r, out, e);
after_open:
    close(fd);
    return rc;
}

/* ---- creating ---- */

/* The directory of path exists (FERR_INVALID otherwise, naming it); dir gets its name. */
static int check_dir(const char *path, char dir[PATH_MAX], struct ferr *e)
{
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0';
    struct stat st;
    if (stat(dir, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ferr_set(e, FERR_INVALID, "vhd: directory %s does not exist", dir);
        return ferr_set(e, -errno, "vhd: stat %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return ferr_set(e, FERR_INVALID, "vhd: %s is not a directory", dir);
    return 0;
}

/* After qemu-img made path: it passes vhd_check and has the size asked for. */
static int check_made(const char *path, uint64_t size, struct ferr *e)
{
    struct vhd_layout l;
    int rc = vhd_check_file(path, &l, e);
    if (rc == FERR_INVALID) {
        /* Not the file's fault: qemu-img wrote it just now. */
        if (e)
            e->code = FERR_QEMU;
        ferr_prefix(e, "vhd: qemu-img made %s, but it fails ferry's check", path);
        return FERR_QEMU;
    }
    if (rc < 0)
        return rc;
    if (l.current_size != size)
        return ferr_set(e, FERR_QEMU,
                        "vhd: qemu-img made %s with a disk size of %llu bytes, expected %llu", path,
                        (unsigned long long)l.current_size, (unsigned long long)size);
    return 0;
}

/* A fixed VHD owns its space from the start, as its name promises: qemu-img leaves it sparse,
 * and a guest writing into a full volume would get I/O errors much later. fallocate(2)
 * without the zero-writing fallback of posix_fallocate: where the file system cannot
 * reserve (EOPNOTSUPP: some NFS servers), the file stays sparse rather than taking minutes. */
static int reserve(const char *path, uint64_t bytes, uint64_t size_mib, struct ferr *e)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "vhd: open %s: %s", path, strerror(errno));
    int rc = 0;
    if (fallocate(fd, 0, 0, (off_t)bytes) < 0) {
        if (errno == ENOSPC || errno == EDQUOT)
            rc = ferr_set(e, FERR_LIMIT,
                          "vhd: %s: no room for a fixed VHD of %llu MiB (%s); free space there "
                          "or put the disk elsewhere",
                          path, (unsigned long long)size_mib, strerror(errno));
        else if (errno != EOPNOTSUPP && errno != ENOSYS)
            rc = ferr_set(e, -errno, "vhd: reserve %s: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

int vhd_create(const char *qemu_img, const char *path, const char *subformat, uint64_t size_mib,
               struct ferr *e)
{
    int rc;
    if ((rc = check_path(path, e)) < 0)
        return rc;
    if (!subformat_ok(subformat))
        return ferr_set(e, FERR_INVALID, "vhd: type %s is neither fixed nor dynamic",
                        subformat ? subformat : "(null)");
    if (size_mib < 1 || size_mib > VHD_MAX_SIZE_MIB)
        return ferr_set(e, FERR_INVALID, "vhd: size %llu MiB is out of range 1..%llu",
                        (unsigned long long)size_mib, (unsigned long long)VHD_MAX_SIZE_MIB);
    char dir[PATH_MAX];
    if ((rc = check_dir(path, dir, e)) < 0)
        return rc;

    /* Claim the name with O_EXCL before qemu-img runs: qemu-img would silently overwrite a
     * file that appeared between a check and its start. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return ferr_set(e, FERR_EXISTS, "vhd: %s already exists", path);
        return ferr_set(e, -errno, "vhd: create %s: %s", path, strerror(errno));
    }
    close(fd);

    char size_arg[32], opts[64];
    snprintf(size_arg, sizeof(size_arg), "%lluM", (unsigned long long)size_mib);
    snprintf(opts, sizeof(opts), "subformat=%s,force_size=on", subformat);
    char *argv[] = {(char *)qemu_img_or_default(qemu_img),
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    opts,
                    (char *)path,
                    size_arg,
                    NULL};
    struct run r;
    if ((rc = run(argv, &r, e)) < 0) {
        ferr_prefix(e, "vhd: create %s", path);
        goto err_after_claim;
    }
    char buf[64];
    if (!run_ok(&r)) {
        rc = ferr_set(e, FERR_QEMU, "vhd: qemu-img create %s failed: %s", path,
                      run_why(&r, buf, sizeof(buf)));
        run_free(&r);
        goto err_after_claim;
    }
    run_free(&r);

    struct stat st;
    if (stat(path, &st) < 0) {
        rc = ferr_set(e, -errno, "vhd: stat %s after qemu-img create: %s", path, strerror(errno));
        goto err_after_claim;
    }
    uint64_t want = size_mib * MIB + VHD_FOOTER_SIZE;
    if (strcmp(subformat, "fixed") == 0 && (uint64_t)st.st_size != want) {
        rc = ferr_set(e, FERR_QEMU, "vhd: qemu-img created %s with %lld bytes, expected %llu", path,
                      (long long)st.st_size, (unsigned long long)want);
        goto err_after_claim;
    }
    if ((rc = check_made(path, size_mib * MIB, e)) < 0)
        goto err_after_claim;
    if (strcmp(subformat, "fixed") == 0 && (rc = reserve(path, want, size_mib, e)) < 0)
        goto err_after_claim;
    return 0;

err_after_claim:
    unlink(path);
    return rc;
}

/* ---- growing and deleting ---- */

/* QEMU's image locks (block/file-posix.c) are OFD locks, one byte per permission: from 100 the
 * permissions a user holds, from 200 those it does not share (bit 1 is write, bit 3 resize).
 * ferry takes shared locks on "write and resize not shared", so no QEMU can open the file for
 * writing while it works (qemu-img reading it still can), then asks whether anybody else holds
 * any of the bytes: a QEMU that has the file open. */
static int lock_out_writers(int fd, const char *path, struct ferr *e)
{
    static const off_t unshared[] = {201, 203};
    for (size_t i = 0; i < sizeof(unshared) / sizeof(unshared[0]); i++) {
        struct flock fl = {
            .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = unshared[i], .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0 && errno != EAGAIN && errno != EACCES)
            return ferr_set(e, -errno, "vhd: lock %s: %s", path, strerror(errno));
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 200};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return ferr_set(e, -errno, "vhd: lock %s: %s", path, strerror(errno));
    if (fl.l_type != F_UNLCK)
        return ferr_set(e, FERR_STATE,
                        "vhd: %s is in use by a QEMU (it holds the image's lock): stop the VM "
                        "using it first",
                        path);
    return 0;
}

static int grow_fixed(int fd, const char *path, uint64_t old, uint64_t want, struct ferr *e)
{
    uint8_t foot[VHD_FOOTER_SIZE], zero[VHD_FOOTER_SIZE] = {0};
    if (pread(fd, foot, sizeof(foot), (off_t)old) != (ssize_t)sizeof(foot))
        return ferr_set(e, -EIO, "vhd: read the footer of %s: %s", path, strerror(errno));
    int rc = vhd_footer_resize(foot, want, e);
    if (rc < 0)
        return rc;
    if (fallocate(fd, 0, 0, (off_t)(want + VHD_FOOTER_SIZE)) < 0) {
        int err = errno;
        if (err == EOPNOTSUPP || err == ENOSYS) {
            if (ftruncate(fd, (off_t)(want + VHD_FOOTER_SIZE)) < 0)
                return ferr_set(e, -errno, "vhd: extend %s: %s", path, strerror(errno));
        } else {
            /* back to its size: the old footer was not touched */
            (void)!ftruncate(fd, (off_t)(old + VHD_FOOTER_SIZE));
            if (err == ENOSPC || err == EDQUOT)
                return ferr_set(e, FERR_LIMIT,
                                "vhd: %s: no room to grow it to %llu MiB (%s); free space "
                                "there first",
                                path, (unsigned long long)(want / MIB), strerror(err));
            return ferr_set(e, -err, "vhd: extend %s: %s", path, strerror(err));
        }
    }
    /* the new footer first: until the old one is zeroed the file is a valid VHD of the new
     * size whose new part holds the old footer's bytes */
    if (pwrite(fd, foot, sizeof(foot), (off_t)want) != (ssize_t)sizeof(foot) || fdatasync(fd) < 0 ||
        pwrite(fd, zero, sizeof(zero), (off_t)old) != (ssize_t)sizeof(zero) || fdatasync(fd) < 0)
        return ferr_set(e, -EIO, "vhd: write %s: %s", path, strerror(errno));
    return 0;
}

static int grow_dynamic(const char *qemu_img, const char *path, uint64_t size_mib, struct ferr *e)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    int rc = check_dir(path, dir, e);
    if (rc < 0)
        return rc;
    const char *base = strrchr(path, '/') + 1;
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.ferry-XXXXXX", strcmp(dir, "/") ? dir : "", base) >=
        (int)sizeof(tmp))
        return ferr_set(e, FERR_INVALID, "vhd: grow: %s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return ferr_set(e, -errno, "vhd: grow: create a file in %s: %s", dir, strerror(errno));
    close(fd);
    char size_arg[32];
    snprintf(size_arg, sizeof(size_arg), "%lluM", (unsigned long long)size_mib);
    const char *img = qemu_img_or_default(qemu_img);
    char *create[] = {
        (char *)img, "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on",
        tmp,         size_arg, NULL};
    /* the copy is zero where nothing was written, so only the blocks the guest wrote are
     * copied */
    char *copy[] = {(char *)img, "convert",    "-q", "-n", "--target-is-zero", "-f", "vpc", "-O",
                    "vpc",       (char *)path, tmp,  NULL};
    char *const *steps[] = {create, copy};
    for (size_t i = 0; i < 2; i++) {
        struct run r;
        char buf[64];
        if ((rc = run((char **)steps[i], &r, e)) < 0) {
            ferr_prefix(e, "vhd: grow %s", path);
            goto fail;
        }
        if (!run_ok(&r)) {
            rc = ferr_set(e, FERR_QEMU, "vhd: grow %s: qemu-img %s failed: %s", path, steps[i][1],
                          run_why(&r, buf, sizeof(buf)));
            run_free(&r);
            goto fail;
        }
        run_free(&r);
    }
    if ((rc = check_made(tmp, size_mib * MIB, e)) < 0)
        goto fail;
    if ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0 || fsync(fd) < 0) {
        rc = ferr_set(e, -errno, "vhd: grow: sync %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        rc = ferr_set(e, -errno, "vhd: grow: rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
fail:
    unlink(tmp);
    return rc;
}

int vhd_grow(const char *qemu_img, const char *path, uint64_t size_mib, struct ferr *e)
{
    struct vhd_layout lay;
    int rc;
    if ((rc = check_path(path, e)) < 0 || (rc = vhd_check_file(path, &lay, e)) < 0)
        return rc;
    if (size_mib < 1 || size_mib > VHD_MAX_SIZE_MIB)
        return ferr_set(e, FERR_INVALID, "vhd: size %llu MiB is out of range 1..%llu",
                        (unsigned long long)size_mib, (unsigned long long)VHD_MAX_SIZE_MIB);
    if (size_mib * MIB <= lay.current_size)
        return ferr_set(e, FERR_INVALID,
                        "vhd: %s is %llu MiB already: a disk only grows (asked %llu MiB)", path,
                        (unsigned long long)(lay.current_size / MIB), (unsigned long long)size_mib);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "vhd: open %s: %s", path, strerror(errno));
    if ((rc = lock_out_writers(fd, path, e)) == 0)
        rc = strcmp(lay.subformat, "fixed") == 0
                 ? grow_fixed(fd, path, lay.current_size, size_mib * MIB, e)
                 : grow_dynamic(qemu_img, path, size_mib, e);
    close(fd);
    if (rc == 0)
        rc = vhd_check_file(path, NULL, e);
    return rc;
}

int vhd_delete(const char *path, struct ferr *e)
{
    int rc;
    if ((rc = check_path(path, e)) < 0 || (rc = vhd_check_file(path, NULL, e)) < 0)
        return rc;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "vhd: open %s: %s", path, strerror(errno));
    if ((rc = lock_out_writers(fd, path, e)) == 0 && unlink(path) < 0)
        rc = ferr_set(e, -errno, "vhd: delete %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* ---- converting ---- */

static bool source_format_ok(const char *f)
{
    static const char *const ok[] = {"raw", "qcow2", "vmdk", "vhdx", "vpc"};
    for (size_t i = 0; f && i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(f, ok[i]) == 0)
            return true;
    return false;
}

/* The other file a detected image refers to (it must not be read unasked), or NULL. */
static const char *other_file(const json_t *root, const char *src)
{
    const char *s = json_string_value(json_object_get(root, "backing-filename"));
    if (s)
        return s;
    const json_t *data = json_object_get(json_object_get(root, "format-specific"), "data");
    if ((s = json_string_value(json_object_get(data, "data-file"))))
        return s;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(data, "extents"), i, x)
    {
        s = json_string_value(json_object_get(x, "filename"));
        if (s && strcmp(s, src) != 0)
            return s;
    }
    return NULL;
}

int vhd_source_parse(const char *json_text, const char *src, int explicit, char format[16],
                     uint64_t *virtual_size, struct ferr *e)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    int rc;
    if (!root)
        return ferr_set(e, FERR_PROTO, "qemu-img info: bad JSON: %s (line %d)", jerr.text,
                        jerr.line);
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *vs = json_object_get(root, "virtual-size");
    if (!json_is_object(root) || !fmt || !json_is_integer(vs) || json_integer_value(vs) < 0) {
        rc = ferr_set(e, FERR_PROTO, "qemu-img info: \"format\" or \"virtual-size\" missing");
        goto after_parse;
    }
    if (!source_format_ok(fmt)) {
        rc = ferr_set(e, FERR_INVALID,
                      "vhd: convert %s: it is a %.40s image; ferry converts " VHD_SOURCE_FORMATS
                      " images (convert it to one of them with qemu-img first)",
                      src, fmt);
        goto after_parse;
    }
    const char *other = explicit ? NULL : other_file(root, src);
    if (other) {
        rc = ferr_set(e, FERR_INVALID,
                      "vhd: convert %s: qemu-img takes it for a %s image that refers to %.300s; "
                      "a raw image whose first bytes look like that would make qemu-img read "
                      "another file, so ferry does not guess: if it is a %s image, name its "
                      "format (--from %s); if it is a raw image, --from raw",
                      src, fmt, other, fmt, fmt);
        goto after_parse;
    }
    uint64_t size = (uint64_t)json_integer_value(vs);
    if (size == 0 || size % 512 != 0) {
        rc = ferr_set(e, FERR_INVALID,
                      "vhd: convert %s: its virtual size of %llu bytes is not a positive multiple "
                      "of 512, and a VHD holds whole 512-byte sectors: grow it to one first "
                      "(qemu-img resize)",
                      src, (unsigned long long)size);
        goto after_parse;
    }
    if (size > VHD_MAX_SIZE) {
        rc = ferr_set(e, FERR_INVALID,
                      "vhd: convert %s: its virtual size of %llu bytes is over VHD's limit of "
                      "2040 GiB (%llu bytes): keep the data on smaller disks",
                      src, (unsigned long long)size, (unsigned long long)VHD_MAX_SIZE);
        goto after_parse;
    }
    snprintf(format, 16, "%s", fmt);
    *virtual_size = size;
    rc = 0;
after_parse:
    json_decref(root);
    return rc;
}

/* The file ends in a VHD footer cookie: qemu-img's probe calls a fixed VHD "raw" (it has no
 * header), and converting it as raw would carry the footer into the data. */
static bool ends_in_vhd_footer(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    char cookie[8];
    bool yes = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= VHD_FOOTER_SIZE &&
               pread(fd, cookie, 8, st.st_size - VHD_FOOTER_SIZE) == 8 &&
               memcmp(cookie, "conectix", 8) == 0;
    close(fd);
    return yes;
}

/* qemu-img info on the source: its format and virtual size, or a refusal. */
static int probe_source(const char *qemu_img, const char *src, const char *src_format,
                        char format[16], uint64_t *size, struct ferr *e)
{
    char *argv[8];
    int n = 0;
    argv[n++] = (char *)qemu_img_or_default(qemu_img);
    argv[n++] = "info";
    argv[n++] = "-U"; /* only reads; a VM that uses it makes the conversion itself fail */
    argv[n++] = "--output=json";
    if (src_format) {
        argv[n++] = "-f";
        argv[n++] = (char *)src_format;
    }
    argv[n++] = (char *)src;
    argv[n] = NULL;
    struct run r;
    int rc = run(argv, &r, e);
    if (rc < 0) {
        ferr_prefix(e, "vhd: convert %s", src);
        return rc;
    }
    char buf[64];
    if (!run_ok(&r))
        rc = ferr_set(e, FERR_INVALID, "vhd: convert %s: qemu-img cannot read it%s%s: %s", src,
                      src_format ? " as " : "", src_format ? src_format : "",
                      run_why(&r, buf, sizeof(buf)));
    else
        rc = vhd_source_parse(r.out, src, src_format != NULL, format, size, e);
    run_free(&r);
    return rc;
}

int vhd_convert(const char *qemu_img, const char *src, const char *src_format, const char *dst,
                const char *subformat, struct ferr *e)
{
    int rc;
    if ((rc = check_path(src, e)) < 0 || (rc = check_path(dst, e)) < 0)
        return rc;
    if (!subformat_ok(subformat))
        return ferr_set(e, FERR_INVALID, "vhd: type %s is neither fixed nor dynamic",
                        subformat ? subformat : "(null)");
    if (src_format && !source_format_ok(src_format))
        return ferr_set(e, FERR_INVALID, "vhd: source format %.40s is none of " VHD_SOURCE_FORMATS,
                        src_format);
    struct stat st;
    if (stat(src, &st) < 0) {
        if (errno == ENOENT)
            return ferr_set(e, -ENOENT, "vhd: convert: %s does not exist", src);
        return ferr_set(e, -errno, "vhd: convert: stat %s: %s", src, strerror(errno));
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return ferr_set(e, FERR_INVALID, "vhd: convert: %s is neither a file nor a block device",
                        src);
    char dir[PATH_MAX];
    if ((rc = check_dir(dst, dir, e)) < 0)
        return rc;
    if (lstat(dst, &st) == 0)
        return ferr_set(e, FERR_EXISTS,
                        "vhd: convert: %s already exists; ferry never overwrites a disk: pick "
                        "another name, or remove it first",
                        dst);

    if (!src_format && ends_in_vhd_footer(src))
        src_format = "vpc";
    /* QEMU's vpc driver would read a differencing VHD without its parent: vhd_check refuses
     * it, and a damaged VHD, before qemu-img reads anything. */
    if (src_format && strcmp(src_format, "vpc") == 0 && (rc = vhd_check_file(src, NULL, e)) < 0)
        return rc;
    char format[16];
    uint64_t size = 0;
    if ((rc = probe_source(qemu_img, src, src_format, format, &size, e)) < 0)
        return rc;

    /* The copy grows under a name of its own and becomes dst by link(), which never replaces
     * a file: dst is whole or absent, also if ferryd dies meanwhile. */
    char tmp[PATH_MAX];
    const char *base = strrchr(dst, '/') + 1;
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.ferry-XXXXXX", strcmp(dir, "/") ? dir : "", base) >=
        (int)sizeof(tmp))
        return ferr_set(e, FERR_INVALID, "vhd: convert: %s: path too long", dst);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return ferr_set(e, -errno, "vhd: convert: create a file in %s: %s", dir, strerror(errno));
    close(fd);

    char opts[64];
    snprintf(opts, sizeof(opts), "subformat=%s,force_size=on", subformat);
    char *argv[] = {(char *)qemu_img_or_default(qemu_img),
                    "convert",
                    "-q",
                    "-f",
                    format,
                    "-O",
                    "vpc",
                    "-o",
                    opts,
                    (char *)src,
                    tmp,
                    NULL};
    struct run r;
    if ((rc = run(argv, &r, e)) < 0) {
        ferr_prefix(e, "vhd: convert %s", src);
        goto err_after_tmp;
    }
    char buf[64];
    if (!run_ok(&r)) {
        if (strstr(r.err, "lock"))
            rc = ferr_set(e, FERR_STATE,
                          "vhd: convert %s: it is in use (by a running VM?); stop what uses it "
                          "first (qemu-img: %s)",
                          src, r.err);
        else
            rc = ferr_set(e, FERR_QEMU, "vhd: qemu-img convert %s failed: %s", src,
                          run_why(&r, buf, sizeof(buf)));
        run_free(&r);
        goto err_after_tmp;
    }
    run_free(&r);
    if ((rc = check_made(tmp, size, e)) < 0)
        goto err_after_tmp;
    if (link(tmp, dst) < 0) {
        if (errno == EEXIST)
            rc = ferr_set(e, FERR_EXISTS,
                          "vhd: convert: %s appeared while %s was converted; it is left as it is",
                          dst, src);
        else
            rc = ferr_set(e, -errno, "vhd: convert: link %s to %s: %s", tmp, dst, strerror(errno));
        goto err_after_tmp;
    }
    unlink(tmp);
    return 0;

err_after_tmp:
    unlink(tmp);
    return rc;
}

/* ---- describing ---- */

static int get_size(const json_t *root, const char *key, bool required, uint64_t *out,
                    struct ferr *e)
{
    json_t *v = json_object_get(root, key);
    if (!v && !required) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ferr_set(e, FERR_PROTO, "qemu-img info: \"%s\" is %s", key,
                        v ? "not a non-negative integer" : "missing");
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int vhd_info_parse(const char *json_text, struct vhd_info *out, struct ferr *e)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    int rc;
    if (!root)
        return ferr_set(e, FERR_PROTO, "qemu-img info: bad JSON: %s (line %d)", jerr.text,
                        jerr.line);
    if (!json_is_object(root)) {
        rc = ferr_set(e, FERR_PROTO, "qemu-img info: expected a JSON object");
        goto out;
    }
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || json_string_length(fmt) >= sizeof(out->format)) {
        rc = ferr_set(e, FERR_PROTO,
                      "qemu-img info: \"format\" is missing or not a format "
                      "name");
        goto out;
    }
    if (strcmp(json_string_value(fmt), "vpc") != 0) {
        rc = ferr_set(e, FERR_INVALID, "the image format is %s, not vpc (VHD)",
                      json_string_value(fmt));
        goto out;
    }
    uint64_t vsize = 0, asize = 0;
    if ((rc = get_size(root, "virtual-size", true, &vsize, e)) < 0 ||
        (rc = get_size(root, "actual-size", false, &asize, e)) < 0)
        goto out;

    strcpy(out->format, json_string_value(fmt));
    out->virtual_size = vsize;
    out->actual_size = asize;
    out->subformat[0] = '\0';
    /* QEMU 7.2 reports nothing vpc-specific; a newer one may. Take only values we know. */
    json_t *sub = json_object_get(json_object_get(json_object_get(root, "format-specific"), "data"),
                                  "subformat");
    const char *s = json_string_value(sub);
    if (s &&
        (strcmp(s, "fixed") == 0 || strcmp(s, "dynamic") == 0 || strcmp(s, "differencing") == 0))
        strcpy(out->subformat, s);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int vhd_info_read(const char *qemu_img, const char *path, struct vhd_info *out, struct ferr *e)
{
    /* Our own look at the whole metadata first: it refuses files that are no VHD, damaged ones
     * and differencing ones without running anything, and before QEMU ever opens them. */
    struct vhd_layout l;
    int rc = vhd_check_file(path, &l, e);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat(path, &st) < 0)
        return ferr_set(e, -errno, "vhd: stat %s: %s", path, strerror(errno));

    /* -f vpc: probing alone calls a fixed VHD "raw" (it has no header, only the footer).
     * -U: the disk may be open in a running QEMU; info only reads. */
    char *argv[] = {(char *)qemu_img_or_default(qemu_img),
                    "info",
                    "-U",
                    "-f",
                    "vpc",
                    "--output=json",
                    (char *)path,
                    NULL};
    struct run r;
    if ((rc = run(argv, &r, e)) < 0) {
        ferr_prefix(e, "vhd: info %s", path);
        return rc;
    }
    char buf[64];
    if (!run_ok(&r)) {
        if (strstr(r.err, "invalid VPC image"))
            rc = ferr_set(e, FERR_INVALID, "vhd: %s is not a VHD file: %s", path, r.err);
        else
            rc = ferr_set(e, FERR_QEMU, "vhd: qemu-img info %s failed: %s", path,
                          run_why(&r, buf, sizeof(buf)));
        run_free(&r);
        return rc;
    }
    struct vhd_info info;
    rc = vhd_info_parse(r.out, &info, e);
    run_free(&r);
    if (rc < 0) {
        ferr_prefix(e, "vhd: %s", path);
        return rc;
    }
    /* The footer is what the vpc driver goes by; qemu-img may say nothing of it. */
    strcpy(info.subformat, l.subformat);
    info.file_size = (uint64_t)st.st_size;

    /* A fixed VHD is its data followed by the footer; that layout is what lets ferry attach it
     * as raw with the same size the vpc driver shows. vhd_check saw the footer's size; QEMU
     * may go by the disk geometry instead (creator "vpc " or "qemu"). */
    if (strcmp(info.subformat, "fixed") == 0 &&
        info.file_size != info.virtual_size + VHD_FOOTER_SIZE)
        return ferr_set(e, FERR_INVALID,
                        "vhd: %s: QEMU sizes this fixed VHD at %llu bytes by its disk geometry, "
                        "but the file is %llu bytes, not that plus a 512-byte footer: ferry "
                        "cannot attach it as raw; convert it (ferry disk convert %s NEW --type "
                        "fixed)",
                        path, (unsigned long long)info.virtual_size,
                        (unsigned long long)info.file_size, path);
    *out = info;
    return 0;
}
