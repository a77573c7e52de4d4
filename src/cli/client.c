/* SPDX-License-Identifier: MIT */
/* The CLI's HTTP client of ferryd: one libcurl handle, reused so requests share a connection. */
#include "cli/client.h"

#include "common/reply.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPLY_MAX (64u * 1024 * 1024) /* far above any answer ferryd gives */
#define CONNECT_TIMEOUT_S 10L

struct client {
    CURL *curl;
    char *socket_path; /* NULL when url is set */
    char *url;         /* base URL without a trailing '/' */
    char *auth;        /* "Authorization: Bearer TOKEN" or NULL */
    char *ca_file;     /* the CA to check url's certificate with, or NULL */
    char *where;       /* for messages */
    pid_t pid;         /* the process whose connections curl keeps (see request) */
};

struct buf {
    char *p;
    size_t len, cap;
    bool too_big;
};

static unsigned nclients; /* libcurl's global state lives while a client does */

int client_new(const struct client_opts *o, struct client **out, struct ferr *e)
{
    if (nclients == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ferr_set(e, FERR_INTERNAL, "client: libcurl does not initialize");
    nclients++;
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        if (--nclients == 0)
            curl_global_cleanup();
        return ferr_set(e, -ENOMEM, "client: out of memory");
    }
    if (o->url) {
        c->url = strdup(o->url);
        if (c->url) {
            size_t n = strlen(c->url);
            while (n > 0 && c->url[n - 1] == '/')
                c->url[--n] = '\0';
        }
        c->where = c->url ? strdup(c->url) : NULL;
        if (o->token) {
            size_t n = strlen(o->token) + 32;
            c->auth = malloc(n);
            if (c->auth)
                snprintf(c->auth, n, "Authorization: Bearer %s", o->token);
        }
        if (o->ca_file && !(c->ca_file = strdup(o->ca_file)))
            goto err_nomem;
        if (!c->url || !c->where || (o->token && !c->auth))
            goto err_nomem;
    } else {
        const char *p = o->socket_path ? o->socket_path : CLIENT_DEFAULT_SOCKET;
        c->socket_path = strdup(p);
        c->where = strdup(p);
        if (!c->socket_path || !c->where)
            goto err_nomem;
    }
    c->curl = curl_easy_init();
    c->pid = getpid();
    if (!c->curl)
        goto err_nomem;
    *out = c;
    return 0;

err_nomem:
    client_free(c);
    return ferr_set(e, -ENOMEM, "client: out of memory");
}

void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->socket_path);
    free(c->url);
    free(c->auth);
    free(c->ca_file);
    free(c->where);
    free(c);
    if (--nclients == 0)
        curl_global_cleanup();
}

const char *client_where(const struct client *c)
{
    return c->where;
}

static size_t on_data(char *p, size_t size, size_t n, void *data)
{
    struct buf *b = data;
    size_t len = size * n;
    if (b->len + len + 1 > REPLY_MAX) {
        b->too_big = true;
        return 0; /* makes curl fail the transfer */
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

/* Turns a failed transfer into the message users see. */
static int transport_error(struct client *c, CURLcode rc, const char *errbuf, struct ferr *e)
{
    long oserr = 0;
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_OPERATION_TIMEDOUT) {
        if (oserr > 0)
            why = strerror((int)oserr);
        const char *hint = oserr == EACCES ? "(run as root?)" : "(is ferryd running?)";
        return ferr_set(e, FERR_UNAVAIL, "cannot reach ferryd at %s: %s %s", c->where, why, hint);
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        return ferr_set(e, FERR_AUTH, "ferryd at %s: its certificate is not trusted: %s; %s",
                        c->where, why,
                        c->ca_file ? "is --ca the cluster's CA, and the URL's host an address "
                                     "of that node?"
                                   : "give the cluster's CA with --ca FILE or FERRY_CA (a "
                                     "member's STATE_DIR/tls/ca.crt)");
    if (rc == CURLE_SSL_CACERT_BADFILE)
        return ferr_set(e, FERR_INVALID, "--ca %s: not a readable PEM certificate (%s)",
                        c->ca_file ? c->ca_file : "?", why);
    if (rc == CURLE_SSL_CONNECT_ERROR)
        return ferr_set(e, FERR_UNAVAIL,
                        "ferryd at %s: no TLS connection: %s (is it a ferryd's TCP API?)", c->where,
                        why);
    return ferr_set(e, FERR_UNAVAIL, "talking to ferryd at %s: %s", c->where, why);
}

/*
 * The handle for one request: c's, reset (its connection cache kept), with what every
 * request sets (socket, URL, headers, timeouts, error buffer, where the body goes). After a
 * fork, parent and child must not share a kept connection: their requests and answers would
 * cross, so the new process starts its own handle (the inherited one's socket is left to the
 * process that made it). NULL when out of memory.
 */
static CURL *easy_for(struct client *c, const char *url, struct curl_slist *hdrs, char *errbuf,
                      curl_write_callback fn, void *data)
{
    if (c->pid != getpid()) {
        CURL *fresh = curl_easy_init();
        if (!fresh)
            return NULL;
        c->curl = fresh;
        c->pid = getpid();
    }
    CURL *h = c->curl;
    curl_easy_reset(h);
    if (c->socket_path)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (c->ca_file) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fn);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, data);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ferry");
    return h;
}

