/* SPDX-License-Identifier: MIT */
/* VMDK descriptors and sparse headers (vmdk.h), after VMware's Virtual Disk Format 5.0. */
#include "import/vmdk.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "import/text.h"

/* The create types ferry reads: which extents each takes and how many. */
static const struct ctype {
    const char *name;
    bool sparse;
    enum vmdk_extent_type ext;
    bool single; /* one extent only */
} ctypes[] = {
    {"monolithicSparse", true, VMDK_EXTENT_SPARSE, true},
    {"twoGbMaxExtentSparse", true, VMDK_EXTENT_SPARSE, false},
    {"streamOptimized", true, VMDK_EXTENT_SPARSE, true},
    {"monolithicFlat", false, VMDK_EXTENT_FLAT, false},
    {"twoGbMaxExtentFlat", false, VMDK_EXTENT_FLAT, false},
    {"vmfs", false, VMDK_EXTENT_VMFS, false},
    {"vmfsThin", false, VMDK_EXTENT_VMFS, false},
    {"vmfsPreallocated", false, VMDK_EXTENT_VMFS, false},
    {"vmfsEagerZeroedThick", false, VMDK_EXTENT_VMFS, false},
    {"vmfsSparse", true, VMDK_EXTENT_VMFSSPARSE, false},
    {"seSparse", true, VMDK_EXTENT_SESPARSE, false},
};

static const char *const ext_names[] = {
    [VMDK_EXTENT_FLAT] = "FLAT",
    [VMDK_EXTENT_SPARSE] = "SPARSE",
    [VMDK_EXTENT_ZERO] = "ZERO",
    [VMDK_EXTENT_VMFS] = "VMFS",
    [VMDK_EXTENT_VMFSSPARSE] = "VMFSSPARSE",
    [VMDK_EXTENT_SESPARSE] = "SESPARSE",
};

