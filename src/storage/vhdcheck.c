/* SPDX-License-Identifier: MIT */
/* A VHD's metadata read and judged with no I/O of its own: the footer, and for a dynamic disk its
 * header, block allocation table (BAT) and where its blocks lie (vhd_check in vhd.h). */
#include "storage/vhd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Offsets from Microsoft's "Virtual Hard Disk Image Format Specification" (version 1.0, 2006):
 * "Hard Disk Footer Format" (512 bytes, big-endian) ...
 */
enum {
    F_COOKIE = 0,       /* "conectix" */
    F_VERSION = 12,     /* file format version: major in the high 16 bits, 0x00010000 */
    F_DATA_OFFSET = 16, /* dynamic: absolute byte offset of the dynamic disk header */
    F_CURRENT_SIZE = 48,
    F_GEOMETRY = 56, /* cylinders (2 bytes), heads, sectors per track */
    F_DISK_TYPE = 60,
    F_CHECKSUM = 64, /* one's complement of the byte sum, this field left out */
};
/* ... and "Dynamic Disk Header Format" (1024 bytes). */
enum {
    H_COOKIE = 0,        /* "cxsparse" */
    H_TABLE_OFFSET = 16, /* absolute byte offset of the BAT */
    H_VERSION = 24,      /* 0x00010000 */
    H_MAX_TABLE_ENTRIES = 28,
    H_BLOCK_SIZE = 32, /* data bytes per block, its sector bitmap not counted */
    H_CHECKSUM = 36,
};
enum { TYPE_FIXED = 2, TYPE_DYNAMIC = 3, TYPE_DIFFERENCING = 4 };

#define SECTOR 512u
#define BAT_UNUSED 0xFFFFFFFFu
#define BAT_CHUNK 4096 /* entries read at once */

/* What to do about a file whose metadata is wrong: ferry repairs nothing in place. */
#define RESTORE "restore it from a backup"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* The VHD checksum of a structure of len bytes whose checksum field starts at field. */
static uint32_t checksum(const uint8_t *p, size_t len, size_t field)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < field || i >= field + 4)
            sum += p[i];
    return ~sum;
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case TYPE_FIXED:
        return "fixed";
    case TYPE_DYNAMIC:
        return "dynamic";
    case TYPE_DIFFERENCING:
        return "differencing";
    default:
        return NULL;
    }
}

