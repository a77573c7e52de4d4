/* SPDX-License-Identifier: MIT */
/* Reading a VMware machine from its files (load.h). Blocking. */
#include "import/load.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import/manifest.h"
#include "import/ova.h"
#include "import/ovf.h"
#include "import/text.h"
#include "import/vmdk.h"
#include "import/vmx.h"

static int pread_all(int fd, void *buf, size_t len, uint64_t off, const char *name, struct ferr *e)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferr_set(e, -errno, "%s: read: %s", name, strerror(errno));
        if (n == 0)
            return ferr_set(e, FERR_INVALID, "%s: the file ends at byte %llu: it is truncated",
                            name, (unsigned long long)(off + done));
        done += (size_t)n;
    }
    return 0;
}

/* Opens a regular file for reading; *size its length. */
static int open_file(const char *path, int *fd, uint64_t *size, struct ferr *e)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return ferr_set(e, errno == ENOENT ? FERR_NOTFOUND : -errno, "%s: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int rc = ferr_set(e, FERR_INVALID, "%s: not a regular file", path);
        close(*fd);
        return rc;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* The whole file (at most max bytes), NUL-terminated; *buf the caller's to free. */
static int read_small(const char *path, size_t max, char **buf, size_t *len, struct ferr *e)
{
    int fd;
    uint64_t size;
    int rc = open_file(path, &fd, &size, e);
    if (rc < 0)
        return rc;
    if (size > max) {
        close(fd);
        return ferr_set(e, FERR_INVALID, "%s: %llu bytes is too big (at most %zu)", path,
                        (unsigned long long)size, max);
    }
    *buf = malloc(size + 1);
    if (!*buf) {
        close(fd);
        return ferr_set(e, -ENOMEM, "%s: out of memory", path);
    }
    rc = pread_all(fd, *buf, size, 0, path, e);
    close(fd);
    if (rc < 0) {
        free(*buf);
        *buf = NULL;
        return rc;
    }
    (*buf)[size] = 0;
    *len = size;
    return 0;
}

/* dir/rel resolved (realpath) and kept inside dir: no "..", no absolute path, no symlink out. */
static int inside(const char *dir, const char *rel, const char *who, char out[PATH_MAX],
                  struct ferr *e)
{
    char joined[PATH_MAX * 2];
    if (rel[0] == '/') {
        snprintf(joined, sizeof joined, "%s", rel);
    } else {
        if (!text_path_inside(rel))
            return ferr_set(e, FERR_INVALID,
                            "%s: \"%s\" is outside the machine's folder %s: copy the files into "
                            "one folder",
                            who, rel, dir);
        snprintf(joined, sizeof joined, "%s/%s", dir, rel);
    }
    if (!realpath(joined, out))
        return ferr_set(e, errno == ENOENT ? FERR_NOTFOUND : -errno,
                        "%s: %s: %s (a missing extent or disk file)", who, joined, strerror(errno));
    size_t n = strlen(dir);
    if (strncmp(out, dir, n) != 0 || out[n] != '/')
        return ferr_set(e, FERR_INVALID,
                        "%s: \"%s\" is %s, outside the machine's folder %s (a symlink or an "
                        "absolute path): copy the files into one folder",
                        who, rel, out, dir);
    return 0;
}

/* Checks a sparse extent at path of the expected sectors (0: any): header, capacity, length. */
static int check_sparse(const char *path, uint64_t sectors, const char *who, struct ferr *e)
{
    int fd;
    uint64_t size;
    int rc = open_file(path, &fd, &size, e);
    if (rc < 0)
        return rc;
    uint8_t h[VMDK_SPARSE_HEADER_SIZE];
    struct vmdk_sparse s;
    if (size < sizeof h)
        rc = ferr_set(e, FERR_INVALID,
                      "%s: %s has %llu bytes, less than a sparse header: it is "
                      "truncated",
                      who, path, (unsigned long long)size);
    else if ((rc = pread_all(fd, h, sizeof h, 0, path, e)) == 0 &&
             (rc = vmdk_sparse_parse(path, h, size, &s, e)) == 0) {
        if (sectors && s.capacity_sectors != sectors)
            rc = ferr_set(e, FERR_INVALID,
                          "%s: %s holds %llu sectors, the descriptor says %llu: the sizes "
                          "disagree",
                          who, path, (unsigned long long)s.capacity_sectors,
                          (unsigned long long)sectors);
        else if (s.overhead_sectors > size / VMDK_SECTOR)
            rc = ferr_set(e, FERR_INVALID,
                          "%s: %s has %llu bytes, its metadata alone takes %llu: it is "
                          "truncated",
                          who, path, (unsigned long long)size,
                          (unsigned long long)(s.overhead_sectors * VMDK_SECTOR));
    }
    close(fd);
    return rc;
}

/* Reads the descriptor of the VMDK at path (text, or embedded in a sparse file). */
static int read_descriptor(const char *path, struct vmdk_desc *d, bool *embedded,
                           uint64_t *file_size, struct ferr *e)
{
    int fd;
    int rc = open_file(path, &fd, file_size, e);
    if (rc < 0)
        return rc;
    uint8_t h[VMDK_SPARSE_HEADER_SIZE];
    size_t head = *file_size < sizeof h ? (size_t)*file_size : sizeof h;
    char *text = NULL;
    if ((rc = pread_all(fd, h, head, 0, path, e)) < 0)
        goto err_after_open;
    *embedded = vmdk_is_sparse(h, head);
    if (*embedded) {
        struct vmdk_sparse s;
        if (head < sizeof h) {
            rc = ferr_set(e, FERR_INVALID, "%s: a sparse header cut short: it is truncated", path);
            goto err_after_open;
        }
        if ((rc = vmdk_sparse_parse(path, h, *file_size, &s, e)) < 0)
            goto err_after_open;
        if (!s.desc_sectors) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: a sparse extent without a descriptor: import the .vmdk that "
                          "describes the disk, not its extent",
                          path);
            goto err_after_open;
        }
        size_t n = (size_t)(s.desc_sectors * VMDK_SECTOR);
        if (!(text = malloc(n + 1))) {
            rc = ferr_set(e, -ENOMEM, "out of memory");
            goto err_after_open;
        }
        if ((rc = pread_all(fd, text, n, s.desc_offset * VMDK_SECTOR, path, e)) < 0)
            goto err_after_text;
        if (s.overhead_sectors > *file_size / VMDK_SECTOR) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: %llu bytes, its metadata alone takes %llu: it is truncated", path,
                          (unsigned long long)*file_size,
                          (unsigned long long)(s.overhead_sectors * VMDK_SECTOR));
            goto err_after_text;
        }
        rc = vmdk_desc_parse(path, text, n, d, e);
        if (rc == 0 && d->capacity_sectors != s.capacity_sectors)
            rc = ferr_set(e, FERR_INVALID,
                          "%s: the descriptor says %llu sectors, the header %llu: the sizes "
                          "disagree",
                          path, (unsigned long long)d->capacity_sectors,
                          (unsigned long long)s.capacity_sectors);
    } else {
        if (*file_size > VMDK_MAX_DESCRIPTOR) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: %llu bytes and no sparse header: this is a raw extent, not a VMDK "
                          "descriptor; import the .vmdk that describes it",
                          path, (unsigned long long)*file_size);
            goto err_after_open;
        }
        size_t n = (size_t)*file_size;
        if (!(text = malloc(n + 1))) {
            rc = ferr_set(e, -ENOMEM, "out of memory");
            goto err_after_open;
        }
        if ((rc = pread_all(fd, text, n, 0, path, e)) == 0)
            rc = vmdk_desc_parse(path, text, n, d, e);
    }
