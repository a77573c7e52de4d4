/* SPDX-License-Identifier: MIT */
/* What a browser (or anyone who reaches the TCP listener with a session) sends on a console
 * WebSocket: any bytes, parsed as client frames (masked) and reassembled into messages.
 * Properties: a parsed frame lies inside the bytes given; a message never exceeds its bound;
 * each whole message, framed again the way a client does, parses back to the same bytes. */
#include <string.h>

#include "api/websocket.h"
#include "fuzz.h"

#define MAX_PAYLOAD 16384
#define MAX_MESSAGE 65536

static void round_trip(int opcode, const uint8_t *msg, size_t len)
{
    if (len > MAX_PAYLOAD)
        return;
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t *buf = malloc(WS_HEADER_MAX + len + 1), hdr[WS_HEADER_MAX];
    FUZZ_ASSERT(buf);
    size_t h = ws_frame_header(hdr, true, opcode, len, mask);
    memcpy(buf, hdr, h);
    memcpy(buf + h, msg, len);
    ws_mask(buf + h, len, mask);
    struct ws_frame f;
    long n = ws_frame_parse(buf, h + len, MAX_PAYLOAD, true, &f);
    FUZZ_ASSERT(n == (long)(h + len) && f.fin && f.opcode == opcode && f.len == len);
    FUZZ_ASSERT(len == 0 || memcmp(f.payload, msg, len) == 0);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_ASSERT(buf);
    memcpy(buf, data, size);
    struct ws_reader r;
    ws_reader_init(&r, MAX_MESSAGE);
    size_t off = 0;
    while (off < size) {
        struct ws_frame f;
        long n = ws_frame_parse(buf + off, size - off, MAX_PAYLOAD, true, &f);
        if (n <= 0)
            break; /* more bytes needed, or the connection is closed with -n */
        FUZZ_ASSERT((size_t)n <= size - off && f.len <= MAX_PAYLOAD);
        FUZZ_ASSERT(f.len == 0 || (f.payload >= buf + off && f.payload + f.len <= buf + off + n));
        int got = ws_reader_frame(&r, &f);
        if (got < 0)
            break;
        if (got == WS_READ_MESSAGE) {
            FUZZ_ASSERT(r.len <= MAX_MESSAGE);
            round_trip(r.kind, r.msg, r.len);
        }
        off += (size_t)n;
    }
    ws_reader_free(&r);
    free(buf);
    char why[256], acc[WS_ACCEPT_LEN + 1];
    char *key = malloc(size + 1);
    FUZZ_ASSERT(key);
    memcpy(key, data, size);
    key[size] = '\0';
    if (ws_handshake_check("GET", "websocket", "Upgrade", "13", key, why, sizeof(why)) == 0)
        FUZZ_ASSERT(ws_accept_key(key, acc) == 0 && strlen(acc) == WS_ACCEPT_LEN);
    free(key);
    return 0;
}
