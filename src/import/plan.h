/* SPDX-License-Identifier: MIT */
/* The import plan: a VMware machine (from a .vmx or an OVF, its disks measured by the loader)
 * mapped to a ferry VM spec, the disk conversions it needs and notes on what could not be
 * mapped. Pure: the loader (load.h) does the I/O, the API the conversion. */
#ifndef FERRY_IMPORT_PLAN_H
#define FERRY_IMPORT_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "import/ovf.h"
#include "import/vmx.h"
#include "vm/spec.h"

#define IMPORT_MAX_DISKS 16
#define IMPORT_MAX_NICS 16
#define IMPORT_MAX_NOTES 32
#define IMPORT_NOTE_MAX 240
#define IMPORT_MAX_NETMAP 16

/* One disk of the source. The mapping from a .vmx or OVF fills label, device and file; the
 * loader fills the rest after reading the disk's files. */
struct import_src_disk {
    char label[48];           /* "scsi0:0" (.vmx) or "vmdisk1" (OVF) */
    char device[96];          /* what it was attached to: "scsi0:0 (pvscsi)", "scsi controller" */
    char bus[8];              /* its controller's kind: "scsi", "sata", "ide", "nvme", "" */
    char controller[32];      /* a SCSI controller's model: "pvscsi", "lsilogic", "lsisas1068",
                                 "buslogic", "" when the source does not say */
    char file[VMX_VALUE_MAX]; /* as the source names it: relative to its folder (or the OVA) */
    unsigned line;            /* .vmx line naming it, 0 for OVF */
    /* filled by the loader */
    char path[VM_PATH_MAX]; /* what qemu-img reads: the descriptor, the sparse file, the OVA */
    char create_type[32];   /* "monolithicSparse", ... */
    uint64_t virtual_bytes; /* the disk's size as its descriptor says */
    uint64_t file_bytes;    /* bytes of all its files (the chain's) */
    uint64_t ova_offset, ova_size; /* in an OVA: where the member lies; 0, 0 otherwise */
    unsigned chain;                /* snapshots (parents) flattened into it */
};

struct import_src_nic {
    char label[16];    /* "ethernet0", "nic1" */
    char network[256]; /* the VMware network ("VM Network"), "" when none */
    char model[32];    /* "vmxnet3", "e1000", ... as the source says */
    char mac[18];      /* kept; "" when the source has none */
};

/* A VMware machine in one shape, whatever it came from. */
struct import_source {
    char kind[8];           /* "vmx", "ovf", "ova" */
    char file[VM_PATH_MAX]; /* the .vmx, .ovf or .ova */
    char name[256];         /* displayName / Name */
    char guest_os[64];
    char firmware[8]; /* "bios" or "efi" */
    unsigned vcpus, cores_per_socket;
    uint64_t memory_mib;
    unsigned ndisks;
    struct import_src_disk disks[IMPORT_MAX_DISKS];
    unsigned nnics;
    struct import_src_nic nics[IMPORT_MAX_NICS];
    unsigned nnotes;
    char notes[IMPORT_MAX_NOTES][IMPORT_NOTE_MAX];
};

/* A .vmx's machine: disks (CD-ROMs become notes), NICs, CPU, memory, unknown-key summary.
 * FERR_INVALID (naming the file and line) for more disks or NICs than a ferry VM has. */
int import_source_from_vmx(const struct vmx *v, const char *file, struct import_source *out,
                           struct ferr *e);
/* An OVF's machine: the attached disks in Item order, the NICs, CPU, memory, the OVF's notes.
 * kind is "ovf" or "ova". */
int import_source_from_ovf(const struct ovf *o, const char *file, const char *kind,
                           struct import_source *out, struct ferr *e);

struct import_netmap {
    char network[256]; /* VMware network name; "" maps every other network */
    char bridge[VM_BRIDGE_MAX + 1];
};

