/* SPDX-License-Identifier: MIT */
/* The import plan (plan.h): VMware's machine mapped onto a ferry VM spec. */
#include "import/plan.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/vhd.h"

static void src_note(struct import_source *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void src_note(struct import_source *s, const char *fmt, ...)
{
    if (s->nnotes == IMPORT_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->notes[s->nnotes++], IMPORT_NOTE_MAX, fmt, ap);
    va_end(ap);
}

static void plan_note(struct import_plan *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void plan_note(struct import_plan *p, const char *fmt, ...)
{
    if (p->nnotes == sizeof p->notes / sizeof p->notes[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->notes[p->nnotes++], IMPORT_NOTE_MAX, fmt, ap);
    va_end(ap);
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%.*s", (int)(cap - 1), src);
}

int import_source_from_vmx(const struct vmx *v, const char *file, struct import_source *out,
                           struct ferr *e)
{
    memset(out, 0, sizeof *out);
    copy(out->kind, sizeof out->kind, "vmx");
    copy(out->file, sizeof out->file, file);
    copy(out->name, sizeof out->name, v->display_name);
    if (!out->name[0]) { /* no displayName: the file's name, as VMware shows it then */
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".vmx") == 0)
            n -= 4;
        snprintf(out->name, sizeof out->name, "%.*s", (int)(n < 255 ? n : 255), base);
    }
    copy(out->guest_os, sizeof out->guest_os, v->guest_os);
    copy(out->firmware, sizeof out->firmware, v->firmware);
    out->vcpus = v->numvcpus;
    out->cores_per_socket = v->cores_per_socket;
    out->memory_mib = v->memsize_mib;
    for (unsigned i = 0; i < v->ndisks; i++) {
        const struct vmx_disk *d = &v->disks[i];
        if (d->cdrom) {
            src_note(out, "%s%u:%u: CD-ROM%s%s skipped: attach an ISO after the import if needed",
                     d->bus, d->ctrl, d->unit, d->file[0] ? " " : "", d->file);
            continue;
        }
        if (out->ndisks == IMPORT_MAX_DISKS)
            return ferr_set(e, FERR_INVALID, "%s:%u: more than %d disks", file, d->line,
                            IMPORT_MAX_DISKS);
        struct import_src_disk *s = &out->disks[out->ndisks++];
        snprintf(s->label, sizeof s->label, "%s%u:%u", d->bus, d->ctrl, d->unit);
        snprintf(s->device, sizeof s->device, "%.8s%u:%u (%.24s%s%.24s)", d->bus, d->ctrl, d->unit,
                 d->device_type[0] ? d->device_type : "disk", d->controller_dev[0] ? ", " : "",
                 d->controller_dev);
        copy(s->bus, sizeof s->bus, d->bus);
        copy(s->controller, sizeof s->controller, d->controller_dev);
        copy(s->file, sizeof s->file, d->file);
        s->line = d->line;
    }
    for (unsigned i = 0; i < v->nnics; i++) {
        const struct vmx_nic *n = &v->nics[i];
        struct import_src_nic *s = &out->nics[out->nnics++];
        snprintf(s->label, sizeof s->label, "ethernet%u", n->index);
        copy(s->network, sizeof s->network, n->network);
        copy(s->model, sizeof s->model, n->virtual_dev[0] ? n->virtual_dev : "vlance");
        copy(s->mac, sizeof s->mac, n->mac);
    }
    if (v->nunknown)
        src_note(out,
                 "%u of the %u keys of %s are not used by an import (tools, UI, "
                 "scheduling, devices ferry has no counterpart for)",
                 v->nunknown, v->nkeys, file);
    if (v->nduplicates)
        src_note(out, "%u keys are written more than once (e.g. %s): the last one counts",
                 v->nduplicates, v->first_duplicate);
    return 0;
}

int import_source_from_ovf(const struct ovf *o, const char *file, const char *kind,
                           struct import_source *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    copy(out->kind, sizeof out->kind, kind);
    copy(out->file, sizeof out->file, file);
    copy(out->name, sizeof out->name, o->name);
    copy(out->guest_os, sizeof out->guest_os, o->os_type);
    copy(out->firmware, sizeof out->firmware, o->firmware);
    out->vcpus = o->vcpus;
    out->cores_per_socket = o->cores_per_socket;
    out->memory_mib = o->memory_mib;
    for (unsigned i = 0; i < o->nattached; i++) {
        const struct ovf_disk *d = &o->disks[o->attached[i]];
        if (out->ndisks == IMPORT_MAX_DISKS)
            return ferr_set(e, FERR_INVALID, "%s: more than %d disks", file, IMPORT_MAX_DISKS);
        if (d->file < 0)
            return ferr_set(e, FERR_INVALID,
                            "%s: disk %s has no file (an empty disk to create): ferry imports "
                            "disks with their data only; create it after the import with ferry "
                            "disk create",
                            file, d->id);
        struct import_src_disk *s = &out->disks[out->ndisks++];
        copy(s->label, sizeof s->label, d->id);
        snprintf(s->device, sizeof s->device, "%s controller%s%s",
                 d->controller[0] ? d->controller : "unknown", d->controller_sub[0] ? " " : "",
                 d->controller_sub);
        copy(s->bus, sizeof s->bus, d->controller);
        /* OVF's names for VMware's SCSI controllers */
        const char *sub = d->controller_sub;
        copy(s->controller, sizeof s->controller,
             strcmp(sub, "virtualscsi") == 0 || strcmp(sub, "pvscsi") == 0       ? "pvscsi"
             : strcmp(sub, "lsilogicsas") == 0 || strcmp(sub, "lsisas1068") == 0 ? "lsisas1068"
                                                                                 : sub);
        copy(s->file, sizeof s->file, o->files[d->file].href);
        /* the loader compares the capacity with the descriptor's */
        s->virtual_bytes = d->capacity_bytes;
    }
    for (unsigned i = 0; i < o->nnics && out->nnics < IMPORT_MAX_NICS; i++) {
        const struct ovf_nic *n = &o->nics[i];
        struct import_src_nic *s = &out->nics[out->nnics++];
        snprintf(s->label, sizeof s->label, "nic%u", i);
        copy(s->network, sizeof s->network, n->network);
        copy(s->model, sizeof s->model, n->subtype[0] ? n->subtype : "unknown");
        copy(s->mac, sizeof s->mac, n->mac);
    }
    for (unsigned i = 0; i < o->nnotes; i++)
        src_note(out, "%s", o->notes[i]);
    return 0;
}

void import_name_from(const char *display, char out[VM_NAME_MAX + 1])
{
    char buf[VM_NAME_MAX + 8];
    size_t n = 0;
    bool dash = false;
    for (const char *c = display; *c && n < VM_NAME_MAX; c++) {
        char ch = (char)tolower((unsigned char)*c);
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
            if (dash && n > 0)
                buf[n++] = '-';
            dash = false;
            if (n < VM_NAME_MAX)
                buf[n++] = ch;
        } else {
            dash = true;
        }
    }
    buf[n] = 0;
    if (n && !(buf[0] >= 'a' && buf[0] <= 'z'))
        snprintf(out, VM_NAME_MAX + 1, "vm-%.*s", VM_NAME_MAX - 3, buf);
    else
        snprintf(out, VM_NAME_MAX + 1, "%.*s", VM_NAME_MAX, buf);
    n = strlen(out);
    while (n && out[n - 1] == '-')
        out[--n] = 0;
}

