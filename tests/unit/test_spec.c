/* SPDX-License-Identifier: MIT */
/* Unit tests of the VM spec: defaults, round trips, and every kind of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "storage/vhd.h"
#include "vm/spec.h"

/* A fake host: two bridges, a few directories and files, 24000 MiB of memory. */
static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}
static bool fake_bridge(const char *name, void *data)
{
    static const char *const l[] = {"br0", "br1", NULL};
    (void)data;
    return in_list(name, l);
}
static bool fake_dir(const char *path, void *data)
{
    static const char *const l[] = {"/", "/csv", "/csv/sub", "/boot", NULL};
    (void)data;
    return in_list(path, l);
}
static bool fake_file(const char *path, void *data)
{
    static const char *const l[] = {
        "/csv/a.vhd", "/csv/b.vhd", "/csv/sub/c.vhd", "/boot/vmlinuz", "/boot/initrd.img",
        "/root.vhd",  NULL};
    (void)data;
    return in_list(path, l);
}
static bool fake_machine(const char *machine, void *data)
{
    static const char *const l[] = {"pc", "pc-i440fx-7.2", "pc-i440fx-6.2", "q35", NULL};
    (void)data;
    return in_list(machine, l);
}
static const struct vm_spec_env env = {
    .host_memory_mib = 24000,
    .bridge_exists = fake_bridge,
    .dir_exists = fake_dir,
    .file_exists = fake_file,
    .machine_known = fake_machine,
};

