/* SPDX-License-Identifier: MIT */
/* Unit tests of the small helpers (common/util.c): names, paths, files, directories, hex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"

/* ---- a scratch directory per test, removed in the teardown ------------------------------- */

struct scratch {
    char dir[PATH_MAX];
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    strcpy(s->dir, "/tmp/ferry-test-util-XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;
    int rc = rm_rf(s->dir);
    free(s);
    return rc;
}

/* dir/name into a static buffer (one at a time is enough for these tests). */
static const char *at(const struct scratch *s, const char *name)
{
    static char buf[2][PATH_MAX + 64];
    static int i;
    i = !i;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", s->dir, name);
    return buf[i];
}

/* Writes a file with exactly these bytes. */
static void put_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* A file of n bytes, byte i being 'a' + i % 26. */
static void put_pattern(const char *path, size_t n)
{
    char *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
    put_file(path, buf, n);
    free(buf);
}

/* The names in dir, sorted, joined by ','; "" for an empty directory. */
static void names_in(const char *dir, char *out, size_t size)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
            if (out[0])
                strncat(out, ",", size - strlen(out) - 1);
            strncat(out, nm, size - strlen(out) - 1);
        }
        free(list[i]);
    }
    free(list);
}

static void assert_names(const char *dir, const char *want)
{
    char got[4096];
    names_in(dir, got, sizeof(got));
    assert_string_equal(got, want);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- name_valid -------------------------------------------------------------------------- */

static void test_name_valid_accepts(void **state)
{
    (void)state;
    assert_true(name_valid("a", 63));
    assert_true(name_valid("vm1", 63));
    assert_true(name_valid("a-b", 63));
    assert_true(name_valid("a--b", 63));
    assert_true(name_valid("web-01-x9", 63));
    assert_true(name_valid("z0", 63));
}

static void test_name_valid_length(void **state)
{
    (void)state;
    char s[80];
    /* Exactly max characters is valid; one more is not. */
    memset(s, 'a', sizeof(s));
    s[63] = '\0';
    assert_true(name_valid(s, 63));
    s[63] = 'a';
    s[64] = '\0';
    assert_false(name_valid(s, 63));
    assert_true(name_valid("abc", 3));
    assert_false(name_valid("abcd", 3));
    assert_true(name_valid("a", 1));
    assert_false(name_valid("ab", 1));
    /* max 0 allows nothing. */
    assert_false(name_valid("a", 0));
}

static void test_name_valid_rejects(void **state)
{
    (void)state;
    assert_false(name_valid(NULL, 63));
    assert_false(name_valid("", 63));
    /* Must start with a letter. */
    assert_false(name_valid("1vm", 63));
    assert_false(name_valid("-vm", 63));
    assert_false(name_valid("0", 63));
    /* Must not end with '-'. */
    assert_false(name_valid("vm-", 63));
    assert_false(name_valid("a-", 63));
    /* Only a-z 0-9 -. */
    assert_false(name_valid("Vm", 63));
    assert_false(name_valid("vM", 63));
    assert_false(name_valid("v_m", 63));
    assert_false(name_valid("v.m", 63));
    assert_false(name_valid("v m", 63));
    assert_false(name_valid("v/m", 63));
    assert_false(name_valid("vm\n", 63));
    assert_false(name_valid("v\xc3\xa9", 63)); /* é in UTF-8 */
    assert_false(name_valid("\xe9t\xe9", 63)); /* Latin-1; char may be signed */
    /* The letters and digits at the edges of their ranges. */
    assert_false(name_valid("a`", 63)); /* 'a' - 1 */
    assert_false(name_valid("a{", 63)); /* 'z' + 1 */
    assert_false(name_valid("a/", 63)); /* '0' - 1 */
    assert_false(name_valid("a:", 63)); /* '9' + 1 */
    assert_true(name_valid("az09", 63));
}

/* ---- fmt_path ---------------------------------------------------------------------------- */

static void test_fmt_path(void **state)
{
    (void)state;
    char buf[8];
    /* 7 characters and the NUL fit in 8 bytes. */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(fmt_path(buf, sizeof(buf), "%s/%s", "abc", "def"), 0);
    assert_string_equal(buf, "abc/def");
    /* 8 characters do not: an error, not a truncated path. */
    assert_int_equal(fmt_path(buf, sizeof(buf), "%s/%s", "abcd", "def"), -ENAMETOOLONG);
    assert_int_equal(fmt_path(buf, sizeof(buf), "%s", "a much longer path"), -ENAMETOOLONG);
    /* The empty string fits in one byte; nothing fits in none. */
    assert_int_equal(fmt_path(buf, 1, "%s", ""), 0);
    assert_string_equal(buf, "");
    assert_int_equal(fmt_path(buf, 1, "%s", "a"), -ENAMETOOLONG);
    assert_int_equal(fmt_path(buf, 0, "%s", ""), -ENAMETOOLONG);
    assert_int_equal(fmt_path(buf, sizeof(buf), "%d-%u", -12, 345u), 0);
    assert_string_equal(buf, "-12-345");
}

/* ---- hex_value --------------------------------------------------------------------------- */

static void test_hex_value(void **state)
{
    (void)state;
    for (int c = -128; c < 128; c++) {
        int want = -1;
        if (c >= '0' && c <= '9')
            want = c - '0';
        else if (c >= 'a' && c <= 'f')
            want = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            want = c - 'A' + 10;
        if (hex_value((char)c) != want)
            fail_msg("hex_value(%d) = %d, want %d", c, hex_value((char)c), want);
    }
    /* And by hand, so the test does not only mirror the code. */
    assert_int_equal(hex_value('0'), 0);
    assert_int_equal(hex_value('9'), 9);
    assert_int_equal(hex_value('a'), 10);
    assert_int_equal(hex_value('f'), 15);
    assert_int_equal(hex_value('A'), 10);
    assert_int_equal(hex_value('F'), 15);
    assert_int_equal(hex_value('g'), -1);
    assert_int_equal(hex_value('G'), -1);
    assert_int_equal(hex_value('/'), -1);
    assert_int_equal(hex_value(':'), -1);
    assert_int_equal(hex_value('`'), -1);
    assert_int_equal(hex_value('@'), -1);
    assert_int_equal(hex_value('\0'), -1);
    assert_int_equal(hex_value((char)0xff), -1);
}

/* ---- utf8_valid_len ---------------------------------------------------------------------- */

static size_t u8(const char *s)
{
    return utf8_valid_len(s, strlen(s));
}

static void test_utf8_by_hand(void **state)
{
    (void)state;
    assert_int_equal(u8(""), 0);
    assert_int_equal(u8("plain ascii\t\n"), 13);
    assert_int_equal(u8("caf\xc3\xa9"), 5);         /* é */
    assert_int_equal(u8("\xe2\x82\xac"), 3);        /* € */
    assert_int_equal(u8("\xf0\x9f\x98\x80 ok"), 7); /* U+1F600 */
    assert_int_equal(u8("\xed\x9f\xbf"), 3);        /* U+D7FF, just below the surrogates */
    assert_int_equal(u8("\xee\x80\x80"), 3);        /* U+E000, just above them */
    assert_int_equal(u8("\xf4\x8f\xbf\xbf"), 4);    /* U+10FFFF, the last code point */
    assert_int_equal(u8("\xc2\x80"), 2);            /* U+0080, the first 2-byte one */
    assert_int_equal(u8("\xe0\xa0\x80"), 3);        /* U+0800 */
    assert_int_equal(u8("\xf0\x90\x80\x80"), 4);    /* U+10000 */
    /* The valid prefix stops at the first bad byte. */
    assert_int_equal(u8("ab\xff"
                        "cd"),
                     2);
    assert_int_equal(u8("caf\xe9"), 3);              /* Latin-1 é */
    assert_int_equal(u8("\x80"), 0);                 /* a lone continuation byte */
    assert_int_equal(u8("a\xc3"), 1);                /* cut after the lead byte */
    assert_int_equal(u8("a\xe2\x82"), 1);            /* cut inside € */
    assert_int_equal(u8("\xc3\xa9\xf0\x9f\x98"), 2); /* cut inside an emoji */
    assert_int_equal(u8("\xc0\xaf"), 0);             /* overlong '/' */
    assert_int_equal(u8("\xc1\xbf"), 0);
    assert_int_equal(u8("\xe0\x9f\xbf"), 0);     /* overlong U+07FF */
    assert_int_equal(u8("\xf0\x8f\xbf\xbf"), 0); /* overlong U+FFFF */
    assert_int_equal(u8("\xed\xa0\x80"), 0);     /* U+D800, a surrogate */
    assert_int_equal(u8("\xed\xbf\xbf"), 0);     /* U+DFFF */
    assert_int_equal(u8("\xf4\x90\x80\x80"), 0); /* U+110000 */
    assert_int_equal(u8("\xf5\x80\x80\x80"), 0);
    assert_int_equal(u8("\xc3\x41"), 0); /* a continuation that is not */
    assert_int_equal(u8("\xe2\x82\x41"), 0);
    assert_int_equal(u8("\xf0\x9f\x98\xc0"), 0);
    /* len counts, not the NUL: a NUL is a valid character, bytes past len are not looked at. */
    assert_int_equal(utf8_valid_len("a\0b", 3), 3);
    assert_int_equal(utf8_valid_len("ab\xff", 2), 2);
    assert_int_equal(utf8_valid_len("\xc3\xa9", 1), 0);
}

/* Agrees with jansson, which refuses strings that are not UTF-8: every 1- and 2-byte sequence
 * and, for every lead byte, 3- and 4-byte ones built from the bytes at the edges of the
 * ranges. */
static void test_utf8_agrees_with_jansson(void **state)
{
    (void)state;
    static const unsigned char edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                         0xa0, 0xbf, 0xc0, 0xc2, 0xf4, 0xff};
    const size_t ne = sizeof(edge);
    unsigned char b[4];
    for (unsigned n = 1; n <= 4; n++) {
        size_t combos = n == 1 ? 256 : n == 2 ? 65536 : n == 3 ? 256 * ne * ne : 256 * ne * ne * ne;
        for (size_t k = 0; k < combos; k++) {
            size_t r = k;
            b[0] = (unsigned char)(r % 256), r /= 256;
            for (unsigned i = 1; i < n; i++) {
                if (n == 2)
                    b[i] = (unsigned char)(r % 256), r /= 256;
                else
                    b[i] = edge[r % ne], r /= ne;
            }
            json_t *j = json_stringn((const char *)b, n);
            bool want = j != NULL;
            json_decref(j);
            bool got = utf8_valid_len((const char *)b, n) == n;
            if (got != want)
                fail_msg("%u bytes %02x %02x %02x %02x: valid %d, jansson says %d", n, b[0],
                         n > 1 ? b[1] : 0, n > 2 ? b[2] : 0, n > 3 ? b[3] : 0, got, want);
        }
    }
}

