/* SPDX-License-Identifier: MIT */
/* Facts about this host from /proc, and the choice between KVM and TCG. */
#include "host/host.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_PACKAGES 256
#define PROC_MAX (16u << 20) /* cpuinfo of a 1024-CPU host is a few MiB */

/* Splits "key\t\t: value" into a trimmed key and value; false if the line has no colon. */
/* Copies the line at *p (cut to size - 1 bytes) into buf and moves *p past it; false at the
 * end of the text. */
static bool next_line(const char **p, char *buf, size_t size)
{
    if (!**p)
        return false;
    size_t len = strcspn(*p, "\n");
    size_t copy = len < size - 1 ? len : size - 1;
    memcpy(buf, *p, copy);
    buf[copy] = '\0';
    *p += len;
    if (**p == '\n')
        (*p)++;
    return true;
}

static bool split_line(char *line, char **key, char **value)
{
    char *colon = strchr(line, ':');
    if (!colon)
        return false;
    *colon = '\0';
    char *end = colon;
    while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    *key = line;
    *value = v;
    return true;
}

/* True if the space-separated list has word as a whole word ("vmx", not "vmxfoo"). */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, " \t");
        if (len == n && memcmp(p, word, n) == 0)
            return true;
        p += len;
    }
    return false;
}

void host_parse_cpuinfo(const char *text, struct host_info *out)
{
    long ids[MAX_PACKAGES];
    unsigned nids = 0;
    out->cpus = 0;
    out->sockets = 0;
    out->hw_virt = false;
    out->cpu_model[0] = '\0';

    const char *p = text;
    /* A flags line longer than the buffer would lose words at its end: it is ~1.5 KiB today,
     * and a cut line at worst misses vmx/svm, never invents it. */
    char line[8192];
    while (next_line(&p, line, sizeof(line))) {
        char *key, *value;
        if (!split_line(line, &key, &value))
            continue;
        if (strcmp(key, "processor") == 0) {
            out->cpus++;
        } else if (strcmp(key, "physical id") == 0) {
            char *end;
            long id = strtol(value, &end, 10);
            if (end == value)
                continue;
            bool seen = false;
            for (unsigned i = 0; i < nids; i++)
                if (ids[i] == id)
                    seen = true;
            if (!seen && nids < MAX_PACKAGES)
                ids[nids++] = id;
        } else if (strcmp(key, "model name") == 0) {
            if (!out->cpu_model[0])
                snprintf(out->cpu_model, sizeof(out->cpu_model), "%s", value);
        } else if (strcmp(key, "flags") == 0) {
            if (has_word(value, "vmx") || has_word(value, "svm"))
                out->hw_virt = true;
        }
    }
    /* Without "physical id" lines (some VMs, other architectures) all CPUs count as one package. */
    out->sockets = nids ? nids : (out->cpus ? 1 : 0);
}

int host_parse_meminfo(const char *text, struct host_info *out)
{
    uint64_t total = 0, avail = 0, free_kib = 0;
    bool have_total = false, have_avail = false, have_free = false;
    const char *p = text;
    char line[256];
    while (next_line(&p, line, sizeof(line))) {
        char *key, *value, *end;
        if (!split_line(line, &key, &value))
            continue;
        bool *have;
        uint64_t *dst;
        if (strcmp(key, "MemTotal") == 0) {
            have = &have_total;
            dst = &total;
        } else if (strcmp(key, "MemAvailable") == 0) {
            have = &have_avail;
            dst = &avail;
        } else if (strcmp(key, "MemFree") == 0) {
            have = &have_free;
            dst = &free_kib;
        } else {
            continue;
        }
        if (value[0] < '0' || value[0] > '9')
            return FERR_INVALID;
        errno = 0;
        unsigned long long n = strtoull(value, &end, 10);
        while (*end == ' ')
            end++;
        if (errno || strcmp(end, "kB") != 0)
            return FERR_INVALID;
        *dst = n;
        *have = true;
    }
    if (!have_total)
        return FERR_INVALID;
    /* Kernels before 3.14 have no MemAvailable; MemFree is the cautious stand-in. */
    if (!have_avail)
        avail = have_free ? free_kib : 0;
    out->mem_total_mib = total / 1024;
    out->mem_avail_mib = avail / 1024;
    return 0;
}

