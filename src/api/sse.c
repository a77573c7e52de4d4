/* SPDX-License-Identifier: MIT */
/* Server-Sent Events framing (sse.h). */
#include "api/sse.h"

#include "common/err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sse_event(uint64_t id, const char *type, const char *data, size_t *len)
{
    size_t dlen = data ? strlen(data) : 0, lines = 1;
    for (size_t i = 0; i < dlen; i++)
        if (data[i] == '\n' || data[i] == '\r')
            lines++;
    bool type_ok = type && *type && !strpbrk(type, "\r\n");
    size_t cap = 64 + (type_ok ? strlen(type) : 0) + dlen + lines * 7;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t n = (size_t)snprintf(buf, cap, "id: %" PRIu64 "\n", id);
    if (type_ok)
        n += (size_t)snprintf(buf + n, cap - n, "event: %s\n", type);
    memcpy(buf + n, "data: ", 6);
    n += 6;
    for (size_t i = 0; i < dlen; i++) {
        if (data[i] == '\r' || data[i] == '\n') {
            if (data[i] == '\r' && i + 1 < dlen && data[i + 1] == '\n')
                i++;
            memcpy(buf + n, "\ndata: ", 7);
            n += 7;
        } else {
            buf[n++] = data[i];
        }
    }
    buf[n++] = '\n';
    buf[n++] = '\n';
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *sse_comment(const char *text, size_t *len)
{
    size_t t = strlen(text);
    char *buf = malloc(t + 5);
    if (!buf)
        return NULL;
    buf[0] = ':';
    buf[1] = ' ';
    for (size_t i = 0; i < t; i++)
        buf[2 + i] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    memcpy(buf + 2 + t, "\n\n", 3);
    *len = t + 4;
    return buf;
}

int sse_last_id(const char *s, uint64_t *out)
{
    if (!s)
        return -1;
    while (*s == ' ' || *s == '\t')
        s++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (digits == 19)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (digits == 0 || *s)
        return -1;
    *out = v;
    return 0;
}

void sse_reader_free(struct sse_reader *r)
{
    free(r->line);
    free(r->data);
    *r = (struct sse_reader){0};
}

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *np = realloc(*p, c);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = c;
    return 0;
}

/* One whole line (NUL-terminated in r->line). */
static int line_done(struct sse_reader *r, sse_event_fn fn, void *arg)
{
    char *l = r->line ? r->line : "";
    if (r->len == 0) {
        if (r->dlen > 0) {
            r->data[--r->dlen] = '\0'; /* the last data line's \n */
            fn(r->id, r->type, r->data, arg);
        }
        r->dlen = 0;
        r->type[0] = '\0';
        return 0;
    }
    if (l[0] == ':')
        return 0;
    char *colon = strchr(l, ':');
    const char *value = "";
    if (colon) {
        *colon = '\0';
        value = colon[1] == ' ' ? colon + 2 : colon + 1;
    }
    if (strcmp(l, "data") == 0) {
        size_t vl = strlen(value);
        if (r->dlen + vl + 2 > SSE_LINE_MAX)
            return FERR_TOOBIG;
        if (grow(&r->data, &r->dcap, r->dlen + vl + 2) < 0)
            return -ENOMEM;
        memcpy(r->data + r->dlen, value, vl);
        r->dlen += vl;
        r->data[r->dlen++] = '\n';
        r->data[r->dlen] = '\0';
    } else if (strcmp(l, "event") == 0) {
        snprintf(r->type, sizeof(r->type), "%s", value);
    } else if (strcmp(l, "id") == 0) {
        uint64_t id;
        if (sse_last_id(value, &id) == 0)
            r->id = id;
    }
    return 0;
}

int sse_reader_feed(struct sse_reader *r, const char *buf, size_t n, sse_event_fn fn, void *arg)
{
    for (size_t i = 0; i < n; i++) {
        char ch = buf[i];
        if (ch == '\n' && r->cr) {
            r->cr = false;
            continue;
        }
        r->cr = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            if (grow(&r->line, &r->cap, r->len + 1) < 0)
                return -ENOMEM;
            r->line[r->len] = '\0';
            int rc = line_done(r, fn, arg);
            r->len = 0;
            if (rc < 0)
                return rc;
            continue;
        }
        if (r->len + 2 > SSE_LINE_MAX)
            return FERR_TOOBIG;
        if (grow(&r->line, &r->cap, r->len + 2) < 0)
            return -ENOMEM;
        r->line[r->len++] = ch;
    }
    return 0;
}
