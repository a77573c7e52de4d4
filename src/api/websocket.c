/* SPDX-License-Identifier: MIT */
/* The WebSocket protocol on the server's side (websocket.h), after RFC 6455. */
#include "api/websocket.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 1.3 */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int ws_handshake_check(const char *method, const char *upgrade, const char *connection,
                       const char *version, const char *key, char *why, size_t why_size)
{
    if (!method || strcmp(method, "GET") != 0) {
        snprintf(why, why_size, "websocket: the opening handshake must be a GET");
        return -1;
    }
    if (!token_list_has(upgrade, "websocket")) {
        snprintf(why, why_size, "websocket: expected the header \"Upgrade: websocket\"");
        return -1;
    }
    if (!token_list_has(connection, "upgrade")) {
        snprintf(why, why_size, "websocket: expected the header \"Connection: Upgrade\"");
        return -1;
    }
    if (!version || strcmp(version, "13") != 0) {
        snprintf(why, why_size, "websocket: only version 13 (RFC 6455) is spoken; got %.20s",
                 version ? version : "none");
        return -1;
    }
    /* 16 bytes in base64: 22 characters and "==". */
    bool ok = key && strlen(key) == 24 && key[22] == '=' && key[23] == '=';
    for (size_t i = 0; ok && i < 22; i++)
        ok = b64_value(key[i]) >= 0;
    if (ok) /* the last character before the padding carries 2 bits: the rest must be 0 */
        ok = (b64_value(key[21]) & 0x0f) == 0;
    if (!ok) {
        snprintf(why, why_size, "websocket: Sec-WebSocket-Key must be the base64 of 16 bytes");
        return -1;
    }
    return 0;
}

size_t ws_base64(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

int ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    uint8_t digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, buf, (size_t)n, digest) < 0)
        return -1;
    ws_base64(digest, sizeof(digest), out);
    return 0;
}

void ws_mask(uint8_t *data, size_t n, const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        data[i] ^= mask[i & 3];
}

long ws_frame_parse(uint8_t *buf, size_t len, size_t max_payload, bool require_mask,
                    struct ws_frame *f)
{
    if (len < 2)
        return 0;
    bool fin = buf[0] & 0x80, masked = buf[1] & 0x80;
    int opcode = buf[0] & 0x0f;
    if (buf[0] & 0x70) /* RSV1-3: no extension was negotiated */
        return -WS_CLOSE_PROTOCOL;
    bool control = opcode & 0x8;
    if (opcode != WS_CONT && opcode != WS_TEXT && opcode != WS_BINARY && opcode != WS_CLOSE &&
        opcode != WS_PING && opcode != WS_PONG)
        return -WS_CLOSE_PROTOCOL;
    if (require_mask && !masked)
        return -WS_CLOSE_PROTOCOL;
    uint64_t plen = buf[1] & 0x7f;
    size_t at = 2;
    if (control && (!fin || plen > WS_CONTROL_MAX))
        return -WS_CLOSE_PROTOCOL;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        if (plen < 126) /* 5.2: the minimal number of bytes must be used */
            return -WS_CLOSE_PROTOCOL;
        at = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        if (plen >> 63 || plen < 65536)
            return -WS_CLOSE_PROTOCOL;
        at = 10;
    }
    if (plen > max_payload)
        return -WS_CLOSE_TOO_BIG;
    const uint8_t *mask = NULL;
    if (masked) {
        if (len < at + 4)
            return 0;
        mask = buf + at;
        at += 4;
    }
    if (len - at < plen)
        return 0;
    f->fin = fin;
    f->opcode = opcode;
    f->payload = buf + at;
    f->len = (size_t)plen;
    if (mask)
        ws_mask(f->payload, f->len, mask);
    return (long)(at + plen);
}

size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], bool fin, int opcode, uint64_t len,
                       const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void ws_reader_init(struct ws_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

void ws_reader_free(struct ws_reader *r)
{
    free(r->msg);
    memset(r, 0, sizeof(*r));
}

/* Close codes an endpoint may send (RFC 6455 7.4.1 and 7.4.2). */
static bool close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int ws_reader_frame(struct ws_reader *r, const struct ws_frame *f)
{
    if (f->opcode & 0x8) {
        if (f->opcode == WS_CLOSE && f->len > 0) {
            if (f->len == 1)
                return -WS_CLOSE_PROTOCOL;
            unsigned code = (unsigned)f->payload[0] << 8 | f->payload[1];
            if (!close_code_ok(code))
                return -WS_CLOSE_PROTOCOL;
            if (utf8_valid_len((const char *)f->payload + 2, f->len - 2) != f->len - 2)
                return -WS_CLOSE_BAD_DATA;
        }
        return WS_READ_CONTROL;
    }
    if (f->opcode == WS_CONT) {
        if (!r->opcode)
            return -WS_CLOSE_PROTOCOL;
    } else {
        if (r->opcode) /* a new message while one is still in fragments */
            return -WS_CLOSE_PROTOCOL;
        r->opcode = f->opcode;
        r->len = 0;
    }
    if (f->len > r->max - r->len)
        return -WS_CLOSE_TOO_BIG;
    if (r->len + f->len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + f->len + 1)
            cap *= 2;
        uint8_t *m = realloc(r->msg, cap);
        if (!m)
            return -WS_CLOSE_INTERNAL;
        r->msg = m;
        r->cap = cap;
    }
    if (f->len)
        memcpy(r->msg + r->len, f->payload, f->len);
    r->len += f->len;
    r->msg[r->len] = '\0';
    if (!f->fin)
        return WS_READ_MORE;
    r->kind = r->opcode;
    r->opcode = 0; /* the message is whole; r->msg stays until the next frame */
    if (r->kind == WS_TEXT && utf8_valid_len((const char *)r->msg, r->len) != r->len)
        return -WS_CLOSE_BAD_DATA;
    return WS_READ_MESSAGE;
}

