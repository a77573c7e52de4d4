/* SPDX-License-Identifier: MIT */
/* Unit tests of the WebSocket protocol (api/websocket.c): the handshake and its accept key
 * (RFC 6455's own example), frames of every length form, masking, fragments, control frames,
 * and the malformed frames a server must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/websocket.h"
#include "common/err.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame (masked) of payload p into out; returns its size. */
static size_t client_frame(uint8_t *out, bool fin, int opcode, const void *p, size_t n)
{
    size_t h = ws_frame_header(out, fin, opcode, n, MASK);
    memcpy(out + h, p, n);
    ws_mask(out + h, n, MASK);
    return h + n;
}

static void test_handshake(void **state)
{
    char why[200], acc[WS_ACCEPT_LEN + 1];
    /* RFC 6455 1.3's example. */
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(ws_handshake_check("GET", "websocket", "Upgrade", "13", key, why, sizeof(why)),
                     0);
    assert_int_equal(
        ws_handshake_check("GET", "WebSocket", "keep-alive, Upgrade", "13", key, why, sizeof(why)),
        0);
    assert_int_equal(
        ws_handshake_check("POST", "websocket", "Upgrade", "13", key, why, sizeof(why)), -1);
    assert_int_equal(ws_handshake_check("GET", NULL, "Upgrade", "13", key, why, sizeof(why)), -1);
    assert_int_equal(ws_handshake_check("GET", "h2c", "Upgrade", "13", key, why, sizeof(why)), -1);
    assert_int_equal(ws_handshake_check("GET", "websocket", "close", "13", key, why, sizeof(why)),
                     -1);
    assert_int_equal(ws_handshake_check("GET", "websocket", "Upgrade", "8", key, why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "13"));
    assert_int_equal(ws_handshake_check("GET", "websocket", "Upgrade", NULL, key, why, sizeof(why)),
                     -1);
    static const char *bad_keys[] = {NULL,
                                     "",
                                     "abc",
                                     "dGhlIHNhbXBsZSBub25jZQ=",
                                     "dGhlIHNhbXBsZSBub25jZQ===",
                                     "dGhlIHNhbXBsZSBub25jZ!==",
                                     "dGhlIHNhbXBsZSBub25jZR==" /* bits after the 16th byte */};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        assert_int_equal(
            ws_handshake_check("GET", "websocket", "Upgrade", "13", bad_keys[i], why, sizeof(why)),
            -1);
}

static void test_base64(void **state)
{
    char out[16];
    assert_int_equal(ws_base64((const uint8_t *)"", 0, out), 0);
    assert_string_equal(out, "");
    ws_base64((const uint8_t *)"f", 1, out);
    assert_string_equal(out, "Zg==");
    ws_base64((const uint8_t *)"fo", 2, out);
    assert_string_equal(out, "Zm8=");
    ws_base64((const uint8_t *)"foo", 3, out);
    assert_string_equal(out, "Zm9v");
    ws_base64((const uint8_t *)"foobar", 6, out);
    assert_string_equal(out, "Zm9vYmFy");
}

static void test_frame_lengths_and_masking(void **state)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    static uint8_t buf[70100], payload[70000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 13);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t n = lens[k];
        size_t total = client_frame(buf, true, WS_BINARY, payload, n);
        assert_int_equal(total, n + (n < 126 ? 2 : n < 65536 ? 4 : 10) + 4);
        /* Every prefix is "need more". */
        struct ws_frame f;
        for (size_t cut = 0; cut < total; cut += (cut < 20 ? 1 : 997))
            assert_int_equal(ws_frame_parse(buf, cut, sizeof(payload), true, &f), 0);
        assert_int_equal(ws_frame_parse(buf, total, sizeof(payload), true, &f), (long)total);
        assert_true(f.fin);
        assert_int_equal(f.opcode, WS_BINARY);
        assert_int_equal(f.len, n);
        assert_memory_equal(f.payload, payload, n);
    }
    /* A server's frame is not masked, and a server that requires masks refuses it. */
    size_t h = ws_frame_header(buf, true, WS_TEXT, 3, NULL);
    memcpy(buf + h, "abc", 3);
    struct ws_frame f;
    assert_int_equal(ws_frame_parse(buf, h + 3, 100, false, &f), (long)(h + 3));
    assert_memory_equal(f.payload, "abc", 3);
    assert_int_equal(ws_frame_parse(buf, h + 3, 100, true, &f), -WS_CLOSE_PROTOCOL);
}

