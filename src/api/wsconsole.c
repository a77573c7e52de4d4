/* SPDX-License-Identifier: MIT */
/* A VM's serial console for the browser over a WebSocket (wsconsole.h). */
#include "api/wsconsole.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http.h"
#include "api/session.h"
#include "api/web.h"
#include "api/websocket.h"
#include "cluster/cluster.h"
#include "common/log.h"
#include "common/reply.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "vm/vm.h"

#define FRAME_MAX WSCONSOLE_INPUT_MAX      /* the biggest frame a browser may send */
#define OUT_MAX (256 * 1024)               /* output waiting for a slow browser; more: close */
#define TYPED_MAX (64 * 1024)              /* typed bytes waiting for the guest; more: close */
#define TAIL_BYTES 4096                    /* what a new console shows of the past */
#define READ_MAX 65536                     /* console bytes read at a time */
#define LOCAL_MS 100                       /* how often the ring here is looked at */
#define REMOTE_MS 250                      /* how often the VM's node is asked */
#define REMOTE_TIMEOUT_MS 5000
#define SESSION_CHECK_MS 2000 /* how often the login session is checked */
#define INPUT_LINGER_MS 200   /* a one-shot input connection stays this long */
#define PING_MS 30000         /* a quiet browser is pinged this often */
#define DEAD_MS 75000         /* nothing heard this long (not even a pong): gone */
#define STALL_MS 30000        /* a browser that reads nothing this long: gone */

static unsigned nopen; /* console WebSockets of this process (bounded by WSCONSOLE_MAX) */

/* ---- typing into a local VM's console socket ---- */

struct conin;
typedef void (*conin_cb)(struct conin *ci, int status, const char *why, void *data);

/* A connection to a QEMU's console input socket: what is written reaches the guest, what
 * comes back (the console's output, also kept in the ring) is dropped. */
struct conin {
    uv_pipe_t pipe;
    uv_connect_t connect;
    uint8_t *pending; /* typed before the connection was up */
    size_t npending;
    size_t inflight; /* bytes in uv_write requests */
    bool connected, failed, closing;
    conin_cb cb; /* each time everything written so far is written, or on failure */
    void *data;
    char drop[4096];
};

struct conin_write {
    uv_write_t req;
    struct conin *ci;
    size_t len;
    char bytes[];
};

static void conin_fail(struct conin *ci, int rc, const char *what)
{
    if (ci->failed || ci->closing)
        return;
    ci->failed = true;
    char why[160];
    snprintf(why, sizeof(why), "console input: %s: %s", what, uv_strerror(rc));
    ci->cb(ci, rc, why, ci->data);
}

static void on_conin_written(uv_write_t *w, int status)
{
    struct conin_write *cw = (struct conin_write *)w;
    struct conin *ci = cw->ci;
    ci->inflight -= cw->len;
    free(cw);
    if (ci->closing)
        return;
    if (status < 0)
        conin_fail(ci, status, "write");
    else if (ci->inflight == 0 && ci->npending == 0)
        ci->cb(ci, 0, NULL, ci->data);
}

static int conin_write_now(struct conin *ci, const void *data, size_t len)
{
    struct conin_write *cw = malloc(sizeof(*cw) + len);
    if (!cw)
        return -ENOMEM;
    cw->ci = ci;
    cw->len = len;
    memcpy(cw->bytes, data, len);
    uv_buf_t b = uv_buf_init(cw->bytes, (unsigned)len);
    int rc = uv_write(&cw->req, (uv_stream_t *)&ci->pipe, &b, 1, on_conin_written);
    if (rc < 0) {
        free(cw);
        return rc;
    }
    ci->inflight += len;
    return 0;
}

static void on_conin_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct conin *ci = h->data;
    *buf = uv_buf_init(ci->drop, sizeof(ci->drop));
}

static void on_conin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conin *ci = s->data;
    if (n < 0)
        conin_fail(ci, (int)n, "QEMU closed the console socket");
}