/* Tests write JSON with single quotes; this turns them into double quotes and parses. */
static json_t *sq(const char *text)
{
    char *t = strdup(text);
    assert_non_null(t);
    for (char *c = t; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t jerr;
    /* JSON_ALLOW_NUL: the spec must cope with strings that hide a NUL inside. */
    json_t *j = json_loads(t, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    free(t);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return j;
}

static int parse_text(const char *text, const struct vm_spec_env *en, struct vm_spec *s,
                      struct ferr *e)
{
    json_t *j = sq(text);
    int rc = vm_spec_from_json(j, en, s, e);
    json_decref(j);
    return rc;
}

static void expect_ok(const char *text, struct vm_spec *s)
{
    struct ferr e = {0};
    int rc = parse_text(text, &env, s, &e);
    if (rc != 0)
        fail_msg("expected %s to parse, got %d: %s", text, rc, e.msg);
}

static void expect_invalid_j(json_t *j, const char *want)
{
    struct vm_spec *s = malloc(sizeof(*s));
    assert_non_null(s);
    struct ferr e = {0};
    int rc = vm_spec_from_json(j, &env, s, &e);
    free(s);
    assert_int_equal(rc, FERR_INVALID);
    assert_int_equal(e.code, FERR_INVALID);
    if (!strstr(e.msg, want))
        fail_msg("message \"%s\" does not contain \"%s\"", e.msg, want);
}

/* ---- bad input, one cmocka test per row ---------------------------------------------------- */

struct bad {
    const char *json;
    const char *want; /* substring of the message; always names the field */
};

#define BASE "'name':'web-1','memory_mib':512"
#define DISK "'disks':[{'path':'/csv/a.vhd'}]"

static const struct bad bad_cases[] = {
    /* top level */
    {"[]", "spec: expected a JSON object at the top level, not an array"},
    {"'web'", "spec: expected a JSON object at the top level, not a string"},
    {"{" BASE "," DISK ",'foo':1}",
     "unknown field \"foo\" (accepted: name, cpu, memory_mib, disks, "
     "nics, boot, blackout_budget_ms, priority, labels, machine, ha, display, scsi_controller, "
     "firmware, efi_vars)"},
    {"{" BASE "," DISK ",'Name':'x'}", "unknown field \"Name\""},
    /* ha */
    {"{" BASE "," DISK ",'ha':true}", "ha: expected an object, not a boolean"},
    {"{" BASE "," DISK ",'ha':{'prio':'high'}}", "ha: unknown field \"prio\""},
    {"{" BASE "," DISK ",'ha':{'priority':'urgent'}}",
     "ha.priority: expected high, medium, low or none (never started by HA), not \"urgent\""},
    {"{" BASE "," DISK ",'ha':{'failback':'25-3'}}",
     "ha.failback: expected never, immediate or a window of hours HH-HH"},
    {"{" BASE "," DISK ",'ha':{'failback':'3-3'}}", "ha.failback:"},
    {"{" BASE "," DISK ",'ha':{'failback':'-3'}}", "ha.failback:"},
    {"{" BASE "," DISK ",'ha':{'failback':'1-2x'}}", "ha.failback:"},
    {"{" BASE "," DISK ",'ha':{'restart_max':-1}}", "ha.restart_max"},
    {"{" BASE "," DISK ",'ha':{'restart_max':101}}", "ha.restart_max"},
    {"{" BASE "," DISK ",'ha':{'restart_period_s':0}}", "ha.restart_period_s"},
    {"{" BASE "," DISK ",'ha':{'preferred':['host2','Host3']}}",
     "ha.preferred[1]: \"Host3\" is not a node name"},
    {"{" BASE "," DISK ",'ha':{'preferred':['host2','host2']}}",
     "ha.preferred: host2 is named twice"},
    {"{" BASE "," DISK ",'ha':{'preferred':['host2'],'possible':['host3']}}",
     "ha.preferred: host2 is not one of ha.possible"},
    {"{" BASE "," DISK ",'ha':{'anti_affinity':'Web Tier'}}", "ha.anti_affinity:"},
    {"{" BASE "," DISK ",'ha':{'anti_affinity_strict':1}}", "ha.anti_affinity_strict"},
    /* display */
    {"{" BASE "," DISK ",'display':'std'}", "display: expected \"vga\" or \"none\", not \"std\""},
    {"{" BASE "," DISK ",'display':true}", "display: expected \"vga\" or \"none\", not a boolean"},
    /* firmware */
    {"{" BASE "," DISK ",'firmware':'uefi'}",
     "firmware: expected \"bios\" or \"efi\", not \"uefi\""},
    {"{" BASE "," DISK ",'efi_vars':'/csv/v.fd'}", "efi_vars: only for firmware \"efi\""},
    {"{" BASE "," DISK ",'firmware':'bios','efi_vars':'/csv/v.fd'}",
     "efi_vars: only for firmware \"efi\""},
    {"{" BASE ",'firmware':'efi','boot':{'kernel':'/boot/vmlinuz'}}",
     "efi_vars: missing: an EFI VM without disks needs a file for its EFI variables"},
    {"{" BASE "," DISK ",'firmware':'efi','efi_vars':'v.fd'}",
     "efi_vars: \"v.fd\" is not an absolute path"},
    {"{" BASE "," DISK ",'firmware':'efi','efi_vars':'/csv/a.vhd'}",
     "efi_vars: \"/csv/a.vhd\" is disks[0]'s file"},
    {"{" BASE "," DISK ",'firmware':'efi','efi_vars':'/nodir/v.fd'}",
     "efi_vars: directory /nodir does not exist"},
    {"{" BASE "," DISK ",'firmware':'efi','efi_vars':7}", "efi_vars: expected a string"},
    {"{'name':'web-1','memory_mib':255," DISK ",'firmware':'efi'}",
     "memory_mib: 255 MiB is too little for EFI firmware (OVMF crashes below about 160 MiB); "
     "give at least 256, or firmware bios"},
    /* machine */
    {"{" BASE "," DISK ",'machine':'pc-i440fx-9.9'}",
     "machine: this host's QEMU has no machine type \"pc-i440fx-9.9\""},
    {"{" BASE "," DISK ",'machine':'pc,accel=kvm'}", "machine: expected a QEMU machine type"},
    {"{" BASE "," DISK ",'machine':''}", "machine: expected a QEMU machine type"},
    {"{" BASE "," DISK ",'machine':7}", "machine: expected a QEMU machine type (1-63 of a-z A-Z "
                                        "0-9 . - _, e.g. pc-i440fx-7.2), not an integer"},
    /* name */
    {"{'memory_mib':512," DISK "}", "name: missing"},
    {"{'name':5,'memory_mib':512," DISK "}", "name: expected a string, not an integer"},
    {"{'name':null,'memory_mib':512," DISK "}", "name: missing"},
    {"{'name':'Web_1','memory_mib':512," DISK "}",
     "name: \"Web_1\" is invalid: use 1-63 of a-z 0-9 -, starting with a letter"},
    {"{'name':'1web','memory_mib':512," DISK "}", "name: \"1web\" is invalid"},
    {"{'name':'web-','memory_mib':512," DISK "}", "name: \"web-\" is invalid"},
    {"{'name':'','memory_mib':512," DISK "}", "name: \"\" is invalid"},
    {"{'name':'a234567890123456789012345678901234567890123456789012345678901234',"
     "'memory_mib':512," DISK "}",
     "name: \"a23456789"},
    {"{'name':'we\\u0000b','memory_mib':512," DISK "}", "name: \"we\" is invalid"},
    {"{'name':'we\\nb','memory_mib':512," DISK "}", "name: \"we\\x0ab\" is invalid"},
    /* memory */
    {"{'name':'web-1'," DISK "}", "memory_mib: missing"},
    {"{'name':'web-1','memory_mib':'512'," DISK "}",
     "memory_mib: expected an integer, not a string"},
    {"{'name':'web-1','memory_mib':512.5," DISK "}",
     "memory_mib: expected an integer, not a fractional number"},
    {"{'name':'web-1','memory_mib':true," DISK "}",
     "memory_mib: expected an integer, not a boolean"},
    {"{'name':'web-1','memory_mib':-1," DISK "}", "memory_mib: -1 is out of range 32..24000"},
    {"{'name':'web-1','memory_mib':16," DISK "}", "memory_mib: 16 is out of range 32..24000"},
    {"{'name':'web-1','memory_mib':999999," DISK "}",
     "memory_mib: 999999 exceeds the host's 24000 MiB"},
    /* cpu */
    {"{" BASE "," DISK ",'cpu':4}", "cpu: expected an object"},
    {"{" BASE "," DISK ",'cpu':{'sockets':9}}", "cpu.sockets: 9 is out of range 1..8"},
    {"{" BASE "," DISK ",'cpu':{'sockets':0}}", "cpu.sockets: 0 is out of range 1..8"},
    {"{" BASE "," DISK ",'cpu':{'sockets':-2}}", "cpu.sockets: -2 is out of range 1..8"},
    {"{" BASE "," DISK ",'cpu':{'cores':65}}", "cpu.cores: 65 is out of range 1..64"},
    {"{" BASE "," DISK ",'cpu':{'threads':3}}", "cpu.threads: 3 is out of range 1..2"},
    {"{" BASE "," DISK ",'cpu':{'threads':'2'}}", "cpu.threads: expected an integer, not a string"},
    {"{" BASE "," DISK ",'cpu':{'cores':2.0}}", "cpu.cores: expected an integer"},
    {"{" BASE "," DISK ",'cpu':{'numa':1}}",
     "cpu: unknown field \"numa\" (accepted: sockets, cores, threads)"},
    {"{" BASE "," DISK ",'cpu':{'sockets':8,'cores':64}}",
     "cpu: 8 sockets x 64 cores x 1 threads = 512 vCPUs exceeds the maximum of 255"},
    /* QEMU 10.0: "The max CPUs supported by machine 'pc-i440fx-10.0' is 255" */
    {"{" BASE "," DISK ",'cpu':{'sockets':8,'cores':32}}",
     "cpu: 8 sockets x 32 cores x 1 threads = 256 vCPUs exceeds the maximum of 255"},
    /* disks */
    {"{" BASE ",'disks':{}}", "disks: expected an array of disk objects, not an object"},
    {"{" BASE ",'disks':['/csv/a.vhd']}", "disks[0]: expected an object"},
    {"{" BASE ",'disks':[{'size_mib':10}]}", "disks[0].path: missing"},
    {"{" BASE ",'disks':[{'path':5}]}", "disks[0].path: expected a string, not an integer"},
    {"{" BASE ",'disks':[{'path':'a.vhd'}]}", "disks[0].path: \"a.vhd\" is not an absolute path"},
    {"{" BASE ",'disks':[{'path':'/csv/../etc/x.vhd'}]}",
     "disks[0].path: \"/csv/../etc/x.vhd\" must not contain \".\" or \"..\" components"},
    {"{" BASE ",'disks':[{'path':'/csv/./a.vhd'}]}", "disks[0].path: \"/csv/./a.vhd\" must not"},
    {"{" BASE ",'disks':[{'path':'/csv/'}]}", "disks[0].path: \"/csv/\" names a directory"},
    {"{" BASE ",'disks':[{'path':'/csv/a\\tb.vhd'}]}",
     "disks[0].path: \"/csv/a\\x09b.vhd\" contains "
     "control characters"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd'},{'path':'/nope/b.vhd','size_mib':10}]}",
     "disks[1].path: directory /nope does not exist"},
    {"{" BASE ",'disks':[{'path':'/csv/new.vhd'}]}",
     "disks[0].path: file /csv/new.vhd does not exist (give size_mib to create a new disk)"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd'},{'path':'/csv/b.vhd'},{'path':'/csv/a.vhd'}]}",
     "disks[2].path: \"/csv/a.vhd\" is already used by disks[0]"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':0}]}",
     "disks[0].size_mib: 0 is out of range 1..2088960"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':2088961}]}",
     "disks[0].size_mib: 2088961 is out of range 1..2088960"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':-10}]}",
     "disks[0].size_mib: -10 is out of"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':'10'}]}",
     "disks[0].size_mib: expected an integer, not a string"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','readonly':'yes'}]}",
     "disks[0].readonly: expected true or false, not a string"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','readonly':1}]}", "disks[0].readonly: expected true"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','readonly':true,'size_mib':10}]}",
     "disks[0].size_mib: a readonly disk cannot be created"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','format':'qcow2'}]}",
     "disks[0]: unknown field \"format\" (accepted: path, size_mib, type, readonly, bus)"},
    /* buses and the SCSI controller */
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'nvme'}]}",
     "disks[0].bus: expected \"virtio\", \"scsi\", \"sata\" or \"ide\", not \"nvme\""},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':2}]}",
     "disks[0].bus: expected \"virtio\", \"scsi\", \"sata\" or \"ide\", not an integer"},
    {"{" BASE "," DISK ",'scsi_controller':'lsi'}", "scsi_controller: no disk is on bus \"scsi\""},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'scsi'}],'scsi_controller':'buslogic'}",
     "scsi_controller: expected \"pvscsi\" or \"lsi\", not \"buslogic\""},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'ide'},{'path':'/csv/b.vhd','bus':'ide'},"
     "{'path':'/csv/sub/c.vhd','bus':'ide'},{'path':'/root.vhd','bus':'ide'},"
     "{'path':'/csv/n.vhd','size_mib':1,'bus':'ide'}]}",
     "disks: 5 disks on bus \"ide\" exceed the 4 IDE units"},
    {"{" BASE ",'machine':'q35','disks':[{'path':'/csv/a.vhd','bus':'ide'}]}",
     "disks: bus \"ide\" needs an i440fx (pc) machine"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'sata'},{'path':'/csv/b.vhd','bus':'sata'},"
     "{'path':'/csv/sub/c.vhd','bus':'sata'},{'path':'/root.vhd','bus':'sata'},"
     "{'path':'/csv/n.vhd','size_mib':1,'bus':'sata'},{'path':'/csv/"
     "m.vhd','size_mib':1,'bus':'sata'},"
     "{'path':'/csv/o.vhd','size_mib':1,'bus':'sata'}]}",
     "disks: 7 disks on bus \"sata\" exceed the 6 ports"},
    {"{" BASE ",'scsi_controller':'lsi','disks':[{'path':'/csv/a.vhd','bus':'scsi'},"
     "{'path':'/csv/b.vhd','bus':'scsi'},{'path':'/csv/sub/c.vhd','bus':'scsi'},"
     "{'path':'/root.vhd','bus':'scsi'},{'path':'/csv/n.vhd','size_mib':1,'bus':'scsi'},"
     "{'path':'/csv/m.vhd','size_mib':1,'bus':'scsi'},{'path':'/csv/"
     "o.vhd','size_mib':1,'bus':'scsi'},"
     "{'path':'/csv/p.vhd','size_mib':1,'bus':'scsi'}]}",
     "disks: 8 disks on bus \"scsi\" exceed the 7 an lsi controller takes"},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':10,'type':'sparse'}]}",
     "disks[0].type: expected \"fixed\" or \"dynamic\""},
    {"{" BASE ",'disks':[{'path':'/csv/n.vhd','size_mib':10,'type':7}]}",
     "disks[0].type: expected \"fixed\" or \"dynamic\""},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd','type':'dynamic'}]}",
     "disks[0].type: only for a disk to create (give size_mib)"},
    {"{" BASE ",'disks':[{'path':'/csv/a.vhd'},{'path':'/csv/b.vhd'},{'path':'/csv/sub/c.vhd'},"
     "{'path':'/csv/d1.vhd','size_mib':1},{'path':'/csv/d2.vhd','size_mib':1},"
     "{'path':'/csv/d3.vhd','size_mib':1},{'path':'/csv/d4.vhd','size_mib':1},"
     "{'path':'/csv/d5.vhd','size_mib':1},{'path':'/csv/d6.vhd','size_mib':1}]}",
     "disks: 9 disks exceed the maximum of 8"},
    {"{" BASE ",'disks':[{'path':'/csv/a\\u0000.vhd'}]}",
     "disks[0].path: contains a NUL character"},
    /* nics */
    {"{" BASE "," DISK ",'nics':'br0'}", "nics: expected an array of NIC objects, not a string"},
    {"{" BASE "," DISK ",'nics':[5]}", "nics[0]: expected an object"},
    {"{" BASE "," DISK ",'nics':[{'mac':'52:54:00:00:00:01'}]}", "nics[0].bridge: missing"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0'},{'bridge':'br9'}]}",
     "nics[1].bridge: bridge br9 does not exist"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'abcdefghijklmnop'}]}",
     "nics[0].bridge: \"abcdefghijklmnop\" is invalid: use 1-15 of A-Z a-z 0-9 _ . -"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br 0'}]}", "nics[0].bridge: \"br 0\" is invalid"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'..'}]}", "nics[0].bridge: \"..\" is invalid"},
    {"{" BASE "," DISK ",'nics':[{'bridge':['br0']}]}", "nics[0].bridge: expected a string"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'01:00:5e:00:00:01'}]}",
     "nics[0].mac: \"01:00:5e:00:00:01\" is a multicast address"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'ff:ff:ff:ff:ff:ff'}]}",
     "nics[0].mac: \"ff:ff:ff:ff:ff:ff\" is a multicast address"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'00:00:00:00:00:00'}]}",
     "nics[0].mac: 00:00:00:00:00:00 is not a usable address"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'52:54:00:zz:00:01'}]}",
     "nics[0].mac: \"52:54:00:zz:00:01\" is not a MAC address: use six hex pairs"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'52-54-00-00-00-01'}]}",
     "nics[0].mac: \"52-54-00-00-00-01\" is not a MAC address"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'52:54:00:00:00:1'}]}",
     "nics[0].mac: \"52:54:00:00:00:1\" is not a MAC address"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':525400000001}]}",
     "nics[0].mac: expected a string"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','mac':'52:54:00:00:00:01'},"
     "{'bridge':'br1','mac':'52:54:00:00:00:01'}]}",
     "nics[1].mac: 52:54:00:00:00:01 is already used by nics[0]"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','type':'e1000'}]}",
     "nics[0]: unknown field \"type\" (accepted: bridge, mac, model)"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','model':'e1000e'}]}",
     "nics[0].model: expected \"virtio\", \"e1000\" or \"vmxnet3\", not \"e1000e\""},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0','model':true}]}",
     "nics[0].model: expected \"virtio\", \"e1000\" or \"vmxnet3\", not a boolean"},
    {"{" BASE "," DISK ",'nics':[{'bridge':'br0'},{'bridge':'br0'},{'bridge':'br0'},"
     "{'bridge':'br0'},{'bridge':'br0'},{'bridge':'br0'},{'bridge':'br0'},{'bridge':'br0'},"
     "{'bridge':'br0'}]}",
     "nics: 9 NICs exceed the maximum of 8"},
    /* boot */
    {"{" BASE ",'boot':'/boot/vmlinuz'}", "boot: expected an object"},
    {"{" BASE ",'boot':{'kernel':'vmlinuz'}}", "boot.kernel: \"vmlinuz\" is not an absolute path"},
    {"{" BASE ",'boot':{'kernel':'/boot/../boot/vmlinuz'}}",
     "boot.kernel: \"/boot/../boot/vmlinuz\""
     " must not contain"},
    {"{" BASE ",'boot':{'kernel':'/boot/nope'}}", "boot.kernel: file /boot/nope does not exist"},
    {"{" BASE ",'boot':{'kernel':7}}", "boot.kernel: expected a string, not an integer"},
    {"{" BASE ",'boot':{'kernel':'/boot/vmlinuz','initrd':'/boot/nope.img'}}",
     "boot.initrd: file /boot/nope.img does not exist"},
    {"{" BASE ",'boot':{'kernel':'/boot/vmlinuz','initrd':'initrd.img'}}",
     "boot.initrd: \"initrd.img\" is not an absolute path"},
    {"{" BASE "," DISK ",'boot':{'initrd':'/boot/initrd.img'}}",
     "boot.initrd: needs boot.kernel as well"},
    {"{" BASE "," DISK ",'boot':{'cmdline':'console=ttyS0'}}",
     "boot.cmdline: needs boot.kernel as well"},
    {"{" BASE ",'boot':{'kernel':'/boot/vmlinuz','cmdline':'a\\nb'}}",
     "boot.cmdline: must not contain control characters"},
    {"{" BASE ",'boot':{'kernel':'/boot/vmlinuz','cmdline':['a']}}",
     "boot.cmdline: expected a string, not an array"},
    {"{" BASE ",'boot':{'kernel':'/boot/vmlinuz','bios':'seabios'}}",
     "boot: unknown field \"bios\" (accepted: kernel, initrd, cmdline)"},
    {"{" BASE "}", "disks: at least one disk is needed to boot from when boot.kernel is not set"},
    {"{" BASE ",'boot':{}}", "disks: at least one disk is needed"},
    /* budget and priority */
    {"{" BASE "," DISK ",'blackout_budget_ms':5}",
     "blackout_budget_ms: 5 is out of range 10..60000"},
    {"{" BASE "," DISK ",'blackout_budget_ms':60001}",
     "blackout_budget_ms: 60001 is out of range 10..60000"},
    {"{" BASE "," DISK ",'blackout_budget_ms':'300'}",
     "blackout_budget_ms: expected an integer, not a string"},
    {"{" BASE "," DISK ",'blackout_budget_ms':-300}", "blackout_budget_ms: -300 is out of range"},
    {"{" BASE "," DISK ",'priority':1001}", "priority: 1001 is out of range 0..1000"},
    {"{" BASE "," DISK ",'priority':-1}", "priority: -1 is out of range 0..1000"},
    {"{" BASE "," DISK ",'priority':1.5}",
     "priority: expected an integer, not a fractional number"},
    {"{" BASE "," DISK ",'priority':{}}", "priority: expected an integer, not an object"},
    /* labels */
    {"{" BASE "," DISK ",'labels':['a']}", "labels: expected an object of strings"},
    {"{" BASE "," DISK ",'labels':{'bad key':'x'}}",
     "labels: key \"bad key\" is invalid: use 1-63 of a-z A-Z 0-9 . _ - /"},
    {"{" BASE "," DISK ",'labels':{'':'x'}}", "labels: key \"\" is invalid"},
    {"{" BASE "," DISK ",'labels':{'-x':'x'}}", "labels: key \"-x\" is invalid"},
    {"{" BASE "," DISK ",'labels':{'tier':5}}", "labels.tier: expected a string, not an integer"},
    {"{" BASE "," DISK ",'labels':{'tier':null}}", "labels.tier: expected a string, not null"},
    {"{" BASE "," DISK ",'labels':{'tier':'a\\u0007'}}",
     "labels.tier: must not contain control characters"},
};

