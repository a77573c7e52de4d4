/* SPDX-License-Identifier: MIT */
/* Unit tests of the VMDK descriptor and sparse header parsers (src/import/vmdk.c): what
 * qemu-img, Workstation and ESXi write, and one refusal per way a descriptor can be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/vmdk.h"

static struct vmdk_desc d;

static int parse(const char *text, struct ferr *e)
{
    return vmdk_desc_parse("d.vmdk", text, strlen(text), &d, e);
}

static void expect_error(const char *text, const char *want)
{
    struct ferr e = {0};
    int rc = parse(text, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "input:\n%s\nrc %d, message: %s\nwanted: %s\n", text, rc, e.msg, want);
        fail();
    }
}

/* What qemu-img convert -O vmdk -o subformat=twoGbMaxExtentSparse writes. */
static const char two_gb[] = "# Disk DescriptorFile\n"
                             "version=1\n"
                             "CID=bf08a3cc\n"
                             "parentCID=ffffffff\n"
                             "createType=\"twoGbMaxExtentSparse\"\n"
                             "\n"
                             "# Extent description\n"
                             "RW 4192256 SPARSE \"deb-s001.vmdk\"\n"
                             "RW 4192256 SPARSE \"deb-s002.vmdk\"\n"
                             "RW 2048 SPARSE \"deb-s003.vmdk\"\n"
                             "\n"
                             "# The Disk Data Base\n"
                             "#DDB\n"
                             "\n"
                             "ddb.virtualHWVersion = \"4\"\n"
                             "ddb.geometry.cylinders = \"20\"\n"
                             "ddb.adapterType = \"lsilogic\"\n";

static void test_two_gb(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse(two_gb, &e), 0);
    assert_string_equal(d.create_type, "twoGbMaxExtentSparse");
    assert_true(d.sparse);
    assert_int_equal(d.cid, 0xbf08a3cc);
    assert_int_equal(d.parent_cid, 0xffffffff);
    assert_string_equal(d.parent_hint, "");
    assert_string_equal(d.adapter, "lsilogic");
    assert_int_equal(d.nextents, 3);
    assert_string_equal(d.extents[1].file, "deb-s002.vmdk");
    assert_int_equal(d.extents[1].type, VMDK_EXTENT_SPARSE);
    assert_int_equal(d.extents[1].line, 9);
    assert_int_equal(d.capacity_sectors, 2 * 4192256ull + 2048);
}

static void test_flat_vmfs_snapshot(void **state)
{
    struct ferr e = {0};
    assert_int_equal(
        parse("version=1\r\nCID=fffffffe\r\nparentCID=ffffffff\r\ncreateType=\"monolithicFlat\"\r\n"
              "RW 20480 FLAT \"x-flat.vmdk\" 0\r\nRDONLY 100 ZERO\r\n",
              &e),
        0);
    assert_false(d.sparse);
    assert_int_equal(d.nextents, 2);
    assert_true(d.extents[1].readonly);
    assert_int_equal(d.extents[1].type, VMDK_EXTENT_ZERO);
    assert_string_equal(d.extents[1].file, "");
    assert_int_equal(parse("CID=1\nparentCID=ffffffff\ncreateType=\"vmfsThin\"\nRW 41943040 VMFS "
                           "\"web-01-flat.vmdk\"\n",
                           &e),
                     0);
    assert_int_equal(d.extents[0].offset, 0);
    assert_int_equal(parse("CID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\nRW 8 "
                           "FLAT \"sub dir/a b.vmdk\" 16\n",
                           &e),
                     0);
    assert_int_equal(d.extents[0].offset, 16);
    assert_string_equal(d.extents[0].file, "sub dir/a b.vmdk");
    /* a snapshot: an ESXi delta with its parent */
    assert_int_equal(parse("version=3\nCID=00000002\nparentCID=00000001\n"
                           "createType=\"vmfsSparse\"\nparentFileNameHint=\"web-01.vmdk\"\n"
                           "RW 41943040 VMFSSPARSE \"web-01-000001-delta.vmdk\"\n",
                           &e),
                     0);
    assert_int_equal(d.parent_cid, 1);
    assert_string_equal(d.parent_hint, "web-01.vmdk");
    assert_int_equal(d.parent_line, 5);
    /* an embedded descriptor is followed by NUL padding */
    const char emb[] = "CID=1\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\nRW 20480 "
                       "SPARSE \"m.vmdk\"\n\0\0\0garbage";
    assert_int_equal(vmdk_desc_parse("m.vmdk", emb, sizeof emb, &d, &e), 0);
    assert_int_equal(d.nextents, 1);
}

