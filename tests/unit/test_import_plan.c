/* SPDX-License-Identifier: MIT */
/* Unit tests of the import plan (src/import/plan.c): a .vmx and an OVF mapped to a spec and
 * disk conversions, and every check made before anything is converted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/plan.h"

#define MIB (1024ull * 1024)
#define GIB (1024 * MIB)

static struct import_source src;
static struct import_plan plan;

static const char vmx_text[] =
    "displayName = \"Web 01 (prod)\"\n"
    "numvcpus = \"4\"\ncpuid.coresPerSocket = \"2\"\nmemsize = \"1024\"\n"
    "guestOS = \"debian11-64\"\n"
    "scsi0.present = \"TRUE\"\n"
    "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"web.vmdk\"\n"
    "scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"data.vmdk\"\n"
    "ide1:0.present = \"TRUE\"\nide1:0.deviceType = \"cdrom-image\"\n"
    "ide1:0.fileName = \"d.iso\"\n"
    "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vmxnet3\"\n"
    "ethernet0.networkName = \"VM Network\"\n"
    "ethernet0.addressType = \"generated\"\n"
    "ethernet0.generatedAddress = \"00:0c:29:12:34:56\"\n"
    "ethernet1.present = \"TRUE\"\nethernet1.networkName = \"DMZ\"\n"
    "tools.syncTime = \"TRUE\"\n";

static bool exists_web(const char *name, void *data)
{
    return strcmp(name, "taken") == 0;
}

static bool file_taken(const char *path, void *data)
{
    return strstr(path, "/old-disk0.vhd") != NULL;
}

static bool bridge_ok(const char *name, void *data)
{
    return strcmp(name, "nobr") != 0;
}

static struct vm_spec_env env = {.bridge_exists = bridge_ok};

static struct import_target target(void)
{
    struct import_target t = {
        .volume = "vol1",
        .volume_path = "/srv/csv1",
        .volume_free_bytes = 100 * GIB,
        .node = "host1",
        .host_memory_mib = 8192,
        .host_cpus = 8,
        .vm_exists = exists_web,
        .file_exists = file_taken,
        .env = &env,
    };
    t.nnet = 2;
    snprintf(t.net[0].network, sizeof t.net[0].network, "VM Network");
    snprintf(t.net[0].bridge, sizeof t.net[0].bridge, "br0");
    snprintf(t.net[1].network, sizeof t.net[1].network, "DMZ");
    snprintf(t.net[1].bridge, sizeof t.net[1].bridge, "br1");
    return t;
}

/* The .vmx parsed and its disks "loaded": 10 GiB and 1 GiB, sparse files of 2 GiB and 1 MiB. */
static void load_vmx(const char *text)
{
    static struct vmx v;
    struct ferr e = {0};
    assert_int_equal(vmx_parse("/imp/web.vmx", text, strlen(text), &v, &e), 0);
    assert_int_equal(import_source_from_vmx(&v, "/imp/web.vmx", &src, &e), 0);
    for (unsigned i = 0; i < src.ndisks; i++) {
        char path[sizeof src.disks[i].path];
        snprintf(path, sizeof path, "/imp/%.900s", src.disks[i].file);
        memcpy(src.disks[i].path, path, sizeof path);
        snprintf(src.disks[i].create_type, sizeof src.disks[i].create_type, "monolithicSparse");
        src.disks[i].virtual_bytes = i == 0 ? 10 * GIB : GIB;
        src.disks[i].file_bytes = i == 0 ? 2 * GIB : MIB;
    }
}

static void expect_error(const struct import_target *t, int code, const char *want)
{
    struct ferr e = {0};
    int rc = import_plan_make(&src, t, &plan, &e);
    if (rc != code || !strstr(e.msg, want)) {
        fprintf(stderr, "rc %d, message: %s\nwanted %d: %s\n", rc, e.msg, code, want);
        fail();
    }
    assert_null(plan.spec);
    assert_int_equal(plan.nconv, 0);
}

static bool has_note(const char *what)
{
    for (unsigned i = 0; i < plan.nnotes; i++)
        if (strstr(plan.notes[i], what))
            return true;
    return false;
}