static void test_bad(void **state)
{
    const struct bad *b = *state;
    json_t *j = sq(b->json);
    expect_invalid_j(j, b->want);
    json_decref(j);
}

/* ---- bad input that is easier to build in code ------------------------------------------- */

static json_t *base_spec(void)
{
    return sq("{" BASE "," DISK "}");
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_bad_long_path(void **state)
{
    (void)state;
    char *p = repeat('a', 1030);
    p[0] = '/';
    json_t *j = sq("{" BASE ",'disks':[{}]}");
    json_object_set_new(json_array_get(json_object_get(j, "disks"), 0), "path", json_string(p));
    expect_invalid_j(j, "disks[0].path: 1030 characters exceed the maximum of 1023");
    json_decref(j);
    free(p);
}

static void test_bad_long_cmdline(void **state)
{
    (void)state;
    char *c = repeat('x', VM_CMDLINE_MAX);
    json_t *j = sq("{" BASE ",'boot':{'kernel':'/boot/vmlinuz'}}");
    json_object_set_new(json_object_get(j, "boot"), "cmdline", json_string(c));
    expect_invalid_j(j, "boot.cmdline: 2048 characters exceed the maximum of 2047");
    json_decref(j);
    free(c);
}

static void test_bad_too_many_labels(void **state)
{
    (void)state;
    json_t *j = base_spec(), *l = json_object();
    for (int i = 0; i <= VM_MAX_LABELS; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        json_object_set_new(l, k, json_string("v"));
    }
    json_object_set_new(j, "labels", l);
    expect_invalid_j(j, "labels: 33 labels exceed the maximum of 32");
    json_decref(j);
}

static void test_bad_long_label(void **state)
{
    (void)state;
    char *v = repeat('v', 256), *k = repeat('k', 64);
    json_t *j = base_spec(), *l = json_object();
    json_object_set_new(l, "tier", json_string(v));
    json_object_set_new(j, "labels", l);
    expect_invalid_j(j, "labels.tier: 256 characters exceed the maximum of 255");
    json_object_clear(l);
    json_object_set_new(l, k, json_string("x"));
    expect_invalid_j(j, "labels: key \"kkkk");
    json_decref(j);
    free(v);
    free(k);
}

static void test_bad_long_unknown_field_is_cut(void **state)
{
    (void)state;
    char *k = repeat('z', 5000);
    json_t *j = base_spec();
    json_object_set_new(j, k, json_true());
    expect_invalid_j(j, "unknown field \"zzzz");
    expect_invalid_j(j, "...\" (accepted: name,");
    json_decref(j);
    free(k);
}

static void test_bad_null_and_empty(void **state)
{
    (void)state;
    struct vm_spec s;
    struct ferr e = {0};
    assert_int_equal(vm_spec_from_json(NULL, &env, &s, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "spec: expected a JSON object"));
    json_t *j = json_object();
    expect_invalid_j(j, "name: missing");
    json_decref(j);
}

/* ---- good input ------------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK "}", &s);
    assert_string_equal(s.name, "web-1");
    assert_int_equal(s.sockets, 1);
    assert_int_equal(s.cores, 1);
    assert_int_equal(s.threads, 1);
    assert_int_equal(vm_spec_vcpus(&s), 1);
    assert_int_equal(s.memory_mib, 512);
    assert_int_equal(s.ndisks, 1);
    assert_string_equal(s.disks[0].path, "/csv/a.vhd");
    assert_int_equal(s.disks[0].size_mib, 0);
    assert_false(s.disks[0].readonly);
    assert_int_equal(s.nnics, 0);
    assert_string_equal(s.boot.kernel, "");
    assert_string_equal(s.machine, ""); /* not pinned here: the API pins it at create */
    assert_int_equal(s.blackout_budget_ms, VM_DEFAULT_BUDGET_MS);
    assert_int_equal(s.priority, VM_DEFAULT_PRIORITY);
    assert_int_equal(s.nlabels, 0);
    assert_int_equal(s.display, VM_DISPLAY_NONE);
}