/* Where and how the machine lands. */
struct import_target {
    const char *name;        /* --name, or NULL for one made from the source's name */
    const char *volume;      /* the volume's name (csv:VOLUME) */
    const char *volume_path; /* its directory, absolute */
    uint64_t volume_free_bytes;
    bool dynamic; /* dynamic VHDs rather than fixed ones */
    unsigned nnet;
    struct import_netmap net[IMPORT_MAX_NETMAP];
    const char *node;         /* the node it is planned for (messages) */
    uint64_t host_memory_mib; /* the node's memory; 0 skips the check */
    unsigned host_cpus;       /* the node's logical CPUs; 0 skips the check */
    bool (*vm_exists)(const char *name, void *data);   /* NULL: not checked */
    bool (*file_exists)(const char *path, void *data); /* a target VHD exists already */
    const struct vm_spec_env *env; /* the spec's own checks (bridges, machine); may be NULL */
    bool keep_devices; /* map VMware's devices to the ones QEMU emulates (import_map_disk,
                        * import_map_nic) rather than to virtio */
    void *data;
};

struct import_conv {
    char label[48];
    char src[VM_PATH_MAX];
    char src_format[8]; /* "vmdk" */
    uint64_t ova_offset, ova_size;
    char dst[VM_PATH_MAX];
    char dst_ref[VM_PATH_MAX + 8]; /* csv:VOLUME/NAME-diskN.vhd */
    bool dynamic;
    uint64_t size_bytes; /* virtual size */
    uint64_t need_bytes; /* room on the volume: the size (fixed) or the source's bytes (dynamic) */
};

struct import_plan {
    json_t *spec; /* the VM spec to define, validated (owned; import_plan_clear) */
    char name[VM_NAME_MAX + 1];
    unsigned nconv;
    struct import_conv conv[VM_MAX_DISKS];
    uint64_t need_bytes;
    unsigned nnotes;
    char notes[IMPORT_MAX_NOTES + 16][IMPORT_NOTE_MAX];
};

/*
 * Makes the plan for src landing on t. Checks, before anything is converted: a name that is a
 * valid VM name and no VM has; vCPUs, sockets (at most VM_MAX_SOCKETS) and memory against the
 * spec's limits and the node; at least one disk, at most VM_MAX_DISKS, each at most the VHD
 * limit; every NIC's network mapped to a bridge; the room on the volume; no target file that
 * exists. EFI firmware makes an EFI VM (a note says its variables start fresh). Devices are
 * mapped to virtio (a note says so). On error FERR_INVALID (or FERR_EXISTS, FERR_LIMIT) with a
 * message that says what to do; *plan is then empty. On success the caller owns plan->spec.
 */
int import_plan_make(const struct import_source *src, const struct import_target *t,
                     struct import_plan *plan, struct ferr *e);
/* --keep-devices: the disk bus (VM_BUS_*) a VMware disk keeps and, on scsi, its controller
 * (*scsi: VM_SCSI_*); writes one line for the plan on what became of it (e.g. "scsi0:0 (pvscsi)
 * -> scsi disk on pvscsi, the same device") into note. Disks on a controller QEMU does not
 * emulate (BusLogic, NVMe, an unknown one) stay virtio, and the note says so. */
int import_map_disk(const struct import_src_disk *d, int *scsi, char *note, size_t size);
/* --keep-devices: the NIC model (VM_NIC_*) for VMware's virtualDev / OVF ResourceSubType model
 * (any case); writes the plan's line for it into note (e1000e becomes e1000; vlance and others
 * stay virtio). */
int import_map_nic(const char *label, const char *model, char *note, size_t size);

/* Frees what a plan owns. */
void import_plan_clear(struct import_plan *plan);
/* The plan as the API answers it: {"name", "source": {...}, "spec", "disks": [...], "notes":
 * [...], "need_bytes"}. New reference; NULL without memory. */
json_t *import_plan_to_json(const struct import_source *src, const struct import_plan *plan);

/* A VM name from a VMware name: lower case, runs of other characters as one '-', "vm-" before
 * one that does not begin with a letter, at most VM_NAME_MAX. "" if nothing is left. */
void import_name_from(const char *display, char out[VM_NAME_MAX + 1]);

#endif
