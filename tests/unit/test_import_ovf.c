/* SPDX-License-Identifier: MIT */
/* Unit tests of the OVF envelope parser (src/import/ovf.c): an envelope as ovftool writes it,
 * units, and one refusal per way an OVF can be wrong, each naming the element. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/ovf.h"

static struct ovf o;

#define HEAD                                                                                       \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "                                  \
    "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" "                                        \
    "xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"                              \
    "CIM_ResourceAllocationSettingData\" "                                                         \
    "xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"                              \
    "CIM_VirtualSystemSettingData\" "                                                              \
    "xmlns:vmw=\"http://www.vmware.com/schema/ovf\">\n"
#define REFS                                                                                       \
    "  <References>\n"                                                                             \
    "    <File ovf:href=\"deb-disk1.vmdk\" ovf:id=\"file1\" ovf:size=\"68608\"/>\n"                \
    "  </References>\n"
#define DISKS                                                                                      \
    "  <DiskSection>\n"                                                                            \
    "    <Info>Virtual disk information</Info>\n"                                                  \
    "    <Disk ovf:capacity=\"10\" ovf:capacityAllocationUnits=\"byte * 2^20\" "                   \
    "ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" "                                                \
    "ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n" \
    "  </DiskSection>\n"
#define NETS                                                                                       \
    "  <NetworkSection>\n"                                                                         \
    "    <Info>The list of logical networks</Info>\n"                                              \
    "    <Network ovf:name=\"VM Network\"><Description>The VM Network</Description></Network>\n"   \
    "  </NetworkSection>\n"
#define VS_OPEN                                                                                    \
    "  <VirtualSystem ovf:id=\"deb\">\n"                                                           \
    "    <Info>A virtual machine</Info>\n"                                                         \
    "    <Name>deb-guest</Name>\n"                                                                 \
    "    <OperatingSystemSection ovf:id=\"96\" vmw:osType=\"debian11_64Guest\">\n"                 \
    "      <Info>The kind of installed guest operating system</Info>\n"                            \
    "    </OperatingSystemSection>\n"                                                              \
    "    <VirtualHardwareSection>\n"                                                               \
    "      <Info>Virtual hardware requirements</Info>\n"                                           \
    "      <System><vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType></System>\n"
#define CPU                                                                                        \
    "      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>"                        \
    "<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>"                 \
    "<rasd:VirtualQuantity>4</rasd:VirtualQuantity>"                                               \
    "<vmw:CoresPerSocket ovf:required=\"false\">2</vmw:CoresPerSocket></Item>\n"
#define MEM                                                                                        \
    "      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>"                         \
    "<rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>"                 \
    "<rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>\n"
#define DEVS                                                                                       \
    "      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI"            \
    "</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>\n"                     \
    "      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/"      \
    "vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3"                \
    "</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>\n"                             \
    "      <Item><rasd:Address>00:50:56:AB:CD:01</rasd:Address><rasd:Connection>VM Network"        \
    "</rasd:Connection><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3"          \
    "</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>\n"                    \
    "      <Item ovf:required=\"false\"><rasd:InstanceID>6</rasd:InstanceID>"                      \
    "<rasd:ResourceType>15</rasd:ResourceType></Item>\n"                                           \
    "      <Item ovf:required=\"false\"><rasd:InstanceID>7</rasd:InstanceID>"                      \
    "<rasd:ResourceType>24</rasd:ResourceType></Item>\n"                                           \
    "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n"
#define VS_CLOSE                                                                                   \
    "    </VirtualHardwareSection>\n"                                                              \
    "  </VirtualSystem>\n"
#define TAIL "</Envelope>\n"

static const char good[] = HEAD REFS DISKS NETS VS_OPEN CPU MEM DEVS VS_CLOSE TAIL;

static int parse(const char *xml, struct ferr *e)
{
    return ovf_parse("deb.ovf", xml, strlen(xml), &o, e);
}

static void expect_error(const char *xml, const char *want)
{
    struct ferr e = {0};
    int rc = parse(xml, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "input:\n%s\nrc %d, message: %s\nwanted: %s\n", xml, rc, e.msg, want);
        fail();
    }
    assert_int_equal(o.ndisks, 0);
}

static bool has_note(const char *what)
{
    for (unsigned i = 0; i < o.nnotes; i++)
        if (strstr(o.notes[i], what))
            return true;
    return false;
}

static void test_ovftool(void **state)
{
    struct ferr e = {0};
    assert_int_equal(parse(good, &e), 0);
    assert_string_equal(o.name, "deb-guest");
    assert_string_equal(o.os_type, "debian11_64Guest");
    assert_int_equal(o.os_id, 96);
    assert_string_equal(o.firmware, "efi");
    assert_int_equal(o.vcpus, 4);
    assert_int_equal(o.cores_per_socket, 2);
    assert_int_equal(o.memory_mib, 1024);
    assert_int_equal(o.nfiles, 1);
    assert_string_equal(o.files[0].href, "deb-disk1.vmdk");
    assert_true(o.files[0].has_size);
    assert_int_equal(o.files[0].size, 68608);
    assert_int_equal(o.ndisks, 1);
    assert_int_equal(o.disks[0].file, 0);
    assert_int_equal(o.disks[0].capacity_bytes, 10ull << 20);
    assert_string_equal(o.disks[0].controller, "scsi");
    assert_non_null(strstr(o.disks[0].format, "streamOptimized"));
    assert_int_equal(o.nattached, 1);
    assert_int_equal(o.nnics, 1);
    assert_string_equal(o.nics[0].network, "VM Network");
    assert_string_equal(o.nics[0].subtype, "VmxNet3");
    assert_string_equal(o.nics[0].mac, "00:50:56:ab:cd:01");
    assert_int_equal(o.nnetworks, 1);
    assert_string_equal(o.networks[0], "VM Network");
    assert_int_equal(o.ncdroms, 1);
    assert_true(has_note("CD/DVD"));
    assert_true(has_note("ResourceType 24"));
}

static void test_units(void **state)
{
    uint64_t b;
    assert_int_equal(ovf_units("byte", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(ovf_units("byte * 2^30", &b), 0);
    assert_int_equal(b, 1ull << 30);
    assert_int_equal(ovf_units("byte*2^10*10^3", &b), 0);
    assert_int_equal(b, 1024000);
    assert_int_equal(ovf_units("MegaBytes", &b), 0);
    assert_int_equal(b, 1ull << 20);
    assert_int_equal(ovf_units("GB", &b), 0);
    assert_int_equal(b, 1ull << 30);
    assert_int_equal(ovf_units("byte * 2^51", &b), -1);
    assert_int_equal(ovf_units("byte * 3^2", &b), -1);
    assert_int_equal(ovf_units("byte * 2^", &b), -1);
    assert_int_equal(ovf_units("byte *", &b), -1);
    assert_int_equal(ovf_units("bit", &b), -1);
    assert_int_equal(ovf_units("", &b), -1);
    assert_int_equal(ovf_units("byte * 2^1000", &b), -1);
}

static void test_ovf2_and_memory_units(void **state)
{
    struct ferr e = {0};
    char xml[8192];
    snprintf(
        xml, sizeof xml,
        "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/2\" "
        "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/2\" "
        "xmlns:r=\"urn:rasd\"><VirtualSystem ovf:id=\"only-id\"><VirtualHardwareSection>"
        "<Item><r:ResourceType>3</r:ResourceType><r:VirtualQuantity>1</r:VirtualQuantity></Item>"
        "<Item><r:ResourceType>4</r:ResourceType><r:VirtualQuantity>2</r:VirtualQuantity>"
        "<r:AllocationUnits>byte * 2^30</r:AllocationUnits></Item>"
        "<Item><r:ResourceType>4</r:ResourceType><r:VirtualQuantity>1</r:VirtualQuantity>"
        "<r:AllocationUnits>byte * 2^40</r:AllocationUnits></Item>"
        "</VirtualHardwareSection></VirtualSystem></Envelope>");
    /* the second memory item with a deployment option's attribute would be ignored; without,
     * the later one counts */
    assert_int_equal(parse(xml, &e), 0);
    assert_string_equal(o.name, "only-id");
    assert_int_equal(o.memory_mib, 1ull << 20);
    assert_int_equal(o.ndisks, 0);
    assert_int_equal(o.cores_per_socket, 1);
    assert_string_equal(o.firmware, "bios");
}