static void round_trip(const char *text);

/* "display": "none" is the default and is left out when printed (older nodes refuse fields
 * they do not know); "vga" is printed and read back. */
static void test_display(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'display':'none'}", &s);
    assert_int_equal(s.display, VM_DISPLAY_NONE);
    json_t *j = vm_spec_to_json(&s);
    assert_null(json_object_get(j, "display"));
    json_decref(j);
    expect_ok("{" BASE "," DISK ",'display':'vga'}", &s);
    assert_int_equal(s.display, VM_DISPLAY_VGA);
    j = vm_spec_to_json(&s);
    assert_string_equal(json_string_value(json_object_get(j, "display")), "vga");
    json_decref(j);
    round_trip("{" BASE "," DISK ",'display':'vga'}");
}

/* "firmware": "bios" is the default and left out when printed, like display; "efi" keeps its
 * variable store next to the first disk unless efi_vars says where, and both are printed, so
 * the store stays where it is when a disk moves. */
static void test_firmware(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'firmware':'bios'}", &s);
    assert_int_equal(s.firmware, VM_FIRMWARE_BIOS);
    assert_string_equal(s.efi_vars, "");
    json_t *j = vm_spec_to_json(&s);
    assert_null(json_object_get(j, "firmware"));
    assert_null(json_object_get(j, "efi_vars"));
    json_decref(j);
    expect_ok("{" BASE ",'disks':[{'path':'/csv/sub/c.vhd'},{'path':'/csv/a.vhd'}],"
              "'firmware':'efi'}",
              &s);
    assert_int_equal(s.firmware, VM_FIRMWARE_EFI);
    assert_string_equal(s.efi_vars, "/csv/sub/web-1-efivars.fd");
    j = vm_spec_to_json(&s);
    assert_string_equal(json_string_value(json_object_get(j, "firmware")), "efi");
    assert_string_equal(json_string_value(json_object_get(j, "efi_vars")),
                        "/csv/sub/web-1-efivars.fd");
    json_decref(j);
    expect_ok(
        "{" BASE ",'firmware':'efi','efi_vars':'/csv/w.fd','boot':{'kernel':'/boot/vmlinuz'}}", &s);
    assert_string_equal(s.efi_vars, "/csv/w.fd");
    round_trip("{" BASE "," DISK ",'firmware':'efi'}");
    round_trip("{" BASE "," DISK ",'firmware':'efi','efi_vars':'/csv/sub/x.fd'}");
    assert_string_equal(vm_firmware_name(VM_FIRMWARE_EFI), "efi");
    assert_int_equal(vm_firmware_parse("bios"), VM_FIRMWARE_BIOS);
    assert_int_equal(vm_firmware_parse("uefi"), -1);
}