static void test_malformed(void **state)
{
    expect_error("", "d.vmdk: no createType");
    expect_error("RW 1 SPARSE \"a\"\n", "no createType");
    expect_error("createType=\"monolithicSparse\"\n", "d.vmdk: the descriptor lists no extents");
    expect_error("createType=\"fullDevice\"\nRW 1 FLAT \"/dev/sda\"\n",
                 "d.vmdk:1: createType \"fullDevice\" cannot be imported");
    expect_error("createType=\"vmfsRDM\"\n", "cannot be imported");
    expect_error("version=4\ncreateType=\"vmfs\"\n", "d.vmdk:1: version \"4\" is not 1, 2 or 3");
    expect_error("CID=xyz\n", "d.vmdk:1: CID \"xyz\" is not 8 hex digits");
    expect_error("parentCID=123456789\n", "parentCID");
    expect_error("createType=\"monolithicFlat\"\nRW 10 FLAT \"../../etc/shadow\" 0\n",
                 "d.vmdk:2: extent \"../../etc/shadow\" is outside the disk's folder");
    expect_error("createType=\"monolithicFlat\"\nRW 10 FLAT \"/vmfs/volumes/ds/x-flat.vmdk\" 0\n",
                 "outside the disk's folder");
    expect_error("createType=\"monolithicFlat\"\nRW 10 FLAT \"a/../../b\" 0\n", "outside");
    expect_error("createType=\"monolithicFlat\"\nRW 10 FLAT \"C:\\\\vm\\\\x.vmdk\" 0\n", "outside");
    expect_error("createType=\"vmfs\"\nRW 10 VMFSRDM \"x-rdm.vmdk\"\n",
                 "d.vmdk:2: extent type \"VMFSRDM\" cannot be imported");
    expect_error("createType=\"vmfs\"\nNOACCESS 10 VMFS \"x.vmdk\"\n", "a NOACCESS extent");
    expect_error("createType=\"vmfs\"\nRW 0 VMFS \"x.vmdk\"\n", "extent size \"0\"");
    expect_error("createType=\"vmfs\"\nRW ten VMFS \"x.vmdk\"\n", "extent size \"ten\"");
    expect_error("createType=\"vmfs\"\nRW 10\n", "extent type missing");
    expect_error("createType=\"vmfs\"\nRW 10 VMFS x.vmdk\n", "not in double quotes");
    expect_error("createType=\"vmfs\"\nRW 10 VMFS \"x.vmdk\n", "not in double quotes");
    expect_error("createType=\"vmfs\"\nRW 10 VMFS \"x.vmdk\" 0 extra\n", "text after the extent");
    expect_error("createType=\"vmfs\"\nRW 10 VMFS \"x.vmdk\" -1\n", "extent offset \"-1\"");
    expect_error("createType=\"monolithicFlat\"\nRW 10 SPARSE \"x.vmdk\"\n",
                 "d.vmdk:2: a SPARSE extent in a monolithicFlat disk");
    expect_error(
        "createType=\"monolithicSparse\"\nRW 10 SPARSE \"a.vmdk\"\nRW 10 SPARSE \"b.vmdk\"\n",
        "d.vmdk:1: a monolithicSparse disk has one extent, this one 2");
    expect_error("createType=\"vmfs\"\nparentCID=00000001\nRW 10 VMFS \"x.vmdk\"\n",
                 "parentFileNameHint is missing");
    expect_error("createType=\"vmfs\"\nparentFileNameHint=\"p.vmdk\"\nRW 10 VMFS \"x.vmdk\"\n",
                 "d.vmdk:2: parentFileNameHint without a parentCID");
    expect_error("createType=\"vmfsSparse\"\nparentCID=1\nparentFileNameHint=\"../p.vmdk\"\n",
                 "d.vmdk:3: parentFileNameHint \"../p.vmdk\" is outside the disk's folder");
    expect_error("createType=\"vmfs\"\nthis is no key\n", "d.vmdk:2: expected key=value");
    expect_error("createType=\"monolithicFlat\"\nRW 10 FLAT \"x.vmdk\" 0\n",
                 "d.vmdk: the descriptor has no CID line");
    expect_error("CID=1\ncreateType=\"monolithicFlat\"\nRW 10 FLAT \"x.vmdk\" 0\n",
                 "d.vmdk: the descriptor has no parentCID line");
    expect_error("createType=\"vmfs\" junk\n", "text after the value of createType");
    expect_error("createType=\"vmfs\nRW 1 VMFS \"a\"\n", "d.vmdk:1:");
    expect_error("\x01\x02\x03\n", "d.vmdk:1: a control character");
    expect_error("createType=\"vmfs\"\nRW 1099511627776 VMFS \"a\"\nRW 1099511627776 VMFS "
                 "\"b\"\nRW 1 VMFS \"c\"\n",
                 "more than 1 PiB");
    char many[256 * 32 + 64];
    size_t n = (size_t)snprintf(many, sizeof many, "createType=\"vmfs\"\n");
    for (int i = 0; i < 257; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "RW 1 VMFS \"e%d\"\n", i);
    expect_error(many, "more than 256 extents");
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> 8 * i);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* The header qemu-img writes for a 10 MiB streamOptimized disk. */
static void stream_header(uint8_t h[512])
{
    memset(h, 0, 512);
    memcpy(h, "KDMV", 4);
    put32(h + 4, 3);
    put32(h + 8, 0x30003);
    put64(h + 12, 20480);
    put64(h + 20, 128);
    put64(h + 28, 1);
    put64(h + 36, 20);
    h[77] = 1;
}

