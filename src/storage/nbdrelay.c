/* SPDX-License-Identifier: MIT */
/* Unix socket to TCP byte relay for redirected disks (nbdrelay.h). */
#include "storage/nbdrelay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define RETRY_MS 300              /* a held client's next try to reach the export */
#define HIGH_WATER (8u << 20)     /* stop reading a side while the other has this much queued */
#define READ_CHUNK (256u * 1024u) /* bytes per read */

struct conn {
    struct nbd_relay *relay;
    struct conn *next;
    uv_pipe_t down; /* the VM's QEMU */
    uv_tcp_t up;    /* the NBD server */
    uv_timer_t retry;
    uv_connect_t connect;
    bool up_init, up_connected, closing;
    bool resolving;   /* a nbd_relay_resolved is owed for this connection */
    unsigned handles; /* handles not yet closed */
    bool down_paused, up_paused;
};

struct nbd_relay {
    uv_loop_t *loop;
    uv_pipe_t listener;
    char path[512];
    nbd_relay_resolve_fn resolve;
    void *data;
    struct conn *conns;
    unsigned nconns; /* allocated connections, closing ones included */
    bool closing;
    bool listener_closed;
    char why[256];
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    char *buf;
};

static void relay_maybe_free(struct nbd_relay *r)
{
    if (r->closing && r->listener_closed && r->nconns == 0)
        free(r);
}

static void conn_unlink(struct conn *c)
{
    struct nbd_relay *r = c->relay;
    for (struct conn **p = &r->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
}

static void conn_maybe_free(struct conn *c)
{
    if (c->handles > 0 || c->resolving)
        return;
    struct nbd_relay *r = c->relay;
    free(c);
    r->nconns--;
    relay_maybe_free(r);
}

static void handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    conn_unlink(c);
    uv_close((uv_handle_t *)&c->down, handle_closed);
    uv_close((uv_handle_t *)&c->retry, handle_closed);
    if (c->up_init)
        uv_close((uv_handle_t *)&c->up, handle_closed);
    else
        c->handles--; /* counted at creation */
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w->buf);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* The side we stopped reading resumes once its peer's queue drained. */
    if (c->down_paused && c->up.write_queue_size < HIGH_WATER / 2) {
        c->down_paused = false;
        uv_read_start((uv_stream_t *)&c->down, alloc_cb, on_read);
    }
    if (c->up_paused && c->down.write_queue_size < HIGH_WATER / 2) {
        c->up_paused = false;
        uv_read_start((uv_stream_t *)&c->up, alloc_cb, on_read);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n == 0) {
        free(buf->base);
        return;
    }
    if (n < 0 || c->closing) {
        free(buf->base);
        conn_close(c); /* either side gone: the client reconnects, the server forgets it */
        return;
    }
    bool from_down = s == (uv_stream_t *)&c->down;
    uv_stream_t *dst = from_down ? (uv_stream_t *)&c->up : (uv_stream_t *)&c->down;
    struct wreq *w = malloc(sizeof(*w));
    if (!w) {
        free(buf->base);
        conn_close(c);
        return;
    }
    w->c = c;
    w->buf = buf->base;
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
    if (uv_write(&w->req, dst, &b, 1, written) < 0) {
        free(w->buf);
        free(w);
        conn_close(c);
        return;
    }
    if (dst->write_queue_size >= HIGH_WATER) {
        uv_read_stop(s);
        if (from_down)
            c->down_paused = true;
        else
            c->up_paused = true;
    }
}

static void try_resolve(struct conn *c);

static void retry_fired(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->closing)
        try_resolve(c);
}

static void retry_later(struct conn *c, const char *why)
{
    struct nbd_relay *r = c->relay;
    if (strcmp(r->why, why) != 0) {
        snprintf(r->why, sizeof(r->why), "%s", why);
        log_warn("nbd relay %s: %s; the client waits", r->path, why);
    }
    if (c->up_init) {
        c->up_init = false;
        c->handles++; /* the closed tcp handle's close callback decrements */
        uv_close((uv_handle_t *)&c->up, handle_closed);
    }
    uv_timer_start(&c->retry, retry_fired, RETRY_MS, 0);
}

