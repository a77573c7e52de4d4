/* SPDX-License-Identifier: MIT */
/* Unit tests of VHD files: qemu-img info parsing, footer parsing, and real qemu-img runs: VHDs
 * created, converted from other formats and checked on disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/vhd.h"

#define MIB (1024ull * 1024)

/* ---- qemu-img info output, captured from qemu-img 7.2 (Debian 12) ------------------------- */

/* qemu-img info -U -f vpc --output=json on a fixed VHD created with force_size=on, 10M. */
static const char info_fixed[] = "{\n"
                                 "    \"virtual-size\": 10485760,\n"
                                 "    \"filename\": \"f.vhd\",\n"
                                 "    \"format\": \"vpc\",\n"
                                 "    \"actual-size\": 8192,\n"
                                 "    \"dirty-flag\": false\n"
                                 "}\n";
/* The same for a dynamic VHD. */
static const char info_dynamic[] = "{\n"
                                   "    \"virtual-size\": 10485760,\n"
                                   "    \"filename\": \"d.vhd\",\n"
                                   "    \"cluster-size\": 2097152,\n"
                                   "    \"format\": \"vpc\",\n"
                                   "    \"actual-size\": 4096,\n"
                                   "    \"dirty-flag\": false\n"
                                   "}\n";
/* Without -f vpc, qemu-img probes a fixed VHD as raw (no header, just a trailing footer). */
static const char info_fixed_probed[] = "{\n"
                                        "    \"virtual-size\": 10486272,\n"
                                        "    \"filename\": \"f.vhd\",\n"
                                        "    \"format\": \"raw\",\n"
                                        "    \"actual-size\": 8192,\n"
                                        "    \"dirty-flag\": false\n"
                                        "}\n";
static const char info_qcow2[] = "{\n"
                                 "    \"virtual-size\": 1048576,\n"
                                 "    \"filename\": \"q.qcow2\",\n"
                                 "    \"cluster-size\": 65536,\n"
                                 "    \"format\": \"qcow2\",\n"
                                 "    \"actual-size\": 200704,\n"
                                 "    \"format-specific\": {\n"
                                 "        \"type\": \"qcow2\",\n"
                                 "        \"data\": {\n"
                                 "            \"compat\": \"1.1\",\n"
                                 "            \"compression-type\": \"zlib\",\n"
                                 "            \"lazy-refcounts\": false,\n"
                                 "            \"refcount-bits\": 16,\n"
                                 "            \"corrupt\": false,\n"
                                 "            \"extended-l2\": false\n"
                                 "        }\n"
                                 "    },\n"
                                 "    \"dirty-flag\": false\n"
                                 "}\n";

static void test_parse_fixed(void **state)
{
    (void)state;
    struct vhd_info i;
    memset(&i, 0, sizeof(i));
    i.file_size = 12345;
    struct ferr e = {0};
    assert_int_equal(vhd_info_parse(info_fixed, &i, &e), 0);
    assert_string_equal(i.format, "vpc");
    assert_string_equal(i.subformat, ""); /* QEMU 7.2 does not say; the footer will */
    assert_int_equal(i.virtual_size, 10 * MIB);
    assert_int_equal(i.actual_size, 8192);
    assert_int_equal(i.file_size, 12345); /* untouched */
}

static void test_parse_dynamic(void **state)
{
    (void)state;
    struct vhd_info i;
    struct ferr e = {0};
    assert_int_equal(vhd_info_parse(info_dynamic, &i, &e), 0);
    assert_string_equal(i.format, "vpc");
    assert_int_equal(i.virtual_size, 10 * MIB);
    assert_int_equal(i.actual_size, 4096);
}

static void test_parse_format_specific_subformat(void **state)
{
    (void)state;
    struct vhd_info i;
    struct ferr e = {0};
    assert_int_equal(vhd_info_parse("{\"format\":\"vpc\",\"virtual-size\":1048576,"
                                    "\"format-specific\":{\"type\":\"vpc\",\"data\":"
                                    "{\"subformat\":\"dynamic\"}}}",
                                    &i, &e),
                     0);
    assert_string_equal(i.subformat, "dynamic");
    assert_int_equal(i.actual_size, 0); /* absent: 0 */
    /* Values we do not know are ignored rather than passed on. */
    assert_int_equal(vhd_info_parse("{\"format\":\"vpc\",\"virtual-size\":1,"
                                    "\"format-specific\":{\"data\":{\"subformat\":\"weird\"}}}",
                                    &i, &e),
                     0);
    assert_string_equal(i.subformat, "");
}

static void test_parse_not_vhd(void **state)
{
    (void)state;
    struct vhd_info i;
    struct ferr e = {0};
    assert_int_equal(vhd_info_parse(info_fixed_probed, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "raw, not vpc"));
    assert_int_equal(vhd_info_parse(info_qcow2, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "qcow2, not vpc"));
}

