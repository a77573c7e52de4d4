/* SPDX-License-Identifier: MIT */
/* Unit tests of the QMP client (src/qemu/qmp.c): framing, classification, and the async
 * connection against a fake QMP server on the same libuv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/qmp.h"

/* ---- Parser ---- */

struct collected {
    int n;
    char dumps[16][128];
    int stop_at; /* return 7 from the callback for message number stop_at (1-based); 0 = never */
};

static int collect_cb(json_t *msg, void *data)
{
    struct collected *c = data;
    char *s = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    if (c->n < 16)
        snprintf(c->dumps[c->n], sizeof(c->dumps[0]), "%s", s);
    free(s);
    c->n++;
    return c->n == c->stop_at ? 7 : 0;
}

static int feed_str(struct qmp_parser *p, const char *s, struct collected *c, struct ferr *e)
{
    return qmp_parser_feed(p, s, strlen(s), collect_cb, c, e);
}

static void test_parser_split_across_reads(void **state)
{
    (void)state;
    struct qmp_parser *p = qmp_parser_new(QMP_MAX_LINE);
    assert_non_null(p);
    struct collected c = {0};
    struct ferr e;
    const char *msg = "{\"return\": {\"status\": \"running\"}, \"id\": 3}\r\n";
    for (size_t i = 0; i < strlen(msg); i++) {
        assert_int_equal(qmp_parser_feed(p, msg + i, 1, collect_cb, &c, &e), 0);
        assert_int_equal(c.n, i + 1 == strlen(msg) ? 1 : 0);
    }
    assert_string_equal(c.dumps[0], "{\"id\":3,\"return\":{\"status\":\"running\"}}");

    /* A message split between "\r" and "\n", and one split in the middle of a string. */
    assert_int_equal(feed_str(p, "{\"a\": 1}\r", &c, &e), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(feed_str(p, "\n{\"b\": \"x", &c, &e), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(feed_str(p, "y\"}\r\n", &c, &e), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.dumps[1], "{\"a\":1}");
    assert_string_equal(c.dumps[2], "{\"b\":\"xy\"}");
    qmp_parser_free(p);
}

static void test_parser_many_per_read(void **state)
{
    (void)state;
    struct qmp_parser *p = qmp_parser_new(QMP_MAX_LINE);
    struct collected c = {0};
    struct ferr e;
    /* CRLF and LF endings, blank lines and whitespace-only lines are skipped. */
    assert_int_equal(
        feed_str(p, "{\"a\":1}\r\n\r\n{\"b\":2}\n\n   \r\n\t\n{\"c\":3}\r\n{\"d\":", &c, &e), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.dumps[0], "{\"a\":1}");
    assert_string_equal(c.dumps[1], "{\"b\":2}");
    assert_string_equal(c.dumps[2], "{\"c\":3}");
    assert_int_equal(feed_str(p, "4}\r\n", &c, &e), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.dumps[3], "{\"d\":4}");
    /* QEMU escapes NUL bytes of guest strings (console data) as \u0000: accepted. */
    assert_int_equal(feed_str(p, "{\"return\": \"a\\u0000b\"}\r\n", &c, &e), 0);
    assert_int_equal(c.n, 5);
    /* Empty feeds are fine. */
    assert_int_equal(qmp_parser_feed(p, NULL, 0, collect_cb, &c, &e), 0);
    assert_int_equal(c.n, 5);
    qmp_parser_free(p);
}

static void test_parser_overlong(void **state)
{
    (void)state;
    struct collected c = {0};
    struct ferr e;

    /* Exactly max_line bytes (16) before "\r\n" is accepted. */
    struct qmp_parser *p = qmp_parser_new(16);
    assert_int_equal(feed_str(p, "{\"k\":\"01234567\"}\r\n", &c, &e), 0); /* 16 chars */
    assert_int_equal(c.n, 1);
    /* A partial line of max_line bytes plus its '\r' is still fine. */
    assert_int_equal(feed_str(p, "{\"k\":\"01234567\"}\r", &c, &e), 0);
    assert_int_equal(feed_str(p, "\n", &c, &e), 0);
    assert_int_equal(c.n, 2);
    /* A complete line of 17 bytes is refused. */
    ferr_clear(&e);
    assert_int_equal(feed_str(p, "{\"k\":\"012345678\"}\r\n", &c, &e), FERR_PROTO);
    assert_non_null(strstr(e.msg, "exceeds the limit of 16"));
    qmp_parser_free(p);

    /* A partial line over the limit is refused before its newline arrives. */
    p = qmp_parser_new(16);
    assert_int_equal(feed_str(p, "{\"k\":\"0123", &c, &e), 0);
    ferr_clear(&e);
    assert_int_equal(feed_str(p, "4567", &c, &e), 0);       /* 14 bytes: fine */
    assert_int_equal(feed_str(p, "xx\r", &c, &e), 0);       /* 16 + '\r': fine */
    assert_int_equal(feed_str(p, "y", &c, &e), FERR_PROTO); /* 17 */
    assert_non_null(strstr(e.msg, "longer than the limit"));
    qmp_parser_free(p);

    /* Big input against the real limit. */
    p = qmp_parser_new(QMP_MAX_LINE);
    size_t big = QMP_MAX_LINE + 2;
    char *buf = malloc(big);
    assert_non_null(buf);
    memset(buf, ' ', big);
    assert_int_equal(qmp_parser_feed(p, buf, big, collect_cb, &c, &e), FERR_PROTO);
    free(buf);
    qmp_parser_free(p);
}

static void test_parser_not_object(void **state)
{
    (void)state;
    static const char *const bad[] = {"[1, 2, 3]\r\n", "\"hello\"\r\n", "42\n", "null\r\n",
                                      "true\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct qmp_parser *p = qmp_parser_new(QMP_MAX_LINE);
        struct collected c = {0};
        struct ferr e;
        ferr_clear(&e);
        assert_int_equal(feed_str(p, bad[i], &c, &e), FERR_PROTO);
        assert_int_equal(c.n, 0);
        assert_non_null(strstr(e.msg, "garbage from QEMU"));
        assert_non_null(strstr(e.msg, "is not a JSON object"));
        qmp_parser_free(p);
    }
}

static void test_parser_invalid_json(void **state)
{
    (void)state;
    struct qmp_parser *p = qmp_parser_new(QMP_MAX_LINE);
    struct collected c = {0};
    struct ferr e;
    ferr_clear(&e);
    /* The good message before the bad one is still delivered. */
    assert_int_equal(feed_str(p, "{\"ok\":1}\r\n{\"return\": \r\n{\"never\":1}\r\n", &c, &e),
                     FERR_PROTO);
    assert_int_equal(c.n, 1);
    assert_non_null(strstr(e.msg, "garbage from QEMU: \"{\"return\": \" is not JSON ("));
    qmp_parser_free(p);

    /* Control bytes are shown escaped, never raw. */
    p = qmp_parser_new(QMP_MAX_LINE);
    ferr_clear(&e);
    assert_int_equal(feed_str(p, "\x01\x02zz\x7f\r\n", &c, &e), FERR_PROTO);
    assert_non_null(strstr(e.msg, "\\x01\\x02zz\\x7f"));
    /* After an error the buffer is dropped and the parser can go on. */
    c.n = 0;
    assert_int_equal(feed_str(p, "{\"x\":1}\n", &c, &e), 0);
    assert_int_equal(c.n, 1);
    qmp_parser_free(p);
}

static void test_parser_stop(void **state)
{
    (void)state;
    struct qmp_parser *p = qmp_parser_new(QMP_MAX_LINE);
    struct collected c = {.stop_at = 1};
    struct ferr e;
    assert_int_equal(feed_str(p, "{\"a\":1}\r\n{\"b\":2}\r\n{\"c\"", &c, &e), 7);
    assert_int_equal(c.n, 1);
    /* The rest stays buffered. */
    assert_int_equal(feed_str(p, ":3}\r\n", &c, &e), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.dumps[1], "{\"b\":2}");
    assert_string_equal(c.dumps[2], "{\"c\":3}");
    qmp_parser_free(p);
}

/* ---- Classifier ---- */

static enum qmp_msg_kind classify_str(const char *s, long long *id)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);
    assert_non_null(j);
    enum qmp_msg_kind k = qmp_msg_classify(j, id);
    json_decref(j);
    return k;
}