static void test_vmx_plan(void **state)
{
    load_vmx(vmx_text);
    assert_int_equal(src.ndisks, 2);
    assert_int_equal(src.nnics, 2);
    assert_string_equal(src.nics[1].model, "vlance"); /* VMware's default */
    struct import_target t = target();
    struct ferr e = {0};
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    assert_string_equal(plan.name, "web-01-prod");
    assert_true(has_note("name web-01-prod made from \"Web 01 (prod)\""));
    assert_true(has_note("CD-ROM d.iso skipped"));
    assert_true(has_note("devices are mapped to virtio"));
    assert_true(has_note("ethernet0 (vmxnet3, MAC 00:0c:29:12:34:56) on \"VM Network\" -> virtio "
                         "NIC on bridge br0, MAC kept"));
    assert_true(has_note("1 of the 21 keys"));
    assert_int_equal(plan.nconv, 2);
    assert_string_equal(plan.conv[0].src, "/imp/web.vmdk");
    assert_string_equal(plan.conv[0].dst, "/srv/csv1/web-01-prod-disk0.vhd");
    assert_string_equal(plan.conv[1].dst_ref, "csv:vol1/web-01-prod-disk1.vhd");
    assert_false(plan.conv[0].dynamic);
    assert_int_equal(plan.need_bytes, 11 * GIB);
    json_t *spec = plan.spec;
    assert_int_equal(json_integer_value(json_object_get(json_object_get(spec, "cpu"), "sockets")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(spec, "cpu"), "cores")), 2);
    assert_int_equal(json_integer_value(json_object_get(spec, "memory_mib")), 1024);
    json_t *nic0 = json_array_get(json_object_get(spec, "nics"), 0);
    assert_string_equal(json_string_value(json_object_get(nic0, "mac")), "00:0c:29:12:34:56");
    assert_string_equal(json_string_value(json_object_get(nic0, "bridge")), "br0");
    json_t *nic1 = json_array_get(json_object_get(spec, "nics"), 1);
    assert_null(json_object_get(nic1, "mac")); /* none in the .vmx: ferry makes one */
    json_t *j = import_plan_to_json(&src, &plan);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web-01-prod");
    json_t *d1 = json_array_get(json_object_get(j, "disks"), 1);
    assert_string_equal(json_string_value(json_object_get(d1, "type")), "fixed");
    assert_int_equal(json_integer_value(json_object_get(d1, "size_bytes")), GIB);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "source"), "kind")),
                        "vmx");
    json_decref(j);
    import_plan_clear(&plan);
    /* dynamic: the room needed is the sources' bytes; an explicit name; one bridge for all */
    t.dynamic = true;
    t.name = "web";
    t.nnet = 1;
    t.net[0].network[0] = 0;
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    assert_string_equal(plan.name, "web");
    assert_false(has_note("made from"));
    assert_int_equal(plan.need_bytes, 2 * GIB + MIB);
    assert_true(plan.conv[1].dynamic);
    import_plan_clear(&plan);
}

/* VMware's firmware = "efi" makes an EFI VM whose variables are kept next to its disks. */
static void test_efi(void **state)
{
    char text[sizeof vmx_text + 32];
    snprintf(text, sizeof text, "%sfirmware = \"EFI\"\n", vmx_text);
    load_vmx(text);
    assert_string_equal(src.firmware, "efi");
    struct import_target t = target();
    struct ferr e = {0};
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    assert_string_equal(json_string_value(json_object_get(plan.spec, "firmware")), "efi");
    assert_true(has_note("firmware efi -> EFI (OVMF, Debian's ovmf package"));
    assert_true(has_note("web-01-prod-efivars.fd next to its disks"));
    struct vm_spec *spec = malloc(sizeof *spec);
    assert_non_null(spec);
    assert_int_equal(vm_spec_from_json(plan.spec, NULL, spec, &e), 0);
    assert_int_equal(spec->firmware, VM_FIRMWARE_EFI);
    assert_string_equal(spec->efi_vars, "/srv/csv1/web-01-prod-efivars.fd");
    free(spec);
    import_plan_clear(&plan);
    load_vmx(vmx_text); /* BIOS: no firmware in the spec, which older nodes read too */
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    assert_null(json_object_get(plan.spec, "firmware"));
    assert_false(has_note("firmware"));
    import_plan_clear(&plan);
}