/* ---- the server's end of one WebSocket ---- */

int ws_conn_init(struct ws_conn *w, size_t frame_max, size_t msg_max, size_t out_max,
                 uint64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    w->frame_max = frame_max;
    w->out_max = out_max;
    w->in_cap = frame_max + WS_HEADER_MAX;
    if (!(w->in = malloc(w->in_cap)))
        return -ENOMEM;
    ws_reader_init(&w->rd, msg_max);
    w->heard_ms = w->pinged_ms = now_ms;
    return 0;
}

void ws_conn_free(struct ws_conn *w)
{
    ws_reader_free(&w->rd);
    free(w->in);
    free(w->out);
    w->in = w->out = NULL;
}

int ws_conn_reserve(struct ws_conn *w, size_t len)
{
    if (w->out_len + len > w->out_max)
        return FERR_LIMIT;
    if (w->out_len + len > w->out_cap) {
        size_t cap = w->out_cap ? w->out_cap : 8192;
        while (cap < w->out_len + len)
            cap *= 2;
        uint8_t *o = realloc(w->out, cap);
        if (!o)
            return -ENOMEM;
        w->out = o;
        w->out_cap = cap;
    }
    return 0;
}

int ws_conn_queue(struct ws_conn *w, int opcode, const void *data, size_t len)
{
    if (w->closing)
        return 0;
    int rc = ws_conn_reserve(w, len + WS_HEADER_MAX);
    if (rc < 0)
        return rc;
    w->out_len += ws_frame_header(w->out + w->out_len, true, opcode, len, NULL);
    if (len)
        memcpy(w->out + w->out_len, data, len);
    w->out_len += len;
    return 0;
}

void ws_conn_close(struct ws_conn *w, unsigned code, const char *reason)
{
    if (w->closing)
        return;
    uint8_t p[WS_CONTROL_MAX];
    size_t n = strlen(reason);
    if (n > sizeof(p) - 2)
        n = sizeof(p) - 2;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, n);
    if (ws_conn_reserve(w, n + 2 + WS_HEADER_MAX) < 0)
        w->out_len = 0;
    ws_conn_queue(w, WS_CLOSE, p, n + 2);
    w->closing = true;
}

void ws_conn_sent(struct ws_conn *w, size_t n)
{
    memmove(w->out, w->out + n, w->out_len - n);
    w->out_len -= n;
}

int ws_conn_frames(struct ws_conn *w, uint64_t now_ms, bool (*more)(void *data),
                   ws_message_fn on_message, void *data, const char **why)
{
    size_t at = 0;
    int close = 0;
    while (!close && !w->closing && (!more || more(data))) {
        struct ws_frame f;
        long used = ws_frame_parse(w->in + at, w->in_len - at, w->frame_max, true, &f);
        if (used == 0)
            break;
        if (used < 0) {
            close = (int)-used;
            *why = used == -WS_CLOSE_TOO_BIG ? "frame too big" : "protocol error";
            break;
        }
        at += (size_t)used;
        w->heard_ms = now_ms;
        int rc = ws_reader_frame(&w->rd, &f);
        if (rc < 0) {
            close = -rc;
            *why = rc == -WS_CLOSE_TOO_BIG    ? "message too big"
                   : rc == -WS_CLOSE_BAD_DATA ? "text that is not UTF-8"
                                              : "protocol error";
        } else if (rc == WS_READ_MESSAGE) {
            close = on_message(data, w->rd.kind, w->rd.msg, w->rd.len, why);
        } else if (rc == WS_READ_CONTROL && f.opcode == WS_PING) {
            if (ws_conn_queue(w, WS_PONG, f.payload, f.len) < 0) {
                close = WS_CLOSE_POLICY;
                *why = "the browser does not read what it is sent";
            }
        } else if (rc == WS_READ_CONTROL && f.opcode == WS_CLOSE) {
            /* Echo the code (RFC 6455 5.5.1), then end. */
            unsigned code = f.len >= 2 ? (unsigned)f.payload[0] << 8 | f.payload[1] : 0;
            if (code) {
                close = (int)code;
                *why = "";
            } else {
                ws_conn_queue(w, WS_CLOSE, NULL, 0);
                w->closing = true;
            }
        }
    }
    memmove(w->in, w->in + at, w->in_len - at);
    w->in_len -= at;
    return close;
}

int ws_conn_keepalive(struct ws_conn *w, uint64_t now_ms, uint64_t ping_ms, uint64_t dead_ms)
{
    if (now_ms - w->heard_ms >= dead_ms)
        return WS_KEEP_DEAD;
    if (now_ms - w->pinged_ms >= ping_ms && now_ms - w->heard_ms >= ping_ms) {
        w->pinged_ms = now_ms;
        ws_conn_queue(w, WS_PING, "ferry", 5);
        return WS_KEEP_PINGED;
    }
    return 0;
}
