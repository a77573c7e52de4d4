/* SPDX-License-Identifier: MIT */
/* libraft's TCP transport with bounded connects (rafttcp.h): wraps the stock one for listening. */
#include "cluster/rafttcp.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The handshake's protocol version (libraft's uv_tcp.h, UV__TCP_HANDSHAKE_PROTOCOL). */
#define HANDSHAKE_PROTOCOL 1

struct attempt;

struct rafttcp {
    struct raft_uv_transport stock; /* listens and accepts; stock.data points back here */
    struct raft_uv_transport *outer;
    uv_loop_t *loop;
    unsigned connect_timeout_ms;
    unsigned send_timeout_ms;
    raft_id id;                  /* from init */
    char *address;               /* from init (copied): sent in every handshake */
    raft_uv_accept_cb accept_cb; /* from listen */
    struct attempt *attempts;    /* outgoing connects whose memory is not freed yet */
    bool initialized;            /* stock.init succeeded: its listener must be closed */
    bool closing;
    bool stock_closed;
    raft_uv_transport_close_cb close_cb;
};

/*
 * One outgoing connect. Its happy path: TCP connect, handshake written, the stream handed to
 * libraft (req->cb with status 0), the timer closed, the attempt freed. Any failure or the
 * transport's close tears it down: the socket and the timer are closed, then req->cb runs
 * with no stream and the attempt is freed.
 */
struct attempt {
    struct rafttcp *t;
    struct raft_uv_connect *req; /* NULL once its callback ran, or when none is owed */
    uv_tcp_t *tcp;               /* raft_malloc()ed (libraft frees it); NULL once handed over */
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_buf_t handshake;
    char address[64]; /* the peer's, for messages */
    int status;       /* for req->cb once the handles are closed */
    int open_handles; /* of tcp and timer, still to be closed by us */
    bool failing;     /* torn down: the callbacks of tcp do nothing more */
    bool writing;     /* connected, the handshake on its way */
    struct attempt *prev, *next;
};

/* libraft copies a transport's errmsg into its own when a call fails (uv.c). */
__attribute__((format(printf, 2, 3))) static void set_errmsg(struct raft_uv_transport *tr,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tr->errmsg, sizeof(tr->errmsg), fmt, ap);
    va_end(ap);
}

static void maybe_closed(struct rafttcp *t)
{
    if (!t->closing || !t->stock_closed || t->attempts || !t->close_cb)
        return;
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    cb(t->outer);
}

/* ---- the handshake ---- */

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The stock transport's handshake (uv_tcp_connect.c): protocol, id, padded address length,
 * then the address and its NUL, zero-padded to a multiple of 8 bytes. */
static int handshake_encode(raft_id id, const char *address, uv_buf_t *out)
{
    size_t padded = (strlen(address) + 1 + 7) / 8 * 8;
    size_t len = 3 * 8 + padded;
    unsigned char *p = calloc(1, len);
    if (!p)
        return -ENOMEM;
    put_le64(p, HANDSHAKE_PROTOCOL);
    put_le64(p + 8, id);
    put_le64(p + 16, padded);
    memcpy(p + 24, address, strlen(address));
    *out = uv_buf_init((char *)p, (unsigned)len);
    return 0;
}

/* ---- outgoing connections ---- */

static void attempt_free(struct attempt *a)
{
    struct rafttcp *t = a->t;
    if (a->prev)
        a->prev->next = a->next;
    else
        t->attempts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    raft_free(a->tcp);
    free(a->handshake.base);
    struct raft_uv_connect *req = a->req;
    int status = a->status;
    free(a);
    if (req)
        req->cb(req, NULL, status);
    maybe_closed(t);
}

static void handle_closed(uv_handle_t *h)
{
    struct attempt *a = h->data;
    if (--a->open_handles == 0)
        attempt_free(a);
}

/* Tears the attempt down; req->cb gets status once both handles are closed. */
static void attempt_fail(struct attempt *a, int status)
{
    if (a->failing)
        return;
    a->failing = true;
    a->status = status;
    if (a->tcp)
        uv_close((uv_handle_t *)a->tcp, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&a->timer))
        uv_close((uv_handle_t *)&a->timer, handle_closed);
}

static void handshake_written(uv_write_t *w, int status)
{
    struct attempt *a = w->data;
    struct rafttcp *t = a->t;
    if (a->failing)
        return;
    if (status < 0) {
        set_errmsg(t->outer, "connect to %s: handshake: %s", a->address, uv_strerror(status));
        attempt_fail(a, RAFT_NOCONNECTION);
        return;
    }
    /* The stream is libraft's from here; only the timer is left to close. */
    uv_stream_t *stream = (uv_stream_t *)a->tcp;
    struct raft_uv_connect *req = a->req;
    a->tcp = NULL;
    a->open_handles--;
    a->req = NULL;
    a->failing = true;
    uv_close((uv_handle_t *)&a->timer, handle_closed);
    req->cb(req, stream, 0);
}

