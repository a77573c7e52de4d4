/* SPDX-License-Identifier: MIT */
/* Builds the QEMU x86_64 argv of a VM from a machine description; pure, no I/O. */
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
/* Longest escaped option value: every byte of a QEMU_PATH_MAX path doubled. */
#define ESC_MAX (2 * QEMU_PATH_MAX + 1)
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

/* True if the kernel command line has a console=KEY parameter (console=ttyS0,115200 too);
 * key "tty" matches every tty console (tty0, tty1, ...) but not ttyS. */
static bool has_console(const char *cmdline, const char *key)
{
    const size_t klen = strlen(key);
    for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += klen) {
        bool starts = p == cmdline || p[-1] == ' ' || p[-1] == '\t';
        const char *q = p + klen;
        if (strcmp(key, "console=tty") == 0) {
            if (*q < '0' || *q > '9')
                continue;
            while (*q >= '0' && *q <= '9')
                q++;
        }
        char end = *q;
        if (starts && (end == '\0' || end == ' ' || end == '\t' || end == ','))
            return true;
    }
    return false;
}

/* s is set and shorter than max. */
static bool str_fits(const char *s, size_t max)
{
    return s && strnlen(s, max) < max;
}

static bool empty(const char *s)
{
    return !s || s[0] == '\0';
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
    if (!l || !l->m)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing launch or machine description");
    const struct qemu_machine *m = l->m;
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

    if (!str_fits(m->name, QEMU_NAME_MAX + 1) || m->name[0] == '\0')
        return ferr_set(e, FERR_INVALID, "qemu cmdline: VM name is empty or too long");
    if (m->type && !str_fits(m->type, QEMU_NAME_MAX + 1))
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: machine type too long", m->name);
    if (m->sockets == 0 || m->cores == 0 || m->threads == 0)
        return ferr_set(e, FERR_INVALID,
                        "qemu cmdline: %s: sockets, cores and threads must be >= 1", m->name);
    unsigned long long vcpus = (unsigned long long)m->sockets * m->cores * m->threads;
    if (vcpus > QEMU_MAX_VCPUS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %llu vCPUs is more than %d", m->name,
                        vcpus, QEMU_MAX_VCPUS);
    if (m->memory_mib < QEMU_MIN_MEMORY_MIB)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: memory %llu MiB is below %d MiB",
                        m->name, (unsigned long long)m->memory_mib, QEMU_MIN_MEMORY_MIB);

    if (m->ndisks > QEMU_MAX_DISKS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %u disks is more than %d", m->name,
                        m->ndisks, QEMU_MAX_DISKS);
    if (m->ndisks > 0 && !m->disks)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: missing disks", m->name);
    unsigned nbus[4] = {0};
    for (unsigned i = 0; i < m->ndisks; i++) {
        const struct qemu_disk *d = &m->disks[i];
        if (!str_fits(d->path, QEMU_PATH_MAX))
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: disks[%u]: path too long", m->name,
                            i);
        if (d->path[0] != '/')
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: disks[%u]: path \"%s\" is not absolute", m->name, i,
                            d->path);
        if (d->format == QEMU_DISK_NBD &&
            (empty(d->export) || !str_fits(d->export, QEMU_PATH_MAX)))
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: disks[%u]: bad NBD export name",
                            m->name, i);
        if (d->format != QEMU_DISK_FIXED_VHD && d->format != QEMU_DISK_VPC &&
            d->format != QEMU_DISK_NBD)
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: disks[%u]: unknown format %d",
                            m->name, i, (int)d->format);
        if (d->bus < QEMU_BUS_VIRTIO || d->bus > QEMU_BUS_IDE)
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: disks[%u]: unknown bus %d", m->name,
                            i, (int)d->bus);
        nbus[d->bus]++;
        if (d->bytes == 0 || d->bytes % 512 != 0)
            return ferr_set(
                e, FERR_INVALID,
                "qemu cmdline: %s: disks[%u]: size %llu is not a positive multiple of 512", m->name,
                i, (unsigned long long)d->bytes);
    }

    if (m->scsi != QEMU_SCSI_PVSCSI && m->scsi != QEMU_SCSI_LSI)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: unknown SCSI controller %d", m->name,
                        (int)m->scsi);
    if (nbus[QEMU_BUS_IDE] > QEMU_MAX_IDE_DISKS || nbus[QEMU_BUS_SATA] > QEMU_MAX_SATA_DISKS ||
        (m->scsi == QEMU_SCSI_LSI && nbus[QEMU_BUS_SCSI] > QEMU_MAX_LSI_DISKS))
        return ferr_set(e, FERR_INVALID,
                        "qemu cmdline: %s: more disks on one bus than its controller takes "
                        "(ide %d, sata %d, lsi %d)",
                        m->name, QEMU_MAX_IDE_DISKS, QEMU_MAX_SATA_DISKS, QEMU_MAX_LSI_DISKS);
    if (nbus[QEMU_BUS_IDE] && m->type && strstr(m->type, "q35"))
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: machine %s has no IDE controller",
                        m->name, m->type);

    if (m->nnics > QEMU_MAX_NICS)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: %u NICs is more than %d", m->name,
                        m->nnics, QEMU_MAX_NICS);
    if (m->nnics > 0 && !m->nics)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: missing NICs", m->name);
    for (unsigned i = 0; i < m->nnics; i++) {
        const char *tap = m->nics[i].tap;
        if (empty(tap) || strlen(tap) > TAP_NAME_MAX)
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: nics[%u]: missing or too long tap name", m->name, i);
        if (m->nics[i].model < QEMU_NIC_VIRTIO || m->nics[i].model > QEMU_NIC_VMXNET3)
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: nics[%u]: unknown model %d",
                            m->name, i, (int)m->nics[i].model);
        if (!m->nics[i].mac || check_mac(m->nics[i].mac) < 0)
            return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: nics[%u]: bad MAC address", m->name,
                            i);
    }

    if (empty(m->efi_code) != empty(m->efi_vars) ||
        (!empty(m->efi_code) &&
         (!str_fits(m->efi_code, QEMU_PATH_MAX) || !str_fits(m->efi_vars, QEMU_PATH_MAX) ||
          m->efi_code[0] != '/' || m->efi_vars[0] != '/')))
        return ferr_set(e, FERR_INVALID,
                        "qemu cmdline: %s: EFI needs both the firmware and the variable store, "
                        "as absolute paths",
                        m->name);
    if ((m->kernel && !str_fits(m->kernel, QEMU_PATH_MAX)) ||
        (m->initrd && !str_fits(m->initrd, QEMU_PATH_MAX)) ||
        (m->append && !str_fits(m->append, QEMU_APPEND_MAX)))
        return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: boot: path or cmdline too long",
                        m->name);
    if (empty(m->kernel)) {
        if (!empty(m->initrd) || !empty(m->append))
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: boot.initrd and boot.cmdline need boot.kernel",
                            m->name);
        if (m->ndisks == 0)
            return ferr_set(e, FERR_INVALID,
                            "qemu cmdline: %s: nothing to boot: no kernel and no disk", m->name);
    }
    return 0;
}

