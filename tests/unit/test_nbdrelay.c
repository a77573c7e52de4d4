/* SPDX-License-Identifier: MIT */
/* storage/nbdrelay.c on a real loop: a client of the unix socket is held while nobody serves
 * the export (the resolver says "not now"), then piped to the TCP server it names; bytes go
 * both ways unchanged, also more than the high-water mark; a reset drops the connection;
 * close removes the socket file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/nbdrelay.h"

#define BIG (24u << 20) /* beyond the relay's 8 MiB high-water mark */

struct fixture {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_tcp_t peer; /* the server's side of the piped connection */
    bool peer_open;
    char addr[64];
    char sock[108];
    unsigned asked;   /* resolver calls */
    unsigned not_yet; /* answer "not now" this many times first */
    size_t echoed;    /* bytes the server echoed back */
};

static void echo_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(s);
    b->len = s;
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct fixture *f = s->data;
    if (n <= 0) {
        free(b->base);
        if (n < 0 && f->peer_open) {
            f->peer_open = false;
            uv_close((uv_handle_t *)&f->peer, NULL);
        }
        return;
    }
    uv_write_t *w = malloc(sizeof(*w));
    w->data = b->base;
    uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
    f->echoed += (size_t)n;
    uv_write(w, s, &out, 1, echo_written);
}

static void on_conn(uv_stream_t *srv, int status)
{
    struct fixture *f = srv->data;
    assert_int_equal(status, 0);
    uv_tcp_init(&f->loop, &f->peer);
    f->peer.data = f;
    assert_int_equal(uv_accept(srv, (uv_stream_t *)&f->peer), 0);
    f->peer_open = true;
    uv_read_start((uv_stream_t *)&f->peer, alloc_cb, peer_read);
}

static void resolve(void *data, void *token)
{
    struct fixture *f = data;
    f->asked++;
    if (f->asked <= f->not_yet)
        nbd_relay_resolved(token, NULL, "no coordinator yet");
    else
        nbd_relay_resolved(token, f->addr, NULL);
}

/* A blocking client in a thread would need more machinery: the test runs the loop in slices
 * between the client's non-blocking steps instead. */
static void spin(struct fixture *f, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static int client(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void setup_fixture(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_tcp_init(&f->loop, &f->server);
    f->server.data = f;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&f->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 4, on_conn), 0);
    struct sockaddr_in got;
    int len = sizeof(got);
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&got, &len);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", ntohs(got.sin_port));
    snprintf(f->sock, sizeof(f->sock), "/tmp/ferry-test-relay-%d.sock", getpid());
}

static void test_held_then_piped_both_ways_then_reset(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    f.not_yet = 3;
    struct nbd_relay *r = NULL;
    struct ferr e = {0};
    assert_int_equal(nbd_relay_open(&f.loop, f.sock, resolve, &f, &r, &e), 0);
    int fd = client(f.sock);
    spin(&f, 700); /* two retries at 300 ms */
    assert_true(f.asked >= 2 && f.asked <= 3);
    assert_int_equal(nbd_relay_connected(r), 0);
    assert_string_equal(nbd_relay_why(r), "no coordinator yet");
    char c;
    assert_int_equal(read(fd, &c, 1), -1); /* held: open, nothing to read */
    spin(&f, 800);
    assert_int_equal(f.asked, 4);
    assert_int_equal(nbd_relay_connected(r), 1);
    assert_string_equal(nbd_relay_why(r), "");

    /* BIG bytes out and back, unchanged */
    unsigned char *out = malloc(BIG), *in = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        out[i] = (unsigned char)(i * 7 + i / 4096);
    size_t sent = 0, got = 0;
    for (int rounds = 0; got < BIG && rounds < 200000; rounds++) {
        if (sent < BIG) {
            ssize_t w = write(fd, out + sent, BIG - sent > 65536 ? 65536 : BIG - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t n = read(fd, in + got, BIG - got);
        if (n > 0)
            got += (size_t)n;
        uv_run(&f.loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(got, BIG);
    assert_memory_equal(in, out, BIG);
    free(out);
    free(in);

    /* reset: the client sees its connection end; the server's side too */
    nbd_relay_reset(r);
    spin(&f, 50);
    assert_int_equal(read(fd, &c, 1), 0);
    assert_false(f.peer_open);
    close(fd);

    nbd_relay_close(r);
    spin(&f, 10);
    assert_int_equal(access(f.sock, F_OK), -1);
    uv_close((uv_handle_t *)&f.server, NULL);
    spin(&f, 10);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

/* A client that leaves while held, and a relay closed with a held client: nothing leaks (ASan
 * build) and the loop closes. */
static void test_close_while_held(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    f.not_yet = 1000;
    struct nbd_relay *r = NULL;
    struct ferr e = {0};
    assert_int_equal(nbd_relay_open(&f.loop, f.sock, resolve, &f, &r, &e), 0);
    int a = client(f.sock), b = client(f.sock);
    spin(&f, 100);
    close(a);
    spin(&f, 400);
    nbd_relay_close(r);
    spin(&f, 20);
    char c;
    assert_int_equal(read(b, &c, 1), 0);
    close(b);
    uv_close((uv_handle_t *)&f.server, NULL);
    spin(&f, 10);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_bad_socket_path(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct nbd_relay *r = NULL;
    struct ferr e = {0};
    assert_true(nbd_relay_open(&loop, "/nonexistent-dir/x.sock", resolve, NULL, &r, &e) < 0);
    assert_non_null(strstr(e.msg, "cannot listen on /nonexistent-dir/x.sock"));
    assert_null(r);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_then_piped_both_ways_then_reset),
        cmocka_unit_test(test_close_while_held),
        cmocka_unit_test(test_bad_socket_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