static void test_classify(void **state)
{
    (void)state;
    long long id = 99;
    assert_int_equal(classify_str("{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}", &id),
                     QMP_MSG_GREETING);
    assert_int_equal(classify_str("{\"return\": {}, \"id\": 5}", &id), QMP_MSG_RETURN);
    assert_int_equal(id, 5);
    assert_int_equal(classify_str("{\"return\": [1, 2]}", &id), QMP_MSG_RETURN);
    assert_int_equal(id, -1);
    assert_int_equal(classify_str("{\"return\": 3, \"id\": \"abc\"}", &id), QMP_MSG_RETURN);
    assert_int_equal(id, -1);
    assert_int_equal(
        classify_str("{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}, \"id\": 12}",
                     &id),
        QMP_MSG_ERROR);
    assert_int_equal(id, 12);
    assert_int_equal(
        classify_str("{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}", &id),
        QMP_MSG_ERROR);
    assert_int_equal(id, -1);
    assert_int_equal(classify_str("{\"error\": {}, \"id\": 1.5}", &id), QMP_MSG_ERROR);
    assert_int_equal(id, -1);
    assert_int_equal(classify_str("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
                                  "\"microseconds\": 2}}",
                                  &id),
                     QMP_MSG_EVENT);
    /* A NULL id pointer is allowed. */
    assert_int_equal(classify_str("{\"return\": {}, \"id\": 5}", NULL), QMP_MSG_RETURN);

    assert_int_equal(classify_str("{}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"foo\": 1}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"QMP\": 1}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"event\": 42}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"error\": \"oops\", \"id\": 1}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"return\": {}, \"event\": \"STOP\"}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("{\"return\": {}, \"error\": {}}", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("[1]", &id), QMP_MSG_BAD);
    assert_int_equal(classify_str("\"s\"", &id), QMP_MSG_BAD);
    assert_int_equal(qmp_msg_classify(NULL, &id), QMP_MSG_BAD);
}

/* ---- Async client against a fake QMP server ---- */

#define GREETING                                                                                   \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "              \
    "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

#define GREETING_NO_OOB                                                                            \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "              \
    "\"package\": \"\"}, \"capabilities\": []}}\r\n"

enum caps_mode { CAPS_OK, CAPS_ERROR, CAPS_HANGUP };

struct reply {
    int status;
    long tag;
    char text[256];
};

struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking forever */
    char dir[64];
    char path[128];

    /* Server side. */
    uv_pipe_t server;
    bool server_open;
    uv_pipe_t peer;
    bool peer_open;
    struct qmp_parser *srv_parser;
    const char *greeting; /* sent on accept; NULL = GREETING */
    enum caps_mode caps;
    char seen[512];     /* "execute" names received, comma-separated ("oob:" + "exec-oob" ones) */
    bool oob_enabled;   /* qmp_capabilities asked for {"enable": ["oob"]} */
    long long stuck_id; /* a "stuck" command's id, answered after the next out-of-band one */
    long long seen_ids[32];
    int nseen;
    char split_rest[128];
    uv_timer_t split_timer;
    bool split_timer_open;

    /* Client side. */
    struct qmp_conn *conn;
    bool conn_gone; /* closed by us or reported closed: never touch conn again */
    int ready;
    int closed;
    int closed_status;
    char closed_msg[FERR_MSG_MAX];
    int closed_after_replies; /* replies seen when on_closed ran */
    struct reply replies[16];
    int nreplies;
    int nevents;
    char events[8][32];
    char event_data[8][128];
    uint64_t event_ts[8];

    /* Re-entrancy knobs. */
    bool close_in_reply;
    bool close_in_ready;
    bool close_in_event;
    bool close_in_closed;
    bool close_in_failed_reply;
    int exec_after_close_rc;
};

/* -- server -- */

struct srv_write {
    uv_write_t req;
    char *buf;
};

static void srv_written(uv_write_t *req, int status)
{
    (void)status; /* the client may have hung up: fine */
    struct srv_write *w = (struct srv_write *)req;
    free(w->buf);
    free(w);
}

static void srv_send_len(struct fx *f, const char *s, size_t len)
{
    if (!f->peer_open)
        return;
    struct srv_write *w = malloc(sizeof(*w));
    assert_non_null(w);
    w->buf = malloc(len);
    assert_non_null(w->buf);
    memcpy(w->buf, s, len);
    uv_buf_t b = uv_buf_init(w->buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&f->peer, &b, 1, srv_written) < 0) {
        free(w->buf);
        free(w);
    }
}