/* The guest-visible device of disk i on block node "diskI"; rank is its place among the
 * disks on its bus (SCSI id, AHCI port, IDE bus/unit). */
static void add_disk_device(struct argv_builder *b, unsigned i, const struct qemu_disk *d,
                            unsigned rank)
{
    argv_addf(b, "-device");
    switch (d->bus) {
    case QEMU_BUS_SCSI:
        argv_addf(b, "scsi-hd,bus=scsi0.0,scsi-id=%u,lun=0,drive=disk%u,id=disk%u-dev", rank, i, i);
        break;
    case QEMU_BUS_SATA:
        argv_addf(b, "ide-hd,bus=sata0.%u,drive=disk%u,id=disk%u-dev", rank, i, i);
        break;
    case QEMU_BUS_IDE:
        argv_addf(b, "ide-hd,bus=ide.%u,unit=%u,drive=disk%u,id=disk%u-dev", rank / 2, rank % 2, i,
                  i);
        break;
    default:
        argv_addf(b, "virtio-blk-pci,drive=disk%u,id=disk%u-dev", i, i);
    }
}

static void add_disk(struct argv_builder *b, unsigned i, const struct qemu_disk *d,
                     const char *path_esc, unsigned rank)
{
    const char *ro = d->readonly ? ",read-only=on" : "";
    argv_addf(b, "-blockdev");
    if (d->format == QEMU_DISK_NBD) {
        char exp_esc[2 * QEMU_PATH_MAX + 1];
        if (opt_escape(exp_esc, sizeof(exp_esc), d->export) < 0)
            exp_esc[0] = '\0'; /* cannot happen: checked to fit above */
        argv_addf(b,
                  "driver=nbd,server.type=unix,server.path=%s,export=%s,node-name=disk%u,"
                  "reconnect-delay=%d%s",
                  path_esc, exp_esc, i, QEMU_NBD_RECONNECT_S, ro);
        add_disk_device(b, i, d, rank);
        return;
    }
    argv_addf(b,
              "driver=file,filename=%s,node-name=disk%u-file,cache.direct=off,cache.no-flush=off%s",
              path_esc, i, ro);
    argv_addf(b, "-blockdev");
    if (d->format == QEMU_DISK_VPC)
        argv_addf(b, "driver=vpc,file=disk%u-file,node-name=disk%u%s", i, i, ro);
    else /* raw limited to the data before the VHD footer: the footer is never read or written */
        argv_addf(b, "driver=raw,file=disk%u-file,node-name=disk%u,size=%llu%s", i, i,
                  (unsigned long long)d->bytes, ro);
    add_disk_device(b, i, d, rank);
}

