/* SPDX-License-Identifier: MIT */
/* OVF envelopes (ovf.h), read with libxml2's tree API. Elements are matched by local name in
 * the OVF, RASD, VSSD and VMware namespaces, whatever prefixes the producer chose. */
#include "import/ovf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "common/util.h"
#include "import/text.h"

#define OVF_NS1 "http://schemas.dmtf.org/ovf/envelope/1"
#define OVF_NS2 "http://schemas.dmtf.org/ovf/envelope/2"

struct ctx {
    const char *name;
    struct ovf *out;
    struct ferr *e;
    /* controllers by rasd:InstanceID */
    unsigned nctrl;
    struct {
        char id[32];
        char kind[16];
        char sub[32];
    } ctrl[32];
};

void ovf_init(void)
{
    xmlInitParser();
}

/* "/Envelope/VirtualSystem/VirtualHardwareSection/Item[3]": local names, and the position
 * among same-named siblings where there are several. */
static void node_path(const xmlNode *n, char *out, size_t cap)
{
    const xmlNode *chain[32];
    int depth = 0;
    for (; n && n->type == XML_ELEMENT_NODE && depth < 32; n = n->parent)
        chain[depth++] = n;
    size_t w = 0;
    out[0] = 0;
    while (depth-- > 0 && w < cap) {
        const xmlNode *k = chain[depth];
        unsigned pos = 0, same = 0;
        for (const xmlNode *s = k->parent ? k->parent->children : k; s; s = s->next)
            if (s->type == XML_ELEMENT_NODE &&
                strcmp((const char *)s->name, (const char *)k->name) == 0) {
                same++;
                if (s == k)
                    pos = same;
            }
        int r = same > 1 ? snprintf(out + w, cap - w, "/%s[%u]", (const char *)k->name, pos)
                         : snprintf(out + w, cap - w, "/%s", (const char *)k->name);
        if (r < 0)
            break;
        w += (size_t)r;
    }
    if (!out[0])
        snprintf(out, cap, "/");
}

static int bad(struct ctx *c, xmlNode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct ctx *c, xmlNode *n, const char *fmt, ...)
{
    char what[FERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char path[300];
    node_path(n, path, sizeof path);
    return ferr_set(c->e, FERR_INVALID, "%s: line %ld: %s: %s", c->name, n ? xmlGetLineNo(n) : 0L,
                    path, what);
}

static void note(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct ctx *c, const char *fmt, ...)
{
    if (c->out->nnotes == OVF_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->out->notes[c->out->nnotes++], OVF_NOTE_MAX, fmt, ap);
    va_end(ap);
}

static bool is(const xmlNode *n, const char *local)
{
    return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, local) == 0;
}

/* The attribute with this local name, in any namespace or none; NULL if absent. xmlFree it. */
static xmlChar *attr(xmlNode *n, const char *local)
{
    for (xmlAttr *a = n->properties; a; a = a->next)
        if (strcmp((const char *)a->name, local) == 0)
            return xmlNodeListGetString(n->doc, a->children, 1);
    return NULL;
}

/* Copies attribute local of n into out (cap bytes); absent: "" unless required. */
static int attr_str(struct ctx *c, xmlNode *n, const char *local, bool required, char *out,
                    size_t cap)
{
    xmlChar *v = attr(n, local);
    out[0] = 0;
    if (!v)
        return required ? bad(c, n, "attribute %s is missing", local) : 0;
    size_t len = strlen((const char *)v);
    int rc = 0;
    if (len >= cap)
        rc = bad(c, n, "attribute %s is longer than %zu bytes", local, cap - 1);
    else
        memcpy(out, v, len + 1);
    xmlFree(v);
    return rc;
}

static xmlNode *child(xmlNode *n, const char *local)
{
    for (xmlNode *k = n->children; k; k = k->next)
        if (is(k, local))
            return k;
    return NULL;
}

