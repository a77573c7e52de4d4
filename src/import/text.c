/* SPDX-License-Identifier: MIT */
/* Small text helpers shared by the import parsers (text.h). */
#include "import/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

bool text_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* windows-1252's 0x80..0x9f; the five it leaves undefined stay the C1 code points, as
 * Windows' own conversion does. */
static const uint16_t cp1252_high[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

void text_8bit_to_utf8(const char *str, size_t n, bool cp1252, char *out)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned cp = s[i];
        if (cp1252 && cp >= 0x80 && cp < 0xa0)
            cp = cp1252_high[cp - 0x80];
        if (cp < 0x80) {
            out[w++] = (char)cp;
        } else if (cp < 0x800) {
            out[w++] = (char)(0xc0 | cp >> 6);
            out[w++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[w++] = (char)(0xe0 | cp >> 12);
            out[w++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[w++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[w] = 0;
}

int text_parse_u64(const char *s, int base, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        int d = hex_value(*s);
        if (d < 0 || d >= base || v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return -1;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    *out = v;
    return 0;
}

bool text_path_inside(const char *path)
{
    if (!path[0] || path[0] == '/')
        return false;
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
            return false;
    for (const char *seg = path; seg;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 2 && seg[0] == '.' && seg[1] == '.')
            return false;
        seg = slash ? slash + 1 : NULL;
    }
    return true;
}

bool text_mac_valid(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++)
        if (i % 3 == 2 ? s[i] != ':' && s[i] != '-' : hex_value(s[i]) < 0)
            return false;
    return true;
}

int text_bad(struct ferr *e, const char *name, unsigned line, const char *fmt, ...)
{
    char what[FERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ferr_set(e, FERR_INVALID, "%s:%u: %s", name, line, what);
}
