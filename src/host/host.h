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

/* How busy this host is now: load averages (/proc/loadavg) and the CPU time all CPUs spent
 * busy and in total since boot (/proc/stat's "cpu" line: busy is user, nice, system, irq,
 * softirq and steal; total adds idle and iowait), for a rate between two reads. */
struct host_load {
    double load[3]; /* 1, 5 and 15 minutes */
    double busy_s, total_s;
};

/* Parses /proc/loadavg text ("0.52 0.58 0.59 2/1011 12345"). Returns 0 or FERR_INVALID. */
int host_parse_loadavg(const char *text, double load[3]);
/* Parses /proc/stat text's aggregate "cpu" line with hz ticks a second into busy_s/total_s.
 * Returns 0 or FERR_INVALID (no such line, fewer than the 4 fields every kernel has). */
int host_parse_stat(const char *text, long hz, struct host_load *out);
/* Reads both files. Returns 0, or an error naming the file. */
int host_load_read(struct host_load *out, struct ferr *e);
/* The share of CPU time spent busy between two reads, 0..1; -1 when it cannot be told (no
 * time passed, or the counters went back). */
double host_busy_ratio(const struct host_load *before, const struct host_load *after);

/*
 * The accelerator to use: forced is NULL/"auto", "kvm" or "tcg". Auto picks "kvm" only when
 * the CPU has vmx/svm and /dev/kvm is usable (a nested, emulating /dev/kvm without those flags
 * is slower than TCG), else "tcg". Forcing "kvm" where /dev/kvm is unusable is FERR_INVALID.
 * *why gets a short static explanation shown to users ("cpu has vmx and /dev/kvm opens").
 */
int host_accel_pick(const struct host_info *h, const char *forced, const char **accel,
                    const char **why, struct ferr *e);

#endif