err_after_text:
    free(text);
err_after_open:
    close(fd);
    return rc;
}

/* Loads the disk whose descriptor is dir/rel into disk (path, create type, sizes, chain). */
static int load_vmdk(const char *dir, const char *rel, const char *who, unsigned depth,
                     struct import_src_disk *disk, struct ferr *e)
{
    char path[PATH_MAX];
    int rc = inside(dir, rel, who, path, e);
    if (rc < 0)
        return rc;
    struct vmdk_desc *d = malloc(sizeof *d);
    if (!d)
        return ferr_set(e, -ENOMEM, "out of memory");
    bool embedded;
    uint64_t size;
    if ((rc = read_descriptor(path, d, &embedded, &size, e)) < 0)
        goto err_after_desc;
    if (depth == 0) {
        if (strlen(path) >= sizeof disk->path) {
            rc = ferr_set(e, FERR_INVALID, "%s: a path longer than %zu bytes", who,
                          sizeof disk->path - 1);
            goto err_after_desc;
        }
        memcpy(disk->path, path, strlen(path) + 1);
        snprintf(disk->create_type, sizeof disk->create_type, "%s", d->create_type);
        disk->virtual_bytes = d->capacity_sectors * VMDK_SECTOR;
    } else if (d->capacity_sectors * VMDK_SECTOR != disk->virtual_bytes) {
        rc = ferr_set(e, FERR_INVALID,
                      "%s: parent %s holds %llu bytes, its child %llu: the chain is broken", who,
                      path, (unsigned long long)(d->capacity_sectors * VMDK_SECTOR),
                      (unsigned long long)disk->virtual_bytes);
        goto err_after_desc;
    }
    disk->file_bytes += size;
    for (unsigned i = 0; i < d->nextents && !embedded; i++) {
        const struct vmdk_extent *x = &d->extents[i];
        char xwho[PATH_MAX + 32], xpath[PATH_MAX];
        snprintf(xwho, sizeof xwho, "%s:%u", path, x->line);
        if (x->type == VMDK_EXTENT_ZERO)
            continue;
        if ((rc = inside(dir, x->file, xwho, xpath, e)) < 0)
            goto err_after_desc;
        struct stat st;
        if (stat(xpath, &st) < 0 || !S_ISREG(st.st_mode)) {
            rc = ferr_set(e, FERR_INVALID, "%s: extent %s is not a regular file", xwho, xpath);
            goto err_after_desc;
        }
        disk->file_bytes += (uint64_t)st.st_size;
        if (x->type == VMDK_EXTENT_FLAT || x->type == VMDK_EXTENT_VMFS) {
            uint64_t need = (x->offset + x->sectors) * VMDK_SECTOR;
            if ((uint64_t)st.st_size < need) {
                rc =
                    ferr_set(e, FERR_INVALID,
                             "%s: extent %s has %llu bytes, the descriptor says it holds %llu: "
                             "it is truncated (or the sizes disagree)",
                             xwho, xpath, (unsigned long long)st.st_size, (unsigned long long)need);
                goto err_after_desc;
            }
        } else if (x->type == VMDK_EXTENT_SPARSE) {
            if ((rc = check_sparse(xpath, x->sectors, xwho, e)) < 0)
                goto err_after_desc;
        } else if (st.st_size == 0) {
            rc = ferr_set(e, FERR_INVALID, "%s: extent %s is empty: it is truncated", xwho, xpath);
            goto err_after_desc;
        }
    }
    if (d->parent_hint[0]) {
        char pwho[PATH_MAX + 32];
        snprintf(pwho, sizeof pwho, "%s:%u", path, d->parent_line);
        if (depth + 1 >= IMPORT_MAX_CHAIN) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: more than %d snapshots: consolidate them in "
                          "VMware first",
                          pwho, IMPORT_MAX_CHAIN);
            goto err_after_desc;
        }
        disk->chain++;
        rc = load_vmdk(dir, d->parent_hint, pwho, depth + 1, disk, e);
    }
