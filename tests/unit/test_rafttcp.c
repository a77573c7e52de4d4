/* SPDX-License-Identifier: MIT */
/* rafttcp against libraft's stock TCP transport: same bytes, each accepts the other, timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "cluster/rafttcp.h"
#include "common/util.h"

#define SKIP_STATUS 77

static uv_loop_t loop;
static uv_timer_t wake; /* keeps uv_run(ONCE) from sleeping long */

/* ---- the loop, waiting with deadlines ---- */

static void wake_cb(uv_timer_t *t)
{
    (void)t;
}

static void loop_open(void)
{
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &wake);
    uv_timer_start(&wake, wake_cb, 5, 5);
}

static void loop_close(void)
{
    uv_close((uv_handle_t *)&wake, NULL);
    while (uv_run(&loop, UV_RUN_NOWAIT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond(arg) holds or ms pass; returns whether it held. */
static bool wait_for(cond_fn cond, void *arg, unsigned ms)
{
    uint64_t deadline = now_mono_ms() + ms;
    while (!cond(arg)) {
        if (now_mono_ms() > deadline)
            return false;
        uv_run(&loop, UV_RUN_ONCE);
    }
    return true;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- transports: the stock one and ours, set up and closed the way raft_uv does ---- */

struct tr {
    struct raft_uv_transport t;
    bool ours;
    bool closed;
};

static void tr_open(struct tr *x, bool ours, raft_id id, const char *address, unsigned connect_ms,
                    unsigned send_ms)
{
    memset(x, 0, sizeof(*x));
    x->ours = ours;
    if (ours) {
        struct rafttcp_config cfg = {.connect_timeout_ms = connect_ms, .send_timeout_ms = send_ms};
        struct ferr e = {0};
        if (rafttcp_init(&x->t, &loop, &cfg, &e) != 0)
            fail_msg("rafttcp_init: %s", e.msg);
    } else {
        assert_int_equal(raft_uv_tcp_init(&x->t, &loop), 0);
    }
    assert_int_equal(x->t.init(&x->t, id, address), 0);
    x->t.data = x; /* raft_uv sets it after init */
}

static void tr_closed(struct raft_uv_transport *t)
{
    ((struct tr *)t->data)->closed = true;
}

static bool is_closed(void *arg)
{
    return ((struct tr *)arg)->closed;
}

static void tr_shut(struct tr *x)
{
    x->t.close(&x->t, tr_closed);
    assert_true(wait_for(is_closed, x, 2000));
    if (x->ours)
        rafttcp_close(&x->t);
    else
        raft_uv_tcp_close(&x->t);
}

/* One connect request and what its callback saw. */
struct conn {
    struct raft_uv_connect req;
    bool done;
    int status;
    uv_stream_t *stream;
    uint64_t started, took_ms;
};

static void conn_cb(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct conn *c = req->data;
    c->done = true;
    c->status = status;
    c->stream = stream;
    c->took_ms = now_mono_ms() - c->started;
}

static bool conn_done(void *arg)
{
    return ((struct conn *)arg)->done;
}

static int conn_start(struct tr *x, struct conn *c, const char *address)
{
    memset(c, 0, sizeof(*c));
    c->req.data = c;
    c->started = now_mono_ms();
    return x->t.connect(&x->t, &c->req, 99, address, conn_cb);
}

static void stream_free(uv_handle_t *h)
{
    raft_free(h);
}

static void conn_drop(struct conn *c)
{
    if (c->stream)
        uv_close((uv_handle_t *)c->stream, stream_free);
    c->stream = NULL;
}

/* ---- a plain TCP listener that records the bytes of the first connection ---- */

struct sink {
    uv_tcp_t server;
    uv_tcp_t client;
    bool accepted;
    unsigned char buf[256];
    size_t len;
};

static void sink_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct sink *s = h->data;
    (void)size;
    *buf = uv_buf_init((char *)s->buf + s->len, (unsigned)(sizeof(s->buf) - s->len));
}

static void sink_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sink *s = st->data;
    (void)buf;
    if (n > 0)
        s->len += (size_t)n;
}

static void sink_conn(uv_stream_t *server, int status)
{
    struct sink *s = server->data;
    assert_int_equal(status, 0);
    assert_false(s->accepted);
    uv_tcp_init(&loop, &s->client);
    s->client.data = s;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&s->client), 0);
    s->accepted = true;
    uv_read_start((uv_stream_t *)&s->client, sink_alloc, sink_read);
}

