/* SPDX-License-Identifier: MIT */
/* Requests from one ferryd to another: blocking libcurl calls in the libuv thread pool. */
#include "cluster/peer.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_MAX_REPLY (8 * 1024 * 1024)

struct peer_req {
    uv_work_t work;
    char url[512];
    char auth[300];
    char method[8];
    char *body;
    char *ca; /* PEM of the CA the peer's certificate must chain to; NULL: not checked */
    unsigned timeout_ms;
    peer_cb cb;
    void *data;
    /* results */
    long status;
    char *reply;
    size_t reply_len;
    int failed;
    struct ferr e;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct peer_req *r = userdata;
    size_t n = size * nmemb;
    if (r->reply_len + n > PEER_MAX_REPLY)
        return 0;
    char *nb = realloc(r->reply, r->reply_len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->reply_len, ptr, n);
    r->reply = nb;
    r->reply_len += n;
    r->reply[r->reply_len] = '\0';
    return n;
}

/* The certificates c accepts: the cluster's CA alone (PEM), never the system's, and the peer's
 * address must be in its certificate (every node's names its API address, cluster/certs.h);
 * ca NULL (peer_fetch_ca only): none checked, the answer is checked against a pinned
 * fingerprint instead. */
static void trust(CURL *c, char *ca)
{
    if (ca) {
        struct curl_blob blob = {ca, strlen(ca), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    } else {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static void work(uv_work_t *w)
{
    struct peer_req *r = w->data;
    CURL *c = curl_easy_init();
    if (!c) {
        r->failed = ferr_set(&r->e, -ENOMEM, "peer: curl_easy_init failed");
        return;
    }
    struct curl_slist *h = NULL;
    if (r->auth[0])
        h = curl_slist_append(h, r->auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    trust(c, r->ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    /* A peer on the same network connects in milliseconds; one that does not within
     * PEER_CONNECT_TIMEOUT_MS is unreachable (cut off, powered off), and waiting for the whole
     * request timeout would hold one of the thread pool's few workers that long. */
    curl_easy_setopt(
        c, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(r->timeout_ms < PEER_CONNECT_TIMEOUT_MS ? r->timeout_ms : PEER_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        r->failed = ferr_set(&r->e, rc == CURLE_OPERATION_TIMEDOUT ? FERR_TIMEOUT : FERR_UNAVAIL,
                             "peer %s: %s", r->url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void after(uv_work_t *w, int status)
{
    struct peer_req *r = w->data;
    json_t *j = NULL;
    if (!r->failed && r->reply)
        j = json_loadb(r->reply, r->reply_len, 0, NULL);
    r->cb(r->failed ? r->failed : (int)r->status, j, r->reply ? r->reply : "", r->reply_len,
          r->failed ? &r->e : NULL, r->data);
    json_decref(j);
    free(r->reply);
    free(r->body);
    free(r->ca);
    free(r);
}

/* libcurl wants its global setup done once, before any thread uses it. */
static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int request(uv_loop_t *loop, const char *addr, const char *ca, const char *token,
                   const char *method, const char *path, const char *body, unsigned timeout_ms,
                   peer_cb cb, void *data, struct ferr *e)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, global_init);
    if (!addr || !addr[0] || !path || path[0] != '/' || strlen(method) >= 8)
        return ferr_set(e, FERR_INVALID, "peer: bad request arguments");
    struct peer_req *r = calloc(1, sizeof(*r));
    if (!r)
        return ferr_set(e, -ENOMEM, "peer: out of memory");
    if (snprintf(r->url, sizeof(r->url), "https://%s%s", addr, path) >= (int)sizeof(r->url) ||
        (token && snprintf(r->auth, sizeof(r->auth), "Authorization: Bearer %s", token) >=
                      (int)sizeof(r->auth))) {
        free(r);
        return ferr_set(e, FERR_INVALID, "peer: address, path or token too long");
    }
    strcpy(r->method, method);
    if ((body && !(r->body = strdup(body))) || (ca && !(r->ca = strdup(ca)))) {
        free(r->body);
        free(r);
        return ferr_set(e, -ENOMEM, "peer: out of memory");
    }
    r->timeout_ms = timeout_ms;
    r->cb = cb;
    r->data = data;
    r->work.data = r;
    uv_queue_work(loop, &r->work, work, after);
    return 0;
}

int peer_request(uv_loop_t *loop, const char *addr, const char *ca, const char *token,
                 const char *method, const char *path, const char *body, unsigned timeout_ms,
                 peer_cb cb, void *data, struct ferr *e)
{
    if (!ca || !ca[0])
        return ferr_set(e, FERR_INVALID, "peer %s: no CA to check its certificate with",
                        addr ? addr : "?");
    return request(loop, addr, ca, token, method, path, body, timeout_ms, cb, data, e);
}

int peer_fetch_ca(uv_loop_t *loop, const char *addr, unsigned timeout_ms, peer_cb cb, void *data,
                  struct ferr *e)
{
    return request(loop, addr, NULL, NULL, "GET", "/v1/cluster/ca", NULL, timeout_ms, cb, data, e);
}

/* ---- a connection switched to another protocol (a relayed WebSocket) ---- */

#define UPGRADE_HEAD_MAX 4096

struct peer_stream {
    CURL *curl;
    int fd;
};

struct upgrade_req {
    uv_work_t work;
    char url[512];
    char *ca; /* PEM of the cluster's CA */
    char request[1024];
    unsigned timeout_ms;
    peer_upgrade_cb cb;
    void *data;
    struct peer_stream *s;
    char extra[UPGRADE_HEAD_MAX];
    size_t extra_len;
    int failed;
    struct ferr e;
};

/* Waits (poll) until fd is ready for events or the deadline passes; false on timeout. */
static bool wait_fd(int fd, short events, uint64_t deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        uint64_t now = uv_hrtime() / 1000000;
        if (now >= deadline_ms)
            return false;
        int n = poll(&p, 1, (int)(deadline_ms - now));
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

static void upgrade_work(uv_work_t *w)
{
    struct upgrade_req *r = w->data;
    uint64_t deadline = uv_hrtime() / 1000000 + r->timeout_ms;
    CURL *c = curl_easy_init();
    if (!c) {
        r->failed = ferr_set(&r->e, -ENOMEM, "peer: curl_easy_init failed");
        return;
    }
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    trust(c, r->ca);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_socket_t fd = CURL_SOCKET_BAD;
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &fd);
    if (rc != CURLE_OK || fd == CURL_SOCKET_BAD) {
        r->failed = ferr_set(&r->e, FERR_UNAVAIL, "peer %s: %s", r->url,
                             rc != CURLE_OK ? curl_easy_strerror(rc) : "no socket");
        curl_easy_cleanup(c);
        return;
    }
    size_t sent = 0, len = strlen(r->request);
    while (sent < len) {
        size_t n = 0;
        rc = curl_easy_send(c, r->request + sent, len - sent, &n);
        if (rc == CURLE_AGAIN && wait_fd(fd, POLLOUT, deadline))
            continue;
        if (rc != CURLE_OK)
            goto err_after_connect;
        sent += n;
    }
    /* The answer's head, up to its blank line; what follows already belongs to the stream. */
    char head[UPGRADE_HEAD_MAX];
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        size_t n = 0;
        if (got == sizeof(head) - 1) {
            rc = CURLE_RECV_ERROR;
            goto err_after_connect;
        }
        rc = curl_easy_recv(c, head + got, sizeof(head) - 1 - got, &n);
        if (rc == CURLE_AGAIN && wait_fd(fd, POLLIN, deadline))
            continue;
        if (rc != CURLE_OK || n == 0) {
            if (rc == CURLE_OK)
                rc = CURLE_GOT_NOTHING;
            goto err_after_connect;
        }
        got += n;
        head[got] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        /* An error answer: its status line is what the user needs. */
        char *eol = strstr(head, "\r\n");
        r->failed = ferr_set(&r->e, FERR_UNAVAIL, "peer %s: answered %.*s", r->url,
                             (int)(eol - head), head);
        curl_easy_cleanup(c);
        return;
    }
    r->extra_len = got - (size_t)(end + 4 - head);
    memcpy(r->extra, end + 4, r->extra_len);
    r->s = malloc(sizeof(*r->s));
    if (!r->s) {
        r->failed = ferr_set(&r->e, -ENOMEM, "peer: out of memory");
        curl_easy_cleanup(c);
        return;
    }
    r->s->curl = c;
    r->s->fd = (int)fd;
    return;

err_after_connect:
    r->failed = ferr_set(&r->e, rc == CURLE_AGAIN ? FERR_TIMEOUT : FERR_UNAVAIL, "peer %s: %s",
                         r->url, rc == CURLE_AGAIN ? "no answer in time" : curl_easy_strerror(rc));
    curl_easy_cleanup(c);
}

static void upgrade_after(uv_work_t *w, int status)
{
    struct upgrade_req *r = w->data;
    if (r->failed)
        r->cb(NULL, NULL, 0, &r->e, r->data);
    else
        r->cb(r->s, r->extra, r->extra_len, NULL, r->data);
    free(r->ca);
    free(r);
}

int peer_upgrade(uv_loop_t *loop, const char *addr, const char *ca, const char *token,
                 const char *path, unsigned timeout_ms, peer_upgrade_cb cb, void *data,
                 struct ferr *e)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, global_init);
    if (!addr || !addr[0] || !path || path[0] != '/')
        return ferr_set(e, FERR_INVALID, "peer: bad request arguments");
    if (!ca || !ca[0])
        return ferr_set(e, FERR_INVALID, "peer %s: no CA to check its certificate with", addr);
    struct upgrade_req *r = calloc(1, sizeof(*r));
    if (!r)
        return ferr_set(e, -ENOMEM, "peer: out of memory");
    /* The key only has to be the base64 of 16 bytes (RFC 6455 4.1); the peer is trusted. */
    if (snprintf(r->url, sizeof(r->url), "https://%s", addr) >= (int)sizeof(r->url) ||
        snprintf(r->request, sizeof(r->request),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: ZmVycnktcmVsYXktLWtleQ==\r\n\r\n",
                 path, addr, token ? token : "") >= (int)sizeof(r->request)) {
        free(r);
        return ferr_set(e, FERR_INVALID, "peer: address, path or token too long");
    }
    if (!(r->ca = strdup(ca))) {
        free(r);
        return ferr_set(e, -ENOMEM, "peer: out of memory");
    }
    r->timeout_ms = timeout_ms;
    r->cb = cb;
    r->data = data;
    r->work.data = r;
    uv_queue_work(loop, &r->work, upgrade_work, upgrade_after);
    return 0;
}

int peer_stream_fd(const struct peer_stream *s)
{
    return s->fd;
}

long peer_stream_recv(struct peer_stream *s, void *buf, size_t len)
{
    size_t n = 0;
    CURLcode rc = curl_easy_recv(s->curl, buf, len, &n);
    if (rc == CURLE_AGAIN)
        return -EAGAIN;
    if (rc != CURLE_OK)
        return -EIO;
    return (long)n;
}

long peer_stream_send(struct peer_stream *s, const void *buf, size_t len)
{
    size_t n = 0;
    CURLcode rc = curl_easy_send(s->curl, buf, len, &n);
    if (rc == CURLE_AGAIN)
        return -EAGAIN;
    if (rc != CURLE_OK)
        return -EIO;
    return (long)n;
}

void peer_stream_close(struct peer_stream *s)
{
    if (!s)
        return;
    curl_easy_cleanup(s->curl);
    free(s);
}