err_after_desc:
    free(d);
    return rc;
}

static void dir_of(const char *path, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
}

static int load_vmx(const char *path, const char *dir, struct import_source *out, struct ferr *e)
{
    char *text;
    size_t len;
    int rc = read_small(path, VMX_MAX_SIZE, &text, &len, e);
    if (rc < 0)
        return rc;
    struct vmx *v = malloc(sizeof *v);
    if (!v) {
        free(text);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    if ((rc = vmx_parse(path, text, len, v, e)) == 0 &&
        (rc = import_source_from_vmx(v, path, out, e)) == 0) {
        for (unsigned i = 0; i < out->ndisks && rc == 0; i++) {
            char who[PATH_MAX + 32];
            snprintf(who, sizeof who, "%s:%u", path, out->disks[i].line);
            rc = load_vmdk(dir, out->disks[i].file, who, 0, &out->disks[i], e);
        }
    }
    free(v);
    free(text);
    return rc;
}

/* Hashes len bytes of fd at off into h. */
static int hash_range(int fd, uint64_t off, uint64_t len, struct mf_hash *h, const char *name,
                      struct ferr *e)
{
    size_t cap = 1u << 20;
    char *buf = malloc(cap);
    if (!buf)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t n = len < cap ? (size_t)len : cap;
        if ((rc = pread_all(fd, buf, n, off, name, e)) == 0) {
            mf_hash_update(h, buf, n);
            off += n;
            len -= n;
        }
    }
    free(buf);
    return rc;
}

