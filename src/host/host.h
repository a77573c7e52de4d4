/* SPDX-License-Identifier: MIT */
/* Facts about this host: CPUs, memory, hardware virtualization and the accelerator to use. */
#ifndef FERRY_HOST_HOST_H
#define FERRY_HOST_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct host_info {
    char hostname[256];
    char cpu_model[128];
    unsigned cpus;          /* online logical CPUs */
    unsigned sockets;       /* physical packages */
    bool hw_virt;           /* cpu flags have vmx or svm */
    bool kvm_usable;        /* /dev/kvm opens read-write */
    uint64_t mem_total_mib; /* MemTotal */
    uint64_t mem_avail_mib; /* MemAvailable */
};

/* Parses /proc/cpuinfo text: counts processors and physical ids, finds the model name and
 * whether any flags line has "vmx" or "svm" as a whole word. Pure; for unit tests. */
void host_parse_cpuinfo(const char *text, struct host_info *out);
/* Parses /proc/meminfo text into mem_total_mib / mem_avail_mib. Returns 0 or FERR_INVALID. */
int host_parse_meminfo(const char *text, struct host_info *out);

/* Reads /proc/cpuinfo, /proc/meminfo, hostname, and tries to open /dev/kvm. */
int host_info_read(struct host_info *out, struct ferr *e);

/*
 * The accelerator to use: forced is NULL/"auto", "kvm" or "tcg". Auto picks "kvm" only when
 * the CPU has vmx/svm and /dev/kvm is usable (a nested, emulating /dev/kvm without those flags
 * is slower than TCG), else "tcg". Forcing "kvm" where /dev/kvm is unusable is FERR_INVALID.
 * *why gets a short static explanation shown to users ("cpu has vmx and /dev/kvm opens").
 */
int host_accel_pick(const struct host_info *h, const char *forced, const char **accel,
                    const char **why, struct ferr *e);

#endif