static void srv_send(struct fx *f, const char *s)
{
    srv_send_len(f, s, strlen(s));
}

static void srv_sendf(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void srv_sendf(struct fx *f, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    srv_send(f, buf);
}

static void peer_closed(uv_handle_t *h)
{
    struct fx *f = h->data;
    f->peer_open = false;
}

static void peer_close(struct fx *f)
{
    if (f->peer_open && !uv_is_closing((uv_handle_t *)&f->peer))
        uv_close((uv_handle_t *)&f->peer, peer_closed);
}

static void srv_shutdown_done(uv_shutdown_t *req, int status)
{
    (void)status;
    struct fx *f = req->handle->data;
    free(req);
    peer_close(f);
}

/* Hangs up after everything written so far has gone out. */
static void srv_hangup(struct fx *f)
{
    uv_shutdown_t *req = malloc(sizeof(*req));
    assert_non_null(req);
    if (uv_shutdown(req, (uv_stream_t *)&f->peer, srv_shutdown_done) < 0) {
        free(req);
        peer_close(f);
    }
}

static void split_fire(uv_timer_t *t)
{
    struct fx *f = t->data;
    srv_send(f, f->split_rest);
}

static int srv_on_msg(json_t *msg, void *data)
{
    struct fx *f = data;
    const char *cmd = json_string_value(json_object_get(msg, "execute"));
    const char *oob = json_string_value(json_object_get(msg, "exec-oob"));
    json_t *jid = json_object_get(msg, "id");
    assert_true((cmd != NULL) != (oob != NULL));
    assert_true(json_is_integer(jid));
    long long id = json_integer_value(jid);
    if (f->nseen < 32)
        f->seen_ids[f->nseen] = id;
    f->nseen++;
    if (oob) {
        /* Run at once, as QEMU's monitor thread does; then the in-band one it overtook. */
        strncat(f->seen, "oob:", sizeof(f->seen) - strlen(f->seen) - 2);
        strncat(f->seen, oob, sizeof(f->seen) - strlen(f->seen) - 2);
        strcat(f->seen, ",");
        srv_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", id);
        if (f->stuck_id) {
            srv_sendf(f, "{\"return\": {\"stuck\": true}, \"id\": %lld}\r\n", f->stuck_id);
            f->stuck_id = 0;
        }
        return 0;
    }
    strncat(f->seen, cmd, sizeof(f->seen) - strlen(f->seen) - 2);
    strcat(f->seen, ",");

    if (strcmp(cmd, "stuck") == 0) {
        f->stuck_id = id; /* the main loop is stuck: no answer yet */
    } else if (strcmp(cmd, "qmp_capabilities") == 0) {
        json_t *en = json_object_get(json_object_get(msg, "arguments"), "enable");
        f->oob_enabled = json_is_array(en) && json_array_size(en) == 1 &&
                         json_is_string(json_array_get(en, 0)) &&
                         strcmp(json_string_value(json_array_get(en, 0)), "oob") == 0;
        if (f->caps == CAPS_OK)
            srv_sendf(f, "{\"return\": {}, \"id\": %lld}\r\n", id);
        else if (f->caps == CAPS_ERROR)
            srv_sendf(f,
                      "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
                      "\"desc\": \"nope\"}}\r\n",
                      id);
        else
            srv_hangup(f);
    } else if (strcmp(cmd, "query-status") == 0) {
        srv_sendf(f,
                  "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                  "\"running\": true}, \"id\": %lld}\r\n",
                  id);
    } else if (strcmp(cmd, "echo") == 0) {
        json_t *args = json_object_get(msg, "arguments");
        char *s =
            json_dumps(args ? args : json_null(), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        srv_sendf(f, "{\"return\": %s, \"id\": %lld}\r\n", s, id);
        free(s);
    } else if (strcmp(cmd, "fail") == 0) {
        srv_sendf(f,
                  "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", "
                  "\"desc\": \"Device 'x' not found\"}}\r\n",
                  id);
    } else if (strcmp(cmd, "emit") == 0) {
        srv_sendf(f,
                  "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250000}, "
                  "\"event\": \"STOP\", \"data\": {\"reason\": \"paused\"}}\r\n"
                  "{\"return\": {}, \"id\": %lld}\r\n",
                  id);
    } else if (strcmp(cmd, "many") == 0) {
        /* Three events and the reply in one write: usually one read on the client. */
        srv_sendf(
            f,
            "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n"
            "{\"event\": \"RESET\", \"data\": {\"guest\": true}, \"timestamp\": "
            "{\"seconds\": 2, \"microseconds\": 0}}\r\n"
            "\r\n"
            "{\"event\": \"SHUTDOWN\", \"timestamp\": {\"seconds\": 3, \"microseconds\": 0}}\n"
            "{\"return\": {\"n\": 3}, \"id\": %lld}\r\n",
            id);
    } else if (strcmp(cmd, "split") == 0) {
        /* One reply across two writes 20 ms apart: two reads on the client. */
        srv_sendf(f, "{\"return\": {\"half\": \"first");
        snprintf(f->split_rest, sizeof(f->split_rest), "-second\"}, \"id\": %lld}\r\n", id);
        uv_timer_start(&f->split_timer, split_fire, 20, 0);
    } else if (strcmp(cmd, "garbage") == 0) {
        srv_send(f, "this is not json\r\n");
    } else if (strcmp(cmd, "nonobject") == 0) {
        srv_send(f, "[1, 2, 3]\r\n");
    } else if (strcmp(cmd, "badmsg") == 0) {
        srv_send(f, "{\"hello\": \"world\"}\r\n");
    } else if (strcmp(cmd, "unknownid") == 0) {
        srv_send(f, "{\"return\": {}, \"id\": 9999}\r\n");
    } else if (strcmp(cmd, "greetagain") == 0) {
        srv_send(f, GREETING);
    } else if (strcmp(cmd, "eofmid") == 0) {
        srv_send(f, "{\"return\": {\"status\": \"runn");
        srv_hangup(f);
    } else if (strcmp(cmd, "hangup") == 0) {
        srv_hangup(f);
    } else if (strcmp(cmd, "overlong") == 0) {
        size_t n = QMP_MAX_LINE + 4096;
        char *big = malloc(n);
        assert_non_null(big);
        memcpy(big, "{\"return\": \"", 12);
        memset(big + 12, 'x', n - 12);
        srv_send_len(f, big, n);
        free(big);
    } else if (strcmp(cmd, "silent") == 0) {
        /* never answered */
    } else {
        srv_sendf(f,
                  "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
                  "\"desc\": \"The command %s has not been found\"}}\r\n",
                  id, cmd);
    }
    return 0;
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fx *f = s->data;
    if (nread < 0) {
        peer_close(f);
    } else if (nread > 0) {
        struct ferr e;
        int rc = qmp_parser_feed(f->srv_parser, buf->base, (size_t)nread, srv_on_msg, f, &e);
        if (rc != 0)
            fprintf(stderr, "fake server: bad input from client: %s\n", e.msg);
        assert_int_equal(rc, 0);
    }
    free(buf->base);
}

static void srv_accept(uv_stream_t *server, int status)
{
    struct fx *f = server->data;
    assert_int_equal(status, 0);
    assert_false(f->peer_open); /* one client per test */
    assert_int_equal(uv_pipe_init(&f->loop, &f->peer, 0), 0);
    f->peer.data = f;
    f->peer_open = true;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&f->peer), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&f->peer, srv_alloc, srv_read), 0);
    srv_send(f, f->greeting ? f->greeting : GREETING);
}