/* Checks one manifest entry against len bytes of fd at off. */
static int verify_entry(const struct mf_entry *en, int fd, uint64_t off, uint64_t len,
                        const char *name, const char *mf_name, struct ferr *e)
{
    struct mf_hash *h;
    int rc = mf_hash_new(en, &h, e);
    if (rc < 0)
        return rc;
    if ((rc = hash_range(fd, off, len, h, name, e)) < 0) {
        struct ferr ignored;
        (void)mf_hash_finish(h, mf_name, &ignored); /* frees h */
        return rc;
    }
    return mf_hash_finish(h, mf_name, e);
}

/* A preview that did not read the files for their digests says so. */
static void skipped_note(struct import_source *out, unsigned n)
{
    if (out->nnotes < IMPORT_MAX_NOTES)
        snprintf(out->notes[out->nnotes++], IMPORT_NOTE_MAX,
                 "the manifest's %u digest(s) are checked when the import runs, before any "
                 "conversion (not in this preview)",
                 n);
}

static int load_ovf(const char *path, const char *dir, bool digests, struct import_source *out,
                    struct ferr *e)
{
    char *text = NULL, *mf_text = NULL;
    size_t len, mf_len;
    struct ovf *o = malloc(sizeof *o);
    struct mf *m = malloc(sizeof *m);
    int rc;
    if (!o || !m) {
        rc = ferr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = read_small(path, OVF_MAX_SIZE, &text, &len, e)) < 0 ||
        (rc = ovf_parse(path, text, len, o, e)) < 0 ||
        (rc = import_source_from_ovf(o, path, "ovf", out, e)) < 0)
        goto out;
    /* the manifest beside it: NAME.mf */
    char mf_path[PATH_MAX];
    snprintf(mf_path, sizeof mf_path, "%.*s.mf", (int)(strlen(path) - 4), path);
    m->n = 0;
    if (access(mf_path, F_OK) == 0) {
        if ((rc = read_small(mf_path, MF_MAX_SIZE, &mf_text, &mf_len, e)) < 0 ||
            (rc = mf_parse(mf_path, mf_text, mf_len, m, e)) < 0)
            goto out;
        for (unsigned i = 0; i < m->n; i++) {
            char fpath[PATH_MAX];
            int fd;
            uint64_t size;
            if ((rc = inside(dir, m->entries[i].file, mf_path, fpath, e)) < 0 ||
                (rc = open_file(fpath, &fd, &size, e)) < 0)
                goto out;
            rc = digests ? verify_entry(&m->entries[i], fd, 0, size, fpath, mf_path, e) : 0;
            close(fd);
            if (rc < 0)
                goto out;
        }
        if (!digests)
            skipped_note(out, m->n);
    } else {
        snprintf(out->notes[out->nnotes < IMPORT_MAX_NOTES ? out->nnotes++ : out->nnotes - 1],
                 IMPORT_NOTE_MAX, "no manifest (%.180s): the files' checksums are not checked",
                 mf_path);
    }
    for (unsigned i = 0; i < out->ndisks; i++) {
        struct import_src_disk *d = &out->disks[i];
        uint64_t ovf_bytes = d->virtual_bytes;
        char who[PATH_MAX + 32];
        snprintf(who, sizeof who, "%s: disk %s", path, d->label);
        d->virtual_bytes = 0;
        if ((rc = load_vmdk(dir, d->file, who, 0, d, e)) < 0)
            goto out;
        for (unsigned k = 0; k < o->nfiles; k++) {
            struct stat st;
            if (strcmp(o->files[k].href, d->file) == 0 && o->files[k].has_size &&
                stat(d->path, &st) == 0 && (uint64_t)st.st_size != o->files[k].size) {
                rc = ferr_set(e, FERR_INVALID,
                              "%s: File %s: ovf:size says %llu bytes, the file has %llu: the "
                              "sizes disagree (a truncated copy?)",
                              path, d->file, (unsigned long long)o->files[k].size,
                              (unsigned long long)st.st_size);
                goto out;
            }
        }
        if (d->virtual_bytes != ovf_bytes) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: disk %s: ovf:capacity says %llu bytes, %s holds %llu: the sizes "
                          "disagree",
                          path, d->label, (unsigned long long)ovf_bytes, d->file,
                          (unsigned long long)d->virtual_bytes);
            goto out;
        }
    }
