/* SPDX-License-Identifier: MIT */
/* Unit tests of vhd_check (src/storage/vhdcheck.c) on VHD images built in memory: valid fixed and
 * dynamic ones, and one of each way a VHD can be damaged, each with its exact refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/vhd.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define NAME "/csv/vol1/t.vhd"

/* ---- images in memory ------------------------------------------------------------------------ */

struct img {
    uint8_t *b;
    uint64_t len;
    uint64_t size;       /* the disk size in the footer */
    uint32_t block_size; /* dynamic */
    uint32_t entries;    /* dynamic: BAT entries */
    uint64_t bat_at;     /* dynamic */
    int fail_at;         /* > 0: the read of that number (1-based) fails with -EIO */
    int reads;
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The specification's checksum: one's complement of the byte sum, the field left out. */
static void sum_into(uint8_t *p, size_t len, size_t field)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < field || i >= field + 4)
            sum += p[i];
    put32(p + field, ~sum);
}

/* vhd_check promises to read inside the file only: a read elsewhere fails the test. */
static int mem_read(void *ctx, uint64_t off, void *buf, size_t len, struct ferr *e)
{
    struct img *m = ctx;
    if (off > m->len || len > m->len - off)
        fail_msg("vhd_check read %zu bytes at %llu of a %llu-byte file", len,
                 (unsigned long long)off, (unsigned long long)m->len);
    if (++m->reads == m->fail_at)
        return ferr_set(e, -EIO, "Input/output error");
    memcpy(buf, m->b + off, len);
    return 0;
}

static uint8_t *footer(struct img *m)
{
    return m->b + m->len - VHD_FOOTER_SIZE;
}

static uint8_t *header(struct img *m)
{
    return m->b + VHD_FOOTER_SIZE;
}

static void write_footer(uint8_t *f, uint64_t size, uint32_t type, uint64_t data_offset)
{
    memset(f, 0, VHD_FOOTER_SIZE);
    memcpy(f, "conectix", 8);
    put32(f + 8, 2);        /* features: the reserved bit set */
    put32(f + 12, 0x10000); /* file format version 1.0 */
    put64(f + 16, data_offset);
    put32(f + 24, 0x32a80292); /* time stamp */
    memcpy(f + 28, "qem2", 4);
    put32(f + 32, 0x50003);
    memcpy(f + 36, "Wi2k", 4);
    put64(f + 40, size);
    put64(f + 48, size);
    put32(f + 56, 0xffff10ff); /* geometry: the largest, so the size counts */
    put32(f + 60, type);
    for (int i = 0; i < 16; i++)
        f[68 + i] = (uint8_t)(0xa0 + i); /* unique id */
    sum_into(f, VHD_FOOTER_SIZE, 64);
}

/* A fixed VHD: size bytes of data, then the footer. */
static void make_fixed(struct img *m, uint64_t size)
{
    memset(m, 0, sizeof(*m));
    m->size = size;
    m->len = size + VHD_FOOTER_SIZE;
    m->b = calloc(1, m->len);
    assert_non_null(m->b);
    for (uint64_t i = 0; i < size; i += 4096)
        m->b[i] = 0x5a; /* data that is not zero */
    write_footer(footer(m), size, 2, UINT64_MAX);
}

static uint64_t bitmap_bytes(uint32_t block_size)
{
    return (block_size / 512 / 8 + 511) / 512 * 512;
}

/* A dynamic VHD laid out as qemu-img lays it out: footer copy, header at 512, BAT at 1536
 * (padded to a sector), then the blocks of the first nused entries in order, then the footer. */