int vhd_footer_parse(const uint8_t footer[VHD_FOOTER_SIZE], char subformat[16],
                     uint64_t *current_size, struct ferr *e)
{
    if (memcmp(footer + F_COOKIE, "conectix", 8) != 0)
        return ferr_set(e, FERR_INVALID, "no VHD footer (cookie \"conectix\" missing)");
    uint32_t stored = be32(footer + F_CHECKSUM),
             want = checksum(footer, VHD_FOOTER_SIZE, F_CHECKSUM);
    if (stored != want)
        return ferr_set(e, FERR_INVALID, "VHD footer checksum is 0x%08x, expected 0x%08x", stored,
                        want);
    uint32_t type = be32(footer + F_DISK_TYPE);
    const char *name = type_name(type);
    if (!name)
        return ferr_set(e, FERR_INVALID, "VHD footer has unknown disk type %u", type);
    snprintf(subformat, 16, "%s", name);
    if (current_size)
        *current_size = be64(footer + F_CURRENT_SIZE);
    return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* The CHS geometry of a disk of size bytes, after the VHD specification's appendix. */
static void geometry(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
    uint64_t total = size / SECTOR, cth;
    unsigned h, s;
    if (total > 65535ull * 16 * 255)
        total = 65535ull * 16 * 255;
    if (total >= 65535ull * 16 * 63) {
        s = 255, h = 16, cth = total / s;
    } else {
        s = 17, cth = total / s;
        h = (unsigned)((cth + 1023) / 1024);
        if (h < 4)
            h = 4;
        if (cth >= h * 1024ull || h > 16)
            s = 31, h = 16, cth = total / s;
        if (cth >= h * 1024ull)
            s = 63, h = 16, cth = total / s;
    }
    *cyl = (uint16_t)(cth / h), *heads = (uint8_t)h, *spt = (uint8_t)s;
}

int vhd_footer_resize(uint8_t footer[VHD_FOOTER_SIZE], uint64_t new_size, struct ferr *e)
{
    char sub[16];
    uint64_t cur;
    int rc = vhd_footer_parse(footer, sub, &cur, e);
    if (rc < 0)
        return rc;
    if (new_size % SECTOR || new_size > VHD_MAX_SIZE)
        return ferr_set(e, FERR_INVALID, "VHD size %llu is not a multiple of 512 up to %llu",
                        (unsigned long long)new_size, (unsigned long long)VHD_MAX_SIZE);
    put_be32(footer + F_CURRENT_SIZE, (uint32_t)(new_size >> 32));
    put_be32(footer + F_CURRENT_SIZE + 4, (uint32_t)new_size);
    /* 65535/16/255 is QEMU's mark for "the size is the current size" (force_size): kept */
    static const uint8_t max_chs[4] = {0xff, 0xff, 16, 255};
    if (memcmp(footer + F_GEOMETRY, max_chs, 4) != 0) {
        uint16_t cyl;
        uint8_t heads, spt;
        geometry(new_size, &cyl, &heads, &spt);
        footer[F_GEOMETRY] = (uint8_t)(cyl >> 8), footer[F_GEOMETRY + 1] = (uint8_t)cyl;
        footer[F_GEOMETRY + 2] = heads, footer[F_GEOMETRY + 3] = spt;
    }
    put_be32(footer + F_CHECKSUM, checksum(footer, VHD_FOOTER_SIZE, F_CHECKSUM));
    return 0;
}

/* One check under way. */
struct check {
    const char *name;
    uint64_t file_size;
    vhd_read_fn read;
    void *ctx;
    struct ferr *e;
};

static int get(struct check *c, uint64_t offset, void *buf, size_t len, const char *what)
{
    int rc = c->read(c->ctx, offset, buf, len, c->e);
    if (rc < 0)
        ferr_prefix(c->e, "vhd: %s: read the %s at byte %llu", c->name, what,
                    (unsigned long long)offset);
    return rc;
}

/* [a, a + alen) and [b, b + blen) share a byte (no sum overflows: offsets here are below 2^63,
 * lengths below 2^34). */
static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int check_footer(struct check *c, const uint8_t foot[VHD_FOOTER_SIZE], uint32_t *type,
                        uint64_t *size)
{
    const char *n = c->name;
    if (memcmp(foot + F_COOKIE, "conectix", 8) != 0) {
        /* A dynamic disk keeps a copy of its footer at offset 0: if that is there, the file
         * is a VHD whose end was lost, which deserves a better word than "not a VHD". */
        uint8_t head[8];
        int rc;
        if (c->file_size >= 2 * VHD_FOOTER_SIZE &&
            (rc = get(c, 0, head, sizeof(head), "footer copy")) < 0)
            return rc;
        if (c->file_size >= 2 * VHD_FOOTER_SIZE && memcmp(head, "conectix", 8) == 0)
            return ferr_set(c->e, FERR_INVALID,
                            "vhd: %s: the footer at the end of the file is missing or damaged, "
                            "but its copy at the start is there: the file was cut short or "
                            "overwritten at its end; " RESTORE,
                            n);
        return ferr_set(
            c->e, FERR_INVALID,
            "vhd: %s is not a VHD file (no \"conectix\" footer at its end): an image of "
            "another format, or a VHD that lost its end; convert the former with ferry "
            "disk convert, restore the latter from a backup",
            n);
    }
    uint32_t stored = be32(foot + F_CHECKSUM), want = checksum(foot, VHD_FOOTER_SIZE, F_CHECKSUM);
    if (stored != want)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the footer's checksum is 0x%08x, expected 0x%08x: the footer is "
                        "damaged; " RESTORE,
                        n, stored, want);
    uint32_t version = be32(foot + F_VERSION);
    if (version >> 16 != 1)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the footer says file format version %u.%u; ferry and QEMU read "
                        "version 1.x only: the footer is damaged or the file is no VHD of this "
                        "format; " RESTORE,
                        n, version >> 16, version & 0xffff);
    *type = be32(foot + F_DISK_TYPE);
    if (*type == TYPE_DIFFERENCING)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: differencing VHDs are not supported: QEMU's vpc driver ignores "
                        "the parent and would read its sectors as zeros; convert it to a fixed or "
                        "dynamic VHD first (with a tool that follows the parent, such as Hyper-V's "
                        "Convert-VHD: qemu-img and ferry disk convert do not)",
                        n);
    if (!type_name(*type))
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the footer has unknown disk type %u (2 is fixed, 3 dynamic, 4 "
                        "differencing): the footer is damaged; " RESTORE,
                        n, *type);
    *size = be64(foot + F_CURRENT_SIZE);
    if (*size == 0 || *size % SECTOR != 0)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the footer gives a disk size of %llu bytes, not a positive "
                        "multiple of 512: the footer is damaged; " RESTORE,
                        n, (unsigned long long)*size);
    if (*size > VHD_MAX_SIZE)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: its disk size of %llu bytes is over VHD's limit of 2040 GiB "
                        "(%llu bytes), which QEMU refuses too: keep the data on smaller disks",
                        n, (unsigned long long)*size, (unsigned long long)VHD_MAX_SIZE);
    return 0;
}