/* -- client callbacks -- */

static void cl_ready(struct qmp_conn *c, void *data)
{
    struct fx *f = data;
    assert_ptr_equal(c, f->conn);
    f->ready++;
    if (f->close_in_ready) {
        qmp_conn_close(c);
        f->conn_gone = true;
    }
}

static void cl_event(struct qmp_conn *c, const char *event, json_t *data_j, uint64_t ts_ms,
                     void *data)
{
    struct fx *f = data;
    assert_ptr_equal(c, f->conn);
    if (f->nevents < 8) {
        snprintf(f->events[f->nevents], sizeof(f->events[0]), "%s", event);
        char *s = data_j ? json_dumps(data_j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        snprintf(f->event_data[f->nevents], sizeof(f->event_data[0]), "%s", s ? s : "-");
        free(s);
        f->event_ts[f->nevents] = ts_ms;
    }
    f->nevents++;
    if (f->close_in_event) {
        qmp_conn_close(c);
        f->conn_gone = true;
    }
}

static void cl_closed(struct qmp_conn *c, int status, const char *msg, void *data)
{
    struct fx *f = data;
    assert_ptr_equal(c, f->conn);
    assert_false(f->conn_gone);
    f->closed++;
    f->closed_status = status;
    f->closed_after_replies = f->nreplies;
    snprintf(f->closed_msg, sizeof(f->closed_msg), "%s", msg);
    /* Commands are refused from here on. */
    f->exec_after_close_rc = qmp_conn_execute(c, "query-status", json_object(), NULL, NULL);
    if (f->close_in_closed)
        qmp_conn_close(c); /* a no-op: must not crash or double free */
    f->conn_gone = true;
}

/* Reply callback data: the fixture and a tag telling commands apart. */
struct tagged {
    struct fx *f;
    long tag;
};
static struct tagged tags[16];

static void cl_reply(struct qmp_conn *c, int status, json_t *result, const char *errmsg, void *data)
{
    const struct tagged *t = data;
    struct fx *fx = t->f;
    assert_ptr_equal(c, fx->conn);
    assert_true(fx->nreplies < 16);
    struct reply *r = &fx->replies[fx->nreplies++];
    r->status = status;
    r->tag = t->tag;
    if (status == 0) {
        char *s = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        snprintf(r->text, sizeof(r->text), "%s", s ? s : "?");
        free(s);
        assert_null(errmsg);
    } else {
        assert_null(result);
        assert_non_null(errmsg);
        snprintf(r->text, sizeof(r->text), "%s", errmsg);
    }
    if (status == 0 && fx->close_in_reply && !fx->conn_gone) {
        qmp_conn_close(c);
        fx->conn_gone = true;
        /* Closing: new commands are refused, args are still consumed (ASan checks). */
        fx->exec_after_close_rc = qmp_conn_execute(c, "query-status", json_object(), NULL, NULL);
    }
    if (status != 0 && status != -ECANCELED && fx->close_in_failed_reply && !fx->conn_gone) {
        qmp_conn_close(c);
        fx->conn_gone = true;
    }
}

static void *tag(struct fx *f, long t)
{
    tags[t].f = f;
    tags[t].tag = t;
    return &tags[t];
}

static void exec_ok(struct fx *f, const char *cmd, json_t *args, long t)
{
    assert_int_equal(qmp_conn_execute(f->conn, cmd, args, cl_reply, tag(f, t)), 0);
}

/* -- fixture -- */

static void tick(uv_timer_t *t)
{
    (void)t;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
    assert_int_equal(uv_timer_start(&f->tick, tick, 10, 10), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->split_timer), 0);
    f->split_timer.data = f;
    f->split_timer_open = true;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-qmp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/qmp.sock", f->dir);
    f->srv_parser = qmp_parser_new(QMP_MAX_LINE);
    assert_non_null(f->srv_parser);
    *state = f;
    return 0;
}

