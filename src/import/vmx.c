/* SPDX-License-Identifier: MIT */
/* VMware's .vmx format (vmx.h): lines of `key = "value"`, a charset, devices by bus and unit. */
#include "import/vmx.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "import/text.h"

struct entry {
    char *key; /* lower case, NUL-terminated, in the arena */
    char *val; /* UTF-8, NUL-terminated, in the arena; NUL inside refused */
    unsigned line;
};

struct parser {
    const char *name;
    struct entry *ents;
    size_t nents, cap;
    char *arena;
    size_t used, size;
};

static char *arena_take(struct parser *p, size_t n)
{
    if (n > p->size - p->used)
        return NULL;
    char *s = p->arena + p->used;
    p->used += n;
    return s;
}

static bool key_char(int c)
{
    return isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-' || c == '[' || c == ']';
}

/* Reads one line [s, end) into an entry; raw bytes of the value (escapes undone). */
static int parse_line(struct parser *p, const char *s, const char *end, unsigned line,
                      struct ferr *e)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    if (s == end || *s == '#')
        return 0;
    const char *k = s;
    while (s < end && key_char((unsigned char)*s))
        s++;
    size_t klen = (size_t)(s - k);
    if (klen == 0)
        return text_bad(e, p->name, line, "expected a key (letters, digits, . _ : -), found '%c'",
                        isprint((unsigned char)*s) ? *s : '?');
    if (klen > 128)
        return text_bad(e, p->name, line, "key longer than 128 characters");
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s == end || *s != '=')
        return text_bad(e, p->name, line, "expected '=' after the key %.*s", (int)klen, k);
    s++;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    char *key = arena_take(p, klen + 1);
    char *val = arena_take(p, (size_t)(end - s) + 1);
    if (!key || !val)
        return ferr_set(e, FERR_INTERNAL, "%s:%u: parser arena exhausted", p->name, line);
    for (size_t i = 0; i < klen; i++)
        key[i] = (char)tolower((unsigned char)k[i]);
    key[klen] = 0;
    size_t n = 0;
    if (s < end && *s == '"') {
        s++;
        for (;;) {
            if (s == end)
                return text_bad(e, p->name, line, "the value of %s has no closing '\"'", key);
            if (*s == '"')
                break;
            if (*s == '|') {
                int hi = s + 1 < end ? hex_value(s[1]) : -1;
                int lo = s + 2 < end ? hex_value(s[2]) : -1;
                if (hi < 0 || lo < 0)
                    return text_bad(
                        e, p->name, line,
                        "the value of %s has '|' not followed by two hex digits (VMware "
                        "writes a '|' as |7C)",
                        key);
                if (hi == 0 && lo == 0)
                    return text_bad(e, p->name, line, "the value of %s contains |00 (a NUL byte)",
                                    key);
                val[n++] = (char)(hi << 4 | lo);
                s += 3;
                continue;
            }
            if (*s == 0)
                return text_bad(e, p->name, line, "the value of %s contains a NUL byte", key);
            val[n++] = *s++;
        }
        s++;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        if (s < end && *s != '#')
            return text_bad(e, p->name, line, "text after the closing quote of %s", key);
    } else {
        while (s < end && *s != ' ' && *s != '\t' && *s != '#' && *s != '"') {
            if (*s == 0)
                return text_bad(e, p->name, line, "the value of %s contains a NUL byte", key);
            val[n++] = *s++;
        }
        if (n == 0)
            return text_bad(e, p->name, line, "%s has no value (write %s = \"\")", key, key);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        if (s < end && *s != '#')
            return text_bad(e, p->name, line,
                            "the value of %s has a space or a quote: put it in double quotes", key);
    }
    val[n] = 0;
    if (p->nents == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct entry *ents = realloc(p->ents, cap * sizeof *ents);
        if (!ents)
            return ferr_set(e, -ENOMEM, "%s: out of memory", p->name);
        p->ents = ents;
        p->cap = cap;
    }
    p->ents[p->nents++] = (struct entry){key, val, line};
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* The last entry of key, NULL if none. ents sorted and deduplicated. */
static const struct entry *find(const struct parser *p, const char *key)
{
    struct entry k = {(char *)key, NULL, 0};
    size_t lo = 0, hi = p->nents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->ents[mid].key, k.key);
        if (c == 0)
            return &p->ents[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Charset of the values: what .encoding says (vmx.h). */
enum charset { CS_UTF8, CS_ASCII, CS_CP1252, CS_LATIN1, CS_GUESS };

static int pick_charset(const struct parser *p, struct vmx *out, enum charset *cs, struct ferr *e)
{
    const struct entry *en = find(p, ".encoding");
    *cs = CS_GUESS;
    if (!en)
        return 0;
    if (strlen(en->val) >= sizeof out->encoding)
        return text_bad(e, p->name, en->line, ".encoding \"%.40s\" is not a charset name", en->val);
    strcpy(out->encoding, en->val);
    static const struct {
        const char *name;
        enum charset cs;
    } names[] = {
        {"utf-8", CS_UTF8},        {"utf8", CS_UTF8},           {"us-ascii", CS_ASCII},
        {"ascii", CS_ASCII},       {"windows-1252", CS_CP1252}, {"cp1252", CS_CP1252},
        {"iso-8859-1", CS_LATIN1}, {"iso8859-1", CS_LATIN1},    {"latin1", CS_LATIN1},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(en->val, names[i].name) == 0) {
            *cs = names[i].cs;
            return 0;
        }
    return text_bad(e, p->name, en->line,
                    ".encoding \"%s\" is not supported (UTF-8, windows-1252 and ISO-8859-1 are): "
                    "convert the file (iconv -f %s -t UTF-8) and write .encoding = \"UTF-8\"",
                    en->val, en->val);
}

/* Converts every value to UTF-8 in place or into the arena. */
static int convert_values(struct parser *p, enum charset cs, struct ferr *e)
{
    if (cs == CS_GUESS) {
        cs = CS_UTF8;
        for (size_t i = 0; i < p->nents; i++)
            if (!text_utf8_valid(p->ents[i].val, strlen(p->ents[i].val)))
                cs = CS_CP1252; /* VMware on Windows writes its ANSI code page */
    }
    for (size_t i = 0; i < p->nents; i++) {
        struct entry *en = &p->ents[i];
        size_t n = strlen(en->val);
        if (cs == CS_UTF8 || cs == CS_ASCII) {
            if (!text_utf8_valid(en->val, n))
                return text_bad(e, p->name, en->line, "the value of %s is not valid UTF-8",
                                en->key);
            for (size_t j = 0; cs == CS_ASCII && j < n; j++)
                if ((unsigned char)en->val[j] >= 0x80)
                    return text_bad(e, p->name, en->line,
                                    "the value of %s is not US-ASCII as .encoding says", en->key);
            continue;
        }
        char *u = arena_take(p, 3 * n + 1);
        if (!u)
            return ferr_set(e, FERR_INTERNAL, "%s:%u: parser arena exhausted", p->name, en->line);
        text_8bit_to_utf8(en->val, n, cs == CS_CP1252, u);
        en->val = u;
    }
    return 0;
}

static int get_bool(const struct parser *p, const struct entry *en, bool *out, struct ferr *e)
{
    static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(en->val, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(en->val, no[i]) == 0)
            return *out = false, 0;
    }
    return text_bad(e, p->name, en->line, "%s: \"%.40s\" is not TRUE or FALSE", en->key, en->val);
}