int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   long *status, json_t **reply, struct ferr *e)
{
    char *text = NULL, *url = NULL;
    struct curl_slist *hdrs = NULL;
    struct buf b = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = 0;

    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return ferr_set(e, -ENOMEM, "client: cannot encode the request");
    const char *base = c->url ? c->url : "http://localhost";
    size_t ulen = strlen(base) + strlen(path) + 1;
    url = malloc(ulen);
    if (!url) {
        rc = ferr_set(e, -ENOMEM, "client: out of memory");
        goto out;
    }
    snprintf(url, ulen, "%s%s", base, path);

    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (text)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (c->auth)
        hdrs = curl_slist_append(hdrs, c->auth);
    if (!hdrs) {
        rc = ferr_set(e, -ENOMEM, "client: out of memory");
        goto out;
    }

    CURL *h = easy_for(c, url, hdrs, errbuf, on_data, &b);
    if (!h) {
        rc = ferr_set(e, -ENOMEM, "client: out of memory");
        goto out;
    }
    if (text) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

    CURLcode cr = curl_easy_perform(h);
    if (cr != CURLE_OK) {
        if (b.too_big)
            rc = ferr_set(e, FERR_PROTO, "ferryd at %s: answer is over %u bytes", c->where,
                          REPLY_MAX);
        else
            rc = transport_error(c, cr, errbuf, e);
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    *reply = NULL;
    if (b.len > 0) {
        json_error_t je;
        *reply = json_loadb(b.p, b.len, JSON_ALLOW_NUL, &je);
        if (!*reply && *status >= 200 && *status < 300)
            rc = ferr_set(e, FERR_PROTO, "ferryd at %s: answer is not JSON: %s", c->where, je.text);
    }

out:
    curl_slist_free_all(hdrs);
    free(url);
    free(text);
    free(b.p);
    return rc;
}

int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                json_t **reply, struct ferr *e)
{
    long status;
    return client_call_status(c, method, path, body, &status, reply, e);
}

int client_call_status(struct client *c, const char *method, const char *path, const json_t *body,
                       long *status_out, json_t **reply, struct ferr *e)
{
    long status = 0;
    json_t *j = NULL;
    *status_out = 0;
    int rc = client_request(c, method, path, body, &status, &j, e);
    if (rc < 0)
        return rc;
    *status_out = status;
    if (status >= 200 && status < 300) {
        if (!j) {
            *reply = json_object(); /* an empty answer is fine; garbage is not */
            return *reply ? 0 : ferr_set(e, -ENOMEM, "client: out of memory");
        }
        *reply = j;
        return 0;
    }
    json_t *err = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    int code = ferr_from_name(json_string_value(json_object_get(err, "code")));
    if (!code)
        code = ferr_from_http_status((int)status);
    if (msg)
        ferr_set(e, code, "%s", msg);
    else
        ferr_set(e, code, "%s %s: HTTP %ld from ferryd at %s", method, path, status, c->where);
    json_decref(j);
    return e ? e->code : code;
}

char *client_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *w = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    *w = '\0';
    return out;
}

struct stream {
    struct client *c;
    client_stream_fn fn;
    void *arg;
    bool (*stop)(void);
    struct buf err; /* the body of an answer outside 2xx */
    bool stopped;
};

static size_t on_stream(char *p, size_t size, size_t n, void *data)
{
    struct stream *st = data;
    long status = 0;
    curl_easy_getinfo(st->c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return on_data(p, size, n, &st->err);
    st->fn(p, size * n, st->arg);
    return size * n;
}

static int on_stream_tick(void *data, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct stream *st = data;
    if (st->stop && st->stop()) {
        st->stopped = true;
        return 1; /* aborts the transfer */
    }
    return 0;
}

int client_stream(struct client *c, const char *path, const char *last_id, client_stream_fn fn,
                  bool (*stop)(void), void *arg, struct ferr *e)
{
    struct stream st = {.c = c, .fn = fn, .arg = arg, .stop = stop};
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "", idh[80], *url = NULL;
    int rc = 0;
    const char *base = c->url ? c->url : "http://localhost";
    size_t ulen = strlen(base) + strlen(path) + 1;
    if (!(url = malloc(ulen)))
        return ferr_set(e, -ENOMEM, "client: out of memory");
    snprintf(url, ulen, "%s%s", base, path);
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    if (hdrs && last_id) {
        snprintf(idh, sizeof(idh), "Last-Event-ID: %.40s", last_id);
        hdrs = curl_slist_append(hdrs, idh);
    }
    if (hdrs && c->auth)
        hdrs = curl_slist_append(hdrs, c->auth);
    if (!hdrs) {
        free(url);
        return ferr_set(e, -ENOMEM, "client: out of memory");
    }
    CURL *h = easy_for(c, url, hdrs, errbuf, on_stream, &st);
    if (!h) {
        free(url);
        curl_slist_free_all(hdrs);
        return ferr_set(e, -ENOMEM, "client: out of memory");
    }
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_stream_tick);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
    /* The server sends a keepalive every 15 s: a minute without a byte is a dead peer. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ferry");
    CURLcode cr = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (st.stopped) {
        rc = 0;
    } else if (status && (status < 200 || status >= 300)) {
        json_t *body = st.err.len ? json_loadb(st.err.p, st.err.len, 0, NULL) : NULL;
        rc = reply_failed((int)status, body, NULL, e);
        json_decref(body);
    } else if (cr != CURLE_OK) {
        rc = transport_error(c, cr, errbuf, e);
    }
    curl_slist_free_all(hdrs);
    free(url);
    free(st.err.p);
    return rc;
}
