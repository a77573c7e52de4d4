/* SPDX-License-Identifier: MIT */
/* VMware's .vmx virtual machine description: parsed from bytes, no I/O. */
#ifndef FERRY_IMPORT_VMX_H
#define FERRY_IMPORT_VMX_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define VMX_MAX_SIZE (1u << 20) /* a real .vmx is a few KiB; more is not a .vmx */
#define VMX_VALUE_MAX 1024
#define VMX_MAX_DISKS 64
#define VMX_MAX_NICS 10 /* ethernet0..ethernet9, VMware's own limit */
#define VMX_MAX_NOTES 16

/* A disk or CD-ROM attached at BUSc:u (scsi0:0, sata0:1, ide1:0, nvme0:0). */
struct vmx_disk {
    char bus[8];              /* "scsi", "sata", "ide", "nvme" */
    unsigned ctrl, unit;      /* controller and unit number */
    char file[VMX_VALUE_MAX]; /* fileName as written: a path relative to the .vmx's folder or
                                 absolute */
    char device_type[32];     /* deviceType as written, "" when absent */
    char controller_dev[32];  /* scsiN.virtualDev, lower case: "pvscsi", "lsilogic",
                                 "lsisas1068", "buslogic"; "" when absent or not SCSI */
    bool cdrom;               /* a CD-ROM (deviceType cdrom-* or atapi-cdrom) */
    unsigned line;            /* line of its fileName (or present) key, for messages */
};

struct vmx_nic {
    unsigned index;        /* N of ethernetN */
    char virtual_dev[32];  /* "e1000", "e1000e", "vmxnet3", "vlance", ... "" when absent */
    char network[256];     /* networkName ("VM Network"); "" when absent */
    char address_type[16]; /* "generated", "static", "vpx" (lower case); "" when absent */
    char mac[18];          /* lower case "xx:xx:xx:xx:xx:xx", "" when none is written */
    unsigned line;         /* line of ethernetN.present */
};

/* What a .vmx says, reduced to what an import can use. */
struct vmx {
    char encoding[32];      /* .encoding as written, "" when absent */
    char display_name[256]; /* UTF-8 */
    char guest_os[64];
    char firmware[8];          /* "bios" (default) or "efi" */
    unsigned numvcpus;         /* default 1 */
    unsigned cores_per_socket; /* default 1 */
    uint64_t memsize_mib;      /* 0 when absent */
    unsigned ndisks;           /* disks and CD-ROMs, in the order bus, controller, unit */
    struct vmx_disk disks[VMX_MAX_DISKS];
    unsigned nnics; /* by N */
    struct vmx_nic nics[VMX_MAX_NICS];
    unsigned nkeys;           /* distinct keys */
    unsigned nunknown;        /* keys the import does not use (counted, never fatal) */
    unsigned nduplicates;     /* keys written more than once (the last one counts) */
    unsigned nskipped;        /* devices on an absent controller, absent devices */
    char first_duplicate[64]; /* one of them, for the summary */
};

/*
 * Parses the .vmx text (len bytes, need not be NUL-terminated) of the file named name (for
 * messages). The format, as VMware Workstation and ESXi write it: one `key = "value"` per line
 * (unquoted single-word values are taken too), `#` starts a comment line, keys are
 * case-insensitive. Inside quotes `|XX` (two hex digits) is one byte, the escape VMware writes
 * for `"`, `|`, `#` and control characters (|22 is `"`). `.encoding` names the charset:
 * UTF-8 (or absent and valid UTF-8) is taken as is, windows-1252 and ISO-8859-1 are converted to
 * UTF-8, others are refused. A key written twice: the last one counts (what VMware's config
 * dictionary does with repeated keys as far as we can tell; not documented), counted in
 * nduplicates. Devices: a BUSc:u or ethernetN counts when its present is TRUE and (for disks)
 * its controller BUSc.present is TRUE too (IDE controllers are there unless FALSE). Unknown keys
 * are counted, never refused. Returns 0 with *out filled, or FERR_INVALID with "NAME:LINE: what is
 * wrong" in e.
 */
int vmx_parse(const char *name, const char *text, size_t len, struct vmx *out, struct ferr *e);

#endif
