/* SPDX-License-Identifier: MIT */
/* Unit tests of the import loader (src/import/load.c) on machine folders written in a temporary
 * directory: flat and sparse extents, snapshot chains, OVF packages with manifests, and every
 * way their files can be missing, truncated, outside the folder or disagree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import/load.h"

static char dir[256];
static struct import_source src;

static void put(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void put_size(const char *name, long size)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(truncate(p, size), 0);
}

/* A sparse extent header (no embedded descriptor) of capacity sectors. */
static void put_sparse(const char *name, uint64_t capacity, uint64_t overhead, long size)
{
    uint8_t h[512] = {0};
    memcpy(h, "KDMV", 4);
    h[4] = 1;
    for (int i = 0; i < 8; i++) {
        h[12 + i] = (uint8_t)(capacity >> 8 * i);
        h[64 + i] = (uint8_t)(overhead >> 8 * i);
    }
    h[20] = 128;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fwrite(h, 1, sizeof h, f);
    fclose(f);
    assert_int_equal(truncate(p, size), 0);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/ferry-import-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static int load(const char *name, struct ferr *e)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return import_load(p, true, &src, e);
}

static void expect_error(const char *name, int code, const char *want)
{
    struct ferr e = {0};
    int rc = load(name, &e);
    if (rc != code || !strstr(e.msg, want)) {
        fprintf(stderr, "rc %d, message: %s\nwanted %d: %s\n", rc, e.msg, code, want);
        fail();
    }
    assert_int_equal(src.ndisks, 0);
}

#define VMX_HEAD "displayName = \"deb\"\nmemsize = \"256\"\nscsi0.present = \"TRUE\"\n"