static void test_malformed_frames(void **state)
{
    uint8_t buf[64];
    struct ws_frame f;
    /* Reserved bits. */
    size_t n = client_frame(buf, true, WS_TEXT, "a", 1);
    buf[0] |= 0x40;
    assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), -WS_CLOSE_PROTOCOL);
    /* Unknown opcodes (3-7 data, 0xB-0xF control). */
    for (int op = 3; op < 16; op++) {
        if (op >= WS_CLOSE && op <= WS_PONG)
            continue;
        n = client_frame(buf, true, op, "a", 1);
        assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), -WS_CLOSE_PROTOCOL);
    }
    /* A fragmented control frame, one over 125 bytes. */
    n = client_frame(buf, false, WS_PING, "a", 1);
    assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), -WS_CLOSE_PROTOCOL);
    uint8_t big[200] = {0x89, 0x80 | 126, 0, 126};
    assert_int_equal(ws_frame_parse(big, sizeof(big), 1000, true, &f), -WS_CLOSE_PROTOCOL);
    /* Lengths not in their shortest form, a 64-bit length with its top bit set. */
    uint8_t l16[] = {0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4, 0, 0, 0, 0, 0};
    assert_int_equal(ws_frame_parse(l16, sizeof(l16), 1000, true, &f), -WS_CLOSE_PROTOCOL);
    uint8_t l64[] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    assert_int_equal(ws_frame_parse(l64, sizeof(l64), 1 << 20, true, &f), -WS_CLOSE_PROTOCOL);
    uint8_t top[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    assert_int_equal(ws_frame_parse(top, sizeof(top), SIZE_MAX, true, &f), -WS_CLOSE_PROTOCOL);
    /* Over the size limit: refused from the header alone, before the payload comes. */
    uint8_t huge[] = {0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0};
    assert_int_equal(ws_frame_parse(huge, sizeof(huge), 1 << 20, true, &f), -WS_CLOSE_TOO_BIG);
    uint8_t over[] = {0x82, 0x80 | 126, 0x01, 0x00};
    assert_int_equal(ws_frame_parse(over, sizeof(over), 255, true, &f), -WS_CLOSE_TOO_BIG);
}

static void test_fragments_and_control_frames(void **state)
{
    uint8_t buf[64];
    struct ws_frame f;
    struct ws_reader r;
    ws_reader_init(&r, 10);
    /* "hel" + ping + "lo": one message; the ping comes through in between. */
    size_t n = client_frame(buf, false, WS_TEXT, "hel", 3);
    assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), (long)n);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MORE);
    n = client_frame(buf, true, WS_PING, "p", 1);
    assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), (long)n);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_CONTROL);
    assert_int_equal(f.opcode, WS_PING);
    n = client_frame(buf, true, WS_CONT, "lo", 2);
    assert_int_equal(ws_frame_parse(buf, n, 100, true, &f), (long)n);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MESSAGE);
    assert_int_equal(r.kind, WS_TEXT);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.msg, "hello", 5);
    /* A binary message in one frame; an empty one. */
    n = client_frame(buf, true, WS_BINARY, "\xff\x00", 2);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MESSAGE);
    assert_int_equal(r.kind, WS_BINARY);
    assert_int_equal(r.len, 2);
    n = client_frame(buf, true, WS_TEXT, "", 0);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MESSAGE);
    assert_int_equal(r.len, 0);
    /* A continuation with nothing begun; a new message inside a fragmented one. */
    n = client_frame(buf, true, WS_CONT, "x", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_PROTOCOL);
    ws_reader_free(&r);
    ws_reader_init(&r, 10);
    n = client_frame(buf, false, WS_TEXT, "a", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MORE);
    n = client_frame(buf, true, WS_TEXT, "b", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_PROTOCOL);
    ws_reader_free(&r);
    /* Fragments that add up over the limit. */
    ws_reader_init(&r, 10);
    n = client_frame(buf, false, WS_BINARY, "123456", 6);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MORE);
    n = client_frame(buf, true, WS_CONT, "78901", 5);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_TOO_BIG);
    ws_reader_free(&r);
    /* Text that is not UTF-8, also when a character is split across fragments (fine). */
    ws_reader_init(&r, 100);
    n = client_frame(buf, true, WS_TEXT, "\xc3\x28", 2);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_BAD_DATA);
    ws_reader_free(&r);
    ws_reader_init(&r, 100);
    n = client_frame(buf, false, WS_TEXT, "\xc3", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MORE);
    n = client_frame(buf, true, WS_CONT, "\xa9", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_MESSAGE);
    assert_memory_equal(r.msg, "\xc3\xa9", 2);
    ws_reader_free(&r);
    /* Close frames: empty, with a code and reason, 1 byte, a code that may not be sent, a
     * reason that is not UTF-8. */
    ws_reader_init(&r, 100);
    n = client_frame(buf, true, WS_CLOSE, "", 0);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_CONTROL);
    n = client_frame(buf, true, WS_CLOSE,
                     "\x03\xe8"
                     "bye",
                     5);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), WS_READ_CONTROL);
    n = client_frame(buf, true, WS_CLOSE, "\x03", 1);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_PROTOCOL);
    n = client_frame(buf, true, WS_CLOSE, "\x03\xed", 2); /* 1005 is never sent */
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_PROTOCOL);
    n = client_frame(buf, true, WS_CLOSE, "\x03\xe8\xff", 3);
    ws_frame_parse(buf, n, 100, true, &f);
    assert_int_equal(ws_reader_frame(&r, &f), -WS_CLOSE_BAD_DATA);
    ws_reader_free(&r);
}