/* Text of the child element local of n, trimmed, into out; "" if absent. */
static int child_str(struct ctx *c, xmlNode *n, const char *local, char *out, size_t cap)
{
    xmlNode *k = child(n, local);
    out[0] = 0;
    if (!k)
        return 0;
    xmlChar *v = xmlNodeGetContent(k);
    if (!v)
        return 0;
    const char *s = (const char *)v;
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    int rc = 0;
    if (len >= cap)
        rc = bad(c, k, "longer than %zu bytes", cap - 1);
    else {
        memcpy(out, s, len);
        out[len] = 0;
    }
    xmlFree(v);
    return rc;
}

int ovf_units(const char *units, uint64_t *bytes)
{
    static const struct {
        const char *name;
        uint64_t v;
    } words[] = {{"bytes", 1},
                 {"kilobytes", 1ull << 10},
                 {"megabytes", 1ull << 20},
                 {"gigabytes", 1ull << 30},
                 {"terabytes", 1ull << 40},
                 {"kb", 1ull << 10},
                 {"mb", 1ull << 20},
                 {"gb", 1ull << 30}};
    char buf[64];
    size_t n = 0;
    for (const char *s = units; *s; s++)
        if (!isspace((unsigned char)*s)) {
            if (n + 1 >= sizeof buf)
                return -1;
            buf[n++] = (char)tolower((unsigned char)*s);
        }
    buf[n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(buf, words[i].name) == 0)
            return *bytes = words[i].v, 0;
    if (strncmp(buf, "byte", 4) != 0)
        return -1;
    uint64_t v = 1;
    const char *s = buf + 4;
    while (*s) {
        if (*s++ != '*')
            return -1;
        unsigned base = 0, exp = 0;
        if (s[0] == '2' && s[1] == '^')
            base = 2, s += 2;
        else if (s[0] == '1' && s[1] == '0' && s[2] == '^')
            base = 10, s += 3;
        else
            return -1;
        if (!isdigit((unsigned char)*s))
            return -1;
        for (int d = 0; isdigit((unsigned char)*s); s++, d++)
            if (d > 2 || (exp = exp * 10 + (unsigned)(*s - '0')) > 60)
                return -1;
        for (unsigned i = 0; i < exp; i++) {
            if (v > (1ull << 50) / base)
                return -1;
            v *= base;
        }
    }
    *bytes = v;
    return 0;
}

/* value * units as bytes, at most 2^50 (1 PiB). */
static int quantity(struct ctx *c, xmlNode *n, const char *what, const char *value,
                    const char *units, const char *default_units, uint64_t *out)
{
    uint64_t v, u;
    if (strchr(value, '$'))
        return bad(c, n,
                   "%s \"%.40s\" refers to a deployment property, which ferry does not "
                   "fill in: write the number",
                   what, value);
    if (text_parse_u64(value, 10, &v) < 0)
        return bad(c, n, "%s \"%.40s\" is not a whole number", what, value);
    if (ovf_units(units[0] ? units : default_units, &u) < 0)
        return bad(c, n, "%s: allocation units \"%.60s\" are unknown (byte * 2^N, byte * 10^N)",
                   what, units);
    if (u && v > (1ull << 50) / u)
        return bad(c, n, "%s %s × %s is more than 1 PiB", what, value, units);
    *out = v * u;
    return 0;
}

