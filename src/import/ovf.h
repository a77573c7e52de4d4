/* SPDX-License-Identifier: MIT */
/* The OVF envelope (DMTF DSP0243, OVF 1.x and 2.x) of an .ovf or an OVA, read with libxml2 and
 * reduced to what an import can use. No I/O. */
#ifndef FERRY_IMPORT_OVF_H
#define FERRY_IMPORT_OVF_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define OVF_MAX_SIZE (4u << 20)
#define OVF_MAX_FILES 64
#define OVF_MAX_DISKS 64
#define OVF_MAX_NICS 16
#define OVF_MAX_NETWORKS 16
#define OVF_MAX_NOTES 16
#define OVF_NOTE_MAX 200
#define OVF_HREF_MAX 256

struct ovf_file {
    char id[64];
    char href[OVF_HREF_MAX]; /* inside the package's folder (text_path_inside) */
    uint64_t size;           /* bytes; 0 when ovf:size is absent */
    bool has_size;
};

struct ovf_disk {
    char id[64];             /* ovf:diskId */
    int file;                /* index into files, -1 for a disk without a file (blank) */
    uint64_t capacity_bytes; /* ovf:capacity times ovf:capacityAllocationUnits */
    char format[160];        /* ovf:format URI, e.g. ...vmdk.html#streamOptimized */
    bool attached;           /* an Item of the hardware section names it */
    char controller[16];     /* of the Item that attaches it: "scsi", "ide", "sata", "nvme", "" */
    char controller_sub[32]; /* that controller's rasd:ResourceSubType, lower case
                              * ("lsilogic", "virtualscsi", "lsilogicsas", "vmware.sata.ahci"),
                              * "" when absent */
};

struct ovf_nic {
    char network[256]; /* rasd:Connection */
    char subtype[32];  /* rasd:ResourceSubType: "VmxNet3", "E1000", ... */
    char mac[18];      /* rasd:Address, lower case; "" when absent */
};

struct ovf {
    char name[256];            /* VirtualSystem/Name, else its ovf:id */
    char os_type[64];          /* OperatingSystemSection's vmw:osType, "" when absent */
    unsigned os_id;            /* its ovf:id (CIM operating system number) */
    char firmware[8];          /* "bios" (default) or "efi" (vmw:Config firmware) */
    unsigned vcpus;            /* ResourceType 3 */
    unsigned cores_per_socket; /* vmw:CoresPerSocket, 1 when absent */
    uint64_t memory_mib;       /* ResourceType 4 */
    unsigned nfiles;
    struct ovf_file files[OVF_MAX_FILES];
    unsigned ndisks;
    struct ovf_disk disks[OVF_MAX_DISKS];
    unsigned nattached; /* disks attached by Items (ResourceType 17), in Item order ... */
    unsigned attached[OVF_MAX_DISKS]; /* ... as indices into disks */
    unsigned nnics;
    struct ovf_nic nics[OVF_MAX_NICS];
    unsigned nnetworks;
    char networks[OVF_MAX_NETWORKS][256];
    unsigned ncdroms; /* ResourceType 15/16: skipped */
    unsigned nnotes;  /* what was read but not mapped, and why */
    char notes[OVF_MAX_NOTES][OVF_NOTE_MAX];
};

/* Readies libxml2; call once from the main thread before ovf_parse runs on other threads. */
void ovf_init(void);

/*
 * Parses the OVF envelope (len bytes of XML) of the file name (for messages). Refused, with
 * FERR_INVALID and a message "NAME: line L: ELEMENT PATH: what is wrong": XML that is not
 * well-formed, a DTD (no entities are ever expanded, nothing is fetched from the network), a
 * root that is not an OVF Envelope, a VirtualSystemCollection (more than one VM), a section
 * marked ovf:required="true" that ferry does not know, file references that are URLs, leave the
 * folder or are compressed (ovf:compression) or chunked, disks whose fileRef names no File,
 * capacities that are no number with units ferry knows, hardware Items without a ResourceType,
 * a disk Item whose HostResource names no Disk, no CPU or no memory Item. Items of other
 * resource types, CD-ROMs and unknown optional sections become notes.
 */
int ovf_parse(const char *name, const char *xml, size_t len, struct ovf *out, struct ferr *e);

/* Parses DMTF's programmatic units ("byte", "byte * 2^20", "byte * 10^9", and the older
 * "KiloBytes", "MegaBytes", "GigaBytes") into bytes per unit; -1 if unknown. Pure. */
int ovf_units(const char *units, uint64_t *bytes);

#endif
