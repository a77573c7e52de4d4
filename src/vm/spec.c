/* SPDX-License-Identifier: MIT */
/* The VM spec: parsing and validating it from JSON, and writing it back. */
#include "vm/spec.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfield.h"
#include "common/util.h"
#include "storage/vhd.h"

/* Above this QEMU itself refuses -m; also keeps MiB -> bytes far from overflowing. */
#define MEMORY_MAX_MIB (16ull * 1024 * 1024)
#define LABEL_KEY_MAX 63
#define LABEL_VALUE_MAX 255

_Static_assert(LABEL_KEY_MAX < sizeof(((struct vm_label *)0)->key), "label key fits");
_Static_assert(LABEL_VALUE_MAX < sizeof(((struct vm_label *)0)->value), "label value fits");

/* Field paths in messages are at most this long ("disks[7].size_mib", "labels.<63 chars>"). */
#define FIELD_MAX 96

/* Refuses members of obj that are not in the NULL-terminated list accepted. */
static int check_fields(const json_t *obj, const char *where, const char *const *accepted,
                        struct ferr *e)
{
    const char *key = jfield_unknown(obj, accepted);
    if (!key)
        return 0;
    char list[256] = "", q[80];
    size_t n = 0;
    for (size_t i = 0; accepted[i]; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", accepted[i]);
    return ferr_set(e, FERR_INVALID, "%s%sunknown field %s (accepted: %s)", where ? where : "",
                    where ? ": " : "", jfield_quote(key, q, sizeof(q)), list);
}

/* Reads an integer field into *out if it is in lo..hi (hi at most INT64_MAX). */
static int get_uint(const json_t *v, const char *field, uint64_t lo, uint64_t hi, uint64_t *out,
                    struct ferr *e)
{
    json_int_t n = 0;
    int rc = jfield_int(v, field, (json_int_t)lo, (json_int_t)hi, &n, e);
    if (rc == 0)
        *out = (uint64_t)n;
    return rc;
}

static int get_unsigned(const json_t *v, const char *field, unsigned lo, unsigned hi, unsigned *out,
                        struct ferr *e)
{
    uint64_t n = 0;
    int rc = get_uint(v, field, lo, hi, &n, e);
    if (rc == 0)
        *out = (unsigned)n;
    return rc;
}

/*
 * Reads a string field of at most max bytes into out (which has room for max + 1). Strings with
 * a NUL inside are refused: C code after us would silently cut them.
 */
static int get_string(const json_t *v, const char *field, size_t max, char *out, struct ferr *e)
{
    const char *s;
    int rc = jfield_str(v, field, &s, e);
    if (rc < 0)
        return rc;
    size_t len = strlen(s);
    if (len > max)
        return ferr_set(e, FERR_INVALID, "%s: %zu characters exceed the maximum of %zu", field, len,
                        max);
    memcpy(out, s, len + 1);
    return 0;
}

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/*
 * Absolute, no ".." or "." component, no control characters. Those rules let us compare paths
 * as strings (duplicate disks) and keep a path from walking out of a volume.
 */
static int check_abs_path(const char *p, const char *field, struct ferr *e)
{
    char q[80];
    if (p[0] != '/')
        return ferr_set(e, FERR_INVALID, "%s: %s is not an absolute path (it must start with /)",
                        field, jfield_quote(p, q, sizeof(q)));
    if (has_control_chars(p))
        return ferr_set(e, FERR_INVALID, "%s: %s contains control characters", field,
                        jfield_quote(p, q, sizeof(q)));
    for (const char *c = p; *c;) {
        while (*c == '/')
            c++;
        size_t n = strcspn(c, "/");
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return ferr_set(e, FERR_INVALID, "%s: %s must not contain \".\" or \"..\" components",
                            field, jfield_quote(p, q, sizeof(q)));
        c += n;
    }
    if (p[strlen(p) - 1] == '/')
        return ferr_set(e, FERR_INVALID, "%s: %s names a directory, not a file", field,
                        jfield_quote(p, q, sizeof(q)));
    return 0;
}

/* Lowercases and checks "xx:xx:xx:xx:xx:xx"; refuses multicast, broadcast and all-zero. */
static int check_mac(char *mac, const char *field, struct ferr *e)
{
    char q[80];
    unsigned char b[6];
    bool ok = strlen(mac) == 17;
    for (int i = 0; ok && i < 6; i++) {
        char hex[3] = {mac[i * 3], mac[i * 3 + 1], '\0'};
        for (int k = 0; k < 2; k++)
            if (!((hex[k] >= '0' && hex[k] <= '9') || (hex[k] >= 'a' && hex[k] <= 'f') ||
                  (hex[k] >= 'A' && hex[k] <= 'F')))
                ok = false;
        if (i < 5 && mac[i * 3 + 2] != ':')
            ok = false;
        if (ok)
            b[i] = (unsigned char)strtoul(hex, NULL, 16);
    }
    if (!ok)
        return ferr_set(e, FERR_INVALID,
                        "%s: %s is not a MAC address: use six hex pairs like 52:54:00:12:34:56",
                        field, jfield_quote(mac, q, sizeof(q)));
    if (b[0] & 1)
        return ferr_set(
            e, FERR_INVALID,
            "%s: %s is a multicast address: a NIC needs a unicast one (first byte even)", field,
            jfield_quote(mac, q, sizeof(q)));
    if (!(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]))
        return ferr_set(e, FERR_INVALID, "%s: 00:00:00:00:00:00 is not a usable address", field);
    for (char *c = mac; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    return 0;
}

/* Linux interface name rules, narrowed to characters that are safe on a QEMU command line. */
static bool ifname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > VM_BRIDGE_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool label_key_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LABEL_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !(c == '.' || c == '_' || c == '-' || c == '/')))
            return false;
    }
    return true;
}