static void sink_open(struct sink *s, char *addr, size_t size)
{
    struct sockaddr_in sa;
    int port = free_port();
    memset(s, 0, sizeof(*s));
    snprintf(addr, size, "127.0.0.1:%d", port);
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &s->server);
    s->server.data = s;
    assert_int_equal(uv_tcp_bind(&s->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->server, 4, sink_conn), 0);
}

static void sink_close(struct sink *s)
{
    if (s->accepted)
        uv_close((uv_handle_t *)&s->client, NULL);
    uv_close((uv_handle_t *)&s->server, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

struct want {
    struct sink *s;
    size_t len;
};

static bool sink_has(void *arg)
{
    struct want *w = arg;
    return w->s->len >= w->len;
}

/* The bytes a transport with identity (id, self) sends on connecting to a plain listener. */
static size_t handshake_of(bool ours, raft_id id, const char *self, unsigned char *out)
{
    struct tr x;
    struct sink s;
    struct conn c;
    char addr[32];
    size_t want = 24 + (strlen(self) + 1 + 7) / 8 * 8;
    sink_open(&s, addr, sizeof(addr));
    tr_open(&x, ours, id, self, 1000, 1000);
    assert_int_equal(conn_start(&x, &c, addr), 0);
    assert_true(wait_for(conn_done, &c, 2000));
    assert_int_equal(c.status, 0);
    struct want w = {&s, want};
    assert_true(wait_for(sink_has, &w, 2000));
    /* Nothing after the handshake until libraft writes a message. */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(s.len, want);
    memcpy(out, s.buf, s.len);
    conn_drop(&c);
    tr_shut(&x);
    sink_close(&s);
    return want;
}

/* A connecting node sends exactly what the stock transport sends: checked against the stock
 * transport's own bytes and against the format written out here, so a change on either side
 * shows. The address "127.0.0.1:12345" (15 bytes and its NUL) has no padding, which the stock
 * transport leaves uninitialized; one with padding is compared up to the NUL. */
static void test_handshake_is_the_stock_one(void **state)
{
    (void)state;
    unsigned char stock[256], ours[256];
    loop_open();
    size_t n = handshake_of(false, 7, "127.0.0.1:12345", stock);
    assert_int_equal(handshake_of(true, 7, "127.0.0.1:12345", ours), n);
    assert_int_equal(n, 40);
    assert_memory_equal(ours, stock, n);
    static const unsigned char expect[40] = {
        1,   0,   0,   0,   0,   0,   0,   0,   /* protocol version 1, little endian */
        7,   0,   0,   0,   0,   0,   0,   0,   /* the sender's id */
        16,  0,   0,   0,   0,   0,   0,   0,   /* address bytes to follow, NUL included */
        '1', '2', '7', '.', '0', '.', '0', '.', /* the sender's address */
        '1', ':', '1', '2', '3', '4', '5', 0};
    assert_memory_equal(ours, expect, sizeof(expect));

    /* 12 bytes and a NUL, padded to 16; a 64-bit id. */
    const char *self = "10.1.2.3:700";
    raft_id big = 0x0102030405060708ULL;
    n = handshake_of(false, big, self, stock);
    assert_int_equal(handshake_of(true, big, self, ours), n);
    assert_int_equal(n, 40);
    assert_memory_equal(ours, stock, 24 + strlen(self) + 1);
    for (size_t i = 24 + strlen(self) + 1; i < n; i++)
        assert_int_equal(ours[i], 0);
    loop_close();
}

/* ---- each transport accepts the other ---- */

struct accepted {
    struct raft_uv_transport *t;
    raft_id id;
    char address[64];
    uv_stream_t *stream;
    char data[16];
    size_t len;
    int err; /* the first read error */
    uint64_t err_at;
};

static struct accepted acc[4]; /* in the order the connections came */

static void acc_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct accepted *a = h->data;
    (void)size;
    *buf = uv_buf_init(a->data + a->len, (unsigned)(sizeof(a->data) - 1 - a->len));
}

static void acc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct accepted *a = st->data;
    (void)buf;
    if (n > 0)
        a->len += (size_t)n;
    if (n < 0 && !a->err) {
        a->err = (int)n;
        a->err_at = now_mono_ms();
        uv_read_stop(st);
    }
}