/* The BAT entries of a dynamic disk: every used one a whole block before the footer, clear of
 * the metadata and of every other block. */
static int check_blocks(struct check *c, uint64_t header_at, uint64_t bat_at, uint32_t entries,
                        uint32_t block_size, uint32_t *used_out)
{
    const char *n = c->name;
    /* Each block starts with a bitmap of one bit per sector, padded to whole sectors. */
    uint64_t bitmap = ((uint64_t)block_size / SECTOR / 8 + SECTOR - 1) / SECTOR * SECTOR;
    uint64_t span = bitmap + block_size, data_end = c->file_size - VHD_FOOTER_SIZE;
    uint64_t bat_len = (uint64_t)entries * 4;
    uint8_t raw[BAT_CHUNK * 4];
    uint64_t *used = NULL; /* (byte offset / 512) << 32 | entry index, for the overlap check */
    uint32_t nused = 0;
    int rc = 0;
    for (uint32_t first = 0; first < entries; first += BAT_CHUNK) {
        uint32_t k = entries - first < BAT_CHUNK ? entries - first : BAT_CHUNK;
        if ((rc = get(c, bat_at + (uint64_t)first * 4, raw, (size_t)k * 4,
                      "block allocation table")) < 0)
            goto after_scan;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t sector = be32(raw + 4 * j), i = first + j;
            if (sector == BAT_UNUSED)
                continue;
            uint64_t at = (uint64_t)sector * SECTOR;
            if (at + span > data_end) {
                rc = ferr_set(c->e, FERR_INVALID,
                              "vhd: %s: block %u (bitmap and data, %llu bytes at byte %llu) "
                              "reaches past the end of the data at byte %llu, where the footer "
                              "starts: the file was cut short or its block allocation table is "
                              "damaged; " RESTORE,
                              n, i, (unsigned long long)span, (unsigned long long)at,
                              (unsigned long long)data_end);
                goto after_scan;
            }
            const char *hit = overlaps(at, span, 0, VHD_FOOTER_SIZE) ? "footer copy"
                              : overlaps(at, span, header_at, VHD_HEADER_SIZE)
                                  ? "dynamic disk header"
                              : overlaps(at, span, bat_at, bat_len) ? "block allocation table"
                                                                    : NULL;
            if (hit) {
                rc = ferr_set(c->e, FERR_INVALID,
                              "vhd: %s: block %u at byte %llu overlaps the %s: the block "
                              "allocation table is damaged; " RESTORE,
                              n, i, (unsigned long long)at, hit);
                goto after_scan;
            }
            if (!used) {
                /* At most as many as the table has entries: 16 MiB for 2040 GiB of 512 KiB
                 * blocks. */
                used = malloc((size_t)entries * sizeof(*used));
                if (!used) {
                    rc = ferr_set(c->e, -ENOMEM, "vhd: %s: out of memory", n);
                    goto after_scan;
                }
            }
            used[nused++] = (uint64_t)sector << 32 | i;
        }
    }
    if (nused > 1)
        qsort(used, nused, sizeof(*used), cmp_u64);
    for (uint32_t k = 1; k < nused; k++) {
        uint64_t a = (used[k - 1] >> 32) * SECTOR, b = (used[k] >> 32) * SECTOR;
        if (a + span > b) {
            rc = ferr_set(c->e, FERR_INVALID,
                          "vhd: %s: blocks %u and %u overlap (at bytes %llu and %llu, %llu bytes "
                          "each): the block allocation table is damaged; " RESTORE,
                          n, (uint32_t)used[k - 1], (uint32_t)used[k], (unsigned long long)a,
                          (unsigned long long)b, (unsigned long long)span);
            goto after_scan;
        }
    }
    *used_out = nused;
