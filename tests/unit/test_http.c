/* SPDX-License-Identifier: MIT */
/* Tests of the HTTP server: a real server on a uv loop, libcurl requests from a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "common/util.h"

#define TOKEN "s3cret-token"
#define MAX_RESULTS 8
#define BODY_MAX 8192

/* What one request saw; filled by the client thread, checked by the main thread. */
struct res {
    CURLcode rc;
    long status;
    long connects; /* new connections curl made for this request */
    char ctype[128];
    char body[BODY_MAX];
    size_t len;
    uint64_t ms; /* how long it took */
};

struct fx {
    uv_loop_t loop;
    struct http_server *srv;
    char dir[64];
    char sock[128];
    int port;
    uv_async_t done;
    uv_timer_t delay_timer, hang_timer, close_timer;
    struct http_req *delayed, *hung;
    unsigned hang_ms;
    bool close_while_pending; /* "/hang" also closes the server before answering */
    int handled;              /* handler calls; loop thread only */
    atomic_int hang_answered;
    void (*client)(struct fx *f);
    struct res res[MAX_RESULTS];
    int server_closed;
    /* "/stream": a streamed answer (http_reply_stream) written on stream_timer */
    struct http_stream *stream;
    uv_timer_t stream_timer;
    unsigned stream_ticks;
    bool stream_ends;         /* "b" and the end after two ticks; else "tick" until it closes */
    atomic_int stream_closed; /* how often the closed callback ran */
};

/* ---- server side (loop thread) ----------------------------------------------------------- */

static void reply_delayed(uv_timer_t *t)
{
    struct fx *f = t->data;
    http_reply_json(f->delayed, 200, json_pack("{s:b}", "delayed", 1));
    f->delayed = NULL;
}

static void reply_hung(uv_timer_t *t)
{
    struct fx *f = t->data;
    /* The client is gone (or the server is closed): this must only free the request. */
    http_reply_json(f->hung, 200, json_pack("{s:b}", "late", 1));
    f->hung = NULL;
    atomic_store(&f->hang_answered, 1);
}

static void stream_closed(struct http_stream *st, void *data)
{
    struct fx *f = data;
    assert_ptr_equal(st, f->stream);
    f->stream = NULL;
    uv_timer_stop(&f->stream_timer);
    atomic_fetch_add(&f->stream_closed, 1);
}

static void stream_tick(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (!f->stream)
        return;
    f->stream_ticks++;
    if (!f->stream_ends) {
        assert_int_equal(http_stream_write(f->stream, "tick\n", 5), 0);
    } else if (f->stream_ticks == 1) {
        assert_int_equal(http_stream_write(f->stream, "b\n", 2), 0);
    } else {
        http_stream_end(f->stream);
        uv_timer_stop(t);
    }
}

static void on_server_closed(void *data)
{
    struct fx *f = data;
    f->server_closed++;
}

static void close_server(uv_timer_t *t)
{
    struct fx *f = t->data;
    http_server_close(f->srv, on_server_closed, f);
    f->srv = NULL;
}