static int parse_references(struct ctx *c, xmlNode *refs)
{
    int rc;
    for (xmlNode *f = refs->children; f; f = f->next) {
        if (f->type != XML_ELEMENT_NODE)
            continue;
        if (!is(f, "File"))
            return bad(c, f, "References holds only File elements");
        if (c->out->nfiles == OVF_MAX_FILES)
            return bad(c, f, "more than %d files", OVF_MAX_FILES);
        struct ovf_file *file = &c->out->files[c->out->nfiles];
        char buf[32];
        if ((rc = attr_str(c, f, "id", true, file->id, sizeof file->id)) < 0 ||
            (rc = attr_str(c, f, "href", true, file->href, sizeof file->href)) < 0)
            return rc;
        for (unsigned i = 0; i < c->out->nfiles; i++)
            if (strcmp(c->out->files[i].id, file->id) == 0)
                return bad(c, f, "a second File with id \"%s\"", file->id);
        if (strstr(file->href, "://") || strchr(file->href, ':'))
            return bad(c, f,
                       "href \"%s\" is a URL: download it next to the .ovf and name the "
                       "file",
                       file->href);
        if (!text_path_inside(file->href))
            return bad(c, f,
                       "href \"%s\" is outside the package's folder (absolute, \"..\" or "
                       "backslash)",
                       file->href);
        if ((rc = attr_str(c, f, "compression", false, buf, sizeof buf)) < 0)
            return rc;
        if (buf[0] && strcmp(buf, "identity") != 0)
            return bad(c, f,
                       "file \"%s\" is compressed (%s), which ferry does not read: "
                       "uncompress it and remove ovf:compression",
                       file->href, buf);
        if ((rc = attr_str(c, f, "chunkSize", false, buf, sizeof buf)) < 0)
            return rc;
        if (buf[0])
            return bad(c, f,
                       "file \"%s\" is split into chunks (ovf:chunkSize), which ferry does "
                       "not join: join them and remove ovf:chunkSize",
                       file->href);
        if ((rc = attr_str(c, f, "size", false, buf, sizeof buf)) < 0)
            return rc;
        if (buf[0]) {
            if (text_parse_u64(buf, 10, &file->size) < 0)
                return bad(c, f, "size \"%s\" is not a number of bytes", buf);
            file->has_size = true;
        }
        c->out->nfiles++;
    }
    return 0;
}

static int parse_disks(struct ctx *c, xmlNode *sec)
{
    int rc;
    for (xmlNode *d = sec->children; d; d = d->next) {
        if (!is(d, "Disk"))
            continue;
        if (c->out->ndisks == OVF_MAX_DISKS)
            return bad(c, d, "more than %d disks", OVF_MAX_DISKS);
        struct ovf_disk *disk = &c->out->disks[c->out->ndisks];
        char ref[64], cap[32], units[64];
        if ((rc = attr_str(c, d, "diskId", true, disk->id, sizeof disk->id)) < 0 ||
            (rc = attr_str(c, d, "fileRef", false, ref, sizeof ref)) < 0 ||
            (rc = attr_str(c, d, "capacity", true, cap, sizeof cap)) < 0 ||
            (rc = attr_str(c, d, "capacityAllocationUnits", false, units, sizeof units)) < 0 ||
            (rc = attr_str(c, d, "format", false, disk->format, sizeof disk->format)) < 0)
            return rc;
        for (unsigned i = 0; i < c->out->ndisks; i++)
            if (strcmp(c->out->disks[i].id, disk->id) == 0)
                return bad(c, d, "a second Disk with diskId \"%s\"", disk->id);
        if ((rc = quantity(c, d, "capacity", cap, units, "byte", &disk->capacity_bytes)) < 0)
            return rc;
        if (disk->capacity_bytes == 0)
            return bad(c, d, "capacity 0");
        disk->file = -1;
        if (ref[0]) {
            for (unsigned i = 0; i < c->out->nfiles; i++)
                if (strcmp(c->out->files[i].id, ref) == 0)
                    disk->file = (int)i;
            if (disk->file < 0)
                return bad(c, d, "fileRef \"%s\" names no File of References", ref);
        }
        c->out->ndisks++;
    }
    return 0;
}

static int parse_networks(struct ctx *c, xmlNode *sec)
{
    int rc;
    for (xmlNode *n = sec->children; n; n = n->next) {
        if (!is(n, "Network"))
            continue;
        if (c->out->nnetworks == OVF_MAX_NETWORKS)
            return bad(c, n, "more than %d networks", OVF_MAX_NETWORKS);
        if ((rc = attr_str(c, n, "name", true, c->out->networks[c->out->nnetworks], 256)) < 0)
            return rc;
        c->out->nnetworks++;
    }
    return 0;
}

/* The controller kind of a ResourceType 5/6/20 Item. */
static const char *controller_kind(unsigned type, const char *subtype)
{
    if (type == 5)
        return "ide";
    if (type == 6)
        return "scsi";
    if (strcasestr(subtype, "nvme"))
        return "nvme";
    return "sata";
}

