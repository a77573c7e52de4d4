/* SPDX-License-Identifier: MIT */
/* A VM's screen for the browser over a WebSocket (wsvnc.h). */
#include "api/wsvnc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http.h"
#include "api/session.h"
#include "api/web.h"
#include "api/websocket.h"
#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "vm/vm.h"

#define FRAME_MAX 65536                    /* the biggest frame a browser may send */
#define OUT_MAX (512 * 1024)               /* bytes waiting for the browser */
#define TO_MAX (256 * 1024)                /* bytes waiting for the VNC server or the node */
#define CHUNK 65536                        /* read from the VNC server at a time */
#define CONNECT_TIMEOUT_MS 5000            /* the VM's node must answer the upgrade in this */
#define TICK_MS 1000
#define SESSION_CHECK_MS 2000 /* how often the login session is checked */
#define PING_MS 30000         /* a quiet browser is pinged this often */
#define DEAD_MS 75000         /* nothing heard this long (not even a pong): gone */

static unsigned nopen; /* screen WebSockets of this process, also those being set up */

struct wsvnc {
    struct api_ctx *ctx;
    struct http_req *req;    /* until it is answered */
    struct http_upgrade *up; /* NULL once handed back */
    int bfd;                 /* the browser's socket (the server's) */
    int vfd;                 /* the VNC server's socket here; -1 when relayed */
    struct peer_stream *ps;  /* the VM's node, when relayed */
    uv_poll_t bpoll, opoll;  /* the browser; the other side (vfd or the stream's fd) */
    uv_timer_t tick;
    unsigned handles; /* uv handles not yet closed */
    unsigned bev, oev;
    char vm[VM_NAME_MAX + 1];
    char session[SESSION_HEX]; /* the login session it was opened with; "" for a bearer */
    char node[64];             /* the VM's node when it is not this one */
    struct ws_conn ws;         /* to and from the browser (frames here; raw bytes when relayed) */
    uint8_t to[TO_MAX]; /* to the VNC server or the node */
    size_t to_len;
    bool other_eof; /* the VNC server or the node closed */
    bool closed;
    uint64_t session_ms;
};

static bool relayed(const struct wsvnc *c)
{
    return c->ps != NULL;
}

static void wsvnc_free(struct wsvnc *c)
{
    if (c->vfd >= 0)
        close(c->vfd);
    peer_stream_close(c->ps);
    ws_conn_free(&c->ws);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct wsvnc *c = h->data;
    if (--c->handles == 0)
        wsvnc_free(c);
}

/* Stops everything and hands the browser's socket back to the server, which closes it. */
static void wsvnc_shutdown(struct wsvnc *c)
{
    if (c->closed)
        return;
    c->closed = true;
    nopen--;
    if (c->up) {
        uv_poll_stop(&c->bpoll);
        http_upgrade_close(c->up);
        c->up = NULL;
    }
    uv_close((uv_handle_t *)&c->bpoll, on_handle_closed);
    uv_close((uv_handle_t *)&c->opoll, on_handle_closed);
    uv_close((uv_handle_t *)&c->tick, on_handle_closed);
}

static void wsvnc_update(struct wsvnc *c);

/* Sends a close frame (here) and ends once it is out; a relay only lets the browser go. */
static void wsvnc_close(struct wsvnc *c, unsigned code, const char *reason)
{
    if (c->ws.closing || c->closed)
        return;
    log_info("screen %s: websocket closed (%u %s)", c->vm, code, reason);
    if (!relayed(c))
        ws_conn_close(&c->ws, code, reason);
    c->ws.closing = true;
    wsvnc_update(c);
}

/* ---- the other side: the VNC server's socket here, or the VM's node ---- */

