/* SPDX-License-Identifier: MIT */
/* Unit tests of the CLI's argument parsers (cli/parse.c): what each accepts, and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/parse.h"
#include "common/util.h"

/* What a failed parse must leave in its output. */
#define UNTOUCHED UINT64_C(0xdeadbeef)

/* ---- cli_parse_u64 ----------------------------------------------------------------------- */

/* Parses s in [min, max]; asserts that it succeeds with want. */
static void u64_ok(const char *s, uint64_t min, uint64_t max, uint64_t want)
{
    uint64_t v = UNTOUCHED;
    assert_int_equal(cli_parse_u64(s, min, max, &v), 0);
    assert_true(v == want);
}

/* Parses s in [min, max]; asserts FERR_INVALID and an untouched output. */
static void u64_bad(const char *s, uint64_t min, uint64_t max)
{
    uint64_t v = UNTOUCHED;
    assert_int_equal(cli_parse_u64(s, min, max, &v), FERR_INVALID);
    assert_true(v == UNTOUCHED);
}

static void test_u64_valid(void **state)
{
    (void)state;
    u64_ok("0", 0, 10, 0);
    u64_ok("5", 0, 10, 5);
    u64_ok("007", 0, 10, 7); /* leading zeros are decimal, not octal */
    u64_ok("0010", 0, 100, 10);
    u64_ok("65535", 1, 65535, 65535);
    u64_ok("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
}

static void test_u64_bounds(void **state)
{
    (void)state;
    /* Both ends of the range are in it; one past either end is not. */
    u64_ok("1", 1, 16, 1);
    u64_ok("16", 1, 16, 16);
    u64_bad("0", 1, 16);
    u64_bad("17", 1, 16);
    u64_ok("4294967295", 0, UINT32_MAX, UINT32_MAX);
    u64_bad("4294967296", 0, UINT32_MAX);
    u64_ok("9223372036854775807", 0, INT64_MAX, INT64_MAX);
    u64_bad("9223372036854775808", 0, INT64_MAX);
    /* A range of one value. */
    u64_ok("7", 7, 7, 7);
    u64_bad("6", 7, 7);
    u64_bad("8", 7, 7);
}

static void test_u64_rejects(void **state)
{
    (void)state;
    u64_bad(NULL, 0, 10);
    u64_bad("", 0, 10);
    /* Signs, also on zero. */
    u64_bad("-1", 0, 10);
    u64_bad("+1", 0, 10);
    u64_bad("-0", 0, 10);
    u64_bad("+0", 0, 10);
    /* Leading whitespace of any kind (strtoull would skip it), also before a sign. */
    u64_bad(" 1", 0, 10);
    u64_bad("\t5", 0, 10);
    u64_bad("\n5", 0, 10);
    u64_bad("\v5", 0, 10);
    u64_bad("\f5", 0, 10);
    u64_bad("\r5", 0, 10);
    u64_bad("  5", 0, 10);
    u64_bad(" -1", 0, UINT64_MAX); /* strtoull takes it as 2^64-1 */
    u64_bad("\t+1", 0, 10);
    /* A trailing space, trailing garbage of any kind. */
    u64_bad("1 ", 0, 10);
    u64_bad("1x", 0, 10);
    u64_bad("1.0", 0, 10);
    u64_bad("1e3", 0, 10000);
    u64_bad("0x10", 0, 100);
    u64_bad("abc", 0, 10);
    /* Overflow of 64 bits, even with the widest range. */
    u64_bad("18446744073709551616", 0, UINT64_MAX);
    u64_bad("99999999999999999999999", 0, UINT64_MAX);
}

static void test_u64_errno_reset(void **state)
{
    (void)state;
    /* A stale errno from an earlier call is not taken for an overflow. */
    errno = ERANGE;
    u64_ok("3", 0, 10, 3);
}

/* ---- cli_parse_size_mib ------------------------------------------------------------------ */

static void size_ok(const char *s, uint64_t want)
{
    uint64_t v = UNTOUCHED;
    assert_int_equal(cli_parse_size_mib(s, &v), 0);
    assert_true(v == want);
}

static void size_bad(const char *s)
{
    uint64_t v = UNTOUCHED;
    assert_int_equal(cli_parse_size_mib(s, &v), FERR_INVALID);
    assert_true(v == UNTOUCHED);
}

static void test_size_units(void **state)
{
    (void)state;
    size_ok("0", 0);
    size_ok("512", 512);
    /* MiB in every spelling and case. */
    size_ok("512m", 512);
    size_ok("512M", 512);
    size_ok("512mb", 512);
    size_ok("512MB", 512);
    size_ok("512mib", 512);
    size_ok("512MiB", 512);
    size_ok("512MIB", 512);
    /* GiB. */
    size_ok("2g", 2048);
    size_ok("2G", 2048);
    size_ok("2GB", 2048);
    size_ok("2GiB", 2048);
    size_ok("2gib", 2048);
    /* TiB. */
    size_ok("1t", 1048576);
    size_ok("1T", 1048576);
    size_ok("1TB", 1048576);
    size_ok("1TiB", 1048576);
    size_ok("0T", 0);
    size_ok("007G", 7168);
}

static void test_size_bounds(void **state)
{
    (void)state;
    /* The largest count of each unit that fits in 64 bits, and one more. */
    size_ok("18446744073709551615", UINT64_MAX);
    size_bad("18446744073709551616");
    size_ok("18446744073709551615M", UINT64_MAX);
    size_ok("18014398509481983G", UINT64_C(18446744073709550592));
    size_bad("18014398509481984G");
    size_ok("17592186044415T", UINT64_C(18446744073708503040));
    size_bad("17592186044416T");
}

static void test_size_rejects(void **state)
{
    (void)state;
    size_bad(NULL);
    size_bad("");
    /* A unit without a number, a sign, a leading space. */
    size_bad("M");
    size_bad("G");
    size_bad("-1");
    size_bad("+1");
    size_bad(" 1");
    size_bad("\t1");
    size_bad("\n1G");
    /* Fractions, spaces before or after the unit. */
    size_bad("1.5G");
    size_bad("1 G");
    size_bad("1G ");
    /* Units that are not MiB, GiB or TiB. */
    size_bad("1K");
    size_bad("1KiB");
    size_bad("1B");
    size_bad("1P");
    size_bad("1PiB");
    size_bad("1Mi");
    size_bad("1Gi");
    size_bad("1GG");
    size_bad("1MBB");
    size_bad("0x10");
    size_bad("1e3");
}

static void test_size_errno_reset(void **state)
{
    (void)state;
    errno = ERANGE;
    size_ok("4G", 4096);
}

/* ---- cli_abspath ------------------------------------------------------------------------- */

/* A scratch directory that is the current directory during each test; the old one comes back
 * and the scratch directory goes in the teardown, also when the test failed. */
struct scratch {
    char old_cwd[PATH_MAX];
    char root[PATH_MAX]; /* realpath of the scratch directory */
};

static int abspath_teardown(void **state)
{
    struct scratch *s = *state;
    int rc = chdir(s->old_cwd);
    rm_rf(s->root);
    free(s);
    return rc;
}

static int abspath_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    char dir[] = "/tmp/ferry-test-cli-parse-XXXXXX";
    if (!s || !getcwd(s->old_cwd, sizeof(s->old_cwd)) || !mkdtemp(dir) || !realpath(dir, s->root)) {
        free(s);
        return -1;
    }
    *state = s;
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof(sub), "%s/sub", s->root);
    if (mkdir(sub, 0700) < 0 || chdir(s->root) < 0 || symlink("sub", "lnk") < 0) {
        abspath_teardown(state); /* cmocka runs no teardown after a failed setup */
        return -1;
    }
    return 0;
}