static void make_dynamic(struct img *m, uint64_t size, uint32_t block_size, unsigned nused)
{
    memset(m, 0, sizeof(*m));
    m->size = size;
    m->block_size = block_size;
    m->entries = (uint32_t)((size + block_size - 1) / block_size);
    m->bat_at = 1536;
    uint64_t bat_end = (m->bat_at + 4ull * m->entries + 511) / 512 * 512;
    uint64_t span = bitmap_bytes(block_size) + block_size;
    m->len = bat_end + nused * span + VHD_FOOTER_SIZE;
    m->b = calloc(1, m->len);
    assert_non_null(m->b);
    uint8_t *h = header(m);
    memcpy(h, "cxsparse", 8);
    put64(h + 8, UINT64_MAX);
    put64(h + 16, m->bat_at);
    put32(h + 24, 0x10000);
    put32(h + 28, m->entries);
    put32(h + 32, block_size);
    sum_into(h, VHD_HEADER_SIZE, 36);
    memset(m->b + m->bat_at, 0xff, 4ull * m->entries);
    for (unsigned i = 0; i < nused; i++) {
        uint64_t at = bat_end + i * span;
        put32(m->b + m->bat_at + 4 * i, (uint32_t)(at / 512));
        memset(m->b + at, 0xff, bitmap_bytes(block_size));
        m->b[at + bitmap_bytes(block_size)] = (uint8_t)(i + 1);
    }
    write_footer(footer(m), size, 3, 512);
    memcpy(m->b, footer(m), VHD_FOOTER_SIZE);
}

/* After a change to the footer: both copies, both checksums. */
static void refoot(struct img *m)
{
    sum_into(footer(m), VHD_FOOTER_SIZE, 64);
    if (m->len >= 2 * VHD_FOOTER_SIZE && memcmp(m->b, "conectix", 8) == 0)
        memcpy(m->b, footer(m), VHD_FOOTER_SIZE);
}

static void rehead(struct img *m)
{
    sum_into(header(m), VHD_HEADER_SIZE, 36);
}

static void set_bat(struct img *m, uint32_t i, uint32_t sector)
{
    put32(m->b + m->bat_at + 4ull * i, sector);
}

static void drop(struct img *m)
{
    free(m->b);
    m->b = NULL;
}

/* Runs vhd_check on m; expects the refusal want (with NAME for %s) and nothing else. */
static void expect_refusal(struct img *m, int code, const char *want)
{
    char msg[2048];
    snprintf(msg, sizeof(msg), want, NAME, NAME);
    struct ferr e = {0};
    struct vhd_layout l;
    int rc = vhd_check(NAME, m->len, mem_read, m, &l, &e);
    if (rc != code || strcmp(e.msg, msg) != 0)
        fail_msg("rc %d (want %d)\n got: %s\nwant: %s", rc, code, e.msg, msg);
    drop(m);
}

static void expect_ok(struct img *m, struct vhd_layout *l)
{
    struct ferr e = {0};
    int rc = vhd_check(NAME, m->len, mem_read, m, l, &e);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, e.msg);
}

/* ---- valid images ---------------------------------------------------------------------------- */

static void test_fixed_ok(void **state)
{
    (void)state;
    struct img m;
    make_fixed(&m, 1 * MIB);
    struct vhd_layout l;
    expect_ok(&m, &l);
    assert_string_equal(l.subformat, "fixed");
    assert_int_equal(l.current_size, MIB);
    assert_int_equal(l.block_size, 0);
    assert_int_equal(l.used_blocks, 0);
    /* out may be NULL. */
    struct ferr e = {0};
    assert_int_equal(vhd_check(NAME, m.len, mem_read, &m, NULL, &e), 0);
    drop(&m);
}

static void test_dynamic_ok(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 3);
    struct vhd_layout l;
    expect_ok(&m, &l);
    assert_string_equal(l.subformat, "dynamic");
    assert_int_equal(l.current_size, 10 * MIB);
    assert_int_equal(l.block_size, 2 * MIB);
    assert_int_equal(l.max_table_entries, 5);
    assert_int_equal(l.used_blocks, 3);
    drop(&m);

    /* Empty (nothing allocated), 512 KiB blocks (Hyper-V, Azure), a size that is no multiple
     * of the block size, blocks in any order and with gaps between them. */
    make_dynamic(&m, 3 * MIB + 512, 512 * KIB, 0);
    expect_ok(&m, &l);
    assert_int_equal(l.max_table_entries, 7);
    assert_int_equal(l.used_blocks, 0);
    drop(&m);
    make_dynamic(&m, 4 * MIB, 512 * KIB, 3);
    uint32_t b0 = get32(m.b + m.bat_at), b2 = get32(m.b + m.bat_at + 8);
    set_bat(&m, 0, b2);
    set_bat(&m, 2, UINT32_MAX);
    set_bat(&m, 7, b0);
    expect_ok(&m, &l);
    assert_int_equal(l.used_blocks, 3);
    drop(&m);

    /* A BAT with more entries than the size needs is fine while they fit the file. */
    make_dynamic(&m, 4 * MIB, 2 * MIB, 0);
    put32(header(&m) + 28, 3);
    set_bat(&m, 2, UINT32_MAX);
    rehead(&m);
    expect_ok(&m, &l);
    assert_int_equal(l.max_table_entries, 3);
    drop(&m);
}