static void test_kernel_boot_without_disks(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE ",'boot':{'kernel':'/boot/vmlinuz','initrd':'/boot/initrd.img',"
              "'cmdline':'console=ttyS0 quiet'}}",
              &s);
    assert_int_equal(s.ndisks, 0);
    assert_string_equal(s.boot.kernel, "/boot/vmlinuz");
    assert_string_equal(s.boot.initrd, "/boot/initrd.img");
    assert_string_equal(s.boot.cmdline, "console=ttyS0 quiet");
}

static void test_nulls_are_absent(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'cpu':null,'nics':null,'boot':null,'labels':null,"
              "'priority':null,'blackout_budget_ms':null}",
              &s);
    assert_int_equal(s.priority, VM_DEFAULT_PRIORITY);
    assert_int_equal(s.sockets, 1);
}

static void test_limits_accepted(void **state)
{
    (void)state;
    struct vm_spec s;
    /* 5 x 51 x 1 = 255 vCPUs is exactly the maximum; the other bounds are inclusive too. */
    expect_ok("{'name':'a','memory_mib':24000,'cpu':{'sockets':5,'cores':51,'threads':1},"
              "'disks':[{'path':'/csv/n.vhd','size_mib':2088960},{'path':'/root.vhd'}],"
              "'blackout_budget_ms':60000,'priority':0}",
              &s);
    assert_int_equal(vm_spec_vcpus(&s), 255);
    assert_int_equal(s.disks[0].size_mib, VHD_MAX_SIZE_MIB);
    assert_int_equal(s.priority, 0);
    expect_ok("{'name':'a','memory_mib':32," DISK ",'cpu':{'sockets':1,'cores':64,'threads':2},"
              "'blackout_budget_ms':10,'priority':1000}",
              &s);
    assert_int_equal(vm_spec_vcpus(&s), 128);
    assert_int_equal(s.priority, 1000);
}