static const char *const top_fields[] = {"name",
                                         "cpu",
                                         "memory_mib",
                                         "disks",
                                         "nics",
                                         "boot",
                                         "blackout_budget_ms",
                                         "priority",
                                         "labels",
                                         "machine",
                                         "ha",
                                         "display",
                                         "scsi_controller",
                                         "firmware",
                                         "efi_vars",
                                         NULL};
static const char *const cpu_fields[] = {"sockets", "cores", "threads", NULL};
static const char *const disk_fields[] = {"path", "size_mib", "type", "readonly", "bus", NULL};
static const char *const nic_fields[] = {"bridge", "mac", "model", NULL};

static const char *const bus_names[] = {"virtio", "scsi", "sata", "ide", NULL};
static const char *const model_names[] = {"virtio", "e1000", "vmxnet3", NULL};
static const char *const scsi_names[] = {"pvscsi", "lsi", NULL};
static const char *const firmware_names[] = {"bios", "efi", NULL};

static const char *name_of(const char *const *names, int v)
{
    for (int i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return "?";
}

static int parse_name(const char *const *names, const char *name)
{
    for (int i = 0; name && names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *vm_firmware_name(int firmware)
{
    return name_of(firmware_names, firmware);
}

int vm_firmware_parse(const char *name)
{
    return parse_name(firmware_names, name);
}

const char *vm_disk_bus_name(int bus)
{
    return name_of(bus_names, bus);
}

const char *vm_nic_model_name(int model)
{
    return name_of(model_names, model);
}

const char *vm_scsi_controller_name(int ctl)
{
    return name_of(scsi_names, ctl);
}

int vm_disk_bus_parse(const char *name)
{
    return parse_name(bus_names, name);
}

int vm_nic_model_parse(const char *name)
{
    return parse_name(model_names, name);
}

int vm_scsi_controller_parse(const char *name)
{
    return parse_name(scsi_names, name);
}

/* An optional string member that must be one of names; *out keeps its default when absent. */
static int get_enum(const json_t *v, const char *field, const char *const *names, int *out,
                    struct ferr *e)
{
    if (!v)
        return 0;
    char q[80];
    int k = json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
                ? parse_name(names, json_string_value(v))
                : -1;
    if (k >= 0) {
        *out = k;
        return 0;
    }
    char list[96] = "";
    for (int i = 0; names[i]; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"",
                 i == 0         ? ""
                 : names[i + 1] ? ", "
                                : " or ",
                 names[i]);
    return ferr_set(e, FERR_INVALID, "%s: expected %s, not %s", field, list,
                    json_is_string(v) ? jfield_quote(json_string_value(v), q, sizeof(q))
                                      : jfield_type(v));
}
static const char *const boot_fields[] = {"kernel", "initrd", "cmdline", NULL};

/* A member that is missing or JSON null counts as absent. */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static const char *const ha_fields[] = {"priority",
                                        "preferred",
                                        "possible",
                                        "anti_affinity",
                                        "anti_affinity_strict",
                                        "restart_max",
                                        "restart_period_s",
                                        "failback",
                                        NULL};

/* A list of node names (at most VM_HA_MAX_NODES, no repeats). */
static int ha_nodes(const json_t *v, const char *field, char out[][64], unsigned *n, struct ferr *e)
{
    *n = 0;
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > VM_HA_MAX_NODES)
        return ferr_set(e, FERR_INVALID, "ha.%s: expected a list of at most %d node names", field,
                        VM_HA_MAX_NODES);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        const char *s = json_string_value(x);
        char q[80];
        if (!s || !name_valid(s, 63) || strlen(s) != json_string_length(x))
            return ferr_set(e, FERR_INVALID, "ha.%s[%zu]: %s is not a node name", field, i,
                            s ? jfield_quote(s, q, sizeof(q)) : jfield_type(x));
        for (unsigned k = 0; k < *n; k++)
            if (strcmp(out[k], s) == 0)
                return ferr_set(e, FERR_INVALID, "ha.%s: %s is named twice", field, s);
        snprintf(out[(*n)++], 64, "%s", s);
    }
    return 0;
}

/* "never", "immediate" or a window "HH-HH" of two different hours 0..23 (it may wrap
 * midnight: 22-06). */
static bool failback_ok(const char *s)
{
    if (strcmp(s, "never") == 0 || strcmp(s, "immediate") == 0)
        return true;
    size_t n = strlen(s);
    const char *dash = strchr(s, '-');
    if (n < 3 || n > 5 || !dash || dash == s || dash - s > 2 || !dash[1] || strlen(dash + 1) > 2)
        return false;
    for (const char *p = s; *p; p++)
        if (p != dash && (*p < '0' || *p > '9'))
            return false;
    unsigned a = (unsigned)atoi(s), b = (unsigned)atoi(dash + 1);
    return a <= 23 && b <= 23 && a != b;
}

int vm_ha_from_json(const json_t *j, struct vm_ha *out, struct ferr *e)
{
    memset(out, 0, sizeof(*out));
    if (!j || json_is_null(j))
        return 0;
    int rc;
    char q[80];
    if (!json_is_object(j))
        return ferr_set(e, FERR_INVALID, "ha: expected an object, not %s", jfield_type(j));
    if ((rc = check_fields(j, "ha", ha_fields, e)) < 0)
        return rc;
    out->enabled = true;
    snprintf(out->priority, sizeof(out->priority), "medium");
    json_t *v;
    if ((v = member(j, "priority"))) {
        const char *p = json_string_value(v);
        if (!p ||
            (strcmp(p, "high") && strcmp(p, "medium") && strcmp(p, "low") && strcmp(p, "none")))
            return ferr_set(e, FERR_INVALID,
                            "ha.priority: expected high, medium, low or none (never started by "
                            "HA), not %s",
                            p ? jfield_quote(p, q, sizeof(q)) : jfield_type(v));
        snprintf(out->priority, sizeof(out->priority), "%s", p);
    }
    if ((rc = ha_nodes(member(j, "preferred"), "preferred", out->preferred, &out->npreferred, e)) <
            0 ||
        (rc = ha_nodes(member(j, "possible"), "possible", out->possible, &out->npossible, e)) < 0)
        return rc;
    for (unsigned i = 0; out->npossible && i < out->npreferred; i++) {
        bool in = false;
        for (unsigned k = 0; k < out->npossible; k++)
            in |= strcmp(out->preferred[i], out->possible[k]) == 0;
        if (!in)
            return ferr_set(e, FERR_INVALID,
                            "ha.preferred: %s is not one of ha.possible: a preferred node must "
                            "be a possible one",
                            out->preferred[i]);
    }
    if ((v = member(j, "anti_affinity")) && json_string_length(v) > 0) {
        const char *c = json_string_value(v);
        if (!c || !name_valid(c, 63) || strlen(c) != json_string_length(v))
            return ferr_set(e, FERR_INVALID,
                            "ha.anti_affinity: expected a class name (1-63 of a-z 0-9 -, "
                            "starting with a letter), not %s",
                            c ? jfield_quote(c, q, sizeof(q)) : jfield_type(v));
        snprintf(out->anti_affinity, sizeof(out->anti_affinity), "%s", c);
    } else if (v && !json_is_string(v)) {
        return ferr_set(e, FERR_INVALID, "ha.anti_affinity: expected a class name, not %s",
                        jfield_type(v));
    }
    if ((v = member(j, "anti_affinity_strict"))) {
        if (!json_is_boolean(v))
            return ferr_set(e, FERR_INVALID, "ha.anti_affinity_strict: expected true or false");
        out->anti_affinity_strict = json_is_true(v);
    }
    out->restart_max = VM_HA_DEFAULT_RESTART_MAX;
    out->restart_period_s = VM_HA_DEFAULT_PERIOD_S;
    if (((v = member(j, "restart_max")) &&
         (rc = get_unsigned(v, "ha.restart_max", 0, VM_HA_MAX_RESTART_MAX, &out->restart_max, e)) <
             0) ||
        ((v = member(j, "restart_period_s")) &&
         (rc = get_unsigned(v, "ha.restart_period_s", 1, VM_HA_MAX_PERIOD_S, &out->restart_period_s,
                            e)) < 0))
        return rc;
    snprintf(out->failback, sizeof(out->failback), "never");
    if ((v = member(j, "failback"))) {
        const char *f = json_string_value(v);
        if (!f || !failback_ok(f))
            return ferr_set(e, FERR_INVALID,
                            "ha.failback: expected never, immediate or a window of hours HH-HH "
                            "(0..23, two different hours; 22-06 wraps midnight), not %s",
                            f ? jfield_quote(f, q, sizeof(q)) : jfield_type(v));
        snprintf(out->failback, sizeof(out->failback), "%s", f);
    }
    return 0;
}

json_t *vm_ha_to_json(const struct vm_ha *ha)
{
    json_t *pref = json_array(), *poss = json_array();
    for (unsigned i = 0; pref && i < ha->npreferred; i++)
        json_array_append_new(pref, json_string(ha->preferred[i]));
    for (unsigned i = 0; poss && i < ha->npossible; i++)
        json_array_append_new(poss, json_string(ha->possible[i]));
    if (!pref || !poss) {
        json_decref(pref);
        json_decref(poss);
        return NULL;
    }
    return json_pack("{ss so so ss sb si si ss}", "priority", ha->priority, "preferred", pref,
                     "possible", poss, "anti_affinity", ha->anti_affinity, "anti_affinity_strict",
                     ha->anti_affinity_strict, "restart_max", (int)ha->restart_max,
                     "restart_period_s", (int)ha->restart_period_s, "failback", ha->failback);
}

static int parse_cpu(const json_t *cpu, struct vm_spec *s, struct ferr *e)
{
    s->sockets = s->cores = s->threads = 1;
    if (!cpu)
        return 0;
    if (!json_is_object(cpu))
        return ferr_set(e, FERR_INVALID,
                        "cpu: expected an object like {\"sockets\": 1, "
                        "\"cores\": 2, \"threads\": 1}, not %s",
                        jfield_type(cpu));
    int rc = check_fields(cpu, "cpu", cpu_fields, e);
    json_t *v;
    if (rc == 0 && (v = member(cpu, "sockets")))
        rc = get_unsigned(v, "cpu.sockets", 1, VM_MAX_SOCKETS, &s->sockets, e);
    if (rc == 0 && (v = member(cpu, "cores")))
        rc = get_unsigned(v, "cpu.cores", 1, VM_MAX_CORES, &s->cores, e);
    if (rc == 0 && (v = member(cpu, "threads")))
        rc = get_unsigned(v, "cpu.threads", 1, VM_MAX_THREADS, &s->threads, e);
    if (rc == 0 && vm_spec_vcpus(s) > VM_MAX_VCPUS)
        rc =
            ferr_set(e, FERR_INVALID,
                     "cpu: %u sockets x %u cores x %u threads = %u vCPUs exceeds the maximum of %u",
                     s->sockets, s->cores, s->threads, vm_spec_vcpus(s), VM_MAX_VCPUS);
    return rc;
}

static int parse_disk(const json_t *d, unsigned i, const struct vm_spec_env *env, struct vm_spec *s,
                      struct ferr *e)
{
    char where[32], field[FIELD_MAX], q[80];
    struct vm_disk *disk = &s->disks[i];
    snprintf(where, sizeof(where), "disks[%u]", i);
    if (!json_is_object(d))
        return ferr_set(e, FERR_INVALID,
                        "%s: expected an object like {\"path\": \"/csv/vm.vhd\"}, "
                        "not %s",
                        where, jfield_type(d));
    int rc = check_fields(d, where, disk_fields, e);
    if (rc < 0)
        return rc;

    json_t *v = member(d, "path");
    snprintf(field, sizeof(field), "%s.path", where);
    if (!v)
        return ferr_set(e, FERR_INVALID, "%s: missing (the absolute path of a VHD file)", field);
    if ((rc = get_string(v, field, VM_PATH_MAX - 1, disk->path, e)) < 0 ||
        (rc = check_abs_path(disk->path, field, e)) < 0)
        return rc;
    for (unsigned k = 0; k < i; k++)
        if (strcmp(s->disks[k].path, disk->path) == 0)
            return ferr_set(e, FERR_INVALID, "%s: %s is already used by disks[%u]", field,
                            jfield_quote(disk->path, q, sizeof(q)), k);

    disk->size_mib = 0;
    if ((v = member(d, "size_mib"))) {
        snprintf(field, sizeof(field), "%s.size_mib", where);
        if ((rc = get_uint(v, field, 1, VHD_MAX_SIZE_MIB, &disk->size_mib, e)) < 0)
            return rc;
    }
    disk->dynamic = false;
    if ((v = member(d, "type"))) {
        const char *t = json_string_value(v);
        if (!t || (strcmp(t, "fixed") != 0 && strcmp(t, "dynamic") != 0))
            return ferr_set(e, FERR_INVALID, "%s.type: expected \"fixed\" or \"dynamic\"",
                            where);
        if (!disk->size_mib)
            return ferr_set(e, FERR_INVALID,
                            "%s.type: only for a disk to create (give size_mib), an existing "
                            "file is used as it is",
                            where);
        disk->dynamic = strcmp(t, "dynamic") == 0;
    }
    disk->readonly = false;
    if ((v = member(d, "readonly"))) {
        if (!json_is_boolean(v))
            return ferr_set(e, FERR_INVALID, "%s.readonly: expected true or false, not %s", where,
                            jfield_type(v));
        disk->readonly = json_is_true(v);
    }
    if (disk->readonly && disk->size_mib)
        return ferr_set(e, FERR_INVALID,
                        "%s.size_mib: a readonly disk cannot be created (it would "
                        "stay empty); drop size_mib or readonly",
                        where);
    disk->bus = VM_BUS_VIRTIO;
    snprintf(field, sizeof(field), "%s.bus", where);
    if ((rc = get_enum(member(d, "bus"), field, bus_names, &disk->bus, e)) < 0)
        return rc;

    /* Host checks last, so that format errors are reported even where the hooks are absent. */
    snprintf(field, sizeof(field), "%s.path", where);
    char dir[VM_PATH_MAX];
    strcpy(dir, disk->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (env && env->dir_exists && !env->dir_exists(dir, env->data))
        return ferr_set(e, FERR_INVALID, "%s: directory %s does not exist", field, dir);
    if (env && env->file_exists && disk->size_mib == 0 && !env->file_exists(disk->path, env->data))
        return ferr_set(e, FERR_INVALID,
                        "%s: file %s does not exist (give size_mib to create a new disk)", field,
                        disk->path);
    return 0;
}

typedef int (*item_parser)(const json_t *item, unsigned i, const struct vm_spec_env *env,
                           struct vm_spec *s, struct ferr *e);

/* An optional array of at most max items ("disk objects"), each parsed by parse; *count
 * counts the items parsed so far (an item's parser sees the ones before it). */
static int parse_array(const json_t *arr, const char *field, const char *items, unsigned max,
                       item_parser parse, const struct vm_spec_env *env, struct vm_spec *s,
                       unsigned *count, struct ferr *e)
{
    *count = 0;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return ferr_set(e, FERR_INVALID, "%s: expected an array of %s objects, not %s", field,
                        items, jfield_type(arr));
    if (json_array_size(arr) > max)
        return ferr_set(e, FERR_INVALID, "%s: %zu %ss exceed the maximum of %u", field,
                        json_array_size(arr), items, max);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        int rc = parse(json_array_get(arr, i), (unsigned)i, env, s, e);
        if (rc < 0)
            return rc;
        (*count)++;
    }
    return 0;
}

static int parse_nic(const json_t *n, unsigned i, const struct vm_spec_env *env, struct vm_spec *s,
                     struct ferr *e)
{
    char where[32], field[FIELD_MAX], q[80];
    struct vm_nic *nic = &s->nics[i];
    snprintf(where, sizeof(where), "nics[%u]", i);
    if (!json_is_object(n))
        return ferr_set(e, FERR_INVALID,
                        "%s: expected an object like {\"bridge\": \"br0\"}, not %s", where,
                        jfield_type(n));
    int rc = check_fields(n, where, nic_fields, e);
    if (rc < 0)
        return rc;

    json_t *v = member(n, "bridge");
    snprintf(field, sizeof(field), "%s.bridge", where);
    if (!v)
        return ferr_set(e, FERR_INVALID, "%s: missing (the host bridge the NIC joins)", field);
    if (!json_is_string(v))
        return ferr_set(e, FERR_INVALID, "%s: expected a string, not %s", field, jfield_type(v));
    if (!ifname_valid(json_string_value(v)) ||
        strlen(json_string_value(v)) != json_string_length(v))
        return ferr_set(e, FERR_INVALID, "%s: %s is invalid: use 1-%d of A-Z a-z 0-9 _ . -", field,
                        jfield_quote(json_string_value(v), q, sizeof(q)), VM_BRIDGE_MAX);
    strcpy(nic->bridge, json_string_value(v));

    snprintf(field, sizeof(field), "%s.mac", where);
    if ((v = member(n, "mac"))) {
        if (!json_is_string(v))
            return ferr_set(e, FERR_INVALID,
                            "%s: expected a string like \"52:54:00:12:34:56\", "
                            "not %s",
                            field, jfield_type(v));
        const char *m = json_string_value(v);
        if (strlen(m) != 17 || json_string_length(v) != 17)
            return ferr_set(e, FERR_INVALID,
                            "%s: %s is not a MAC address: use six hex pairs like 52:54:00:12:34:56",
                            field, jfield_quote(m, q, sizeof(q)));
        strcpy(nic->mac, m);
        if ((rc = check_mac(nic->mac, field, e)) < 0)
            return rc;
    } else {
        vm_spec_gen_mac(s->name, i, nic->mac);
    }
    nic->model = VM_NIC_VIRTIO;
    snprintf(field, sizeof(field), "%s.model", where);
    if ((rc = get_enum(member(n, "model"), field, model_names, &nic->model, e)) < 0)
        return rc;
    snprintf(field, sizeof(field), "%s.mac", where);
    for (unsigned k = 0; k < i; k++)
        if (strcmp(s->nics[k].mac, nic->mac) == 0)
            return ferr_set(e, FERR_INVALID, "%s: %s is already used by nics[%u]", field, nic->mac,
                            k);

    if (env && env->bridge_exists && !env->bridge_exists(nic->bridge, env->data))
        return ferr_set(e, FERR_INVALID, "%s.bridge: bridge %s does not exist", where, nic->bridge);
    return 0;
}

static int parse_boot_file(const json_t *v, const char *field, const struct vm_spec_env *env,
                           char out[VM_PATH_MAX], struct ferr *e)
{
    int rc = get_string(v, field, VM_PATH_MAX - 1, out, e);
    if (rc == 0)
        rc = check_abs_path(out, field, e);
    if (rc == 0 && env && env->file_exists && !env->file_exists(out, env->data))
        rc = ferr_set(e, FERR_INVALID, "%s: file %s does not exist", field, out);
    return rc;
}

static int parse_boot(const json_t *boot, const struct vm_spec_env *env, struct vm_spec *s,
                      struct ferr *e)
{
    s->boot.kernel[0] = s->boot.initrd[0] = s->boot.cmdline[0] = '\0';
    if (!boot)
        return 0;
    if (!json_is_object(boot))
        return ferr_set(e, FERR_INVALID,
                        "boot: expected an object like {\"kernel\": "
                        "\"/csv/vmlinuz\"}, not %s",
                        jfield_type(boot));
    int rc = check_fields(boot, "boot", boot_fields, e);
    if (rc < 0)
        return rc;
    json_t *kernel = member(boot, "kernel"), *initrd = member(boot, "initrd"),
           *cmdline = member(boot, "cmdline");
    if (kernel && (rc = parse_boot_file(kernel, "boot.kernel", env, s->boot.kernel, e)) < 0)
        return rc;
    if (initrd) {
        if (!kernel)
            return ferr_set(e, FERR_INVALID, "boot.initrd: needs boot.kernel as well");
        if ((rc = parse_boot_file(initrd, "boot.initrd", env, s->boot.initrd, e)) < 0)
            return rc;
    }
    if (cmdline) {
        if (!kernel)
            return ferr_set(e, FERR_INVALID, "boot.cmdline: needs boot.kernel as well");
        if ((rc = get_string(cmdline, "boot.cmdline", VM_CMDLINE_MAX - 1, s->boot.cmdline, e)) < 0)
            return rc;
        if (has_control_chars(s->boot.cmdline))
            return ferr_set(e, FERR_INVALID,
                            "boot.cmdline: must not contain control characters "
                            "(newlines, tabs)");
    }
    return 0;
}

static int parse_labels(const json_t *labels, struct vm_spec *s, struct ferr *e)
{
    char q[80], field[FIELD_MAX];
    s->nlabels = 0;
    if (!labels)
        return 0;
    if (!json_is_object(labels))
        return ferr_set(e, FERR_INVALID,
                        "labels: expected an object of strings like "
                        "{\"tier\": \"web\"}, not %s",
                        jfield_type(labels));
    if (json_object_size(labels) > VM_MAX_LABELS)
        return ferr_set(e, FERR_INVALID, "labels: %zu labels exceed the maximum of %d",
                        json_object_size(labels), VM_MAX_LABELS);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)labels, key, v)
    {
        struct vm_label *l = &s->labels[s->nlabels];
        if (!label_key_valid(key))
            return ferr_set(e, FERR_INVALID,
                            "labels: key %s is invalid: use 1-%d of a-z A-Z 0-9 . _ - /, "
                            "starting with a letter or digit",
                            jfield_quote(key, q, sizeof(q)), LABEL_KEY_MAX);
        snprintf(field, sizeof(field), "labels.%s", key);
        int rc = get_string(v, field, LABEL_VALUE_MAX, l->value, e);
        if (rc < 0)
            return rc;
        if (has_control_chars(l->value))
            return ferr_set(e, FERR_INVALID, "%s: must not contain control characters", field);
        strcpy(l->key, key);
        s->nlabels++;
    }
    return 0;
}