static void test_largest_dynamic_ok(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, VHD_MAX_SIZE, 2 * MIB, 2);
    struct vhd_layout l;
    expect_ok(&m, &l);
    assert_int_equal(l.max_table_entries, 1044480);
    drop(&m);
}

/* ---- not a VHD, truncated ---------------------------------------------------------------------
 */

static void test_too_short(void **state)
{
    (void)state;
    struct img m = {.b = calloc(1, 100), .len = 100};
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s is not a VHD file (100 bytes, shorter than a footer)");
    m = (struct img){.b = calloc(1, 1), .len = 0};
    expect_refusal(&m, FERR_INVALID, "vhd: %s is not a VHD file (0 bytes, shorter than a footer)");
}

static void test_wrong_cookie(void **state)
{
    (void)state;
    struct img m;
    make_fixed(&m, MIB);
    memcpy(footer(&m), "conectiX", 8);
    refoot(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s is not a VHD file (no \"conectix\" footer at its end): an image of "
                   "another format, or a VHD that lost its end; convert the former with ferry "
                   "disk convert, restore the latter from a backup");
    /* A file of zeros, as short as a footer. */
    m = (struct img){.b = calloc(1, 512), .len = 512};
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s is not a VHD file (no \"conectix\" footer at its end): an image of "
                   "another format, or a VHD that lost its end; convert the former with ferry "
                   "disk convert, restore the latter from a backup");
}

static void test_truncated_dynamic(void **state)
{
    (void)state;
    struct img m;
    /* Cut in the middle of its last block: the footer is gone, its copy is there. */
    make_dynamic(&m, 10 * MIB, 2 * MIB, 2);
    m.len -= 1 * MIB;
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer at the end of the file is missing or damaged, but its copy "
                   "at the start is there: the file was cut short or overwritten at its end; "
                   "restore it from a backup");

    /* Cut, and a footer written after what is left (a copy that stopped early, say): the last
     * block now reaches past the end. Blocks start at 2048, 2 MiB + 512 bytes each. */
    make_dynamic(&m, 10 * MIB, 2 * MIB, 2);
    uint64_t cut = 1 * MIB;
    memmove(m.b + m.len - cut - VHD_FOOTER_SIZE, footer(&m), VHD_FOOTER_SIZE);
    m.len -= cut;
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: block 1 (bitmap and data, 2097664 bytes at byte 2099712) reaches "
                   "past the end of the data at byte 3148800, where the footer starts: the file "
                   "was cut short or its block allocation table is damaged; restore it from a "
                   "backup");

    /* Shorter than a footer copy, a header and a footer. */
    uint8_t f[VHD_FOOTER_SIZE];
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    memcpy(f, footer(&m), sizeof(f));
    m.len = 1536;
    memcpy(footer(&m), f, sizeof(f));
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: a dynamic VHD holds at least a footer copy, a 1024-byte header and a "
                   "footer (2048 bytes); this file has 1536 bytes: it was cut short; restore it "
                   "from a backup");
}

static void test_fixed_wrong_length(void **state)
{
    (void)state;
    struct img m;
    make_fixed(&m, MIB);
    /* The footer moved 4 KiB further: the file grew (or was cut, seen from the other side). */
    uint8_t *bigger = calloc(1, m.len + 4096);
    assert_non_null(bigger);
    memcpy(bigger + MIB + 4096, footer(&m), VHD_FOOTER_SIZE);
    free(m.b);
    m.b = bigger;
    m.len += 4096;
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: a fixed VHD of 1048576 bytes is its data plus a 512-byte footer, "
                   "1049088 bytes, but the file has 1053184: it was cut short or grown; restore it "
                   "from a backup");
}

/* ---- the footer ------------------------------------------------------------------------------ */