static void fx_listen(struct fx *f)
{
    assert_int_equal(uv_pipe_init(&f->loop, &f->server, 0), 0);
    f->server.data = f;
    f->server_open = true;
    assert_int_equal(uv_pipe_bind(&f->server, f->path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 4, srv_accept), 0);
}

static void fx_open(struct fx *f)
{
    struct qmp_callbacks cb = {
        .on_ready = cl_ready, .on_event = cl_event, .on_closed = cl_closed, .data = f};
    struct ferr e;
    ferr_clear(&e);
    assert_int_equal(qmp_conn_open(&f->loop, f->path, &cb, &f->conn, &e), 0);
}

static void noop_close(uv_handle_t *h)
{
    (void)h;
}

/* Runs the loop until cond(f) holds; fails the test after 5 s. */
static void run_until(struct fx *f, bool (*cond)(struct fx *f))
{
    uint64_t deadline = now_mono_ms() + 5000;
    while (!cond(f)) {
        assert_true(now_mono_ms() < deadline);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->conn && !f->conn_gone)
        qmp_conn_close(f->conn);
    peer_close(f);
    if (f->server_open)
        uv_close((uv_handle_t *)&f->server, noop_close);
    if (f->split_timer_open)
        uv_close((uv_handle_t *)&f->split_timer, noop_close);
    uv_close((uv_handle_t *)&f->tick, noop_close);
    /* Everything, the client connection included, must be gone within a few passes. */
    uint64_t deadline = now_mono_ms() + 5000;
    while (uv_run(&f->loop, UV_RUN_NOWAIT) != 0 && now_mono_ms() < deadline)
        ;
    int rc = uv_loop_close(&f->loop);
    qmp_parser_free(f->srv_parser);
    rm_rf(f->dir);
    free(f);
    assert_int_equal(rc, 0);
    return 0;
}

static bool is_ready(struct fx *f)
{
    return f->ready > 0 || f->closed > 0;
}
static bool is_closed(struct fx *f)
{
    return f->closed > 0;
}
static bool replies_1(struct fx *f)
{
    return f->nreplies >= 1 || f->closed > 0;
}
static bool replies_2(struct fx *f)
{
    return f->nreplies >= 2 || f->closed > 0;
}
static bool replies_3(struct fx *f)
{
    return f->nreplies >= 3 || f->closed > 0;
}
static bool replies_4(struct fx *f)
{
    return f->nreplies >= 4 || f->closed > 0;
}