static void on_conin_connected(uv_connect_t *c, int status)
{
    struct conin *ci = c->data;
    if (ci->closing)
        return;
    if (status < 0) {
        conin_fail(ci, status, "connect");
        return;
    }
    ci->connected = true;
    uv_read_start((uv_stream_t *)&ci->pipe, on_conin_alloc, on_conin_read);
    if (ci->npending) {
        int rc = conin_write_now(ci, ci->pending, ci->npending);
        free(ci->pending);
        ci->pending = NULL;
        ci->npending = 0;
        if (rc < 0)
            conin_fail(ci, rc, "write");
    }
}

/* Connects to the socket at path; cb (see conin_cb) runs from the loop, never from here. */
static int conin_open(uv_loop_t *loop, const char *path, conin_cb cb, void *data,
                      struct conin **out)
{
    struct conin *ci = calloc(1, sizeof(*ci));
    if (!ci)
        return -ENOMEM;
    uv_pipe_init(loop, &ci->pipe, 0);
    ci->pipe.data = ci;
    ci->connect.data = ci;
    ci->cb = cb;
    ci->data = data;
    uv_pipe_connect(&ci->connect, &ci->pipe, path, on_conin_connected);
    *out = ci;
    return 0;
}

static int conin_send(struct conin *ci, const void *data, size_t len)
{
    if (ci->failed)
        return FERR_STATE;
    if (ci->connected)
        return conin_write_now(ci, data, len);
    if (ci->npending + len > TYPED_MAX)
        return FERR_LIMIT;
    uint8_t *p = realloc(ci->pending, ci->npending + len);
    if (!p)
        return -ENOMEM;
    memcpy(p + ci->npending, data, len);
    ci->pending = p;
    ci->npending += len;
    return 0;
}

static void on_conin_closed(uv_handle_t *h)
{
    struct conin *ci = h->data;
    free(ci->pending);
    free(ci);
}

/* Closes ci; no callback runs after this. */
static void conin_close(struct conin *ci)
{
    if (!ci || ci->closing)
        return;
    ci->closing = true;
    uv_close((uv_handle_t *)&ci->pipe, on_conin_closed);
}

/* ---- POST /v1/vms/{name}/console/input on the VM's node ---- */

struct input_op {
    struct http_req *req;
    struct conin *ci;
    uv_timer_t linger;
    size_t len;
    bool answered;
};

static void on_input_linger_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_input_linger(uv_timer_t *t)
{
    struct input_op *op = t->data;
    conin_close(op->ci);
    uv_close((uv_handle_t *)&op->linger, on_input_linger_closed);
}

static void on_input_done(struct conin *ci, int status, const char *why, void *data)
{
    struct input_op *op = data;
    if (op->answered)
        return;
    op->answered = true;
    if (status < 0) {
        struct ferr e;
        ferr_set(&e, FERR_STATE, "%s", why);
        http_reply_error(op->req, &e);
    } else {
        http_reply_json(op->req, 200, json_pack("{s:I}", "written", (json_int_t)op->len));
    }
    /* Closed a moment later: QEMU reads the socket as the serial port takes the bytes. */
    uv_timer_start(&op->linger, on_input_linger, INPUT_LINGER_MS, 0);
}

void wsconsole_input_local(struct api_ctx *ctx, struct http_req *req, const char *name,
                           const char *data, size_t len)
{
    struct ferr e = {0};
    struct vm *vm = vmset_find(ctx->vms, name);
    char path[600];
    if (!vm) {
        ferr_set(&e, FERR_NOTFOUND, "no VM named %s here", name);
        http_reply_error(req, &e);
        return;
    }
    if (vm_console_input_path(vm, path, sizeof(path), &e) < 0) {
        http_reply_error(req, &e);
        return;
    }
    struct input_op *op = calloc(1, sizeof(*op));
    if (!op) {
        ferr_set(&e, -ENOMEM, "console input: out of memory");
        http_reply_error(req, &e);
        return;
    }
    op->req = req;
    op->len = len;
    uv_timer_init(ctx->loop, &op->linger);
    op->linger.data = op;
    if (conin_open(ctx->loop, path, on_input_done, op, &op->ci) < 0 ||
        conin_send(op->ci, data, len) < 0) {
        conin_close(op->ci);
        uv_close((uv_handle_t *)&op->linger, on_input_linger_closed);
        ferr_set(&e, -ENOMEM, "console input: out of memory");
        http_reply_error(req, &e);
    }
}

