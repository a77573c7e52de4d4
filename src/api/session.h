/* SPDX-License-Identifier: MIT */
/* The dashboard's login sessions: a bounded table in memory, cookie and CSRF checks. Pure:
 * the caller passes the clock and the random bytes. */
#ifndef FERRY_API_SESSION_H
#define FERRY_API_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_COOKIE "ferry_session"
#define SESSION_ID_BYTES 32                    /* random bytes of an id, and of a CSRF token */
#define SESSION_HEX (2 * SESSION_ID_BYTES + 1) /* their hex text with its NUL */
#define SESSION_MAX 256                        /* more logins drop the oldest session */
#define SESSION_IDLE_S (30 * 60)               /* unused this long, a session ends */
#define SESSION_TTL_DEFAULT_S (8 * 3600)       /* --session-ttl */
#define SESSION_TTL_MIN_S 1
#define SESSION_TTL_MAX_S (7 * 24 * 3600)

struct session {
    char id[SESSION_HEX];   /* the cookie's value */
    char csrf[SESSION_HEX]; /* what X-CSRF-Token must say */
    uint64_t created_ms;    /* monotonic */
    uint64_t used_ms;       /* monotonic, the last request */
    uint64_t expires_at;    /* wall clock, unix seconds: created + ttl (for the client) */
    bool used;              /* the slot holds a session */
};

struct session_table {
    struct session s[SESSION_MAX];
    unsigned ttl_s; /* absolute lifetime */
    unsigned idle_s;
};

/* Lookup results besides 0 (found). */
enum { SESSION_UNKNOWN = 1, SESSION_EXPIRED = 2, SESSION_IDLE = 3 };

void session_table_init(struct session_table *t, unsigned ttl_s, unsigned idle_s);
/* Makes a session from 2 * SESSION_ID_BYTES random bytes (the id, then the CSRF token) at
 * monotonic now_ms and wall clock now_s; the oldest session makes room when the table is full.
 * Returns the new session (inside t, valid until the next create or remove). */
const struct session *session_create(struct session_table *t, const uint8_t *random,
                                     uint64_t now_ms, uint64_t now_s);
/* Finds the session of cookie value id and marks it used at now_ms: 0 with *out, or
 * SESSION_UNKNOWN (no such id: logged out, dropped, ferryd restarted), SESSION_EXPIRED (over
 * its ttl) or SESSION_IDLE (unused over idle_s); an expired or idle session is removed. The id
 * is compared in constant time. */
int session_lookup(struct session_table *t, const char *id, uint64_t now_ms,
                   const struct session **out);
/* Removes the session of id; false if there was none. */
bool session_remove(struct session_table *t, const char *id);
/* How many sessions the table holds. */
unsigned session_count(const struct session_table *t);

/* The value of cookie name in a Cookie header ("a=1; ferry_session=ab12"), copied into out
 * (size bytes); false if absent, empty or too long. RFC 6265 section 5.4: pairs separated by
 * "; ", the first pair with the name wins. */
bool session_cookie_value(const char *header, const char *name, char *out, size_t size);
/* True if the X-CSRF-Token header value got equals the session's token (constant time). */
bool session_csrf_ok(const struct session *s, const char *got);
/* True if the Origin header origin is the listener's own: scheme://host where host is the
 * Host header the request came with. A missing Origin (origin NULL) is fine; "null" is not. */
bool session_origin_ok(const char *origin, const char *host, bool tls);
/* The Set-Cookie value for a new session (max_age_s > 0) or a logout (id "", max_age_s 0). */
int session_set_cookie(char *out, size_t size, const char *id, unsigned max_age_s, bool secure);

#endif
