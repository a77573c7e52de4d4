/* SPDX-License-Identifier: MIT */
/* Server-Sent Events framing (sse.h). */
#include "api/sse.h"

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