after_scan:
    free(used);
    return rc;
}

static int check_dynamic(struct check *c, const uint8_t foot[VHD_FOOTER_SIZE], uint64_t size,
                         struct vhd_layout *out)
{
    const char *n = c->name;
    unsigned long long fsize = (unsigned long long)c->file_size;
    int rc;
    if (c->file_size < 2 * VHD_FOOTER_SIZE + VHD_HEADER_SIZE)
        return ferr_set(
            c->e, FERR_INVALID,
            "vhd: %s: a dynamic VHD holds at least a footer copy, a 1024-byte header "
            "and a footer (2048 bytes); this file has %llu bytes: it was cut short; " RESTORE,
            n, fsize);

    /* QEMU reads the copy and writes it back as the new footer whenever the file grows, so a
     * copy that differs would quietly replace the footer. */
    uint8_t copy[VHD_FOOTER_SIZE];
    if ((rc = get(c, 0, copy, sizeof(copy), "footer copy")) < 0)
        return rc;
    for (unsigned i = 0; i < VHD_FOOTER_SIZE; i++)
        if (copy[i] != foot[i])
            return ferr_set(
                c->e, FERR_INVALID,
                "vhd: %s: the footer copy at the start of the file differs from the "
                "footer at its end (first at byte %u): one of them is damaged; " RESTORE,
                n, i);

    uint64_t header_at = be64(foot + F_DATA_OFFSET);
    uint64_t meta_end = c->file_size - VHD_FOOTER_SIZE; /* >= 1536 */
    if (header_at < VHD_FOOTER_SIZE || header_at > meta_end - VHD_HEADER_SIZE)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the footer places the dynamic disk header at byte %llu, outside "
                        "the file (a 1024-byte header fits between bytes 512 and %llu): the footer "
                        "is damaged or the file was cut short; " RESTORE,
                        n, (unsigned long long)header_at, (unsigned long long)meta_end);
    uint8_t h[VHD_HEADER_SIZE];
    if ((rc = get(c, header_at, h, sizeof(h), "dynamic disk header")) < 0)
        return rc;
    if (memcmp(h + H_COOKIE, "cxsparse", 8) != 0)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: no dynamic disk header at byte %llu (cookie \"cxsparse\" "
                        "missing): the file is damaged; " RESTORE,
                        n, (unsigned long long)header_at);
    uint32_t stored = be32(h + H_CHECKSUM), want = checksum(h, VHD_HEADER_SIZE, H_CHECKSUM);
    if (stored != want)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the dynamic disk header's checksum is 0x%08x, expected "
                        "0x%08x: the header is damaged; " RESTORE,
                        n, stored, want);
    uint32_t version = be32(h + H_VERSION);
    if (version >> 16 != 1)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the dynamic disk header has version %u.%u; ferry and QEMU read "
                        "version 1.x only: the header is damaged; " RESTORE,
                        n, version >> 16, version & 0xffff);

    /* QEMU takes any power of two from 512 bytes; the specification's default is 2 MiB; Hyper-V
     * and Azure write 512 KiB or 2 MiB, QEMU, Virtual PC and VirtualBox 2 MiB. Smaller blocks
     * make a larger BAT, which QEMU holds in memory whole: from 512 KiB up it stays within
     * 16 MiB, even at 2040 GiB. */
    uint32_t bs = be32(h + H_BLOCK_SIZE);
    if (bs < SECTOR || (bs & (bs - 1)) != 0)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: the dynamic disk header gives a block size of %u bytes, not a "
                        "power of two of at least 512 (QEMU cannot read it either): the header is "
                        "damaged; " RESTORE,
                        n, bs);
    if (bs < VHD_MIN_BLOCK_SIZE)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: its block size of %u bytes is below the 512 KiB ferry takes "
                        "(Hyper-V writes 512 KiB or 2 MiB): convert it to a VHD with 2 MiB blocks "
                        "(ferry disk convert %s NEW --type dynamic)",
                        n, bs, n);
    uint32_t entries = be32(h + H_MAX_TABLE_ENTRIES);
    uint64_t needed = (size + bs - 1) / bs, most = (VHD_MAX_SIZE + bs - 1) / bs;
    if (entries < needed)
        return ferr_set(
            c->e, FERR_INVALID,
            "vhd: %s: its block allocation table has %u entries of %u bytes, too few "
            "for the disk size of %llu bytes (%llu entries): the header is damaged; " RESTORE,
            n, entries, bs, (unsigned long long)size, (unsigned long long)needed);
    if (entries > most)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: its block allocation table has %u entries of %u bytes, more "
                        "than a disk of VHD's largest size (2040 GiB) needs (%llu): the header is "
                        "damaged; " RESTORE,
                        n, entries, bs, (unsigned long long)most);
    uint64_t bat_at = be64(h + H_TABLE_OFFSET), bat_len = (uint64_t)entries * 4;
    if (bat_at < VHD_FOOTER_SIZE || bat_at > meta_end || bat_len > meta_end - bat_at)
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: its block allocation table (%llu bytes at byte %llu) does not "
                        "lie between the footer copy and the footer (bytes 512 to %llu): the file "
                        "was cut short or its header is damaged; " RESTORE,
                        n, (unsigned long long)bat_len, (unsigned long long)bat_at,
                        (unsigned long long)meta_end);
    if (overlaps(bat_at, bat_len, header_at, VHD_HEADER_SIZE))
        return ferr_set(c->e, FERR_INVALID,
                        "vhd: %s: its block allocation table (%llu bytes at byte %llu) overlaps "
                        "the dynamic disk header at byte %llu: the header is damaged; " RESTORE,
                        n, (unsigned long long)bat_len, (unsigned long long)bat_at,
                        (unsigned long long)header_at);
    uint32_t used = 0;
    if ((rc = check_blocks(c, header_at, bat_at, entries, bs, &used)) < 0)
        return rc;
    out->block_size = bs;
    out->max_table_entries = entries;
    out->used_blocks = used;
    return 0;
}