static void handler(struct http_req *r, void *data)
{
    struct fx *f = data;
    const char *path = http_req_path(r);
    size_t len;
    const char *body = http_req_body(r, &len);
    f->handled++;

    if (strncmp(path, "/hello", 6) == 0) {
        const char *q = http_req_query(r, "x");
        const char *h = http_req_header(r, "x-test");
        http_reply_json(r, 200,
                        json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:b}", "hello", "world", "method",
                                  http_req_method(r), "path", path, "q", q, "hdr", h, "remote",
                                  http_req_is_remote(r)));
    } else if (strcmp(path, "/echo") == 0) {
        json_error_t je;
        json_t *j = json_loadb(body, len, 0, &je);
        if (!j) {
            struct ferr e;
            ferr_set(&e, FERR_INVALID, "body: %s", je.text);
            http_reply_error(r, &e);
            return;
        }
        http_reply_json(r, 200, json_pack("{s:o}", "echo", j));
    } else if (strcmp(path, "/len") == 0) {
        http_reply_json(r, 200,
                        json_pack("{s:I,s:b}", "len", (json_int_t)len, "nul", body[len] == '\0'));
    } else if (strcmp(path, "/data") == 0) {
        http_reply_data(r, 200, "text/plain; version=0.0.4", "hi\n", 3);
    } else if (strcmp(path, "/stream") == 0) {
        f->stream_ends = http_req_query(r, "end") != NULL;
        f->stream_ticks = 0;
        assert_int_equal(http_reply_stream(r, "text/event-stream", stream_closed, f, &f->stream),
                         0);
        assert_int_equal(http_stream_write(f->stream, "a\n", 2), 0);
        uv_timer_start(&f->stream_timer, stream_tick, 50, 50);
        if (f->close_while_pending)
            uv_timer_start(&f->close_timer, close_server, 100, 0);
    } else if (strcmp(path, "/delay") == 0) {
        f->delayed = r;
        uv_timer_start(&f->delay_timer, reply_delayed, 100, 0);
    } else if (strcmp(path, "/hang") == 0) {
        f->hung = r;
        uv_timer_start(&f->hang_timer, reply_hung, f->hang_ms, 0);
        if (f->close_while_pending)
            uv_timer_start(&f->close_timer, close_server, 50, 0);
    } else {
        struct ferr e;
        ferr_set(&e, FERR_NOTFOUND, "no route for %s %s", http_req_method(r), path);
        http_reply_error(r, &e);
    }
}

static void on_done(uv_async_t *a)
{
    struct fx *f = a->data;
    if (f->srv)
        http_server_close(f->srv, on_server_closed, f);
    f->srv = NULL;
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->delay_timer, NULL);
    uv_close((uv_handle_t *)&f->hang_timer, NULL);
    uv_close((uv_handle_t *)&f->close_timer, NULL);
    uv_close((uv_handle_t *)&f->stream_timer, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct ferr e;
    assert_non_null(f);
    strcpy(f->dir, "/tmp/ferry-test-http-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(http_server_new(&f->loop, handler, f, &f->srv, &e), 0);
    assert_int_equal(http_server_listen_unix(f->srv, f->sock, 0660, &e), 0);
    f->port = free_port();
    int rc = http_server_listen_tcp(f->srv, "127.0.0.1", f->port, TOKEN, &e);
    if (rc < 0)
        fail_msg("%s", e.msg);
    uv_async_init(&f->loop, &f->done, on_done);
    uv_timer_init(&f->loop, &f->delay_timer);
    uv_timer_init(&f->loop, &f->hang_timer);
    uv_timer_init(&f->loop, &f->close_timer);
    uv_timer_init(&f->loop, &f->stream_timer);
    f->done.data = f->delay_timer.data = f->hang_timer.data = f->close_timer.data = f;
    f->stream_timer.data = f;
    f->hang_ms = 500;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->srv) { /* a test failed before running the loop */
        on_done(&f->done);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void *client_main(void *arg)
{
    struct fx *f = arg;
    f->client(f);
    uv_async_send(&f->done);
    return NULL;
}

/* Runs client in a thread while the loop serves; returns when both are finished. */
static void run(struct fx *f, void (*client)(struct fx *f))
{
    pthread_t th;
    f->client = client;
    assert_int_equal(pthread_create(&th, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_int_equal(f->server_closed, 1);
    assert_int_equal(access(f->sock, F_OK), -1); /* socket file removed on close */
}

/* ---- client side (client thread) --------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    return now_mono_ms();
}

static size_t on_write(char *p, size_t size, size_t n, void *data)
{
    struct res *r = data;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    return len;
}

enum via { UNIX, TCP };

/* One request. c may be a handle kept for keep-alive, or NULL for a fresh one. */
static void req(struct fx *f, CURL *c, enum via via, const char *token, const char *method,
                const char *path, const char *body, size_t body_len, long timeout_ms,
                struct res *out)
{
    CURL *h = c ? c : curl_easy_init();
    char url[256], auth[256];
    struct curl_slist *hdrs = NULL;
    memset(out, 0, sizeof(*out));
    if (via == UNIX) {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, f->sock);
        snprintf(url, sizeof(url), "http://localhost%s", path);
    } else {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, NULL);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
    }
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "X-Test: yes");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms ? timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    uint64_t t0 = mono_ms();
    out->rc = curl_easy_perform(h);
    out->ms = mono_ms() - t0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->connects);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    if (ct)
        snprintf(out->ctype, sizeof(out->ctype), "%s", ct);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (!c)
        curl_easy_cleanup(h);
}