/* good with one piece replaced */
static void with(const char *from, const char *to, const char *want)
{
    const char *at = strstr(good, from);
    assert_non_null(at);
    size_t n = strlen(good) + strlen(to) + 1;
    char *xml = malloc(n);
    snprintf(xml, n, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    expect_error(xml, want);
    free(xml);
}

static void test_malformed(void **state)
{
    expect_error("", "deb.ovf: line");
    expect_error("<Envelope", "not well-formed XML");
    expect_error("<?xml version=\"1.0\"?>\n<a>\n<b></a>", "deb.ovf: line 3: not well-formed XML");
    expect_error("<Envelope xmlns=\"urn:other\"/>", "the root is not an OVF Envelope");
    expect_error("<Envelope/>", "the root is not an OVF Envelope");
    expect_error("<?xml version=\"1.0\"?>\n<!DOCTYPE Envelope [<!ENTITY a \"aaaa\">]>\n"
                 "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\">&a;</Envelope>",
                 "a DOCTYPE");
    expect_error(HEAD TAIL, "/Envelope: no VirtualSystem");
    with(VS_OPEN, "<VirtualSystemCollection/>" VS_OPEN, "a VirtualSystemCollection");
    with(VS_CLOSE, VS_CLOSE "<VirtualSystem/>", "a second VirtualSystem");
    with(NETS, NETS "<vmw:Fancy ovf:required=\"true\"/>",
         "section Fancy is marked ovf:required=\"true\"");
    with("ovf:href=\"deb-disk1.vmdk\"", "ovf:href=\"../deb-disk1.vmdk\"",
         "/Envelope/References/File: href \"../deb-disk1.vmdk\" is outside");
    with("ovf:href=\"deb-disk1.vmdk\"", "ovf:href=\"http://evil/x.vmdk\"", "is a URL");
    with("ovf:href=\"deb-disk1.vmdk\"", "ovf:href=\"/etc/passwd\"", "is outside");
    with("ovf:href=\"deb-disk1.vmdk\"", "", "attribute href is missing");
    with("ovf:size=\"68608\"", "ovf:size=\"big\"", "size \"big\" is not a number");
    with("ovf:size=\"68608\"", "ovf:compression=\"gzip\"", "is compressed (gzip)");
    with("ovf:size=\"68608\"", "ovf:chunkSize=\"1000\"", "split into chunks");
    with("</References>", "<Foo/></References>", "References holds only File elements");
    with("</References>", "<File ovf:href=\"b\" ovf:id=\"file1\"/></References>",
         "a second File with id \"file1\"");
    with("ovf:fileRef=\"file1\"", "ovf:fileRef=\"file9\"", "fileRef \"file9\" names no File");
    with("ovf:capacity=\"10\"", "ovf:capacity=\"${disk.size}\"", "deployment property");
    with("ovf:capacity=\"10\"", "ovf:capacity=\"ten\"", "capacity \"ten\" is not a whole number");
    with("ovf:capacity=\"10\"", "ovf:capacity=\"0\"", "capacity 0");
    with("ovf:capacity=\"10\"", "", "attribute capacity is missing");
    with("byte * 2^20\" ovf:diskId", "furlongs\" ovf:diskId", "allocation units \"furlongs\"");
    with("ovf:capacity=\"10\"", "ovf:capacity=\"99999999999\"", "more than 1 PiB");
    with("ovf:diskId=\"vmdisk1\"",
         "ovf:diskId=\"vmdisk1\"/><Disk ovf:diskId=\"vmdisk1\" ovf:capacity=\"1\"",
         "a second Disk with diskId");
    with("ovf:/disk/vmdisk1", "ovf:/disk/vmdisk9",
         "HostResource \"ovf:/disk/vmdisk9\" names no Disk");
    with("ovf:/disk/vmdisk1", "ovf:/file/file1", "is not ovf:/disk/ID");
    with("<rasd:ResourceType>17</rasd:ResourceType></Item>\n",
         "<rasd:ResourceType>17</rasd:ResourceType></Item>\n" DEVS, "is attached twice");
    with("<rasd:ResourceType>3</rasd:ResourceType>", "", "an Item without a numeric ResourceType");
    with("<rasd:ResourceType>3</rasd:ResourceType>", "<rasd:ResourceType>x</rasd:ResourceType>",
         "without a numeric ResourceType");
    with(CPU, "", "the hardware has no processor Item");
    with(MEM, "", "the hardware has no memory Item");
    with("<rasd:VirtualQuantity>4</rasd:VirtualQuantity>",
         "<rasd:VirtualQuantity>0</rasd:VirtualQuantity>", "0 processors is not in 1..4096");
    with(">2</vmw:CoresPerSocket>", ">3</vmw:CoresPerSocket>",
         "CoresPerSocket \"3\" does not divide 4");
    with("byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2",
         "byte</rasd:AllocationUnits><rasd:InstanceID>2",
         "/Envelope/VirtualSystem/VirtualHardwareSection/Item[2]: memory of 1024 bytes is less "
         "than 1 MiB");
    with("00:50:56:AB:CD:01", "00:50:56:AB:CD", "Address \"00:50:56:AB:CD\" is not a MAC address");
    with("vmw:value=\"efi\"", "vmw:value=\"coreboot\"", "firmware \"coreboot\"");
    expect_error(HEAD REFS DISKS "<VirtualSystem ovf:id=\"x\"><Info>i</Info></VirtualSystem>" TAIL,
                 "/Envelope/VirtualSystem: no VirtualHardwareSection");
    with("<Network ovf:name=\"VM Network\">", "<Network>", "attribute name is missing");
}

static void test_notes(void **state)
{
    struct ferr e = {0};
    char xml[16384];
    snprintf(xml, sizeof xml, "%s", HEAD REFS DISKS NETS VS_OPEN CPU MEM VS_CLOSE TAIL);
    assert_int_equal(parse(xml, &e), 0);
    assert_int_equal(o.nattached, 0);
    assert_true(has_note("disk vmdisk1 is attached to no controller"));
    snprintf(xml, sizeof xml, "%s",
             HEAD REFS DISKS NETS
             "<EulaSection><Info>x</Info></EulaSection>" VS_OPEN CPU MEM
             "<Item ovf:configuration=\"big\"><rasd:ResourceType>3</rasd:ResourceType>"
             "<rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>" VS_CLOSE TAIL);
    assert_int_equal(parse(xml, &e), 0);
    assert_int_equal(o.vcpus, 4);
    assert_true(has_note("section EulaSection is not used"));
    assert_true(has_note("deployment option \"big\""));
}

static void test_too_big(void **state)
{
    struct ferr e = {0};
    assert_int_equal(ovf_parse("x.ovf", good, OVF_MAX_SIZE + 1, &o, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "too big"));
}

int main(void)
{
    ovf_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ovftool),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_ovf2_and_memory_units),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_notes),
        cmocka_unit_test(test_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
