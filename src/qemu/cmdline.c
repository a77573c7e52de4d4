/* SPDX-License-Identifier: MIT */
/* Builds the QEMU 7.2 x86_64 argv of a VM from its spec; pure, no I/O. */
#include "qemu/cmdline.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Ring buffer behind the serial console, read with QMP ringbuf-read. */
#define CONSOLE_RINGBUF_BYTES 1048576
/* Longest escaped option value: every byte of a VM_PATH_MAX path doubled. */
#define ESC_MAX (2 * VM_PATH_MAX + 1)
#define TAP_NAME_MAX 15 /* IFNAMSIZ - 1 */

/* A growing NULL-terminated argv; after the first allocation failure every add is a no-op
 * and oom stays set, so callers check once at the end. */
struct argv_builder {
    char **v;
    size_t n, cap;
    bool oom;
};

static void argv_addf(struct argv_builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void argv_addf(struct argv_builder *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    if (b->n + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char **nv = realloc(b->v, cap * sizeof(*nv));
        if (!nv) {
            b->oom = true;
            return;
        }
        b->v = nv;
        b->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        b->oom = true;
        return;
    }
    b->v[b->n++] = s;
    b->v[b->n] = NULL;
}

static void argv_add2(struct argv_builder *b, const char *opt, const char *val)
{
    argv_addf(b, "%s", opt);
    argv_addf(b, "%s", val);
}

void qemu_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

/*
 * QEMU's option syntax (QemuOpts and keyval, used by -name, -blockdev, -device, -netdev,
 * -qmp) ends a value at ',' and takes ",," as a literal comma. Writes src with its commas
 * doubled into dst; -ENAMETOOLONG if it does not fit.
 */
static int opt_escape(char *dst, size_t size, const char *src)
{
    size_t o = 0;
    for (const char *s = src; *s; s++) {
        size_t need = *s == ',' ? 2 : 1;
        if (o + need >= size)
            return -ENAMETOOLONG;
        dst[o++] = *s;
        if (*s == ',')
            dst[o++] = ',';
    }
    dst[o] = '\0';
    return 0;
}

/* True if the kernel command line has a console=ttyS0 parameter (console=ttyS0,115200 too). */
static bool has_serial_console(const char *cmdline)
{
    static const char key[] = "console=ttyS0";
    const size_t klen = sizeof(key) - 1;
    for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += klen) {
        bool starts = p == cmdline || p[-1] == ' ' || p[-1] == '\t';
        char end = p[klen];
        if (starts && (end == '\0' || end == ' ' || end == '\t' || end == ','))
            return true;
    }
    return false;
}