int host_info_read(struct host_info *out, struct ferr *e)
{
    struct host_info h;
    memset(&h, 0, sizeof(h));
    char *text = NULL;
    int rc;

    if (gethostname(h.hostname, sizeof(h.hostname) - 1) < 0)
        return ferr_set(e, -errno, "host: gethostname: %s", strerror(errno));

    if ((rc = file_read_all("/proc/cpuinfo", PROC_MAX, &text, NULL, e)) < 0) {
        ferr_prefix(e, "host");
        return rc;
    }
    host_parse_cpuinfo(text, &h);
    free(text);
    if (h.cpus == 0)
        return ferr_set(e, FERR_INVALID, "host: /proc/cpuinfo lists no processors");

    if ((rc = file_read_all("/proc/meminfo", PROC_MAX, &text, NULL, e)) < 0) {
        ferr_prefix(e, "host");
        return rc;
    }
    rc = host_parse_meminfo(text, &h);
    free(text);
    if (rc < 0)
        return ferr_set(e, rc, "host: /proc/meminfo has no readable MemTotal line");

    /* Usable means what QEMU will do with it: open read-write. Closed at once. */
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        h.kvm_usable = true;
        close(fd);
    }
    *out = h;
    return 0;
}

int host_parse_loadavg(const char *text, double load[3])
{
    char *end;
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9')
            return FERR_INVALID;
        errno = 0;
        load[i] = strtod(p, &end);
        if (errno || end == p || (*end != ' ' && *end != '\n' && *end != '\0'))
            return FERR_INVALID;
        p = end;
    }
    return 0;
}

int host_parse_stat(const char *text, long hz, struct host_load *out)
{
    const char *p = text;
    char line[512];
    if (hz <= 0)
        return FERR_INVALID;
    while (next_line(&p, line, sizeof(line))) {
        if (strncmp(line, "cpu ", 4) != 0)
            continue;
        /* user nice system idle iowait irq softirq steal (guest time is inside user/nice) */
        unsigned long long v[8] = {0};
        int n = sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                       &v[3], &v[4], &v[5], &v[6], &v[7]);
        if (n < 4)
            return FERR_INVALID;
        double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
        out->busy_s = busy / (double)hz;
        out->total_s = (busy + (double)(v[3] + v[4])) / (double)hz;
        return 0;
    }
    return FERR_INVALID;
}

int host_load_read(struct host_load *out, struct ferr *e)
{
    char *text = NULL;
    int rc;
    if ((rc = file_read_all("/proc/loadavg", PROC_MAX, &text, NULL, e)) < 0) {
        ferr_prefix(e, "host");
        return rc;
    }
    rc = host_parse_loadavg(text, out->load);
    free(text);
    if (rc < 0)
        return ferr_set(e, rc, "host: /proc/loadavg is not three load averages");
    if ((rc = file_read_all("/proc/stat", PROC_MAX, &text, NULL, e)) < 0) {
        ferr_prefix(e, "host");
        return rc;
    }
    rc = host_parse_stat(text, sysconf(_SC_CLK_TCK), out);
    free(text);
    if (rc < 0)
        return ferr_set(e, rc, "host: /proc/stat has no readable cpu line");
    return 0;
}

double host_busy_ratio(const struct host_load *before, const struct host_load *after)
{
    double total = after->total_s - before->total_s, busy = after->busy_s - before->busy_s;
    if (total <= 0 || busy < 0)
        return -1;
    return busy > total ? 1.0 : busy / total;
}

int host_accel_pick(const struct host_info *h, const char *forced, const char **accel,
                    const char **why, struct ferr *e)
{
    if (!forced || !forced[0] || strcmp(forced, "auto") == 0) {
        if (h->hw_virt && h->kvm_usable) {
            *accel = "kvm";
            *why = "cpu has vmx/svm and /dev/kvm opens";
        } else if (h->kvm_usable) {
            *accel = "tcg";
            *why = "cpu has no vmx/svm: /dev/kvm would be nested emulation, slower than tcg";
        } else if (h->hw_virt) {
            *accel = "tcg";
            *why =
                "cpu has vmx/svm but /dev/kvm does not open read-write (kvm module, permissions)";
        } else {
            *accel = "tcg";
            *why = "cpu has no vmx/svm and /dev/kvm does not open";
        }
        return 0;
    }
    if (strcmp(forced, "kvm") == 0) {
        if (!h->kvm_usable)
            return ferr_set(e, FERR_INVALID,
                            "accel: kvm was forced but /dev/kvm does not open read-write on this "
                            "host (load the kvm module, check permissions, or use auto or tcg)");
        *accel = "kvm";
        *why = h->hw_virt ? "forced; cpu has vmx/svm and /dev/kvm opens"
                          : "forced; cpu has no vmx/svm, so kvm may be nested and slow";
        return 0;
    }
    if (strcmp(forced, "tcg") == 0) {
        *accel = "tcg";
        *why = "forced";
        return 0;
    }
    return ferr_set(e, FERR_INVALID, "accel: \"%.32s\" is not one of auto, kvm, tcg", forced);
}