out:
    free(text);
    free(mf_text);
    free(o);
    free(m);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

struct ova_file {
    int fd;
    const char *name;
};

static int ova_rd(void *ctx, uint64_t off, void *buf, size_t len, struct ferr *e)
{
    const struct ova_file *f = ctx;
    return pread_all(f->fd, buf, len, off, f->name, e);
}

/* A member of the OVA, read whole (small ones: the OVF, the manifest). */
static int ova_member_text(int fd, const char *ova, const struct ova_member *mem, size_t max,
                           char **buf, struct ferr *e)
{
    if (mem->size > max)
        return ferr_set(e, FERR_INVALID, "%s: member %s: %llu bytes is too big (at most %zu)", ova,
                        mem->name, (unsigned long long)mem->size, max);
    if (!(*buf = malloc(mem->size + 1)))
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = pread_all(fd, *buf, mem->size, mem->offset, ova, e);
    if (rc < 0) {
        free(*buf);
        *buf = NULL;
        return rc;
    }
    (*buf)[mem->size] = 0;
    return 0;
}

/* A disk inside the OVA: a single-file sparse VMDK whose descriptor it embeds. */
static int ova_disk(int fd, const char *ova, const struct ova_member *mem,
                    struct import_src_disk *d, struct ferr *e)
{
    char who[PATH_MAX + 300];
    snprintf(who, sizeof who, "%s: member %s", ova, mem->name);
    uint8_t h[VMDK_SPARSE_HEADER_SIZE];
    struct vmdk_sparse s;
    int rc;
    if (mem->size < sizeof h || (rc = pread_all(fd, h, sizeof h, mem->offset, ova, e)) < 0 ||
        !vmdk_is_sparse(h, sizeof h))
        return ferr_set(e, FERR_INVALID,
                        "%s: not a sparse VMDK (streamOptimized or monolithicSparse): an OVA's "
                        "disk must be one file",
                        who);
    if ((rc = vmdk_sparse_parse(who, h, mem->size, &s, e)) < 0)
        return rc;
    if (!s.desc_sectors)
        return ferr_set(e, FERR_INVALID, "%s: a sparse extent without a descriptor", who);
    size_t n = (size_t)(s.desc_sectors * VMDK_SECTOR);
    char *text = malloc(n + 1);
    struct vmdk_desc *desc = malloc(sizeof *desc);
    if (!text || !desc) {
        free(text);
        free(desc);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    if ((rc = pread_all(fd, text, n, mem->offset + s.desc_offset * VMDK_SECTOR, ova, e)) == 0 &&
        (rc = vmdk_desc_parse(who, text, n, desc, e)) == 0) {
        if (s.overhead_sectors > mem->size / VMDK_SECTOR)
            rc = ferr_set(e, FERR_INVALID,
                          "%s: %llu bytes, its metadata alone takes %llu: it is "
                          "truncated",
                          who, (unsigned long long)mem->size,
                          (unsigned long long)(s.overhead_sectors * VMDK_SECTOR));
        else if (desc->parent_hint[0])
            rc =
                ferr_set(e, FERR_INVALID, "%s: a snapshot (parentFileNameHint) inside an OVA", who);
        else if (desc->capacity_sectors != s.capacity_sectors)
            rc = ferr_set(e, FERR_INVALID,
                          "%s: the descriptor says %llu sectors, the header %llu: the sizes "
                          "disagree",
                          who, (unsigned long long)desc->capacity_sectors,
                          (unsigned long long)s.capacity_sectors);
        else {
            snprintf(d->path, sizeof d->path, "%s", ova);
            snprintf(d->create_type, sizeof d->create_type, "%s", desc->create_type);
            d->ova_offset = mem->offset;
            d->ova_size = mem->size;
            d->file_bytes = mem->size;
        }
    }
    free(text);
    free(desc);
    return rc;
}

static int load_ova(const char *path, bool digests, struct import_source *out, struct ferr *e)
{
    struct ova_file f = {.name = path};
    uint64_t size;
    int rc = open_file(path, &f.fd, &size, e);
    if (rc < 0)
        return rc;
    struct ova_index *idx = malloc(sizeof *idx);
    struct ovf *o = malloc(sizeof *o);
    struct mf *m = malloc(sizeof *m);
    char *text = NULL, *mf_text = NULL;
    if (!idx || !o || !m) {
        rc = ferr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = ova_index_read(path, size, ova_rd, &f, idx, e)) < 0)
        goto out;
    const struct ova_member *ovf_m = NULL, *mf_m = NULL;
    for (unsigned i = 0; i < idx->n; i++) {
        if (!ovf_m && ends_with(idx->members[i].name, ".ovf"))
            ovf_m = &idx->members[i];
        if (!mf_m && ends_with(idx->members[i].name, ".mf"))
            mf_m = &idx->members[i];
    }
    if (!ovf_m) {
        rc = ferr_set(e, FERR_INVALID, "%s: the archive holds no .ovf descriptor: this is no OVA",
                      path);
        goto out;
    }
    char ovf_name[PATH_MAX + OVA_NAME_MAX + 4];
    snprintf(ovf_name, sizeof ovf_name, "%s/%s", path, ovf_m->name);
    if ((rc = ova_member_text(f.fd, path, ovf_m, OVF_MAX_SIZE, &text, e)) < 0 ||
        (rc = ovf_parse(ovf_name, text, ovf_m->size, o, e)) < 0 ||
        (rc = import_source_from_ovf(o, path, "ova", out, e)) < 0)
        goto out;
    if (mf_m) {
        char mf_name[PATH_MAX + OVA_NAME_MAX + 4];
        snprintf(mf_name, sizeof mf_name, "%s/%s", path, mf_m->name);
        if ((rc = ova_member_text(f.fd, path, mf_m, MF_MAX_SIZE, &mf_text, e)) < 0 ||
            (rc = mf_parse(mf_name, mf_text, mf_m->size, m, e)) < 0)
            goto out;
        for (unsigned i = 0; i < m->n; i++) {
            const struct ova_member *mem = ova_find(idx, m->entries[i].file);
            if (!mem) {
                rc = ferr_set(e, FERR_INVALID, "%s:%u: %s is not in the archive", mf_name,
                              m->entries[i].line, m->entries[i].file);
                goto out;
            }
            if (digests && (rc = verify_entry(&m->entries[i], f.fd, mem->offset, mem->size, path,
                                              mf_name, e)) < 0)
                goto out;
        }
        if (!digests)
            skipped_note(out, m->n);
    } else if (out->nnotes < IMPORT_MAX_NOTES) {
        snprintf(out->notes[out->nnotes++], IMPORT_NOTE_MAX,
                 "the OVA has no manifest: the files' checksums are not checked");
    }
    for (unsigned i = 0; i < out->ndisks; i++) {
        struct import_src_disk *d = &out->disks[i];
        const struct ova_member *mem = ova_find(idx, d->file);
        if (!mem) {
            rc = ferr_set(e, FERR_INVALID, "%s: disk %s: file %s is not in the archive", ovf_name,
                          d->label, d->file);
            goto out;
        }
        for (unsigned k = 0; k < o->nfiles; k++)
            if (strcmp(o->files[k].href, d->file) == 0 && o->files[k].has_size &&
                o->files[k].size != mem->size) {
                rc = ferr_set(e, FERR_INVALID,
                              "%s: File %s: ovf:size says %llu bytes, the archive holds %llu: "
                              "the sizes disagree",
                              ovf_name, d->file, (unsigned long long)o->files[k].size,
                              (unsigned long long)mem->size);
                goto out;
            }
        uint64_t ovf_bytes = d->virtual_bytes;
        if ((rc = ova_disk(f.fd, path, mem, d, e)) < 0)
            goto out;
        /* the capacity is the sparse header's; the OVF must agree */
        uint8_t h[VMDK_SPARSE_HEADER_SIZE];
        struct vmdk_sparse s;
        if ((rc = pread_all(f.fd, h, sizeof h, mem->offset, path, e)) < 0 ||
            (rc = vmdk_sparse_parse(path, h, mem->size, &s, e)) < 0)
            goto out;
        d->virtual_bytes = s.capacity_sectors * VMDK_SECTOR;
        if (d->virtual_bytes != ovf_bytes) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: disk %s: ovf:capacity says %llu bytes, %s holds %llu: the sizes "
                          "disagree",
                          ovf_name, d->label, (unsigned long long)ovf_bytes, d->file,
                          (unsigned long long)d->virtual_bytes);
            goto out;
        }
    }