static bool is_true(const struct parser *p, const char *key, struct ferr *e, int *rc)
{
    const struct entry *en = find(p, key);
    bool v = false;
    if (en && (*rc = get_bool(p, en, &v, e)) < 0)
        return false;
    return v;
}

static int get_num(const struct parser *p, const struct entry *en, uint64_t lo, uint64_t hi,
                   uint64_t *out, struct ferr *e)
{
    if (text_parse_u64(en->val, 10, out) < 0 || *out < lo || *out > hi)
        return text_bad(e, p->name, en->line, "%s: \"%.40s\" is not a number in %llu..%llu",
                        en->key, en->val, (unsigned long long)lo, (unsigned long long)hi);
    return 0;
}

static int copy_str(const struct parser *p, const struct entry *en, char *dst, size_t cap,
                    struct ferr *e)
{
    size_t n = strlen(en->val);
    if (n >= cap)
        return text_bad(e, p->name, en->line, "%s is longer than %zu bytes", en->key, cap - 1);
    memcpy(dst, en->val, n + 1);
    return 0;
}

/* The buses ferry reads, with VMware's controller and unit limits. */
static const struct bus {
    const char *name;
    unsigned max_ctrl, max_unit;
} buses[] = {
    {"scsi", 3, 15},
    {"sata", 3, 29},
    {"nvme", 3, 63},
    {"ide", 1, 1},
};