/* The pflash chips' block nodes (-machine pflash0=efi-code,pflash1=efi-vars): the code
 * read-only, the variable store written through like a disk. */
static int add_efi(struct argv_builder *b, const struct qemu_machine *m, char *esc, size_t size)
{
    if (opt_escape(esc, size, m->efi_code) < 0)
        return -1;
    argv_addf(b, "-blockdev");
    argv_addf(b, "driver=file,filename=%s,node-name=efi-code,read-only=on", esc);
    if (opt_escape(esc, size, m->efi_vars) < 0)
        return -1;
    argv_addf(b, "-blockdev");
    argv_addf(b, "driver=file,filename=%s,node-name=efi-vars,cache.direct=off,cache.no-flush=off",
              esc);
    return 0;
}

int qemu_argv_build(const struct qemu_launch *l, char ***argv_out, struct ferr *e)
{
    if (!argv_out)
        return ferr_set(e, FERR_INVALID, "qemu cmdline: missing result pointer");
    int rc = validate(l, e);
    if (rc < 0)
        return rc;

    const struct qemu_machine *m = l->m;
    struct argv_builder b = {0};
    char esc_buf[ESC_MAX];
    unsigned vcpus = m->sockets * m->cores * m->threads;
    bool kvm = strcmp(l->accel, "kvm") == 0;

    argv_addf(&b, "%s", l->qemu_binary);
    if (opt_escape(esc_buf, sizeof(esc_buf), m->name) < 0)
        goto err_too_long;
    argv_addf(&b, "-name");
    argv_addf(&b, "guest=%s,debug-threads=on", esc_buf);
    argv_addf(&b, "-machine");
    argv_addf(&b, "%s,accel=%s%s", empty(m->type) ? "pc" : m->type, l->accel,
              empty(m->efi_code) ? "" : ",pflash0=efi-code,pflash1=efi-vars");
    if (!empty(m->efi_code) && add_efi(&b, m, esc_buf, sizeof(esc_buf)) < 0)
        goto err_too_long;
    argv_add2(&b, "-cpu", kvm ? "host" : "max");
    argv_addf(&b, "-smp");
    argv_addf(&b, "sockets=%u,cores=%u,threads=%u,maxcpus=%u", m->sockets, m->cores, m->threads,
              vcpus);
    argv_addf(&b, "-m");
    argv_addf(&b, "%lluM", (unsigned long long)m->memory_mib);
    if (l->prealloc)
        argv_addf(&b, "-mem-prealloc");
    argv_addf(&b, "-nodefaults");
    argv_addf(&b, "-no-user-config");
    if (l->sandbox)
        argv_add2(&b, "-sandbox",
                  "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    /* A guest power-off stops the VM instead of ending QEMU, so ferryd can drain the console
     * ring before it sends "quit" (libvirt does the same). */
    argv_addf(&b, "-no-shutdown");
    argv_add2(&b, "-display", "none");
    argv_add2(&b, "-vga", "none");
    if (opt_escape(esc_buf, sizeof(esc_buf), l->run_dir) < 0)
        goto err_too_long;
    if (m->vga) {
        argv_add2(&b, "-device", "VGA,id=video0");
        argv_addf(&b, "-vnc");
        argv_addf(&b, "unix:%s/vnc.sock", esc_buf);
    }
    argv_addf(&b, "-chardev");
    argv_addf(&b, "ringbuf,id=console,size=%d", CONSOLE_RINGBUF_BYTES);
    if (l->console_input) {
        argv_addf(&b, "-chardev");
        argv_addf(&b, "socket,id=console-in,path=%s/console.sock,server=on,wait=off", esc_buf);
        argv_add2(&b, "-chardev", "hub,id=serial0,chardevs.0=console,chardevs.1=console-in");
        argv_add2(&b, "-serial", "chardev:serial0");
    } else {
        argv_add2(&b, "-serial", "chardev:console");
    }
    argv_addf(&b, "-qmp");
    argv_addf(&b, "unix:%s/qmp.sock,server=on,wait=off", esc_buf);
    /* -pidfile, -kernel, -initrd, -append and -incoming take their argument verbatim. */
    argv_addf(&b, "-pidfile");
    argv_addf(&b, "%s/qemu.pid", l->run_dir);

    /* Controllers first, with fixed ids, so the disks' devices can name their buses. */
    unsigned rank[4] = {0};
    bool scsi = false, sata = false;
    for (unsigned i = 0; i < m->ndisks; i++) {
        scsi = scsi || m->disks[i].bus == QEMU_BUS_SCSI;
        sata = sata || m->disks[i].bus == QEMU_BUS_SATA;
    }
    if (scsi)
        argv_add2(&b, "-device",
                  m->scsi == QEMU_SCSI_LSI ? "lsi53c895a,id=scsi0" : "pvscsi,id=scsi0");
    if (sata)
        argv_add2(&b, "-device", "ich9-ahci,id=sata0");
    for (unsigned i = 0; i < m->ndisks; i++) {
        if (opt_escape(esc_buf, sizeof(esc_buf), m->disks[i].path) < 0)
            goto err_too_long;
        add_disk(&b, i, &m->disks[i], esc_buf, rank[m->disks[i].bus]++);
    }
    for (unsigned i = 0; i < m->nnics; i++) {
        if (opt_escape(esc_buf, sizeof(esc_buf), m->nics[i].tap) < 0)
            goto err_too_long;
        argv_addf(&b, "-netdev");
        if (m->nics[i].fd > 2) /* fd= takes no ifname, script or downscript */
            argv_addf(&b, "tap,id=net%u,fd=%d,vhost=off", i, m->nics[i].fd);
        else
            argv_addf(&b, "tap,id=net%u,ifname=%s,script=no,downscript=no,vhost=off", i, esc_buf);
        argv_addf(&b, "-device");
        static const char *const model[] = {"virtio-net-pci", "e1000", "vmxnet3"};
        argv_addf(&b, "%s,netdev=net%u,mac=%s,id=net%u-dev", model[m->nics[i].model], i,
                  m->nics[i].mac, i);
    }

    if (!empty(m->kernel)) {
        argv_add2(&b, "-kernel", m->kernel);
        if (!empty(m->initrd))
            argv_add2(&b, "-initrd", m->initrd);
        argv_addf(&b, "-append");
        const char *app = empty(m->append) ? "" : m->append;
        const char *tty = m->vga && !has_console(app, "console=tty") ? "console=tty0 " : "";
        if (has_console(app, "console=ttyS0"))
            argv_addf(&b, "%s%s", tty, app);
        else
            argv_addf(&b, "%sconsole=ttyS0%s%s", tty, app[0] ? " " : "", app);
    } else {
        argv_add2(&b, "-boot", "c");
    }
    if (l->incoming)
        argv_add2(&b, "-incoming", l->incoming);

    if (b.oom) {
        qemu_argv_free(b.v);
        return ferr_set(e, -ENOMEM, "qemu cmdline: %s: out of memory", m->name);
    }
    *argv_out = b.v;
    return 0;

err_too_long:
    qemu_argv_free(b.v);
    return ferr_set(e, FERR_INVALID, "qemu cmdline: %s: a path is too long once escaped", m->name);
}