static void test_refusals(void **state)
{
    load_vmx(vmx_text);
    struct import_target t = target();
    t.name = "taken";
    expect_error(&t, FERR_EXISTS,
                 "a VM named taken exists already: import under another name (--name)");
    t.name = "old";
    expect_error(&t, FERR_EXISTS, "csv:vol1/old-disk0.vhd exists already");
    t.name = "Bad_Name";
    expect_error(&t, FERR_INVALID, "the VM spec made from /imp/web.vmx is refused: name");
    t.name = NULL;
    t.host_memory_mib = 512;
    expect_error(&t, FERR_LIMIT, "memory of 1024 MiB is more than node host1 has (512 MiB)");
    t = target();
    t.host_cpus = 2;
    expect_error(&t, FERR_LIMIT, "4 vCPUs, but node host1 has 2 CPUs");
    t = target();
    t.volume_free_bytes = 10 * GIB;
    expect_error(&t, FERR_LIMIT, "volume vol1 has 10240 MiB free, the fixed disks need 11264 MiB");
    t.dynamic = true; /* 2 GiB of data fits */
    struct ferr e = {0};
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    import_plan_clear(&plan);
    t = target();
    t.nnet = 1;
    expect_error(&t, FERR_INVALID,
                 "ethernet1 is on network \"DMZ\", which is mapped to no bridge: add --network "
                 "\"DMZ=BRIDGE\"");
    t = target();
    snprintf(t.net[1].bridge, sizeof t.net[1].bridge, "nobr");
    expect_error(&t, FERR_INVALID, "is refused: nics[1].bridge");
    t = target();
    src.disks[1].virtual_bytes = 3000 * GIB;
    expect_error(&t, FERR_LIMIT, "disk scsi0:1 is 3000 GiB: a VHD holds at most 2040 GiB");
    src.disks[1].virtual_bytes = 1000;
    expect_error(&t, FERR_INVALID, "disk scsi0:1 has a size of 1000 bytes");
    /* 9 sockets */
    load_vmx("numvcpus = \"9\"\nmemsize = \"64\"\nscsi0.present = \"TRUE\"\n"
             "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.vmdk\"\n");
    t.host_cpus = 0;
    expect_error(&t, FERR_INVALID,
                 "9 vCPUs as 9 sockets of 1 cores: a ferry VM has at most 8 sockets");
    /* no disks, too little memory, a name from nothing */
    load_vmx("displayName = \"x\"\nmemsize = \"64\"\n");
    expect_error(&t, FERR_INVALID, "/imp/web.vmx: the machine has no disk to import");
    load_vmx("displayName = \"x\"\nmemsize = \"16\"\n");
    expect_error(&t, FERR_INVALID, "memory of 16 MiB: a ferry VM has at least 32");
    load_vmx("displayName = \"!!!\"\nmemsize = \"64\"\n");
    expect_error(&t, FERR_INVALID, "no VM name can be made from \"!!!\": give one with --name");
}

static void test_names(void **state)
{
    char n[VM_NAME_MAX + 1];
    import_name_from("Web 01 (prod)", n);
    assert_string_equal(n, "web-01-prod");
    import_name_from("2019-DC", n);
    assert_string_equal(n, "vm-2019-dc");
    import_name_from("--a--", n);
    assert_string_equal(n, "a");
    import_name_from("caf\xc3\xa9", n);
    assert_string_equal(n, "caf");
    import_name_from("", n);
    assert_string_equal(n, "");
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    import_name_from(longname, n);
    assert_int_equal(strlen(n), VM_NAME_MAX);
}

static void test_ovf_source(void **state)
{
    static struct ovf o;
    memset(&o, 0, sizeof o);
    snprintf(o.name, sizeof o.name, "deb");
    snprintf(o.firmware, sizeof o.firmware, "bios");
    o.vcpus = 2;
    o.cores_per_socket = 2;
    o.memory_mib = 256;
    o.nfiles = 1;
    snprintf(o.files[0].href, sizeof o.files[0].href, "deb-disk1.vmdk");
    o.ndisks = 2;
    snprintf(o.disks[0].id, sizeof o.disks[0].id, "vmdisk1");
    o.disks[0].file = 0;
    o.disks[0].capacity_bytes = 10 * MIB;
    snprintf(o.disks[0].controller, sizeof o.disks[0].controller, "scsi");
    snprintf(o.disks[1].id, sizeof o.disks[1].id, "blank");
    o.disks[1].file = -1;
    o.nattached = 1;
    o.attached[0] = 0;
    o.nnics = 1;
    snprintf(o.nics[0].network, sizeof o.nics[0].network, "VM Network");
    o.nnotes = 1;
    snprintf(o.notes[0], sizeof o.notes[0], "3 CD/DVD drive(s) skipped");
    struct ferr e = {0};
    assert_int_equal(import_source_from_ovf(&o, "/imp/deb.ova", "ova", &src, &e), 0);
    assert_int_equal(src.ndisks, 1);
    assert_string_equal(src.disks[0].file, "deb-disk1.vmdk");
    assert_string_equal(src.disks[0].device, "scsi controller");
    assert_int_equal(src.disks[0].virtual_bytes, 10 * MIB);
    assert_string_equal(src.nics[0].model, "unknown");
    src.disks[0].ova_offset = 6144;
    src.disks[0].ova_size = 2048;
    snprintf(src.disks[0].path, sizeof src.disks[0].path, "/imp/deb.ova");
    struct import_target t = target();
    t.host_cpus = 0; /* another node: its CPUs are not known here */
    assert_int_equal(import_plan_make(&src, &t, &plan, &e), 0);
    assert_true(has_note("2 vCPUs not checked against node host1's CPUs"));
    assert_string_equal(plan.name, "deb");
    assert_int_equal(plan.conv[0].ova_offset, 6144);
    assert_true(has_note("3 CD/DVD drive(s) skipped"));
    json_t *j = import_plan_to_json(&src, &plan);
    json_t *d0 = json_array_get(json_object_get(j, "disks"), 0);
    assert_int_equal(json_integer_value(json_object_get(d0, "ova_offset")), 6144);
    json_decref(j);
    import_plan_clear(&plan);
    /* an attached disk without a file */
    o.attached[0] = 1;
    assert_int_equal(import_source_from_ovf(&o, "/imp/deb.ova", "ova", &src, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "disk blank has no file"));
}

