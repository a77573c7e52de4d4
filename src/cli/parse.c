/* SPDX-License-Identifier: MIT */
/* The CLI's argument parsers: numbers, sizes, absolute paths; they print nothing, need no ferryd.
 */
#include "cli/parse.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
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
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -1;
        *mib = v * units[i].mult;
        return 0;
    }
    return -1;
}

int cli_abspath(const char *path, char *out, size_t size)
{
    char dir[PATH_MAX], resolved[PATH_MAX], cwd[PATH_MAX];
    if (path[0] == '/') {
        if (strlen(path) >= size)
            return -ENAMETOOLONG;
        strcpy(out, path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        if ((size_t)(slash - path) >= sizeof(dir))
            return -ENAMETOOLONG;
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
        n = snprintf(out, size, "%s", path);
    }
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
