/* SPDX-License-Identifier: MIT */
/* Unit tests of the QEMU command line builder (src/qemu/cmdline.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/cmdline.h"

/* A machine description whose strings live in the fixture, so tests can change them. */
struct fixture {
    char name[QEMU_NAME_MAX + 8], type[QEMU_NAME_MAX + 8];
    char paths[2][QEMU_PATH_MAX + 8];
    char mac[24];
    char kernel[QEMU_PATH_MAX + 8], initrd[QEMU_PATH_MAX + 8], append[QEMU_APPEND_MAX + 8];
    struct qemu_disk disks[2];
    struct qemu_nic nics[1];
    struct qemu_machine m;
    struct qemu_launch l;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "web1");
    snprintf(f->paths[0], sizeof(f->paths[0]), "/csv/vol1/web1.vhd");
    snprintf(f->paths[1], sizeof(f->paths[1]), "/csv/vol1/data.vhd");
    snprintf(f->mac, sizeof(f->mac), "52:54:00:12:34:56");
    f->disks[0] = (struct qemu_disk){f->paths[0],         64ull << 20, false,
                                     QEMU_DISK_FIXED_VHD, NULL,        QEMU_BUS_VIRTIO};
    f->disks[1] = (struct qemu_disk){f->paths[1],         1ull << 30, true,
                                     QEMU_DISK_FIXED_VHD, NULL,       QEMU_BUS_VIRTIO};
    f->nics[0] = (struct qemu_nic){"fy-web1-0", f->mac, QEMU_NIC_VIRTIO, 0};
    f->m = (struct qemu_machine){
        .name = f->name,
        .type = f->type,
        .sockets = 2,
        .cores = 2,
        .threads = 1,
        .memory_mib = 512,
        .ndisks = 2,
        .disks = f->disks,
        .nnics = 1,
        .nics = f->nics,
        .kernel = f->kernel,
        .initrd = f->initrd,
        .append = f->append,
    };
    f->l.m = &f->m;
    f->l.qemu_binary = "qemu-system-x86_64";
    f->l.accel = "tcg";
    f->l.run_dir = "/run/ferry/vms/web1";
}

static int count_opt(char **argv, const char *opt)
{
    int n = 0;
    for (char **p = argv + 1; *p; p++)
        if (strcmp(*p, opt) == 0)
            n++;
    return n;
}

/* Value after the nth (0-based) occurrence of opt, or NULL. */
static const char *opt_val(char **argv, const char *opt, int nth)
{
    for (char **p = argv + 1; *p; p++) {
        if (strcmp(*p, opt) != 0)
            continue;
        if (nth-- == 0)
            return p[1];
    }
    return NULL;
}

static bool has_arg(char **argv, const char *arg)
{
    for (char **p = argv; *p; p++)
        if (strcmp(*p, arg) == 0)
            return true;
    return false;
}

