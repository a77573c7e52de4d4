/* SPDX-License-Identifier: MIT */
/* The WebSocket protocol (RFC 6455) on the server's side: the opening handshake's checks and
 * accept key, frame parsing and writing, and the reassembly of fragmented messages. Pure: no
 * I/O; the caller reads and writes the socket (api/wsconsole.c). */
#ifndef FERRY_API_WEBSOCKET_H
#define FERRY_API_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_ACCEPT_LEN 28   /* base64 of a SHA-1 */
#define WS_HEADER_MAX 14   /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_CONTROL_MAX 125 /* RFC 6455 5.5: control frames carry at most this */

enum ws_opcode {
    WS_CONT = 0x0,
    WS_TEXT = 0x1,
    WS_BINARY = 0x2,
    WS_CLOSE = 0x8,
    WS_PING = 0x9,
    WS_PONG = 0xA,
};

/* Close codes (RFC 6455 7.4.1); the parsers return them negated. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_BAD_DATA = 1007, /* a text message that is not UTF-8 */
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/*
 * Checks an opening handshake (RFC 6455 4.2.1): GET, "Upgrade: websocket", "Connection"
 * listing "Upgrade", "Sec-WebSocket-Version: 13" and a Sec-WebSocket-Key that is the base64 of
 * 16 bytes. Header values may be NULL (absent). Returns 0, or -1 with why filled.
 */
int ws_handshake_check(const char *method, const char *upgrade, const char *connection,
                       const char *version, const char *key, char *why, size_t why_size);
/* The Sec-WebSocket-Accept value for key: base64(SHA-1(key + the RFC's GUID)), NUL-terminated
 * in out. Returns 0, or -1 if hashing failed. */
int ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1]);
/* Base64 (RFC 4648, with padding) of n bytes into out (4 * ((n + 2) / 3) + 1 bytes); returns
 * the length written without the NUL. */
size_t ws_base64(const uint8_t *in, size_t n, char *out);

struct ws_frame {
    bool fin;
    int opcode;
    uint8_t *payload; /* inside the parsed buffer, unmasked */
    size_t len;
};

/*
 * Parses the frame at the start of buf (len bytes) and unmasks its payload in place. Returns
 * the frame's size in bytes (> 0) with f filled, 0 if buf does not hold the whole frame yet, or
 * a negated close code: WS_CLOSE_PROTOCOL for reserved bits, an unknown opcode, an unmasked
 * frame when require_mask (clients must mask, 5.1), a fragmented or over-long control frame, a
 * 64-bit length with its top bit set, a length not in its shortest form; WS_CLOSE_TOO_BIG for
 * a payload over max_payload.
 */
long ws_frame_parse(uint8_t *buf, size_t len, size_t max_payload, bool require_mask,
                    struct ws_frame *f);
/* Writes the header of a frame of len payload bytes into out; mask (4 bytes) or NULL. Returns
 * the header's length. A masked frame's payload must be masked by the caller (ws_mask). */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], bool fin, int opcode, uint64_t len,
                       const uint8_t *mask);
/* XORs n bytes with the 4-byte mask (RFC 6455 5.3), starting at byte 0 of the mask. */
void ws_mask(uint8_t *data, size_t n, const uint8_t mask[4]);

/* Reassembles a message from its fragments (RFC 6455 5.4), bounded by max bytes. */
struct ws_reader {
    uint8_t *msg; /* the message so far (owned) */
    size_t len, cap, max;
    int opcode; /* of the message being assembled: WS_TEXT, WS_BINARY, 0 none */
    int kind;   /* of the last whole message: WS_TEXT or WS_BINARY */
};

enum { WS_READ_MORE = 0, WS_READ_MESSAGE = 1, WS_READ_CONTROL = 2 };

