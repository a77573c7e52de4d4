/* SPDX-License-Identifier: MIT */
/* Asynchronous QMP client: line framing, message classification and a libuv connection.
 * The process must ignore SIGPIPE (ferryd does): libuv writes with write(2), and QEMU may
 * exit while a command is on its way. */
#include "qemu/qmp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/*
 * Framing (QEMU docs/interop/qmp-spec.txt, section 2): every message QEMU sends is one JSON
 * object on one line terminated by "\r\n". We split on '\n', drop one trailing '\r', skip
 * blank lines, and hand each line to jansson whole.
 */

struct qmp_parser {
    char *buf;       /* bytes received but not yet consumed; owned */
    size_t len;      /* bytes in buf */
    size_t cap;      /* allocated size of buf */
    size_t scan;     /* buf[0..scan) holds no '\n': where the next search starts */
    size_t max_line; /* longest line accepted, without its line ending */
};

struct qmp_parser *qmp_parser_new(size_t max_line)
{
    struct qmp_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max_line = max_line;
    return p;
}

void qmp_parser_free(struct qmp_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p);
}

/* Copies up to 60 bytes of s into out as printable ASCII for an error message. */
static void quote_excerpt(char *out, size_t size, const char *s, size_t len)
{
    size_t o = 0, max = len < 60 ? len : 60;
    for (size_t i = 0; i < max && o + 5 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
        }
    }
    if (len > max && o + 4 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < size ? o : size - 1] = '\0';
}

static bool is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static int parse_line(const char *line, size_t len, json_t **out, struct ferr *e)
{
    char ex[320];
    json_error_t jerr;
    /* JSON_ALLOW_NUL: QEMU escapes a NUL byte in guest-provided strings as \u0000. */
    json_t *j = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        quote_excerpt(ex, sizeof(ex), line, len);
        return ferr_set(e, FERR_PROTO, "garbage from QEMU: \"%s\" is not JSON (%s)", ex, jerr.text);
    }
    if (!json_is_object(j)) {
        json_decref(j);
        quote_excerpt(ex, sizeof(ex), line, len);
        return ferr_set(e, FERR_PROTO, "garbage from QEMU: \"%s\" is not a JSON object", ex);
    }
    *out = j;
    return 0;
}

/* Makes room for n more bytes in p->buf. */
static int parser_reserve(struct qmp_parser *p, size_t n)
{
    if (p->cap - p->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - p->len)
        return -ENOMEM;
    size_t cap = p->cap ? p->cap : 4096;
    while (cap - p->len < n)
        cap *= 2;
    char *nb = realloc(p->buf, cap);
    if (!nb)
        return -ENOMEM;
    p->buf = nb;
    p->cap = cap;
    return 0;
}

/* Keeps buf[start..len) for the next feed; on error drops everything. A buffer left
 * empty after a big message is given back. */
static void parser_compact(struct qmp_parser *p, size_t start, bool drop)
{
    size_t rest = drop ? 0 : p->len - start;
    if (rest == 0) {
        p->len = 0;
        p->scan = 0;
        if (p->cap > 256 * 1024) {
            free(p->buf);
            p->buf = NULL;
            p->cap = 0;
        }
        return;
    }
    if (start > 0 && rest > 0)
        memmove(p->buf, p->buf + start, rest);
    p->len = rest;
    if (p->scan >= start)
        p->scan -= start;
    else
        p->scan = 0;
}

/*
 * After an error (FERR_PROTO or -ENOMEM) the buffered input is dropped. When cb stops the
 * parse, the bytes after the current line stay buffered for the next feed.
 */
int qmp_parser_feed(struct qmp_parser *p, const char *buf, size_t len, qmp_msg_cb cb, void *data,
                    struct ferr *e)
{
    if (len > 0) {
        if (parser_reserve(p, len) < 0) {
            parser_compact(p, 0, true);
            return ferr_set(e, -ENOMEM, "out of memory buffering %zu bytes from QEMU", len);
        }
        memcpy(p->buf + p->len, buf, len);
        p->len += len;
    }