/* The disks' buses against what the machine has room for, and the SCSI controller. */
static int check_buses(const json_t *j, struct vm_spec *out, struct ferr *e)
{
    unsigned n[4] = {0};
    for (unsigned i = 0; i < out->ndisks; i++)
        n[out->disks[i].bus]++;
    json_t *v = member(j, "scsi_controller");
    out->scsi_controller = VM_SCSI_PVSCSI;
    if (v && n[VM_BUS_SCSI] == 0)
        return ferr_set(e, FERR_INVALID,
                        "scsi_controller: no disk is on bus \"scsi\" (drop scsi_controller or "
                        "put a disk on it)");
    int rc = get_enum(v, "scsi_controller", scsi_names, &out->scsi_controller, e);
    if (rc < 0)
        return rc;
    if (out->scsi_controller == VM_SCSI_LSI && n[VM_BUS_SCSI] > VM_MAX_LSI_DISKS)
        return ferr_set(e, FERR_INVALID,
                        "disks: %u disks on bus \"scsi\" exceed the %d an lsi controller takes "
                        "(use scsi_controller \"pvscsi\")",
                        n[VM_BUS_SCSI], VM_MAX_LSI_DISKS);
    if (n[VM_BUS_SATA] > VM_MAX_SATA_DISKS)
        return ferr_set(e, FERR_INVALID,
                        "disks: %u disks on bus \"sata\" exceed the %d ports of its AHCI "
                        "controller",
                        n[VM_BUS_SATA], VM_MAX_SATA_DISKS);
    if (n[VM_BUS_IDE] > VM_MAX_IDE_DISKS)
        return ferr_set(e, FERR_INVALID,
                        "disks: %u disks on bus \"ide\" exceed the %d IDE units (2 buses x 2) "
                        "(put the others on sata or scsi)",
                        n[VM_BUS_IDE], VM_MAX_IDE_DISKS);
    if (n[VM_BUS_IDE] && strstr(out->machine, "q35"))
        return ferr_set(e, FERR_INVALID,
                        "disks: bus \"ide\" needs an i440fx (pc) machine, %s has no IDE "
                        "controller (use bus \"sata\")",
                        out->machine);
    return 0;
}