out:
    free(text);
    free(mf_text);
    free(idx);
    free(o);
    free(m);
    close(f.fd);
    return rc;
}

int import_load(const char *path, bool digests, struct import_source *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    if (path[0] != '/')
        return ferr_set(e, FERR_INVALID, "%s: expected an absolute path", path);
    char real[PATH_MAX], dir[PATH_MAX];
    if (!realpath(path, real))
        return ferr_set(e, errno == ENOENT ? FERR_NOTFOUND : -errno, "%s: %s", path,
                        strerror(errno));
    if (strlen(real) >= VM_PATH_MAX)
        return ferr_set(e, FERR_INVALID, "%s: a path longer than %d bytes", path, VM_PATH_MAX - 1);
    dir_of(real, dir, sizeof dir);
    int rc;
    if (ends_with(real, ".vmx"))
        rc = load_vmx(real, dir, out, e);
    else if (ends_with(real, ".ovf"))
        rc = load_ovf(real, dir, digests, out, e);
    else if (ends_with(real, ".ova"))
        rc = load_ova(real, digests, out, e);
    else
        rc = ferr_set(e, FERR_INVALID,
                      "%s: expected a .vmx, .ovf or .ova file (VMware Workstation's or ESXi's "
                      "machine folder, or an exported OVF package)",
                      path);
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}