static bool both_read_failed(void *arg)
{
    struct accepted *a = arg;
    return a[0].err && a[1].err;
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    struct accepted *a = acc;
    while (a->stream)
        a++;
    a->t = t;
    a->id = id;
    snprintf(a->address, sizeof(a->address), "%s", address);
    a->stream = stream;
    stream->data = a;
    uv_read_start(stream, acc_alloc, acc_read);
}

static bool got_ping(void *arg)
{
    return strcmp(((struct accepted *)arg)->data, "ping") == 0;
}

static void ping(uv_stream_t *st)
{
    static uv_write_t w;
    uv_buf_t b = uv_buf_init("ping", 4);
    assert_int_equal(uv_write(&w, st, &b, 1, NULL), 0);
}

/* Rolling upgrades: a stock node connects to a rafttcp node and the other way round; each
 * listener reports the connecting node's id and address, and the stream carries bytes. */
static void test_stock_and_rafttcp_accept_each_other(void **state)
{
    (void)state;
    struct tr stock, ours;
    struct conn c;
    char stock_addr[32], ours_addr[32];
    loop_open();
    memset(acc, 0, sizeof(acc));
    snprintf(stock_addr, sizeof(stock_addr), "127.0.0.1:%d", free_port());
    snprintf(ours_addr, sizeof(ours_addr), "127.0.0.1:%d", free_port());
    tr_open(&stock, false, 1, stock_addr, 1000, 1000);
    tr_open(&ours, true, 2, ours_addr, 1000, 1000);
    assert_int_equal(stock.t.listen(&stock.t, on_accept), 0);
    assert_int_equal(ours.t.listen(&ours.t, on_accept), 0);

    /* stock -> ours */
    assert_int_equal(conn_start(&stock, &c, ours_addr), 0);
    assert_true(wait_for(conn_done, &c, 2000));
    assert_int_equal(c.status, 0);
    ping(c.stream);
    assert_true(wait_for(got_ping, &acc[0], 2000));
    assert_ptr_equal(acc[0].t, &ours.t); /* the transport libraft knows, not the inner one */
    assert_int_equal(acc[0].id, 1);
    assert_string_equal(acc[0].address, stock_addr);
    conn_drop(&c);

    /* ours -> stock */
    assert_int_equal(conn_start(&ours, &c, stock_addr), 0);
    assert_true(wait_for(conn_done, &c, 2000));
    assert_int_equal(c.status, 0);
    /* The outgoing socket carries the send timeout. */
    uv_os_fd_t fd;
    unsigned uto = 0;
    socklen_t len = sizeof(uto);
    assert_int_equal(uv_fileno((uv_handle_t *)c.stream, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, &len), 0);
    assert_int_equal(uto, 1000);
    ping(c.stream);
    assert_true(wait_for(got_ping, &acc[1], 2000));
    assert_ptr_equal(acc[1].t, &stock.t);
    assert_int_equal(acc[1].id, 2);
    assert_string_equal(acc[1].address, ours_addr);
    conn_drop(&c);

    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)acc[i].stream, stream_free);
    tr_shut(&stock);
    tr_shut(&ours);
    loop_close();
}

