/* SPDX-License-Identifier: MIT */
/* VHD files through qemu-img (run without a shell) plus our own reading of the VHD footer. */
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

int vhd_create_fixed(const char *qemu_img, const char *path, uint64_t size_mib, struct ferr *e)
{
    int rc;
    if ((rc = check_path(path, e)) < 0)
        return rc;
    if (size_mib < 1 || size_mib > VHD_MAX_SIZE_MIB)
        return ferr_set(e, FERR_INVALID, "vhd: size %llu MiB is out of range 1..%llu",
                        (unsigned long long)size_mib, (unsigned long long)VHD_MAX_SIZE_MIB);

    char dir[PATH_MAX];
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

    /* Claim the name with O_EXCL before qemu-img runs: qemu-img would silently overwrite a
     * file that appeared between a check and its start. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return ferr_set(e, FERR_EXISTS, "vhd: %s already exists", path);
        return ferr_set(e, -errno, "vhd: create %s: %s", path, strerror(errno));
    }
    close(fd);

    char size_arg[32];
    snprintf(size_arg, sizeof(size_arg), "%lluM", (unsigned long long)size_mib);
    char *argv[] = {(char *)(qemu_img ? qemu_img : "qemu-img"),
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    "subformat=fixed,force_size=on",
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

    uint64_t want = size_mib * MIB + VHD_FOOTER_SIZE;
    if (stat(path, &st) < 0) {
        rc = ferr_set(e, -errno, "vhd: stat %s after qemu-img create: %s", path, strerror(errno));
        goto err_after_claim;
    }
    if ((uint64_t)st.st_size != want) {
        rc = ferr_set(e, FERR_QEMU, "vhd: qemu-img created %s with %lld bytes, expected %llu", path,
                      (long long)st.st_size, (unsigned long long)want);
        goto err_after_claim;
    }
    return 0;

err_after_claim:
    unlink(path);
    return rc;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

int vhd_footer_parse(const uint8_t footer[VHD_FOOTER_SIZE], char subformat[16],
                     uint64_t *current_size, struct ferr *e)
{
    /* Offsets from the VHD specification's "Hard Disk Footer Format". */
    enum { COOKIE = 0, CURRENT_SIZE = 48, DISK_TYPE = 60, CHECKSUM = 64 };
    if (memcmp(footer + COOKIE, "conectix", 8) != 0)
        return ferr_set(e, FERR_INVALID, "no VHD footer (cookie \"conectix\" missing)");
    /* The checksum is the one's complement of the byte sum with the checksum field left out. */
    uint32_t sum = 0;
    for (size_t i = 0; i < VHD_FOOTER_SIZE; i++)
        if (i < CHECKSUM || i >= CHECKSUM + 4)
            sum += footer[i];
    uint32_t stored = be32(footer + CHECKSUM);
    if (stored != ~sum)
        return ferr_set(e, FERR_INVALID, "VHD footer checksum is 0x%08x, expected 0x%08x", stored,
                        ~sum);
    uint32_t type = be32(footer + DISK_TYPE);
    const char *name;
    switch (type) {
    case 2:
        name = "fixed";
        break;
    case 3:
        name = "dynamic";
        break;
    case 4:
        name = "differencing";
        break;
    default:
        return ferr_set(e, FERR_INVALID, "VHD footer has unknown disk type %u", type);
    }
    snprintf(subformat, 16, "%s", name);
    if (current_size)
        *current_size = be64(footer + CURRENT_SIZE);
    return 0;
}

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

/* Reads the footer and the length of path; FERR_INVALID if it is no VHD. */
static int read_footer(const char *path, uint8_t footer[VHD_FOOTER_SIZE], uint64_t *file_size,
                       struct ferr *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ferr_set(e, -ENOENT, "vhd: %s does not exist", path);
        return ferr_set(e, -errno, "vhd: open %s: %s", path, strerror(errno));
    }
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = ferr_set(e, -errno, "vhd: stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ferr_set(e, FERR_INVALID, "vhd: %s is not a regular file", path);
        goto out;
    }
    if (st.st_size < VHD_FOOTER_SIZE) {
        rc = ferr_set(e, FERR_INVALID,
                      "vhd: %s is not a VHD file (%lld bytes, shorter than a "
                      "footer)",
                      path, (long long)st.st_size);
        goto out;
    }
    ssize_t n = pread(fd, footer, VHD_FOOTER_SIZE, st.st_size - VHD_FOOTER_SIZE);
    if (n != VHD_FOOTER_SIZE) {
        rc = ferr_set(e, n < 0 ? -errno : -EIO, "vhd: read the footer of %s: %s", path,
                      n < 0 ? strerror(errno) : "short read");
        goto out;
    }
    *file_size = (uint64_t)st.st_size;
out:
    close(fd);
    return rc;
}

int vhd_info_read(const char *qemu_img, const char *path, struct vhd_info *out, struct ferr *e)
{
    int rc;
    if ((rc = check_path(path, e)) < 0)
        return rc;

    /* Our own look at the footer first: it refuses non-VHD files without running anything. */
    uint8_t footer[VHD_FOOTER_SIZE];
    uint64_t file_size = 0;
    char footer_type[16];
    if ((rc = read_footer(path, footer, &file_size, e)) < 0)
        return rc;
    if ((rc = vhd_footer_parse(footer, footer_type, NULL, e)) < 0) {
        ferr_prefix(e, "vhd: %s is not a VHD file", path);
        return rc;
    }

    /* -f vpc: probing alone calls a fixed VHD "raw" (it has no header, only the footer).
     * -U: the disk may be open in a running QEMU; info only reads. */
    char *argv[] = {(char *)(qemu_img ? qemu_img : "qemu-img"),
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
    if (!info.subformat[0])
        strcpy(info.subformat, footer_type);
    info.file_size = file_size;

    /* A fixed VHD is its data followed by the footer; that layout is what lets ferry attach it
     * as raw with the same size the vpc driver shows. */
    if (strcmp(info.subformat, "fixed") == 0 && file_size != info.virtual_size + VHD_FOOTER_SIZE)
        return ferr_set(e, FERR_INVALID,
                        "vhd: %s: fixed VHD of %llu bytes should be its virtual "
                        "size %llu plus a %d-byte footer",
                        path, (unsigned long long)file_size, (unsigned long long)info.virtual_size,
                        VHD_FOOTER_SIZE);
    *out = info;
    return 0;
}