static int parse_item(struct ctx *c, xmlNode *it)
{
    char rt[16], q[32], units[64], sub[64], id[32], parent[32], host[160], conn[256], addr[64];
    uint64_t type, v;
    int rc;
    if ((rc = child_str(c, it, "ResourceType", rt, sizeof rt)) < 0 ||
        (rc = child_str(c, it, "VirtualQuantity", q, sizeof q)) < 0 ||
        (rc = child_str(c, it, "AllocationUnits", units, sizeof units)) < 0 ||
        (rc = child_str(c, it, "ResourceSubType", sub, sizeof sub)) < 0 ||
        (rc = child_str(c, it, "InstanceID", id, sizeof id)) < 0 ||
        (rc = child_str(c, it, "Parent", parent, sizeof parent)) < 0 ||
        (rc = child_str(c, it, "HostResource", host, sizeof host)) < 0 ||
        (rc = child_str(c, it, "Connection", conn, sizeof conn)) < 0 ||
        (rc = child_str(c, it, "Address", addr, sizeof addr)) < 0)
        return rc;
    if (!rt[0] || text_parse_u64(rt, 10, &type) < 0)
        return bad(c, it, "an Item without a numeric ResourceType");
    xmlChar *cfg = attr(it, "configuration");
    if (cfg) {
        note(c,
             "hardware item %s (ResourceType %s) belongs to deployment option \"%.40s\": "
             "ignored",
             id, rt, (const char *)cfg);
        xmlFree(cfg);
        return 0;
    }
    switch (type) {
    case 3: /* processor */
        if ((rc = quantity(c, it, "VirtualQuantity", q, "", "byte", &v)) < 0)
            return rc;
        if (v == 0 || v > 4096)
            return bad(c, it, "%llu processors is not in 1..4096", (unsigned long long)v);
        c->out->vcpus = (unsigned)v;
        {
            char cps[16];
            if ((rc = child_str(c, it, "CoresPerSocket", cps, sizeof cps)) < 0)
                return rc;
            if (cps[0]) {
                if (text_parse_u64(cps, 10, &v) < 0 || v == 0 || v > 4096 || c->out->vcpus % v)
                    return bad(c, it, "CoresPerSocket \"%s\" does not divide %u processors", cps,
                               c->out->vcpus);
                c->out->cores_per_socket = (unsigned)v;
            }
        }
        return 0;
    case 4: /* memory */
        if (!units[0])
            note(c, "memory item %s has no AllocationUnits: read as MiB", id);
        if ((rc = quantity(c, it, "VirtualQuantity", q, units, "byte * 2^20", &v)) < 0)
            return rc;
        if (v < (1u << 20))
            return bad(c, it, "memory of %llu bytes is less than 1 MiB", (unsigned long long)v);
        c->out->memory_mib = v >> 20;
        return 0;
    case 5:
    case 6:
    case 20:
        if (c->nctrl < sizeof c->ctrl / sizeof c->ctrl[0]) {
            snprintf(c->ctrl[c->nctrl].id, sizeof c->ctrl[0].id, "%s", id);
            snprintf(c->ctrl[c->nctrl].kind, sizeof c->ctrl[0].kind, "%s",
                     controller_kind((unsigned)type, sub));
            snprintf(c->ctrl[c->nctrl].sub, sizeof c->ctrl[0].sub, "%.31s", sub);
            for (char *s = c->ctrl[c->nctrl].sub; *s; s++)
                *s = (char)tolower((unsigned char)*s);
            c->nctrl++;
        }
        return 0;
    case 10: { /* ethernet adapter */
        if (c->out->nnics == OVF_MAX_NICS)
            return bad(c, it, "more than %d network adapters", OVF_MAX_NICS);
        struct ovf_nic *nic = &c->out->nics[c->out->nnics];
        memset(nic, 0, sizeof *nic);
        memcpy(nic->network, conn, sizeof nic->network);
        snprintf(nic->subtype, sizeof nic->subtype, "%.31s", sub);
        if (addr[0]) {
            if (!text_mac_valid(addr))
                return bad(c, it, "Address \"%s\" is not a MAC address (xx:xx:xx:xx:xx:xx)", addr);
            for (int i = 0; i < 17; i++)
                nic->mac[i] = i % 3 == 2 ? ':' : (char)tolower((unsigned char)addr[i]);
        }
        c->out->nnics++;
        return 0;
    }
    case 15:
    case 16:
        c->out->ncdroms++;
        return 0;
    case 17: { /* disk drive */
        const char *ref = NULL;
        if (strncmp(host, "ovf:/disk/", 10) == 0)
            ref = host + 10;
        else if (strncmp(host, "/disk/", 6) == 0)
            ref = host + 6;
        if (!ref)
            return bad(c, it,
                       "HostResource \"%s\" is not ovf:/disk/ID: a disk Item must name a "
                       "Disk of the DiskSection",
                       host);
        for (unsigned i = 0; i < c->out->ndisks; i++) {
            struct ovf_disk *d = &c->out->disks[i];
            if (strcmp(d->id, ref) != 0)
                continue;
            if (d->attached)
                return bad(c, it, "disk \"%s\" is attached twice", ref);
            d->attached = true;
            for (unsigned k = 0; k < c->nctrl; k++)
                if (strcmp(c->ctrl[k].id, parent) == 0) {
                    memcpy(d->controller, c->ctrl[k].kind, sizeof d->controller);
                    memcpy(d->controller_sub, c->ctrl[k].sub, sizeof d->controller_sub);
                }
            c->out->attached[c->out->nattached++] = i;
            return 0;
        }
        return bad(c, it, "HostResource \"%s\" names no Disk of the DiskSection", host);
    }
    default:
        note(c, "hardware item %s (ResourceType %llu%s%s) has no counterpart: ignored", id,
             (unsigned long long)type, sub[0] ? ", " : "", sub);
        return 0;
    }
}