static void test_parse_garbage(void **state)
{
    (void)state;
    struct vhd_info i;
    struct ferr e = {0};
    static const char *const bad[] = {
        "",
        "qemu-img: Could not open 'x'",
        "[]",
        "{\"virtual-size\": 1}",
        "{\"format\": 5, \"virtual-size\": 1}",
        "{\"format\": \"vpcvpcvpcvpcvpcvpc\", \"virtual-size\": 1}",
        "{\"format\": \"vpc\"}",
        "{\"format\": \"vpc\", \"virtual-size\": -1}",
        "{\"format\": \"vpc\", \"virtual-size\": \"1\"}",
        "{\"format\": \"vpc\", \"virtual-size\": 1, \"actual-size\": 1.5}",
        "{\"format\": \"vpc\", \"virtual-size\": 1",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        int rc = vhd_info_parse(bad[k], &i, &e);
        if (rc != FERR_PROTO)
            fail_msg("input %s: rc %d (%s)", bad[k], rc, e.msg);
        assert_non_null(strstr(e.msg, "qemu-img info"));
    }
}

/* ---- footers --------------------------------------------------------------------------------- */

/* First 96 bytes of the footer qemu-img 7.2 wrote for a 10 MiB fixed VHD; the rest is zero. */
static const uint8_t footer_fixed_head[96] = {
    0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x32, 0x9b, 0x64, 0xd9, 0x71, 0x65, 0x6d, 0x32,
    0x00, 0x05, 0x00, 0x03, 0x57, 0x69, 0x32, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0xff, 0xff, 0x10, 0xff, 0x00, 0x00, 0x00, 0x02,
    0xff, 0xff, 0xe3, 0xca, 0xf2, 0x3f, 0x1a, 0x65, 0x64, 0x5b, 0x4f, 0xfd, 0x8a, 0xbf, 0x8e, 0x16,
    0x52, 0xe1, 0xae, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
/* And for a 10 MiB dynamic VHD. */
static const uint8_t footer_dynamic_head[96] = {
    0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x32, 0x9b, 0x64, 0xd9, 0x71, 0x65, 0x6d, 0x32,
    0x00, 0x05, 0x00, 0x03, 0x57, 0x69, 0x32, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0xff, 0xff, 0x10, 0xff, 0x00, 0x00, 0x00, 0x03,
    0xff, 0xff, 0xe9, 0xb1, 0xc4, 0x36, 0xfc, 0x12, 0xee, 0xdc, 0x4b, 0xb8, 0x9e, 0xb8, 0xf2, 0x43,
    0xa9, 0x85, 0x78, 0xb2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void footer_from(uint8_t f[VHD_FOOTER_SIZE], const uint8_t head[96])
{
    memset(f, 0, VHD_FOOTER_SIZE);
    memcpy(f, head, 96);
}

/* Rewrites the checksum after a test changed a field. */
static void fix_checksum(uint8_t f[VHD_FOOTER_SIZE])
{
    uint32_t sum = 0;
    for (int i = 0; i < VHD_FOOTER_SIZE; i++)
        if (i < 64 || i >= 68)
            sum += f[i];
    sum = ~sum;
    f[64] = (uint8_t)(sum >> 24);
    f[65] = (uint8_t)(sum >> 16);
    f[66] = (uint8_t)(sum >> 8);
    f[67] = (uint8_t)sum;
}

static void test_footer_real(void **state)
{
    (void)state;
    uint8_t f[VHD_FOOTER_SIZE];
    char sub[16];
    uint64_t size = 0;
    struct ferr e = {0};
    footer_from(f, footer_fixed_head);
    assert_int_equal(vhd_footer_parse(f, sub, &size, &e), 0);
    assert_string_equal(sub, "fixed");
    assert_int_equal(size, 10 * MIB);
    footer_from(f, footer_dynamic_head);
    assert_int_equal(vhd_footer_parse(f, sub, NULL, &e), 0);
    assert_string_equal(sub, "dynamic");
}

static void test_footer_differencing(void **state)
{
    (void)state;
    uint8_t f[VHD_FOOTER_SIZE];
    char sub[16];
    struct ferr e = {0};
    footer_from(f, footer_dynamic_head);
    f[63] = 4;
    fix_checksum(f);
    assert_int_equal(vhd_footer_parse(f, sub, NULL, &e), 0);
    assert_string_equal(sub, "differencing");
}

static void test_footer_bad(void **state)
{
    (void)state;
    uint8_t f[VHD_FOOTER_SIZE];
    char sub[16];
    struct ferr e = {0};

    memset(f, 0, sizeof(f));
    assert_int_equal(vhd_footer_parse(f, sub, NULL, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "conectix"));

    footer_from(f, footer_fixed_head);
    f[100] = 1; /* one flipped byte: the checksum no longer matches */
    assert_int_equal(vhd_footer_parse(f, sub, NULL, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "checksum"));

    static const uint8_t types[] = {0, 1, 5, 6, 0xff};
    for (size_t k = 0; k < sizeof(types); k++) {
        footer_from(f, footer_fixed_head);
        f[63] = types[k];
        fix_checksum(f);
        assert_int_equal(vhd_footer_parse(f, sub, NULL, &e), FERR_INVALID);
        assert_non_null(strstr(e.msg, "disk type"));
    }
}

/* ---- real qemu-img runs in a temporary directory ----------------------------------------------
 */

struct tmp {
    char dir[64];
};

static int setup_tmp(void **state)
{
    struct tmp *t = malloc(sizeof(*t));
    if (!t)
        return -1;
    strcpy(t->dir, "/tmp/ferry-test-vhd-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown_tmp(void **state)
{
    struct tmp *t = *state;
    rm_rf(t->dir);
    free(t);
    return 0;
}

static void path_in(const struct tmp *t, const char *name, char out[256])
{
    snprintf(out, 256, "%s/%s", t->dir, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_create_and_info(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "disk.vhd", p);
    struct ferr e = {0};
    int rc = vhd_create(NULL, p, "fixed", 10, &e);
    if (rc != 0)
        fail_msg("create: %s", e.msg);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 10 * MIB + 512);

    struct vhd_info i;
    rc = vhd_info_read(NULL, p, &i, &e);
    if (rc != 0)
        fail_msg("info: %s", e.msg);
    assert_string_equal(i.format, "vpc");
    assert_string_equal(i.subformat, "fixed");
    assert_int_equal(i.virtual_size, 10 * MIB);
    assert_int_equal(i.file_size, 10 * MIB + 512);
    /* its space is reserved (fallocate) where the file system can: a fixed VHD never runs
     * out of room after it was made */
    assert_true(i.actual_size >= 10 * MIB);
}

static void test_info_dynamic(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "dyn.vhd", p);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "qemu-img create -q -f vpc -o subformat=dynamic,force_size=on %s 64M", p);
    assert_int_equal(system(cmd), 0);
    struct vhd_info i;
    struct ferr e = {0};
    int rc = vhd_info_read("qemu-img", p, &i, &e);
    if (rc != 0)
        fail_msg("info: %s", e.msg);
    assert_string_equal(i.subformat, "dynamic");
    assert_int_equal(i.virtual_size, 64 * MIB);
    assert_true(i.file_size < MIB);
}

static void test_create_missing_dir(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "nope/disk.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "fixed", 10, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "directory"));
    assert_non_null(strstr(e.msg, "does not exist"));
    assert_false(exists(p));
}

static void test_create_dir_is_a_file(void **state)
{
    struct tmp *t = *state;
    char f[256], p[256];
    path_in(t, "plain", f);
    assert_int_equal(file_write_atomic(f, "x", 1, NULL), 0);
    path_in(t, "plain/disk.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "fixed", 10, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "plain"));
}

static void test_create_existing_file(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "taken.vhd", p);
    assert_int_equal(file_write_atomic(p, "precious", 8, NULL), 0);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "fixed", 10, &e), FERR_EXISTS);
    assert_non_null(strstr(e.msg, "already exists"));
    /* The file that was there is untouched. */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 8);
}