static void test_no_env_skips_host_checks(void **state)
{
    (void)state;
    struct vm_spec s;
    struct ferr e = {0};
    int rc = parse_text("{'name':'a','memory_mib':100000,'disks':[{'path':'/x/y.vhd'}],"
                        "'nics':[{'bridge':'nosuchbr'}]}",
                        NULL, &s, &e);
    assert_int_equal(rc, 0);
    struct vm_spec_env none = {0};
    rc =
        parse_text("{'name':'a','memory_mib':100000,'disks':[{'path':'/x/y.vhd'}]}", &none, &s, &e);
    assert_int_equal(rc, 0);
    rc = parse_text("{'name':'a','memory_mib':16777217,'disks':[{'path':'/x/y.vhd'}]}", &none, &s,
                    &e);
    assert_int_equal(rc, FERR_INVALID);
    assert_non_null(strstr(e.msg, "memory_mib: 16777217 is out of range 32..16777216"));
}

static void test_new_disk_in_existing_dir(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE ",'disks':[{'path':'/csv/sub/new.vhd','size_mib':1024},"
              "{'path':'/csv/a.vhd','readonly':true},{'path':'/csv/b.vhd','size_mib':10}]}",
              &s);
    assert_int_equal(s.ndisks, 3);
    assert_int_equal(s.disks[0].size_mib, 1024);
    assert_true(s.disks[1].readonly);
    assert_int_equal(s.disks[2].size_mib, 10);
}

static void test_generated_macs(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'nics':[{'bridge':'br0'},{'bridge':'br1'},"
              "{'bridge':'br0','mac':'0A:1B:2C:3D:4E:5F'}]}",
              &s);
    assert_int_equal(s.nnics, 3);
    char mac[18];
    vm_spec_gen_mac("web-1", 0, mac);
    assert_string_equal(s.nics[0].mac, mac);
    vm_spec_gen_mac("web-1", 1, mac);
    assert_string_equal(s.nics[1].mac, mac);
    assert_string_not_equal(s.nics[0].mac, s.nics[1].mac);
    assert_memory_equal(s.nics[0].mac, "52:54:00:", 9);
    assert_int_equal(strlen(s.nics[0].mac), 17);
    /* Explicit MACs are kept, in lower case. */
    assert_string_equal(s.nics[2].mac, "0a:1b:2c:3d:4e:5f");
    /* Stable: same input, same MAC; another VM, another MAC. */
    char again[18], other[18];
    vm_spec_gen_mac("web-1", 0, again);
    vm_spec_gen_mac("web-2", 0, other);
    assert_string_equal(again, s.nics[0].mac);
    assert_string_not_equal(other, s.nics[0].mac);
}

static void test_gen_mac_is_valid_and_spread(void **state)
{
    (void)state;
    /* Generated MACs must pass our own validation and rarely collide between VMs. */
    static char seen[2000][18];
    unsigned dup = 0;
    for (unsigned i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "vm-%u", i);
        vm_spec_gen_mac(name, 0, seen[i]);
        assert_memory_equal(seen[i], "52:54:00:", 9);
        for (unsigned k = 0; k < i; k++)
            if (strcmp(seen[k], seen[i]) == 0)
                dup++;
    }
    /* 2000 of 2^24: the birthday bound expects about 0.12 collisions. */
    assert_true(dup <= 2);
}

