/* SPDX-License-Identifier: MIT */
/* Unit tests of the .vmx parser (src/import/vmx.c): files as Workstation and ESXi write them,
 * charsets, escapes, duplicates, devices, and one refusal per way a .vmx can be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/vmx.h"

static struct vmx v;

static int parse(const char *text, struct ferr *e)
{
    return vmx_parse("deb.vmx", text, strlen(text), &v, e);
}

static void expect_error(const char *text, const char *want)
{
    struct ferr e = {0};
    int rc = parse(text, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "input:\n%s\nrc %d, message: %s\nwanted: %s\n", text, rc, e.msg, want);
        fail();
    }
    assert_int_equal(v.ndisks, 0); /* nothing half-filled */
}

static const char esxi[] = ".encoding = \"UTF-8\"\n"
                           "config.version = \"8\"\n"
                           "virtualHW.version = \"19\"\n"
                           "displayName = \"web-01\"\n"
                           "guestOS = \"debian11-64\"\n"
                           "firmware = \"efi\"\n"
                           "numvcpus = \"4\"\n"
                           "cpuid.coresPerSocket = \"2\"\n"
                           "memSize = \"2048\"\n"
                           "scsi0.present = \"TRUE\"\n"
                           "scsi0.virtualDev = \"pvscsi\"\n"
                           "scsi0:0.present = \"TRUE\"\n"
                           "scsi0:0.fileName = \"web-01.vmdk\"\n"
                           "scsi0:0.deviceType = \"scsi-hardDisk\"\n"
                           "scsi0:1.present = \"TRUE\"\n"
                           "scsi0:1.fileName = \"web-01_1.vmdk\"\n"
                           "sata0.present = \"TRUE\"\n"
                           "sata0:0.present = \"TRUE\"\n"
                           "sata0:0.deviceType = \"cdrom-image\"\n"
                           "sata0:0.fileName = \"/vmfs/volumes/ds/iso/debian.iso\"\n"
                           "ide0:0.present = \"TRUE\"\n"
                           "ide0:0.fileName = \"old.vmdk\"\n"
                           "ethernet0.present = \"TRUE\"\n"
                           "ethernet0.virtualDev = \"vmxnet3\"\n"
                           "ethernet0.networkName = \"VM Network\"\n"
                           "ethernet0.addressType = \"vpx\"\n"
                           "ethernet0.generatedAddress = \"00:50:56:AB:cd:01\"\n"
                           "ethernet1.present = \"TRUE\"\n"
                           "ethernet1.addressType = \"static\"\n"
                           "ethernet1.address = \"00:50:56:00:00:02\"\n"
                           "ethernet1.generatedAddress = \"00:0c:29:ff:ff:ff\"\n"
                           "ethernet2.present = \"FALSE\"\n"
                           "tools.syncTime = \"FALSE\"\n";

static void test_esxi(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse(esxi, &e), 0);
    assert_string_equal(v.encoding, "UTF-8");
    assert_string_equal(v.display_name, "web-01");
    assert_string_equal(v.guest_os, "debian11-64");
    assert_string_equal(v.firmware, "efi");
    assert_int_equal(v.numvcpus, 4);
    assert_int_equal(v.cores_per_socket, 2);
    assert_int_equal(v.memsize_mib, 2048); /* memSize: keys are case-insensitive */
    assert_int_equal(v.ndisks, 4);         /* scsi, then sata, then ide */
    assert_string_equal(v.disks[0].bus, "scsi");
    assert_int_equal(v.disks[0].unit, 0);
    assert_string_equal(v.disks[0].file, "web-01.vmdk");
    assert_false(v.disks[0].cdrom);
    assert_int_equal(v.disks[0].line, 13);
    assert_string_equal(v.disks[1].file, "web-01_1.vmdk");
    assert_string_equal(v.disks[2].bus, "sata");
    assert_true(v.disks[2].cdrom);
    assert_string_equal(v.disks[3].bus, "ide");
    assert_int_equal(v.nnics, 2);
    assert_string_equal(v.nics[0].virtual_dev, "vmxnet3");
    assert_string_equal(v.nics[0].network, "VM Network");
    assert_string_equal(v.nics[0].mac, "00:50:56:ab:cd:01");
    assert_string_equal(v.nics[1].mac, "00:50:56:00:00:02"); /* static: address, not generated */
    assert_int_equal(v.nskipped, 1);                         /* ethernet2 */
    /* config.version, virtualHW.version, tools.syncTime; scsi0.virtualDev is used now */
    assert_int_equal(v.nunknown, 3);
    assert_string_equal(v.disks[0].controller_dev, "pvscsi");
    assert_string_equal(v.disks[1].controller_dev, "pvscsi");
    assert_string_equal(v.disks[2].controller_dev, ""); /* only SCSI controllers have a model */
    assert_string_equal(v.disks[3].controller_dev, "");
    assert_int_equal(v.nduplicates, 0);
}