/* ---- the WebSocket ---- */

struct wscon {
    struct api_ctx *ctx;
    struct http_upgrade *up; /* NULL once handed back */
    int fd;
    uv_poll_t poll;
    uv_timer_t tick;
    unsigned handles; /* uv handles not yet closed */
    int refs;         /* the connection itself + each call to another node in flight */
    char vm[VM_NAME_MAX + 1];
    char session[SESSION_HEX]; /* the login session it was opened with; "" for a bearer */
    char node[64];             /* the VM's node when it is not this one; "" here */
    bool resync;               /* the next read only finds the end (after the VM moved) */
    bool started;              /* the first read (the tail) is done */
    uint64_t offset;
    struct ws_conn ws; /* the frames both ways, closing, the keepalive */
    uint8_t *typed; /* for another node, not sent yet */
    size_t ntyped;
    struct conin *ci;     /* typing into the VM here */
    bool reading, typing; /* calls to another node in flight */
    bool closed;          /* handles closing, the socket handed back */
    unsigned events;
    uint64_t session_ms;
    uint64_t stall_ms;  /* since when output waits over OUT_MAX / 2; 0: it does not */
};

static void wscon_maybe_free(struct wscon *c)
{
    if (c->refs > 0 || c->handles > 0)
        return;
    conin_close(c->ci);
    ws_conn_free(&c->ws);
    free(c->typed);
    free(c);
}

static void wscon_unref(struct wscon *c)
{
    c->refs--;
    wscon_maybe_free(c);
}

static void on_wscon_handle_closed(uv_handle_t *h)
{
    struct wscon *c = h->data;
    c->handles--;
    wscon_maybe_free(c);
}

/* Stops everything and hands the socket back to the server, which closes it. */
static void wscon_shutdown(struct wscon *c)
{
    if (c->closed)
        return;
    c->closed = true;
    nopen--;
    conin_close(c->ci);
    c->ci = NULL;
    if (c->up) {
        uv_poll_stop(&c->poll);
        http_upgrade_close(c->up);
        c->up = NULL;
    }
    uv_close((uv_handle_t *)&c->poll, on_wscon_handle_closed);
    uv_close((uv_handle_t *)&c->tick, on_wscon_handle_closed);
    wscon_unref(c);
}

static void wscon_flush(struct wscon *c);

static int wscon_queue(struct wscon *c, int opcode, const void *data, size_t len)
{
    return c->closed ? 0 : ws_conn_queue(&c->ws, opcode, data, len);
}

/* Sends a close frame with code and reason, then ends once it is out. */
static void wscon_close(struct wscon *c, unsigned code, const char *reason)
{
    if (c->ws.closing || c->closed)
        return;
    ws_conn_close(&c->ws, code, reason);
    log_info("console %s: websocket closed (%u %s)", c->vm, code, reason);
    wscon_flush(c);
}

static void on_wscon_poll(uv_poll_t *p, int status, int events);

static void wscon_want(struct wscon *c, unsigned events)
{
    if (c->closed || events == c->events)
        return;
    c->events = events;
    uv_poll_start(&c->poll, (int)events, on_wscon_poll);
}

static void wscon_flush(struct wscon *c)
{
    while (c->ws.out_len > 0 && !c->closed) {
        ssize_t n = send(c->fd, c->ws.out, c->ws.out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            wscon_shutdown(c);
            return;
        }
        ws_conn_sent(&c->ws, (size_t)n);
    }
    if (c->closed)
        return;
    if (c->ws.out_len == 0 && c->ws.closing) {
        wscon_shutdown(c);
        return;
    }
    wscon_want(c, UV_READABLE | (c->ws.out_len ? UV_WRITABLE : 0));
}

/* Console output to the browser as text frames: whole UTF-8 characters only (a character cut
 * by a read comes whole with the next). Returns how many bytes of data were used. */