static void test_footer_checksum(void **state)
{
    (void)state;
    struct img m;
    make_fixed(&m, MIB);
    footer(&m)[100] = 1; /* a flipped byte, checksum untouched */
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer's checksum is 0xffffe2b8, expected 0xffffe2b7: the footer "
                   "is damaged; restore it from a backup");
}

static void test_footer_version(void **state)
{
    (void)state;
    struct img m;
    make_fixed(&m, MIB);
    put32(footer(&m) + 12, 0x20001);
    refoot(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer says file format version 2.1; ferry and QEMU read version "
                   "1.x only: the footer is damaged or the file is no VHD of this format; restore "
                   "it from a backup");
    /* Another minor version is the same format. */
    make_fixed(&m, MIB);
    put32(footer(&m) + 12, 0x10005);
    refoot(&m);
    struct vhd_layout l;
    expect_ok(&m, &l);
    drop(&m);
}

static void test_footer_type(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, 1, 5, 6, 0x03000000};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct img m;
        make_fixed(&m, MIB);
        put32(footer(&m) + 60, bad[k]);
        refoot(&m);
        char want[512];
        snprintf(want, sizeof(want),
                 "vhd: %%s: the footer has unknown disk type %u (2 is fixed, 3 dynamic, 4 "
                 "differencing): the footer is damaged; restore it from a backup",
                 bad[k]);
        expect_refusal(&m, FERR_INVALID, want);
    }
}

static void test_differencing(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
    put32(footer(&m) + 60, 4);
    refoot(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: differencing VHDs are not supported: QEMU's vpc driver ignores the "
                   "parent and would read its sectors as zeros; convert it to a fixed or dynamic "
                   "VHD first (with a tool that follows the parent, such as Hyper-V's "
                   "Convert-VHD: qemu-img and ferry disk convert do not)");
}

static void test_size(void **state)
{
    (void)state;
    struct img m;
    /* Over the limit: one block more than 2040 GiB (the file stays small: nothing allocated). */
    make_dynamic(&m, VHD_MAX_SIZE + 2 * MIB, 2 * MIB, 0);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its disk size of 2190435418112 bytes is over VHD's limit of 2040 GiB "
                   "(2190433320960 bytes), which QEMU refuses too: keep the data on smaller "
                   "disks");
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put64(footer(&m) + 48, 10 * MIB + 100);
    refoot(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer gives a disk size of 10485860 bytes, not a positive "
                   "multiple of 512: the footer is damaged; restore it from a backup");
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put64(footer(&m) + 48, 0);
    refoot(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer gives a disk size of 0 bytes, not a positive multiple of "
                   "512: the footer is damaged; restore it from a backup");
}

static void test_footer_copy_mismatch(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
    m.b[70] ^= 1; /* the copy's unique id */
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer copy at the start of the file differs from the footer at "
                   "its end (first at byte 70): one of them is damaged; restore it from a backup");
    /* No copy at all. */
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
    memset(m.b, 0, VHD_FOOTER_SIZE);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the footer copy at the start of the file differs from the footer at "
                   "its end (first at byte 0): one of them is damaged; restore it from a backup");
}

/* ---- the dynamic disk header ----------------------------------------------------------------- */

static void test_header_offset(void **state)
{
    (void)state;
    static const uint64_t bad[] = {0, 100, 1025, 4096, UINT64_MAX};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct img m;
        make_dynamic(&m, 10 * MIB, 2 * MIB, 0); /* 2560 bytes: the footer starts at 2048 */
        put64(footer(&m) + 16, bad[k]);
        refoot(&m);
        char want[512];
        snprintf(want, sizeof(want),
                 "vhd: %%s: the footer places the dynamic disk header at byte %llu, outside the "
                 "file (a 1024-byte header fits between bytes 512 and 2048): the footer is "
                 "damaged or the file was cut short; restore it from a backup",
                 (unsigned long long)bad[k]);
        expect_refusal(&m, FERR_INVALID, want);
    }
}

static void test_header_cookie(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    memcpy(header(&m), "cxsparsf", 8);
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: no dynamic disk header at byte 512 (cookie \"cxsparse\" missing): the "
                   "file is damaged; restore it from a backup");
}

static void test_header_checksum(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    header(&m)[600] = 7; /* in the parent name, checksum untouched */
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the dynamic disk header's checksum is 0xfffff472, expected "
                   "0xfffff46b: the header is damaged; restore it from a backup");
}