static void test_client_normal(void **state)
{
    struct fx *f = *state;
    fx_listen(f);
    fx_open(f);
    /* Queued before the greeting: sent after qmp_capabilities. */
    exec_ok(f, "query-status", NULL, 1);
    json_t *args = json_pack("{s:s, s:i}", "device", "disk0", "n", 7);
    exec_ok(f, "echo", args, 2);
    run_until(f, is_ready);
    assert_int_equal(f->ready, 1);
    assert_int_equal(f->closed, 0);
    run_until(f, replies_2);
    exec_ok(f, "fail", NULL, 3);
    exec_ok(f, "no-such-command", NULL, 4);
    run_until(f, replies_4);
    assert_int_equal(f->nreplies, 4);

    assert_string_equal(f->seen, "qmp_capabilities,query-status,echo,fail,no-such-command,");
    for (int i = 1; i < f->nseen; i++)
        assert_true(f->seen_ids[i] > f->seen_ids[i - 1]);

    assert_int_equal(f->replies[0].tag, 1);
    assert_int_equal(f->replies[0].status, 0);
    assert_string_equal(f->replies[0].text,
                        "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}");
    assert_int_equal(f->replies[1].tag, 2);
    assert_string_equal(f->replies[1].text, "{\"device\":\"disk0\",\"n\":7}");
    assert_int_equal(f->replies[2].tag, 3);
    assert_int_equal(f->replies[2].status, FERR_QEMU);
    assert_string_equal(f->replies[2].text, "GenericError: Device 'x' not found");
    assert_int_equal(f->replies[3].status, FERR_QEMU);
    assert_non_null(strstr(f->replies[3].text, "CommandNotFound: "));
    assert_int_equal(f->ready, 1);
    assert_int_equal(f->closed, 0);

    /* Fire and forget: no callback, still sent. */
    assert_int_equal(qmp_conn_execute(f->conn, "query-status", NULL, NULL, NULL), 0);
    /* Bad arguments are refused and args are still consumed. */
    assert_int_equal(qmp_conn_execute(f->conn, "", json_object(), NULL, NULL), FERR_INVALID);
}

static void test_client_out_of_band(void **state)
{
    struct fx *f = *state;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    /* The greeting offered "oob": it was enabled. */
    assert_true(f->oob_enabled);
    assert_true(qmp_conn_oob(f->conn));
    /* An in-band command the "main loop" sits on, then an out-of-band one: its answer comes
     * first and each goes to its own callback. */
    exec_ok(f, "stuck", NULL, 1);
    assert_int_equal(qmp_conn_execute_oob(f->conn, "migrate-pause", NULL, cl_reply, tag(f, 2)), 0);
    run_until(f, replies_2);
    assert_string_equal(f->seen, "qmp_capabilities,stuck,oob:migrate-pause,");
    assert_int_equal(f->nreplies, 2);
    assert_int_equal(f->replies[0].tag, 2);
    assert_string_equal(f->replies[0].text, "{}");
    assert_int_equal(f->replies[1].tag, 1);
    assert_string_equal(f->replies[1].text, "{\"stuck\":true}");
    assert_int_equal(f->closed, 0);
}

static void test_client_without_out_of_band(void **state)
{
    struct fx *f = *state;
    f->greeting = GREETING_NO_OOB;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    assert_false(f->oob_enabled);
    assert_false(qmp_conn_oob(f->conn));
    /* Asked out of band, sent in band: the monitor has nothing else. */
    assert_int_equal(qmp_conn_execute_oob(f->conn, "query-status", NULL, cl_reply, tag(f, 1)), 0);
    run_until(f, replies_1);
    assert_string_equal(f->seen, "qmp_capabilities,query-status,");
    assert_int_equal(f->replies[0].status, 0);
}

static void test_client_events(void **state)
{
    struct fx *f = *state;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    exec_ok(f, "emit", NULL, 1);
    exec_ok(f, "many", NULL, 2);
    exec_ok(f, "split", NULL, 3);
    run_until(f, replies_3);
    assert_int_equal(f->closed, 0);
    assert_int_equal(f->nreplies, 3);
    assert_int_equal(f->nevents, 4);
    assert_string_equal(f->events[0], "STOP");
    assert_string_equal(f->event_data[0], "{\"reason\":\"paused\"}");
    assert_true(f->event_ts[0] == 1700000000250ull);
    assert_string_equal(f->events[1], "RESUME");
    assert_string_equal(f->event_data[1], "-");
    assert_true(f->event_ts[1] == 1000);
    assert_string_equal(f->events[2], "RESET");
    assert_string_equal(f->event_data[2], "{\"guest\":true}");
    assert_string_equal(f->events[3], "SHUTDOWN");
    assert_true(f->event_ts[3] == 3000);
    /* Events of "emit" come before its reply, and so on. */
    assert_string_equal(f->replies[1].text, "{\"n\":3}");
    assert_string_equal(f->replies[2].text, "{\"half\":\"first-second\"}");
}