static size_t wscon_output(struct wscon *c, const char *data, size_t len)
{
    size_t n = utf8_valid_len(data, len);
    if (n == 0 && len >= 4)
        return 1; /* not UTF-8 at all: skip a byte (the ring holds QEMU's UTF-8, so rare) */
    if (n == 0)
        return 0;
    if (wscon_queue(c, WS_TEXT, data, n) < 0) {
        wscon_close(c, WS_CLOSE_POLICY, "the browser does not keep up with the console");
        return n;
    }
    return n;
}

/* ---- output: the ring here, or the VM's node ---- */

static void on_remote_read(int status, json_t *body, const struct ferr *e, void *data);

static void read_remote(struct wscon *c)
{
    char path[200];
    if (!c->started || c->resync)
        snprintf(path, sizeof(path), "/v1/vms/%s/console?max=%d", c->vm,
                 c->resync ? 0 : TAIL_BYTES);
    else
        snprintf(path, sizeof(path), "/v1/vms/%s/console?offset=%llu&max=%d", c->vm,
                 (unsigned long long)c->offset, READ_MAX);
    struct ferr e = {0};
    c->reading = true;
    c->refs++;
    if (cluster_call_within(c->ctx->cluster, c->node, "GET", path, NULL, REMOTE_TIMEOUT_MS,
                            on_remote_read, c, &e) < 0) {
        c->reading = false;
        c->refs--;
        log_debug("console %s: ask %s: %s", c->vm, c->node, e.msg);
    }
}

/* Where the VM is now: here (node ""), on another node, or nowhere (false). */
static bool locate(struct wscon *c)
{
    char owner[64] = "";
    if (vmset_find(c->ctx->vms, c->vm)) {
        owner[0] = '\0';
    } else if (!c->ctx->fleet || fleet_owner_of(c->ctx->fleet, c->vm, owner) < 0 || !owner[0]) {
        return false;
    } else if (strcmp(owner, c->ctx->node_name) == 0) {
        return false; /* ours by the database, but not here: it is being deleted */
    }
    if (strcmp(owner, c->node) != 0) {
        if (c->started)
            c->resync = true; /* offsets are per node: go on from the new node's end */
        snprintf(c->node, sizeof(c->node), "%s", owner);
        conin_close(c->ci);
        c->ci = NULL;
    }
    return true;
}

static void read_local(struct wscon *c, struct vm *vm)
{
    char *data;
    size_t len;
    uint64_t from, start, end;
    uint64_t offset = (!c->started || c->resync) ? VM_CONSOLE_TAIL : c->offset;
    size_t max = !c->started ? TAIL_BYTES : c->resync ? 0 : READ_MAX;
    if (vm_console_read(vm, offset, max, &data, &len, &from, &start, &end) < 0)
        return;
    if (c->started && !c->resync && from > c->offset)
        log_debug("console %s: %llu bytes were dropped from the ring before they were sent", c->vm,
                  (unsigned long long)(from - c->offset));
    c->started = true;
    c->resync = false;
    c->offset = from;
    size_t used = 0;
    while (used < len && !c->ws.closing) {
        size_t n = wscon_output(c, data + used, len - used);
        if (n == 0)
            break;
        used += n;
    }
    c->offset = from + used;
    free(data);
}

static void on_remote_read(int status, json_t *body, const struct ferr *e, void *data)
{
    struct wscon *c = data;
    c->reading = false;
    struct ferr err;
    if (!c->closed && !c->ws.closing) {
        if (reply_failed(status, body, e, &err)) {
            log_debug("console %s: from %s: %s", c->vm, c->node, err.msg);
            if (err.code == FERR_NOTFOUND)
                c->node[0] = '\0', c->resync = c->started; /* moved or gone: find it again */
        } else {
            json_t *d = json_object_get(body, "data");
            json_t *from = json_object_get(body, "from");
            const char *text = json_string_value(d);
            if (text && json_is_integer(from)) {
                size_t len = json_string_length(d), used = 0;
                c->started = true;
                c->resync = false;
                c->offset = (uint64_t)json_integer_value(from);
                while (used < len && !c->ws.closing) {
                    size_t n = wscon_output(c, text + used, len - used);
                    if (n == 0)
                        break;
                    used += n;
                }
                c->offset += used;
                wscon_flush(c);
            }
        }
    }
    json_decref(body);
    wscon_unref(c);
}