static char **build_ok(struct fixture *f)
{
    char **argv = NULL;
    struct ferr e;
    ferr_clear(&e);
    int rc = qemu_argv_build(&f->l, &argv, &e);
    if (rc != 0)
        fprintf(stderr, "unexpected error: %s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_non_null(argv);
    return argv;
}

static void test_typical(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char **argv = build_ok(&f);

    assert_string_equal(argv[0], "qemu-system-x86_64");
    assert_string_equal(opt_val(argv, "-name", 0), "guest=web1,debug-threads=on");
    assert_string_equal(opt_val(argv, "-machine", 0), "pc,accel=tcg");
    assert_string_equal(opt_val(argv, "-cpu", 0), "max");
    assert_string_equal(opt_val(argv, "-smp", 0), "sockets=2,cores=2,threads=1,maxcpus=4");
    assert_string_equal(opt_val(argv, "-m", 0), "512M");
    assert_true(has_arg(argv, "-nodefaults"));
    assert_true(has_arg(argv, "-no-user-config"));
    assert_false(has_arg(argv, "-no-reboot"));
    assert_false(has_arg(argv, "-S"));
    assert_string_equal(opt_val(argv, "-display", 0), "none");
    assert_string_equal(opt_val(argv, "-vga", 0), "none");
    assert_string_equal(opt_val(argv, "-chardev", 0), "ringbuf,id=console,size=1048576");
    assert_string_equal(opt_val(argv, "-serial", 0), "chardev:console");
    assert_null(opt_val(argv, "-chardev", 1)); /* no console input without console_input */
    assert_string_equal(opt_val(argv, "-qmp", 0),
                        "unix:/run/ferry/vms/web1/qmp.sock,server=on,wait=off");
    assert_string_equal(opt_val(argv, "-pidfile", 0), "/run/ferry/vms/web1/qemu.pid");

    assert_int_equal(count_opt(argv, "-blockdev"), 4);
    assert_string_equal(opt_val(argv, "-blockdev", 0),
                        "driver=file,filename=/csv/vol1/web1.vhd,node-name=disk0-file,"
                        "cache.direct=off,cache.no-flush=off");
    assert_string_equal(opt_val(argv, "-blockdev", 1),
                        "driver=raw,file=disk0-file,node-name=disk0,size=67108864");
    assert_string_equal(opt_val(argv, "-blockdev", 2),
                        "driver=file,filename=/csv/vol1/data.vhd,node-name=disk1-file,"
                        "cache.direct=off,cache.no-flush=off,read-only=on");
    assert_string_equal(opt_val(argv, "-blockdev", 3),
                        "driver=raw,file=disk1-file,node-name=disk1,size=1073741824,read-only=on");
    assert_int_equal(count_opt(argv, "-device"), 3);
    assert_string_equal(opt_val(argv, "-device", 0), "virtio-blk-pci,drive=disk0,id=disk0-dev");
    assert_string_equal(opt_val(argv, "-device", 1), "virtio-blk-pci,drive=disk1,id=disk1-dev");
    assert_string_equal(opt_val(argv, "-netdev", 0),
                        "tap,id=net0,ifname=fy-web1-0,script=no,downscript=no,vhost=off");
    assert_string_equal(opt_val(argv, "-device", 2),
                        "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,id=net0-dev");

    /* No kernel: boot from the disk; no -incoming unless migrating. */
    assert_string_equal(opt_val(argv, "-boot", 0), "c");
    assert_null(opt_val(argv, "-kernel", 0));
    assert_null(opt_val(argv, "-append", 0));
    assert_null(opt_val(argv, "-incoming", 0));

    /* Every option that takes a value has one: argv is NULL-terminated right after the last. */
    size_t n = 0;
    while (argv[n])
        n++;
    assert_true(n > 30);
    qemu_argv_free(argv);
}

/* A dynamic VHD goes through QEMU's vpc driver, which sizes the disk itself. */
/* With console input, the serial port uses a hub of the ring and a unix socket (QEMU 10.0). */
/* ferryd's hardening: QEMU's seccomp filter, and a tap handed over as a descriptor. */
static void test_sandbox_and_tap_fd(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char **argv = build_ok(&f);
    assert_null(opt_val(argv, "-sandbox", 0)); /* off unless asked */
    qemu_argv_free(argv);

    f.l.sandbox = true;
    f.nics[0].fd = 3;
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-sandbox", 0),
                        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    assert_string_equal(opt_val(argv, "-netdev", 0), "tap,id=net0,fd=3,vhost=off");
    assert_string_equal(opt_val(argv, "-device", 2),
                        "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,id=net0-dev");
    qemu_argv_free(argv);
}

static void test_console_input(void **state)
{
    struct fixture f;
    fixture_init(&f);
    f.l.console_input = true;
    char **argv = build_ok(&f);
    assert_int_equal(count_opt(argv, "-chardev"), 3);
    assert_string_equal(opt_val(argv, "-chardev", 0), "ringbuf,id=console,size=1048576");
    assert_string_equal(opt_val(argv, "-chardev", 1),
                        "socket,id=console-in,path=/run/ferry/vms/web1/console.sock,server=on,"
                        "wait=off");
    assert_string_equal(opt_val(argv, "-chardev", 2),
                        "hub,id=serial0,chardevs.0=console,chardevs.1=console-in");
    assert_string_equal(opt_val(argv, "-serial", 0), "chardev:serial0");
    assert_int_equal(count_opt(argv, "-serial"), 1);
    qemu_argv_free(argv);
}

/* A VGA display: the device with a stable id, VNC only on a unix socket in the run directory,
 * and console=tty0 before the serial console (which stays /dev/console, the last one). */
static void test_vga_display(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char **argv = build_ok(&f);
    assert_false(has_arg(argv, "-vnc"));
    assert_false(has_arg(argv, "VGA,id=video0"));
    assert_string_equal(opt_val(argv, "-vga", 0), "none");
    qemu_argv_free(argv);

    f.m.vga = true;
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-vga", 0), "none");
    assert_string_equal(opt_val(argv, "-display", 0), "none");
    assert_int_equal(count_opt(argv, "-vnc"), 1);
    assert_string_equal(opt_val(argv, "-vnc", 0), "unix:/run/ferry/vms/web1/vnc.sock");
    assert_true(has_arg(argv, "VGA,id=video0"));
    qemu_argv_free(argv);

    snprintf(f.kernel, sizeof(f.kernel), "/img/vmlinuz");
    snprintf(f.append, sizeof(f.append), "rdinit=/bin/sh");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0), "console=tty0 console=ttyS0 rdinit=/bin/sh");
    qemu_argv_free(argv);
    f.append[0] = '\0';
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0), "console=tty0 console=ttyS0");
    qemu_argv_free(argv);
    /* A tty console named already (any number) is left alone; ttyS does not count. */
    snprintf(f.append, sizeof(f.append), "console=ttyS0 console=tty1");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0), "console=ttyS0 console=tty1");
    qemu_argv_free(argv);
    snprintf(f.append, sizeof(f.append), "console=ttyS0 xconsole=tty0 console=ttyX");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0),
                        "console=tty0 console=ttyS0 xconsole=tty0 console=ttyX");
    qemu_argv_free(argv);

    /* The run directory's commas are doubled like everywhere else. */
    f.l.run_dir = "/run/a,b";
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-vnc", 0), "unix:/run/a,,b/vnc.sock");
    qemu_argv_free(argv);
}