static void test_flat_and_chain(void **state)
{
    put("deb.vmx", VMX_HEAD "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"deb-000001.vmdk\"\n");
    put("deb.vmdk", "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT "
                    "\"deb-flat.vmdk\" 0\n");
    put_size("deb-flat.vmdk", 2048 * 512);
    put("deb-000001.vmdk",
        "CID=2\nparentCID=1\ncreateType=\"twoGbMaxExtentSparse\"\n"
        "parentFileNameHint=\"deb.vmdk\"\nRW 2048 SPARSE \"deb-000001-s001.vmdk\"\n");
    put_sparse("deb-000001-s001.vmdk", 2048, 1, 65536);
    struct ferr e = {0};
    int rc = load("deb.vmx", &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(src.ndisks, 1);
    assert_int_equal(src.disks[0].virtual_bytes, 2048 * 512);
    assert_int_equal(src.disks[0].chain, 1);
    assert_string_equal(src.disks[0].create_type, "twoGbMaxExtentSparse");
    assert_non_null(strstr(src.disks[0].path, "/deb-000001.vmdk"));
    /* both descriptors, the flat extent and the sparse one */
    assert_int_equal(src.disks[0].file_bytes,
                     strlen("CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW "
                            "2048 FLAT \"deb-flat.vmdk\" 0\n") +
                         2048 * 512 + 65536 +
                         strlen("CID=2\nparentCID=1\ncreateType=\"twoGbMaxExtentSparse\"\n"
                                "parentFileNameHint=\"deb.vmdk\"\nRW 2048 SPARSE "
                                "\"deb-000001-s001.vmdk\"\n"));
    /* the parent's size disagrees */
    put("deb.vmdk", "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 1024 FLAT "
                    "\"deb-flat.vmdk\" 0\n");
    expect_error("deb.vmx", FERR_INVALID, "parent");
    put("deb.vmdk", "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT "
                    "\"deb-flat.vmdk\" 0\n");
    /* a truncated flat extent */
    put_size("deb-flat.vmdk", 2047 * 512);
    expect_error("deb.vmx", FERR_INVALID, "deb.vmdk:4: extent");
    expect_error("deb.vmx", FERR_INVALID,
                 "has 1048064 bytes, the descriptor says it holds 1048576: it is truncated");
    put_size("deb-flat.vmdk", 2048 * 512);
    /* a sparse extent whose capacity disagrees, one that is truncated */
    put_sparse("deb-000001-s001.vmdk", 4096, 1, 65536);
    expect_error("deb.vmx", FERR_INVALID,
                 "holds 4096 sectors, the descriptor says 2048: the sizes disagree");
    put_sparse("deb-000001-s001.vmdk", 2048, 200, 65536);
    expect_error("deb.vmx", FERR_INVALID, "its metadata alone takes 102400: it is truncated");
    put_sparse("deb-000001-s001.vmdk", 2048, 1, 100);
    expect_error("deb.vmx", FERR_INVALID, "less than a sparse header: it is truncated");
    /* a missing extent */
    char p[512];
    snprintf(p, sizeof p, "%s/deb-000001-s001.vmdk", dir);
    unlink(p);
    expect_error("deb.vmx", FERR_NOTFOUND, "deb-000001.vmdk:5: ");
    expect_error("deb.vmx", FERR_NOTFOUND, "a missing extent or disk file");
}

static void test_outside(void **state)
{
    put("out.vmx", VMX_HEAD "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"link.vmdk\"\n");
    put("link.vmdk", "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 1 FLAT "
                     "\"escape-flat.vmdk\" 0\n");
    char p[512];
    snprintf(p, sizeof p, "%s/escape-flat.vmdk", dir);
    unlink(p);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    expect_error("out.vmx", FERR_INVALID, "is /etc/passwd, outside the machine's folder");
    put("out.vmx", VMX_HEAD "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"/etc/passwd\"\n");
    expect_error("out.vmx", FERR_INVALID, "out.vmx:5: \"/etc/passwd\" is /etc/passwd, outside");
    put("out.vmx", VMX_HEAD "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../x.vmdk\"\n");
    expect_error("out.vmx", FERR_INVALID, "\"../x.vmdk\" is outside the machine's folder");
    /* an extent instead of a descriptor; no descriptor at all */
    put("out.vmx", VMX_HEAD "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"raw.vmdk\"\n");
    put_size("raw.vmdk", 2 << 20);
    expect_error("out.vmx", FERR_INVALID, "no sparse header: this is a raw extent");
    put_sparse("raw.vmdk", 2048, 1, 65536);
    expect_error("out.vmx", FERR_INVALID, "a sparse extent without a descriptor");
    expect_error("nothing.vmx", FERR_NOTFOUND, "No such file");
    put("x.txt", "");
    expect_error("x.txt", FERR_INVALID, "expected a .vmx, .ovf or .ova file");
}

#define OVF_DOC(size, cap)                                                                         \
    "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "                                  \
    "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" xmlns:r=\"urn:rasd\">"                   \
    "<References><File ovf:id=\"f1\" ovf:href=\"d.vmdk\" ovf:size=\"" size "\"/></References>"     \
    "<DiskSection><Disk ovf:diskId=\"d1\" ovf:fileRef=\"f1\" ovf:capacity=\"" cap "\"/>"           \
    "</DiskSection><VirtualSystem ovf:id=\"p\"><VirtualHardwareSection>"                           \
    "<Item><r:ResourceType>3</r:ResourceType><r:VirtualQuantity>1</r:VirtualQuantity></Item>"      \
    "<Item><r:ResourceType>4</r:ResourceType><r:VirtualQuantity>64</r:VirtualQuantity>"            \
    "<r:AllocationUnits>byte * 2^20</r:AllocationUnits></Item>"                                    \
    "<Item><r:ResourceType>17</r:ResourceType><r:HostResource>ovf:/disk/d1</r:HostResource></"     \
    "Item>"                                                                                        \
    "</VirtualHardwareSection></VirtualSystem></Envelope>"

static void test_ovf_folder(void **state)
{
    const char desc[] = "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 "
                        "FLAT \"d-flat.vmdk\" 0\n";
    char size[16];
    snprintf(size, sizeof size, "%zu", strlen(desc));
    put("d.vmdk", desc);
    put_size("d-flat.vmdk", 4096);
    char doc[4096];
    snprintf(doc, sizeof doc, OVF_DOC("%s", "4096"), size);
    put("p.ovf", doc);
    struct ferr e = {0};
    int rc = load("p.ovf", &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(src.disks[0].virtual_bytes, 4096);
    assert_string_equal(src.kind, "ovf");
    bool noted = false;
    for (unsigned i = 0; i < src.nnotes; i++)
        noted |= strstr(src.notes[i], "no manifest") != NULL;
    assert_true(noted);
    /* a manifest: the empty flat file's SHA-1 is da39a3..., the other is wrong */
    put_size("d-flat.vmdk", 0);
    put("d.vmdk", "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 ZERO\n");
    snprintf(
        size, sizeof size, "%zu",
        strlen("CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 ZERO\n"));
    snprintf(doc, sizeof doc, OVF_DOC("%s", "4096"), size);
    put("p.ovf", doc);
    put("p.mf", "SHA1(d-flat.vmdk)= da39a3ee5e6b4b0d3255bfef95601890afd80709\n");
    assert_int_equal(load("p.ovf", &e), 0);
    put("p.mf",
        "SHA1(d-flat.vmdk)= da39a3ee5e6b4b0d3255bfef95601890afd80709\n"
        "SHA256(d.vmdk)= 0000000000000000000000000000000000000000000000000000000000000000\n");
    expect_error("p.ovf", FERR_INVALID, "p.mf:2: SHA256 of d.vmdk is ");
    /* a preview (the CLI's plan before an import, which checks them) reads no digest */
    char path[512];
    snprintf(path, sizeof path, "%s/p.ovf", dir);
    assert_int_equal(import_load(path, false, &src, &e), 0);
    noted = false;
    for (unsigned i = 0; i < src.nnotes; i++)
        noted |= strstr(src.notes[i], "the manifest's 2 digest(s) are checked when the import "
                                      "runs") != NULL;
    assert_true(noted);
    put("p.mf", "SHA1(gone.vmdk)= da39a3ee5e6b4b0d3255bfef95601890afd80709\n");
    expect_error("p.ovf", FERR_NOTFOUND, "gone.vmdk");
    put("p.mf", "");
    /* ovf:size and ovf:capacity that disagree with the files */
    snprintf(doc, sizeof doc, OVF_DOC("999", "4096"));
    put("p.ovf", doc);
    expect_error("p.ovf", FERR_INVALID, "File d.vmdk: ovf:size says 999 bytes, the file has");
    snprintf(doc, sizeof doc, OVF_DOC("%s", "8192"), size);
    put("p.ovf", doc);
    expect_error("p.ovf", FERR_INVALID, "disk d1: ovf:capacity says 8192 bytes, d.vmdk holds 4096");
    put("p.ovf", "<Envelope");
    expect_error("p.ovf", FERR_INVALID, "not well-formed XML");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flat_and_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ovf_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