static void test_defaults_and_comments(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse("# a comment\n\n   \t\r\nmemsize = 512 # unquoted, then a comment\r\n"
                           "displayName = \"a # not a comment\"\n",
                           &e),
                     0);
    assert_int_equal(v.numvcpus, 1);
    assert_int_equal(v.cores_per_socket, 1);
    assert_string_equal(v.firmware, "bios");
    assert_int_equal(v.memsize_mib, 512);
    assert_string_equal(v.display_name, "a # not a comment");
    assert_int_equal(v.ndisks, 0);
    assert_int_equal(parse("", &e), 0);
}

static void test_escapes(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse("displayName = \"say |22hi|22 |7C |23 |0Aline\"\n", &e), 0);
    assert_string_equal(v.display_name, "say \"hi\" | # \nline");
}

static void test_charsets(void **state)
{
    struct ferr e = {0};
    /* windows-1252: é is 0xE9, € is 0x80 */
    assert_int_equal(parse(".encoding = \"windows-1252\"\ndisplayName = \"caf\xe9 \x80\"\n", &e),
                     0);
    assert_string_equal(v.display_name, "caf\xc3\xa9 \xe2\x82\xac");
    assert_int_equal(parse(".encoding = \"ISO-8859-1\"\ndisplayName = \"\xe9\x80\"\n", &e), 0);
    assert_string_equal(v.display_name, "\xc3\xa9\xc2\x80");
    /* no .encoding, valid UTF-8: as is; invalid: windows-1252 */
    assert_int_equal(parse("displayName = \"caf\xc3\xa9\"\n", &e), 0);
    assert_string_equal(v.display_name, "caf\xc3\xa9");
    assert_int_equal(parse("displayName = \"caf\xe9\"\n", &e), 0);
    assert_string_equal(v.display_name, "caf\xc3\xa9");
    /* a byte order mark is skipped */
    assert_int_equal(parse("\xef\xbb\xbf"
                           "displayName = \"x\"\n",
                           &e),
                     0);
    assert_string_equal(v.display_name, "x");
    /* an escape gives a byte of the file's charset */
    assert_int_equal(parse(".encoding = \"windows-1252\"\ndisplayName = \"|E9\"\n", &e), 0);
    assert_string_equal(v.display_name, "\xc3\xa9");
}

static void test_duplicates(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse("memsize = \"512\"\nnumvcpus = \"2\"\nMEMSIZE = \"1024\"\n", &e), 0);
    assert_int_equal(v.memsize_mib, 1024); /* the last one counts */
    assert_int_equal(v.nduplicates, 1);
    assert_string_equal(v.first_duplicate, "memsize");
    /* a device turned off by a later line */
    assert_int_equal(parse("scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\n"
                           "scsi0:0.fileName = \"a.vmdk\"\nscsi0:0.present = \"FALSE\"\n",
                           &e),
                     0);
    assert_int_equal(v.ndisks, 0);
}

static void test_absent_controller(void **state)
{
    struct ferr e = {0};
    /* VMware ignores the devices of an absent controller */
    assert_int_equal(parse("scsi1:0.present = \"TRUE\"\nscsi1:0.fileName = \"a.vmdk\"\n", &e), 0);
    assert_int_equal(v.ndisks, 0);
    assert_int_equal(v.nskipped, 1);
    assert_int_equal(parse("nvme0.present = \"true\"\nnvme0:3.present = \"yes\"\n"
                           "nvme0:3.fileName = \"n.vmdk\"\n",
                           &e),
                     0);
    assert_int_equal(v.ndisks, 1);
    assert_string_equal(v.disks[0].bus, "nvme");
    assert_int_equal(v.disks[0].unit, 3);
}