static void connected(uv_connect_t *c, int status)
{
    struct attempt *a = c->data;
    struct rafttcp *t = a->t;
    if (a->failing) /* UV_ECANCELED from our own uv_close */
        return;
    if (status < 0) {
        set_errmsg(t->outer, "connect to %s: %s", a->address, uv_strerror(status));
        attempt_fail(a, RAFT_NOCONNECTION);
        return;
    }
    a->writing = true;
    int rv = uv_write(&a->write, (uv_stream_t *)a->tcp, &a->handshake, 1, handshake_written);
    if (rv < 0) {
        set_errmsg(t->outer, "connect to %s: handshake: %s", a->address, uv_strerror(rv));
        attempt_fail(a, RAFT_NOCONNECTION);
    }
}

static void connect_timed_out(uv_timer_t *timer)
{
    struct attempt *a = timer->data;
    struct rafttcp *t = a->t;
    struct sockaddr_storage peer;
    int len = sizeof(peer);
    if (a->failing || a->writing)
        return;
    /* Timers run before I/O in a loop pass: after a stall the kernel may have completed the
     * connect already, and its callback comes later in this same pass. */
    if (uv_tcp_getpeername(a->tcp, (struct sockaddr *)&peer, &len) == 0)
        return;
    set_errmsg(t->outer, "connect to %s: no answer within %u ms", a->address,
               t->connect_timeout_ms);
    attempt_fail(a, RAFT_NOCONNECTION);
}

/* "A.B.C.D:PORT" (libraft 0.15 speaks IPv4 only; a missing port is its default 8080). */
static int parse_address(const char *address, struct sockaddr_in *sa)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strchr(address, ':');
    size_t n = colon ? (size_t)(colon - address) : strlen(address);
    long port = 8080;
    if (n >= sizeof(host))
        return -EINVAL;
    memcpy(host, address, n);
    host[n] = '\0';
    if (colon) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || port < 1 || port > 65535)
            return -EINVAL;
    }
    return uv_ip4_addr(host, (int)port, sa);
}

/* Implementation of raft_uv_transport->connect. On failure no callback is owed. */
static int tr_connect(struct raft_uv_transport *outer, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct rafttcp *t = outer->impl;
    struct sockaddr_in sa;
    (void)id;
    if (t->closing) {
        set_errmsg(outer, "connect to %s: the transport is closing", address);
        return RAFT_CANCELED;
    }
    if (parse_address(address, &sa) < 0) {
        set_errmsg(outer, "connect to %s: not an IPv4 A.B.C.D:PORT address", address);
        return RAFT_NOCONNECTION;
    }
    struct attempt *a = calloc(1, sizeof(*a));
    if (!a)
        goto err_oom;
    a->t = t;
    snprintf(a->address, sizeof(a->address), "%s", address);
    if (handshake_encode(t->id, t->address, &a->handshake) < 0)
        goto err_after_alloc;
    a->tcp = raft_malloc(sizeof(*a->tcp));
    if (!a->tcp)
        goto err_after_handshake;
    int rv = uv_tcp_init_ex(t->loop, a->tcp, AF_INET); /* creates the socket now */
    if (rv < 0) {
        set_errmsg(outer, "connect to %s: socket: %s", address, uv_strerror(rv));
        raft_free(a->tcp);
        free(a->handshake.base);
        free(a);
        return rv == UV_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    uv_timer_init(t->loop, &a->timer); /* cannot fail */
    a->tcp->data = a;
    a->timer.data = a;
    a->connect.data = a;
    a->write.data = a;
    a->open_handles = 2;
    a->next = t->attempts;
    if (a->next)
        a->next->prev = a;
    t->attempts = a;

    uv_os_fd_t fd;
    unsigned user_timeout = t->send_timeout_ms;
    if (uv_fileno((uv_handle_t *)a->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
    rv = uv_tcp_connect(&a->connect, a->tcp, (const struct sockaddr *)&sa, connected);
    if (rv < 0) {
        set_errmsg(outer, "connect to %s: %s", address, uv_strerror(rv));
        attempt_fail(a, RAFT_NOCONNECTION); /* frees it later, no callback */
        return RAFT_NOCONNECTION;
    }
    uv_timer_start(&a->timer, connect_timed_out, t->connect_timeout_ms, 0);
    a->req = req;
    req->cb = cb;
    return 0;

err_after_handshake:
    free(a->handshake.base);
err_after_alloc:
    free(a);
err_oom:
    set_errmsg(outer, "%s", "out of memory");
    return RAFT_NOMEM;
}

/* ---- the rest, forwarded to the stock transport ---- */

static int tr_init(struct raft_uv_transport *outer, raft_id id, const char *address)
{
    struct rafttcp *t = outer->impl;
    char *copy = strdup(address);
    if (!copy) {
        set_errmsg(outer, "%s", "out of memory");
        return RAFT_NOMEM;
    }
    int rv = t->stock.init(&t->stock, id, address);
    if (rv != 0) {
        snprintf(outer->errmsg, sizeof(outer->errmsg), "%s", t->stock.errmsg);
        free(copy);
        return rv;
    }
    t->initialized = true;
    t->id = id;
    t->address = copy;
    return 0;
}

/*
 * An accepted connection is only read from. When its peer ends its side without a word (its
 * send timeout ended it while the network was down), nothing would ever arrive again and
 * libraft would keep the connection forever, one per outage and peer. Keepalive probes after
 * the send timeout (in whole seconds) of silence find out: a peer that is back answers with a
 * reset, one still away leaves them unanswered and TCP_USER_TIMEOUT ends the connection; either way
 * libraft's read fails and it closes the connection. A live peer acknowledges the probes, however
 * long it stays silent (a follower's connection to another follower carries nothing between
 * elections).
 */
static void keep_alive(uv_stream_t *stream, unsigned send_timeout_ms)
{
    uv_os_fd_t fd;
    int on = 1;
    int secs = (int)((send_timeout_ms + 999) / 1000);
    if (uv_fileno((uv_handle_t *)stream, &fd) != 0)
        return;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof(secs));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &send_timeout_ms, sizeof(send_timeout_ms));
}

static void stock_accepted(struct raft_uv_transport *stock, raft_id id, const char *address,
                           struct uv_stream_s *stream)
{
    struct rafttcp *t = stock->data;
    keep_alive(stream, t->send_timeout_ms);
    t->accept_cb(t->outer, id, address, stream);
}

static int tr_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct rafttcp *t = outer->impl;
    t->accept_cb = cb;
    int rv = t->stock.listen(&t->stock, stock_accepted);
    if (rv != 0)
        snprintf(outer->errmsg, sizeof(outer->errmsg), "%s", t->stock.errmsg);
    return rv;
}