static int parse_hardware(struct ctx *c, xmlNode *hw)
{
    int rc;
    for (xmlNode *k = hw->children; k; k = k->next) {
        if (is(k, "Item") || is(k, "EthernetPortItem") || is(k, "StorageItem")) {
            if ((rc = parse_item(c, k)) < 0)
                return rc;
        } else if (is(k, "Config")) {
            char key[64], value[64];
            if ((rc = attr_str(c, k, "key", false, key, sizeof key)) < 0 ||
                (rc = attr_str(c, k, "value", false, value, sizeof value)) < 0)
                return rc;
            if (strcmp(key, "firmware") == 0) {
                if (strcasecmp(value, "efi") && strcasecmp(value, "bios"))
                    return bad(c, k, "firmware \"%s\" is neither bios nor efi", value);
                strcpy(c->out->firmware, strcasecmp(value, "efi") == 0 ? "efi" : "bios");
            }
        }
    }
    return 0;
}

/* A section ferry does not read: a note, or an error if the producer marked it required. */
static int other_section(struct ctx *c, xmlNode *s)
{
    xmlChar *req = attr(s, "required");
    bool required =
        req && (strcmp((const char *)req, "true") == 0 || strcmp((const char *)req, "1") == 0);
    xmlFree(req);
    if (required)
        return bad(c, s,
                   "section %s is marked ovf:required=\"true\" and ferry does not "
                   "understand it",
                   (const char *)s->name);
    note(c, "section %s is not used", (const char *)s->name);
    return 0;
}

static int parse_system(struct ctx *c, xmlNode *vs)
{
    int rc;
    bool hw_seen = false;
    if ((rc = child_str(c, vs, "Name", c->out->name, sizeof c->out->name)) < 0)
        return rc;
    if (!c->out->name[0] &&
        (rc = attr_str(c, vs, "id", false, c->out->name, sizeof c->out->name)) < 0)
        return rc;
    for (xmlNode *k = vs->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE || is(k, "Name") || is(k, "Info") ||
            is(k, "AnnotationSection") || is(k, "ProductSection"))
            continue;
        if (is(k, "OperatingSystemSection")) {
            char id[16];
            uint64_t v;
            if ((rc = attr_str(c, k, "id", false, id, sizeof id)) < 0 ||
                (rc = attr_str(c, k, "osType", false, c->out->os_type, sizeof c->out->os_type)) < 0)
                return rc;
            if (id[0] && text_parse_u64(id, 10, &v) == 0 && v < 65536)
                c->out->os_id = (unsigned)v;
        } else if (is(k, "VirtualHardwareSection")) {
            if (hw_seen) {
                note(c, "a second VirtualHardwareSection is ignored");
                continue;
            }
            hw_seen = true;
            if ((rc = parse_hardware(c, k)) < 0)
                return rc;
        } else if ((rc = other_section(c, k)) < 0) {
            return rc;
        }
    }
    if (!hw_seen)
        return bad(c, vs, "no VirtualHardwareSection");
    if (!c->out->vcpus)
        return bad(c, vs, "the hardware has no processor Item (ResourceType 3)");
    if (!c->out->memory_mib)
        return bad(c, vs, "the hardware has no memory Item (ResourceType 4)");
    return 0;
}