/* Opens, gets ready, sends a silent command and then cmd, and waits for on_closed. */
static void expect_failure(struct fx *f, const char *cmd, int status, const char *needle)
{
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    assert_int_equal(f->ready, 1);
    exec_ok(f, "silent", NULL, 1);
    exec_ok(f, cmd, NULL, 2);
    run_until(f, is_closed);
    assert_int_equal(f->closed, 1);
    assert_int_equal(f->closed_status, status);
    if (!strstr(f->closed_msg, needle)) {
        fprintf(stderr, "on_closed message \"%s\" lacks \"%s\"\n", f->closed_msg, needle);
        fail();
    }
    char prefix[200];
    snprintf(prefix, sizeof(prefix), "qmp: %s: ", f->path);
    assert_true(strncmp(f->closed_msg, prefix, strlen(prefix)) == 0);
    /* Both pending commands failed with the same error, before on_closed. */
    assert_int_equal(f->nreplies, 2);
    assert_int_equal(f->closed_after_replies, 2);
    assert_int_equal(f->replies[0].tag, 1);
    assert_int_equal(f->replies[0].status, status);
    assert_string_equal(f->replies[0].text, f->closed_msg);
    assert_int_equal(f->replies[1].status, status);
    assert_int_equal(f->exec_after_close_rc, FERR_STATE);
}

static void test_client_garbage(void **state)
{
    expect_failure(*state, "garbage", FERR_PROTO,
                   "garbage from QEMU: \"this is not json\" is not JSON");
}

static void test_client_non_object(void **state)
{
    expect_failure(*state, "nonobject", FERR_PROTO, "is not a JSON object");
}

static void test_client_bad_message(void **state)
{
    expect_failure(*state, "badmsg", FERR_PROTO, "unexpected message");
}

static void test_client_unknown_id(void **state)
{
    expect_failure(*state, "unknownid", FERR_PROTO, "reply with unknown id 9999");
}

static void test_client_second_greeting(void **state)
{
    expect_failure(*state, "greetagain", FERR_PROTO, "unexpected second greeting");
}

static void test_client_overlong(void **state)
{
    expect_failure(*state, "overlong", FERR_PROTO, "longer than the limit");
}

static void test_client_eof_mid_reply(void **state)
{
    expect_failure(*state, "eofmid", -ECONNRESET,
                   "connection closed by QEMU in the middle of a message");
}

static void test_client_eof(void **state)
{
    expect_failure(*state, "hangup", -ECONNRESET, "connection closed by QEMU");
}

static void test_client_eof_during_negotiation(void **state)
{
    struct fx *f = *state;
    f->caps = CAPS_HANGUP;
    fx_listen(f);
    fx_open(f);
    exec_ok(f, "query-status", NULL, 1); /* queued, never sent */
    run_until(f, is_closed);
    assert_int_equal(f->ready, 0);
    assert_int_equal(f->closed_status, -ECONNRESET);
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, -ECONNRESET);
    assert_string_equal(f->seen, "qmp_capabilities,");
}

static void test_client_caps_refused(void **state)
{
    struct fx *f = *state;
    f->caps = CAPS_ERROR;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_closed);
    assert_int_equal(f->ready, 0);
    assert_int_equal(f->closed_status, FERR_QEMU);
    assert_non_null(strstr(f->closed_msg, "qmp_capabilities refused: CommandNotFound: nope"));
}

static void test_client_no_greeting(void **state)
{
    struct fx *f = *state;
    f->greeting = "{\"return\": {}, \"id\": 1}\r\n";
    fx_listen(f);
    fx_open(f);
    exec_ok(f, "query-status", NULL, 1);
    run_until(f, is_closed);
    assert_int_equal(f->closed_status, FERR_PROTO);
    assert_non_null(strstr(f->closed_msg, "expected the QMP greeting"));
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, FERR_PROTO);
    assert_string_equal(f->seen, "");
}

/* An event before the greeting (QEMU 10 did that once): passed on, and the connection goes
 * on to ready as usual. */
static void test_client_event_before_greeting(void **state)
{
    struct fx *f = *state;
    static char greet[1024];
    snprintf(greet, sizeof(greet), "%s%s",
             "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
             "\"NIC_RX_FILTER_CHANGED\", \"data\": {\"path\": \"/machine\"}}\r\n",
             GREETING);
    f->greeting = greet;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    assert_int_equal(f->ready, 1);
    assert_int_equal(f->closed, 0);
    assert_int_equal(f->nevents, 1);
    assert_string_equal(f->events[0], "NIC_RX_FILTER_CHANGED");
    exec_ok(f, "query-status", NULL, 1);
    assert_int_equal(f->closed, 0);
}

static bool peer_gone(struct fx *f)
{
    return !f->peer_open;
}

static void test_client_close_in_reply(void **state)
{
    struct fx *f = *state;
    f->close_in_reply = true;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    /* Closing in the first success callback must drop what follows in the same read and
     * cancel the other pending commands synchronously. */
    exec_ok(f, "silent", NULL, 1);
    exec_ok(f, "query-status", NULL, 2);
    exec_ok(f, "query-status", NULL, 3);
    exec_ok(f, "emit", NULL, 4);
    run_until(f, replies_1);
    run_until(f, peer_gone); /* the server sees the hang-up */
    /* Reply 2 closed: 1, 3 and 4 were cancelled inside qmp_conn_close. */
    assert_int_equal(f->nreplies, 4);
    assert_int_equal(f->replies[0].tag, 2);
    assert_int_equal(f->replies[0].status, 0);
    assert_int_equal(f->replies[1].tag, 1);
    assert_int_equal(f->replies[1].status, -ECANCELED);
    assert_int_equal(f->replies[2].tag, 3);
    assert_int_equal(f->replies[2].status, -ECANCELED);
    assert_int_equal(f->replies[3].tag, 4);
    assert_int_equal(f->replies[3].status, -ECANCELED);
    assert_non_null(strstr(f->replies[1].text, "connection closed"));
    assert_int_equal(f->exec_after_close_rc, FERR_STATE);
    assert_int_equal(f->closed, 0); /* on_closed is not called after qmp_conn_close */
    assert_int_equal(f->nevents, 0);
}