static long other_recv(struct wsvnc *c, void *buf, size_t len)
{
    if (relayed(c))
        return peer_stream_recv(c->ps, buf, len);
    ssize_t n = recv(c->vfd, buf, len, MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    return n;
}

static long other_send(struct wsvnc *c, const void *buf, size_t len)
{
    if (relayed(c))
        return peer_stream_send(c->ps, buf, len);
    ssize_t n = send(c->vfd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    return n;
}

/* What the other side sent goes to the browser: as it came when relayed (the node frames it),
 * else in binary frames. Reads while there is room (a TLS stream may hold decrypted bytes that
 * poll does not show, so this also runs after each flush). */
static void other_read(struct wsvnc *c)
{
    uint8_t buf[CHUNK];
    while (!c->ws.closing && !c->closed && !c->other_eof &&
           c->ws.out_len + CHUNK + WS_HEADER_MAX <= OUT_MAX) {
        long n = other_recv(c, buf, sizeof(buf));
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            c->other_eof = true;
            if (relayed(c))
                log_info("screen %s: %s closed the relayed websocket", c->vm, c->node);
            else
                wsvnc_close(c, WS_CLOSE_GOING_AWAY, "the VM's screen closed (it stopped or moved)");
            return;
        }
        int rc;
        if (relayed(c)) {
            rc = ws_conn_reserve(&c->ws, (size_t)n);
            if (rc == 0) {
                memcpy(c->ws.out + c->ws.out_len, buf, (size_t)n);
                c->ws.out_len += (size_t)n;
            }
        } else {
            rc = ws_conn_queue(&c->ws, WS_BINARY, buf, (size_t)n);
        }
        if (rc < 0) {
            wsvnc_close(c, WS_CLOSE_INTERNAL, "out of memory");
            return;
        }
    }
}

static void other_flush(struct wsvnc *c)
{
    while (c->to_len > 0 && !c->closed && !c->other_eof) {
        long n = other_send(c, c->to, c->to_len);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            c->other_eof = true;
            wsvnc_close(c, WS_CLOSE_GOING_AWAY, "the VM's screen closed (it stopped or moved)");
            return;
        }
        memmove(c->to, c->to + n, c->to_len - (size_t)n);
        c->to_len -= (size_t)n;
    }
}

/* ---- the browser ---- */

static bool vnc_has_room(void *data)
{
    struct wsvnc *c = data;
    return !c->closed && c->to_len + FRAME_MAX <= TO_MAX;
}

static int vnc_message(void *data, int kind, const uint8_t *msg, size_t len, const char **why)
{
    struct wsvnc *c = data;
    if (c->to_len + len > TO_MAX) {
        *why = "the screen does not keep up";
        return WS_CLOSE_POLICY;
    }
    memcpy(c->to + c->to_len, msg, len);
    c->to_len += len;
    return 0;
}

/* Parses the browser's frames (here): messages go to the VNC server as they are. */
static void browser_frames(struct wsvnc *c)
{
    const char *why = "";
    int code = ws_conn_frames(&c->ws, now_mono_ms(), vnc_has_room, vnc_message, c, &why);
    if (code)
        wsvnc_close(c, (unsigned)code, why);
}

static void browser_read(struct wsvnc *c)
{
    if (relayed(c)) { /* bytes as they come: the node reads the frames */
        ssize_t n = recv(c->bfd, c->to + c->to_len, TO_MAX - c->to_len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            wsvnc_shutdown(c);
            return;
        }
        c->to_len += (size_t)n;
        c->ws.heard_ms = now_mono_ms();
        return;
    }
    ssize_t n = recv(c->bfd, c->ws.in + c->ws.in_len, c->ws.in_cap - c->ws.in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) { /* the browser went away without a close frame */
        wsvnc_shutdown(c);
        return;
    }
    c->ws.in_len += (size_t)n;
    browser_frames(c);
}

static void browser_flush(struct wsvnc *c)
{
    while (c->ws.out_len > 0 && !c->closed) {
        ssize_t n = send(c->bfd, c->ws.out, c->ws.out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            wsvnc_shutdown(c);
            return;
        }
        ws_conn_sent(&c->ws, (size_t)n);
    }
}

static void on_bpoll(uv_poll_t *p, int status, int events);
static void on_opoll(uv_poll_t *p, int status, int events);

/* Moves what can be moved, then asks for the events that can move more. */
static void wsvnc_update(struct wsvnc *c)
{
    if (c->closed)
        return;
    other_flush(c);
    browser_flush(c);
    if (c->closed)
        return;
    other_read(c);
    browser_flush(c);
    if (c->closed)
        return;
    /* Ends: our close frame is out; or the node closed and all it sent is out. */
    if (c->ws.out_len == 0 && (c->ws.closing || (relayed(c) && c->other_eof))) {
        wsvnc_shutdown(c);
        return;
    }
    unsigned bev = 0, oev = 0;
    if (!c->ws.closing && c->to_len + (relayed(c) ? 1 : FRAME_MAX) <= TO_MAX)
        bev |= UV_READABLE;
    if (c->ws.out_len)
        bev |= UV_WRITABLE;
    if (!c->other_eof && !c->ws.closing && c->ws.out_len + CHUNK + WS_HEADER_MAX <= OUT_MAX)
        oev |= UV_READABLE;
    if (!c->other_eof && c->to_len)
        oev |= UV_WRITABLE;
    if (bev != c->bev) {
        c->bev = bev;
        if (bev)
            uv_poll_start(&c->bpoll, (int)bev, on_bpoll);
        else
            uv_poll_stop(&c->bpoll);
    }
    if (oev != c->oev) {
        c->oev = oev;
        if (oev)
            uv_poll_start(&c->opoll, (int)oev, on_opoll);
        else
            uv_poll_stop(&c->opoll);
    }
}

