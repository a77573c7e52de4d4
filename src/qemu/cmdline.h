/* SPDX-License-Identifier: MIT */
/* Builds the QEMU command line of a VM from a machine description of its own (the qemu layer
 * knows nothing of ferry's VM specs) and where it runs on this host. */
#ifndef FERRY_QEMU_CMDLINE_H
#define FERRY_QEMU_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define QEMU_NAME_MAX 63
#define QEMU_PATH_MAX 1024 /* disk, kernel and initrd paths */
#define QEMU_APPEND_MAX 2048
#define QEMU_MAX_DISKS 8
#define QEMU_MAX_NICS 8
#define QEMU_MAX_VCPUS 255 /* the pc (i440fx) machine: "The max CPUs supported by machine ... is 255" */
#define QEMU_MIN_MEMORY_MIB 32

/* How QEMU reads a disk file (ferry's storage module decides; DESIGN.md "Cluster shared
 * volumes"). */
enum qemu_disk_format {
    QEMU_DISK_FIXED_VHD, /* "raw" limited to its virtual size: the footer is never touched, and
                          * the disk migrates */
    QEMU_DISK_VPC,       /* QEMU's "vpc" driver (a dynamic VHD), which blocks live migration */
    QEMU_DISK_NBD,       /* redirected I/O: an NBD export (of a dynamic VHD that the volume's
                          * coordinator opens) reached through a unix socket (path); the disk
                          * migrates, and a lost connection is re-made (reconnect-delay) */
};

/* The controller a disk's device sits on. The device is always id "diskN-dev" on block node
 * "diskN", whatever the bus, so stats and storage moves find it the same way. */
enum qemu_disk_bus {
    QEMU_BUS_VIRTIO, /* virtio-blk-pci */
    QEMU_BUS_SCSI,   /* scsi-hd on the machine's SCSI controller "scsi0" (qemu_machine.scsi) */
    QEMU_BUS_SATA,   /* ide-hd on an ich9-ahci "sata0", port = its rank among the SATA disks */
    QEMU_BUS_IDE,    /* ide-hd on the i440fx board's PIIX IDE: ide.0 unit 0, 1, ide.1 unit 0, 1 */
};
#define QEMU_MAX_IDE_DISKS 4
#define QEMU_MAX_SATA_DISKS 6
#define QEMU_MAX_LSI_DISKS 7

enum qemu_scsi_controller { QEMU_SCSI_PVSCSI, QEMU_SCSI_LSI /* lsi53c895a */ };
enum qemu_nic_model { QEMU_NIC_VIRTIO, QEMU_NIC_E1000, QEMU_NIC_VMXNET3 };

struct qemu_disk {
    const char *path; /* absolute path of a VHD */
    uint64_t bytes;   /* its virtual size (the data before a fixed VHD's footer), a multiple of
                       * 512; only the raw attachment passes it to QEMU */
    bool readonly;
    enum qemu_disk_format format;
    const char *export; /* QEMU_DISK_NBD: the export's name */
    enum qemu_disk_bus bus;
};

/* How long QEMU holds a redirected disk's requests while its connection is re-made (a
 * coordinator failing over, a ferryd restarting) before the guest sees an error. */
#define QEMU_NBD_RECONNECT_S 120

struct qemu_nic {
    const char *tap; /* an existing tap device */
    const char *mac; /* "52:54:00:xx:xx:xx" */
    enum qemu_nic_model model;
    int fd; /* > 2: QEMU finds the tap open as this descriptor (-netdev tap,fd=N: ferryd opened
             * it, QEMU's user could not); otherwise QEMU opens tap by name */
};

/* What the guest sees. Strings are borrowed; "" and NULL mean "none" where optional. */
struct qemu_machine {
    const char *name; /* the guest's name, for -name guest=NAME (how a QEMU is found again) */
    const char *type; /* machine type, e.g. "pc-i440fx-10.0"; "" or NULL: "pc" */
    unsigned sockets, cores, threads;
    uint64_t memory_mib;
    unsigned ndisks;
    const struct qemu_disk *disks;
    unsigned nnics;
    const struct qemu_nic *nics;
    const char *kernel; /* "" or NULL: boot from the first disk */
    const char *initrd; /* needs kernel */
    const char *append; /* kernel command line; needs kernel */
    /* A standard VGA adapter (-device VGA,id=video0) shown by a VNC server on the unix socket
     * run_dir/vnc.sock (never a TCP port: ferryd relays it to the dashboard). With a kernel,
     * console=tty0 is put before the serial console unless the command line names a tty
     * console, so the screen shows the boot while /dev/console stays the serial port. */
    bool vga;
    /* The SCSI controller "scsi0" (pvscsi or lsi53c895a), built only when a disk is on
     * QEMU_BUS_SCSI; disk k of them is scsi-id k, lun 0. */
    enum qemu_scsi_controller scsi;
    /* EFI firmware (OVMF) on the board's two pflash chips, instead of SeaBIOS: efi_code the
     * firmware, read-only (block node "efi-code"), efi_vars the VM's own variable store,
     * read-write ("efi-vars"). Both set or both NULL. Both chips are RAM blocks a live
     * migration copies; the destination writes the copied store back to its file when it
     * resumes (hw/block/pflash_cfi01.c, postload_update), so the file must be the same one
     * both ends open, like a disk. */
    const char *efi_code, *efi_vars;
};

struct qemu_launch {
    const struct qemu_machine *m;
    const char *qemu_binary; /* e.g. "qemu-system-x86_64" */
    const char *accel;       /* "kvm" or "tcg" */
    const char *run_dir;     /* holds qmp.sock and qemu.pid */
    const char *incoming;    /* NULL, or an -incoming argument ("defer") for migration */
    bool prealloc;           /* -mem-prealloc: QEMU touches all guest RAM before it runs */
    /* The serial console also takes input (QEMU 10.0's hub chardev): a unix socket chardev
     * "console-in" at run_dir/console.sock and the ring "console" joined by a hub "serial0"
     * that the serial port uses. What the guest prints goes to both; what is written to the
     * socket reaches the guest (QMP ringbuf-write only adds to the ring, never to the guest). */
    bool console_input;
    /* QEMU's seccomp filter, -sandbox on with obsolete, elevateprivileges, spawn and
     * resourcecontrol denied: no old syscalls, no set*uid, no fork/exec, no scheduler or
     * memory-policy changes (what libvirt uses). */
    bool sandbox;
};

/*
 * Returns a new NULL-terminated argv (caller frees with qemu_argv_free). Devices get stable
 * ids (disk0, net0, ...) so both sides of a migration build the same machine. Fixed VHDs are
 * attached as "raw" limited to their virtual size, so the footer is never touched and the
 * disk migrates; dynamic VHDs with QEMU's "vpc" driver, which does not. The console is a QEMU ring
 * buffer chardev "console" (read with ringbuf-read) so it survives a ferryd restart. QMP at
 * run_dir/qmp.sock, pid file run_dir/qemu.pid. -no-shutdown: a guest power-off leaves QEMU in
 * "shutdown" state until told to quit. FERR_INVALID (nothing allocated) for a description QEMU
 * would refuse or misread.
 */
int qemu_argv_build(const struct qemu_launch *l, char ***argv_out, struct ferr *e);
void qemu_argv_free(char **argv);

#endif