static int parse_envelope(struct ctx *c, xmlDoc *doc)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc;
    if (doc->intSubset || doc->extSubset)
        return bad(c, root, "a DOCTYPE: OVF has none, and ferry expands no entities");
    if (!is(root, "Envelope") || !root->ns ||
        (strcmp((const char *)root->ns->href, OVF_NS1) &&
         strcmp((const char *)root->ns->href, OVF_NS2)))
        return bad(c, root, "the root is not an OVF Envelope (namespace " OVF_NS1 " or 2)");
    xmlNode *vs = NULL;
    for (xmlNode *k = root->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE)
            continue;
        if (is(k, "References"))
            rc = parse_references(c, k);
        else if (is(k, "DiskSection"))
            rc = 0; /* after References: fileRef needs the files */
        else if (is(k, "NetworkSection"))
            rc = parse_networks(c, k);
        else if (is(k, "VirtualSystem"))
            rc = vs ? bad(c, k, "a second VirtualSystem: import one VM per OVF") : (vs = k, 0);
        else if (is(k, "VirtualSystemCollection"))
            rc = bad(c, k, "a VirtualSystemCollection (several VMs): export each VM on its own");
        else if (is(k, "Info") || is(k, "Strings"))
            rc = 0;
        else
            rc = other_section(c, k);
        if (rc < 0)
            return rc;
    }
    for (xmlNode *k = root->children; k; k = k->next)
        if (is(k, "DiskSection") && (rc = parse_disks(c, k)) < 0)
            return rc;
    if (!vs)
        return bad(c, root, "no VirtualSystem");
    if ((rc = parse_system(c, vs)) < 0)
        return rc;
    for (unsigned i = 0; i < c->out->ndisks; i++)
        if (!c->out->disks[i].attached)
            note(c, "disk %s is attached to no controller: ignored", c->out->disks[i].id);
    if (c->out->ncdroms)
        note(c, "%u CD/DVD drive(s) skipped: attach an ISO after the import if needed",
             c->out->ncdroms);
    return 0;
}

int ovf_parse(const char *name, const char *xml, size_t len, struct ovf *out, struct ferr *e)
{
    memset(out, 0, sizeof *out);
    strcpy(out->firmware, "bios");
    out->cores_per_socket = 1;
    struct ctx c = {.name = name, .out = out, .e = e};
    if (len > OVF_MAX_SIZE)
        return ferr_set(e, FERR_INVALID,
                        "%s: %zu bytes is too big for an OVF descriptor (at most %u)", name, len,
                        OVF_MAX_SIZE);
    if (len > INT32_MAX)
        return ferr_set(e, FERR_INVALID, "%s: too big", name);
    xmlParserCtxtPtr px = xmlNewParserCtxt();
    if (!px)
        return ferr_set(e, -ENOMEM, "%s: out of memory", name);
    xmlDoc *doc = xmlCtxtReadMemory(px, xml, (int)len, name, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    int rc;
    if (!doc) {
        const xmlError *xe = &px->lastError;
        char msg[200];
        snprintf(msg, sizeof msg, "%s", xe->message ? xe->message : "unknown error");
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = 0;
        rc = ferr_set(e, FERR_INVALID, "%s: line %d: not well-formed XML: %s", name, xe->line, msg);
        goto err_after_ctxt;
    }
    if ((rc = parse_envelope(&c, doc)) < 0)
        goto err_after_doc;
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(px);
    return 0;
err_after_doc:
    xmlFreeDoc(doc);
err_after_ctxt:
    xmlFreeParserCtxt(px);
    memset(out, 0, sizeof *out);
    return rc;
}