/* ---- input: the socket here, or the VM's node ---- */

/* Whether the VM has left this node (migrated: the database names another owner, or it is
 * no longer here). */
static bool moved_away(struct wscon *c)
{
    char owner[64] = "";
    if (!vmset_find(c->ctx->vms, c->vm))
        return true;
    return c->ctx->fleet && fleet_owner_of(c->ctx->fleet, c->vm, owner) == 0 && owner[0] &&
           strcmp(owner, c->ctx->node_name) != 0;
}

static void on_local_typed(struct conin *ci, int status, const char *why, void *data)
{
    struct wscon *c = data;
    if (status >= 0)
        return;
    if (moved_away(c)) {
        /* Its QEMU here quit after a migration: the socket stays, and the next tick finds
         * the VM on its new node (locate); what is typed from now on goes there. */
        log_info("console %s: %s; the VM moved: typing follows it", c->vm, why);
        conin_close(c->ci);
        c->ci = NULL;
        return;
    }
    log_info("console %s: %s", c->vm, why);
    wscon_close(c, WS_CLOSE_INTERNAL, why);
}

static void on_remote_typed(int status, json_t *body, const struct ferr *e, void *data);

static void type_remote(struct wscon *c)
{
    if (c->typing || !c->ntyped || c->closed)
        return;
    json_t *j = json_pack("{s:s%}", "data", (const char *)c->typed, c->ntyped);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        wscon_close(c, WS_CLOSE_INTERNAL, "console input: out of memory");
        return;
    }
    char path[200];
    snprintf(path, sizeof(path), "/v1/vms/%s/console/input", c->vm);
    struct ferr e = {0};
    c->typing = true;
    c->refs++;
    c->ntyped = 0;
    if (cluster_call_within(c->ctx->cluster, c->node, "POST", path, text, REMOTE_TIMEOUT_MS,
                            on_remote_typed, c, &e) < 0) {
        c->typing = false;
        c->refs--;
        wscon_close(c, WS_CLOSE_INTERNAL, e.msg);
    }
    free(text);
}

static void on_remote_typed(int status, json_t *body, const struct ferr *e, void *data)
{
    struct wscon *c = data;
    c->typing = false;
    struct ferr err;
    if (reply_failed(status, body, e, &err) && !c->closed) {
        log_info("console %s: typing on %s: %s", c->vm, c->node, err.msg);
        if (err.code == FERR_NOTFOUND) /* it moved on from there: find it again */
            c->node[0] = '\0', c->resync = c->started;
        else
            wscon_close(c, WS_CLOSE_INTERNAL, err.msg);
    } else {
        type_remote(c); /* what was typed meanwhile */
    }
    json_decref(body);
    wscon_unref(c);
}

/* A whole message from the browser: its bytes are typed into the guest. */
static void wscon_typed(struct wscon *c, const uint8_t *data, size_t len)
{
    if (utf8_valid_len((const char *)data, len) != len) {
        wscon_close(c, WS_CLOSE_BAD_DATA, "console input must be UTF-8 text");
        return;
    }
    if (!locate(c)) {
        wscon_close(c, WS_CLOSE_GOING_AWAY, "the VM is gone");
        return;
    }
    if (c->node[0]) {
        if (c->ntyped + len > TYPED_MAX) {
            wscon_close(c, WS_CLOSE_POLICY, "typing faster than the console takes it");
            return;
        }
        uint8_t *t = realloc(c->typed, c->ntyped + len + 1);
        if (!t) {
            wscon_close(c, WS_CLOSE_INTERNAL, "out of memory");
            return;
        }
        memcpy(t + c->ntyped, data, len);
        c->typed = t;
        c->ntyped += len;
        type_remote(c);
        return;
    }
    struct vm *vm = vmset_find(c->ctx->vms, c->vm);
    char path[600];
    struct ferr e = {0};
    if (!c->ci) {
        if (!vm || vm_console_input_path(vm, path, sizeof(path), &e) < 0) {
            wscon_close(c, WS_CLOSE_POLICY, vm ? e.msg : "the VM is gone");
            return;
        }
        if (conin_open(c->ctx->loop, path, on_local_typed, c, &c->ci) < 0) {
            wscon_close(c, WS_CLOSE_INTERNAL, "out of memory");
            return;
        }
    }
    if (conin_send(c->ci, data, len) < 0)
        wscon_close(c, WS_CLOSE_POLICY, "typing faster than the console takes it");
}

