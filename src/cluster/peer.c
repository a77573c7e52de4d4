/* SPDX-License-Identifier: MIT */
/* Requests from one ferryd to another: blocking libcurl calls in the libuv thread pool. */
#include "cluster/peer.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PEER_MAX_REPLY (8 * 1024 * 1024)

struct peer_req {
    uv_work_t work;
    char url[512];
    char auth[300];
    char method[8];
    char *body;
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

static void work(uv_work_t *w)
{
    struct peer_req *r = w->data;
    CURL *c = curl_easy_init();
    if (!c) {
        r->failed = ferr_set(&r->e, -ENOMEM, "peer: curl_easy_init failed");
        return;
    }
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, r->auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
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
    free(r);
}

/* libcurl wants its global setup done once, before any thread uses it. */
static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int peer_request(uv_loop_t *loop, const char *addr, const char *token, const char *method,
                 const char *path, const char *body, unsigned timeout_ms, peer_cb cb, void *data,
                 struct ferr *e)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, global_init);
    if (!addr || !addr[0] || !path || path[0] != '/' || strlen(method) >= 8)
        return ferr_set(e, FERR_INVALID, "peer: bad request arguments");
    struct peer_req *r = calloc(1, sizeof(*r));
    if (!r)
        return ferr_set(e, -ENOMEM, "peer: out of memory");
    if (snprintf(r->url, sizeof(r->url), "http://%s%s", addr, path) >= (int)sizeof(r->url) ||
        snprintf(r->auth, sizeof(r->auth), "Authorization: Bearer %s", token ? token : "") >=
            (int)sizeof(r->auth)) {
        free(r);
        return ferr_set(e, FERR_INVALID, "peer: address, path or token too long");
    }
    strcpy(r->method, method);
    if (body && !(r->body = strdup(body))) {
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