static void test_create_bad_args(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "x.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "fixed", 0, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "size 0 MiB is out of range 1..2088960"));
    assert_int_equal(vhd_create(NULL, p, "fixed", VHD_MAX_SIZE_MIB + 1, &e), FERR_INVALID);
    assert_int_equal(vhd_create(NULL, "rel/x.vhd", "fixed", 1, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not an absolute path"));
    assert_int_equal(vhd_create(NULL, NULL, "fixed", 1, &e), FERR_INVALID);
    assert_false(exists(p));
}

static void test_create_qemu_img_missing(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "x.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create("ferry-no-such-qemu-img", p, "fixed", 1, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "not found"));
    assert_false(exists(p)); /* the claimed name is given back */
}

static void test_create_qemu_img_fails(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "x.vhd", p);
    struct ferr e = {0};
    /* "false" runs and fails like a broken qemu-img would. */
    assert_int_equal(vhd_create("false", p, "fixed", 1, &e), FERR_QEMU);
    assert_non_null(strstr(e.msg, "exit status 1"));
    assert_false(exists(p));
    /* "true" claims success but writes nothing: the size check catches it. */
    assert_int_equal(vhd_create("true", p, "fixed", 1, &e), FERR_QEMU);
    assert_non_null(strstr(e.msg, "expected 1049088"));
    assert_false(exists(p));
}

static void test_info_not_vhd(void **state)
{
    struct tmp *t = *state;
    char p[256], cmd[512];
    struct vhd_info i;
    struct ferr e = {0};

    path_in(t, "text.txt", p);
    assert_int_equal(file_write_atomic(p, "hello\n", 6, NULL), 0);
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "shorter than a footer"));

    path_in(t, "raw.img", p);
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f raw %s 1M", p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is not a VHD file"));

    path_in(t, "q.qcow2", p);
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 1M", p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is not a VHD file"));

    assert_int_equal(vhd_info_read(NULL, t->dir, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not a regular file"));

    path_in(t, "missing.vhd", p);
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "does not exist"));
}