/* "firmware" and, for efi, "efi_vars": the variable store's file, by default NAME-efivars.fd
 * next to the first disk (where every node that reaches the disk reaches it too). Needs the
 * name and the disks parsed. */
static int parse_firmware(const json_t *j, const struct vm_spec_env *env, struct vm_spec *out,
                          struct ferr *e)
{
    char q[80];
    json_t *v = member(j, "efi_vars");
    int rc = get_enum(member(j, "firmware"), "firmware", firmware_names, &out->firmware, e);
    if (rc < 0)
        return rc;
    /* OVMF needs room of its own before a kernel is loaded: measured with the appliance (a
     * 5 MiB kernel and initramfs) under QEMU 10.0, 128 MiB resets the VM, 144 MiB stops OVMF
     * at an exception, 160 MiB boots; the floor leaves room for a distribution's kernel and
     * initramfs. memory_mib is parsed before. */
    if (out->firmware == VM_FIRMWARE_EFI && out->memory_mib < VM_EFI_MIN_MEMORY_MIB)
        return ferr_set(e, FERR_INVALID,
                        "memory_mib: %" PRIu64 " MiB is too little for EFI firmware (OVMF crashes "
                        "below about 160 MiB); give at least %d, or firmware bios",
                        out->memory_mib, VM_EFI_MIN_MEMORY_MIB);
    if (out->firmware != VM_FIRMWARE_EFI) {
        if (v)
            return ferr_set(e, FERR_INVALID,
                            "efi_vars: only for firmware \"efi\" (a BIOS VM has no EFI "
                            "variables)");
        return 0;
    }
    if (v) {
        if ((rc = get_string(v, "efi_vars", VM_PATH_MAX - 1, out->efi_vars, e)) < 0 ||
            (rc = check_abs_path(out->efi_vars, "efi_vars", e)) < 0)
            return rc;
    } else if (out->ndisks == 0) {
        return ferr_set(e, FERR_INVALID,
                        "efi_vars: missing: an EFI VM without disks needs a file for its EFI "
                        "variables, on a volume every node reaches (give efi_vars)");
    } else {
        const char *d = out->disks[0].path, *slash = strrchr(d, '/');
        int n = snprintf(out->efi_vars, sizeof(out->efi_vars), "%.*s/%s-efivars.fd",
                         (int)(slash - d), d, out->name);
        if (n < 0 || (size_t)n >= sizeof(out->efi_vars))
            return ferr_set(e, FERR_INVALID,
                            "efi_vars: %s-efivars.fd next to disks[0] makes a path longer than "
                            "%d (give efi_vars)",
                            out->name, VM_PATH_MAX - 1);
    }
    for (unsigned i = 0; i < out->ndisks; i++)
        if (strcmp(out->disks[i].path, out->efi_vars) == 0)
            return ferr_set(e, FERR_INVALID, "efi_vars: %s is disks[%u]'s file",
                            jfield_quote(out->efi_vars, q, sizeof(q)), i);
    if (out->boot.kernel[0] && strcmp(out->boot.kernel, out->efi_vars) == 0)
        return ferr_set(e, FERR_INVALID, "efi_vars: %s is the boot kernel",
                        jfield_quote(out->efi_vars, q, sizeof(q)));
    char dir[VM_PATH_MAX];
    strcpy(dir, out->efi_vars);
    char *slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0';
    if (env && env->dir_exists && !env->dir_exists(dir, env->data))
        return ferr_set(e, FERR_INVALID, "efi_vars: directory %s does not exist", dir);
    return 0;
}