/* A connect that the kernel completed while the loop was stalled past the timeout is kept:
 * timers run before I/O in a loop pass, so the timer sees it first. */
static void test_a_stalled_loop_is_not_a_timeout(void **state)
{
    (void)state;
    struct tr ours;
    struct sink s;
    struct conn c;
    char addr[32];
    loop_open();
    sink_open(&s, addr, sizeof(addr));
    tr_open(&ours, true, 3, "127.0.0.1:1", 20, 1000);
    uv_update_time(&loop);
    assert_int_equal(conn_start(&ours, &c, addr), 0);
    usleep(150 * 1000);
    assert_true(wait_for(conn_done, &c, 2000));
    assert_int_equal(c.status, 0);
    conn_drop(&c);
    tr_shut(&ours);
    sink_close(&s);
    loop_close();
}

/* Bad settings and addresses fail at once, with no callback. */
static void test_errors(void **state)
{
    (void)state;
    struct tr ours;
    struct conn c;
    struct ferr e = {0};
    struct raft_uv_transport t = {0};
    loop_open();
    struct rafttcp_config zero = {.connect_timeout_ms = 0, .send_timeout_ms = 1};
    assert_int_equal(rafttcp_init(&t, &loop, &zero, &e), FERR_INVALID);
    struct rafttcp_config bad = {
        .connect_timeout_ms = 1, .send_timeout_ms = 1, .bind_address = "nowhere"};
    assert_int_equal(rafttcp_init(&t, &loop, &bad, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "nowhere"));

    tr_open(&ours, true, 3, "127.0.0.1:1", 10000, 1000);
    assert_int_equal(conn_start(&ours, &c, "nowhere:1"), RAFT_NOCONNECTION);
    assert_non_null(strstr(ours.t.errmsg, "nowhere:1"));
    assert_int_equal(conn_start(&ours, &c, "127.0.0.1:99999"), RAFT_NOCONNECTION);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_false(c.done);
    tr_shut(&ours);
    loop_close();
}

/* ---- timeouts, in a network namespace of a forked child ---- */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

static void skip_or_fail(const char *why)
{
    const char *no_skip = getenv("FERRY_NO_SKIP");
    if (no_skip && strcmp(no_skip, "1") == 0)
        fail_msg("cannot run here (%s) and FERRY_NO_SKIP=1", why);
    skip();
}

/* In a namespace of its own: lo up, and a veth pair v0 (10.77.0.1/24) - v1 (no address). The
 * neighbour 10.77.0.2 has a MAC address that nothing owns, so v1 drops what is sent to it:
 * 10.77.0.2 swallows SYNs like a peer whose link is down. */
static void run_in_netns(void (*body)(void))
{
    if (geteuid() != 0)
        skip_or_fail("not root");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0) {
            fprintf(stderr, "unshare(CLONE_NEWNET): %s; skipping\n", strerror(errno));
            _exit(SKIP_STATUS);
        }
        if (system("ip link set lo up && ip link add v0 type veth peer name v1 && "
                   "ip addr add 10.77.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up && "
                   "ip neigh add 10.77.0.2 lladdr 02:00:00:77:00:02 dev v0") != 0) {
            fprintf(stderr, "cannot set up the namespace with ip(8); skipping\n");
            _exit(SKIP_STATUS);
        }
        body();
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS)
        skip_or_fail("no network namespace or no ip(8)");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("namespace child failed (status 0x%x)", (unsigned)status);
}

/* A connect to a peer that swallows SYNs: the stock transport's is still pending after
 * 1.5 s (the kernel retries at 1, 3, 7, 15 s...), rafttcp's fails after its timeout. Once the
 * peer answers, rafttcp's next attempt connects at once. */