/* Asserts that path becomes root + suffix. */
static void abs_ok(const struct scratch *s, const char *path, const char *suffix)
{
    char out[PATH_MAX], want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s%s", s->root, suffix);
    assert_int_equal(cli_abspath(path, out, sizeof(out), NULL), 0);
    assert_string_equal(out, want);
}

static void test_abspath_absolute(void **state)
{
    (void)state;
    char out[PATH_MAX];
    /* Copied as they are: not resolved, not normalized, whether they exist or not. */
    assert_int_equal(cli_abspath("/", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/");
    assert_int_equal(cli_abspath("/nonexistent/a.vhd", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/nonexistent/a.vhd");
    assert_int_equal(cli_abspath("/a/../b/./c", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/a/../b/./c");
    assert_int_equal(cli_abspath("//x/", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "//x/");
}

static void test_abspath_relative(void **state)
{
    const struct scratch *s = *state;
    abs_ok(s, "a.vhd", "/a.vhd");
    abs_ok(s, "./a.vhd", "/a.vhd");
    abs_ok(s, "sub/a.vhd", "/sub/a.vhd");
    abs_ok(s, "sub//a.vhd", "/sub/a.vhd");
    abs_ok(s, "./sub/./a.vhd", "/sub/a.vhd");
    /* The directory is resolved (symlinks too), the last component is kept as it is. */
    abs_ok(s, "lnk/a.vhd", "/sub/a.vhd");
    abs_ok(s, "lnk", "/lnk");
    abs_ok(s, "sub/../a.vhd", "/a.vhd");
    abs_ok(s, "sub/..", "/sub/..");
    abs_ok(s, "..", "/..");
    /* A trailing slash or "." names the directory itself. */
    abs_ok(s, ".", "");
    abs_ok(s, "sub/", "/sub");
    abs_ok(s, "sub/.", "/sub");
    abs_ok(s, "lnk/", "/sub");
}

static void test_abspath_parent(void **state)
{
    (void)state; /* the setup made the scratch directory the current one */
    char out[PATH_MAX], want[PATH_MAX + 16], parent[PATH_MAX];
    /* "../x" is the real parent of the scratch directory plus x. */
    assert_non_null(realpath("..", parent));
    snprintf(want, sizeof(want), "%s/x.vhd", strcmp(parent, "/") ? parent : "");
    assert_int_equal(cli_abspath("../x.vhd", out, sizeof(out), NULL), 0);
    assert_string_equal(out, want);
}

static void test_abspath_missing_dir(void **state)
{
    const struct scratch *s = *state;
    /* A directory that does not exist cannot be resolved: the current one is put in front
     * of the whole path, left for ferryd to refuse. */
    abs_ok(s, "missing/a.vhd", "/missing/a.vhd");
    abs_ok(s, "missing/../a.vhd", "/missing/../a.vhd");
    abs_ok(s, "sub/missing/a.vhd", "/sub/missing/a.vhd");
}

static void test_abspath_in_root(void **state)
{
    (void)state;
    char out[PATH_MAX];
    /* In "/", no double slash. */
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(cli_abspath("x.vhd", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/x.vhd");
    assert_int_equal(cli_abspath(".", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/");
    assert_int_equal(cli_abspath("..", out, sizeof(out), NULL), 0);
    assert_string_equal(out, "/..");
}

static void test_abspath_too_long(void **state)
{
    const struct scratch *s = *state;
    char out[PATH_MAX];
    size_t rl = strlen(s->root);
    struct ferr e = {0};

    /* An absolute path fits when its terminating NUL does. */
    assert_int_equal(cli_abspath("/abcdef", out, 8, NULL), 0);
    assert_string_equal(out, "/abcdef");
    assert_int_equal(cli_abspath("/abcdefg", out, 8, NULL), -ENAMETOOLONG);

    /* A resolved one too: ROOT "/a.vhd" needs rl + 7 bytes. */
    assert_int_equal(cli_abspath("a.vhd", out, rl + 7, NULL), 0);
    assert_int_equal(cli_abspath("a.vhd", out, rl + 6, &e), -ENAMETOOLONG);
    assert_int_equal(e.code, -ENAMETOOLONG);
    assert_string_equal(e.msg, "'a.vhd': path is too long");
    assert_int_equal(cli_abspath(".", out, rl + 1, NULL), 0);
    assert_int_equal(cli_abspath(".", out, rl, NULL), -ENAMETOOLONG);
    /* And one in a missing directory. */
    assert_int_equal(cli_abspath("missing/a", out, rl + 11, NULL), 0);
    assert_int_equal(cli_abspath("missing/a", out, rl + 10, NULL), -ENAMETOOLONG);

    /* A directory part of PATH_MAX bytes or more. */
    static char huge[PATH_MAX + 8];
    memset(huge, 'a', PATH_MAX);
    strcpy(huge + PATH_MAX, "/x");
    assert_int_equal(cli_abspath(huge, out, sizeof(out), &e), -ENAMETOOLONG);
    /* The message shows 80 bytes of the path, so that the reason is not cut off. */
    char want[128];
    snprintf(want, sizeof(want), "'%.80s': path is too long", huge);
    assert_string_equal(e.msg, want);
    /* A last component that makes the result too long. */
    huge[0] = '\0';
    strcpy(huge, "sub/");
    memset(huge + 4, 'b', PATH_MAX - 8);
    huge[PATH_MAX - 4] = '\0';
    assert_int_equal(cli_abspath(huge, out, sizeof(out), NULL), -ENAMETOOLONG);
}

/* "" is a missing argument, not the current directory. */
static void test_abspath_empty(void **state)
{
    (void)state;
    char out[PATH_MAX] = "untouched";
    struct ferr e = {0};
    assert_int_equal(cli_abspath("", out, sizeof(out), &e), FERR_INVALID);
    assert_int_equal(e.code, FERR_INVALID);
    assert_string_equal(e.msg, "empty path");
    assert_string_equal(out, "untouched");
    assert_int_equal(cli_abspath("", out, sizeof(out), NULL), FERR_INVALID);
}

/* A current directory that was removed cannot be told: a relative path is an error, not sent
 * as it is (ferryd would take it from its own directory). Absolute paths still work. */
static void test_abspath_no_cwd(void **state)
{
    const struct scratch *s = *state;
    char out[PATH_MAX] = "untouched", gone[PATH_MAX + 8];
    snprintf(gone, sizeof(gone), "%s/gone", s->root);
    assert_int_equal(mkdir(gone, 0700), 0);
    assert_int_equal(chdir(gone), 0);
    assert_int_equal(rmdir(gone), 0);
    struct ferr e = {0};
    assert_int_equal(cli_abspath("a.vhd", out, sizeof(out), &e), -ENOENT);
    assert_string_equal(e.msg, "'a.vhd': cannot tell the current directory: No such file or "
                               "directory");
    assert_int_equal(cli_abspath("missing/a.vhd", out, sizeof(out), &e), -ENOENT);
    assert_int_equal(cli_abspath(".", out, sizeof(out), NULL), -ENOENT);
    assert_int_equal(cli_abspath("/abs/a.vhd", out, sizeof(out), &e), 0);
    assert_string_equal(out, "/abs/a.vhd");
}

/* ---- cli_parse_disk ---------------------------------------------------------------------- */

/* Parses arg as a --disk; asserts success and that the object is exactly want (a JSON text). */
static void disk_ok(const char *arg, const char *want)
{
    char why[256] = "untouched";
    json_t *d = NULL;
    assert_int_equal(cli_parse_disk(arg, &d, why, sizeof(why)), 0);
    assert_non_null(d);
    json_t *w = json_loads(want, 0, NULL);
    assert_non_null(w);
    bool same = json_equal(d, w);
    char *got = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(w);
    json_decref(d);
    if (!same) {
        char msg[512];
        snprintf(msg, sizeof(msg), "--disk '%s': got %s, want %s", arg, got, want);
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
    assert_string_equal(why, "untouched");
}

/* Parses arg as a --disk; asserts FERR_INVALID, no object and this message. */
static void disk_bad(const char *arg, const char *want_why)
{
    char why[256] = "";
    json_t *d = NULL;
    assert_int_equal(cli_parse_disk(arg, &d, why, sizeof(why)), FERR_INVALID);
    assert_null(d);
    assert_string_equal(why, want_why);
}

static void test_disk_valid(void **state)
{
    (void)state;
    disk_ok("a.vhd", "{\"path\":\"a.vhd\"}");
    disk_ok("/csv/vm1/disk0.vhd", "{\"path\":\"/csv/vm1/disk0.vhd\"}");
    disk_ok("a.vhd,size=1024", "{\"path\":\"a.vhd\",\"size_mib\":1024}");
    disk_ok("a.vhd,size=2G,ro", "{\"path\":\"a.vhd\",\"size_mib\":2048,\"readonly\":true}");
    disk_ok("a.vhd,readonly", "{\"path\":\"a.vhd\",\"readonly\":true}");
    disk_ok("a.vhd,ro,size=1T", "{\"path\":\"a.vhd\",\"size_mib\":1048576,\"readonly\":true}");
    disk_ok("a.vhd,size=0", "{\"path\":\"a.vhd\",\"size_mib\":0}");
    /* Empty options are skipped; a repeated size: the last one counts. */
    disk_ok("a.vhd,,ro,", "{\"path\":\"a.vhd\",\"readonly\":true}");
    disk_ok("a.vhd,size=1G,size=2G", "{\"path\":\"a.vhd\",\"size_mib\":2048}");
    disk_ok("a.vhd,size=1G,type=dynamic",
            "{\"path\":\"a.vhd\",\"size_mib\":1024,\"type\":\"dynamic\"}");
    /* The largest size: INT64_MAX MiB, however it is written. */
    disk_ok("a.vhd,size=9223372036854775807",
            "{\"path\":\"a.vhd\",\"size_mib\":9223372036854775807}");
    disk_ok("a.vhd,size=9007199254740991G",
            "{\"path\":\"a.vhd\",\"size_mib\":9223372036854774784}");
    disk_ok("a.vhd,bus=scsi", "{\"path\":\"a.vhd\",\"bus\":\"scsi\"}");
    disk_ok("a.vhd,ro,bus=ide", "{\"path\":\"a.vhd\",\"readonly\":true,\"bus\":\"ide\"}");
    disk_ok("a.vhd,bus=sata,bus=virtio", "{\"path\":\"a.vhd\",\"bus\":\"virtio\"}");
    /* UTF-8 beyond ASCII is a path like any other. */
    disk_ok("caf\xc3\xa9.vhd,ro", "{\"path\":\"caf\xc3\xa9.vhd\",\"readonly\":true}");
}

static void test_disk_rejects(void **state)
{
    (void)state;
    /* No PATH. */
    disk_bad("", "--disk '': a PATH is needed");
    disk_bad(",ro", "--disk ',ro': a PATH is needed");
    disk_bad(",,,", "--disk ',,,': a PATH is needed");
    disk_bad(",a.vhd", "--disk ',a.vhd': a PATH is needed");
    /* Sizes that are not sizes, or over INT64_MAX MiB. */
    disk_bad("a.vhd,size=", "--disk: size '' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=abc", "--disk: size 'abc' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=-1", "--disk: size '-1' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=1.5G", "--disk: size '1.5G' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=5Q", "--disk: size '5Q' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=9223372036854775808",
             "--disk: size '9223372036854775808' is not a size like 1024, 512M or 2G");
    disk_bad("a.vhd,size=9007199254740992G",
             "--disk: size '9007199254740992G' is not a size like 1024, 512M or 2G");
    /* Unknown options, also in another case, also after a good one. */
    disk_bad("a.vhd,foo", "--disk: unknown option 'foo' (size=MIB, type=fixed|dynamic, "
                          "bus=virtio|scsi|sata|ide or ro)");
    disk_bad("a.vhd,RO", "--disk: unknown option 'RO' (size=MIB, type=fixed|dynamic, "
                         "bus=virtio|scsi|sata|ide or ro)");
    disk_bad("a.vhd,ro,rw", "--disk: unknown option 'rw' (size=MIB, type=fixed|dynamic, "
                            "bus=virtio|scsi|sata|ide or ro)");
    disk_bad("a.vhd,type=sparse", "--disk: unknown option 'type=sparse' (size=MIB, "
                                  "type=fixed|dynamic, bus=virtio|scsi|sata|ide or ro)");
    disk_bad("a.vhd,bus=nvme", "--disk: unknown option 'bus=nvme' (size=MIB, type=fixed|dynamic, "
                               "bus=virtio|scsi|sata|ide or ro)");
    disk_bad("a.vhd,SIZE=1", "--disk: unknown option 'SIZE=1' (size=MIB, type=fixed|dynamic, "
                             "bus=virtio|scsi|sata|ide or ro)");
    /* A PATH that JSON cannot carry is refused, not left out of the object. */
    disk_bad("caf\xe9.vhd", "--disk: the PATH is not valid UTF-8 (ferryd takes UTF-8 paths)");
    disk_bad("\xff,size=1G", "--disk: the PATH is not valid UTF-8 (ferryd takes UTF-8 paths)");
    disk_bad("a\xc3.vhd,ro", "--disk: the PATH is not valid UTF-8 (ferryd takes UTF-8 paths)");
}

/* ---- cli_parse_nic ----------------------------------------------------------------------- */

static void nic_ok(const char *arg, const char *want)
{
    char why[256] = "untouched";
    json_t *n = NULL;
    assert_int_equal(cli_parse_nic(arg, &n, why, sizeof(why)), 0);
    assert_non_null(n);
    json_t *w = json_loads(want, 0, NULL);
    assert_non_null(w);
    bool same = json_equal(n, w);
    char *got = json_dumps(n, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(w);
    json_decref(n);
    if (!same) {
        char msg[512];
        snprintf(msg, sizeof(msg), "--nic '%s': got %s, want %s", arg, got, want);
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
    assert_string_equal(why, "untouched");
}

static void nic_bad(const char *arg, const char *want_why)
{
    char why[256] = "";
    json_t *n = NULL;
    assert_int_equal(cli_parse_nic(arg, &n, why, sizeof(why)), FERR_INVALID);
    assert_null(n);
    assert_string_equal(why, want_why);
}

static void test_nic_valid(void **state)
{
    (void)state;
    nic_ok("br0", "{\"bridge\":\"br0\"}");
    nic_ok("br0,mac=52:54:00:12:34:56", "{\"bridge\":\"br0\",\"mac\":\"52:54:00:12:34:56\"}");
    /* The MAC is ferryd's to check. */
    nic_ok("br0,mac=x", "{\"bridge\":\"br0\",\"mac\":\"x\"}");
    nic_ok("br0,model=vmxnet3", "{\"bridge\":\"br0\",\"model\":\"vmxnet3\"}");
    nic_ok("br0,model=e1000,mac=52:54:00:12:34:56",
           "{\"bridge\":\"br0\",\"mac\":\"52:54:00:12:34:56\",\"model\":\"e1000\"}");
    nic_ok("br0,mac=52:54:00:12:34:56,model=virtio",
           "{\"bridge\":\"br0\",\"mac\":\"52:54:00:12:34:56\",\"model\":\"virtio\"}");
}

static void test_nic_rejects(void **state)
{
    (void)state;
    nic_bad("", "--nic '': a BRIDGE is needed");
    nic_bad(",mac=52:54:00:12:34:56", "--nic ',mac=52:54:00:12:34:56': a BRIDGE is needed");
    nic_bad("br0,", "--nic 'br0,': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,mac=", "--nic 'br0,mac=': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,foo", "--nic 'br0,foo': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,MAC=x",
            "--nic 'br0,MAC=x': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,mac=a,b",
            "--nic 'br0,mac=a,b': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,mac=a,",
            "--nic 'br0,mac=a,': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,model=",
            "--nic 'br0,model=': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,model=e1000,model=e1000", "--nic 'br0,model=e1000,model=e1000': expected "
                                           "BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,mac=a,mac=b",
            "--nic 'br0,mac=a,mac=b': expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]");
    nic_bad("br0,model=e1000e", "--nic: model 'e1000e' is not virtio, e1000 or vmxnet3");
    /* A BRIDGE or MAC that JSON cannot carry is refused, not left out of the object. */
    nic_bad("br\xff", "--nic: the BRIDGE is not valid UTF-8 (it is a host bridge's name)");
    nic_bad("br\xff,foo", "--nic: the BRIDGE is not valid UTF-8 (it is a host bridge's name)");
    nic_bad("br0,mac=52:54:00:12:34:5\xe9",
            "--nic: the MAC is not valid UTF-8 (a MAC is like 52:54:00:12:34:56)");
}

/* ---- cli_ipv4_prefix_valid --------------------------------------------------------------- */

static void test_ipv4_prefix(void **state)
{
    (void)state;
    assert_true(cli_ipv4_prefix_valid("10.0.0.2/24"));
    assert_true(cli_ipv4_prefix_valid("0.0.0.0/0"));
    assert_true(cli_ipv4_prefix_valid("255.255.255.255/32"));
    assert_true(cli_ipv4_prefix_valid("192.168.100.200/16"));

    assert_false(cli_ipv4_prefix_valid(""));
    assert_false(cli_ipv4_prefix_valid("10.0.0.2"));    /* no prefix */
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/"));   /* empty prefix */
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/33")); /* over 32 */
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/-1"));
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/+8"));
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/ 8"));
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/8x"));
    assert_false(cli_ipv4_prefix_valid("10.0.0.2/8/8"));
    assert_false(cli_ipv4_prefix_valid("/24"));
    assert_false(cli_ipv4_prefix_valid("x/24"));
    assert_false(cli_ipv4_prefix_valid("10.0.0/24"));
    assert_false(cli_ipv4_prefix_valid("10.0.0.256/24"));
    assert_false(cli_ipv4_prefix_valid(" 10.0.0.2/24"));
    assert_false(cli_ipv4_prefix_valid("::1/64"));
    /* An address part longer than any IPv4 address is refused before it is copied: 16
     * characters (INET_ADDRSTRLEN) and more. */
    assert_false(cli_ipv4_prefix_valid("255.255.255.2555/8"));
    assert_false(cli_ipv4_prefix_valid("1111111111111111.1.1.1/8"));
}

/* ---- cli_check_address ------------------------------------------------------------------- */

static void addr_ok(const char *s)
{
    char why[256] = "untouched";
    assert_int_equal(cli_check_address(s, why, sizeof(why)), 0);
    assert_string_equal(why, "untouched");
}

static void addr_bad(const char *s, const char *want_why)
{
    char why[256] = "";
    assert_int_equal(cli_check_address(s, why, sizeof(why)), FERR_INVALID);
    assert_string_equal(why, want_why);
}

static void test_address_valid(void **state)
{
    (void)state;
    addr_ok("10.77.0.11:7443");
    addr_ok("0.0.0.0:1");
    addr_ok("255.255.255.255:65535");
    addr_ok("[::1]:7443");
    addr_ok("[fe80::1]:1");
    /* The longest IPv6 text, in brackets: 47 characters before the port. */
    addr_ok("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535");
}

static void test_address_rejects(void **state)
{
    (void)state;
    /* No port at all, or nothing before it. */
    addr_bad("10.0.0.1", "'10.0.0.1' is not an API address IP:PORT (like 10.77.0.11:7443)");
    addr_bad(":80", "':80' is not an API address IP:PORT (like 10.77.0.11:7443)");
    addr_bad("", "'' is not an API address IP:PORT (like 10.77.0.11:7443)");
    /* Ports outside 1..65535 or not numbers. */
    addr_bad("10.0.0.1:", "'10.0.0.1:': expected IP:PORT with a port in 1..65535");
    addr_bad("10.0.0.1:0", "'10.0.0.1:0': expected IP:PORT with a port in 1..65535");
    addr_bad("10.0.0.1:65536", "'10.0.0.1:65536': expected IP:PORT with a port in 1..65535");
    addr_bad("10.0.0.1:+80", "'10.0.0.1:+80': expected IP:PORT with a port in 1..65535");
    addr_bad("10.0.0.1:-80", "'10.0.0.1:-80': expected IP:PORT with a port in 1..65535");
    addr_bad("10.0.0.1:80x", "'10.0.0.1:80x': expected IP:PORT with a port in 1..65535");
    /* Hosts that are not an IPv4 address or a bracketed IPv6 one. */
    addr_bad("x:80", "'x:80': 'x' is not an IPv4 address (or [IPv6])");
    addr_bad("host.example:80", "'host.example:80': 'host.example' is not an IPv4 address (or "
                                "[IPv6])");
    addr_bad("10.0.0.256:80", "'10.0.0.256:80': '10.0.0.256' is not an IPv4 address (or [IPv6])");
    addr_bad("::1:80", "'::1:80': '::1' is not an IPv4 address (or [IPv6])");
    addr_bad("[::1:80", "'[::1:80': '[::1' is not an IPv4 address (or [IPv6])");
    addr_bad("[]:80", "'[]:80': '[]' is not an IPv4 address (or [IPv6])");
    addr_bad("[10.0.0.1]:80", "'[10.0.0.1]:80': '[10.0.0.1]' is not an IPv4 address (or [IPv6])");
    /* A host part of 48 characters or more is refused before it is copied (the message
     * speaks of the port, though). */
    addr_bad(
        "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555]:80",
        "'[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555]:80': expected IP:PORT with a port in "
        "1..65535");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64_valid),
        cmocka_unit_test(test_u64_bounds),
        cmocka_unit_test(test_u64_rejects),
        cmocka_unit_test(test_u64_errno_reset),
        cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_size_bounds),
        cmocka_unit_test(test_size_rejects),
        cmocka_unit_test(test_size_errno_reset),
        cmocka_unit_test(test_abspath_absolute),
        cmocka_unit_test_setup_teardown(test_abspath_relative, abspath_setup, abspath_teardown),
        cmocka_unit_test_setup_teardown(test_abspath_parent, abspath_setup, abspath_teardown),
        cmocka_unit_test_setup_teardown(test_abspath_missing_dir, abspath_setup, abspath_teardown),
        cmocka_unit_test_setup_teardown(test_abspath_in_root, abspath_setup, abspath_teardown),
        cmocka_unit_test_setup_teardown(test_abspath_too_long, abspath_setup, abspath_teardown),
        cmocka_unit_test(test_abspath_empty),
        cmocka_unit_test_setup_teardown(test_abspath_no_cwd, abspath_setup, abspath_teardown),
        cmocka_unit_test(test_disk_valid),
        cmocka_unit_test(test_disk_rejects),
        cmocka_unit_test(test_nic_valid),
        cmocka_unit_test(test_nic_rejects),
        cmocka_unit_test(test_ipv4_prefix),
        cmocka_unit_test(test_address_valid),
        cmocka_unit_test(test_address_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