static void test_info_fixed_with_wrong_length(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "grown.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "fixed", 1, &e), 0);
    /* Data appended before the footer's copy: the file is no longer data + footer. */
    uint8_t foot[VHD_FOOTER_SIZE];
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, foot, sizeof(foot), (off_t)MIB), VHD_FOOTER_SIZE);
    assert_int_equal(pwrite(fd, foot, sizeof(foot), (off_t)(MIB + 4096)), VHD_FOOTER_SIZE);
    close(fd);
    struct vhd_info i;
    int rc = vhd_info_read(NULL, p, &i, &e);
    assert_int_equal(rc, FERR_INVALID);
    assert_non_null(strstr(e.msg, "plus a 512-byte footer"));
}

/* Runs a shell command made like printf; the test fails unless it exits 0. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("%s: status %d", cmd, rc);
}

/* Sets the disk type in a VHD's footer (and its copy at offset 0, if any), checksums right. */
static void set_disk_type(const char *path, uint8_t type)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t end = lseek(fd, 0, SEEK_END);
    uint8_t f[VHD_FOOTER_SIZE];
    assert_int_equal(pread(fd, f, sizeof(f), end - VHD_FOOTER_SIZE), VHD_FOOTER_SIZE);
    f[63] = type;
    fix_checksum(f);
    assert_int_equal(pwrite(fd, f, sizeof(f), end - VHD_FOOTER_SIZE), VHD_FOOTER_SIZE);
    uint8_t head[8];
    assert_int_equal(pread(fd, head, sizeof(head), 0), 8);
    if (memcmp(head, "conectix", 8) == 0)
        assert_int_equal(pwrite(fd, f, sizeof(f), 0), VHD_FOOTER_SIZE);
    close(fd);
}

/* No file of dir's but name (and "." and ".."): nothing half made was left behind. */
static void only_file(const struct tmp *t, const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s)\" = \"%s\"", t->dir, name);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof(cmd), "ls -la %s >&2", t->dir);
        (void)system(cmd);
        fail_msg("%s holds more than %s", t->dir, name);
    }
}

static void test_create_dynamic(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "dyn.vhd", p);
    struct ferr e = {0};
    int rc = vhd_create(NULL, p, "dynamic", 64, &e);
    if (rc != 0)
        fail_msg("create: %s", e.msg);
    struct vhd_layout l;
    rc = vhd_check_file(p, &l, &e);
    if (rc != 0)
        fail_msg("check: %s", e.msg);
    assert_string_equal(l.subformat, "dynamic");
    assert_int_equal(l.current_size, 64 * MIB);
    assert_int_equal(l.block_size, 2 * MIB); /* what qemu-img writes */
    assert_int_equal(l.max_table_entries, 32);
    assert_int_equal(l.used_blocks, 0);
    struct vhd_info i;
    rc = vhd_info_read(NULL, p, &i, &e);
    if (rc != 0)
        fail_msg("info: %s", e.msg);
    assert_string_equal(i.subformat, "dynamic");
    assert_int_equal(i.virtual_size, 64 * MIB);
    assert_true(i.file_size < MIB);

    assert_int_equal(vhd_create(NULL, p, "dynamic", 64, &e), FERR_EXISTS);
    path_in(t, "x.vhd", p);
    assert_int_equal(vhd_create(NULL, p, "differencing", 64, &e), FERR_INVALID);
    assert_string_equal(e.msg, "vhd: type differencing is neither fixed nor dynamic");
    assert_int_equal(vhd_create(NULL, p, NULL, 64, &e), FERR_INVALID);
    /* "true" claims success but writes nothing: the check of the new file catches it. */
    assert_int_equal(vhd_create("true", p, "dynamic", 1, &e), FERR_QEMU);
    assert_non_null(strstr(e.msg, "fails ferry's check"));
    only_file(t, "dyn.vhd");
}