/* Waits (polling, with a deadline) until flag is set. */
static void wait_flag(atomic_int *flag, unsigned deadline_ms)
{
    uint64_t end = mono_ms() + deadline_ms;
    while (!atomic_load(flag) && mono_ms() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- checks (main thread) ---------------------------------------------------------------- */

static json_t *res_json(const struct res *r)
{
    json_error_t je;
    json_t *j = json_loads(r->body, 0, &je);
    if (!j)
        fail_msg("reply is not JSON (%s): %s", je.text, r->body);
    return j;
}

static void assert_json_reply(const struct res *r, long status)
{
    assert_int_equal(r->rc, CURLE_OK);
    assert_int_equal(r->status, status);
    assert_string_equal(r->ctype, "application/json");
}

static void assert_error_reply(const struct res *r, long status, const char *code)
{
    assert_json_reply(r, status);
    json_t *j = res_json(r);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(c);
    assert_string_equal(c, code);
    assert_non_null(m);
    assert_true(strlen(m) > 0);
    json_decref(j);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void client_json(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/hello?x=a%20b+c&y", NULL, 0, 0, &f->res[0]);
    req(f, NULL, UNIX, NULL, "POST", "/echo", "{\"a\": [1, 2]}", 13, 0, &f->res[1]);
    req(f, NULL, UNIX, NULL, "GET", "/hello/a%2Fb", NULL, 0, 0, &f->res[2]);
    req(f, NULL, UNIX, NULL, "POST", "/echo", "{bad", 4, 0, &f->res[3]);
    req(f, NULL, UNIX, NULL, "GET", "/data", NULL, 0, 0, &f->res[4]);
    req(f, NULL, UNIX, NULL, "PUT", "/len", "abc", 3, 0, &f->res[5]);
}

static void test_json_reply(void **state)
{
    struct fx *f = *state;
    run(f, client_json);

    assert_json_reply(&f->res[0], 200);
    json_t *j = res_json(&f->res[0]);
    assert_string_equal(json_string_value(json_object_get(j, "hello")), "world");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/hello");
    assert_string_equal(json_string_value(json_object_get(j, "q")), "a b c");
    assert_string_equal(json_string_value(json_object_get(j, "hdr")), "yes");
    assert_true(json_is_false(json_object_get(j, "remote")));
    json_decref(j);

    assert_json_reply(&f->res[1], 200);
    j = res_json(&f->res[1]);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(json_object_get(j, "echo"), "a"), 1)), 2);
    json_decref(j);

    /* The path reaches the handler raw: the router decodes per segment. */
    j = res_json(&f->res[2]);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/hello/a%2Fb");
    json_decref(j);

    assert_error_reply(&f->res[3], 400, "invalid");

    assert_int_equal(f->res[4].rc, CURLE_OK);
    assert_int_equal(f->res[4].status, 200);
    assert_string_equal(f->res[4].ctype, "text/plain; version=0.0.4");
    assert_string_equal(f->res[4].body, "hi\n");

    assert_json_reply(&f->res[5], 200);
    j = res_json(&f->res[5]);
    assert_int_equal(json_integer_value(json_object_get(j, "len")), 3);
    assert_true(json_is_true(json_object_get(j, "nul")));
    json_decref(j);
    assert_int_equal(f->handled, 6);
}

static void client_async(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/delay", NULL, 0, 0, &f->res[0]);
    req(f, NULL, TCP, "Bearer " TOKEN, "GET", "/delay", NULL, 0, 0, &f->res[1]);
}