static void test_labels_kept_in_order(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'labels':{'tier':'web','team.io/owner':'ops','empty':''}}", &s);
    assert_int_equal(s.nlabels, 3);
    assert_string_equal(s.labels[0].key, "tier");
    assert_string_equal(s.labels[0].value, "web");
    assert_string_equal(s.labels[1].key, "team.io/owner");
    assert_string_equal(s.labels[2].value, "");
}

static void assert_spec_equal(const struct vm_spec *a, const struct vm_spec *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->sockets, b->sockets);
    assert_int_equal(a->cores, b->cores);
    assert_int_equal(a->threads, b->threads);
    assert_int_equal(a->memory_mib, b->memory_mib);
    assert_int_equal(a->ndisks, b->ndisks);
    for (unsigned i = 0; i < a->ndisks; i++) {
        assert_string_equal(a->disks[i].path, b->disks[i].path);
        assert_int_equal(a->disks[i].size_mib, b->disks[i].size_mib);
        assert_int_equal(a->disks[i].readonly, b->disks[i].readonly);
        assert_int_equal(a->disks[i].bus, b->disks[i].bus);
    }
    assert_int_equal(a->scsi_controller, b->scsi_controller);
    assert_int_equal(a->firmware, b->firmware);
    assert_string_equal(a->efi_vars, b->efi_vars);
    assert_int_equal(a->nnics, b->nnics);
    for (unsigned i = 0; i < a->nnics; i++) {
        assert_string_equal(a->nics[i].bridge, b->nics[i].bridge);
        assert_string_equal(a->nics[i].mac, b->nics[i].mac);
        assert_int_equal(a->nics[i].model, b->nics[i].model);
    }
    assert_string_equal(a->boot.kernel, b->boot.kernel);
    assert_string_equal(a->boot.initrd, b->boot.initrd);
    assert_string_equal(a->boot.cmdline, b->boot.cmdline);
    assert_int_equal(a->blackout_budget_ms, b->blackout_budget_ms);
    assert_int_equal(a->priority, b->priority);
    assert_int_equal(a->ha.enabled, b->ha.enabled);
    assert_memory_equal(&a->ha, &b->ha, sizeof(a->ha));
    assert_int_equal(a->nlabels, b->nlabels);
    for (unsigned i = 0; i < a->nlabels; i++) {
        assert_string_equal(a->labels[i].key, b->labels[i].key);
        assert_string_equal(a->labels[i].value, b->labels[i].value);
    }
}

static void round_trip(const char *text)
{
    struct vm_spec *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    expect_ok(text, a);
    json_t *j = vm_spec_to_json(a);
    assert_non_null(j);
    struct ferr e = {0};
    if (vm_spec_from_json(j, &env, b, &e) != 0)
        fail_msg("round trip of %s failed: %s", text, e.msg);
    assert_spec_equal(a, b);
    /* And the JSON is a fixed point: writing the parsed copy gives the same document. */
    json_t *j2 = vm_spec_to_json(b);
    assert_true(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    free(a);
    free(b);
}

static void test_round_trip_minimal(void **state)
{
    (void)state;
    round_trip("{" BASE "," DISK "}");
    round_trip("{" BASE ",'boot':{'kernel':'/boot/vmlinuz'}}");
    round_trip("{" BASE ",'disks':[{'path':'/csv/d.vhd','size_mib':10,'type':'dynamic'}]}");
}

static void test_ha(void **state)
{
    (void)state;
    struct vm_spec *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    expect_ok("{" BASE "," DISK "}", s);
    assert_false(s->ha.enabled);
    expect_ok("{" BASE "," DISK ",'ha':{}}", s);
    assert_true(s->ha.enabled);
    assert_string_equal(s->ha.priority, "medium");
    assert_int_equal(s->ha.restart_max, VM_HA_DEFAULT_RESTART_MAX);
    assert_int_equal(s->ha.restart_period_s, VM_HA_DEFAULT_PERIOD_S);
    assert_string_equal(s->ha.failback, "never");
    expect_ok("{" BASE "," DISK ",'ha':{'failback':'22-06','priority':'none','restart_max':0}}", s);
    assert_string_equal(s->ha.failback, "22-06");
    assert_string_equal(s->ha.priority, "none");
    assert_int_equal(s->ha.restart_max, 0);
    free(s);
    round_trip("{" BASE "," DISK ",'ha':{}}");
    round_trip("{" BASE "," DISK ",'ha':{'priority':'high','preferred':['host2','host3'],"
               "'possible':['host3','host2','host1'],'anti_affinity':'web',"
               "'anti_affinity_strict':true,'restart_max':5,'restart_period_s':60,"
               "'failback':'immediate'}}");
}

static void test_round_trip_full(void **state)
{
    (void)state;
    round_trip("{'name':'db-primary-02','cpu':{'sockets':2,'cores':4,'threads':2},"
               "'memory_mib':8192,"
               "'disks':[{'path':'/csv/a.vhd','readonly':true},"
               "{'path':'/csv/sub/data.vhd','size_mib':20480,'readonly':false}],"
               "'nics':[{'bridge':'br0'},{'bridge':'br1','mac':'02:00:00:AA:BB:CC'}],"
               "'boot':{'kernel':'/boot/vmlinuz','initrd':'/boot/initrd.img',"
               "'cmdline':'console=ttyS0 root=/dev/vda rw \\\"quoted\\\" ü'},"
               "'blackout_budget_ms':150,'priority':900,'machine':'pc-i440fx-6.2',"
               "'labels':{'tier':'db','team.io/owner':'ops','note':'hello, world'}}");
}

static void test_buses_and_models(void **state)
{
    (void)state;
    struct vm_spec *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    /* the defaults are virtio and are left out of the JSON, so older specs print the same */
    expect_ok("{" BASE "," DISK ",'nics':[{'bridge':'br0'}]}", s);
    assert_int_equal(s->disks[0].bus, VM_BUS_VIRTIO);
    assert_int_equal(s->nics[0].model, VM_NIC_VIRTIO);
    json_t *j = vm_spec_to_json(s);
    assert_null(json_object_get(json_array_get(json_object_get(j, "disks"), 0), "bus"));
    assert_null(json_object_get(json_array_get(json_object_get(j, "nics"), 0), "model"));
    assert_null(json_object_get(j, "scsi_controller"));
    json_decref(j);
    expect_ok("{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'virtio'}],"
              "'nics':[{'bridge':'br0','model':'virtio'}]}",
              s);
    j = vm_spec_to_json(s);
    assert_null(json_object_get(json_array_get(json_object_get(j, "disks"), 0), "bus"));
    json_decref(j);
    /* a disk on scsi gets the pvscsi controller, written out */
    expect_ok("{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'scsi'},{'path':'/csv/b.vhd',"
              "'bus':'ide'}],'nics':[{'bridge':'br0','model':'vmxnet3'},{'bridge':'br1',"
              "'model':'e1000'}]}",
              s);
    assert_int_equal(s->disks[0].bus, VM_BUS_SCSI);
    assert_int_equal(s->disks[1].bus, VM_BUS_IDE);
    assert_int_equal(s->scsi_controller, VM_SCSI_PVSCSI);
    assert_int_equal(s->nics[0].model, VM_NIC_VMXNET3);
    assert_int_equal(s->nics[1].model, VM_NIC_E1000);
    j = vm_spec_to_json(s);
    assert_string_equal(json_string_value(json_object_get(j, "scsi_controller")), "pvscsi");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "disks"), 1), "bus")),
        "ide");
    json_decref(j);
    free(s);
    round_trip("{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'scsi'},{'path':'/csv/b.vhd',"
               "'bus':'sata'},{'path':'/root.vhd','bus':'ide'},{'path':'/csv/sub/c.vhd'}],"
               "'scsi_controller':'lsi','nics':[{'bridge':'br0','model':'e1000'},"
               "{'bridge':'br1','model':'vmxnet3'},{'bridge':'br1'}]}");
    /* 4 IDE disks fit; 8 SCSI disks fit on pvscsi */
    round_trip("{" BASE ",'disks':[{'path':'/csv/a.vhd','bus':'ide'},{'path':'/csv/b.vhd','bus':"
               "'ide'},{'path':'/csv/sub/c.vhd','bus':'ide'},{'path':'/root.vhd','bus':'ide'}]}");
    assert_string_equal(vm_disk_bus_name(VM_BUS_SATA), "sata");
    assert_int_equal(vm_disk_bus_parse("ide"), VM_BUS_IDE);
    assert_int_equal(vm_disk_bus_parse("nvme"), -1);
    assert_int_equal(vm_nic_model_parse("vmxnet3"), VM_NIC_VMXNET3);
    assert_int_equal(vm_scsi_controller_parse("lsi"), VM_SCSI_LSI);
    assert_string_equal(vm_scsi_controller_name(VM_SCSI_PVSCSI), "pvscsi");
}