    if (p->len == 0)
        return 0;
    size_t start = 0;
    for (;;) {
        char *nl = memchr(p->buf + p->scan, '\n', p->len - p->scan);
        if (!nl)
            break;
        const char *line = p->buf + start;
        size_t n = (size_t)(nl - line);
        size_t next = n + start + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        start = next;
        p->scan = start;
        if (n > p->max_line) {
            parser_compact(p, 0, true);
            return ferr_set(e, FERR_PROTO,
                            "garbage from QEMU: a line of %zu bytes exceeds the limit of %zu", n,
                            p->max_line);
        }
        if (is_blank(line, n))
            continue;
        json_t *msg = NULL;
        int rc = parse_line(line, n, &msg, e);
        if (rc < 0) {
            parser_compact(p, 0, true);
            return rc;
        }
        rc = cb(msg, data);
        json_decref(msg);
        if (rc != 0) {
            parser_compact(p, start, false);
            return rc;
        }
    }
    p->scan = p->len;
    parser_compact(p, start, false);

    /* A partial line may already end with the '\r' of its "\r\n". */
    size_t pending = p->len;
    if (pending > 0 && p->buf[pending - 1] == '\r')
        pending--;
    if (pending > p->max_line) {
        parser_compact(p, 0, true);
        return ferr_set(e, FERR_PROTO,
                        "garbage from QEMU: a line longer than the limit of %zu bytes",
                        p->max_line);
    }
    return 0;
}

enum qmp_msg_kind qmp_msg_classify(const json_t *msg, long long *id)
{
    if (!json_is_object(msg))
        return QMP_MSG_BAD;
    const json_t *qmp = json_object_get(msg, "QMP");
    const json_t *ret = json_object_get(msg, "return");
    const json_t *err = json_object_get(msg, "error");
    const json_t *ev = json_object_get(msg, "event");
    int keys = (qmp != NULL) + (ret != NULL) + (err != NULL) + (ev != NULL);
    if (keys != 1)
        return QMP_MSG_BAD;
    if (qmp)
        return json_is_object(qmp) ? QMP_MSG_GREETING : QMP_MSG_BAD;
    if (ev)
        return json_is_string(ev) ? QMP_MSG_EVENT : QMP_MSG_BAD;
    if (err && !json_is_object(err))
        return QMP_MSG_BAD;
    if (id) {
        const json_t *jid = json_object_get(msg, "id");
        *id = json_is_integer(jid) ? (long long)json_integer_value(jid) : -1;
    }
    return ret ? QMP_MSG_RETURN : QMP_MSG_ERROR;
}

/* ---- The connection ---- */

enum conn_state {
    ST_CONNECTING,  /* uv_pipe_connect in flight */
    ST_GREETING,    /* connected, waiting for {"QMP": ...} */
    ST_NEGOTIATING, /* qmp_capabilities sent, waiting for its reply */
    ST_READY,       /* commands flow */
};

/* One command: queued (line != NULL, not yet written) or sent and awaiting its reply. */
struct qmp_cmd {
    struct qmp_cmd *next;
    long long id;
    char *line; /* owned serialized command until written; NULL once handed to uv_write */
    qmp_reply_cb cb;
    void *data;
};

struct write_req {
    uv_write_t req;
    char *buf; /* owned */
};

struct qmp_conn {
    uv_pipe_t pipe; /* pipe.data == this */
    uv_connect_t connect_req;
    struct qmp_callbacks cb;
    char *path; /* owned */
    struct qmp_parser *parser;
    enum conn_state state;
    bool closing;     /* teardown started: no new commands, callbacks ignored */
    bool user_closed; /* qmp_conn_close() called: on_closed must not be called */
    long long next_id;
    long long caps_id;
    bool oob;                    /* out-of-band execution asked for (and on once negotiated) */
    struct qmp_cmd *head, *tail; /* commands in id order */
    char rbuf[64 * 1024];
};

static void conn_free(struct qmp_conn *c)
{
    qmp_parser_free(c->parser);
    free(c->path);
    free(c);
}

/* The only place a connection is freed: by then nothing of ours is on the stack. */
static void on_pipe_closed(uv_handle_t *h)
{
    conn_free(h->data);
}

/* Fails every command with status/msg. The list is detached first so callbacks that call
 * back into the connection see an empty one. */
static void fail_commands(struct qmp_conn *c, int status, const char *msg)
{
    struct qmp_cmd *cmd = c->head;
    c->head = c->tail = NULL;
    while (cmd) {
        struct qmp_cmd *next = cmd->next;
        if (cmd->cb)
            cmd->cb(c, status, NULL, msg, cmd->data);
        free(cmd->line);
        free(cmd);
        cmd = next;
    }
}

/* Starts teardown after a failure: fails pending commands, reports on_closed (unless the
 * user closed meanwhile), frees on the close callback. */