static void test_header_version(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put32(header(&m) + 24, 0);
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: the dynamic disk header has version 0.0; ferry and QEMU read version "
                   "1.x only: the header is damaged; restore it from a backup");
}

static void test_block_size(void **state)
{
    (void)state;
    static const uint32_t broken[] = {0, 256, 3 * MIB, 2 * MIB + 512};
    for (size_t k = 0; k < sizeof(broken) / sizeof(broken[0]); k++) {
        struct img m;
        make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
        put32(header(&m) + 32, broken[k]);
        rehead(&m);
        char want[512];
        snprintf(want, sizeof(want),
                 "vhd: %%s: the dynamic disk header gives a block size of %u bytes, not a power "
                 "of two of at least 512 (QEMU cannot read it either): the header is damaged; "
                 "restore it from a backup",
                 broken[k]);
        expect_refusal(&m, FERR_INVALID, want);
    }
    /* Powers of two below 512 KiB: QEMU reads them, ferry does not take them. */
    struct img m;
    make_dynamic(&m, 1 * MIB, 256 * KIB, 0);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block size of 262144 bytes is below the 512 KiB ferry takes "
                   "(Hyper-V writes 512 KiB or 2 MiB): convert it to a VHD with 2 MiB blocks "
                   "(ferry disk convert %s NEW --type dynamic)");
    make_dynamic(&m, 64 * KIB, 512, 0);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block size of 512 bytes is below the 512 KiB ferry takes "
                   "(Hyper-V writes 512 KiB or 2 MiB): convert it to a VHD with 2 MiB blocks "
                   "(ferry disk convert %s NEW --type dynamic)");
    /* Larger powers of two are taken. */
    make_dynamic(&m, 64 * MIB, 32 * MIB, 1);
    struct vhd_layout l;
    expect_ok(&m, &l);
    assert_int_equal(l.block_size, 32 * MIB);
    drop(&m);
}

static void test_max_table_entries(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put32(header(&m) + 28, 4); /* 5 needed */
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block allocation table has 4 entries of 2097152 bytes, too few "
                   "for the disk size of 10485760 bytes (5 entries): the header is damaged; "
                   "restore it from a backup");
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put32(header(&m) + 28, 1044481);
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block allocation table has 1044481 entries of 2097152 bytes, more "
                   "than a disk of VHD's largest size (2040 GiB) needs (1044480): the header is "
                   "damaged; restore it from a backup");
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put32(header(&m) + 28, UINT32_MAX);
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block allocation table has 4294967295 entries of 2097152 bytes, "
                   "more than a disk of VHD's largest size (2040 GiB) needs (1044480): the header "
                   "is damaged; restore it from a backup");
}

static void test_table_offset(void **state)
{
    (void)state;
    /* The file is 2560 bytes: the footer starts at 2048. 5 entries take 20 bytes. */
    static const uint64_t bad[] = {0, 500, 2040, 2049, 1ull << 40, UINT64_MAX - 3};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct img m;
        make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
        put64(header(&m) + 16, bad[k]);
        rehead(&m);
        char want[512];
        snprintf(want, sizeof(want),
                 "vhd: %%s: its block allocation table (20 bytes at byte %llu) does not lie "
                 "between the footer copy and the footer (bytes 512 to 2048): the file was cut "
                 "short or its header is damaged; restore it from a backup",
                 (unsigned long long)bad[k]);
        expect_refusal(&m, FERR_INVALID, want);
    }
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 0);
    put64(header(&m) + 16, 1000);
    rehead(&m);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: its block allocation table (20 bytes at byte 1000) overlaps the "
                   "dynamic disk header at byte 512: the header is damaged; restore it from a "
                   "backup");
}

/* ---- the block allocation table -------------------------------------------------------------- */

static void test_bat_entry_past_end(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1); /* block 0 at 2048; the footer at 2099712 */
    set_bat(&m, 3, 5000);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: block 3 (bitmap and data, 2097664 bytes at byte 2560000) reaches past "
                   "the end of the data at byte 2099712, where the footer starts: the file was cut "
                   "short or its block allocation table is damaged; restore it from a backup");
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
    set_bat(&m, 4, 0xfffffffe);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: block 4 (bitmap and data, 2097664 bytes at byte 2199023254528) "
                   "reaches past the end of the data at byte 2099712, where the footer starts: "
                   "the file was cut short or its block allocation table is damaged; restore it "
                   "from a backup");
    /* One sector short of its place: it would run into the footer. */
    make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
    set_bat(&m, 0, 5);
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: block 0 (bitmap and data, 2097664 bytes at byte 2560) reaches past "
                   "the end of the data at byte 2099712, where the footer starts: the file was cut "
                   "short or its block allocation table is damaged; restore it from a backup");
}