int vhd_check(const char *name, uint64_t file_size, vhd_read_fn read, void *ctx,
              struct vhd_layout *out, struct ferr *e)
{
    struct check c = {name ? name : "(unnamed)", file_size, read, ctx, e};
    if (!read)
        return ferr_set(e, FERR_INVALID, "vhd: %s: no read function", c.name);
    if (file_size < VHD_FOOTER_SIZE)
        return ferr_set(e, FERR_INVALID,
                        "vhd: %s is not a VHD file (%llu bytes, shorter than a footer)", c.name,
                        (unsigned long long)file_size);
    uint8_t foot[VHD_FOOTER_SIZE];
    int rc;
    if ((rc = get(&c, file_size - VHD_FOOTER_SIZE, foot, sizeof(foot), "footer")) < 0)
        return rc;
    uint32_t type = 0;
    uint64_t size = 0;
    if ((rc = check_footer(&c, foot, &type, &size)) < 0)
        return rc;
    struct vhd_layout l = {.current_size = size};
    snprintf(l.subformat, sizeof(l.subformat), "%s", type == TYPE_FIXED ? "fixed" : "dynamic");
    if (type == TYPE_FIXED) {
        /* The data, then the footer: what lets ferry attach it as raw, footer untouched. */
        if (file_size != size + VHD_FOOTER_SIZE)
            return ferr_set(e, FERR_INVALID,
                            "vhd: %s: a fixed VHD of %llu bytes is its data plus a 512-byte "
                            "footer, %llu bytes, but the file has %llu: it was cut short or "
                            "grown; " RESTORE,
                            c.name, (unsigned long long)size,
                            (unsigned long long)(size + VHD_FOOTER_SIZE),
                            (unsigned long long)file_size);
    } else if ((rc = check_dynamic(&c, foot, size, &l)) < 0) {
        return rc;
    }
    if (out)
        *out = l;
    return 0;
}