static void up_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect to the export's server: %s",
                 uv_strerror(status));
        retry_later(c, why);
        return;
    }
    c->up_connected = true;
    c->relay->why[0] = '\0';
    if (uv_read_start((uv_stream_t *)&c->up, alloc_cb, on_read) < 0 ||
        uv_read_start((uv_stream_t *)&c->down, alloc_cb, on_read) < 0)
        conn_close(c);
}

void nbd_relay_resolved(void *token, const char *hostport, const char *why)
{
    struct conn *c = token;
    c->resolving = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (!hostport) {
        retry_later(c, why && *why ? why : "no server for the export");
        return;
    }
    char host[64];
    const char *colon = strrchr(hostport, ':');
    struct sockaddr_storage sa;
    size_t hl = colon ? (size_t)(colon - hostport) : 0;
    int port = colon ? atoi(colon + 1) : 0;
    if (!colon || hl == 0 || hl >= sizeof(host) || port <= 0 || port > 65535) {
        retry_later(c, "the coordinator named a bad NBD address");
        return;
    }
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    if (host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0) {
        retry_later(c, "the coordinator named a bad NBD address");
        return;
    }
    if (uv_tcp_init(c->relay->loop, &c->up) < 0) {
        conn_close(c);
        return;
    }
    c->up.data = c;
    c->up_init = true;
    uv_tcp_nodelay(&c->up, 1);
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->up, (struct sockaddr *)&sa, up_connected) < 0)
        retry_later(c, "cannot connect to the export's server");
}

static void try_resolve(struct conn *c)
{
    c->resolving = true;
    c->relay->resolve(c->relay->data, c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct nbd_relay *r = server->data;
    if (status < 0 || r->closing)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->relay = r;
    uv_pipe_init(r->loop, &c->down, 0);
    c->down.data = c;
    uv_timer_init(r->loop, &c->retry);
    c->retry.data = c;
    c->handles = 3; /* down, retry, and up (closed or never made) */
    r->nconns++;
    c->next = r->conns;
    r->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->down) < 0) {
        conn_close(c);
        return;
    }
    /* Nothing is read from the client before the server is there: NBD's server speaks
     * first, so the client waits for the greeting. */
    try_resolve(c);
}

int nbd_relay_open(uv_loop_t *loop, const char *sock_path, nbd_relay_resolve_fn fn, void *data,
                   struct nbd_relay **out, struct ferr *e)
{
    struct nbd_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return ferr_set(e, -ENOMEM, "out of memory");
    if (strlen(sock_path) >= sizeof(r->path) || strlen(sock_path) >= 108) {
        free(r);
        return ferr_set(e, FERR_INVALID, "nbd relay: socket path %s is too long", sock_path);
    }
    r->loop = loop;
    r->resolve = fn;
    r->data = data;
    snprintf(r->path, sizeof(r->path), "%s", sock_path);
    unlink(sock_path);
    int rc = uv_pipe_init(loop, &r->listener, 0);
    if (rc < 0) {
        free(r);
        return ferr_set(e, rc, "nbd relay: %s", uv_strerror(rc));
    }
    r->listener.data = r;
    if ((rc = uv_pipe_bind(&r->listener, sock_path)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&r->listener, 16, on_connection)) < 0) {
        ferr_set(e, rc, "nbd relay: cannot listen on %s: %s", sock_path, uv_strerror(rc));
        nbd_relay_close(r); /* frees r once the listener closed */
        return rc;
    }
    *out = r;
    return 0;
}

void nbd_relay_reset(struct nbd_relay *r)
{
    while (r->conns)
        conn_close(r->conns);
}

static void listener_closed(uv_handle_t *h)
{
    struct nbd_relay *r = h->data;
    r->listener_closed = true;
    relay_maybe_free(r);
}

void nbd_relay_close(struct nbd_relay *r)
{
    bool already = r->closing;
    r->closing = true;
    nbd_relay_reset(r);
    if (already)
        return;
    uv_close((uv_handle_t *)&r->listener, listener_closed);
    unlink(r->path);
}

unsigned nbd_relay_connected(const struct nbd_relay *r)
{
    unsigned n = 0;
    for (const struct conn *c = r->conns; c; c = c->next)
        n += c->up_connected;
    return n;
}

const char *nbd_relay_why(const struct nbd_relay *r)
{
    return r->why;
}