static void test_bat_entry_on_metadata(void **state)
{
    (void)state;
    /* Two 512 KiB blocks fill the file: point the first at the metadata, inside the file. */
    static const struct {
        uint32_t sector;
        const char *what;
    } bad[] = {{0, "footer copy"}, {1, "dynamic disk header"}, {3, "block allocation table"}};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct img m;
        make_dynamic(&m, 4 * MIB, 512 * KIB, 2);
        set_bat(&m, 1, bad[k].sector);
        char want[512];
        snprintf(want, sizeof(want),
                 "vhd: %%s: block 1 at byte %u overlaps the %s: the block allocation table is "
                 "damaged; restore it from a backup",
                 bad[k].sector * 512, bad[k].what);
        expect_refusal(&m, FERR_INVALID, want);
    }
}

static void test_bat_blocks_overlap(void **state)
{
    (void)state;
    struct img m;
    make_dynamic(&m, 4 * MIB, 512 * KIB, 2); /* blocks at sectors 4 and 1029 (512 KiB + 512) */
    set_bat(&m, 6, 4);                       /* the same block twice */
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: blocks 0 and 6 overlap (at bytes 2048 and 2048, 524800 bytes each): "
                   "the block allocation table is damaged; restore it from a backup");
    make_dynamic(&m, 4 * MIB, 512 * KIB, 2);
    set_bat(&m, 1, 1028); /* one sector into block 0 */
    expect_refusal(&m, FERR_INVALID,
                   "vhd: %s: blocks 0 and 1 overlap (at bytes 2048 and 526336, 524800 bytes "
                   "each): the block allocation table is damaged; restore it from a backup");
}

/* ---- reads that fail ------------------------------------------------------------------------- */

static void test_read_errors(void **state)
{
    (void)state;
    static const char *const what[] = {"footer", "footer copy", "dynamic disk header",
                                       "block allocation table"};
    static const unsigned at[] = {2099712, 0, 512, 1536};
    for (int k = 0; k < 4; k++) {
        struct img m;
        make_dynamic(&m, 10 * MIB, 2 * MIB, 1);
        m.fail_at = k + 1;
        struct ferr e = {0};
        assert_int_equal(vhd_check(NAME, m.len, mem_read, &m, NULL, &e), -EIO);
        char want[256];
        snprintf(want, sizeof(want), "vhd: %s: read the %s at byte %u: Input/output error", NAME,
                 what[k], at[k]);
        assert_string_equal(e.msg, want);
        drop(&m);
    }
    struct ferr e = {0};
    assert_int_equal(vhd_check(NAME, 4096, NULL, NULL, NULL, &e), FERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_ok),
        cmocka_unit_test(test_dynamic_ok),
        cmocka_unit_test(test_largest_dynamic_ok),
        cmocka_unit_test(test_too_short),
        cmocka_unit_test(test_wrong_cookie),
        cmocka_unit_test(test_truncated_dynamic),
        cmocka_unit_test(test_fixed_wrong_length),
        cmocka_unit_test(test_footer_checksum),
        cmocka_unit_test(test_footer_version),
        cmocka_unit_test(test_footer_type),
        cmocka_unit_test(test_differencing),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_footer_copy_mismatch),
        cmocka_unit_test(test_header_offset),
        cmocka_unit_test(test_header_cookie),
        cmocka_unit_test(test_header_checksum),
        cmocka_unit_test(test_header_version),
        cmocka_unit_test(test_block_size),
        cmocka_unit_test(test_max_table_entries),
        cmocka_unit_test(test_table_offset),
        cmocka_unit_test(test_bat_entry_past_end),
        cmocka_unit_test(test_bat_entry_on_metadata),
        cmocka_unit_test(test_bat_blocks_overlap),
        cmocka_unit_test(test_read_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