/* ---- the socket ---- */

static bool wscon_open_still(void *data)
{
    return !((struct wscon *)data)->closed;
}

static int wscon_message(void *data, int kind, const uint8_t *msg, size_t len, const char **why)
{
    wscon_typed(data, msg, len);
    return 0;
}

/* The frames received: typed into the guest, answered, or the end. */
static void wscon_frames(struct wscon *c)
{
    const char *why = "";
    int code = ws_conn_frames(&c->ws, now_mono_ms(), wscon_open_still, wscon_message, c, &why);
    if (code)
        wscon_close(c, (unsigned)code, why);
    if (!c->closed)
        wscon_flush(c);
}

static void wscon_read(struct wscon *c)
{
    ssize_t n = recv(c->fd, c->ws.in + c->ws.in_len, c->ws.in_cap - c->ws.in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) { /* the browser went away without a close frame */
        wscon_shutdown(c);
        return;
    }
    c->ws.in_len += (size_t)n;
    wscon_frames(c);
}

static void on_wscon_poll(uv_poll_t *p, int status, int events)
{
    struct wscon *c = p->data;
    if (status < 0) {
        wscon_shutdown(c);
        return;
    }
    if ((events & UV_WRITABLE) && !c->closed)
        wscon_flush(c);
    if ((events & UV_READABLE) && !c->closed && !c->ws.closing)
        wscon_read(c);
}

static void on_wscon_tick(uv_timer_t *t)
{
    struct wscon *c = t->data;
    if (c->closed || c->ws.closing)
        return;
    uint64_t now = now_mono_ms();
    if (c->session[0] && now - c->session_ms >= SESSION_CHECK_MS) {
        c->session_ms = now;
        if (!c->ctx->web || !web_session_valid(c->ctx->web, c->session)) {
            wscon_close(c, WS_CLOSE_POLICY, "your session ended; log in again");
            return;
        }
    }
    if (ws_conn_keepalive(&c->ws, now, PING_MS, DEAD_MS) == WS_KEEP_DEAD) {
        log_info("console %s: nothing heard from the browser for %d s; closing", c->vm,
                 DEAD_MS / 1000);
        wscon_shutdown(c);
        return;
    }
    if (c->ws.out_len > OUT_MAX / 2) { /* let the browser catch up first */
        if (!c->stall_ms)
            c->stall_ms = now;
        if (now - c->stall_ms >= STALL_MS) {
            log_info("console %s: the browser read nothing for %d s; closing", c->vm,
                     STALL_MS / 1000);
            wscon_shutdown(c);
        }
        return;
    }
    c->stall_ms = 0;
    if (!locate(c)) {
        wscon_close(c, WS_CLOSE_GOING_AWAY, "the VM is gone");
        return;
    }
    if (c->node[0]) {
        if (!c->reading)
            read_remote(c);
        uv_timer_set_repeat(&c->tick, REMOTE_MS);
        wscon_flush(c);
        return;
    }
    uv_timer_set_repeat(&c->tick, LOCAL_MS);
    struct vm *vm = vmset_find(c->ctx->vms, c->vm);
    if (vm)
        read_local(c, vm);
    wscon_flush(c);
}

/* The server closes: stop, and leave the socket to it. */
static void on_server_close(void *data)
{
    struct wscon *c = data;
    c->up = NULL;
    if (c->fd < 0) { /* the 101 never went out */
        nopen--;
        ws_conn_free(&c->ws);
        free(c);
        return;
    }
    uv_poll_stop(&c->poll);
    c->ws.closing = true;
    wscon_shutdown(c);
}