int vm_spec_from_json(const json_t *j, const struct vm_spec_env *env, struct vm_spec *out,
                      struct ferr *e)
{
    char q[80];
    int rc;
    if (!json_is_object(j))
        return ferr_set(e, FERR_INVALID, "spec: expected a JSON object at the top level, not %s",
                        j ? jfield_type(j) : "nothing");
    memset(out, 0, sizeof(*out));
    if ((rc = check_fields(j, NULL, top_fields, e)) < 0)
        return rc;

    /* The name comes first: generated MACs depend on it. */
    json_t *v = member(j, "name");
    if (!v)
        return ferr_set(e, FERR_INVALID,
                        "name: missing (1-%d of a-z 0-9 -, starting with a letter)", VM_NAME_MAX);
    if (!json_is_string(v))
        return ferr_set(e, FERR_INVALID, "name: expected a string, not %s", jfield_type(v));
    if (!name_valid(json_string_value(v), VM_NAME_MAX) ||
        strlen(json_string_value(v)) != json_string_length(v))
        return ferr_set(e, FERR_INVALID,
                        "name: %s is invalid: use 1-%d of a-z 0-9 -, starting "
                        "with a letter and not ending with -",
                        jfield_quote(json_string_value(v), q, sizeof(q)), VM_NAME_MAX);
    strcpy(out->name, json_string_value(v));