/* A VHD with data: a raw image with a few written MiB converted, then read from disk. */
static void test_dynamic_with_data(void **state)
{
    struct tmp *t = *state;
    char raw[256], p[256];
    path_in(t, "src.img", raw);
    path_in(t, "dyn.vhd", p);
    sh("qemu-img create -q -f raw %s 64M && printf hello | dd of=%s bs=1 seek=5000000 "
       "conv=notrunc status=none && printf world | dd of=%s bs=1M seek=40 conv=notrunc "
       "status=none",
       raw, raw, raw);
    struct ferr e = {0};
    int rc = vhd_convert(NULL, raw, NULL, p, "dynamic", &e);
    if (rc != 0)
        fail_msg("convert: %s", e.msg);
    struct vhd_layout l;
    assert_int_equal(vhd_check_file(p, &l, &e), 0);
    assert_string_equal(l.subformat, "dynamic");
    assert_int_equal(l.current_size, 64 * MIB);
    assert_int_equal(l.used_blocks, 2);
    sh("qemu-img compare -q -f raw -F vpc %s %s", raw, p);
    struct vhd_info i;
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), 0);
    assert_string_equal(i.subformat, "dynamic");

    /* Cut it short, the way a copy that stopped early leaves it: refused before qemu-img. */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - (off_t)MIB), 0);
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), FERR_INVALID);
    char want[512];
    snprintf(want, sizeof(want),
             "vhd: %s: the footer at the end of the file is missing or damaged, but its copy at "
             "the start is there: the file was cut short or overwritten at its end; restore it "
             "from a backup",
             p);
    assert_string_equal(e.msg, want);
}

static void test_info_differencing(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "diff.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, p, "dynamic", 8, &e), 0);
    set_disk_type(p, 4);
    struct vhd_info i;
    assert_int_equal(vhd_info_read(NULL, p, &i, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, p));
    assert_non_null(strstr(e.msg, "differencing VHDs are not supported: QEMU's vpc driver "
                                  "ignores the parent and would read its sectors as zeros; "
                                  "convert it to a fixed or dynamic VHD first"));
}

/* ---- conversion ------------------------------------------------------------------------------ */

static void test_convert_formats(void **state)
{
    struct tmp *t = *state;
    char src[256], dst[256], back[256];
    struct ferr e = {0};
    struct vhd_layout l;
    static const char *const fmts[] = {"qcow2", "vmdk", "vhdx", "raw"};
    for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
        char name[32];
        snprintf(name, sizeof(name), "src.%s", fmts[k]);
        path_in(t, name, src);
        path_in(t, "data.raw", back);
        sh("qemu-img create -q -f raw %s 12M && printf ferry | dd of=%s bs=1M seek=3 "
           "conv=notrunc status=none && qemu-img convert -f raw -O %s %s %s && rm %s",
           back, back, fmts[k], back, src, back);
        for (int fixed = 0; fixed < 2; fixed++) {
            snprintf(name, sizeof(name), "%s-%s.vhd", fmts[k], fixed ? "fixed" : "dynamic");
            path_in(t, name, dst);
            int rc = vhd_convert(NULL, src, NULL, dst, fixed ? "fixed" : "dynamic", &e);
            if (rc != 0)
                fail_msg("convert %s: %s", fmts[k], e.msg);
            assert_int_equal(vhd_check_file(dst, &l, &e), 0);
            assert_string_equal(l.subformat, fixed ? "fixed" : "dynamic");
            assert_int_equal(l.current_size, 12 * MIB);
            sh("qemu-img compare -q -f %s -F vpc %s %s", fmts[k], src, dst);
            sh("rm %s", dst);
        }
        sh("rm %s", src);
    }
}

static void test_convert_vhd(void **state)
{
    struct tmp *t = *state;
    char fixed[256], dyn[256], again[256];
    path_in(t, "a.vhd", fixed);
    path_in(t, "b.vhd", dyn);
    path_in(t, "c.vhd", again);
    struct ferr e = {0};
    assert_int_equal(vhd_create(NULL, fixed, "fixed", 4, &e), 0);
    /* A fixed VHD probes as raw: converted as raw, its footer would become data. */
    assert_int_equal(vhd_convert(NULL, fixed, NULL, dyn, "dynamic", &e), 0);
    struct vhd_layout l;
    assert_int_equal(vhd_check_file(dyn, &l, &e), 0);
    assert_int_equal(l.current_size, 4 * MIB);
    assert_int_equal(vhd_convert(NULL, dyn, NULL, again, "fixed", &e), 0);
    assert_int_equal(vhd_check_file(again, &l, &e), 0);
    assert_string_equal(l.subformat, "fixed");
    assert_int_equal(l.current_size, 4 * MIB);

    /* A differencing VHD would be read without its parent: refused. */
    set_disk_type(dyn, 4);
    sh("rm %s", again);
    assert_int_equal(vhd_convert(NULL, dyn, NULL, again, "fixed", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "differencing VHDs are not supported"));
    assert_int_equal(vhd_convert(NULL, dyn, "vpc", again, "fixed", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "differencing VHDs are not supported"));
    assert_false(exists(again));
}