static void test_vpc_disk(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.disks[0].format = QEMU_DISK_VPC;
    f.disks[1].format = QEMU_DISK_VPC;
    char **argv = build_ok(&f);
    assert_int_equal(count_opt(argv, "-blockdev"), 4);
    assert_string_equal(opt_val(argv, "-blockdev", 0),
                        "driver=file,filename=/csv/vol1/web1.vhd,node-name=disk0-file,"
                        "cache.direct=off,cache.no-flush=off");
    assert_string_equal(opt_val(argv, "-blockdev", 1),
                        "driver=vpc,file=disk0-file,node-name=disk0");
    assert_string_equal(opt_val(argv, "-blockdev", 3),
                        "driver=vpc,file=disk1-file,node-name=disk1,read-only=on");
    assert_string_equal(opt_val(argv, "-device", 1), "virtio-blk-pci,drive=disk1,id=disk1-dev");
    qemu_argv_free(argv);
}

/* A redirected disk is an NBD client of the unix socket ferryd relays to the coordinator,
 * holding requests while the connection is re-made; an export name with a comma is escaped,
 * and one missing is refused. */
static void test_nbd_disk(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.disks[0].format = QEMU_DISK_NBD;
    f.disks[0].path = "/run/ferry/web1/disk0.nbd";
    f.disks[0].export = "web,1.vhd";
    char **argv = build_ok(&f);
    assert_int_equal(count_opt(argv, "-blockdev"), 3);
    assert_string_equal(opt_val(argv, "-blockdev", 0),
                        "driver=nbd,server.type=unix,server.path=/run/ferry/web1/disk0.nbd,"
                        "export=web,,1.vhd,node-name=disk0,reconnect-delay=120");
    assert_string_equal(opt_val(argv, "-device", 0), "virtio-blk-pci,drive=disk0,id=disk0-dev");
    qemu_argv_free(argv);

    f.disks[0].export = NULL;
    struct ferr e = {0};
    assert_int_equal(qemu_argv_build(&f.l, &argv, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "disks[0]: bad NBD export name"));
}