static const char vmx_devices[] =
    "displayName = \"legacy\"\nmemsize = \"512\"\n"
    "scsi0.present = \"TRUE\"\nscsi0.virtualDev = \"pvscsi\"\n"
    "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.vmdk\"\n"
    "scsi1.present = \"TRUE\"\nscsi1.virtualDev = \"lsilogic\"\n"
    "scsi1:0.present = \"TRUE\"\nscsi1:0.fileName = \"b.vmdk\"\n"
    "sata0.present = \"TRUE\"\nsata0:0.present = \"TRUE\"\nsata0:0.fileName = \"c.vmdk\"\n"
    "ide0:1.present = \"TRUE\"\nide0:1.fileName = \"d.vmdk\"\n"
    "nvme0.present = \"TRUE\"\nnvme0:0.present = \"TRUE\"\nnvme0:0.fileName = \"e.vmdk\"\n"
    "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vmxnet3\"\n"
    "ethernet0.networkName = \"VM Network\"\n"
    "ethernet1.present = \"TRUE\"\nethernet1.virtualDev = \"e1000e\"\n"
    "ethernet1.networkName = \"VM Network\"\n"
    "ethernet2.present = \"TRUE\"\nethernet2.virtualDev = \"E1000\"\n"
    "ethernet2.networkName = \"VM Network\"\n"
    "ethernet3.present = \"TRUE\"\nethernet3.networkName = \"VM Network\"\n";

static const char *disk_bus(unsigned i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(plan.spec, "disks"), i), "bus"));
}

static const char *nic_model(unsigned i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(plan.spec, "nics"), i), "model"));
}