    if ((v = member(j, "machine"))) {
        const char *mt = json_string_value(v);
        size_t n = mt ? strlen(mt) : 0;
        bool ok = mt && n > 0 && n <= VM_MACHINE_MAX && n == json_string_length(v);
        for (size_t i = 0; ok && i < n; i++)
            ok = (mt[i] >= 'a' && mt[i] <= 'z') || (mt[i] >= 'A' && mt[i] <= 'Z') ||
                 (mt[i] >= '0' && mt[i] <= '9') || mt[i] == '.' || mt[i] == '-' || mt[i] == '_';
        if (!ok)
            return ferr_set(e, FERR_INVALID,
                            "machine: expected a QEMU machine type (1-%d of "
                            "a-z A-Z 0-9 . - _, e.g. pc-i440fx-7.2), not %s",
                            VM_MACHINE_MAX, mt ? jfield_quote(mt, q, sizeof(q)) : jfield_type(v));
        if (env && env->machine_known && !env->machine_known(mt, env->data))
            return ferr_set(e, FERR_INVALID,
                            "machine: this host's QEMU has no machine type %s "
                            "(qemu-system-x86_64 -machine help lists them)",
                            jfield_quote(mt, q, sizeof(q)));
        strcpy(out->machine, mt);
    }

    if ((v = member(j, "display"))) {
        const char *d = json_string_value(v);
        if (d && strcmp(d, "vga") == 0)
            out->display = VM_DISPLAY_VGA;
        else if (!d || strcmp(d, "none") != 0)
            return ferr_set(e, FERR_INVALID, "display: expected \"vga\" or \"none\", not %s",
                            d ? jfield_quote(d, q, sizeof(q)) : jfield_type(v));
    }