static void test_async_reply(void **state)
{
    struct fx *f = *state;
    run(f, client_async);
    for (int i = 0; i < 2; i++) {
        assert_json_reply(&f->res[i], 200);
        assert_true(f->res[i].ms >= 90);
        json_t *j = res_json(&f->res[i]);
        assert_true(json_is_true(json_object_get(j, "delayed")));
        json_decref(j);
    }
}

static void client_not_found(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/v1/vms/nope", NULL, 0, 0, &f->res[0]);
}

static void test_not_found(void **state)
{
    struct fx *f = *state;
    run(f, client_not_found);
    assert_error_reply(&f->res[0], 404, "not_found");
    assert_non_null(strstr(f->res[0].body, "no route for GET /v1/vms/nope"));
}

static void client_too_large(struct fx *f)
{
    size_t big = 2 * 1024 * 1024;
    char *body = malloc(big);
    CURL *c = curl_easy_init();
    memset(body, 'x', big);
    req(f, c, UNIX, NULL, "POST", "/len", body, big, 0, &f->res[0]);
    req(f, c, UNIX, NULL, "GET", "/hello", NULL, 0, 0, &f->res[1]); /* same connection */
    req(f, c, UNIX, NULL, "POST", "/len", body, HTTP_MAX_BODY, 0, &f->res[2]);
    req(f, NULL, TCP, "Bearer " TOKEN, "POST", "/len", body, HTTP_MAX_BODY + 1, 0, &f->res[3]);
    curl_easy_cleanup(c);
    free(body);
}

static void test_body_too_large(void **state)
{
    struct fx *f = *state;
    run(f, client_too_large);
    assert_error_reply(&f->res[0], 413, "limit");
    assert_json_reply(&f->res[1], 200);
    assert_int_equal(f->res[1].connects, 0);
    assert_json_reply(&f->res[2], 200);
    json_t *j = res_json(&f->res[2]);
    assert_int_equal(json_integer_value(json_object_get(j, "len")), HTTP_MAX_BODY);
    json_decref(j);
    assert_error_reply(&f->res[3], 413, "limit");
    assert_int_equal(f->handled, 2); /* the handler never saw the big ones */
}