static void connect_timeout_body(void)
{
    struct tr stock, ours, peer;
    struct conn cs, co;
    loop_open();
    tr_open(&stock, false, 1, "10.77.0.1:7001", 300, 1000);
    tr_open(&ours, true, 2, "10.77.0.1:7002", 300, 1000);
    CHECK(conn_start(&stock, &cs, "10.77.0.2:7000") == 0);
    CHECK(conn_start(&ours, &co, "10.77.0.2:7000") == 0);
    CHECK(wait_for(conn_done, &co, 3000));
    fprintf(stderr, "rafttcp: connect to a silent peer failed after %llu ms\n",
            (unsigned long long)co.took_ms);
    CHECK(co.status == RAFT_NOCONNECTION);
    CHECK(co.took_ms >= 280 && co.took_ms < 1000);
    CHECK(strstr(ours.t.errmsg, "no answer within 300 ms"));
    CHECK(!wait_for(conn_done, &cs, 1500));
    fprintf(stderr, "stock: connect still pending after %llu ms\n",
            (unsigned long long)(now_mono_ms() - cs.started));

    /* Closing the transport cancels a pending connect, before its close callback. */
    struct tr slow;
    struct conn cc;
    tr_open(&slow, true, 4, "10.77.0.1:7003", 10000, 1000);
    CHECK(conn_start(&slow, &cc, "10.77.0.2:7000") == 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    slow.t.close(&slow.t, tr_closed);
    CHECK(wait_for(is_closed, &slow, 2000));
    CHECK(cc.done && cc.status == RAFT_CANCELED && !cc.stream);
    rafttcp_close(&slow.t);

    /* The peer appears (its address now local, a listener on it): the retry connects. */
    CHECK(system("ip addr add 10.77.0.2/32 dev lo") == 0);
    memset(acc, 0, sizeof(acc));
    tr_open(&peer, true, 3, "10.77.0.2:7000", 300, 1000);
    CHECK(peer.t.listen(&peer.t, on_accept) == 0);
    CHECK(conn_start(&ours, &co, "10.77.0.2:7000") == 0);
    CHECK(wait_for(conn_done, &co, 2000));
    CHECK(co.status == 0 && co.took_ms < 100);
    conn_drop(&co);
    tr_shut(&stock); /* cancels its connect */
    CHECK(cs.done && cs.status == RAFT_CANCELED);
    tr_shut(&ours);
    for (int i = 0; i < 4; i++)
        if (acc[i].stream)
            uv_close((uv_handle_t *)acc[i].stream, stream_free);
    tr_shut(&peer);
    loop_close();
}

static void test_connect_to_a_silent_peer_times_out(void **state)
{
    (void)state;
    run_in_netns(connect_timeout_body);
}

struct sender {
    uv_stream_t *stream;
    uv_timer_t timer;
    uv_write_t w[64];
    int sent;
    int failed; /* the first error a write reported */
    uint64_t failed_at;
};

static void sent_cb(uv_write_t *w, int status)
{
    struct sender *s = w->data;
    if (status < 0 && !s->failed) {
        s->failed = status;
        s->failed_at = now_mono_ms();
    }
}

/* Writes a small message every 50 ms, as a leader's heartbeats do. */
static void send_tick(uv_timer_t *t)
{
    struct sender *s = t->data;
    static char msg[64] = "heartbeat";
    if (s->failed || s->sent == (int)ARRAY_SIZE(s->w))
        return;
    uv_buf_t b = uv_buf_init(msg, sizeof(msg));
    uv_write_t *w = &s->w[s->sent++];
    w->data = s;
    int rv = uv_write(w, s->stream, &b, 1, sent_cb);
    if (rv < 0 && !s->failed) {
        s->failed = rv;
        s->failed_at = now_mono_ms();
    }
}

static bool send_failed(void *arg)
{
    return ((struct sender *)arg)->failed != 0;
}

/* An established connection whose peer vanishes (its address removed, a blackhole route in
 * its place: nothing arrives, nothing is acknowledged): writes on rafttcp's connection fail
 * about its send timeout later, so libraft reconnects; on the stock transport's they still
 * succeed 2 s later (TCP would keep retransmitting for ~15 min). The other ends, accepted by
 * rafttcp, hear nothing more and end as well. */
static void send_timeout_body(void)
{
    struct tr stock, ours, peer;
    struct conn cs, co;
    struct sender ss = {0}, so = {0};
    loop_open();
    memset(acc, 0, sizeof(acc));
    CHECK(system("ip addr add 10.77.0.3/32 dev lo") == 0);
    tr_open(&peer, true, 3, "10.77.0.3:7000", 300, 300);
    CHECK(peer.t.listen(&peer.t, on_accept) == 0);
    tr_open(&stock, false, 1, "10.77.0.1:7001", 300, 300);
    tr_open(&ours, true, 2, "10.77.0.1:7002", 300, 300);
    CHECK(conn_start(&stock, &cs, "10.77.0.3:7000") == 0);
    CHECK(wait_for(conn_done, &cs, 2000) && cs.status == 0);
    CHECK(conn_start(&ours, &co, "10.77.0.3:7000") == 0);
    CHECK(wait_for(conn_done, &co, 2000) && co.status == 0);

    CHECK(system("ip addr del 10.77.0.3/32 dev lo && ip route add blackhole 10.77.0.3/32") == 0);
    uint64_t t0 = now_mono_ms();
    ss.stream = cs.stream;
    so.stream = co.stream;
    uv_timer_init(&loop, &ss.timer);
    uv_timer_init(&loop, &so.timer);
    ss.timer.data = &ss;
    so.timer.data = &so;
    uv_timer_start(&ss.timer, send_tick, 0, 50);
    uv_timer_start(&so.timer, send_tick, 0, 50);
    CHECK(wait_for(send_failed, &so, 3000));
    fprintf(stderr, "rafttcp: writes to a vanished peer fail after %llu ms (%s)\n",
            (unsigned long long)(so.failed_at - t0), uv_strerror(so.failed));
    CHECK(so.failed_at - t0 >= 250 && so.failed_at - t0 < 1500);
    CHECK(!wait_for(send_failed, &ss, 2000 - (unsigned)(now_mono_ms() - t0)));
    fprintf(stderr, "stock: writes still succeed after %llu ms\n",
            (unsigned long long)(now_mono_ms() - t0));
    /* The connections rafttcp accepted end too (keepalive), so libraft does not keep them. */
    CHECK(wait_for(both_read_failed, acc, 5000));
    fprintf(stderr, "accepted connections end %llu and %llu ms after the peer went (%s)\n",
            (unsigned long long)(acc[0].err_at - t0), (unsigned long long)(acc[1].err_at - t0),
            uv_strerror(acc[0].err));
    uv_close((uv_handle_t *)&ss.timer, NULL);
    uv_close((uv_handle_t *)&so.timer, NULL);
    conn_drop(&cs);
    conn_drop(&co);
    for (int i = 0; i < 4; i++)
        if (acc[i].stream)
            uv_close((uv_handle_t *)acc[i].stream, stream_free);
    tr_shut(&stock);
    tr_shut(&ours);
    tr_shut(&peer);
    loop_close();
}

static void test_unacknowledged_sends_end_the_connection(void **state)
{
    (void)state;
    run_in_netns(send_timeout_body);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_is_the_stock_one),
        cmocka_unit_test(test_stock_and_rafttcp_accept_each_other),
        cmocka_unit_test(test_a_stalled_loop_is_not_a_timeout),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_connect_to_a_silent_peer_times_out),
        cmocka_unit_test(test_unacknowledged_sends_end_the_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