static void conn_fail(struct qmp_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(struct qmp_conn *c, int status, const char *fmt, ...)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_pipe_closed);

    char what[FERR_MSG_MAX], msg[FERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (snprintf(msg, sizeof(msg), "qmp: %s: %s", c->path, what) >= (int)sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4); /* truncated: say so */

    fail_commands(c, status, msg);
    if (!c->user_closed && c->cb.on_closed)
        c->cb.on_closed(c, status, msg, c->cb.data);
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct qmp_conn *c = req->handle->data;
    free(w->buf);
    free(w);
    if (status < 0)
        conn_fail(c, status, "write: %s", uv_strerror(status));
}

/* Writes line (ownership taken, also on failure). */
static int conn_write(struct qmp_conn *c, char *line)
{
    struct write_req *w = malloc(sizeof(*w));
    if (!w) {
        free(line);
        return -ENOMEM;
    }
    w->buf = line;
    uv_buf_t b = uv_buf_init(line, (unsigned)strlen(line));
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written);
    if (rc < 0) {
        free(line);
        free(w);
    }
    return rc;
}

/* Serializes {"execute": cmd, "arguments": args, "id": id} + "\r\n" ("exec-oob" with oob).
 * args is stolen. */
static char *serialize_as(const char *cmd, json_t *args, long long id, bool oob)
{
    json_t *j = json_object();
    if (!j) {
        json_decref(args);
        return NULL;
    }
    char *s = NULL;
    if (json_object_set_new(j, oob ? "exec-oob" : "execute", json_string(cmd)) < 0 ||
        (args && json_object_set_new(j, "arguments", args) < 0) ||
        json_object_set_new(j, "id", json_integer(id)) < 0) {
        args = NULL; /* set_new consumed it either way */
        goto out;
    }
    s = json_dumps(j, JSON_COMPACT);
    if (s) {
        size_t n = strlen(s);
        char *t = realloc(s, n + 3);
        if (!t) {
            free(s);
            s = NULL;
            goto out;
        }
        memcpy(t + n, "\r\n", 3);
        s = t;
    }
out:
    json_decref(j);
    return s;
}

static char *serialize(const char *cmd, json_t *args, long long id)
{
    return serialize_as(cmd, args, id, false);
}