static void test_convert_refusals(void **state)
{
    struct tmp *t = *state;
    char src[256], dst[256], other[256];
    path_in(t, "src.img", src);
    path_in(t, "dst.vhd", dst);
    struct ferr e = {0};
    sh("qemu-img create -q -f raw %s 1M", src);

    /* An existing destination is refused and left as it was. */
    assert_int_equal(file_write_atomic(dst, "precious", 8, NULL), 0);
    assert_int_equal(vhd_convert(NULL, src, NULL, dst, "dynamic", &e), FERR_EXISTS);
    char want[1024];
    snprintf(want, sizeof(want),
             "vhd: convert: %s already exists; ferry never overwrites a disk: pick another name, "
             "or remove it first",
             dst);
    assert_string_equal(e.msg, want);
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 8);
    sh("rm %s", dst);

    /* A failing qemu-img leaves nothing behind, the temporary file included. */
    assert_int_equal(vhd_convert("false", src, "raw", dst, "dynamic", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "qemu-img cannot read it as raw"));
    only_file(t, "src.img");

    path_in(t, "nope.img", other);
    assert_int_equal(vhd_convert(NULL, other, NULL, dst, "dynamic", &e), -ENOENT);
    snprintf(want, sizeof(want), "vhd: convert: %s does not exist", other);
    assert_string_equal(e.msg, want);
    assert_int_equal(vhd_convert(NULL, t->dir, NULL, dst, "dynamic", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "neither a file nor a block device"));
    path_in(t, "nodir/x.vhd", other);
    assert_int_equal(vhd_convert(NULL, src, NULL, other, "dynamic", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "does not exist"));
    assert_int_equal(vhd_convert(NULL, src, NULL, dst, "sparse", &e), FERR_INVALID);
    assert_int_equal(vhd_convert(NULL, src, "iso", dst, "fixed", &e), FERR_INVALID);
    assert_string_equal(e.msg, "vhd: source format iso is none of raw, qcow2, vmdk, vhdx, vpc");
    assert_int_equal(vhd_convert(NULL, "rel.img", NULL, dst, "fixed", &e), FERR_INVALID);

    /* A raw file that ends inside a sector: QEMU rounds it up to whole sectors, zeros added. */
    path_in(t, "odd.img", other);
    sh("head -c 1000 /dev/zero > %s", other);
    assert_int_equal(vhd_convert(NULL, other, NULL, dst, "fixed", &e), 0);
    struct vhd_layout l;
    assert_int_equal(vhd_check_file(dst, &l, &e), 0);
    assert_int_equal(l.current_size, 1024);
    sh("rm %s", dst);
    sh("rm %s", other);

    /* A qcow2 image with a backing file is taken as such only when named so. */
    char base[256];
    path_in(t, "base.qcow2", base);
    path_in(t, "top.qcow2", other);
    sh("qemu-img create -q -f qcow2 %s 2M && qemu-img create -q -f qcow2 -b %s -F qcow2 %s", base,
       base, other);
    assert_int_equal(vhd_convert(NULL, other, NULL, dst, "dynamic", &e), FERR_INVALID);
    snprintf(want, sizeof(want),
             "vhd: convert %s: qemu-img takes it for a qcow2 image that refers to %s; a raw image "
             "whose first bytes look like that would make qemu-img read another file, so ferry "
             "does not guess: if it is a qcow2 image, name its format (--from qcow2); if it is a "
             "raw image, --from raw",
             other, base);
    assert_string_equal(e.msg, want);
    assert_int_equal(vhd_convert(NULL, other, "qcow2", dst, "dynamic", &e), 0);
    assert_true(exists(dst));
    sh("rm %s %s %s", dst, other, base);
    only_file(t, "src.img");
}

/* Whether process pid has path open. */
static bool has_open(pid_t pid, const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd 2>/dev/null | grep -q -- '-> %s$'", (int)pid,
             path);
    return system(cmd) == 0;
}

/* Starts qemu-io holding path (format fmt) open for writing (QEMU's image lock, taken as it
 * opens) while it sleeps 10 s, and waits (with a deadline) until it has the file open. The
 * pid, or skips the test when there is no qemu-io. */
static pid_t hold_open(const char *path, const char *fmt)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "exec qemu-io -f %s -c 'sleep 10000' %s", fmt, path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        if (has_open(pid, path)) {
            usleep(100000); /* its lock comes with the open; a margin for the next steps */
            return pid;
        }
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    skip();
    return -1;
}

static void release(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_convert_in_use(void **state)
{
    struct tmp *t = *state;
    char src[256], dst[256];
    path_in(t, "busy.qcow2", src);
    path_in(t, "dst.vhd", dst);
    sh("qemu-img create -q -f qcow2 %s 1M", src);
    pid_t pid = hold_open(src, "qcow2");
    struct ferr e = {0};
    int rc = pid > 0 ? vhd_convert(NULL, src, NULL, dst, "dynamic", &e) : 1;
    release(pid);
    assert_int_equal(rc, FERR_STATE);
    assert_non_null(strstr(e.msg, "it is in use (by a running VM?); stop what uses it first"));
    only_file(t, "busy.qcow2");
}

/* ---- growing and deleting ---------------------------------------------------------------- */

static void read_footer(const char *path, uint8_t f[VHD_FOOTER_SIZE])
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, f, VHD_FOOTER_SIZE, st.st_size - VHD_FOOTER_SIZE), VHD_FOOTER_SIZE);
    close(fd);
}

