/* SPDX-License-Identifier: MIT */
/* The CLI's argument parsers: numbers, sizes, paths, disks, NICs, addresses; they print nothing. */
#include "cli/parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

static bool is_utf8(const char *s)
{
    size_t n = strlen(s);
    return utf8_valid_len(s, n) == n;
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    /* Only a digit may come first: strtoull would skip any whitespace and then take a sign. */
    if (!s || !(*s >= '0' && *s <= '9'))
        return FERR_INVALID;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return FERR_INVALID;
    *out = v;
    return 0;
}

int cli_parse_size_mib(const char *s, uint64_t *mib)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},      {"m", 1},      {"mb", 1},          {"mib", 1},          {"g", 1024},
        {"gb", 1024}, {"gib", 1024}, {"t", 1024 * 1024}, {"tb", 1024 * 1024}, {"tib", 1024 * 1024},
    };
    if (!s || !(*s >= '0' && *s <= '9'))
        return FERR_INVALID;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return FERR_INVALID;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return FERR_INVALID;
        *mib = v * units[i].mult;
        return 0;
    }
    return FERR_INVALID;
}

int cli_abspath(const char *path, char *out, size_t size, struct ferr *e)
{
    char dir[PATH_MAX], resolved[PATH_MAX], cwd[PATH_MAX];
    if (path[0] == '\0') /* not the current directory: "" is a missing argument */
        return ferr_set(e, FERR_INVALID, "empty path");
    if (path[0] == '/') {
        if (strlen(path) >= size)
            return ferr_set(e, -ENAMETOOLONG, "'%.80s': path is too long", path);
        strcpy(out, path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        if ((size_t)(slash - path) >= sizeof(dir))
            return ferr_set(e, -ENAMETOOLONG, "'%.80s': path is too long", path);
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int n;
    if (realpath(dir, resolved)) {
        if (base[0] == '\0' || strcmp(base, ".") == 0)
            n = snprintf(out, size, "%s", resolved);
        else
            n = snprintf(out, size, "%s%s%s", resolved, strcmp(resolved, "/") ? "/" : "", base);
    } else if (getcwd(cwd, sizeof(cwd))) {
        n = snprintf(out, size, "%s/%s", cwd, path); /* the daemon will say what is missing */
    } else {
        /* The current directory was removed, or is out of reach: a relative path would be
         * taken from ferryd's directory instead. */
        int err = errno;
        return ferr_set(e, -err, "'%.80s': cannot tell the current directory: %s", path,
                        strerror(err));
    }
    if (n < 0 || (size_t)n >= size)
        return ferr_set(e, -ENAMETOOLONG, "'%.80s': path is too long", path);
    return 0;
}

int cli_parse_disk(const char *arg, json_t **out, char *why, size_t whylen)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return -ENOMEM;
    int rc = FERR_INVALID;
    char *path = strtok_r(copy, ",", &save);
    json_t *d = json_object();
    if (!d) {
        rc = -ENOMEM;
        goto out;
    }
    if (!path || !*path || arg[0] == ',') {
        snprintf(why, whylen, "--disk '%s': a PATH is needed", arg);
        goto out;
    }
    if (!is_utf8(path)) {
        snprintf(why, whylen, "--disk: the PATH is not valid UTF-8 (ferryd takes UTF-8 paths)");
        goto out;
    }
    if (json_object_set_new(d, "path", json_string(path)) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
        uint64_t mib;
        int set;
        if (strncmp(opt, "size=", 5) == 0) {
            if (cli_parse_size_mib(opt + 5, &mib) < 0 || mib > INT64_MAX) {
                snprintf(why, whylen, "--disk: size '%s' is not a size like 1024, 512M or 2G",
                         opt + 5);
                goto out;
            }
            set = json_object_set_new(d, "size_mib", json_integer((json_int_t)mib));
        } else if (strcmp(opt, "ro") == 0 || strcmp(opt, "readonly") == 0) {
            set = json_object_set_new(d, "readonly", json_true());
        } else if (strcmp(opt, "type=fixed") == 0 || strcmp(opt, "type=dynamic") == 0) {
            set = json_object_set_new(d, "type", json_string(opt + 5));
        } else if (strcmp(opt, "bus=virtio") == 0 || strcmp(opt, "bus=scsi") == 0 ||
                   strcmp(opt, "bus=sata") == 0 || strcmp(opt, "bus=ide") == 0) {
            set = json_object_set_new(d, "bus", json_string(opt + 4));
        } else {
            snprintf(why, whylen,
                     "--disk: unknown option '%s' (size=MIB, type=fixed|dynamic, "
                     "bus=virtio|scsi|sata|ide or ro)",
                     opt);
            goto out;
        }
        if (set < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    *out = d;
    d = NULL;
    rc = 0;
out:
    json_decref(d);
    free(copy);
    return rc;
}

#define NIC_SYNTAX "expected BRIDGE[,mac=MAC][,model=virtio|e1000|vmxnet3]"

int cli_parse_nic(const char *arg, json_t **out, char *why, size_t whylen)
{
    const char *comma = strchr(arg, ',');
    size_t blen = comma ? (size_t)(comma - arg) : strlen(arg);
    if (blen == 0) {
        snprintf(why, whylen, "--nic '%s': a BRIDGE is needed", arg);
        return FERR_INVALID;
    }
    if (utf8_valid_len(arg, blen) != blen) {
        snprintf(why, whylen, "--nic: the BRIDGE is not valid UTF-8 (it is a host bridge's name)");
        return FERR_INVALID;
    }
    json_t *n = json_object();
    if (!n || json_object_set_new(n, "bridge", json_stringn(arg, blen)) < 0) {
        json_decref(n);
        return -ENOMEM;
    }
    /* Options, each once: mac=MAC (ferryd checks it), model=NAME. */
    for (const char *o = comma; o; o = strchr(o + 1, ',')) {
        const char *v = o + 1, *next = strchr(v, ',');
        size_t len = next ? (size_t)(next - v) : strlen(v);
        const char *key = strncmp(v, "mac=", 4) == 0     ? "mac"
                          : strncmp(v, "model=", 6) == 0 ? "model"
                                                         : NULL;
        size_t klen = key ? strlen(key) + 1 : 0;
        if (!key || len == klen || json_object_get(n, key)) {
            snprintf(why, whylen, "--nic '%s': " NIC_SYNTAX, arg);
            json_decref(n);
            return FERR_INVALID;
        }
        if (utf8_valid_len(v + klen, len - klen) != len - klen) {
            snprintf(why, whylen, "--nic: the %s is not valid UTF-8 (%s)",
                     key[1] == 'a' ? "MAC" : "model",
                     key[1] == 'a' ? "a MAC is like 52:54:00:12:34:56"
                                   : "virtio, e1000 or vmxnet3");
            json_decref(n);
            return FERR_INVALID;
        }
        if (json_object_set_new(n, key, json_stringn(v + klen, len - klen)) < 0) {
            json_decref(n);
            return -ENOMEM;
        }
    }
    const char *model = json_string_value(json_object_get(n, "model"));
    if (model && strcmp(model, "virtio") != 0 && strcmp(model, "e1000") != 0 &&
        strcmp(model, "vmxnet3") != 0) {
        snprintf(why, whylen, "--nic: model '%s' is not virtio, e1000 or vmxnet3", model);
        json_decref(n);
        return FERR_INVALID;
    }
    *out = n;
    return 0;
}

bool cli_ipv4_prefix_valid(const char *s)
{
    char addr[INET_ADDRSTRLEN];
    struct in_addr a;
    uint64_t bits;
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof(addr))
        return false;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    return inet_pton(AF_INET, addr, &a) == 1 && cli_parse_u64(slash + 1, 0, 32, &bits) == 0;
}

int cli_check_address(const char *s, char *why, size_t whylen)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(why, whylen, "'%s' is not an API address IP:PORT (like 10.77.0.11:7443)", s);
        return FERR_INVALID;
    }
    size_t hl = (size_t)(colon - s);
    uint64_t port;
    if (hl >= sizeof(host) || cli_parse_u64(colon + 1, 1, 65535, &port) < 0) {
        snprintf(why, whylen, "'%s': expected IP:PORT with a port in 1..65535", s);
        return FERR_INVALID;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    unsigned char bin[16];
    bool ok;
    if (host[0] == '[') {
        ok = hl > 2 && host[hl - 1] == ']';
        if (ok) {
            host[hl - 1] = '\0';
            ok = inet_pton(AF_INET6, host + 1, bin) == 1;
        }
    } else {
        ok = inet_pton(AF_INET, host, bin) == 1;
    }
    if (!ok) {
        snprintf(why, whylen, "'%s': '%.*s' is not an IPv4 address (or [IPv6])", s, (int)hl, s);
        return FERR_INVALID;
    }
    return 0;
}