static bool str_bounded(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static int check_mac(const char *mac)
{
    if (strnlen(mac, 18) != 17)
        return -1;
    for (int i = 0; i < 17; i++) {
        char ch = mac[i];
        bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
        if (i % 3 == 2 ? ch != ':' : !hex)
            return -1;
    }
    return 0;
}

/* Everything that can be wrong with a launch, checked before anything is allocated. */
static int validate(const struct qemu_launch *l, struct ferr *e)
{
    if (!l || !l->spec)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing launch description or VM spec");
    const struct vm_spec *s = l->spec;
    if (!l->qemu_binary || l->qemu_binary[0] == '\0')
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing QEMU binary");
    if (!l->accel)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing accelerator (kvm or tcg)");
    if (strcmp(l->accel, "kvm") != 0 && strcmp(l->accel, "tcg") != 0)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: accelerator \"%s\" is not kvm or tcg",
                        l->accel);
    if (!l->run_dir || l->run_dir[0] != '/')
        return ferr_set(e, FERR_INVALID, "qemu cmdline: run_dir must be an absolute path");
    /* The QMP socket path must fit in sockaddr_un.sun_path. */
    size_t sun_max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (strlen(l->run_dir) + strlen("/qmp.sock") > sun_max)
        return ferr_set(e, FERR_INVALID,
                        "qemu cmdline: run_dir %s is too long for a unix socket path "
                        "(at most %zu bytes with /qmp.sock)",
                        l->run_dir, sun_max);
    if (l->incoming && l->incoming[0] == '\0')
        return ferr_set(e, FERR_INVALID, "qemu cmdline: empty -incoming argument");

    if (!str_bounded(s->name, sizeof(s->name)) || s->name[0] == '\0')
        return ferr_set(e, FERR_INVALID, "qemu cmdline: VM name is empty or too long");
    if (s->sockets == 0 || s->cores == 0 || s->threads == 0)
        return ferr_set(e, FERR_INVALID,
                        "qemu cmdline: %s: sockets, cores and threads must be >= 1", s->name);
    unsigned long long vcpus = (unsigned long long)s->sockets * s->cores * s->threads;
    if (vcpus > VM_MAX_VCPUS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %llu vCPUs is more than %d", s->name,
                        vcpus, VM_MAX_VCPUS);
    if (s->memory_mib < VM_MIN_MEMORY_MIB)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: memory %llu MiB is below %d MiB",
                        s->name, (unsigned long long)s->memory_mib, VM_MIN_MEMORY_MIB);

    if (s->ndisks > VM_MAX_DISKS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %u disks is more than %d", s->name,
                        s->ndisks, VM_MAX_DISKS);
    if (s->ndisks > 0 && !l->disk_bytes)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: missing disk sizes", s->name);
    for (unsigned i = 0; i < s->ndisks; i++) {
        const struct vm_disk *d = &s->disks[i];
        if (!str_bounded(d->path, sizeof(d->path)))
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: disks[%u]: path too long", s->name,
                            i);
        if (d->path[0] != '/')
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: disks[%u]: path \"%s\" is not absolute", s->name, i,
                            d->path);
        if (l->disk_bytes[i] == 0 || l->disk_bytes[i] % 512 != 0)
            return ferr_set(
                e, FERR_INVALID,
                "qemu cmdline: %s: disks[%u]: size %llu is not a positive multiple of 512", s->name,
                i, (unsigned long long)l->disk_bytes[i]);
    }

    if (s->nnics > VM_MAX_NICS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %u NICs is more than %d", s->name,
                        s->nnics, VM_MAX_NICS);
    if (s->nnics > 0 && !l->taps)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: missing tap names", s->name);
    for (unsigned i = 0; i < s->nnics; i++) {
        const char *tap = l->taps[i];
        if (!tap || tap[0] == '\0' || strlen(tap) > TAP_NAME_MAX)
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: nics[%u]: missing or too long tap name", s->name, i);
        if (check_mac(s->nics[i].mac) < 0)
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: nics[%u]: bad MAC address", s->name,
                            i);
    }

    if (!str_bounded(s->boot.kernel, sizeof(s->boot.kernel)) ||
        !str_bounded(s->boot.initrd, sizeof(s->boot.initrd)) ||
        !str_bounded(s->boot.cmdline, sizeof(s->boot.cmdline)))
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: boot: path or cmdline too long",
                        s->name);
    if (s->boot.kernel[0] == '\0') {
        if (s->boot.initrd[0] != '\0' || s->boot.cmdline[0] != '\0')
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: boot.initrd and boot.cmdline need boot.kernel",
                            s->name);
        if (s->ndisks == 0)
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: nothing to boot: no kernel and no disk", s->name);
    }
    return 0;
}

static void add_disk(struct argv_builder *b, unsigned i, const struct vm_disk *d, uint64_t bytes,
                     const char *path_esc)
{
    const char *ro = d->readonly ? ",read-only=on" : "";
    argv_addf(b, "-blockdev");
    argv_addf(b,
              "driver=file,filename=%s,node-name=disk%u-file,cache.direct=off,cache.no-flush=off%s",
              path_esc, i, ro);
    /* raw limited to the data before the VHD footer: the footer is never read or written. */
    argv_addf(b, "-blockdev");
    argv_addf(b, "driver=raw,file=disk%u-file,node-name=disk%u,size=%llu%s", i, i,
              (unsigned long long)bytes, ro);
    argv_addf(b, "-device");
    argv_addf(b, "virtio-blk-pci,drive=disk%u,id=disk%u-dev", i, i);
}

