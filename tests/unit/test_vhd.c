/* SPDX-License-Identifier: MIT */
/* Unit tests of VHD files: qemu-img info parsing, footer parsing, and real qemu-img runs. */
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
#include <sys/stat.h>
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
    int rc = vhd_create_fixed(NULL, p, 10, &e);
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
    assert_true(i.actual_size < 10 * MIB); /* sparse */
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
    assert_int_equal(vhd_create_fixed(NULL, p, 10, &e), FERR_INVALID);
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
    assert_int_equal(vhd_create_fixed(NULL, p, 10, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "plain"));
}

static void test_create_existing_file(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "taken.vhd", p);
    assert_int_equal(file_write_atomic(p, "precious", 8, NULL), 0);
    struct ferr e = {0};
    assert_int_equal(vhd_create_fixed(NULL, p, 10, &e), FERR_EXISTS);
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
    assert_int_equal(vhd_create_fixed(NULL, p, 0, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "size 0 MiB is out of range 1..2088960"));
    assert_int_equal(vhd_create_fixed(NULL, p, VHD_MAX_SIZE_MIB + 1, &e), FERR_INVALID);
    assert_int_equal(vhd_create_fixed(NULL, "rel/x.vhd", 1, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not an absolute path"));
    assert_int_equal(vhd_create_fixed(NULL, NULL, 1, &e), FERR_INVALID);
    assert_false(exists(p));
}

static void test_create_qemu_img_missing(void **state)
{
    struct tmp *t = *state;
    char p[256];
    path_in(t, "x.vhd", p);
    struct ferr e = {0};
    assert_int_equal(vhd_create_fixed("ferry-no-such-qemu-img", p, 1, &e), -ENOENT);
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
    assert_int_equal(vhd_create_fixed("false", p, 1, &e), FERR_QEMU);
    assert_non_null(strstr(e.msg, "exit status 1"));
    assert_false(exists(p));
    /* "true" claims success but writes nothing: the size check catches it. */
    assert_int_equal(vhd_create_fixed("true", p, 1, &e), FERR_QEMU);
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
    assert_int_equal(vhd_create_fixed(NULL, p, 1, &e), 0);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