/* Matches "BUSc:u.field" (or "BUSc.field" with unit NULL); returns the bus index or -1. */
static int match_dev(const char *key, unsigned *ctrl, unsigned *unit, bool *has_unit,
                     const char **field)
{
    for (int b = 0; b < (int)(sizeof buses / sizeof buses[0]); b++) {
        size_t bl = strlen(buses[b].name);
        if (strncmp(key, buses[b].name, bl) != 0 || !isdigit((unsigned char)key[bl]))
            continue;
        const char *s = key + bl;
        unsigned long c = 0, u = 0;
        for (int d = 0; isdigit((unsigned char)*s); d++, s++)
            if (d > 3 || (c = c * 10 + (unsigned)(*s - '0')) > 9999)
                return -1;
        *has_unit = false;
        if (*s == ':') {
            s++;
            if (!isdigit((unsigned char)*s))
                return -1;
            for (int d = 0; isdigit((unsigned char)*s); d++, s++)
                if (d > 3 || (u = u * 10 + (unsigned)(*s - '0')) > 9999)
                    return -1;
            *has_unit = true;
        }
        if (*s != '.')
            return -1;
        *ctrl = (unsigned)c;
        *unit = (unsigned)u;
        *field = s + 1;
        return b;
    }
    return -1;
}

static int match_nic(const char *key, unsigned *idx, const char **field)
{
    if (strncmp(key, "ethernet", 8) != 0 || !isdigit((unsigned char)key[8]))
        return -1;
    const char *s = key + 8;
    unsigned long n = 0;
    for (int d = 0; isdigit((unsigned char)*s); d++, s++)
        if (d > 3 || (n = n * 10 + (unsigned)(*s - '0')) > 9999)
            return -1;
    if (*s != '.')
        return -1;
    *idx = (unsigned)n;
    *field = s + 1;
    return 0;
}

static int disk_order(const void *a, const void *b)
{
    const struct vmx_disk *x = a, *y = b;
    int bx = 0, by = 0;
    for (int i = 0; i < (int)(sizeof buses / sizeof buses[0]); i++) {
        if (strcmp(x->bus, buses[i].name) == 0)
            bx = i;
        if (strcmp(y->bus, buses[i].name) == 0)
            by = i;
    }
    if (bx != by)
        return bx - by;
    if (x->ctrl != y->ctrl)
        return x->ctrl < y->ctrl ? -1 : 1;
    return (x->unit > y->unit) - (x->unit < y->unit);
}