static void test_two_frames_in_one_buffer(void **state)
{
    uint8_t buf[64];
    size_t a = client_frame(buf, true, WS_TEXT, "one", 3);
    size_t b = client_frame(buf + a, true, WS_TEXT, "two", 3);
    struct ws_frame f;
    long used = ws_frame_parse(buf, a + b, 100, true, &f);
    assert_int_equal(used, (long)a);
    assert_memory_equal(f.payload, "one", 3);
    assert_int_equal(ws_frame_parse(buf + used, a + b - (size_t)used, 100, true, &f), (long)b);
    assert_memory_equal(f.payload, "two", 3);
}

/* ---- the server's end (ws_conn) ---- */

struct got {
    char msg[64];
    int kind, n;
};

static int on_msg(void *data, int kind, const uint8_t *msg, size_t len, const char **why)
{
    struct got *g = data;
    g->n++;
    g->kind = kind;
    snprintf(g->msg, sizeof(g->msg), "%.*s", (int)len, (const char *)msg);
    if (len == 4 && memcmp(msg, "quit", 4) == 0) {
        *why = "asked to";
        return WS_CLOSE_POLICY;
    }
    return 0;
}

/* Parses the server frame at out+*at (unmasked): its opcode and payload. */
static int server_frame(const struct ws_conn *w, size_t *at, char *payload, size_t size)
{
    struct ws_frame f;
    uint8_t buf[256];
    size_t n = w->out_len - *at < sizeof(buf) ? w->out_len - *at : sizeof(buf);
    memcpy(buf, w->out + *at, n);
    long used = ws_frame_parse(buf, n, 125, false, &f);
    assert_true(used > 0);
    *at += (size_t)used;
    snprintf(payload, size, "%.*s", (int)f.len, (const char *)f.payload);
    return f.opcode;
}