/* ---- clocks ------------------------------------------------------------------------------ */

static void test_clocks(void **state)
{
    (void)state;
    uint64_t wall = now_wall_ms();
    time_t t = time(NULL);
    /* The wall clock is in milliseconds since the epoch: within a second of time(). */
    assert_true(wall / 1000 + 1 >= (uint64_t)t && wall / 1000 <= (uint64_t)t + 1);
    uint64_t a = now_mono_ms();
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t b = now_mono_ms();
    assert_true(b >= a + 20);
    assert_true(b < a + 5000);
}

/* ---- mkdir_p ----------------------------------------------------------------------------- */

static void test_mkdir_p_nested(void **state)
{
    const struct scratch *s = *state;
    struct ferr e = {0};
    assert_int_equal(mkdir_p(at(s, "a/b/c"), 0700, &e), 0);
    assert_true(is_dir(at(s, "a")));
    assert_true(is_dir(at(s, "a/b")));
    assert_true(is_dir(at(s, "a/b/c")));
    /* The mode is the one given (the umask of the tests is at most 022). */
    struct stat st;
    assert_int_equal(stat(at(s, "a/b/c"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* Existing directories are fine, all of them or some. */
    assert_int_equal(mkdir_p(at(s, "a/b/c"), 0700, &e), 0);
    assert_int_equal(mkdir_p(at(s, "a/b/c/d"), 0700, &e), 0);
    assert_true(is_dir(at(s, "a/b/c/d")));
    assert_int_equal(mkdir_p(s->dir, 0700, &e), 0);
    /* Double and trailing slashes. */
    assert_int_equal(mkdir_p(at(s, "x//y/"), 0700, &e), 0);
    assert_true(is_dir(at(s, "x/y")));
    assert_int_equal(mkdir_p("/", 0700, &e), 0);
    assert_int_equal(e.code, 0);
    /* A symlink to a directory is a directory. */
    assert_int_equal(symlink("a", at(s, "lnk")), 0);
    assert_int_equal(mkdir_p(at(s, "lnk"), 0700, &e), 0);
    assert_int_equal(mkdir_p(at(s, "lnk/b/new"), 0700, &e), 0);
    assert_true(is_dir(at(s, "a/b/new")));
}

static void test_mkdir_p_file_in_the_way(void **state)
{
    const struct scratch *s = *state;
    struct ferr e = {0};
    char want[PATH_MAX + 128];
    put_file(at(s, "f"), "x", 1);
    /* A file where a parent should be. */
    assert_int_equal(mkdir_p(at(s, "f/sub"), 0700, &e), -ENOTDIR);
    assert_int_equal(e.code, -ENOTDIR);
    snprintf(want, sizeof(want), "mkdir %s: Not a directory", at(s, "f/sub"));
    assert_string_equal(e.msg, want);
    /* A file where the directory itself should be: not a directory either. */
    ferr_clear(&e);
    assert_int_equal(mkdir_p(at(s, "f"), 0700, &e), -ENOTDIR);
    snprintf(want, sizeof(want), "mkdir %s: exists and is not a directory", at(s, "f"));
    assert_string_equal(e.msg, want);
    /* So is a dangling symlink. */
    assert_int_equal(symlink("nowhere", at(s, "dangling")), 0);
    assert_int_equal(mkdir_p(at(s, "dangling"), 0700, &e), -ENOTDIR);
    /* Nothing was created or changed. */
    assert_names(s->dir, "dangling,f");
}

static void test_mkdir_p_bad_paths(void **state)
{
    (void)state;
    struct ferr e = {0};
    /* The empty path is not the current directory. */
    assert_int_equal(mkdir_p("", 0700, &e), FERR_INVALID);
    assert_string_equal(e.msg, "mkdir: empty path");
    /* 4096 bytes and more do not fit PATH_MAX with the NUL. */
    static char huge[PATH_MAX + 2];
    memset(huge, 'a', PATH_MAX);
    huge[0] = '/';
    huge[PATH_MAX] = '\0';
    assert_int_equal(mkdir_p(huge, 0700, &e), -ENAMETOOLONG);
    assert_int_equal(e.code, -ENAMETOOLONG);
    /* A missing parent that cannot be created: /proc does not take directories. */
    assert_int_equal(mkdir_p("/proc/ferry-test/x", 0700, &e), -ENOENT);
    assert_string_equal(e.msg, "mkdir /proc/ferry-test: No such file or directory");
    /* A NULL ferr is allowed. */
    assert_int_equal(mkdir_p("", 0700, NULL), FERR_INVALID);
}

/* ---- file_read_all ----------------------------------------------------------------------- */

/* Reads a pattern file of n bytes with max; asserts the code, and on success the content. */
static void read_n(const struct scratch *s, size_t n, size_t max, int want_rc)
{
    char name[64];
    snprintf(name, sizeof(name), "p%zu", n);
    put_pattern(at(s, name), n);
    char *out = (char *)0x1;
    size_t len = 12345;
    struct ferr e = {0};
    int rc = file_read_all(at(s, name), max, &out, &len, &e);
    if (rc != want_rc)
        fail_msg("file of %zu bytes, max %zu: rc %d (%s), want %d", n, max, rc, e.msg, want_rc);
    if (rc < 0) {
        assert_true(out == (char *)0x1); /* untouched */
        assert_int_equal(len, 12345);
        char want[PATH_MAX + 128];
        snprintf(want, sizeof(want), "read %s: larger than %zu bytes", at(s, name), max);
        assert_string_equal(e.msg, want);
        return;
    }
    assert_int_equal(len, n);
    assert_int_equal(out[n], '\0');
    for (size_t i = 0; i < n; i++)
        if (out[i] != (char)('a' + i % 26))
            fail_msg("file of %zu bytes: byte %zu is %d", n, i, out[i]);
    free(out);
}

static void test_read_all_bounds(void **state)
{
    const struct scratch *s = *state;
    /* A file of exactly max bytes is read; one byte more is refused. Sizes around the
     * buffer's growth steps (4096, 8192, ... with one byte kept for the NUL). */
    static const size_t sizes[] = {0, 1, 100, 4094, 4095, 4096, 4097, 8191, 8192, 8193, 20000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        read_n(s, n, n, 0);
        read_n(s, n, n + 1, 0);
        read_n(s, n, 1 << 20, 0);
        if (n > 0)
            read_n(s, n, n - 1, -EFBIG);
    }
    read_n(s, 20000, 10, -EFBIG);
    read_n(s, 1, 0, -EFBIG);
}

static void test_read_all_content(void **state)
{
    const struct scratch *s = *state;
    /* Embedded NULs count; len may be NULL. */
    put_file(at(s, "bin"), "a\0b\0", 4);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(at(s, "bin"), 4, &out, &len, NULL), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "a\0b\0", 5);
    free(out);
    out = NULL;
    assert_int_equal(file_read_all(at(s, "bin"), 100, &out, NULL, NULL), 0);
    assert_string_equal(out, "a");
    free(out);
}

static void test_read_all_errors(void **state)
{
    const struct scratch *s = *state;
    struct ferr e = {0};
    char *out = (char *)0x1;
    size_t len = 7;
    char want[PATH_MAX + 128];
    assert_int_equal(file_read_all(at(s, "missing"), 100, &out, &len, &e), -ENOENT);
    snprintf(want, sizeof(want), "open %s: No such file or directory", at(s, "missing"));
    assert_string_equal(e.msg, want);
    assert_true(out == (char *)0x1);
    assert_int_equal(len, 7);
    /* A directory opens but does not read. */
    assert_int_equal(file_read_all(s->dir, 100, &out, &len, &e), -EISDIR);
    snprintf(want, sizeof(want), "read %s: Is a directory", s->dir);
    assert_string_equal(e.msg, want);
    /* An endless file stops at the bound. */
    assert_int_equal(file_read_all("/dev/zero", 10000, &out, &len, &e), -EFBIG);
    assert_string_equal(e.msg, "read /dev/zero: larger than 10000 bytes");
    assert_true(out == (char *)0x1);
}

/* ---- file_write_atomic ------------------------------------------------------------------- */

static void assert_content(const char *path, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(path, 1 << 20, &out, &len, NULL), 0);
    assert_int_equal(len, strlen(want));
    assert_string_equal(out, want);
    free(out);
}

static void test_write_atomic_new_and_replace(void **state)
{
    const struct scratch *s = *state;
    struct ferr e = {0};
    assert_int_equal(file_write_atomic(at(s, "f"), "hello", 5, &e), 0);
    assert_content(at(s, "f"), "hello");
    struct stat st;
    assert_int_equal(stat(at(s, "f"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_names(s->dir, "f");

    /* Replacing: a hard link to the old file still sees the old bytes, so the new ones went to
     * a new inode that was renamed over the name, never written into the old file. */
    assert_int_equal(link(at(s, "f"), at(s, "old")), 0);
    assert_int_equal(file_write_atomic(at(s, "f"), "bye", 3, &e), 0);
    assert_content(at(s, "f"), "bye");
    assert_content(at(s, "old"), "hello");
    /* Empty data makes an empty file. */
    assert_int_equal(file_write_atomic(at(s, "f"), "", 0, &e), 0);
    assert_content(at(s, "f"), "");
    assert_int_equal(e.code, 0);
    /* No temporary file is left behind. */
    assert_names(s->dir, "f,old");
}

static void test_write_atomic_failures(void **state)
{
    const struct scratch *s = *state;
    struct ferr e = {0};
    char want[PATH_MAX + 128];

    /* The directory does not exist: the temporary file cannot be opened. */
    assert_int_equal(file_write_atomic(at(s, "nodir/f"), "x", 1, &e), -ENOENT);
    snprintf(want, sizeof(want), "open %s.tmp.%d: No such file or directory", at(s, "nodir/f"),
             (int)getpid());
    assert_string_equal(e.msg, want);

    /* The name is a directory that is not empty: the rename fails, the temporary file goes. */
    assert_int_equal(mkdir(at(s, "d"), 0700), 0);
    put_file(at(s, "d/keep"), "k", 1);
    ferr_clear(&e);
    assert_int_equal(file_write_atomic(at(s, "d"), "x", 1, &e), -EISDIR);
    snprintf(want, sizeof(want), "rename %s: Is a directory", at(s, "d"));
    assert_string_equal(e.msg, want);
    assert_names(s->dir, "d");
    assert_names(at(s, "d"), "keep");

    /* A write that fails half way (the file size limit of this process): the old file is
     * intact and the temporary file goes. */
    put_file(at(s, "f"), "old", 3);
    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    lim = old_lim;
    lim.rlim_cur = 10;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ferr_clear(&e);
    int rc = file_write_atomic(at(s, "f"), "0123456789abcdefghij", 20, &e);
    setrlimit(RLIMIT_FSIZE, &old_lim);
    signal(SIGXFSZ, old_sig);
    assert_int_equal(rc, -EFBIG);
    snprintf(want, sizeof(want), "write %s.tmp.%d: File too large", at(s, "f"), (int)getpid());
    assert_string_equal(e.msg, want);
    assert_content(at(s, "f"), "old");
    assert_names(s->dir, "d,f");

    /* A path too long for the temporary name. */
    static char huge[PATH_MAX];
    memset(huge, 'a', sizeof(huge) - 8);
    huge[0] = '/';
    huge[sizeof(huge) - 8] = '\0';
    assert_int_equal(file_write_atomic(huge, "x", 1, &e), -ENAMETOOLONG);
    /* The message starts with the path and is cut at FERR_MSG_MAX. */
    assert_int_equal(e.code, -ENAMETOOLONG);
    assert_memory_equal(e.msg, "write /aaaa", 11);
}

/* ---- rm_rf ------------------------------------------------------------------------------- */

static void test_rm_rf_tree(void **state)
{
    const struct scratch *s = *state;
    /* t/{f, sub/{g, deep/h}, lnk -> ../outside, empty/} and outside/keep. */
    struct ferr e = {0};
    assert_int_equal(mkdir_p(at(s, "t/sub/deep"), 0700, &e), 0);
    assert_int_equal(mkdir_p(at(s, "t/empty"), 0700, &e), 0);
    assert_int_equal(mkdir_p(at(s, "outside"), 0700, &e), 0);
    put_file(at(s, "t/f"), "f", 1);
    put_file(at(s, "t/sub/g"), "g", 1);
    put_file(at(s, "t/sub/deep/h"), "h", 1);
    put_file(at(s, "outside/keep"), "k", 1);
    assert_int_equal(symlink("../outside", at(s, "t/lnk")), 0);
    assert_int_equal(rm_rf(at(s, "t")), 0);
    /* The tree is gone; what the symlink pointed to is not. */
    assert_names(s->dir, "outside");
    assert_content(at(s, "outside/keep"), "k");
}

static void test_rm_rf_single(void **state)
{
    const struct scratch *s = *state;
    /* A missing path is already removed. */
    assert_int_equal(rm_rf(at(s, "missing")), 0);
    /* A file. */
    put_file(at(s, "f"), "x", 1);
    assert_int_equal(rm_rf(at(s, "f")), 0);
    /* A symlink to a directory: the link goes, not the directory's content. */
    assert_int_equal(mkdir(at(s, "d"), 0700), 0);
    put_file(at(s, "d/keep"), "k", 1);
    assert_int_equal(symlink("d", at(s, "lnk")), 0);
    assert_int_equal(rm_rf(at(s, "lnk")), 0);
    assert_names(s->dir, "d");
    assert_names(at(s, "d"), "keep");
    /* A path through a file cannot be walked. */
    put_file(at(s, "f"), "x", 1);
    assert_int_equal(rm_rf(at(s, "f/x")), -ENOTDIR);
    assert_names(s->dir, "d,f");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid_accepts),
        cmocka_unit_test(test_name_valid_length),
        cmocka_unit_test(test_name_valid_rejects),
        cmocka_unit_test(test_fmt_path),
        cmocka_unit_test(test_hex_value),
        cmocka_unit_test(test_utf8_by_hand),
        cmocka_unit_test(test_utf8_agrees_with_jansson),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test_setup_teardown(test_mkdir_p_nested, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_p_file_in_the_way, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test(test_mkdir_p_bad_paths),
        cmocka_unit_test_setup_teardown(test_read_all_bounds, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_read_all_content, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_read_all_errors, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_new_and_replace, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_failures, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_tree, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_single, scratch_setup, scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