static void test_kvm_vs_tcg(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.l.accel = "kvm";
    char **argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-machine", 0), "pc,accel=kvm");
    assert_string_equal(opt_val(argv, "-cpu", 0), "host");
    assert_int_equal(count_opt(argv, "-cpu"), 1);
    qemu_argv_free(argv);

    f.l.accel = "tcg";
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-machine", 0), "pc,accel=tcg");
    assert_string_equal(opt_val(argv, "-cpu", 0), "max");
    qemu_argv_free(argv);

    /* A pinned machine type replaces "pc" (which only old specs lack). */
    snprintf(f.type, sizeof(f.type), "pc-i440fx-6.2");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-machine", 0), "pc-i440fx-6.2,accel=tcg");
    qemu_argv_free(argv);
}

static void test_comma_escaping(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    snprintf(f.paths[0], sizeof(f.paths[0]), "/csv/a,b/x,,y.vhd");
    f.l.run_dir = "/run/fer,ry";
    f.nics[0].tap = "tap,0";
    snprintf(f.kernel, sizeof(f.kernel), "/boot/vmlinuz,1");
    snprintf(f.append, sizeof(f.append), "console=ttyS0,115200 quiet");
    char **argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-blockdev", 0),
                        "driver=file,filename=/csv/a,,b/x,,,,y.vhd,node-name=disk0-file,"
                        "cache.direct=off,cache.no-flush=off");
    assert_string_equal(opt_val(argv, "-qmp", 0), "unix:/run/fer,,ry/qmp.sock,server=on,wait=off");
    assert_string_equal(opt_val(argv, "-netdev", 0),
                        "tap,id=net0,ifname=tap,,0,script=no,downscript=no,vhost=off");
    /* Options that take a plain string are not escaped. */
    assert_string_equal(opt_val(argv, "-pidfile", 0), "/run/fer,ry/qemu.pid");
    assert_string_equal(opt_val(argv, "-kernel", 0), "/boot/vmlinuz,1");
    assert_string_equal(opt_val(argv, "-append", 0), "console=ttyS0,115200 quiet");
    qemu_argv_free(argv);
}

static void test_kernel_boot(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    snprintf(f.kernel, sizeof(f.kernel), "/img/vmlinuz");
    snprintf(f.initrd, sizeof(f.initrd), "/img/initrd.gz");
    snprintf(f.append, sizeof(f.append), "root=/dev/vda quiet");
    char **argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-kernel", 0), "/img/vmlinuz");
    assert_string_equal(opt_val(argv, "-initrd", 0), "/img/initrd.gz");
    assert_string_equal(opt_val(argv, "-append", 0), "console=ttyS0 root=/dev/vda quiet");
    assert_null(opt_val(argv, "-boot", 0));
    qemu_argv_free(argv);

    /* Present already: kept as is. "console=ttyS01" or "xconsole=ttyS0" do not count. */
    snprintf(f.append, sizeof(f.append), "quiet console=ttyS0");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0), "quiet console=ttyS0");
    qemu_argv_free(argv);
    snprintf(f.append, sizeof(f.append), "console=ttyS01 xconsole=ttyS0");
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-append", 0), "console=ttyS0 console=ttyS01 xconsole=ttyS0");
    qemu_argv_free(argv);

    /* No initrd, empty cmdline. */
    f.initrd[0] = '\0';
    f.append[0] = '\0';
    argv = build_ok(&f);
    assert_null(opt_val(argv, "-initrd", 0));
    assert_string_equal(opt_val(argv, "-append", 0), "console=ttyS0");
    qemu_argv_free(argv);

    /* A kernel boot needs no disk. */
    f.m.ndisks = 0;
    f.m.disks = NULL;
    argv = build_ok(&f);
    assert_int_equal(count_opt(argv, "-blockdev"), 0);
    qemu_argv_free(argv);
}

static void test_incoming_and_minimal(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.l.incoming = "defer";
    f.m.nnics = 0;
    f.m.nics = NULL;
    f.m.ndisks = 1;
    f.m.sockets = f.m.cores = f.m.threads = 1;
    char **argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-incoming", 0), "defer");
    assert_int_equal(count_opt(argv, "-mem-prealloc"), 0);
    qemu_argv_free(argv);
    f.l.prealloc = true;
    argv = build_ok(&f);
    assert_int_equal(count_opt(argv, "-mem-prealloc"), 1);
    assert_int_equal(count_opt(argv, "-netdev"), 0);
    assert_int_equal(count_opt(argv, "-blockdev"), 2);
    assert_string_equal(opt_val(argv, "-smp", 0), "sockets=1,cores=1,threads=1,maxcpus=1");
    qemu_argv_free(argv);
}

