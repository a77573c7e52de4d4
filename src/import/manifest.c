/* SPDX-License-Identifier: MIT */
/* OVF manifests (manifest.h): parsed by hand, checked with GnuTLS's hashes. */
#include "import/manifest.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "common/util.h"
#include "import/text.h"

static const struct {
    const char *name;
    unsigned len;
    gnutls_digest_algorithm_t dig;
} algos[] = {
    [MF_SHA1] = {"SHA1", 20, GNUTLS_DIG_SHA1},
    [MF_SHA256] = {"SHA256", 32, GNUTLS_DIG_SHA256},
    [MF_SHA512] = {"SHA512", 64, GNUTLS_DIG_SHA512},
};

static int parse_line(const char *name, const char *s, const char *end, unsigned line, struct mf *m,
                      struct ferr *e)
{
    const char *open = memchr(s, '(', (size_t)(end - s));
    if (!open)
        return ferr_set(e, FERR_INVALID, "%s:%u: expected ALGO(FILE)= DIGEST", name, line);
    int a = -1;
    for (int i = 0; i < 3; i++)
        if ((size_t)(open - s) == strlen(algos[i].name) &&
            memcmp(s, algos[i].name, (size_t)(open - s)) == 0)
            a = i;
    if (a < 0)
        return ferr_set(e, FERR_INVALID, "%s:%u: digest \"%.*s\" is not SHA1, SHA256 or SHA512",
                        name, line, (int)(open - s > 16 ? 16 : open - s), s);
    /* the file name ends at the last ")=": names may hold parentheses */
    const char *close = NULL;
    for (const char *p = open + 1; p + 1 < end; p++)
        if (p[0] == ')' && p[1] == '=')
            close = p;
    if (!close)
        return ferr_set(e, FERR_INVALID, "%s:%u: expected ALGO(FILE)= DIGEST", name, line);
    if (m->n == MF_MAX_ENTRIES)
        return ferr_set(e, FERR_INVALID, "%s:%u: more than %d entries", name, line, MF_MAX_ENTRIES);
    struct mf_entry *en = &m->entries[m->n];
    memset(en, 0, sizeof *en);
    size_t flen = (size_t)(close - open - 1);
    if (flen == 0 || flen >= sizeof en->file)
        return ferr_set(e, FERR_INVALID, "%s:%u: file name empty or longer than %zu bytes", name,
                        line, sizeof en->file - 1);
    memcpy(en->file, open + 1, flen);
    en->file[flen] = 0;
    if (!text_path_inside(en->file))
        return ferr_set(e, FERR_INVALID, "%s:%u: \"%s\" is outside the package's folder", name,
                        line, en->file);
    for (unsigned i = 0; i < m->n; i++)
        if (strcmp(m->entries[i].file, en->file) == 0)
            return ferr_set(e, FERR_INVALID, "%s:%u: \"%s\" is listed twice (line %u)", name, line,
                            en->file, m->entries[i].line);
    const char *h = close + 2;
    while (h < end && (*h == ' ' || *h == '\t'))
        h++;
    size_t hlen = (size_t)(end - h);
    if (hlen != 2 * algos[a].len)
        return ferr_set(e, FERR_INVALID, "%s:%u: a %s digest has %u hex digits, this one %zu", name,
                        line, algos[a].name, 2 * algos[a].len, hlen);
    for (unsigned i = 0; i < algos[a].len; i++) {
        int hi = hex_value(h[2 * i]), lo = hex_value(h[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ferr_set(e, FERR_INVALID, "%s:%u: the digest is not hexadecimal", name, line);
        en->digest[i] = (uint8_t)(hi << 4 | lo);
    }
    en->algo = (enum mf_algo)a;
    en->digest_len = algos[a].len;
    en->line = line;
    m->n++;
    return 0;
}

int mf_parse(const char *name, const char *text, size_t len, struct mf *m, struct ferr *e)
{
    memset(m, 0, sizeof *m);
    if (len > MF_MAX_SIZE)
        return ferr_set(e, FERR_INVALID, "%s: %zu bytes is too big for a manifest", name, len);
    const char *p = text, *end = text + len;
    int rc;
    for (unsigned line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *eol = nl ? nl : end;
        p = nl ? nl + 1 : end;
        while (eol > s && (eol[-1] == '\r' || eol[-1] == ' ' || eol[-1] == '\t'))
            eol--;
        while (s < eol && (*s == ' ' || *s == '\t'))
            s++;
        if (s == eol)
            continue;
        if ((rc = parse_line(name, s, eol, line, m, e)) < 0) {
            memset(m, 0, sizeof *m);
            return rc;
        }
    }
    return 0;
}

const struct mf_entry *mf_find(const struct mf *m, const char *file)
{
    for (unsigned i = 0; i < m->n; i++)
        if (strcmp(m->entries[i].file, file) == 0)
            return &m->entries[i];
    return NULL;
}

struct mf_hash {
    gnutls_hash_hd_t hd;
    const struct mf_entry *entry;
};

int mf_hash_new(const struct mf_entry *entry, struct mf_hash **out, struct ferr *e)
{
    struct mf_hash *h = calloc(1, sizeof *h);
    if (!h)
        return ferr_set(e, -ENOMEM, "manifest: out of memory");
    h->entry = entry;
    if (gnutls_hash_init(&h->hd, algos[entry->algo].dig) < 0) {
        free(h);
        return ferr_set(e, FERR_INTERNAL, "manifest: GnuTLS has no %s", algos[entry->algo].name);
    }
    *out = h;
    return 0;
}

void mf_hash_update(struct mf_hash *h, const void *data, size_t len)
{
    (void)gnutls_hash(h->hd, data, len);
}

static void hex(const uint8_t *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

int mf_hash_finish(struct mf_hash *h, const char *mf_name, struct ferr *e)
{
    uint8_t got[MF_DIGEST_MAX];
    const struct mf_entry *en = h->entry;
    gnutls_hash_deinit(h->hd, got);
    free(h);
    if (memcmp(got, en->digest, en->digest_len) == 0)
        return 0;
    char a[2 * MF_DIGEST_MAX + 1], b[2 * MF_DIGEST_MAX + 1];
    hex(got, en->digest_len, a);
    hex(en->digest, en->digest_len, b);
    return ferr_set(e, FERR_INVALID,
                    "%s:%u: %s of %s is %.16s..., the manifest says %.16s...: the file is "
                    "damaged or was changed; download the package again",
                    mf_name, en->line, algos[en->algo].name, en->file, a, b);
}