static void test_client_close_in_ready(void **state)
{
    struct fx *f = *state;
    f->close_in_ready = true;
    fx_listen(f);
    fx_open(f);
    exec_ok(f, "query-status", NULL, 1);
    run_until(f, is_ready);
    run_until(f, peer_gone);
    assert_int_equal(f->ready, 1);
    assert_int_equal(f->closed, 0);
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, -ECANCELED);
}

static bool has_event(struct fx *f)
{
    return f->nevents > 0;
}

static void test_client_close_in_event(void **state)
{
    struct fx *f = *state;
    f->close_in_event = true;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    exec_ok(f, "many", NULL, 1);
    run_until(f, has_event);
    run_until(f, peer_gone);
    assert_int_equal(f->nevents, 1); /* the rest of the read is dropped */
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, -ECANCELED);
    assert_int_equal(f->closed, 0);
}

static void test_client_close_in_closed(void **state)
{
    struct fx *f = *state;
    f->close_in_closed = true;
    expect_failure(f, "garbage", FERR_PROTO, "garbage from QEMU");
}

static void test_client_close_in_failed_reply(void **state)
{
    struct fx *f = *state;
    f->close_in_failed_reply = true;
    fx_listen(f);
    fx_open(f);
    run_until(f, is_ready);
    exec_ok(f, "silent", NULL, 1);
    exec_ok(f, "garbage", NULL, 2);
    run_until(f, replies_2);
    run_until(f, peer_gone);
    /* The user closed from the first failure callback: on_closed is not called, the other
     * pending command still gets the original error. */
    assert_int_equal(f->closed, 0);
    assert_int_equal(f->nreplies, 2);
    assert_int_equal(f->replies[0].status, FERR_PROTO);
    assert_int_equal(f->replies[1].status, FERR_PROTO);
}

static void test_client_close_while_connecting(void **state)
{
    struct fx *f = *state;
    fx_listen(f);
    fx_open(f);
    exec_ok(f, "query-status", NULL, 1);
    qmp_conn_close(f->conn);
    f->conn_gone = true;
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, -ECANCELED);
    /* Teardown runs the loop: no callback may come, and the connection must be freed. */
    for (int i = 0; i < 5; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->ready, 0);
    assert_int_equal(f->closed, 0);
    assert_int_equal(f->nreplies, 1);
}

static void test_client_connect_missing(void **state)
{
    struct fx *f = *state;
    fx_open(f); /* nothing listens, no socket file */
    exec_ok(f, "query-status", NULL, 1);
    run_until(f, is_closed);
    assert_int_equal(f->closed_status, -ENOENT);
    assert_non_null(strstr(f->closed_msg, "connect"));
    assert_non_null(strstr(f->closed_msg, f->path));
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(f->replies[0].status, -ENOENT);
}

static void test_client_connect_refused(void **state)
{
    struct fx *f = *state;
    /* A stale socket file: bound once, nobody listening. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(f->path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    fx_open(f);
    run_until(f, is_closed);
    assert_int_equal(f->closed_status, -ECONNREFUSED);
    assert_int_equal(f->ready, 0);
}

static void test_client_bad_open(void **state)
{
    struct fx *f = *state;
    struct qmp_callbacks cb = {.data = f};
    struct qmp_conn *c = NULL;
    struct ferr e;
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(qmp_conn_open(&f->loop, longpath, &cb, &c, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "socket path longer"));
    assert_int_equal(qmp_conn_open(&f->loop, "", &cb, &c, &e), FERR_INVALID);
    assert_int_equal(qmp_conn_open(NULL, f->path, &cb, &c, &e), FERR_INVALID);
    assert_int_equal(qmp_conn_open(&f->loop, f->path, NULL, &c, &e), FERR_INVALID);
    assert_null(c);
    qmp_conn_close(NULL);
}

int main(void)
{
    /* As in ferryd: a peer that hangs up must give EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_split_across_reads),
        cmocka_unit_test(test_parser_many_per_read),
        cmocka_unit_test(test_parser_overlong),
        cmocka_unit_test(test_parser_not_object),
        cmocka_unit_test(test_parser_invalid_json),
        cmocka_unit_test(test_parser_stop),
        cmocka_unit_test(test_classify),
        cmocka_unit_test_setup_teardown(test_client_normal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_events, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_garbage, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_non_object, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_bad_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_unknown_id, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_second_greeting, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_overlong, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_eof_mid_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_eof, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_eof_during_negotiation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_caps_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_no_greeting, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_event_before_greeting, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_in_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_in_ready, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_in_event, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_in_closed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_in_failed_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_out_of_band, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_without_out_of_band, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_close_while_connecting, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_connect_missing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_connect_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_bad_open, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
