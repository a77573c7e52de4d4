/* SPDX-License-Identifier: MIT */
/* The VM spec: what a VM is (CPU, memory, disks, NICs, boot), parsed and validated from JSON. */
#ifndef FERRY_VM_SPEC_H
#define FERRY_VM_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define VM_NAME_MAX 63
#define VM_PATH_MAX 1024
#define VM_CMDLINE_MAX 2048
#define VM_MAX_DISKS 8
#define VM_MAX_NICS 8
#define VM_MAX_LABELS 32
#define VM_MAX_SOCKETS 8
#define VM_MAX_CORES 64
#define VM_MAX_THREADS 2
#define VM_MAX_VCPUS 255 /* QEMU's pc machine takes at most 255 (qemu/cmdline.h) */
#define VM_MIN_MEMORY_MIB 32
#define VM_EFI_MIN_MEMORY_MIB 256 /* firmware efi: OVMF's own floor and a kernel's (spec.c) */
#define VM_BRIDGE_MAX 15 /* IFNAMSIZ - 1 */
#define VM_DEFAULT_BUDGET_MS 300
#define VM_MIN_BUDGET_MS 10
#define VM_MAX_BUDGET_MS 60000
#define VM_DEFAULT_PRIORITY 500
#define VM_MAX_PRIORITY 1000

struct vm_disk {
    char path[VM_PATH_MAX]; /* absolute path of a VHD file */
    uint64_t
        size_mib; /* if the file does not exist yet: create a VHD this big; 0 = must exist */
    bool dynamic; /* ... a dynamic VHD rather than a fixed one */
    bool readonly;
    int bus; /* VM_BUS_*: the controller the guest sees it on ("bus"; virtio when absent) */
};

/* A disk's bus ("bus"): virtio-blk (the default, left out of the JSON so older specs print the
 * same), a SCSI disk on the VM's SCSI controller (scsi_controller), a SATA disk on an AHCI
 * controller, or an IDE disk on the i440fx board's PIIX IDE (2 buses x 2 units, no CD-ROM). */
enum { VM_BUS_VIRTIO, VM_BUS_SCSI, VM_BUS_SATA, VM_BUS_IDE };
#define VM_MAX_IDE_DISKS 4
#define VM_MAX_SATA_DISKS 6 /* the ports of one ich9-ahci */
#define VM_MAX_LSI_DISKS 7  /* lsi53c895a: SCSI ids 0-6 (7 is the controller) */

/* The VM's SCSI controller ("scsi_controller", present only when a disk is on scsi): VMware's
 * paravirtual SCSI (pvscsi, the default) or the LSI 53C895A (QEMU's only LSI: it stands in for
 * VMware's LSI Logic SAS/Parallel, which QEMU does not emulate). */
enum { VM_SCSI_PVSCSI, VM_SCSI_LSI };

/* A NIC's model ("model"): virtio-net (default, left out of the JSON), Intel e1000 or VMware's
 * vmxnet3: drivers a guest without virtio ones already has. */
enum { VM_NIC_VIRTIO, VM_NIC_E1000, VM_NIC_VMXNET3 };

struct vm_nic {
    char bridge[VM_BRIDGE_MAX + 1]; /* host bridge the tap joins */
    char mac[18];                   /* "52:54:00:xx:xx:xx", generated when absent */
    int model;                      /* VM_NIC_* */
};

struct vm_label {
    char key[64];
    char value[256];
};

#define VM_MACHINE_MAX 63
#define VM_HA_MAX_NODES 16
#define VM_HA_DEFAULT_RESTART_MAX 3
#define VM_HA_MAX_RESTART_MAX 100
#define VM_HA_DEFAULT_PERIOD_S 900
#define VM_HA_MAX_PERIOD_S 86400

/* High availability (docs/architecture.md, "High availability"): present in a spec ("ha")
 * when enabled. */
struct vm_ha {
    bool enabled;
    char priority[8]; /* "high", "medium" (default), "low", "none" (never started by HA) */
    unsigned npreferred, npossible;
    char preferred[VM_HA_MAX_NODES][64]; /* node names, most preferred first */
    char possible[VM_HA_MAX_NODES][64];  /* empty: every node */
    char anti_affinity[64];              /* a class name, "" for none */
    bool anti_affinity_strict;
    unsigned restart_max;      /* restarts on its own node within restart_period_s ... */
    unsigned restart_period_s; /* ... before it is left failed */
    char failback[16];         /* "never" (default), "immediate", or a window "HH-HH" */
};