static const char *bridge_for(const struct import_target *t, const char *network)
{
    for (unsigned i = 0; i < t->nnet; i++)
        if (t->net[i].network[0] && strcmp(t->net[i].network, network) == 0)
            return t->net[i].bridge;
    for (unsigned i = 0; i < t->nnet; i++)
        if (!t->net[i].network[0])
            return t->net[i].bridge;
    return NULL;
}

static int fail(struct import_plan *p, struct ferr *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct import_plan *p, struct ferr *e, int code, const char *fmt, ...)
{
    char msg[FERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    import_plan_clear(p);
    return ferr_set(e, code, "%s", msg);
}

static int plan_cpu_memory(const struct import_source *src, const struct import_target *t,
                           struct import_plan *p, unsigned *sockets, struct ferr *e)
{
    if (src->vcpus == 0 || src->cores_per_socket == 0 || src->vcpus % src->cores_per_socket)
        return fail(p, e, FERR_INVALID, "%s: %u vCPUs do not split into sockets of %u cores",
                    src->file, src->vcpus, src->cores_per_socket);
    *sockets = src->vcpus / src->cores_per_socket;
    if (*sockets > VM_MAX_SOCKETS)
        return fail(p, e, FERR_INVALID,
                    "%s: %u vCPUs as %u sockets of %u cores: a ferry VM has at most %d sockets; "
                    "give the VM more cores per socket in VMware (cpuid.coresPerSocket) and "
                    "export it again",
                    src->file, src->vcpus, *sockets, src->cores_per_socket, VM_MAX_SOCKETS);
    if (src->cores_per_socket > VM_MAX_CORES)
        return fail(p, e, FERR_INVALID, "%s: %u cores per socket: a ferry VM has at most %d",
                    src->file, src->cores_per_socket, VM_MAX_CORES);
    if (t->host_cpus && src->vcpus > t->host_cpus)
        return fail(p, e, FERR_LIMIT,
                    "%s: %u vCPUs, but node %s has %u CPUs: give the VM fewer vCPUs in VMware "
                    "or import it on a bigger node (--node)",
                    src->file, src->vcpus, t->node ? t->node : "", t->host_cpus);
    if (!t->host_cpus)
        plan_note(p,
                  "%u vCPUs not checked against node %s's CPUs (this node does not know how "
                  "many it has)",
                  src->vcpus, t->node ? t->node : "");
    if (src->memory_mib < VM_MIN_MEMORY_MIB)
        return fail(p, e, FERR_INVALID, "%s: memory of %llu MiB: a ferry VM has at least %d",
                    src->file, (unsigned long long)src->memory_mib, VM_MIN_MEMORY_MIB);
    if (t->host_memory_mib && src->memory_mib > t->host_memory_mib)
        return fail(p, e, FERR_LIMIT,
                    "%s: memory of %llu MiB is more than node %s has (%llu MiB): give the VM "
                    "less memory in VMware or import it on a bigger node (--node)",
                    src->file, (unsigned long long)src->memory_mib, t->node ? t->node : "",
                    (unsigned long long)t->host_memory_mib);
    return 0;
}

int import_map_disk(const struct import_src_disk *d, int *scsi, char *note, size_t size)
{
    const char *ctl = d->controller;
    *scsi = VM_SCSI_PVSCSI;
    if (strcmp(d->bus, "scsi") == 0 && strcmp(ctl, "pvscsi") == 0) {
        snprintf(note, size, "disk %s (%s) -> scsi disk on pvscsi, the same device", d->label,
                 d->device);
        return VM_BUS_SCSI;
    }
    if (strcmp(d->bus, "scsi") == 0 &&
        (strcmp(ctl, "lsilogic") == 0 || strcmp(ctl, "lsisas1068") == 0)) {
        *scsi = VM_SCSI_LSI;
        snprintf(note, size,
                 "disk %s (%s) -> scsi disk on lsi: QEMU's LSI 53C895A, not VMware's LSI Logic "
                 "%s: the chip differs, the guest needs its driver (Linux sym53c8xx; Windows has "
                 "none built in: use virtio or pvscsi there)",
                 d->label, d->device, strcmp(ctl, "lsilogic") == 0 ? "Parallel" : "SAS");
        return VM_BUS_SCSI;
    }
    if (strcmp(d->bus, "sata") == 0) {
        snprintf(note, size, "disk %s (%s) -> sata disk on an AHCI controller (ich9-ahci)",
                 d->label, d->device);
        return VM_BUS_SATA;
    }
    if (strcmp(d->bus, "ide") == 0) {
        snprintf(note, size, "disk %s (%s) -> ide disk on the PIIX IDE controller", d->label,
                 d->device);
        return VM_BUS_IDE;
    }
    snprintf(note, size,
             "disk %s (%s) -> virtio disk: ferry has no %s%s%s controller (the guest needs "
             "virtio drivers)",
             d->label, d->device, d->bus[0] ? d->bus : "such", ctl[0] ? " " : "", ctl);
    return VM_BUS_VIRTIO;
}

int import_map_nic(const char *label, const char *model, char *note, size_t size)
{
    if (strcasecmp(model, "vmxnet3") == 0) {
        snprintf(note, size, "%s (%s) -> vmxnet3 NIC, the same device", label, model);
        return VM_NIC_VMXNET3;
    }
    if (strcasecmp(model, "e1000") == 0) {
        snprintf(note, size, "%s (%s) -> e1000 NIC, the same device", label, model);
        return VM_NIC_E1000;
    }
    if (strcasecmp(model, "e1000e") == 0) {
        snprintf(note, size,
                 "%s (%s) -> e1000 NIC: the e1000e (82574) became an e1000 (82540EM), whose "
                 "driver every guest that has e1000e's has too",
                 label, model);
        return VM_NIC_E1000;
    }
    snprintf(note, size, "%s (%s) -> virtio NIC: ferry has no %s (the guest needs virtio drivers)",
             label, model, model);
    return VM_NIC_VIRTIO;
}

static int plan_disks(const struct import_source *src, const struct import_target *t,
                      struct import_plan *p, json_t *disks, struct ferr *e)
{
    bool scsi_set = false;
    if (src->ndisks == 0)
        return fail(p, e, FERR_INVALID,
                    "%s: the machine has no disk to import (CD-ROMs are skipped)", src->file);
    if (src->ndisks > VM_MAX_DISKS)
        return fail(p, e, FERR_INVALID, "%s: %u disks: a ferry VM has at most %d", src->file,
                    src->ndisks, VM_MAX_DISKS);
    for (unsigned i = 0; i < src->ndisks; i++) {
        const struct import_src_disk *d = &src->disks[i];
        struct import_conv *c = &p->conv[p->nconv];
        if (d->virtual_bytes == 0 || d->virtual_bytes % 512)
            return fail(p, e, FERR_INVALID, "%s: disk %s has a size of %llu bytes", src->file,
                        d->label, (unsigned long long)d->virtual_bytes);
        if (d->virtual_bytes > VHD_MAX_SIZE)
            return fail(p, e, FERR_LIMIT,
                        "%s: disk %s is %llu GiB: a VHD holds at most %llu GiB; shrink it in "
                        "VMware first",
                        src->file, d->label, (unsigned long long)(d->virtual_bytes >> 30),
                        (unsigned long long)(VHD_MAX_SIZE >> 30));
        copy(c->label, sizeof c->label, d->label);
        copy(c->src, sizeof c->src, d->path);
        copy(c->src_format, sizeof c->src_format, "vmdk");
        c->ova_offset = d->ova_offset;
        c->ova_size = d->ova_size;
        int n = snprintf(c->dst, sizeof c->dst, "%s/%s-disk%u.vhd", t->volume_path, p->name, i);
        if (n < 0 || (size_t)n >= sizeof c->dst)
            return fail(p, e, FERR_INVALID, "volume path %s is too long", t->volume_path);
        snprintf(c->dst_ref, sizeof c->dst_ref, "csv:%s/%s-disk%u.vhd", t->volume, p->name, i);
        c->dynamic = t->dynamic;
        c->size_bytes = d->virtual_bytes;
        /* a dynamic VHD holds what the guest wrote: about the source's data, not its size */
        c->need_bytes = t->dynamic
                            ? (d->file_bytes < d->virtual_bytes ? d->file_bytes : d->virtual_bytes)
                            : d->virtual_bytes;
        if (t->file_exists && t->file_exists(c->dst, t->data))
            return fail(p, e, FERR_EXISTS,
                        "%s exists already: import under another name (--name) or delete it "
                        "(ferry disk delete %s)",
                        c->dst_ref, c->dst_ref);
        p->need_bytes += c->need_bytes;
        p->nconv++;
        json_t *disk = json_pack("{s:s}", "path", c->dst);
        if (!disk || json_array_append_new(disks, disk) < 0)
            return fail(p, e, -ENOMEM, "out of memory");
        if (t->keep_devices) {
            char note[IMPORT_NOTE_MAX];
            int ctl, bus = import_map_disk(d, &ctl, note, sizeof note);
            plan_note(p, "%s", note);
            if (bus == VM_BUS_SCSI && !scsi_set) {
                scsi_set = true; /* the first SCSI disk's controller is the VM's one */
                if (json_object_set_new(p->spec, "scsi_controller",
                                        json_string(vm_scsi_controller_name(ctl))) < 0)
                    return fail(p, e, -ENOMEM, "out of memory");
            } else if (bus == VM_BUS_SCSI &&
                       strcmp(json_string_value(json_object_get(p->spec, "scsi_controller")),
                              vm_scsi_controller_name(ctl)) != 0) {
                plan_note(p,
                          "disk %s: a ferry VM has one SCSI controller, %s, the first SCSI "
                          "disk's: the guest sees this disk there",
                          d->label, json_string_value(json_object_get(p->spec, "scsi_controller")));
            }
            if (bus != VM_BUS_VIRTIO &&
                json_object_set_new(disk, "bus", json_string(vm_disk_bus_name(bus))) < 0)
                return fail(p, e, -ENOMEM, "out of memory");
        }
        if (d->chain)
            plan_note(p, "disk %s: %u snapshot(s) flattened into the current state", d->label,
                      d->chain);
    }
    if (p->need_bytes > t->volume_free_bytes)
        return fail(p, e, FERR_LIMIT,
                    "volume %s has %llu MiB free, the %s disks need %llu MiB: free room on it, "
                    "import to another volume (--to csv:VOLUME)%s",
                    t->volume, (unsigned long long)(t->volume_free_bytes >> 20),
                    t->dynamic ? "dynamic" : "fixed", (unsigned long long)(p->need_bytes >> 20),
                    t->dynamic ? "" : " or make dynamic disks (--disk-type dynamic)");
    return 0;
}

static int plan_nics(const struct import_source *src, const struct import_target *t,
                     struct import_plan *p, json_t *nics, struct ferr *e)
{
    if (src->nnics > VM_MAX_NICS)
        return fail(p, e, FERR_INVALID, "%s: %u NICs: a ferry VM has at most %d", src->file,
                    src->nnics, VM_MAX_NICS);
    for (unsigned i = 0; i < src->nnics; i++) {
        const struct import_src_nic *n = &src->nics[i];
        const char *br = bridge_for(t, n->network);
        if (!br)
            return fail(p, e, FERR_INVALID,
                        "%s: %s is on network \"%s\", which is mapped to no bridge: add "
                        "--network \"%s=BRIDGE\" (or --network BRIDGE for every network)",
                        src->file, n->label, n->network, n->network);
        json_t *nic = json_pack("{s:s}", "bridge", br);
        if (!nic || (n->mac[0] && json_object_set_new(nic, "mac", json_string(n->mac)) < 0) ||
            json_array_append_new(nics, nic) < 0)
            return fail(p, e, -ENOMEM, "out of memory");
        int model = VM_NIC_VIRTIO;
        if (t->keep_devices) {
            char note[IMPORT_NOTE_MAX];
            model = import_map_nic(n->label, n->model, note, sizeof note);
            if (model != VM_NIC_VIRTIO &&
                json_object_set_new(nic, "model", json_string(vm_nic_model_name(model))) < 0)
                return fail(p, e, -ENOMEM, "out of memory");
            if (model != VM_NIC_VMXNET3 &&
                !(model == VM_NIC_E1000 && !strcasecmp(n->model, "e1000")))
                plan_note(p, "%s", note); /* a change of device is worth its own line */
        }
        plan_note(p, "%s (%s%s%s) on \"%s\" -> %s NIC on bridge %s%s", n->label, n->model,
                  n->mac[0] ? ", MAC " : "", n->mac, n->network, vm_nic_model_name(model), br,
                  n->mac[0] ? ", MAC kept" : ", MAC made by ferry");
    }
    return 0;
}

int import_plan_make(const struct import_source *src, const struct import_target *t,
                     struct import_plan *p, struct ferr *e)
{
    memset(p, 0, sizeof *p);
    int rc;
    if (t->name && t->name[0]) {
        copy(p->name, sizeof p->name, t->name);
    } else {
        import_name_from(src->name, p->name);
        if (!p->name[0])
            return fail(p, e, FERR_INVALID,
                        "%s: no VM name can be made from \"%s\": give one with --name", src->file,
                        src->name);
        if (strcmp(p->name, src->name) != 0)
            plan_note(p, "name %s made from \"%s\" (--name sets another)", p->name, src->name);
    }
    if (t->vm_exists && t->vm_exists(p->name, t->data))
        return fail(p, e, FERR_EXISTS,
                    "a VM named %s exists already: import under another name (--name)", p->name);
    unsigned sockets = 0;
    if ((rc = plan_cpu_memory(src, t, p, &sockets, e)) < 0)
        return rc;
    json_t *disks = json_array(), *nics = json_array();
    p->spec = json_pack("{s:s, s:{s:i, s:i, s:i}, s:I, s:o, s:o}", "name", p->name, "cpu",
                        "sockets", (int)sockets, "cores", (int)src->cores_per_socket, "threads", 1,
                        "memory_mib", (json_int_t)src->memory_mib, "disks", disks, "nics", nics);
    if (!p->spec)
        return fail(p, e, -ENOMEM, "out of memory");
    if ((rc = plan_disks(src, t, p, disks, e)) < 0 || (rc = plan_nics(src, t, p, nics, e)) < 0)
        return rc;
    if (strcmp(src->firmware, "efi") == 0) {
        if (json_object_set_new(p->spec, "firmware", json_string("efi")) < 0)
            return fail(p, e, -ENOMEM, "out of memory");
        plan_note(p,
                  "firmware efi -> EFI (OVMF, Debian's ovmf package on every node that runs it); "
                  "VMware's EFI variables are not carried over: they start fresh in "
                  "%s-efivars.fd next to its disks, so the guest boots its disk's removable-media "
                  "loader \\EFI\\BOOT\\BOOTX64.EFI (a guest without one needs its boot entry "
                  "made again: grub-install --removable before the export)",
                  p->name);
    }
    /* the spec's own checks; the disks are made later, so their files are not asked for */
    struct vm_spec_env env = {0};
    if (t->env)
        env = *t->env;
    env.file_exists = NULL;
    struct vm_spec *spec = malloc(sizeof *spec);
    if (!spec)
        return fail(p, e, -ENOMEM, "out of memory");
    rc = vm_spec_from_json(p->spec, &env, spec, e);
    free(spec);
    if (rc < 0) {
        char msg[FERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return fail(p, e, rc, "the VM spec made from %s is refused: %s", src->file, msg);
    }
    if (!t->keep_devices)
        plan_note(p, "devices are mapped to virtio (disks virtio-blk, NICs virtio-net): the guest "
                     "needs virtio drivers (every Linux has them; Windows needs the virtio-win "
                     "drivers installed before the export); --keep-devices keeps VMware's "
                     "vmxnet3, e1000, pvscsi, SATA and IDE devices");
    for (unsigned i = 0; i < src->nnotes; i++)
        plan_note(p, "%s", src->notes[i]);
    return 0;
}

void import_plan_clear(struct import_plan *p)
{
    json_decref(p->spec);
    memset(p, 0, sizeof *p);
}

json_t *import_plan_to_json(const struct import_source *src, const struct import_plan *p)
{
    json_t *disks = json_array(), *notes = json_array();
    for (unsigned i = 0; i < p->nconv && disks; i++) {
        const struct import_conv *c = &p->conv[i];
        const struct import_src_disk *d = &src->disks[i];
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:i}", "label", c->label, "device",
            d->device, "source", c->src, "source_format", d->create_type, "source_bytes",
            (json_int_t)d->file_bytes, "target", c->dst, "target_ref", c->dst_ref, "type",
            c->dynamic ? "dynamic" : "fixed", "size_bytes", (json_int_t)c->size_bytes, "need_bytes",
            (json_int_t)c->need_bytes, "snapshots", (int)d->chain);
        if (o && c->ova_size &&
            (json_object_set_new(o, "ova_offset", json_integer((json_int_t)c->ova_offset)) < 0 ||
             json_object_set_new(o, "ova_size", json_integer((json_int_t)c->ova_size)) < 0)) {
            json_decref(o);
            o = NULL;
        }
        if (json_array_append_new(disks, o) < 0) {
            json_decref(disks);
            disks = NULL;
        }
    }
    for (unsigned i = 0; i < p->nnotes && notes; i++)
        if (json_array_append_new(notes, json_string(p->notes[i])) < 0) {
            json_decref(notes);
            notes = NULL;
        }
    json_t *nics = json_array();
    for (unsigned i = 0; i < src->nnics && nics; i++)
        json_array_append_new(nics, json_pack("{s:s, s:s, s:s, s:s}", "label", src->nics[i].label,
                                              "network", src->nics[i].network, "model",
                                              src->nics[i].model, "mac", src->nics[i].mac));
    if (!disks || !notes || !nics) {
        json_decref(disks);
        json_decref(notes);
        json_decref(nics);
        return NULL;
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:o}, s:O, s:o, s:o, s:I}",
                     "name", p->name, "source", "kind", src->kind, "file", src->file, "name",
                     src->name, "guest_os", src->guest_os, "firmware", src->firmware, "vcpus",
                     (int)src->vcpus, "cores_per_socket", (int)src->cores_per_socket, "memory_mib",
                     (json_int_t)src->memory_mib, "nics", nics, "spec", p->spec, "disks", disks,
                     "notes", notes, "need_bytes", (json_int_t)p->need_bytes);
}