static void test_malformed(void **state)
{
    expect_error("displayName \"x\"\n", "deb.vmx:1: expected '=' after the key displayName");
    expect_error("\n= \"x\"\n", "deb.vmx:2: expected a key");
    expect_error("displayName = \"x\n", "deb.vmx:1: the value of displayname has no closing");
    expect_error("displayName = \"x\" y\n", "deb.vmx:1: text after the closing quote");
    expect_error("displayName = a b\n", "put it in double quotes");
    expect_error("displayName =\n", "displayname has no value");
    expect_error("displayName = \"|2\"\n", "'|' not followed by two hex digits");
    expect_error("displayName = \"|zz\"\n", "'|' not followed by two hex digits");
    expect_error("displayName = \"a|00b\"\n", "|00");
    expect_error("a\xff = \"1\"\n", "expected '=' after the key a");
    expect_error(".encoding = \"Shift_JIS\"\n",
                 "deb.vmx:1: .encoding \"Shift_JIS\" is not supported");
    expect_error(".encoding = \"UTF-8\"\ndisplayName = \"\xe9\"\n",
                 "deb.vmx:2: the value of displayname is not valid UTF-8");
    expect_error(".encoding = \"US-ASCII\"\ndisplayName = \"\xc3\xa9\"\n", "not US-ASCII");
    expect_error("numvcpus = \"0\"\n", "deb.vmx:1: numvcpus: \"0\" is not a number in 1..4096");
    expect_error("numvcpus = \"two\"\n", "is not a number");
    expect_error("numvcpus = \"-1\"\n", "is not a number");
    expect_error("numvcpus = \"99999999999999999999999\"\n", "is not a number");
    expect_error("memsize = \"0\"\n", "memsize");
    expect_error("numvcpus = \"6\"\ncpuid.coresPerSocket = \"4\"\n",
                 "deb.vmx:2: numvcpus 6 is not a multiple of cpuid.coresPerSocket 4");
    expect_error("firmware = \"uefi\"\n", "firmware \"uefi\" is neither");
    expect_error(
        "scsi0.present = \"maybe\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a\"\n",
        "deb.vmx:1: scsi0.present: \"maybe\" is not TRUE or FALSE");
    expect_error("scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\n",
                 "deb.vmx:2: scsi0:0 is a present disk without a fileName");
    expect_error("scsi0.present = \"TRUE\"\nscsi0:7.present = \"TRUE\"\nscsi0:7.fileName = \"a\"\n",
                 "unit 7 is the SCSI controller's own");
    expect_error("ide2:0.present = \"TRUE\"\n", "deb.vmx:1: ide2:0: ide controllers are 0..1");
    expect_error("sata0:30.present = \"TRUE\"\n", "units 0..29");
    expect_error("scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = "
                 "\"/dev/sdb\"\nscsi0:0.deviceType = \"rawDisk\"\n",
                 "deviceType \"rawdisk\" is not a disk ferry can import");
    expect_error("ethernet10.present = \"TRUE\"\n", "ethernet10: VMware's NICs are ethernet0..9");
    expect_error("ethernet0.present = \"TRUE\"\nethernet0.generatedAddress = \"00:50:56\"\n",
                 "deb.vmx:2: ethernet0.generatedaddress: \"00:50:56\" is not a MAC address");
    expect_error("ethernet0.present = \"TRUE\"\nethernet0.addressType = \"static\"\n"
                 "ethernet0.address = \"zz:50:56:00:00:01\"\n",
                 "not a MAC address");
    char big[300];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = 0;
    char text[400];
    snprintf(text, sizeof text, "displayName = \"%s\"\n", big);
    expect_error(text, "displayname is longer than 255 bytes");
    snprintf(text, sizeof text, "%s = \"1\"\n", big);
    expect_error(text, "key longer than 128 characters");
}

static void test_too_big(void **state)
{
    struct ferr e = {0};
    char *t = malloc(VMX_MAX_SIZE + 1);
    memset(t, '#', VMX_MAX_SIZE + 1);
    assert_int_equal(vmx_parse("big.vmx", t, VMX_MAX_SIZE + 1, &v, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "big.vmx: 1048577 bytes is too big"));
    free(t);
}

static void test_many_disks(void **state)
{
    /* 4 SCSI controllers of 15 disks: 60 fit; sata adds more than VMX_MAX_DISKS */
    size_t cap = 64 * 1024, n = 0;
    char *t = malloc(cap);
    for (int c = 0; c < 4; c++) {
        n += (size_t)snprintf(t + n, cap - n, "scsi%d.present = \"TRUE\"\n", c);
        for (int u = 0; u < 16; u++)
            if (u != 7)
                n += (size_t)snprintf(t + n, cap - n,
                                      "scsi%d:%d.present = \"TRUE\"\nscsi%d:%d.fileName = "
                                      "\"d%d-%d.vmdk\"\n",
                                      c, u, c, u, c, u);
    }
    struct ferr e = {0};
    assert_int_equal(vmx_parse("x.vmx", t, n, &v, &e), 0);
    assert_int_equal(v.ndisks, 60);
    assert_int_equal(v.disks[59].ctrl, 3);
    assert_int_equal(v.disks[59].unit, 15);
    n += (size_t)snprintf(t + n, cap - n, "sata0.present = \"TRUE\"\n");
    for (int u = 0; u < 5; u++)
        n += (size_t)snprintf(
            t + n, cap - n, "sata0:%d.present = \"TRUE\"\nsata0:%d.fileName = \"s.vmdk\"\n", u, u);
    assert_int_equal(vmx_parse("x.vmx", t, n, &v, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "more than 64 disks"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_esxi),       cmocka_unit_test(test_defaults_and_comments),
        cmocka_unit_test(test_escapes),    cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_duplicates), cmocka_unit_test(test_absent_controller),
        cmocka_unit_test(test_malformed),  cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_many_disks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