static void test_to_json_shape(void **state)
{
    (void)state;
    struct vm_spec s;
    expect_ok("{" BASE "," DISK ",'nics':[{'bridge':'br0'}]}", &s);
    json_t *j = vm_spec_to_json(&s);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web-1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "cpu"), "cores")), 1);
    json_t *d0 = json_array_get(json_object_get(j, "disks"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "path")), "/csv/a.vhd");
    /* size_mib 0 means "must exist" and is written as absent, since 0 is not a valid size. */
    assert_null(json_object_get(d0, "size_mib"));
    assert_true(json_is_false(json_object_get(d0, "readonly")));
    json_t *n0 = json_array_get(json_object_get(j, "nics"), 0);
    assert_string_equal(json_string_value(json_object_get(n0, "mac")), s.nics[0].mac);
    assert_null(json_object_get(j, "boot"));
    assert_int_equal(json_integer_value(json_object_get(j, "blackout_budget_ms")), 300);
    assert_int_equal(json_integer_value(json_object_get(j, "priority")), 500);
    assert_true(json_is_object(json_object_get(j, "labels")));
    json_decref(j);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_bad_long_path),
        cmocka_unit_test(test_bad_long_cmdline),
        cmocka_unit_test(test_bad_too_many_labels),
        cmocka_unit_test(test_bad_long_label),
        cmocka_unit_test(test_bad_long_unknown_field_is_cut),
        cmocka_unit_test(test_bad_null_and_empty),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_kernel_boot_without_disks),
        cmocka_unit_test(test_nulls_are_absent),
        cmocka_unit_test(test_limits_accepted),
        cmocka_unit_test(test_no_env_skips_host_checks),
        cmocka_unit_test(test_new_disk_in_existing_dir),
        cmocka_unit_test(test_generated_macs),
        cmocka_unit_test(test_gen_mac_is_valid_and_spread),
        cmocka_unit_test(test_labels_kept_in_order),
        cmocka_unit_test(test_round_trip_minimal),
        cmocka_unit_test(test_display),
        cmocka_unit_test(test_firmware),
        cmocka_unit_test(test_ha),
        cmocka_unit_test(test_round_trip_full),
        cmocka_unit_test(test_to_json_shape),
        cmocka_unit_test(test_buses_and_models),
    };
    enum {
        NBAD = sizeof(bad_cases) / sizeof(bad_cases[0]),
        NFIXED = sizeof(fixed) / sizeof(fixed[0])
    };
    /* One named test per bad input, so a failure report says which input broke. */
    static struct CMUnitTest tests[NBAD + NFIXED];
    static char names[NBAD][48];
    for (size_t i = 0; i < NBAD; i++) {
        snprintf(names[i], sizeof(names[i]), "bad_%02zu: %.30s", i, bad_cases[i].want);
        tests[i] = (struct CMUnitTest){
            .name = names[i], .test_func = test_bad, .initial_state = (void *)&bad_cases[i]};
    }
    for (size_t i = 0; i < NFIXED; i++)
        tests[NBAD + i] = fixed[i];
    return _cmocka_run_group_tests("spec", tests, NBAD + NFIXED, NULL, NULL);
}
