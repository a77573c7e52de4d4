/* SPDX-License-Identifier: MIT */
/* A JSON scanner that checks a text the way jansson's parser does, without allocating. */
#include "common/jsontext.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The text left to scan, and how deep in arrays and objects the scan is. */
struct scan {
    const unsigned char *p, *end;
    int depth;
};

static void scan_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool scan_hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned u = 0;
    if (end - p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return false;
        u = u * 16 + d;
    }
    *out = u;
    return true;
}

/* One UTF-8 sequence at s->p, the way jansson's utf8.c checks it. */
static bool scan_utf8(struct scan *s)
{
    unsigned char c = *s->p;
    int n;
    unsigned u;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        u = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        u = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        u = c & 0x07;
    } else {
        return false;
    }
    if (s->end - s->p < n)
        return false;
    for (int i = 1; i < n; i++) {
        if ((s->p[i] & 0xC0) != 0x80)
            return false;
        u = (u << 6) | (s->p[i] & 0x3F);
    }
    if ((n == 3 && u < 0x800) || (n == 4 && u < 0x10000) || (u >= 0xD800 && u <= 0xDFFF) ||
        u > 0x10FFFF)
        return false;
    s->p += n;
    return true;
}

static bool scan_string(struct scan *s)
{
    unsigned u, u2;
    s->p++; /* the opening quote */
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            if (!scan_utf8(s))
                return false;
            continue;
        }
        s->p++;
        if (c != '\\')
            continue;
        if (s->p >= s->end)
            return false;
        c = *s->p++;
        if (strchr("\"\\/bfnrt", c) && c)
            continue;
        if (c != 'u' || !scan_hex4(s->p, s->end, &u) || u == 0)
            return false;
        s->p += 4;
        if (u >= 0xDC00 && u <= 0xDFFF)
            return false;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                !scan_hex4(s->p + 2, s->end, &u2) || u2 < 0xDC00 || u2 > 0xDFFF)
                return false;
            s->p += 6;
        }
    }
    return false;
}

static bool scan_digits(struct scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

static bool scan_number(struct scan *s)
{
    const unsigned char *start = s->p;
    bool real = false;
    char buf[512];
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!(s->p < s->end && *s->p >= '1' && *s->p <= '9') || !scan_digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        real = true;
        if (!scan_digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        real = true;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!scan_digits(s))
            return false;
    }
    size_t n = (size_t)(s->p - start);
    if (!real && n > 24)
        return false; /* certainly beyond 64 bits */
    if (n >= sizeof(buf))
        return true; /* in doubt: valid */
    memcpy(buf, start, n);
    buf[n] = '\0';
    errno = 0;
    if (!real) {
        (void)strtoll(buf, NULL, 10);
        return errno != ERANGE;
    }
    double d = strtod(buf, NULL);
    return !((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE);
}

static bool scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool scan_value(struct scan *s)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    case '{':
    case '[':
        break;
    default:
        return scan_number(s);
    }
    bool object = *s->p == '{';
    unsigned char close = object ? '}' : ']';
    if (++s->depth > 2048) /* jansson's JSON_PARSER_MAX_DEPTH */
        return false;
    s->p++;
    scan_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            if (s->p >= s->end || *s->p != '"' || !scan_string(s))
                return false;
            scan_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            scan_ws(s);
        }
        if (!scan_value(s))
            return false;
        scan_ws(s);
        if (s->p >= s->end)
            return false;
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return true;
        }
        if (*s->p != ',')
            return false;
        s->p++;
        scan_ws(s);
    }
}

bool jsontext_valid(const void *buf, size_t len)
{
    struct scan s = {buf, (const unsigned char *)buf + len, 0};
    scan_ws(&s);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
        return false;
    if (!scan_value(&s))
        return false;
    scan_ws(&s);
    return s.p == s.end;
}
