/* SPDX-License-Identifier: MIT */
/* Route matcher: splits a path into percent-decoded segments and compares them to patterns. */
#include "api/router.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* Paths deeper than this cannot match any route; patterns must stay within it. */
#define ROUTER_MAX_SEGMENTS 16

struct segments {
    size_t n;
    char v[ROUTER_MAX_SEGMENTS][ROUTER_PARAM_MAX];
};

/*
 * Decodes the len bytes at src into out (ROUTER_PARAM_MAX bytes). Refuses an empty
 * segment, a '%' not followed by two hex digits, %00, and a decoded value that does not fit.
 */
static bool segment_decode(const char *src, size_t len, char *out)
{
    size_t n = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len)
                return false;
            int hi = hex_value(src[i + 1]), lo = hex_value(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (n + 1 >= ROUTER_PARAM_MAX)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

/* Splits "/a/b%20c" into {"a", "b c"}; "/" has no segments. */
static int path_split(const char *path, struct segments *sg)
{
    sg->n = 0;
    if (!path || path[0] != '/')
        return ROUTER_BAD_PATH;
    if (path[1] == '\0')
        return ROUTER_OK;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (sg->n == ROUTER_MAX_SEGMENTS)
            return ROUTER_NOT_FOUND;
        if (!segment_decode(p, len, sg->v[sg->n]))
            return ROUTER_BAD_PATH;
        sg->n++;
        if (!slash)
            return ROUTER_OK;
        p = slash + 1;
    }
}

/* Compares pattern against the segments; on a match fills m's params. */
static bool pattern_match(const char *pattern, const struct segments *sg, struct route_match *m)
{
    const char *p = pattern;
    size_t i = 0;
    m->nparams = 0;
    assert(p[0] == '/');
    p++;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (i == sg->n)
            return false;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            size_t nlen = len - 2;
            assert(m->nparams < ROUTER_MAX_PARAMS);
            assert(nlen < sizeof(m->params[0].name));
            if (m->nparams >= ROUTER_MAX_PARAMS || nlen >= sizeof(m->params[0].name))
                return false;
            memcpy(m->params[m->nparams].name, p + 1, nlen);
            m->params[m->nparams].name[nlen] = '\0';
            strcpy(m->params[m->nparams].value, sg->v[i]);
            m->nparams++;
        } else if (strlen(sg->v[i]) != len || memcmp(sg->v[i], p, len) != 0) {
            return false;
        }
        i++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return i == sg->n;
}

int router_match(const struct route *routes, size_t n, const char *method, const char *path,
                 struct route_match *m)
{
    struct segments sg;
    memset(m, 0, sizeof(*m));
    int rc = path_split(path, &sg);
    if (rc != ROUTER_OK)
        return rc;
    bool path_known = false;
    for (size_t i = 0; i < n; i++) {
        struct route_match tmp;
        memset(&tmp, 0, sizeof(tmp));
        if (!pattern_match(routes[i].pattern, &sg, &tmp))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        *m = tmp;
        m->route = &routes[i];
        return ROUTER_OK;
    }
    return path_known ? ROUTER_BAD_METHOD : ROUTER_NOT_FOUND;
}

/* True if name is one of the space-separated words of list. */
static bool word_in(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (w == len && w > 0 && strncmp(p, name, len) == 0)
            return true;
        p += w;
    }
    return false;
}

int router_check_query(const struct route *r, const char *const *keys, size_t n, char *why,
                       size_t why_size)
{
    for (size_t i = 0; i < n; i++) {
        const char *bad = NULL;
        if (!word_in(r->query, keys[i]))
            bad = "unknown query argument";
        for (size_t j = 0; !bad && j < i; j++)
            if (strcmp(keys[j], keys[i]) == 0)
                bad = "query argument given twice:";
        if (!bad)
            continue;
        int k = snprintf(why, why_size, "%s \"%.40s\" for %s %s (", bad, keys[i], r->method,
                         r->pattern);
        if (k < 0 || (size_t)k >= why_size)
            return -1;
        size_t off = (size_t)k;
        if (!r->query || !*r->query) {
            snprintf(why + off, why_size - off, "it takes none)");
            return -1;
        }
        const char *sep = "it takes: ";
        for (const char *p = r->query; *p && off < why_size;) {
            while (*p == ' ')
                p++;
            size_t w = strcspn(p, " ");
            if (w) {
                off += (size_t)snprintf(why + off, why_size - off, "%s%.*s", sep, (int)w, p);
                sep = ", ";
            }
            p += w;
        }
        if (off < why_size)
            snprintf(why + off, why_size - off, ")");
        return -1;
    }
    return 0;
}

const char *route_param(const struct route_match *m, const char *name)
{
    for (size_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].value;
    return NULL;
}