static void on_bpoll(uv_poll_t *p, int status, int events)
{
    struct wsvnc *c = p->data;
    if (status < 0) {
        wsvnc_shutdown(c);
        return;
    }
    if ((events & UV_READABLE) && !c->ws.closing)
        browser_read(c);
    if (!relayed(c) && c->ws.in_len && !c->closed)
        browser_frames(c); /* frames left while the VNC server's queue was full */
    wsvnc_update(c);
}

static void on_opoll(uv_poll_t *p, int status, int events)
{
    struct wsvnc *c = p->data;
    if (status < 0) {
        c->other_eof = true;
        wsvnc_close(c, WS_CLOSE_GOING_AWAY, "the VM's screen closed (it stopped or moved)");
        return;
    }
    if (!relayed(c) && c->ws.in_len && !c->closed)
        browser_frames(c);
    wsvnc_update(c);
}

static void on_tick(uv_timer_t *t)
{
    struct wsvnc *c = t->data;
    if (c->closed || c->ws.closing)
        return;
    uint64_t now = now_mono_ms();
    if (c->session[0] && now - c->session_ms >= SESSION_CHECK_MS) {
        c->session_ms = now;
        if (!c->ctx->web || !web_session_valid(c->ctx->web, c->session)) {
            if (relayed(c)) { /* mid-stream: no frame of ours can go in */
                log_info("screen %s: the session ended; cutting the relay", c->vm);
                wsvnc_shutdown(c);
            } else {
                wsvnc_close(c, WS_CLOSE_POLICY, "your session ended; log in again");
            }
            return;
        }
    }
    if (relayed(c))
        return;                         /* the VM's node pings the browser through us */
    int keep = ws_conn_keepalive(&c->ws, now, PING_MS, DEAD_MS);
    if (keep == WS_KEEP_DEAD) {
        log_info("screen %s: nothing heard from the browser for %d s; closing", c->vm,
                 DEAD_MS / 1000);
        wsvnc_shutdown(c);
    } else if (keep == WS_KEEP_PINGED) {
        wsvnc_update(c);
    }
}

/* ---- opening ---- */

/* Frees c before any handle was made (the 101 never went out). */
static void wsvnc_abandon(struct wsvnc *c)
{
    nopen--;
    wsvnc_free(c);
}

static void on_server_close(void *data)
{
    struct wsvnc *c = data;
    c->up = NULL;
    if (c->bfd < 0) {
        wsvnc_abandon(c);
        return;
    }
    uv_poll_stop(&c->bpoll);
    c->ws.closing = true;
    wsvnc_shutdown(c);
}

static void on_upgraded(struct http_upgrade *u, int fd, const char *extra, size_t extra_len,
                        void *data)
{
    struct wsvnc *c = data;
    int ofd = relayed(c) ? peer_stream_fd(c->ps) : c->vfd;
    c->bfd = fd;
    c->up = u;
    if (uv_poll_init_socket(c->ctx->loop, &c->bpoll, fd) < 0) {
        http_upgrade_close(u);
        wsvnc_abandon(c);
        return;
    }
    if (uv_poll_init_socket(c->ctx->loop, &c->opoll, ofd) < 0) {
        c->bpoll.data = c;
        c->handles = 1;
        c->closed = true;
        nopen--;
        http_upgrade_close(u);
        uv_close((uv_handle_t *)&c->bpoll, on_handle_closed);
        return;
    }
    c->bpoll.data = c->opoll.data = c;
    uv_timer_init(c->ctx->loop, &c->tick);
    c->tick.data = c;
    c->handles = 3;
    c->session_ms = c->ws.heard_ms = c->ws.pinged_ms = now_mono_ms();
    size_t room = relayed(c) ? TO_MAX : c->ws.in_cap;
    if (extra_len > room)
        extra_len = room;
    if (relayed(c)) {
        memcpy(c->to, extra, extra_len);
        c->to_len = extra_len;
    } else {
        memcpy(c->ws.in, extra, extra_len);
        c->ws.in_len = extra_len;
        browser_frames(c);
    }
    log_info("screen %s: websocket opened%s%s", c->vm, relayed(c) ? ", relayed from " : "",
             relayed(c) ? c->node : "");
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    wsvnc_update(c);
}

