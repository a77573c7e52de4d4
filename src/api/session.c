/* SPDX-License-Identifier: MIT */
/* The dashboard's login sessions (session.h). */
#include "api/session.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

void session_table_init(struct session_table *t, unsigned ttl_s, unsigned idle_s)
{
    memset(t, 0, sizeof(*t));
    t->ttl_s = ttl_s;
    t->idle_s = idle_s;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

const struct session *session_create(struct session_table *t, const uint8_t *random,
                                     uint64_t now_ms, uint64_t now_s)
{
    struct session *slot = NULL;
    for (size_t i = 0; i < SESSION_MAX; i++) {
        struct session *s = &t->s[i];
        if (!s->used) {
            slot = s;
            break;
        }
        if (!slot || s->created_ms < slot->created_ms)
            slot = s; /* the oldest, if no slot is free */
    }
    memset(slot, 0, sizeof(*slot));
    to_hex(random, SESSION_ID_BYTES, slot->id);
    to_hex(random + SESSION_ID_BYTES, SESSION_ID_BYTES, slot->csrf);
    slot->created_ms = slot->used_ms = now_ms;
    slot->expires_at = now_s + t->ttl_s;
    slot->used = true;
    return slot;
}

int session_lookup(struct session_table *t, const char *id, uint64_t now_ms,
                   const struct session **out)
{
    if (!id || strlen(id) != SESSION_HEX - 1)
        return SESSION_UNKNOWN;
    /* Every slot is compared, so that the time taken says nothing about the ids. */
    struct session *found = NULL;
    for (size_t i = 0; i < SESSION_MAX; i++)
        if (secret_equal(id, t->s[i].id) && t->s[i].used)
            found = &t->s[i];
    if (!found)
        return SESSION_UNKNOWN;
    if (now_ms - found->created_ms >= (uint64_t)t->ttl_s * 1000) {
        found->used = false;
        return SESSION_EXPIRED;
    }
    if (now_ms - found->used_ms >= (uint64_t)t->idle_s * 1000) {
        found->used = false;
        return SESSION_IDLE;
    }
    found->used_ms = now_ms;
    *out = found;
    return 0;
}

bool session_remove(struct session_table *t, const char *id)
{
    for (size_t i = 0; id && i < SESSION_MAX; i++)
        if (t->s[i].used && strcmp(t->s[i].id, id) == 0) {
            memset(&t->s[i], 0, sizeof(t->s[i]));
            return true;
        }
    return false;
}

unsigned session_count(const struct session_table *t)
{
    unsigned n = 0;
    for (size_t i = 0; i < SESSION_MAX; i++)
        n += t->s[i].used;
    return n;
}

bool session_cookie_value(const char *header, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    const char *p = header;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = plen - nlen - 1;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') { /* RFC 6265 allows quotes */
                v++;
                vlen -= 2;
            }
            if (vlen == 0 || vlen >= size)
                return false;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

bool session_csrf_ok(const struct session *s, const char *got)
{
    return got && secret_equal(got, s->csrf);
}

bool session_origin_ok(const char *origin, const char *host, bool tls)
{
    if (!origin)
        return true;
    if (!host || !*host)
        return false;
    const char *scheme = tls ? "https://" : "http://";
    size_t n = strlen(scheme);
    /* Scheme and host name are case-insensitive (RFC 6454 section 4). */
    return strncasecmp(origin, scheme, n) == 0 && strcasecmp(origin + n, host) == 0;
}

int session_set_cookie(char *out, size_t size, const char *id, unsigned max_age_s, bool secure)
{
    int n = snprintf(out, size, "%s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%u%s",
                     SESSION_COOKIE, id, max_age_s, secure ? "; Secure" : "");
    return n > 0 && (size_t)n < size ? 0 : -1;
}