/* Writes every queued command in id order; returns 0 or fails the connection. */
static int flush_queue(struct qmp_conn *c)
{
    for (struct qmp_cmd *cmd = c->head; cmd; cmd = cmd->next) {
        if (!cmd->line)
            continue;
        char *line = cmd->line;
        cmd->line = NULL;
        int rc = conn_write(c, line);
        if (rc < 0) {
            conn_fail(c, rc, "write: %s", uv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static struct qmp_cmd *take_cmd(struct qmp_conn *c, long long id)
{
    struct qmp_cmd **pp = &c->head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        struct qmp_cmd *cmd = *pp;
        if (cmd->id != id || cmd->line)
            continue;
        *pp = cmd->next;
        if (c->tail == cmd)
            c->tail = prev;
        return cmd;
    }
    return NULL;
}

/* "Class: desc" of an error reply. */
static void error_text(const json_t *msg, char *out, size_t size)
{
    const json_t *err = json_object_get(msg, "error");
    const char *cls = json_string_value(json_object_get(err, "class"));
    const char *desc = json_string_value(json_object_get(err, "desc"));
    if (!desc)
        desc = "(no description)";
    if (cls)
        snprintf(out, size, "%s: %s", cls, desc);
    else
        snprintf(out, size, "%s", desc);
}

static void excerpt_json(const json_t *msg, char *out, size_t size)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    if (!s) {
        snprintf(out, size, "(unprintable)");
        return;
    }
    quote_excerpt(out, size, s, strlen(s));
    free(s);
}

static uint64_t event_ts_ms(const json_t *msg)
{
    const json_t *ts = json_object_get(msg, "timestamp");
    json_int_t sec = json_integer_value(json_object_get(ts, "seconds"));
    json_int_t usec = json_integer_value(json_object_get(ts, "microseconds"));
    if (sec < 0 || usec < 0)
        return 0;
    return (uint64_t)sec * 1000 + (uint64_t)usec / 1000;
}

static void handle_greeting(struct qmp_conn *c, const json_t *msg)
{
    char ex[320];
    if (c->state != ST_GREETING) {
        excerpt_json(msg, ex, sizeof(ex));
        conn_fail(c, FERR_PROTO, "garbage from QEMU: unexpected second greeting \"%s\"", ex);
        return;
    }
    /* Out-of-band execution, when this monitor offers it (a socket chardev does): lets
     * migrate-pause and migrate-recover through while the main loop is stuck, e.g. a vCPU
     * of a broken post-copy waiting for a page with the main lock held. Replies are matched
     * by id, so their order does not matter here. */
    const json_t *caps = json_object_get(json_object_get(msg, "QMP"), "capabilities");
    size_t i;
    const json_t *cap;
    bool oob = false;
    json_array_foreach(caps, i, cap)
    {
        if (json_is_string(cap) && strcmp(json_string_value(cap), "oob") == 0)
            oob = true;
    }
    char *line = serialize("qmp_capabilities", oob ? json_pack("{s:[s]}", "enable", "oob") : NULL,
                           c->caps_id);
    c->oob = oob;
    if (!line) {
        conn_fail(c, -ENOMEM, "out of memory sending qmp_capabilities");
        return;
    }
    int rc = conn_write(c, line);
    if (rc < 0) {
        conn_fail(c, rc, "write: %s", uv_strerror(rc));
        return;
    }
    c->state = ST_NEGOTIATING;
}

static void handle_reply(struct qmp_conn *c, enum qmp_msg_kind kind, long long id, json_t *msg)
{
    char text[FERR_MSG_MAX];
    if (c->state == ST_NEGOTIATING) {
        if (id != c->caps_id) {
            conn_fail(c, FERR_PROTO, "garbage from QEMU: reply with unknown id %lld", id);
            return;
        }
        if (kind == QMP_MSG_ERROR) {
            error_text(msg, text, sizeof(text));
            conn_fail(c, FERR_QEMU, "qmp_capabilities refused: %s", text);
            return;
        }
        c->state = ST_READY;
        if (flush_queue(c) < 0)
            return;
        if (c->cb.on_ready)
            c->cb.on_ready(c, c->cb.data);
        return;
    }
    struct qmp_cmd *cmd = id >= 0 ? take_cmd(c, id) : NULL;
    if (!cmd) {
        if (kind == QMP_MSG_ERROR) {
            error_text(msg, text, sizeof(text));
            conn_fail(c, FERR_PROTO, "garbage from QEMU: error with unknown id %lld: %s", id, text);
        } else {
            conn_fail(c, FERR_PROTO, "garbage from QEMU: reply with unknown id %lld", id);
        }
        return;
    }
    if (cmd->cb) {
        if (kind == QMP_MSG_RETURN) {
            cmd->cb(c, 0, json_object_get(msg, "return"), NULL, cmd->data);
        } else {
            error_text(msg, text, sizeof(text));
            cmd->cb(c, FERR_QEMU, NULL, text, cmd->data);
        }
    }
    free(cmd);
}

/* Parser callback: one message from QEMU. Returns 1 to stop once the connection closes. */
static int on_message(json_t *msg, void *data)
{
    struct qmp_conn *c = data;
    char ex[320];
    long long id = -1;
    enum qmp_msg_kind kind = qmp_msg_classify(msg, &id);

    /* An event may come before the greeting: seen once with QEMU 10, whose monitor runs in
     * an I/O thread and can write an event the main thread emits to a client it accepted
     * before it sent that client the greeting. It is a real event: pass it on. Anything else
     * before the greeting is not QMP. */
    if (c->state == ST_GREETING && kind != QMP_MSG_GREETING && kind != QMP_MSG_EVENT) {
        excerpt_json(msg, ex, sizeof(ex));
        conn_fail(c, FERR_PROTO, "garbage from QEMU: expected the QMP greeting, got \"%s\"", ex);
        return 1;
    }
    switch (kind) {
    case QMP_MSG_GREETING:
        handle_greeting(c, msg);
        break;
    case QMP_MSG_RETURN:
    case QMP_MSG_ERROR:
        handle_reply(c, kind, id, msg);
        break;
    case QMP_MSG_EVENT:
        if (c->cb.on_event)
            c->cb.on_event(c, json_string_value(json_object_get(msg, "event")),
                           json_object_get(msg, "data"), event_ts_ms(msg), c->cb.data);
        break;
    case QMP_MSG_BAD:
    default:
        excerpt_json(msg, ex, sizeof(ex));
        conn_fail(c, FERR_PROTO, "garbage from QEMU: unexpected message \"%s\"", ex);
        break;
    }
    return c->closing ? 1 : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct qmp_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct qmp_conn *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread == UV_EOF) {
        if (c->parser->len > 0)
            conn_fail(c, -ECONNRESET, "connection closed by QEMU in the middle of a message");
        else
            conn_fail(c, -ECONNRESET, "connection closed by QEMU");
        return;
    }
    if (nread < 0) {
        conn_fail(c, (int)nread, "read: %s", uv_strerror((int)nread));
        return;
    }
    struct ferr e;
    ferr_clear(&e);
    int rc = qmp_parser_feed(c->parser, buf->base, (size_t)nread, on_message, c, &e);
    if (rc < 0 && !c->closing)
        conn_fail(c, rc, "%s", e.msg);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct qmp_conn *c = req->handle->data;
    if (c->closing)
        return; /* status is UV_ECANCELED: closed by the user while connecting */
    if (status < 0) {
        conn_fail(c, status, "connect: %s", uv_strerror(status));
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    if (rc < 0) {
        conn_fail(c, rc, "read: %s", uv_strerror(rc));
        return;
    }
    c->state = ST_GREETING;
}

int qmp_conn_open(uv_loop_t *loop, const char *path, const struct qmp_callbacks *cb,
                  struct qmp_conn **out, struct ferr *e)
{
    if (!loop || !path || !cb || !out)
        return ferr_set(e, FERR_INVALID, "qmp: open: missing loop, path, callbacks or result");
    if (path[0] == '\0')
        return ferr_set(e, FERR_INVALID, "qmp: open: empty socket path");
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return ferr_set(e, FERR_INVALID, "qmp: %s: socket path longer than %zu bytes", path,
                        sizeof(((struct sockaddr_un *)0)->sun_path) - 1);

    struct qmp_conn *c = calloc(1, sizeof(*c));
    if (!c)
        goto err_oom;
    c->path = strdup(path);
    if (!c->path)
        goto err_after_alloc;
    c->parser = qmp_parser_new(QMP_MAX_LINE);
    if (!c->parser)
        goto err_after_alloc;
    c->cb = *cb;
    c->caps_id = 0; /* qmp_capabilities is always first on the wire: ids grow in send order */
    c->next_id = 1;
    c->state = ST_CONNECTING;

    int rc = uv_pipe_init(loop, &c->pipe, 0);
    if (rc < 0) {
        conn_free(c);
        return ferr_set(e, rc, "qmp: %s: %s", path, uv_strerror(rc));
    }
    c->pipe.data = c;
    /* libuv reports every connect error through on_connect, on a later loop pass. */
    uv_pipe_connect(&c->connect_req, &c->pipe, path, on_connect);
    *out = c;
    return 0;

err_after_alloc:
    conn_free(c);
err_oom:
    return ferr_set(e, -ENOMEM, "qmp: %s: out of memory", path);
}

static int execute(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb, void *data,
                   bool oob);

int qmp_conn_execute(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb, void *data)
{
    return execute(c, cmd, args, cb, data, false);
}

int qmp_conn_execute_oob(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb,
                         void *data)
{
    return execute(c, cmd, args, cb, data, c && c->oob && c->state == ST_READY);
}

bool qmp_conn_oob(const struct qmp_conn *c)
{
    return c && c->oob && c->state == ST_READY;
}

static int execute(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb, void *data,
                   bool oob)
{
    if (!c || !cmd || cmd[0] == '\0') {
        json_decref(args);
        return FERR_INVALID;
    }
    if (c->closing) {
        json_decref(args);
        return FERR_STATE;
    }
    struct qmp_cmd *q = calloc(1, sizeof(*q));
    if (!q) {
        json_decref(args);
        return -ENOMEM;
    }
    q->id = c->next_id++;
    q->cb = cb;
    q->data = data;
    q->line = serialize_as(cmd, args, q->id, oob);
    if (!q->line) {
        free(q);
        return -ENOMEM;
    }
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    if (c->state != ST_READY)
        return 0; /* sent by flush_queue after negotiation */

    char *line = q->line;
    q->line = NULL;
    int rc = conn_write(c, line);
    if (rc < 0) {
        /* This command is refused outright (its cb is not called); the connection is
         * broken for the others, which fail with it. */
        take_cmd(c, q->id);
        free(q);
        conn_fail(c, rc, "write: %s", uv_strerror(rc));
        return rc;
    }
    return 0;
}

void qmp_conn_close(struct qmp_conn *c)
{
    if (!c || c->user_closed)
        return;
    c->user_closed = true;
    if (c->closing)
        return; /* already tearing down (called from a callback of conn_fail) */
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_pipe_closed);
    char msg[FERR_MSG_MAX];
    snprintf(msg, sizeof(msg), "qmp: %s: connection closed", c->path);
    fail_commands(c, -ECANCELED, msg);
}