static void test_footer_resize(void **state)
{
    struct tmp *t = *state;
    char small[256], big[256];
    path_in(t, "small.vhd", small);
    path_in(t, "big.vhd", big);
    sh("qemu-img create -q -f vpc -o subformat=fixed,force_size=on %s 64M && qemu-img create -q "
       "-f vpc -o subformat=fixed,force_size=on %s 3000M",
       small, big);
    uint8_t f[VHD_FOOTER_SIZE], want[VHD_FOOTER_SIZE];
    read_footer(small, f);
    read_footer(big, want);
    struct ferr e = {0};
    assert_int_equal(vhd_footer_resize(f, 3000 * MIB, &e), 0);
    char sub[16];
    uint64_t size = 0;
    assert_int_equal(vhd_footer_parse(f, sub, &size, &e), 0); /* its checksum is right */
    assert_string_equal(sub, "fixed");
    assert_int_equal(size, 3000 * MIB);
    assert_memory_equal(f + 56, want + 56, 4); /* the geometry QEMU computes too */
    assert_int_equal(vhd_footer_resize(f, 3000 * MIB + 1, &e), FERR_INVALID);
    /* images whose size is their CHS geometry's (made without force_size, as Virtual PC
     * did): the geometry is computed as the specification says, as QEMU does */
    sh("rm %s %s && qemu-img create -q -f vpc -o subformat=fixed %s 64M && qemu-img create -q "
       "-f vpc -o subformat=fixed %s 3000M",
       small, big, small, big);
    read_footer(small, f);
    read_footer(big, want);
    assert_int_equal(vhd_footer_parse(want, sub, &size, &e), 0);
    assert_int_equal(vhd_footer_resize(f, size, &e), 0);
    assert_memory_equal(f + 56, want + 56, 4);
    f[0] = 'X';
    assert_int_equal(vhd_footer_resize(f, 128 * MIB, &e), FERR_INVALID);
}

static void test_grow(void **state)
{
    struct tmp *t = *state;
    char raw[256], fixed[256], dyn[256];
    path_in(t, "src.img", raw);
    path_in(t, "fixed.vhd", fixed);
    path_in(t, "dyn.vhd", dyn);
    sh("qemu-img create -q -f raw %s 64M && printf hello | dd of=%s bs=1 seek=5000000 "
       "conv=notrunc status=none && printf world | dd of=%s bs=1 seek=67108859 conv=notrunc "
       "status=none",
       raw, raw, raw);
    struct ferr e = {0};
    assert_int_equal(vhd_convert(NULL, raw, "raw", fixed, "fixed", &e), 0);
    assert_int_equal(vhd_convert(NULL, raw, "raw", dyn, "dynamic", &e), 0);
    const char *both[] = {fixed, dyn};
    for (int i = 0; i < 2; i++) {
        int rc = vhd_grow(NULL, both[i], 96, &e);
        if (rc != 0)
            fail_msg("grow %s: %s", both[i], e.msg);
        struct vhd_info info;
        assert_int_equal(vhd_info_read(NULL, both[i], &info, &e), 0);
        assert_int_equal(info.virtual_size, 96 * MIB);
        assert_string_equal(info.subformat, i == 0 ? "fixed" : "dynamic");
        /* every byte the guest had, and zeros after them (the old footer is gone) */
        sh("qemu-img compare -q -f raw -F vpc %s %s", raw, both[i]);
        assert_int_equal(vhd_grow(NULL, both[i], 96, &e), FERR_INVALID);
        assert_non_null(strstr(e.msg, "is 96 MiB already: a disk only grows"));
        assert_int_equal(vhd_grow(NULL, both[i], 0, &e), FERR_INVALID);
    }
    struct vhd_layout l;
    assert_int_equal(vhd_check_file(dyn, &l, &e), 0);
    assert_int_equal(l.used_blocks, 2);        /* the copy kept it sparse */
    sh("! ls -A %s | grep -q ferry-", t->dir); /* no temporary copy left */
    /* not a VHD: neither grown nor deleted */
    assert_int_equal(vhd_grow(NULL, raw, 128, &e), FERR_INVALID);
    assert_int_equal(vhd_delete(raw, &e), FERR_INVALID);
    assert_int_equal(access(raw, F_OK), 0);
    assert_int_equal(vhd_delete(fixed, &e), 0);
    assert_int_equal(access(fixed, F_OK), -1);
}

static void test_grow_and_delete_in_use(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "busy.vhd", p);
    sh("qemu-img create -q -f vpc -o subformat=fixed,force_size=on %s 8M", p);
    pid_t pid = hold_open(p, "vpc");
    struct ferr e = {0}, e2 = {0};
    int grow = vhd_grow(NULL, p, 16, &e);
    int del = vhd_delete(p, &e2);
    release(pid);
    assert_int_equal(grow, FERR_STATE);
    assert_non_null(strstr(e.msg, "is in use by a QEMU"));
    assert_int_equal(del, FERR_STATE);
    struct vhd_info info;
    assert_int_equal(vhd_info_read(NULL, p, &info, &e), 0);
    assert_int_equal(info.virtual_size, 8 * MIB); /* untouched */
}