static int add_disk(const struct parser *p, const struct entry *present, int b, unsigned ctrl,
                    unsigned unit, struct vmx *out, struct ferr *e)
{
    const struct bus *bus = &buses[b];
    char k[64];
    int rc = 0;
    if (ctrl > bus->max_ctrl || unit > bus->max_unit)
        return text_bad(e, p->name, present->line, "%s%u:%u: %s controllers are 0..%u, units 0..%u",
                        bus->name, ctrl, unit, bus->name, bus->max_ctrl, bus->max_unit);
    if (strcmp(bus->name, "scsi") == 0 && unit == 7)
        return text_bad(e, p->name, present->line, "scsi%u:7: unit 7 is the SCSI controller's own",
                        ctrl);
    snprintf(k, sizeof k, "%s%u.present", bus->name, ctrl);
    /* the IDE controllers are part of the chipset: present unless a line says otherwise */
    bool ctrl_present = strcmp(bus->name, "ide") == 0 && !find(p, k) ? true : is_true(p, k, e, &rc);
    if (rc < 0)
        return rc;
    if (!ctrl_present) {
        out->nskipped++;
        return rc; /* VMware ignores a device whose controller is absent */
    }
    if (out->ndisks == VMX_MAX_DISKS)
        return text_bad(e, p->name, present->line, "more than %d disks", VMX_MAX_DISKS);
    struct vmx_disk *d = &out->disks[out->ndisks];
    memset(d, 0, sizeof *d);
    snprintf(d->bus, sizeof d->bus, "%s", bus->name);
    d->ctrl = ctrl;
    d->unit = unit;
    d->line = present->line;
    const struct entry *en;
    snprintf(k, sizeof k, "%s%u.virtualdev", bus->name, ctrl);
    if (strcmp(bus->name, "scsi") == 0 && (en = find(p, k)) &&
        (rc = copy_str(p, en, d->controller_dev, sizeof d->controller_dev, e)) < 0)
        return rc;
    for (char *c = d->controller_dev; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(k, sizeof k, "%s%u:%u.devicetype", bus->name, ctrl, unit);
    if ((en = find(p, k)) && (rc = copy_str(p, en, d->device_type, sizeof d->device_type, e)) < 0)
        return rc;
    for (char *c = d->device_type; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    d->cdrom = strstr(d->device_type, "cdrom") != NULL;
    snprintf(k, sizeof k, "%s%u:%u.filename", bus->name, ctrl, unit);
    if ((en = find(p, k))) {
        if ((rc = copy_str(p, en, d->file, sizeof d->file, e)) < 0)
            return rc;
        d->line = en->line;
    }
    if (!d->cdrom && !d->file[0])
        return text_bad(e, p->name, present->line, "%s%u:%u is a present disk without a fileName",
                        bus->name, ctrl, unit);
    if (!d->cdrom && strcmp(d->device_type, "") != 0 && strcmp(d->device_type, "disk") != 0 &&
        strcmp(d->device_type, "scsi-harddisk") != 0 && strcmp(d->device_type, "ata-harddisk") != 0)
        return text_bad(e, p->name, present->line,
                        "%s%u:%u: deviceType \"%s\" is not a disk ferry can import (raw device "
                        "mappings and passthrough are not)",
                        bus->name, ctrl, unit, d->device_type);
    out->ndisks++;
    return 0;
}

static int add_nic(const struct parser *p, const struct entry *present, unsigned idx,
                   struct vmx *out, struct ferr *e)
{
    if (idx >= VMX_MAX_NICS)
        return text_bad(e, p->name, present->line, "ethernet%u: VMware's NICs are ethernet0..%d",
                        idx, VMX_MAX_NICS - 1);
    struct vmx_nic *n = &out->nics[out->nnics];
    memset(n, 0, sizeof *n);
    n->index = idx;
    n->line = present->line;
    char k[64];
    const struct entry *en;
    int rc;
    snprintf(k, sizeof k, "ethernet%u.virtualdev", idx);
    if ((en = find(p, k)) && (rc = copy_str(p, en, n->virtual_dev, sizeof n->virtual_dev, e)) < 0)
        return rc;
    snprintf(k, sizeof k, "ethernet%u.networkname", idx);
    if ((en = find(p, k)) && (rc = copy_str(p, en, n->network, sizeof n->network, e)) < 0)
        return rc;
    snprintf(k, sizeof k, "ethernet%u.addresstype", idx);
    if ((en = find(p, k)) && (rc = copy_str(p, en, n->address_type, sizeof n->address_type, e)) < 0)
        return rc;
    for (char *c = n->address_type; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    /* static: "address" is the MAC; generated and vpx (vCenter): "generatedAddress" */
    snprintf(k, sizeof k,
             strcmp(n->address_type, "static") == 0 ? "ethernet%u.address"
                                                    : "ethernet%u.generatedaddress",
             idx);
    if ((en = find(p, k))) {
        if (!text_mac_valid(en->val))
            return text_bad(e, p->name, en->line,
                            "%s: \"%.40s\" is not a MAC address (xx:xx:xx:xx:xx:xx)", en->key,
                            en->val);
        for (int i = 0; i < 17; i++)
            n->mac[i] = i % 3 == 2 ? ':' : (char)tolower((unsigned char)en->val[i]);
        n->mac[17] = 0;
    }
    out->nnics++;
    return 0;
}

static bool known_dev_field(const char *f, bool unit)
{
    if (!unit)
        return strcmp(f, "present") == 0 || strcmp(f, "virtualdev") == 0;
    return strcmp(f, "present") == 0 || strcmp(f, "filename") == 0 || strcmp(f, "devicetype") == 0;
}

static bool known_nic_field(const char *f)
{
    static const char *const fields[] = {"present",     "virtualdev", "networkname",
                                         "addresstype", "address",    "generatedaddress"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(f, fields[i]) == 0)
            return true;
    return false;
}

static int interpret(const struct parser *p, struct vmx *out, struct ferr *e)
{
    static const char *const top[] = {
        ".encoding", "displayname", "numvcpus", "cpuid.corespersocket",
        "memsize",   "firmware",    "guestos"};
    const struct entry *en;
    uint64_t v;
    int rc;
    out->numvcpus = 1;
    out->cores_per_socket = 1;
    strcpy(out->firmware, "bios");
    if ((en = find(p, "displayname")) &&
        (rc = copy_str(p, en, out->display_name, sizeof out->display_name, e)) < 0)
        return rc;
    if ((en = find(p, "guestos")) &&
        (rc = copy_str(p, en, out->guest_os, sizeof out->guest_os, e)) < 0)
        return rc;
    if ((en = find(p, "numvcpus"))) {
        if ((rc = get_num(p, en, 1, 4096, &v, e)) < 0)
            return rc;
        out->numvcpus = (unsigned)v;
    }
    if ((en = find(p, "cpuid.corespersocket"))) {
        if ((rc = get_num(p, en, 1, 4096, &v, e)) < 0)
            return rc;
        out->cores_per_socket = (unsigned)v;
        if (out->numvcpus % out->cores_per_socket)
            return text_bad(e, p->name, en->line,
                            "numvcpus %u is not a multiple of cpuid.coresPerSocket %u",
                            out->numvcpus, out->cores_per_socket);
    }
    if ((en = find(p, "memsize"))) {
        if ((rc = get_num(p, en, 1, 16ull << 20, &v, e)) < 0) /* 16 TiB, vSphere 8's maximum */
            return rc;
        out->memsize_mib = v;
    }
    if ((en = find(p, "firmware"))) {
        if (strcasecmp(en->val, "bios") && strcasecmp(en->val, "efi"))
            return text_bad(e, p->name, en->line,
                            "firmware \"%.40s\" is neither \"bios\" nor \"efi\"", en->val);
        out->firmware[0] = (char)tolower((unsigned char)en->val[0]);
        strcpy(out->firmware, strcasecmp(en->val, "efi") == 0 ? "efi" : "bios");
    }
    for (size_t i = 0; i < p->nents; i++) {
        en = &p->ents[i];
        unsigned ctrl, unit, idx;
        bool has_unit, known = false, present;
        const char *field;
        for (size_t t = 0; t < sizeof top / sizeof top[0] && !known; t++)
            known = strcmp(en->key, top[t]) == 0;
        int b = known ? -1 : match_dev(en->key, &ctrl, &unit, &has_unit, &field);
        if (b >= 0) {
            known = known_dev_field(field, has_unit);
            if (has_unit && strcmp(field, "present") == 0) {
                if ((rc = get_bool(p, en, &present, e)) < 0)
                    return rc;
                if (!present)
                    out->nskipped++;
                else if ((rc = add_disk(p, en, b, ctrl, unit, out, e)) < 0)
                    return rc;
            }
        } else if (!known && match_nic(en->key, &idx, &field) == 0) {
            known = known_nic_field(field);
            if (strcmp(field, "present") == 0) {
                if ((rc = get_bool(p, en, &present, e)) < 0)
                    return rc;
                if (!present)
                    out->nskipped++;
                else if ((rc = add_nic(p, en, idx, out, e)) < 0)
                    return rc;
            }
        }
        if (!known)
            out->nunknown++;
    }
    qsort(out->disks, out->ndisks, sizeof out->disks[0], disk_order);
    return 0;
}

int vmx_parse(const char *name, const char *text, size_t len, struct vmx *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    if (len > VMX_MAX_SIZE)
        return ferr_set(e, FERR_INVALID, "%s: %zu bytes is too big for a .vmx (at most %u)", name,
                        len, VMX_MAX_SIZE);
    struct parser p = {.name = name};
    int rc;
    /* keys and raw values take at most len + 2 per line; the UTF-8 copies 3 * len + 1 each */
    p.size = 6 * len + 64;
    p.arena = malloc(p.size);
    if (!p.arena)
        return ferr_set(e, -ENOMEM, "%s: out of memory", name);
    const char *s = text, *end = text + len;
    if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3; /* a UTF-8 byte order mark, as Windows editors write */
    unsigned line = 1;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl ? nl : end;
        if ((rc = parse_line(&p, s, eol, line, e)) < 0)
            goto err_after_arena;
        s = nl ? nl + 1 : end;
        line++;
    }
    if (p.nents) /* qsort's array must not be NULL, even empty */
        qsort(p.ents, p.nents, sizeof p.ents[0], cmp_entry);
    size_t w = 0;
    for (size_t i = 0; i < p.nents; i++) {
        if (w > 0 && strcmp(p.ents[w - 1].key, p.ents[i].key) == 0) {
            if (out->nduplicates++ == 0)
                snprintf(out->first_duplicate, sizeof out->first_duplicate, "%s", p.ents[i].key);
            p.ents[w - 1] = p.ents[i]; /* the later line counts */
            continue;
        }
        p.ents[w++] = p.ents[i];
    }
    p.nents = w;
    out->nkeys = (unsigned)w;
    enum charset cs;
    if ((rc = pick_charset(&p, out, &cs, e)) < 0 || (rc = convert_values(&p, cs, e)) < 0 ||
        (rc = interpret(&p, out, e)) < 0)
        goto err_after_arena;
    free(p.ents);
    free(p.arena);
    return 0;
err_after_arena:
    free(p.ents);
    free(p.arena);
    memset(out, 0, sizeof *out);
    return rc;
}
