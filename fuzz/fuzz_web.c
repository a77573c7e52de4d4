/* SPDX-License-Identifier: MIT */
/* What a browser sends before any login: the request path of a static file, a Cookie header,
 * an Origin and Host, a Last-Event-ID. Properties: a resolved path is relative, has no "." or
 * ".." segment, no empty segment, no backslash or control byte, and names a file type that is
 * served; a cookie value found fits its buffer and is a suffix-free copy of the header's bytes;
 * an accepted Origin names exactly the Host (scheme and host compared without case, RFC 6454). */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "api/session.h"
#include "api/sse.h"
#include "api/webpath.h"
#include "fuzz.h"

static void check_rel(const char *rel)
{
    FUZZ_ASSERT(rel[0] && rel[0] != '/');
    for (const char *p = rel; *p; p++)
        FUZZ_ASSERT((unsigned char)*p >= 0x20 && *p != '\\' && *p != 0x7f);
    const char *seg = rel;
    while (seg) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        FUZZ_ASSERT(n > 0 && seg[0] != '.'); /* no "", ".", ".." or hidden segment */
        seg = end ? end + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), rel[1024], val[256];
    FUZZ_ASSERT(s);
    memcpy(s, data, size);
    s[size] = '\0';
    if (webpath_resolve(s, rel, sizeof(rel)) == 0) {
        FUZZ_ASSERT(webpath_is_static(s));
        check_rel(rel);
    }
    if (session_cookie_value(s, SESSION_COOKIE, val, sizeof(val)))
        FUZZ_ASSERT(strlen(val) < sizeof(val) && strstr(s, val));
    /* "Origin\nHost": the two headers from one input */
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        if (session_origin_ok(s, nl + 1, false) && s[0])
            FUZZ_ASSERT(strncasecmp(s, "http://", 7) == 0 && strcasecmp(s + 7, nl + 1) == 0);
    }
    uint64_t id;
    (void)sse_last_id(s, &id);
    free(s);
    return 0;
}
