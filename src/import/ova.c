/* SPDX-License-Identifier: MIT */
/* OVA archives (ova.h), after POSIX.1-2001's ustar and pax formats and GNU tar's extensions. */
#include "import/ova.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/text.h"

#define PAX_MAX (64u * 1024) /* an extended header or long name larger than this is no OVA's */

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* An octal field (NUL or space terminated, leading spaces) or GNU's base-256 (high bit). */
static int number(const uint8_t *f, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return -1; /* negative or more than 56 bits */
        for (size_t i = 1; i < n; i++) {
            if (v >> 56)
                return -1;
            v = v << 8 | f[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    if (digits == 0)
        return -1;
    for (; i < n; i++)
        if (f[i] != 0 && f[i] != ' ')
            return -1;
    *out = v;
    return 0;
}

static int checksum_ok(const uint8_t *h)
{
    uint64_t want;
    if (number(h + 148, 8, &want) < 0)
        return 0;
    uint64_t u = 0;
    int64_t s = 0;
    for (int i = 0; i < 512; i++) {
        uint8_t c = i >= 148 && i < 156 ? ' ' : h[i];
        u += c;
        s += (int8_t)c; /* some old tars summed signed chars */
    }
    return u == want || (uint64_t)s == want;
}

/* pax records "LEN key=value\n": path and size. */
static int pax_parse(const char *d, size_t n, char *path, size_t pcap, uint64_t *size,
                     bool *has_size)
{
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && d[j] >= '0' && d[j] <= '9' && len < PAX_MAX)
            len = len * 10 + (size_t)(d[j++] - '0');
        if (j == i || j >= n || d[j] != ' ' || len < 5 || len > n - i || d[i + len - 1] != '\n')
            return -1;
        const char *k = d + j + 1, *rec_end = d + i + len - 1;
        const char *eq = memchr(k, '=', (size_t)(rec_end - k));
        if (!eq)
            return -1;
        size_t klen = (size_t)(eq - k), vlen = (size_t)(rec_end - eq - 1);
        if (klen == 4 && memcmp(k, "path", 4) == 0) {
            if (vlen == 0 || vlen >= pcap || memchr(eq + 1, 0, vlen))
                return -1;
            memcpy(path, eq + 1, vlen);
            path[vlen] = 0;
        } else if (klen == 4 && memcmp(k, "size", 4) == 0) {
            char num[24];
            if (vlen == 0 || vlen >= sizeof num)
                return -1;
            memcpy(num, eq + 1, vlen);
            num[vlen] = 0;
            if (text_parse_u64(num, 10, size) < 0)
                return -1;
            *has_size = true;
        }
        i += len;
    }
    return 0;
}