static void stock_closed(struct raft_uv_transport *stock)
{
    struct rafttcp *t = stock->data;
    t->stock_closed = true;
    maybe_closed(t);
}

static void tr_close(struct raft_uv_transport *outer, raft_uv_transport_close_cb cb)
{
    struct rafttcp *t = outer->impl;
    t->closing = true;
    t->close_cb = cb;
    /* Pending connects end with RAFT_CANCELED, as the stock transport's do. */
    for (struct attempt *a = t->attempts; a; a = a->next)
        attempt_fail(a, RAFT_CANCELED);
    if (t->initialized)
        t->stock.close(&t->stock, stock_closed);
    else
        t->stock_closed = true;
    maybe_closed(t);
}

int rafttcp_init(struct raft_uv_transport *tr, uv_loop_t *loop, const struct rafttcp_config *cfg,
                 struct ferr *e)
{
    if (!cfg->connect_timeout_ms || !cfg->send_timeout_ms)
        return ferr_set(e, FERR_INVALID,
                        "raft: transport: connect and send timeouts must be "
                        "above 0 ms");
    struct rafttcp *t = calloc(1, sizeof(*t));
    if (!t)
        return ferr_set(e, -ENOMEM, "raft: transport: out of memory");
    int rv = raft_uv_tcp_init(&t->stock, loop);
    if (rv != 0) {
        free(t);
        return ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INTERNAL, "raft: transport: %s",
                        raft_strerror(rv));
    }
    t->stock.data = t;
    if (cfg->bind_address && (rv = raft_uv_tcp_set_bind_address(&t->stock, cfg->bind_address))) {
        raft_uv_tcp_close(&t->stock);
        free(t);
        return ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INVALID, "raft: bind address %s: %s",
                        cfg->bind_address, raft_strerror(rv));
    }
    t->outer = tr;
    t->loop = loop;
    t->connect_timeout_ms = cfg->connect_timeout_ms;
    t->send_timeout_ms = cfg->send_timeout_ms;

    void *data = tr->data;
    memset(tr, 0, sizeof(*tr));
    tr->data = data;
    tr->impl = t;
    tr->init = tr_init;
    tr->listen = tr_listen;
    tr->connect = tr_connect;
    tr->close = tr_close;
    return 0;
}

void rafttcp_close(struct raft_uv_transport *tr)
{
    struct rafttcp *t = tr->impl;
    if (!t)
        return;
    raft_uv_tcp_close(&t->stock);
    free(t->address);
    free(t);
    tr->impl = NULL;
}