static void test_keep_devices(void **state)
{
    load_vmx(vmx_devices);
    assert_int_equal(src.ndisks, 5);
    assert_string_equal(src.disks[0].bus, "scsi");
    assert_string_equal(src.disks[0].controller, "pvscsi");
    assert_string_equal(src.disks[0].device, "scsi0:0 (disk, pvscsi)");
    assert_string_equal(src.disks[1].controller, "lsilogic");
    struct import_target t = target();
    struct ferr e = {0};
    /* without --keep-devices everything stays virtio */
    if (import_plan_make(&src, &t, &plan, &e) != 0)
        fail_msg("%s", e.msg);
    for (unsigned i = 0; i < 5; i++)
        assert_null(disk_bus(i));
    for (unsigned i = 0; i < 4; i++)
        assert_null(nic_model(i));
    assert_null(json_object_get(plan.spec, "scsi_controller"));
    assert_true(has_note("devices are mapped to virtio"));
    assert_true(has_note("ethernet0 (vmxnet3) on \"VM Network\" -> virtio NIC"));
    import_plan_clear(&plan);

    t.keep_devices = true;
    if (import_plan_make(&src, &t, &plan, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(disk_bus(0), "scsi");
    assert_string_equal(disk_bus(1), "scsi"); /* on the VM's one controller, the first's */
    assert_string_equal(disk_bus(2), "sata");
    assert_null(disk_bus(3)); /* NVMe (the .vmx's order: scsi, sata, nvme, ide): virtio */
    assert_string_equal(disk_bus(4), "ide");
    assert_string_equal(json_string_value(json_object_get(plan.spec, "scsi_controller")), "pvscsi");
    assert_string_equal(nic_model(0), "vmxnet3");
    assert_string_equal(nic_model(1), "e1000");
    assert_string_equal(nic_model(2), "e1000");
    assert_null(nic_model(3)); /* vlance: virtio */
    assert_false(has_note("devices are mapped to virtio"));
    assert_true(has_note("disk scsi0:0 (scsi0:0 (disk, pvscsi)) -> scsi disk on pvscsi, the same "
                         "device"));
    assert_true(has_note("the chip differs"));
    assert_true(has_note("a ferry VM has one SCSI controller, pvscsi"));
    assert_true(has_note("-> sata disk on an AHCI controller"));
    assert_true(has_note("-> ide disk on the PIIX IDE controller"));
    assert_true(has_note("-> virtio disk: ferry has no nvme controller"));
    assert_true(has_note("ethernet0 (vmxnet3) on \"VM Network\" -> vmxnet3 NIC"));
    assert_true(has_note("ethernet1 (e1000e) -> e1000 NIC: the e1000e (82574) became an e1000"));
    assert_true(has_note("ethernet3 (vlance) -> virtio NIC: ferry has no vlance"));
    /* the spec it made is one ferryd takes */
    struct vm_spec *vs = malloc(sizeof *vs);
    assert_non_null(vs);
    assert_int_equal(vm_spec_from_json(plan.spec, NULL, vs, &e), 0);
    assert_int_equal(vs->disks[4].bus, VM_BUS_IDE);
    assert_int_equal(vs->nics[0].model, VM_NIC_VMXNET3);
    free(vs);
    import_plan_clear(&plan);

    /* an LSI Logic first: the VM's controller is QEMU's lsi */
    struct import_src_disk d = {.label = "scsi0:0",
                                .device = "scsi0:0 (disk, lsisas1068)",
                                .bus = "scsi",
                                .controller = "lsisas1068"};
    char note[IMPORT_NOTE_MAX];
    int ctl;
    assert_int_equal(import_map_disk(&d, &ctl, note, sizeof note), VM_BUS_SCSI);
    assert_int_equal(ctl, VM_SCSI_LSI);
    assert_non_null(strstr(note, "not VMware's LSI Logic SAS: the chip differs"));
    snprintf(d.controller, sizeof d.controller, "buslogic");
    assert_int_equal(import_map_disk(&d, &ctl, note, sizeof note), VM_BUS_VIRTIO);
    assert_non_null(strstr(note, "ferry has no scsi buslogic controller"));
    d.controller[0] = 0; /* a .vmx without scsi0.virtualDev */
    assert_int_equal(import_map_disk(&d, &ctl, note, sizeof note), VM_BUS_VIRTIO);
    assert_int_equal(import_map_nic("nic0", "VmxNet3", note, sizeof note), VM_NIC_VMXNET3);
    assert_int_equal(import_map_nic("nic0", "E1000e", note, sizeof note), VM_NIC_E1000);
    assert_int_equal(import_map_nic("nic0", "PCNet32", note, sizeof note), VM_NIC_VIRTIO);
}

static void test_ovf_controllers(void **state)
{
    static struct ovf o;
    memset(&o, 0, sizeof o);
    snprintf(o.name, sizeof o.name, "deb");
    snprintf(o.firmware, sizeof o.firmware, "bios");
    o.vcpus = 1;
    o.cores_per_socket = 1;
    o.memory_mib = 256;
    o.nfiles = 1;
    snprintf(o.files[0].href, sizeof o.files[0].href, "deb-disk1.vmdk");
    o.ndisks = 1;
    snprintf(o.disks[0].id, sizeof o.disks[0].id, "vmdisk1");
    o.disks[0].capacity_bytes = 10 * MIB;
    snprintf(o.disks[0].controller, sizeof o.disks[0].controller, "scsi");
    snprintf(o.disks[0].controller_sub, sizeof o.disks[0].controller_sub, "virtualscsi");
    o.nattached = 1;
    struct ferr e = {0};
    assert_int_equal(import_source_from_ovf(&o, "/imp/deb.ovf", "ovf", &src, &e), 0);
    assert_string_equal(src.disks[0].bus, "scsi");
    assert_string_equal(src.disks[0].controller, "pvscsi");
    assert_string_equal(src.disks[0].device, "scsi controller virtualscsi");
    snprintf(o.disks[0].controller_sub, sizeof o.disks[0].controller_sub, "lsilogicsas");
    assert_int_equal(import_source_from_ovf(&o, "/imp/deb.ovf", "ovf", &src, &e), 0);
    assert_string_equal(src.disks[0].controller, "lsisas1068");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmx_plan),        cmocka_unit_test(test_efi),
        cmocka_unit_test(test_refusals),        cmocka_unit_test(test_names),
        cmocka_unit_test(test_ovf_source),      cmocka_unit_test(test_keep_devices),
        cmocka_unit_test(test_ovf_controllers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