/* Builds with one field broken and checks the error; nothing is returned then. */
#define EXPECT_INVALID(f, needle)                                                                  \
    do {                                                                                           \
        char **argv_ = (char **)0x1;                                                               \
        struct ferr e_;                                                                            \
        ferr_clear(&e_);                                                                           \
        assert_int_equal(qemu_argv_build(&(f)->l, &argv_, &e_), FERR_INVALID);                     \
        assert_ptr_equal(argv_, (char **)0x1);                                                     \
        if (!strstr(e_.msg, (needle))) {                                                           \
            fprintf(stderr, "message \"%s\" lacks \"%s\"\n", e_.msg, (needle));                    \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* EFI: OVMF's code read-only and the VM's variable store on the machine's two pflash chips;
 * BIOS machines have neither (so their command line stays what older ferryds built). */
static void test_efi(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char **argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-machine", 0), "pc,accel=tcg");
    for (char **p = argv; *p; p++)
        assert_null(strstr(*p, "efi"));
    qemu_argv_free(argv);
    snprintf(f.type, sizeof(f.type), "pc-i440fx-10.0");
    f.m.efi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    f.m.efi_vars = "/csv/vol1/web1,efivars.fd";
    argv = build_ok(&f);
    assert_string_equal(opt_val(argv, "-machine", 0),
                        "pc-i440fx-10.0,accel=tcg,pflash0=efi-code,pflash1=efi-vars");
    assert_true(has_arg(argv, "driver=file,filename=/usr/share/OVMF/OVMF_CODE_4M.fd,"
                              "node-name=efi-code,read-only=on"));
    assert_true(has_arg(argv, "driver=file,filename=/csv/vol1/web1,,efivars.fd,node-name=efi-vars,"
                              "cache.direct=off,cache.no-flush=off"));
    assert_int_equal(count_opt(argv, "-blockdev"), 2 + 4); /* 2 disks: file + raw each */
    qemu_argv_free(argv);
    f.m.efi_vars = NULL;
    EXPECT_INVALID(&f, "EFI needs both the firmware and the variable store");
    f.m.efi_vars = "vars.fd";
    EXPECT_INVALID(&f, "EFI needs both");
}

static void test_bad_inputs(void **state)
{
    (void)state;
    struct fixture f;
    char **argv = NULL;
    struct ferr e;

    assert_int_equal(qemu_argv_build(NULL, &argv, &e), FERR_INVALID);
    fixture_init(&f);
    assert_int_equal(qemu_argv_build(&f.l, NULL, &e), FERR_INVALID);

    fixture_init(&f);
    f.l.m = NULL;
    EXPECT_INVALID(&f, "machine description");
    fixture_init(&f);
    f.l.accel = NULL;
    EXPECT_INVALID(&f, "accelerator");
    fixture_init(&f);
    f.l.accel = "xen";
    EXPECT_INVALID(&f, "\"xen\" is not kvm or tcg");
    fixture_init(&f);
    f.l.run_dir = NULL;
    EXPECT_INVALID(&f, "run_dir");
    fixture_init(&f);
    f.l.run_dir = "relative/dir";
    EXPECT_INVALID(&f, "run_dir");
    fixture_init(&f);
    f.l.qemu_binary = NULL;
    EXPECT_INVALID(&f, "binary");

    /* run_dir/qmp.sock must fit in sun_path (107 bytes). */
    char longdir[200];
    memset(longdir, 'd', sizeof(longdir));
    longdir[0] = '/';
    longdir[99] = '\0';
    fixture_init(&f);
    f.l.run_dir = longdir;
    EXPECT_INVALID(&f, "too long");
    longdir[98] = '\0'; /* 98 + 9 = 107: fits */
    argv = build_ok(&f);
    qemu_argv_free(argv);

    fixture_init(&f);
    f.m.nics = NULL;
    EXPECT_INVALID(&f, "missing NICs");
    fixture_init(&f);
    f.nics[0].tap = "";
    EXPECT_INVALID(&f, "tap");
    fixture_init(&f);
    f.nics[0].tap = "a-very-long-tap-name";
    EXPECT_INVALID(&f, "tap");
    fixture_init(&f);
    snprintf(f.mac, sizeof(f.mac), "52:54:00:12:34");
    EXPECT_INVALID(&f, "MAC");

    fixture_init(&f);
    f.m.disks = NULL;
    EXPECT_INVALID(&f, "missing disks");
    fixture_init(&f);
    f.disks[1].bytes = 0;
    EXPECT_INVALID(&f, "disks[1]");
    fixture_init(&f);
    f.disks[0].bytes = 1000;
    EXPECT_INVALID(&f, "multiple of 512");
    fixture_init(&f);
    f.disks[1].format = (enum qemu_disk_format)7;
    EXPECT_INVALID(&f, "disks[1]: unknown format 7");
    fixture_init(&f);
    snprintf(f.paths[0], sizeof(f.paths[0]), "rel.vhd");
    EXPECT_INVALID(&f, "not absolute");
    fixture_init(&f);
    memset(f.paths[0], 'p', sizeof(f.paths[0]) - 1); /* no NUL within QEMU_PATH_MAX */
    f.paths[0][0] = '/';
    EXPECT_INVALID(&f, "path too long");

    fixture_init(&f);
    f.m.ndisks = 0;
    f.m.disks = NULL;
    EXPECT_INVALID(&f, "nothing to boot");
    fixture_init(&f);
    snprintf(f.initrd, sizeof(f.initrd), "/img/initrd");
    EXPECT_INVALID(&f, "need boot.kernel");

    fixture_init(&f);
    f.m.cores = 0;
    EXPECT_INVALID(&f, ">= 1");
    fixture_init(&f);
    f.m.sockets = 8;
    f.m.cores = 64;
    f.m.threads = 2;
    EXPECT_INVALID(&f, "vCPUs");
    fixture_init(&f);
    f.m.memory_mib = 16;
    EXPECT_INVALID(&f, "memory");
    fixture_init(&f);
    f.name[0] = '\0';
    EXPECT_INVALID(&f, "name");
    fixture_init(&f);
    f.m.ndisks = QEMU_MAX_DISKS + 1;
    EXPECT_INVALID(&f, "disks");
    fixture_init(&f);
    f.l.incoming = "";
    EXPECT_INVALID(&f, "incoming");

    qemu_argv_free(NULL);
}

/* Index of the argument equal to arg, or -1. */
static int arg_index(char **argv, const char *arg)
{
    for (int i = 0; argv[i]; i++)
        if (strcmp(argv[i], arg) == 0)
            return i;
    return -1;
}

static void test_buses_and_models(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    static const char *const paths[] = {"/c/a.vhd", "/c/b.vhd", "/c/c.vhd", "/c/d.vhd",
                                        "/c/e.vhd", "/c/f.vhd", "/c/g.vhd", "/c/h.vhd"};
    static const enum qemu_disk_bus bus[] = {QEMU_BUS_SCSI, QEMU_BUS_IDE,   QEMU_BUS_SATA,
                                             QEMU_BUS_SCSI, QEMU_BUS_IDE,   QEMU_BUS_IDE,
                                             QEMU_BUS_SATA, QEMU_BUS_VIRTIO};
    struct qemu_disk d[8];
    for (unsigned i = 0; i < 8; i++)
        d[i] = (struct qemu_disk){paths[i], 1 << 20, false, QEMU_DISK_FIXED_VHD, NULL, bus[i]};
    d[3].format = QEMU_DISK_NBD; /* a redirected disk keeps its bus */
    d[3].export = "vol/d.vhd";
    struct qemu_nic n[3] = {{"t0", "52:54:00:00:00:01", QEMU_NIC_VMXNET3, 0},
                            {"t1", "52:54:00:00:00:02", QEMU_NIC_E1000, 0},
                            {"t2", "52:54:00:00:00:03", QEMU_NIC_VIRTIO, 0}};
    f.m.disks = d;
    f.m.ndisks = 8;
    f.m.nics = n;
    f.m.nnics = 3;
    char **argv = build_ok(&f);
    /* controllers once, before the disks that name their buses */
    int pv = arg_index(argv, "pvscsi,id=scsi0"), ahci = arg_index(argv, "ich9-ahci,id=sata0");
    assert_true(pv > 0 && ahci > 0);
    assert_false(has_arg(argv, "lsi53c895a,id=scsi0"));
    assert_true(pv <
                arg_index(argv, "scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=disk0,id=disk0-dev"));
    assert_true(has_arg(argv, "ide-hd,bus=ide.0,unit=0,drive=disk1,id=disk1-dev"));
    assert_true(ahci < arg_index(argv, "ide-hd,bus=sata0.0,drive=disk2,id=disk2-dev"));
    assert_true(has_arg(argv, "scsi-hd,bus=scsi0.0,scsi-id=1,lun=0,drive=disk3,id=disk3-dev"));
    assert_true(has_arg(argv, "ide-hd,bus=ide.0,unit=1,drive=disk4,id=disk4-dev"));
    assert_true(has_arg(argv, "ide-hd,bus=ide.1,unit=0,drive=disk5,id=disk5-dev"));
    assert_true(has_arg(argv, "ide-hd,bus=sata0.1,drive=disk6,id=disk6-dev"));
    assert_true(has_arg(argv, "virtio-blk-pci,drive=disk7,id=disk7-dev"));
    assert_int_equal(count_opt(argv, "-device"), 2 + 8 + 3);
    assert_true(has_arg(argv, "vmxnet3,netdev=net0,mac=52:54:00:00:00:01,id=net0-dev"));
    assert_true(has_arg(argv, "e1000,netdev=net1,mac=52:54:00:00:00:02,id=net1-dev"));
    assert_true(has_arg(argv, "virtio-net-pci,netdev=net2,mac=52:54:00:00:00:03,id=net2-dev"));
    qemu_argv_free(argv);

    f.m.scsi = QEMU_SCSI_LSI;
    argv = build_ok(&f);
    assert_true(has_arg(argv, "lsi53c895a,id=scsi0"));
    assert_false(has_arg(argv, "pvscsi,id=scsi0"));
    qemu_argv_free(argv);

    /* no SCSI or SATA disk, no controller */
    fixture_init(&f);
    f.m.scsi = QEMU_SCSI_LSI;
    argv = build_ok(&f);
    assert_int_equal(arg_index(argv, "lsi53c895a,id=scsi0"), -1);
    assert_int_equal(arg_index(argv, "ich9-ahci,id=sata0"), -1);
    qemu_argv_free(argv);

    /* more than a controller takes, an unknown value, IDE on q35 */
    fixture_init(&f);
    f.m.disks = d;
    f.m.ndisks = 8;
    d[2].bus = d[6].bus = QEMU_BUS_IDE; /* 5 IDE disks */
    EXPECT_INVALID(&f, "more disks on one bus");
    for (unsigned i = 0; i < 8; i++)
        d[i].bus = QEMU_BUS_SCSI;
    argv = build_ok(&f); /* 8 on pvscsi */
    qemu_argv_free(argv);
    f.m.scsi = QEMU_SCSI_LSI;
    EXPECT_INVALID(&f, "lsi 7");
    f.m.scsi = 7;
    EXPECT_INVALID(&f, "unknown SCSI controller");
    fixture_init(&f);
    f.disks[1].bus = 9;
    EXPECT_INVALID(&f, "unknown bus");
    fixture_init(&f);
    f.nics[0].model = 5;
    EXPECT_INVALID(&f, "unknown model");
    fixture_init(&f);
    f.disks[1].bus = QEMU_BUS_IDE;
    snprintf(f.type, sizeof(f.type), "pc-q35-7.2");
    EXPECT_INVALID(&f, "no IDE controller");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical),          cmocka_unit_test(test_console_input),
        cmocka_unit_test(test_vpc_disk),         cmocka_unit_test(test_nbd_disk),
        cmocka_unit_test(test_kvm_vs_tcg),       cmocka_unit_test(test_comma_escaping),
        cmocka_unit_test(test_kernel_boot),      cmocka_unit_test(test_incoming_and_minimal),
        cmocka_unit_test(test_bad_inputs),       cmocka_unit_test(test_vga_display),
        cmocka_unit_test(test_buses_and_models), cmocka_unit_test(test_sandbox_and_tap_fd),
        cmocka_unit_test(test_efi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