static void on_upgraded(struct http_upgrade *u, int fd, const char *extra, size_t extra_len,
                        void *data)
{
    struct wscon *c = data;
    c->fd = fd;
    c->up = u;
    if (uv_poll_init_socket(c->ctx->loop, &c->poll, fd) < 0) {
        http_upgrade_close(u);
        c->up = NULL;
        nopen--;
        ws_conn_free(&c->ws);
        free(c);
        return;
    }
    c->poll.data = c;
    uv_timer_init(c->ctx->loop, &c->tick);
    c->tick.data = c;
    c->handles = 2;
    c->session_ms = c->ws.heard_ms = c->ws.pinged_ms = now_mono_ms();
    if (extra_len > c->ws.in_cap)
        extra_len = c->ws.in_cap;
    memcpy(c->ws.in, extra, extra_len);
    c->ws.in_len = extra_len;
    log_info("console %s: websocket opened%s%s", c->vm, c->node[0] ? ", relayed from " : "",
             c->node);
    wscon_want(c, UV_READABLE);
    uv_timer_start(&c->tick, on_wscon_tick, 0, LOCAL_MS);
    if (c->ws.in_len)
        wscon_frames(c); /* frames sent right behind the handshake */
}

void wsconsole_open(struct api_ctx *ctx, struct http_req *req, const char *name)
{
    struct ferr e = {0};
    char why[200], accept[WS_ACCEPT_LEN + 1];
    const char *key = http_req_header(req, "Sec-WebSocket-Key");
    if (ws_handshake_check(http_req_method(req), http_req_header(req, "Upgrade"),
                           http_req_header(req, "Connection"),
                           http_req_header(req, "Sec-WebSocket-Version"), key, why,
                           sizeof(why)) < 0) {
        ferr_set(&e, FERR_INVALID, "%s (the console is a WebSocket)", why);
        http_reply_error(req, &e);
        return;
    }
    /* A browser always sends Origin with a WebSocket; the cookie's gate checked it, and a
     * bearer's request with one is held to the same. */
    const char *origin = http_req_header(req, "Origin");
    if (http_req_is_remote(req) &&
        !session_origin_ok(origin, http_req_header(req, "Host"), http_req_tls(req))) {
        ferr_set(&e, FERR_FORBIDDEN, "websocket: Origin %.100s is not this server's", origin);
        http_reply_error(req, &e);
        return;
    }
    if (nopen >= WSCONSOLE_MAX) {
        ferr_set(&e, FERR_UNAVAIL, "console: %d consoles are open on %s already; close one",
                 WSCONSOLE_MAX, ctx->node_name);
        http_reply_error(req, &e);
        return;
    }
    struct wscon *c = calloc(1, sizeof(*c));
    if (!c || ws_accept_key(key, accept) < 0) {
        free(c);
        ferr_set(&e, -ENOMEM, "console: out of memory");
        http_reply_error(req, &e);
        return;
    }
    c->ctx = ctx;
    c->fd = -1;
    c->refs = 1;
    snprintf(c->vm, sizeof(c->vm), "%s", name);
    if (!locate(c)) {
        free(c);
        ferr_set(&e, FERR_NOTFOUND, "no VM named %s (ferry vm list shows them)", name);
        http_reply_error(req, &e);
        return;
    }
    if (!http_req_header(req, "Authorization"))
        web_req_session(req, c->session, sizeof(c->session));
    if (ws_conn_init(&c->ws, FRAME_MAX, WSCONSOLE_INPUT_MAX, OUT_MAX, now_mono_ms()) < 0) {
        ws_conn_free(&c->ws);
        free(c);
        ferr_set(&e, -ENOMEM, "console: out of memory");
        http_reply_error(req, &e);
        return;
    }
    nopen++;
    const char *h[] = {"Upgrade", "websocket", "Sec-WebSocket-Accept", accept, NULL};
    if (http_reply_upgrade(req, h, on_upgraded, on_server_close, c) < 0) {
        nopen--;
        ws_conn_free(&c->ws);
        free(c);
    }
}