static void client_token(struct fx *f)
{
    req(f, NULL, TCP, NULL, "GET", "/hello", NULL, 0, 0, &f->res[0]);
    req(f, NULL, TCP, "Bearer wrong", "GET", "/hello", NULL, 0, 0, &f->res[1]);
    req(f, NULL, TCP, "Bearer s3cret-tokeX", "GET", "/hello", NULL, 0, 0, &f->res[2]);
    req(f, NULL, TCP, "Basic " TOKEN, "POST", "/len", "abc", 3, 0, &f->res[3]);
    req(f, NULL, TCP, "Bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[4]);
    req(f, NULL, TCP, "bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[5]);
    req(f, NULL, TCP, "Bearer " TOKEN "x", "GET", "/hello", NULL, 0, 0, &f->res[6]);
}

static void test_tcp_token(void **state)
{
    struct fx *f = *state;
    run(f, client_token);
    assert_error_reply(&f->res[0], 401, "unauthorized");
    assert_error_reply(&f->res[1], 401, "unauthorized");
    assert_error_reply(&f->res[2], 401, "unauthorized");
    assert_error_reply(&f->res[3], 401, "unauthorized");
    assert_json_reply(&f->res[4], 200);
    json_t *j = res_json(&f->res[4]);
    assert_true(json_is_true(json_object_get(j, "remote")));
    json_decref(j);
    assert_json_reply(&f->res[5], 200);
    assert_error_reply(&f->res[6], 401, "unauthorized");
    assert_int_equal(f->handled, 2);
}

static void client_keep_alive(struct fx *f)
{
    CURL *c = curl_easy_init();
    req(f, c, UNIX, NULL, "GET", "/hello", NULL, 0, 0, &f->res[0]);
    req(f, c, UNIX, NULL, "GET", "/delay", NULL, 0, 0, &f->res[1]);
    req(f, c, UNIX, NULL, "POST", "/echo", "[1]", 3, 0, &f->res[2]);
    curl_easy_cleanup(c);
    c = curl_easy_init();
    req(f, c, TCP, "Bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[3]);
    req(f, c, TCP, "Bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[4]);
    req(f, c, TCP, NULL, "GET", "/hello", NULL, 0, 0, &f->res[5]); /* 401 keeps it too */
    req(f, c, TCP, "Bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[6]);
    curl_easy_cleanup(c);
}

static void test_keep_alive(void **state)
{
    struct fx *f = *state;
    run(f, client_keep_alive);
    for (int i = 0; i < 7; i++) {
        if (i == 5)
            assert_error_reply(&f->res[i], 401, "unauthorized");
        else
            assert_json_reply(&f->res[i], 200);
        /* Only the first request on each handle opens a connection. */
        assert_int_equal(f->res[i].connects, i == 0 || i == 3 ? 1 : 0);
    }
}

static void client_disconnect(struct fx *f)
{
    /* Gives up after 150 ms; the server answers at 500 ms to a connection that is gone. */
    req(f, NULL, UNIX, NULL, "GET", "/hang", NULL, 0, 150, &f->res[0]);
    wait_flag(&f->hang_answered, 5000);
    req(f, NULL, UNIX, NULL, "GET", "/hello", NULL, 0, 0, &f->res[1]);
    /* Same over TCP, with a keep-alive handle whose connection dies. */
    atomic_store(&f->hang_answered, 0);
    CURL *c = curl_easy_init();
    req(f, c, TCP, "Bearer " TOKEN, "GET", "/hang", NULL, 0, 150, &f->res[2]);
    wait_flag(&f->hang_answered, 5000);
    req(f, c, TCP, "Bearer " TOKEN, "GET", "/hello", NULL, 0, 0, &f->res[3]);
    curl_easy_cleanup(c);
}

static void test_client_disconnects(void **state)
{
    struct fx *f = *state;
    run(f, client_disconnect);
    assert_int_equal(f->res[0].rc, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(atomic_load(&f->hang_answered), 1);
    assert_json_reply(&f->res[1], 200);
    assert_int_equal(f->res[2].rc, CURLE_OPERATION_TIMEDOUT);
    assert_json_reply(&f->res[3], 200);
    assert_int_equal(f->handled, 4);
}

static void client_close_pending(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/hang", NULL, 0, 5000, &f->res[0]);
    wait_flag(&f->hang_answered, 5000);
}

/* The server is closed while a handler still owes an answer; the late answer frees it. */
static void test_close_with_pending(void **state)
{
    struct fx *f = *state;
    f->close_while_pending = true;
    f->hang_ms = 150;
    run(f, client_close_pending);
    assert_int_not_equal(f->res[0].rc, CURLE_OK);
    assert_true(f->res[0].ms < 4000);
    assert_int_equal(atomic_load(&f->hang_answered), 1);
}

static void client_stream(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/stream?end=1", NULL, 0, 5000, &f->res[0]);
    req(f, NULL, TCP, "Bearer " TOKEN, "GET", "/stream?end=1", NULL, 0, 5000, &f->res[1]);
}

/* A streamed answer: what is written arrives as it is written; the end ends the answer and
 * runs the closed callback once. */
static void test_stream(void **state)
{
    struct fx *f = *state;
    run(f, client_stream);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->res[i].rc, CURLE_OK);
        assert_int_equal(f->res[i].status, 200);
        assert_string_equal(f->res[i].ctype, "text/event-stream");
        assert_string_equal(f->res[i].body, "a\nb\n");
        assert_true(f->res[i].ms >= 90); /* "b" came on the first tick, the end on the second */
    }
    assert_int_equal(atomic_load(&f->stream_closed), 2);
    assert_null(f->stream);
}

static void client_stream_leaves(struct fx *f)
{
    /* The client gives up while the stream goes on; the next write finds it gone. */
    req(f, NULL, UNIX, NULL, "GET", "/stream", NULL, 0, 300, &f->res[0]);
    wait_flag(&f->stream_closed, 5000);
    req(f, NULL, UNIX, NULL, "GET", "/hello", NULL, 0, 0, &f->res[1]);
}

static void test_stream_client_leaves(void **state)
{
    struct fx *f = *state;
    run(f, client_stream_leaves);
    assert_int_equal(f->res[0].rc, CURLE_OPERATION_TIMEDOUT);
    /* some ticks, however many fit in 300 ms */
    assert_int_equal(strncmp(f->res[0].body, "a\ntick\n", 7), 0);
    assert_int_equal(atomic_load(&f->stream_closed), 1);
    assert_json_reply(&f->res[1], 200);
}

static void client_stream_server_closes(struct fx *f)
{
    req(f, NULL, UNIX, NULL, "GET", "/stream", NULL, 0, 5000, &f->res[0]);
    wait_flag(&f->stream_closed, 5000);
}

/* The server closes while a stream is open (suspended between ticks): the client's answer
 * ends, the closed callback runs, nothing is left on the loop. */
static void test_stream_server_closes(void **state)
{
    struct fx *f = *state;
    f->close_while_pending = true;
    run(f, client_stream_server_closes);
    assert_true(f->res[0].ms < 4000);
    assert_int_equal(strncmp(f->res[0].body, "a\n", 2), 0);
    assert_int_equal(atomic_load(&f->stream_closed), 1);
}

static void on_closed_flag(void *data)
{
    *(int *)data = 1;
}

static void test_listen_errors(void **state)
{
    uv_loop_t loop;
    struct http_server *s;
    struct ferr e;
    char dir[] = "/tmp/ferry-test-http-XXXXXX", path[256], longp[300];
    struct stat st;
    int closed = 0;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(http_server_new(&loop, handler, NULL, &s, &e), 0);

    /* A regular file is never replaced. */
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(http_server_listen_unix(s, path, 0600, &e), -EEXIST);
    assert_non_null(strstr(e.msg, path));
    assert_int_equal(access(path, F_OK), 0);

    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(http_server_listen_unix(s, longp, 0600, &e), -ENAMETOOLONG);

    snprintf(path, sizeof(path), "%s/nodir/api.sock", dir);
    assert_int_equal(http_server_listen_unix(s, path, 0600, &e), -ENOENT);

    /* A stale socket file (nobody listening) is replaced; the mode is applied. */
    snprintf(path, sizeof(path), "%s/api.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(http_server_listen_unix(s, path, 0640, &e), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0640);

    /* A live one is not stolen. */
    assert_int_equal(http_server_listen_unix(s, path, 0600, &e), -EADDRINUSE);

    assert_int_equal(http_server_listen_tcp(s, "not-an-ip", 1, TOKEN, &e), FERR_INVALID);
    assert_int_equal(http_server_listen_tcp(s, "127.0.0.1", 1, NULL, &e), FERR_INVALID);
    assert_int_equal(http_server_listen_tcp(s, "127.0.0.1", 1, "", &e), FERR_INVALID);
    assert_int_equal(http_server_listen_tcp(s, "127.0.0.1", 70000, TOKEN, &e), FERR_INVALID);
    int port = free_port();
    assert_int_equal(http_server_listen_tcp(s, "127.0.0.1", port, TOKEN, &e), 0);
    assert_int_equal(http_server_listen_tcp(s, "127.0.0.1", port, TOKEN, &e), -EADDRINUSE);
    assert_int_equal(http_server_listen_tcp(s, "::1", free_port(), TOKEN, &e) == 0 ||
                         e.code == -EADDRNOTAVAIL || e.code == -EAFNOSUPPORT,
                     1);

    http_server_close(s, on_closed_flag, &closed);
    assert_int_equal(closed, 0); /* only from the loop */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(uv_loop_close(&loop), 0);
    rm_rf(dir);
}

/* A server with no listener closes too. */
static void test_close_empty(void **state)
{
    uv_loop_t loop;
    struct http_server *s;
    struct ferr e;
    int closed = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(http_server_new(&loop, handler, NULL, &s, &e), 0);
    http_server_close(s, on_closed_flag, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_disconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_server_closes, setup, teardown),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_close_empty),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
