/* SPDX-License-Identifier: MIT */
/* Unit tests of the OVA index (src/import/ova.c) on tar archives built in memory the way GNU
 * tar and ovftool write them: ustar, pax and GNU long names, and each way one can be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/ova.h"

struct tar {
    uint8_t b[64 * 1024];
    size_t len;
    int fail_reads; /* > 0: reads fail with -EIO */
};

static struct tar t;
static struct ova_index idx;

static void header(const char *name, char type, uint64_t size, const char *magic)
{
    uint8_t *h = t.b + t.len;
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 7);
    char num[32];
    snprintf(num, sizeof num, "%011llo", (unsigned long long)(size & 077777777777ull));
    memcpy(h + 124, num, 12);
    h[156] = (uint8_t)type;
    memcpy(h + 257, magic, 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    t.len += 512;
}

static void data(const void *d, size_t n)
{
    memcpy(t.b + t.len, d, n);
    t.len += (n + 511) / 512 * 512;
}

static void member(const char *name, const char *content)
{
    header(name, '0', strlen(content),
           "ustar\0"
           "00");
    data(content, strlen(content));
}

static void end(void)
{
    t.len += 1024;
}

static int rd(void *ctx, uint64_t off, void *buf, size_t len, struct ferr *e)
{
    struct tar *tt = ctx;
    assert_true(off + len <= tt->len); /* ova_index_read's promise */
    if (tt->fail_reads)
        return ferr_set(e, -EIO, "read failed");
    memcpy(buf, tt->b + off, len);
    return 0;
}

static int index_it(struct ferr *e)
{
    return ova_index_read("deb.ova", t.len, rd, &t, &idx, e);
}

static void expect_error(const char *want)
{
    struct ferr e = {0};
    int rc = index_it(&e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "rc %d, message: %s\nwanted: %s\n", rc, e.msg, want);
        fail();
    }
    assert_int_equal(idx.n, 0);
}

static void test_ustar(void **state)
{
    memset(&t, 0, sizeof t);
    member("deb.ovf", "<Envelope/>");
    member("deb.mf", "SHA1...");
    member("./deb-disk1.vmdk", "KDMV");
    end();
    struct ferr e = {0};
    assert_int_equal(index_it(&e), 0);
    assert_int_equal(idx.n, 3);
    assert_string_equal(idx.members[0].name, "deb.ovf");
    assert_int_equal(idx.members[0].offset, 512);
    assert_int_equal(idx.members[0].size, 11);
    assert_string_equal(idx.members[2].name, "deb-disk1.vmdk");
    assert_int_equal(idx.members[2].offset, 512 * 5);
    const struct ova_member *m = ova_find(&idx, "deb.mf");
    assert_non_null(m);
    assert_memory_equal(t.b + m->offset, "SHA1...", 7);
    assert_null(ova_find(&idx, "nope"));
    /* no end-of-archive blocks, and the last member's padding cut: still whole */
    t.len -= 1024 + 508;
    assert_int_equal(index_it(&e), 0);
    assert_int_equal(idx.n, 3);
}

static void test_pax_gnu_dirs(void **state)
{
    memset(&t, 0, sizeof t);
    const char pax[] = "30 mtime=1700000000.123456789\n"
                       "43 path=a-very-long-directory-name/deb.ovf\n";
    header("PaxHeaders/deb.ovf", 'x', strlen(pax),
           "ustar\0"
           "00");
    data(pax, strlen(pax));
    header("deb.ovf", '0', 3,
           "ustar\0"
           "00");
    data("xyz", 3);
    const char ln[] = "long/long/name.vmdk";
    header("././@LongLink", 'L', sizeof ln, "ustar  \0");
    data(ln, sizeof ln);
    header("long/long/name.vm", '0', 1, "ustar  \0");
    data("k", 1);
    header("dir/", '5', 0,
           "ustar\0"
           "00");
    /* base-256 size */
    header("b256", '0', 0,
           "ustar\0"
           "00");
    uint8_t *h = t.b + t.len - 512;
    memset(h + 124, 0, 12);
    h[124] = 0x80;
    h[135] = 2;
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    data("zz", 2);
    end();
    struct ferr e = {0};
    int rc = index_it(&e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(idx.n, 3);
    assert_string_equal(idx.members[0].name, "a-very-long-directory-name/deb.ovf");
    assert_int_equal(idx.members[0].size, 3);
    assert_string_equal(idx.members[1].name, "long/long/name.vmdk");
    assert_string_equal(idx.members[2].name, "b256");
    assert_int_equal(idx.members[2].size, 2);
}

static void test_malformed(void **state)
{
    memset(&t, 0, sizeof t);
    end();
    expect_error("deb.ova: the archive holds no files");
    memset(&t, 0, sizeof t);
    t.len = 100;
    expect_error("deb.ova: byte 0: the archive ends inside a header");
    memset(&t, 0, sizeof t);
    member("a", "x");
    t.b[0] = 'b'; /* checksum no longer matches */
    end();
    expect_error("deb.ova: byte 0: the tar header's checksum is wrong");
    memset(&t, 0, sizeof t);
    header("a", '0', 1, "cpio\0\0\0\0");
    data("x", 1);
    end();
    expect_error("not a ustar or GNU tar header");
    memset(&t, 0, sizeof t);
    member("a", "x");
    header("b", '0', 100000,
           "ustar\0"
           "00");
    expect_error("deb.ova: byte 1024: a member of 100000 bytes does not fit in the archive of "
                 "1536 bytes: it is truncated");
    memset(&t, 0, sizeof t);
    header("link", '2', 0,
           "ustar\0"
           "00");
    end();
    expect_error("byte 0: member \"link\" is not a regular file (tar type '2')");
    memset(&t, 0, sizeof t);
    header("hard", '1', 0,
           "ustar\0"
           "00");
    end();
    expect_error("(tar type '1')");
    memset(&t, 0, sizeof t);
    member("../evil.ovf", "x");
    end();
    expect_error("member \"../evil.ovf\" is outside the archive");
    memset(&t, 0, sizeof t);
    member("/etc/x", "x");
    end();
    expect_error("is outside the archive");
    memset(&t, 0, sizeof t);
    member("a.ovf", "x");
    member("./a.ovf", "y");
    end();
    expect_error("deb.ova: byte 1024: member \"a.ovf\" appears twice");
    memset(&t, 0, sizeof t);
    header("PaxHeaders/x", 'x', 10,
           "ustar\0"
           "00");
    data("9 pathx\n\n", 10);
    member("x", "x");
    end();
    expect_error("a malformed pax extended header");
    memset(&t, 0, sizeof t);
    header("PaxHeaders/x", 'x', 200000,
           "ustar\0"
           "00");
    expect_error("does not fit"); /* the size is checked against the archive first */
    memset(&t, 0, sizeof t);
    member("a", "x");
    memcpy(t.b + 124, "abcdefghijk", 11); /* size not octal (checksum redone) */
    memset(t.b + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += t.b[i];
    snprintf((char *)t.b + 148, 8, "%06o", sum);
    end();
    expect_error("the size field is not a number");
    /* a read error is passed on */
    memset(&t, 0, sizeof t);
    member("a", "x");
    end();
    t.fail_reads = 1;
    struct ferr e = {0};
    assert_int_equal(index_it(&e), -EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ustar),
        cmocka_unit_test(test_pax_gnu_dirs),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