    if ((rc = parse_cpu(member(j, "cpu"), out, e)) < 0)
        return rc;

    if (!(v = member(j, "memory_mib")))
        return ferr_set(e, FERR_INVALID,
                        "memory_mib: missing (the VM's memory in MiB, at least %d)",
                        VM_MIN_MEMORY_MIB);
    /* The range shown is the one that applies here: up to the host's memory when it is known. */
    uint64_t host = env ? env->host_memory_mib : 0;
    uint64_t max = host && host < MEMORY_MAX_MIB ? host : MEMORY_MAX_MIB;
    json_int_t mem = 0;
    if ((rc = jfield_int(v, "memory_mib", LLONG_MIN, LLONG_MAX, &mem, e)) < 0)
        return rc;
    if (host && mem > 0 && (uint64_t)mem > host && mem >= VM_MIN_MEMORY_MIB)
        return ferr_set(e, FERR_INVALID,
                        "memory_mib: %" JSON_INTEGER_FORMAT " exceeds the host's %" PRIu64 " MiB",
                        mem, host);
    if (mem < VM_MIN_MEMORY_MIB || (uint64_t)mem > max)
        return ferr_set(e, FERR_INVALID,
                        "memory_mib: %" JSON_INTEGER_FORMAT " is out of range %d..%" PRIu64, mem,
                        VM_MIN_MEMORY_MIB, max);
    out->memory_mib = (uint64_t)mem;

    if ((rc = parse_array(member(j, "disks"), "disks", "disk", VM_MAX_DISKS, parse_disk, env, out,
                          &out->ndisks, e)) < 0 ||
        (rc = parse_array(member(j, "nics"), "nics", "NIC", VM_MAX_NICS, parse_nic, env, out,
                          &out->nnics, e)) < 0 ||
        (rc = parse_boot(member(j, "boot"), env, out, e)) < 0)
        return rc;
    if (!out->boot.kernel[0] && out->ndisks == 0)
        return ferr_set(e, FERR_INVALID,
                        "disks: at least one disk is needed to boot from when "
                        "boot.kernel is not set");
    if ((rc = check_buses(j, out, e)) < 0 || (rc = parse_firmware(j, env, out, e)) < 0)
        return rc;