int ova_index_read(const char *name, uint64_t file_size, ova_read_fn rd, void *ctx,
                   struct ova_index *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    uint8_t h[OVA_BLOCK];
    char long_name[OVA_NAME_MAX] = "";
    uint64_t pax_size = 0;
    bool has_pax_size = false;
    char *ext = NULL;
    int rc = 0;
    uint64_t off = 0;
    for (;;) {
        if (off >= file_size || file_size - off < OVA_BLOCK) {
            if (off >= file_size && out->n > 0)
                break; /* no end-of-archive blocks: what some writers leave */
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: the archive ends inside a header: it is truncated", name,
                          (unsigned long long)off);
            goto err_after_ext;
        }
        if ((rc = rd(ctx, off, h, OVA_BLOCK, e)) < 0)
            goto err_after_ext;
        if (all_zero(h, OVA_BLOCK))
            break;
        if (!checksum_ok(h)) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: the tar header's checksum is wrong: this is no tar "
                          "archive or it is damaged",
                          name, (unsigned long long)off);
            goto err_after_ext;
        }
        bool ustar = memcmp(h + 257, "ustar\0", 6) == 0, gnu = memcmp(h + 257, "ustar  \0", 8) == 0;
        if (!ustar && !gnu) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: not a ustar or GNU tar header (an OVA is a ustar "
                          "archive)",
                          name, (unsigned long long)off);
            goto err_after_ext;
        }
        uint64_t size;
        if (number(h + 124, 12, &size) < 0) {
            rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: the size field is not a number", name,
                          (unsigned long long)off);
            goto err_after_ext;
        }
        char type = (char)h[156];
        if (has_pax_size && type != 'x' && type != 'g' && type != 'L')
            size = pax_size;
        uint64_t data = off + OVA_BLOCK;
        if (size > file_size - data) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: a member of %llu bytes does not fit in the archive of "
                          "%llu bytes: it is truncated",
                          name, (unsigned long long)off, (unsigned long long)size,
                          (unsigned long long)file_size);
            goto err_after_ext;
        }
        uint64_t next = data + (size + OVA_BLOCK - 1) / OVA_BLOCK * OVA_BLOCK;
        if (type == 'x' || type == 'L' || type == 'g') {
            if (size > PAX_MAX) {
                rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: an extended header of %llu bytes",
                              name, (unsigned long long)off, (unsigned long long)size);
                goto err_after_ext;
            }
            free(ext);
            ext = malloc(size + 1);
            if (!ext) {
                rc = ferr_set(e, -ENOMEM, "%s: out of memory", name);
                goto err_after_ext;
            }
            if (size && (rc = rd(ctx, data, ext, size, e)) < 0)
                goto err_after_ext;
            ext[size] = 0;
            if (type == 'L') {
                size_t n = strnlen(ext, size);
                if (n == 0 || n >= sizeof long_name) {
                    rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: a long name of %zu bytes", name,
                                  (unsigned long long)off, n);
                    goto err_after_ext;
                }
                memcpy(long_name, ext, n + 1);
            } else if (type == 'x' && pax_parse(ext, size, long_name, sizeof long_name, &pax_size,
                                                &has_pax_size) < 0) {
                rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: a malformed pax extended header",
                              name, (unsigned long long)off);
                goto err_after_ext;
            }
            off = next;
            continue;
        }
        char mname[OVA_NAME_MAX + 8];
        if (long_name[0]) {
            memcpy(mname, long_name, sizeof long_name);
        } else {
            char n100[101], p155[156];
            memcpy(n100, h, 100);
            n100[100] = 0;
            memcpy(p155, h + 345, 155);
            p155[155] = 0;
            if (ustar && p155[0])
                snprintf(mname, sizeof mname, "%s/%s", p155, n100);
            else
                snprintf(mname, sizeof mname, "%s", n100);
        }
        long_name[0] = 0;
        has_pax_size = false;
        const char *nm = mname;
        while (nm[0] == '.' && nm[1] == '/')
            nm += 2;
        if (strlen(nm) >= OVA_NAME_MAX) {
            rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: a member name longer than %d bytes",
                          name, (unsigned long long)off, OVA_NAME_MAX - 1);
            goto err_after_ext;
        }
        if (type == '5') {
            off = next;
            continue;
        }
        if (type != '0' && type != '\0' && type != '7') {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: member \"%.100s\" is not a regular file (tar type "
                          "'%c'): an OVA holds only files",
                          name, (unsigned long long)off, nm,
                          type >= 0x20 && type < 0x7f ? type : '?');
            goto err_after_ext;
        }
        if (!text_path_inside(nm)) {
            rc = ferr_set(e, FERR_INVALID,
                          "%s: byte %llu: member \"%.100s\" is outside the archive (absolute or "
                          "\"..\")",
                          name, (unsigned long long)off, nm);
            goto err_after_ext;
        }
        if (ova_find(out, nm)) {
            rc = ferr_set(e, FERR_INVALID, "%s: byte %llu: member \"%.100s\" appears twice", name,
                          (unsigned long long)off, nm);
            goto err_after_ext;
        }
        if (out->n == OVA_MAX_MEMBERS) {
            rc = ferr_set(e, FERR_INVALID, "%s: more than %d members", name, OVA_MAX_MEMBERS);
            goto err_after_ext;
        }
        struct ova_member *m = &out->members[out->n++];
        memcpy(m->name, nm, strlen(nm) + 1);
        m->offset = data;
        m->size = size;
        off = next; /* past file_size when the last member's padding is missing: the end */
    }
    if (out->n == 0) {
        rc = ferr_set(e, FERR_INVALID, "%s: the archive holds no files", name);
        goto err_after_ext;
    }
    free(ext);
    return 0;
err_after_ext:
    free(ext);
    memset(out, 0, sizeof *out);
    return rc;
}

const struct ova_member *ova_find(const struct ova_index *idx, const char *name)
{
    for (unsigned i = 0; i < idx->n; i++)
        if (strcmp(idx->members[i].name, name) == 0)
            return &idx->members[i];
    return NULL;
}