static void expect_sparse_error(const uint8_t h[512], uint64_t size, const char *want)
{
    struct vmdk_sparse s;
    struct ferr e = {0};
    int rc = vmdk_sparse_parse("s.vmdk", h, size, &s, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "rc %d, message: %s\nwanted: %s\n", rc, e.msg, want);
        fail();
    }
}

static void test_sparse_header(void **state)
{
    uint8_t h[512];
    struct vmdk_sparse s;
    struct ferr e = {0};
    stream_header(h);
    assert_true(vmdk_is_sparse(h, 512));
    assert_false(vmdk_is_sparse(h, 3));
    assert_int_equal(vmdk_sparse_parse("s.vmdk", h, 65536, &s, &e), 0);
    assert_int_equal(s.version, 3);
    assert_int_equal(s.capacity_sectors, 20480);
    assert_int_equal(s.grain_sectors, 128);
    assert_int_equal(s.desc_offset, 1);
    assert_int_equal(s.desc_sectors, 20);
    assert_true(s.compressed);
    /* the descriptor just fits: 21 sectors */
    assert_int_equal(vmdk_sparse_parse("s.vmdk", h, 21 * 512, &s, &e), 0);
    expect_sparse_error(h, 21 * 512 - 1,
                        "s.vmdk: the embedded descriptor (sector 1, 20 sectors) "
                        "is not inside the file of 10751 bytes");
    stream_header(h);
    put64(h + 36, 1ull << 62); /* would overflow offset + size */
    expect_sparse_error(h, 65536, "is not inside the file");
    stream_header(h);
    put64(h + 28, 0);
    expect_sparse_error(h, 65536, "is not inside the file");
    stream_header(h);
    h[0] = 'X';
    expect_sparse_error(h, 65536, "no sparse extent header");
    stream_header(h);
    put32(h + 4, 4);
    expect_sparse_error(h, 65536, "version 4 is not 1..3");
    stream_header(h);
    put64(h + 20, 100);
    expect_sparse_error(h, 65536, "grain size 100 sectors");
    stream_header(h);
    put64(h + 20, 4);
    expect_sparse_error(h, 65536, "grain size 4 sectors");
    stream_header(h);
    put64(h + 12, 0);
    expect_sparse_error(h, 65536, "capacity 0 sectors");
    stream_header(h);
    h[77] = 2;
    expect_sparse_error(h, 65536, "compression algorithm 2");
    /* no embedded descriptor (a twoGbMaxExtentSparse extent) */
    stream_header(h);
    put64(h + 28, 0);
    put64(h + 36, 0);
    h[77] = 0;
    assert_int_equal(vmdk_sparse_parse("s.vmdk", h, 65536, &s, &e), 0);
    assert_false(s.compressed);
    assert_int_equal(s.desc_sectors, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_gb),
        cmocka_unit_test(test_flat_vmfs_snapshot),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_sparse_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