struct vm_spec {
    char name[VM_NAME_MAX + 1];
    /* QEMU machine type, versioned ("pc-i440fx-7.2"): both ends of a migration must build the
     * same machine, and an alias like "pc" means another machine after a QEMU upgrade. ""
     * (specs from before it was pinned) runs as "pc". */
    char machine[VM_MACHINE_MAX + 1];
    unsigned sockets, cores, threads; /* vCPUs = sockets * cores * threads */
    uint64_t memory_mib;
    unsigned ndisks;
    struct vm_disk disks[VM_MAX_DISKS];
    unsigned nnics;
    struct vm_nic nics[VM_MAX_NICS];
    struct {
        char kernel[VM_PATH_MAX]; /* empty: boot from the first disk */
        char initrd[VM_PATH_MAX];
        char cmdline[VM_CMDLINE_MAX];
    } boot;
    unsigned blackout_budget_ms;
    unsigned priority; /* 0..1000, higher is more important */
    unsigned nlabels;
    struct vm_label labels[VM_MAX_LABELS];
    struct vm_ha ha;
    /* The guest's display adapter ("display"): VM_DISPLAY_NONE (absent from the JSON, the
     * default, and every spec from before the field: those VMs keep their device set, so a
     * running one still migrates to an upgraded node) or VM_DISPLAY_VGA (QEMU's standard VGA,
     * shown in the dashboard through a VNC server on a unix socket). Part of the machine: both
     * ends of a migration build it from the same spec. */
    int display;
    int scsi_controller; /* VM_SCSI_*: the controller of the disks on bus scsi */
    /* The firmware ("firmware"): VM_FIRMWARE_BIOS (SeaBIOS; absent from the JSON, the default
     * and every spec from before the field) or VM_FIRMWARE_EFI (OVMF, vm/firmware.h). An EFI
     * VM keeps its variable store (boot entries) in its own file efi_vars ("efi_vars"; by
     * default NAME-efivars.fd next to its first disk, so on the volume every node reaches for
     * migration and failover); "" for BIOS. */
    int firmware;
    char efi_vars[VM_PATH_MAX];
};

enum { VM_FIRMWARE_BIOS, VM_FIRMWARE_EFI };

enum { VM_DISPLAY_NONE, VM_DISPLAY_VGA };

/*
 * What validation may ask of the host. Each hook is optional (NULL skips that check);
 * hooks return true if the thing exists. Keeps the parser free of I/O for unit tests.
 */
struct vm_spec_env {
    uint64_t host_memory_mib; /* 0 = do not check against the host */
    bool (*bridge_exists)(const char *name, void *data);
    bool (*dir_exists)(const char *path, void *data);
    bool (*file_exists)(const char *path, void *data);
    bool (*machine_known)(const char *machine, void *data); /* this host's QEMU has it */
    void *data;
};

/*
 * Parses and validates a spec. j is borrowed. Unknown fields are refused. Missing optional
 * fields get defaults (1 socket/1 core/1 thread, budget 300 ms, priority 500, generated MACs).
 * On error returns FERR_INVALID with a message naming the field and the accepted range,
 * e.g. "cpu.sockets: 9 is out of range 1..8"; *out is then unspecified.
 */
int vm_spec_from_json(const json_t *j, const struct vm_spec_env *env, struct vm_spec *out,
                      struct ferr *e);

/* Parses the "ha" member of a spec (j borrowed; NULL or JSON null: HA disabled) into *out,
 * with the same checks and messages as vm_spec_from_json ("ha.failback: ..."). */
int vm_ha_from_json(const json_t *j, struct vm_ha *out, struct ferr *e);
/* The "ha" member for ha (enabled); new JSON, NULL without memory. */
json_t *vm_ha_to_json(const struct vm_ha *ha);
/* Returns a new JSON object (caller owns the reference) that vm_spec_from_json parses back
 * to an equal spec. NULL only on allocation failure. */
json_t *vm_spec_to_json(const struct vm_spec *s);

/* The JSON name of a VM_FIRMWARE_* value ("bios", "efi") and the value named name, or -1. */
const char *vm_firmware_name(int firmware);
int vm_firmware_parse(const char *name);
/* The JSON names of the VM_BUS_*, VM_NIC_* and VM_SCSI_* values ("virtio", "scsi", ...). */
const char *vm_disk_bus_name(int bus);
const char *vm_nic_model_name(int model);
const char *vm_scsi_controller_name(int ctl);
/* The value named name, or -1: what the CLI and the importer parse. */
int vm_disk_bus_parse(const char *name);
int vm_nic_model_parse(const char *name);
int vm_scsi_controller_parse(const char *name);

/* vCPU count of a spec. */
unsigned vm_spec_vcpus(const struct vm_spec *s);

/* Writes the stable MAC of NIC idx of VM name into mac (18 bytes): 52:54:00 + 3 bytes of a hash. */
void vm_spec_gen_mac(const char *name, unsigned idx, char mac[18]);

#endif