int qemu_argv_build(const struct qemu_launch *l, char ***argv_out, struct ferr *e)
{
    if (!argv_out)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing result pointer");
    int rc = validate(l, e);
    if (rc < 0)
        return rc;

    const struct vm_spec *s = l->spec;
    struct argv_builder b = {0};
    char esc_buf[ESC_MAX];
    unsigned vcpus = s->sockets * s->cores * s->threads;
    bool kvm = strcmp(l->accel, "kvm") == 0;

    argv_addf(&b, "%s", l->qemu_binary);
    if (opt_escape(esc_buf, sizeof(esc_buf), s->name) < 0)
        goto err_too_long;
    argv_addf(&b, "-name");
    argv_addf(&b, "guest=%s,debug-threads=on", esc_buf);
    argv_addf(&b, "-machine");
    argv_addf(&b, "%s,accel=%s", s->machine[0] ? s->machine : "pc", l->accel);
    argv_add2(&b, "-cpu", kvm ? "host" : "max");
    argv_addf(&b, "-smp");
    argv_addf(&b, "sockets=%u,cores=%u,threads=%u,maxcpus=%u", s->sockets, s->cores, s->threads,
              vcpus);
    argv_addf(&b, "-m");
    argv_addf(&b, "%lluM", (unsigned long long)s->memory_mib);
    if (l->prealloc)
        argv_addf(&b, "-mem-prealloc");
    argv_addf(&b, "-nodefaults");
    argv_addf(&b, "-no-user-config");
    /* A guest power-off stops the VM instead of ending QEMU, so ferryd can drain the console
     * ring before it sends "quit" (libvirt does the same). */
    argv_addf(&b, "-no-shutdown");
    argv_add2(&b, "-display", "none");
    argv_add2(&b, "-vga", "none");
    argv_addf(&b, "-chardev");
    argv_addf(&b, "ringbuf,id=console,size=%d", CONSOLE_RINGBUF_BYTES);
    argv_add2(&b, "-serial", "chardev:console");
    if (opt_escape(esc_buf, sizeof(esc_buf), l->run_dir) < 0)
        goto err_too_long;
    argv_addf(&b, "-qmp");
    argv_addf(&b, "unix:%s/qmp.sock,server=on,wait=off", esc_buf);
    /* -pidfile, -kernel, -initrd, -append and -incoming take their argument verbatim. */
    argv_addf(&b, "-pidfile");
    argv_addf(&b, "%s/qemu.pid", l->run_dir);

    for (unsigned i = 0; i < s->ndisks; i++) {
        if (opt_escape(esc_buf, sizeof(esc_buf), s->disks[i].path) < 0)
            goto err_too_long;
        add_disk(&b, i, &s->disks[i], l->disk_bytes[i], esc_buf);
    }
    for (unsigned i = 0; i < s->nnics; i++) {
        if (opt_escape(esc_buf, sizeof(esc_buf), l->taps[i]) < 0)
            goto err_too_long;
        argv_addf(&b, "-netdev");
        argv_addf(&b, "tap,id=net%u,ifname=%s,script=no,downscript=no,vhost=off", i, esc_buf);
        argv_addf(&b, "-device");
        argv_addf(&b, "virtio-net-pci,netdev=net%u,mac=%s,id=net%u-dev", i, s->nics[i].mac, i);
    }

    if (s->boot.kernel[0] != '\0') {
        argv_add2(&b, "-kernel", s->boot.kernel);
        if (s->boot.initrd[0] != '\0')
            argv_add2(&b, "-initrd", s->boot.initrd);
        argv_addf(&b, "-append");
        if (has_serial_console(s->boot.cmdline))
            argv_addf(&b, "%s", s->boot.cmdline);
        else if (s->boot.cmdline[0] != '\0')
            argv_addf(&b, "console=ttyS0 %s", s->boot.cmdline);
        else
            argv_addf(&b, "console=ttyS0");
    } else {
        argv_add2(&b, "-boot", "c");
    }
    if (l->incoming)
        argv_add2(&b, "-incoming", l->incoming);

    if (b.oom) {
        qemu_argv_free(b.v);
        return ferr_set(e, -ENOMEM, "qemu cmdline: %s: out of memory", s->name);
    }
    *argv_out = b.v;
    return 0;

err_too_long:
    qemu_argv_free(b.v);
    return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: a path is too long once escaped", s->name);
}