void ws_reader_init(struct ws_reader *r, size_t max);
void ws_reader_free(struct ws_reader *r);
/*
 * Takes one parsed frame. Returns WS_READ_MORE (a fragment kept), WS_READ_MESSAGE (a whole
 * text or binary message in r->msg, r->len bytes, r->kind; valid until the next call), or
 * WS_READ_CONTROL (f is a ping, pong or a valid close: its payload is the caller's), or a
 * negated close code: WS_CLOSE_PROTOCOL (a continuation with no message begun, a new message
 * before the last one ended, a close payload of 1 byte or with a code that may not be sent),
 * WS_CLOSE_BAD_DATA (text or close reason not UTF-8), WS_CLOSE_TOO_BIG (over max), or
 * WS_CLOSE_INTERNAL (out of memory).
 */
int ws_reader_frame(struct ws_reader *r, const struct ws_frame *f);

/*
 * The server's end of one WebSocket (the console's, the screen's): frames queued for the
 * browser and frames received from it, the close handshake and the keepalive, without the
 * I/O. The caller sends out[0..out_len) and drops what went (ws_conn_sent), and receives into
 * in[in_len..in_cap) before calling ws_conn_frames.
 */
struct ws_conn {
    uint8_t *out;
    size_t out_len, out_cap, out_max;
    uint8_t *in; /* frame_max + WS_HEADER_MAX bytes: a whole frame fits */
    size_t in_len, in_cap;
    size_t frame_max;
    struct ws_reader rd;
    bool closing;       /* our close frame is queued (or the browser's echoed): nothing more */
    uint64_t heard_ms;  /* the last frame from the browser */
    uint64_t pinged_ms; /* the last ping sent */
};

/* frame_max: the biggest frame the browser may send; msg_max: the biggest message; out_max:
 * bytes waiting for the browser. now_ms starts the keepalive. 0 or -ENOMEM. */
int ws_conn_init(struct ws_conn *w, size_t frame_max, size_t msg_max, size_t out_max,
                 uint64_t now_ms);
void ws_conn_free(struct ws_conn *w);
/* Room for len more bytes in out (a relay copies raw bytes there too): 0, FERR_LIMIT over
 * out_max, -ENOMEM. */
int ws_conn_reserve(struct ws_conn *w, size_t len);
/* Queues a frame (fin, unmasked: a server never masks, RFC 6455 5.1); nothing once closing.
 * 0, FERR_LIMIT (the browser does not keep up), -ENOMEM. */
int ws_conn_queue(struct ws_conn *w, int opcode, const void *data, size_t len);
/* Queues a close frame with code and reason (cut to fit a control frame); a backlog with no
 * room left for it is dropped (the browser is not reading). Then closing. */
void ws_conn_close(struct ws_conn *w, unsigned code, const char *reason);
/* The first n bytes of out went to the browser. */
void ws_conn_sent(struct ws_conn *w, size_t n);
/* A whole message (kind WS_TEXT or WS_BINARY) for the caller: returns 0, or a close code
 * with *why to end the connection with. */
typedef int (*ws_message_fn)(void *data, int kind, const uint8_t *msg, size_t len,
                             const char **why);
/*
 * Takes the whole frames received, while not closing and more(data) (NULL: always): a ping is
 * answered, the browser's close is echoed (with its code: returned as a close request with
 * why ""; without one: the empty close is queued and closing), a message goes to on_message.
 * Returns 0, or a close code with *why: a frame or message that breaks the protocol, is too
 * big, is text that is not UTF-8, a pong that does not fit, or on_message's.
 */
int ws_conn_frames(struct ws_conn *w, uint64_t now_ms, bool (*more)(void *data),
                   ws_message_fn on_message, void *data, const char **why);

enum { WS_KEEP_OK = 0, WS_KEEP_PINGED, WS_KEEP_DEAD };
/* The keepalive at now_ms: WS_KEEP_DEAD when nothing was heard for dead_ms (a browser answers
 * pings by itself), WS_KEEP_PINGED when a ping was queued (quiet for ping_ms), else OK. */
int ws_conn_keepalive(struct ws_conn *w, uint64_t now_ms, uint64_t ping_ms, uint64_t dead_ms);

#endif
