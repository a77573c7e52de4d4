/* SPDX-License-Identifier: MIT */
/* Which file of the dashboard's directory a URL names (webpath.h). */
#include "api/webpath.h"

#include <string.h>
#include <strings.h>

#include "common/util.h"

bool webpath_is_static(const char *path)
{
    return strcmp(path, "/") == 0 || strncmp(path, "/ui/", 4) == 0;
}

int webpath_resolve(const char *path, char *rel, size_t size)
{
    if (strcmp(path, "/") == 0) {
        if (size < sizeof("index.html"))
            return -1;
        strcpy(rel, "index.html");
        return 0;
    }
    if (strncmp(path, "/ui/", 4) != 0)
        return -1;
    const char *p = path + 4;
    size_t n = 0, seg = 0; /* seg: where the current segment starts in rel */
    for (;; p++) {
        char c = *p;
        if (c == '%') {
            int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            p += 2;
            if (c == '/') /* an encoded slash is not a separator: refuse it */
                return -1;
            if (c == '\0')
                return -1;
        } else if (c == '/' || c == '\0') {
            size_t len = n - seg;
            if (len == 0) /* "//", a trailing "/", or nothing at all */
                return -1;
            if (rel[seg] == '.') /* ".", "..", hidden files */
                return -1;
            if (c == '\0')
                break;
            if (n + 1 >= size || n + 1 > WEBPATH_MAX)
                return -1;
            rel[n++] = '/';
            seg = n;
            continue;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f || c == '\\')
            return -1;
        if (n + 1 >= size || n + 1 > WEBPATH_MAX)
            return -1;
        rel[n++] = c;
    }
    rel[n] = '\0';
    return 0;
}

const char *webpath_content_type(const char *rel)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"woff2", "font/woff2"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"ico", "image/x-icon"},
    };
    const char *slash = strrchr(rel, '/');
    const char *dot = strrchr(slash ? slash + 1 : rel, '.');
    if (!dot || dot[1] == '\0')
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}