/* ---- qemu-img info of a conversion source (pure) --------------------------------------------- */

static void test_source_parse(void **state)
{
    (void)state;
    char f[16];
    uint64_t size = 0;
    struct ferr e = {0};
    assert_int_equal(vhd_source_parse(info_qcow2, "/x/q.qcow2", 0, f, &size, &e), 0);
    assert_string_equal(f, "qcow2");
    assert_int_equal(size, MIB);
    assert_int_equal(vhd_source_parse(info_fixed_probed, "/x/f.vhd", 0, f, &size, &e), 0);
    assert_string_equal(f, "raw");

    /* A VMDK whose one extent is itself is fine; one naming another file is not, unless the
     * format was named. */
    static const char vmdk_self[] = "{\"format\": \"vmdk\", \"virtual-size\": 1048576, "
                                    "\"format-specific\": {\"type\": \"vmdk\", \"data\": "
                                    "{\"extents\": [{\"filename\": \"/x/a.vmdk\"}]}}}";
    assert_int_equal(vhd_source_parse(vmdk_self, "/x/a.vmdk", 0, f, &size, &e), 0);
    assert_int_equal(vhd_source_parse(vmdk_self, "/x/b.vmdk", 0, f, &size, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "refers to /x/a.vmdk"));
    assert_int_equal(vhd_source_parse(vmdk_self, "/x/b.vmdk", 1, f, &size, &e), 0);
    static const char data_file[] = "{\"format\": \"qcow2\", \"virtual-size\": 512, "
                                    "\"format-specific\": {\"type\": \"qcow2\", \"data\": "
                                    "{\"data-file\": \"/etc/shadow\"}}}";
    assert_int_equal(vhd_source_parse(data_file, "/x/q", 0, f, &size, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "refers to /etc/shadow"));

    assert_int_equal(
        vhd_source_parse("{\"format\": \"luks\", \"virtual-size\": 512}", "/x/l", 1, f, &size, &e),
        FERR_INVALID);
    assert_string_equal(e.msg, "vhd: convert /x/l: it is a luks image; ferry converts raw, qcow2, "
                               "vmdk, vhdx, vpc images (convert it to one of them with qemu-img "
                               "first)");
    char big[128];
    snprintf(big, sizeof(big), "{\"format\": \"raw\", \"virtual-size\": %llu}",
             (unsigned long long)VHD_MAX_SIZE + 512);
    assert_int_equal(vhd_source_parse(big, "/x/r", 1, f, &size, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "over VHD's limit of 2040 GiB"));
    snprintf(big, sizeof(big), "{\"format\": \"raw\", \"virtual-size\": %llu}",
             (unsigned long long)VHD_MAX_SIZE);
    assert_int_equal(vhd_source_parse(big, "/x/r", 1, f, &size, &e), 0);
    assert_int_equal(
        vhd_source_parse("{\"format\": \"raw\", \"virtual-size\": 0}", "/x/r", 1, f, &size, &e),
        FERR_INVALID);
    assert_int_equal(vhd_source_parse("{\"format\": \"qcow2\", \"virtual-size\": 1000}", "/x/r", 1,
                                      f, &size, &e),
                     FERR_INVALID);
    assert_string_equal(e.msg, "vhd: convert /x/r: its virtual size of 1000 bytes is not a "
                               "positive multiple of 512, and a VHD holds whole 512-byte sectors: "
                               "grow it to one first (qemu-img resize)");
    assert_int_equal(vhd_source_parse("{\"format\": \"raw\"}", "/x/r", 1, f, &size, &e),
                     FERR_PROTO);
    assert_int_equal(vhd_source_parse("[1", "/x/r", 1, f, &size, &e), FERR_PROTO);
    assert_int_equal(vhd_source_parse("[1]", "/x/r", 1, f, &size, &e), FERR_PROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fixed),
        cmocka_unit_test(test_parse_dynamic),
        cmocka_unit_test(test_parse_format_specific_subformat),
        cmocka_unit_test(test_parse_not_vhd),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_footer_real),
        cmocka_unit_test(test_footer_differencing),
        cmocka_unit_test(test_footer_bad),
        cmocka_unit_test_setup_teardown(test_create_and_info, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_info_dynamic, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_missing_dir, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_dir_is_a_file, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_existing_file, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_bad_args, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_qemu_img_missing, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_qemu_img_fails, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_info_not_vhd, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_info_fixed_with_wrong_length, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_create_dynamic, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_dynamic_with_data, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_info_differencing, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_convert_formats, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_convert_vhd, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_convert_refusals, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_footer_resize, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_grow, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_grow_and_delete_in_use, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_convert_in_use, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_source_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