static void answer_upgrade(struct wsvnc *c)
{
    char accept[WS_ACCEPT_LEN + 1];
    struct http_req *req = c->req;
    c->req = NULL;
    if (ws_accept_key(http_req_header(req, "Sec-WebSocket-Key"), accept) < 0) {
        http_reply_errorf(req, -ENOMEM, "screen: out of memory");
        wsvnc_abandon(c);
        return;
    }
    const char *h[] = {"Upgrade", "websocket", "Sec-WebSocket-Accept", accept, NULL};
    if (http_reply_upgrade(req, h, on_upgraded, on_server_close, c) < 0)
        wsvnc_abandon(c);
}

static void on_node_upgraded(struct peer_stream *s, const char *extra, size_t extra_len,
                             const struct ferr *e, void *data)
{
    struct wsvnc *c = data;
    if (!s) {
        http_reply_errorf(c->req, FERR_UNAVAIL, "screen of %s on %s: %s", c->vm, c->node, e->msg);
        wsvnc_abandon(c);
        return;
    }
    c->ps = s;
    /* What the node sent right behind its 101 is the browser's. */
    if (extra_len && ws_conn_reserve(&c->ws, extra_len) == 0) {
        memcpy(c->ws.out, extra, extra_len);
        c->ws.out_len = extra_len;
    }
    answer_upgrade(c);
}

/* Connects to the VNC server's unix socket at path (non-blocking from here on). */
static int vnc_connect(const char *path, struct ferr *e)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return ferr_set(e, -ENAMETOOLONG, "screen: %s: path too long", path);
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "screen: socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        close(fd);
        return ferr_set(e, FERR_STATE, "screen: connect %s: %s (is the VM running?)", path,
                        strerror(err));
    }
    return fd;
}

void wsvnc_open(struct api_ctx *ctx, struct http_req *req, const char *name)
{
    char why[200];
    const char *key = http_req_header(req, "Sec-WebSocket-Key");
    if (ws_handshake_check(http_req_method(req), http_req_header(req, "Upgrade"),
                           http_req_header(req, "Connection"),
                           http_req_header(req, "Sec-WebSocket-Version"), key, why,
                           sizeof(why)) < 0) {
        http_reply_errorf(req, FERR_INVALID, "%s (the screen is a WebSocket)", why);
        return;
    }
    /* A browser always sends Origin with a WebSocket; the cookie's gate checked it, and a
     * bearer's request with one is held to the same. */
    const char *origin = http_req_header(req, "Origin");
    if (http_req_is_remote(req) &&
        !session_origin_ok(origin, http_req_header(req, "Host"), http_req_tls(req))) {
        http_reply_errorf(req, FERR_FORBIDDEN, "websocket: Origin %.100s is not this server's",
                          origin);
        return;
    }
    if (nopen >= WSVNC_MAX) {
        http_reply_errorf(req, FERR_UNAVAIL, "screen: %d screens are open on %s already; close one",
                          WSVNC_MAX, ctx->node_name);
        return;
    }
    struct wsvnc *c = calloc(1, sizeof(*c));
    if (!c) {
        http_reply_errorf(req, -ENOMEM, "screen: out of memory");
        return;
    }
    c->ctx = ctx;
    c->req = req;
    c->bfd = c->vfd = -1;
    snprintf(c->vm, sizeof(c->vm), "%s", name);
    if (ws_conn_init(&c->ws, FRAME_MAX, FRAME_MAX, OUT_MAX, now_mono_ms()) < 0) {
        ws_conn_free(&c->ws);
        free(c);
        http_reply_errorf(req, -ENOMEM, "screen: out of memory");
        return;
    }
    if (!http_req_header(req, "Authorization"))
        web_req_session(req, c->session, sizeof(c->session));
    nopen++;

    struct ferr e = {0};
    struct vm *vm = vmset_find(ctx->vms, name);
    if (vm) {
        char path[600];
        int fd = vm_vnc_path(vm, path, sizeof(path), &e);
        if (fd == 0)
            fd = vnc_connect(path, &e);
        if (fd < 0) {
            http_reply_error(req, &e);
            wsvnc_abandon(c);
            return;
        }
        c->vfd = fd;
        answer_upgrade(c);
        return;
    }
    char owner[64] = "";
    if (!ctx->fleet || fleet_owner_of(ctx->fleet, name, owner) < 0 || !owner[0] ||
        strcmp(owner, ctx->node_name) == 0) {
        http_reply_errorf(req, FERR_NOTFOUND, "no VM named %s (ferry vm list shows them)", name);
        wsvnc_abandon(c);
        return;
    }
    snprintf(c->node, sizeof(c->node), "%s", owner);
    char path[200];
    snprintf(path, sizeof(path), "/v1/vms/%s/vnc/ws", name);
    if (cluster_upgrade(ctx->cluster, owner, path, CONNECT_TIMEOUT_MS, on_node_upgraded, c, &e) <
        0) {
        http_reply_error(req, &e);
        wsvnc_abandon(c);
    }
}