/* Next whitespace-separated word of [*s, end), quotes kept out; -1 at a missing quote. */
static int word(const char **s, const char *end, char *out, size_t cap, bool *quoted)
{
    const char *p = *s;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    size_t n = 0;
    *quoted = false;
    if (p < end && *p == '"') {
        *quoted = true;
        p++;
        while (p < end && *p != '"') {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p++;
        }
        if (p == end)
            return -1;
        p++;
    } else {
        while (p < end && *p != ' ' && *p != '\t') {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    *s = p;
    return 0;
}

static int parse_extent(const char *name, const char *s, const char *end, unsigned line,
                        struct vmdk_desc *d, struct ferr *e)
{
    char w[VMDK_PATH_MAX];
    bool q;
    if (d->nextents == VMDK_MAX_EXTENTS)
        return text_bad(e, name, line, "more than %d extents", VMDK_MAX_EXTENTS);
    struct vmdk_extent *x = &d->extents[d->nextents];
    memset(x, 0, sizeof *x);
    x->line = line;
    word(&s, end, w, sizeof w, &q);
    if (strcmp(w, "RW") == 0)
        x->readonly = false;
    else if (strcmp(w, "RDONLY") == 0)
        x->readonly = true;
    else if (strcmp(w, "NOACCESS") == 0)
        return text_bad(e, name, line, "a NOACCESS extent: the disk is not readable as a whole");
    else
        return text_bad(e, name, line, "extent access \"%.20s\" is none of RW, RDONLY", w);
    if (word(&s, end, w, 32, &q) < 0 || text_parse_u64(w, 10, &x->sectors) < 0 || x->sectors == 0 ||
        x->sectors > (1ull << 40))
        return text_bad(e, name, line,
                        "extent size \"%.32s\" is not a number of sectors in 1..2^40", w);
    if (word(&s, end, w, 32, &q) < 0 || !w[0])
        return text_bad(e, name, line, "extent type missing");
    int t = -1;
    for (int i = 0; i < (int)(sizeof ext_names / sizeof ext_names[0]); i++)
        if (strcmp(w, ext_names[i]) == 0)
            t = i;
    if (t < 0)
        return text_bad(e, name, line,
                        "extent type \"%.20s\" cannot be imported (FLAT, SPARSE, ZERO, VMFS, "
                        "VMFSSPARSE, SESPARSE can; raw device mappings cannot)",
                        w);
    x->type = (enum vmdk_extent_type)t;
    if (x->type != VMDK_EXTENT_ZERO) {
        if (word(&s, end, x->file, sizeof x->file, &q) < 0 || !q)
            return text_bad(e, name, line, "extent file name missing or not in double quotes");
        if (!text_path_inside(x->file))
            return text_bad(e, name, line,
                            "extent \"%.200s\" is outside the disk's folder (absolute, \"..\" or "
                            "backslash): copy the files into one folder",
                            x->file);
    }
    if (x->type == VMDK_EXTENT_FLAT || x->type == VMDK_EXTENT_VMFS) {
        if (word(&s, end, w, 32, &q) < 0)
            return text_bad(e, name, line, "bad extent offset");
        if (w[0] && (text_parse_u64(w, 10, &x->offset) < 0 || x->offset > (1ull << 40)))
            return text_bad(e, name, line, "extent offset \"%.32s\" is not a number of sectors", w);
    }
    if (word(&s, end, w, 32, &q) < 0 || w[0])
        return text_bad(e, name, line, "text after the extent");
    if (x->sectors > (1ull << 41) - d->capacity_sectors)
        return text_bad(e, name, line, "the extents add up to more than 1 PiB");
    d->capacity_sectors += x->sectors;
    d->nextents++;
    return 0;
}

/* key=value (value quoted or not) into k, v. */
static int parse_kv(const char *name, const char *s, const char *end, unsigned line, char *k,
                    size_t kcap, char *v, size_t vcap, struct ferr *e)
{
    size_t n = 0;
    while (s < end && (isalnum((unsigned char)*s) || *s == '.' || *s == '_')) {
        if (n + 1 >= kcap)
            return text_bad(e, name, line, "key too long");
        k[n++] = *s++;
    }
    k[n] = 0;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (n == 0 || s == end || *s != '=')
        return text_bad(e, name, line, "expected key=value or an extent (RW ...), found \"%.*s\"",
                        (int)(end - s > 40 ? 40 : end - s), s);
    s++;
    bool q;
    if (word(&s, end, v, vcap, &q) < 0)
        return text_bad(e, name, line, "the value of %s is too long or has no closing quote", k);
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s < end && *s != '#')
        return text_bad(e, name, line, "text after the value of %s", k);
    return 0;
}

int vmdk_desc_parse(const char *name, const char *text, size_t len, struct vmdk_desc *d,
                    struct ferr *e)
{
    memset(d, 0, sizeof *d);
    d->parent_cid = 0xffffffffu;
    if (len > VMDK_MAX_DESCRIPTOR)
        return ferr_set(e, FERR_INVALID, "%s: a descriptor of %zu bytes is too big (at most %u)",
                        name, len, VMDK_MAX_DESCRIPTOR);
    const char *nul = memchr(text, 0, len);
    const char *p = text, *end = nul ? nul : text + len;
    unsigned line = 1;
    uint64_t version = 0;
    int rc;
    char k[64], v[VMDK_PATH_MAX];
    const struct ctype *ct = NULL;
    unsigned ct_line = 0;
    bool has_cid = false, has_parent_cid = false;
    for (; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end, *s = p;
        p = nl ? nl + 1 : end;
        while (s < eol && (*s == ' ' || *s == '\t'))
            s++;
        while (eol > s && (eol[-1] == '\r' || eol[-1] == ' ' || eol[-1] == '\t'))
            eol--;
        if (s == eol || *s == '#')
            continue;
        for (const char *c = s; c < eol; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t')
                return text_bad(e, name, line, "a control character: this is no VMDK descriptor");
        if ((eol - s > 3 && (memcmp(s, "RW ", 3) == 0 || memcmp(s, "RW\t", 3) == 0)) ||
            (eol - s > 7 && memcmp(s, "RDONLY", 6) == 0 && isspace((unsigned char)s[6])) ||
            (eol - s > 9 && memcmp(s, "NOACCESS", 8) == 0 && isspace((unsigned char)s[8]))) {
            if ((rc = parse_extent(name, s, eol, line, d, e)) < 0)
                return rc;
            continue;
        }
        if ((rc = parse_kv(name, s, eol, line, k, sizeof k, v, sizeof v, e)) < 0)
            return rc;
        uint64_t n;
        if (strcmp(k, "version") == 0) {
            if (text_parse_u64(v, 10, &version) < 0 || version < 1 || version > 3)
                return text_bad(e, name, line, "version \"%.20s\" is not 1, 2 or 3", v);
        } else if (strcmp(k, "CID") == 0 || strcmp(k, "parentCID") == 0) {
            if (text_parse_u64(v, 16, &n) < 0 || n > 0xffffffffu)
                return text_bad(e, name, line, "%s \"%.20s\" is not 8 hex digits", k, v);
            *(k[0] == 'C' ? &d->cid : &d->parent_cid) = (uint32_t)n;
            *(k[0] == 'C' ? &has_cid : &has_parent_cid) = true;
        } else if (strcmp(k, "createType") == 0) {
            ct = NULL;
            for (size_t i = 0; i < sizeof ctypes / sizeof ctypes[0]; i++)
                if (strcmp(v, ctypes[i].name) == 0)
                    ct = &ctypes[i];
            if (!ct)
                return text_bad(e, name, line,
                                "createType \"%.40s\" cannot be imported (monolithicSparse, "
                                "twoGbMaxExtentSparse, streamOptimized, monolithicFlat, "
                                "twoGbMaxExtentFlat, vmfs, vmfsThin, vmfsSparse, seSparse can)",
                                v);
            snprintf(d->create_type, sizeof d->create_type, "%s", ct->name);
            d->sparse = ct->sparse;
            ct_line = line;
        } else if (strcmp(k, "parentFileNameHint") == 0) {
            if (!text_path_inside(v))
                return text_bad(e, name, line,
                                "parentFileNameHint \"%.200s\" is outside the disk's folder "
                                "(absolute, \"..\" or backslash): copy the chain into one folder",
                                v);
            snprintf(d->parent_hint, sizeof d->parent_hint, "%s", v);
            d->parent_line = line;
        } else if (strcmp(k, "ddb.adapterType") == 0) {
            if (strlen(v) >= sizeof d->adapter)
                return text_bad(e, name, line, "ddb.adapterType \"%.40s\" is too long", v);
            strcpy(d->adapter, v);
        }
    }
    if (!ct)
        return ferr_set(e, FERR_INVALID, "%s: no createType: this is no VMDK descriptor", name);
    if (d->nextents == 0)
        return ferr_set(e, FERR_INVALID, "%s: the descriptor lists no extents", name);
    if (ct->single && d->nextents != 1)
        return text_bad(e, name, ct_line, "a %s disk has one extent, this one %u", ct->name,
                        d->nextents);
    for (unsigned i = 0; i < d->nextents; i++) {
        const struct vmdk_extent *x = &d->extents[i];
        if (x->type != ct->ext && x->type != VMDK_EXTENT_ZERO)
            return text_bad(e, name, x->line, "a %s extent in a %s disk", ext_names[x->type],
                            ct->name);
    }
    if (d->parent_cid != 0xffffffffu && !d->parent_hint[0])
        return ferr_set(e, FERR_INVALID,
                        "%s: parentCID says the disk has a parent but parentFileNameHint is "
                        "missing",
                        name);
    if (d->parent_cid == 0xffffffffu && d->parent_hint[0])
        return text_bad(e, name, d->parent_line,
                        "parentFileNameHint without a parentCID: set parentCID or remove the hint");
    /* VMware writes both in every descriptor, and qemu-img (which converts the disk) refuses
     * one without them ("Invalid argument"): refused here, where the message can say why. */
    if (!has_cid || !has_parent_cid)
        return ferr_set(e, FERR_INVALID,
                        "%s: the descriptor has no %s line (every VMDK descriptor has CID and "
                        "parentCID; add \"%s\")",
                        name, has_cid ? "parentCID" : "CID",
                        has_cid ? "parentCID=ffffffff" : "CID=fffffffe");
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

bool vmdk_is_sparse(const uint8_t *hdr, size_t len)
{
    return len >= 4 && memcmp(hdr, "KDMV", 4) == 0;
}

int vmdk_sparse_parse(const char *name, const uint8_t hdr[VMDK_SPARSE_HEADER_SIZE],
                      uint64_t file_size, struct vmdk_sparse *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    if (memcmp(hdr, "KDMV", 4) != 0)
        return ferr_set(e, FERR_INVALID, "%s: no sparse extent header (magic KDMV)", name);
    out->version = le32(hdr + 4);
    out->flags = le32(hdr + 8);
    out->capacity_sectors = le64(hdr + 12);
    out->grain_sectors = le64(hdr + 20);
    out->desc_offset = le64(hdr + 28);
    out->desc_sectors = le64(hdr + 36);
    out->overhead_sectors = le64(hdr + 64);
    uint16_t compress = (uint16_t)(hdr[77] | hdr[78] << 8);
    if (out->version < 1 || out->version > 3)
        return ferr_set(e, FERR_INVALID, "%s: sparse header version %u is not 1..3", name,
                        out->version);
    if (out->grain_sectors < 8 || out->grain_sectors > (1u << 20) ||
        (out->grain_sectors & (out->grain_sectors - 1)))
        return ferr_set(e, FERR_INVALID,
                        "%s: grain size %llu sectors is not a power of two in 8..2^20", name,
                        (unsigned long long)out->grain_sectors);
    if (out->capacity_sectors == 0 || out->capacity_sectors > (1ull << 41))
        return ferr_set(e, FERR_INVALID, "%s: capacity %llu sectors is not in 1..2^41", name,
                        (unsigned long long)out->capacity_sectors);
    if (compress > 1)
        return ferr_set(e, FERR_INVALID, "%s: compression algorithm %u is unknown (1: deflate)",
                        name, compress);
    out->compressed = compress == 1;
    if (out->desc_offset || out->desc_sectors) {
        uint64_t limit = file_size / VMDK_SECTOR;
        if (out->desc_offset == 0 || out->desc_sectors == 0 ||
            out->desc_sectors > VMDK_MAX_DESCRIPTOR / VMDK_SECTOR || out->desc_offset > limit ||
            out->desc_sectors > limit - out->desc_offset)
            return ferr_set(e, FERR_INVALID,
                            "%s: the embedded descriptor (sector %llu, %llu sectors) is not "
                            "inside the file of %llu bytes: the file is truncated or damaged",
                            name, (unsigned long long)out->desc_offset,
                            (unsigned long long)out->desc_sectors, (unsigned long long)file_size);
    }
    return 0;
}