    out->blackout_budget_ms = VM_DEFAULT_BUDGET_MS;
    if ((v = member(j, "blackout_budget_ms")) &&
        (rc = get_unsigned(v, "blackout_budget_ms", VM_MIN_BUDGET_MS, VM_MAX_BUDGET_MS,
                           &out->blackout_budget_ms, e)) < 0)
        return rc;
    out->priority = VM_DEFAULT_PRIORITY;
    if ((v = member(j, "priority")) &&
        (rc = get_unsigned(v, "priority", 0, VM_MAX_PRIORITY, &out->priority, e)) < 0)
        return rc;
    if ((rc = vm_ha_from_json(member(j, "ha"), &out->ha, e)) < 0)
        return rc;
    return parse_labels(member(j, "labels"), out, e);
}

/* json_object_set_new that remembers a failure, so building stays a flat list of calls. */
static void set(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(obj, key, v) < 0)
        *ok = false;
}

static void append(json_t *arr, json_t *v, bool *ok)
{
    if (!v || json_array_append_new(arr, v) < 0)
        *ok = false;
}

json_t *vm_spec_to_json(const struct vm_spec *s)
{
    bool ok = true, scsi = false;
    json_t *j = json_object(), *cpu = json_object(), *disks = json_array(), *nics = json_array(),
           *labels = json_object();
    if (!j) {
        json_decref(cpu);
        json_decref(disks);
        json_decref(nics);
        json_decref(labels);
        return NULL;
    }
    set(j, "name", json_string(s->name), &ok);
    if (s->machine[0])
        set(j, "machine", json_string(s->machine), &ok);
    if (s->display == VM_DISPLAY_VGA) /* "none" is left out: older nodes still read the spec */
        set(j, "display", json_string("vga"), &ok);
    if (cpu) {
        set(cpu, "sockets", json_integer(s->sockets), &ok);
        set(cpu, "cores", json_integer(s->cores), &ok);
        set(cpu, "threads", json_integer(s->threads), &ok);
    }
    set(j, "cpu", cpu, &ok);
    set(j, "memory_mib", json_integer((json_int_t)s->memory_mib), &ok);
    for (unsigned i = 0; disks && i < s->ndisks; i++) {
        json_t *d = json_object();
        if (d) {
            set(d, "path", json_string(s->disks[i].path), &ok);
            if (s->disks[i].size_mib)
                set(d, "size_mib", json_integer((json_int_t)s->disks[i].size_mib), &ok);
            if (s->disks[i].dynamic)
                set(d, "type", json_string("dynamic"), &ok);
            set(d, "readonly", json_boolean(s->disks[i].readonly), &ok);
            if (s->disks[i].bus != VM_BUS_VIRTIO) /* left out: older nodes still read it */
                set(d, "bus", json_string(vm_disk_bus_name(s->disks[i].bus)), &ok);
            if (s->disks[i].bus == VM_BUS_SCSI)
                scsi = true;
        }
        append(disks, d, &ok);
    }
    set(j, "disks", disks, &ok);
    if (scsi)
        set(j, "scsi_controller", json_string(vm_scsi_controller_name(s->scsi_controller)), &ok);
    for (unsigned i = 0; nics && i < s->nnics; i++) {
        json_t *n = json_object();
        if (n) {
            set(n, "bridge", json_string(s->nics[i].bridge), &ok);
            set(n, "mac", json_string(s->nics[i].mac), &ok);
            if (s->nics[i].model != VM_NIC_VIRTIO)
                set(n, "model", json_string(vm_nic_model_name(s->nics[i].model)), &ok);
        }
        append(nics, n, &ok);
    }
    set(j, "nics", nics, &ok);
    if (s->boot.kernel[0]) {
        json_t *b = json_object();
        if (b) {
            set(b, "kernel", json_string(s->boot.kernel), &ok);
            if (s->boot.initrd[0])
                set(b, "initrd", json_string(s->boot.initrd), &ok);
            if (s->boot.cmdline[0])
                set(b, "cmdline", json_string(s->boot.cmdline), &ok);
        }
        set(j, "boot", b, &ok);
    }
    set(j, "blackout_budget_ms", json_integer(s->blackout_budget_ms), &ok);
    set(j, "priority", json_integer(s->priority), &ok);
    for (unsigned i = 0; labels && i < s->nlabels; i++)
        set(labels, s->labels[i].key, json_string(s->labels[i].value), &ok);
    set(j, "labels", labels, &ok);
    if (s->ha.enabled)
        set(j, "ha", vm_ha_to_json(&s->ha), &ok);
    if (s->firmware == VM_FIRMWARE_EFI) { /* "bios" is left out: older nodes still read it */
        set(j, "firmware", json_string("efi"), &ok);
        set(j, "efi_vars", json_string(s->efi_vars), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

unsigned vm_spec_vcpus(const struct vm_spec *s)
{
    return s->sockets * s->cores * s->threads;
}

void vm_spec_gen_mac(const char *name, unsigned idx, char mac[18])
{
    /* FNV-1a over the name, a separator and the index: stable across hosts and restarts. */
    uint32_t h = 2166136261u;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (int i = 0; i < 4; i++)
        h = (h ^ ((idx >> (8 * i)) & 0xffu)) * 16777619u;
    snprintf(mac, 18, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xffu, (h >> 8) & 0xffu, h & 0xffu);
}