static void test_conn_frames_pings_and_closes(void **state)
{
    struct ws_conn w;
    struct got g = {0};
    const char *why = "";
    char p[128];
    size_t at = 0;
    assert_int_equal(ws_conn_init(&w, 64, 64, 4096, 1000), 0);
    /* a message split over two reads, a ping, a fragment left for later */
    uint8_t two[256];
    size_t n = client_frame(two, true, WS_TEXT, "hello", 5);
    n += client_frame(two + n, true, WS_PING, "p1", 2);
    n += client_frame(two + n, false, WS_TEXT, "par", 3);
    memcpy(w.in, two, 3);
    w.in_len = 3;
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(w.in_len, 3); /* kept until the frame is whole */
    memcpy(w.in + 3, two + 3, n - 3);
    w.in_len = n;
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.msg, "hello");
    assert_int_equal(g.kind, WS_TEXT);
    assert_int_equal(w.in_len, 0); /* the first fragment waits in the reader */
    assert_int_equal(w.heard_ms, 2000);
    assert_int_equal(server_frame(&w, &at, p, sizeof p), WS_PONG);
    assert_string_equal(p, "p1");
    /* the message's callback ends it */
    w.in_len = client_frame(w.in, true, WS_CONT, "t", 1);
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), 0);
    assert_string_equal(g.msg, "part");
    w.in_len = client_frame(w.in, true, WS_TEXT, "quit", 4);
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), WS_CLOSE_POLICY);
    assert_string_equal(why, "asked to");
    /* text that is not UTF-8 and an unmasked frame are refused, with what */
    w.in_len = client_frame(w.in, true, WS_TEXT, "\xff", 1);
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), WS_CLOSE_BAD_DATA);
    assert_string_equal(why, "text that is not UTF-8");
    w.in_len = ws_frame_header(w.in, true, WS_TEXT, 1, NULL) + 1;
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), WS_CLOSE_PROTOCOL);
    /* the browser's close with a code: asked back; without one: echoed, then closing */
    w.in_len = client_frame(w.in, true, WS_CLOSE, "\x03\xe8", 2);
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), 1000);
    assert_false(w.closing);
    w.in_len = client_frame(w.in, true, WS_CLOSE, "", 0);
    assert_int_equal(ws_conn_frames(&w, 2000, NULL, on_msg, &g, &why), 0);
    assert_true(w.closing);
    assert_int_equal(server_frame(&w, &at, p, sizeof p), WS_CLOSE);
    assert_int_equal(at, w.out_len);
    /* nothing more once closing */
    assert_int_equal(ws_conn_queue(&w, WS_TEXT, "x", 1), 0);
    assert_int_equal(at, w.out_len);
    ws_conn_free(&w);
}

static void test_conn_backlog_close_and_keepalive(void **state)
{
    struct ws_conn w;
    char p[128], big[110];
    size_t at = 0;
    memset(big, 'x', sizeof big);
    assert_int_equal(ws_conn_init(&w, 64, 64, 256, 0), 0);
    assert_int_equal(ws_conn_queue(&w, WS_BINARY, big, sizeof big), 0);
    assert_int_equal(ws_conn_queue(&w, WS_BINARY, big, sizeof big), 0);
    assert_int_equal(ws_conn_queue(&w, WS_BINARY, big, sizeof big), FERR_LIMIT);
    ws_conn_sent(&w, 10);
    assert_int_equal(w.out_len, 2 * (sizeof big + 2) - 10);
    /* a close that does not fit drops the backlog: the browser is not reading */
    ws_conn_close(&w, WS_CLOSE_POLICY, "your session ended; log in again");
    assert_true(w.closing);
    assert_int_equal(server_frame(&w, &at, p, sizeof p), WS_CLOSE);
    assert_string_equal(p + 2, "your session ended; log in again");
    assert_int_equal(at, w.out_len);
    ws_conn_free(&w);

    assert_int_equal(ws_conn_init(&w, 64, 64, 4096, 0), 0);
    assert_int_equal(ws_conn_keepalive(&w, 29999, 30000, 75000), WS_KEEP_OK);
    assert_int_equal(ws_conn_keepalive(&w, 30000, 30000, 75000), WS_KEEP_PINGED);
    at = 0;
    assert_int_equal(server_frame(&w, &at, p, sizeof p), WS_PING);
    assert_int_equal(ws_conn_keepalive(&w, 40000, 30000, 75000), WS_KEEP_OK); /* pinged */
    w.heard_ms = 50000;                                                       /* the pong */
    assert_int_equal(ws_conn_keepalive(&w, 70000, 30000, 75000), WS_KEEP_OK);
    assert_int_equal(ws_conn_keepalive(&w, 125000, 30000, 75000), WS_KEEP_DEAD);
    ws_conn_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_frame_lengths_and_masking),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_fragments_and_control_frames),
        cmocka_unit_test(test_two_frames_in_one_buffer),
        cmocka_unit_test(test_conn_frames_pings_and_closes),
        cmocka_unit_test(test_conn_backlog_close_and_keepalive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
