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
    if (r->ca) {
        /* The cluster's CA alone, never the system's; the peer's address must be in its
         * certificate (every node's names its API address, cluster/certs.h). */
        struct curl_blob blob = {r->ca, strlen(r->ca), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    } else {
        /* peer_fetch_ca: whatever comes back is checked against a pinned fingerprint. */
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
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
