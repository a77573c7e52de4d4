/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 server: libmicrohttpd in external-epoll mode, driven from the libuv loop. */
#include "api/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define LISTEN_BACKLOG 128
#define IDLE_TIMEOUT_S 120              /* an idle keep-alive connection is closed after this */
#define DRAIN_MAX (64ull * 1024 * 1024) /* most body bytes read from one request */

/*
 * One MHD daemon per listening socket, so that the TCP one can demand a token.
 * Its epoll fd is watched by poll; timer fires when MHD_get_timeout says so.
 */
struct listener {
    struct http_server *s;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    char *token;     /* owned; NULL on the unix listener (no token needed) */
    char *unix_path; /* owned; socket file removed on close; NULL for TCP */
    bool tls;        /* speaks TLS with the server's credentials (struct tls_cred) */
    struct listener *next;
};

struct http_server {
    uv_loop_t *loop;
    http_handler handler;
    void *data;
    struct listener *listeners;
    struct http_req *reqs; /* every request still tied to a connection */
    struct http_stream *streams; /* every streamed answer MHD still holds */
    uv_timer_t kick;       /* runs every daemon soon, after a suspended request was answered */
    bool closing;
    unsigned nclosing; /* uv handles whose close callback is still due */
    void (*close_cb)(void *data);
    void *close_data;
    http_authorizer authorize; /* NULL: the listener's token alone */
    void *authorize_data;
    http_gate gate; /* NULL: a TCP request without a bearer token gets 401 */
    void *gate_data;
    struct http_upgrade *upgrades; /* connections handed over to their owners */
    struct tls_cred *tls;          /* NULL: the TCP listener speaks plain HTTP */
};

/* ---- TLS: the certificate the TCP listener presents ----
 *
 * MHD asks for the certificate at each handshake (MHD_OPTION_HTTPS_CERT_CALLBACK), so a new
 * one (a node that joined a cluster adopts its CA) takes effect on the next connection
 * without restarting the listener. The callback has no closure of its own, so the
 * credentials in use live in tls_current: one TLS listener per process (ferryd has one). MHD
 * runs on the loop thread only, so swapping them needs no lock. */
struct tls_cred {
    gnutls_pcert_st pcert;
    gnutls_privkey_t key;
    struct tls_cred *older; /* replaced ones, kept until the server closes */
};

static struct tls_cred *tls_current;

static void tls_cred_free(struct tls_cred *t)
{
    while (t) {
        struct tls_cred *older = t->older;
        gnutls_pcert_deinit(&t->pcert);
        gnutls_privkey_deinit(t->key);
        free(t);
        t = older;
    }
}

static int tls_cred_new(const char *cert, const char *key, struct tls_cred **out, struct ferr *e)
{
    struct tls_cred *t = calloc(1, sizeof(*t));
    if (!t)
        return ferr_set(e, -ENOMEM, "http: tls: out of memory");
    gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
    int rc = gnutls_pcert_import_x509_raw(&t->pcert, &c, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        free(t);
        return ferr_set(e, FERR_INVALID, "http: tls: the certificate: %s", gnutls_strerror(rc));
    }
    if ((rc = gnutls_privkey_init(&t->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(t->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        if (t->key)
            gnutls_privkey_deinit(t->key);
        gnutls_pcert_deinit(&t->pcert);
        free(t);
        return ferr_set(e, FERR_INVALID, "http: tls: the key: %s", gnutls_strerror(rc));
    }
    *out = t;
    return 0;
}

static int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                        const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                        gnutls_pcert_st **pcert, unsigned int *pcert_length,
                        gnutls_privkey_t *privkey)
{
    (void)session, (void)req_ca_rdn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    if (!tls_current)
        return -1;
    *pcert = &tls_current->pcert;
    *pcert_length = 1;
    *privkey = tls_current->key;
    return 0;
}

int http_server_set_tls(struct http_server *s, const char *cert, const char *key, struct ferr *e)
{
    if (tls_current && tls_current != s->tls)
        return ferr_set(e, FERR_STATE, "http: tls: another server of this process has it");
    struct tls_cred *t = NULL;
    int rc = tls_cred_new(cert, key, &t, e);
    if (rc < 0)
        return rc;
    /* A session that took the old ones may still point at them (GnuTLS does not copy what the
     * callback returns): they stay until the server closes. A node changes them at init, join
     * and leave only: a few hundred bytes each time. */
    t->older = s->tls;
    s->tls = tls_current = t;
    return 0;
}

/* A connection switched to another protocol (http_reply_upgrade). */
struct http_upgrade {
    struct http_server *s; /* NULL once the server closed */
    struct MHD_UpgradeResponseHandle *urh;
    http_upgraded_cb cb;
    void (*on_close)(void *data);
    void *data;
    struct http_upgrade *prev, *next;
};

struct kv {
    char *key;
    char *value;
};

enum req_state {
    REQ_READING, /* headers and body arriving */
    REQ_HANDLED, /* handed to the handler, which owes an answer */
    REQ_REPLIED, /* answered; freed when MHD is done with the connection */
};

/*
 * A request lives from the first access-handler call until MHD reports the connection's
 * request completed, except when the handler still owes an answer then: the request is
 * "orphaned" (conn and s are cleared) and the answer just frees it.
 */
struct http_req {
    struct http_server *s;       /* NULL once orphaned */
    struct MHD_Connection *conn; /* NULL once orphaned */
    struct http_req *prev, *next;
    enum req_state state;
    bool suspended;
    bool too_large;
    bool unauthorized;
    struct ferr refusal; /* why, when the gate refused (code 0: the plain 401) */
    bool remote;   /* came on the TCP listener */
    bool tls;      /* over TLS */
    int principal; /* what the authorizer said (HTTP_PRINCIPAL_*) */
    bool queued;   /* MHD has the answer */
    char *method;
    char *path;
    char *body;
    size_t body_len, body_cap;
    uint64_t received; /* body bytes seen, kept or not */
    struct kv *query;
    size_t nquery, query_cap;
    struct kv *headers;
    size_t nheaders, headers_cap;
};

static const char empty_body[] = "";

/* ---- requests ---------------------------------------------------------------------------- */

static void req_link(struct http_server *s, struct http_req *r)
{
    r->prev = NULL;
    r->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
}

static void req_unlink(struct http_req *r)
{
    if (!r->s)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        r->s->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void kv_free(struct kv *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

/* Frees r; it must already be unlinked or orphaned. */
static void req_free(struct http_req *r)
{
    free(r->method);
    free(r->path);
    free(r->body);
    kv_free(r->query, r->nquery);
    kv_free(r->headers, r->nheaders);
    free(r);
}

/* Detaches r from its connection and server; whoever owes the answer now owns r. */
static void req_orphan(struct http_req *r)
{
    req_unlink(r);
    r->s = NULL;
    r->conn = NULL;
}

/* Decodes '+' and %XX in place (query strings); a bad escape is kept as it is. */
static void query_decode(char *s)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (*p == '+') {
            *w++ = ' ';
        } else if (*p == '%' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0 &&
                   (hex_value(p[1]) | hex_value(p[2])) != 0) {
            *w++ = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

static int kv_add(struct kv **v, size_t *n, size_t *cap, const char *key, const char *value)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct kv *nv = realloc(*v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    char *k = strdup(key ? key : "");
    char *val = strdup(value ? value : "");
    if (!k || !val) {
        free(k);
        free(val);
        return -ENOMEM;
    }
    (*v)[*n].key = k;
    (*v)[*n].value = val;
    (*n)++;
    return 0;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct http_req *r = cls;
    if (kv_add(&r->query, &r->nquery, &r->query_cap, key, value) < 0)
        return MHD_NO;
    query_decode(r->query[r->nquery - 1].key);
    query_decode(r->query[r->nquery - 1].value);
    return MHD_YES;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct http_req *r = cls;
    return kv_add(&r->headers, &r->nheaders, &r->headers_cap, key, value) < 0 ? MHD_NO : MHD_YES;
}

/* Copies what the handler may read, so that it does not depend on MHD's connection memory. */
static int req_capture(struct http_req *r, const char *url, const char *method)
{
    r->method = strdup(method);
    r->path = strdup(url);
    if (!r->method || !r->path)
        return -ENOMEM;
    size_t nq = (size_t)MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, NULL, NULL);
    if (MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_query, r) < 0 ||
        r->nquery != nq)
        return -ENOMEM;
    size_t nh = (size_t)MHD_get_connection_values(r->conn, MHD_HEADER_KIND, NULL, NULL);
    if (MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, r) < 0 ||
        r->nheaders != nh)
        return -ENOMEM;
    return 0;
}

static int body_append(struct http_req *r, const char *data, size_t len)
{
    if (r->body_len + len > HTTP_MAX_BODY) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return 0;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return -ENOMEM;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

/* Asks the gate about a TCP request without an Authorization header. */
static bool req_gate(const struct listener *l, struct MHD_Connection *conn, const char *url,
                     const char *method, struct http_req *r)
{
    struct http_gate_req q = {
        .method = method,
        .path = url,
        .cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie"),
        .csrf = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token"),
        .origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
        .host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"),
        .websocket = token_list_has(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade"),
                                    "websocket"),
        .tls = l->tls,
    };
    r->principal = l->s->gate(&q, &r->refusal, l->s->gate_data);
    return r->principal != HTTP_PRINCIPAL_NONE;
}

static bool req_authorized(const struct listener *l, struct MHD_Connection *conn, const char *url,
                           const char *method, struct http_req *r)
{
    int *principal = &r->principal;
    *principal = HTTP_PRINCIPAL_LOCAL;
    if (!l->token)
        return true;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!auth && l->s->gate)
        return req_gate(l, conn, url, method, r);
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    auth += 7;
    while (*auth == ' ')
        auth++;
    if (secret_equal(auth, l->token)) {
        *principal = HTTP_PRINCIPAL_CLIENT;
        return true;
    }
    if (l->s->authorize) {
        *principal = l->s->authorize(url, auth, l->s->authorize_data);
        return *principal != HTTP_PRINCIPAL_NONE;
    }
    return false;
}

void http_server_set_gate(struct http_server *s, http_gate fn, void *data)
{
    s->gate = fn;
    s->gate_data = data;
}

void http_server_set_authorizer(struct http_server *s, http_authorizer fn, void *data)
{
    s->authorize = fn;
    s->authorize_data = data;
}

int http_req_principal(const struct http_req *r)
{
    return r->principal;
}

/* ---- answers ----------------------------------------------------------------------------- */

static void on_kick(uv_timer_t *t);

/* Makes every daemon run on the next loop pass: MHD_resume_connection needs an MHD_run. */
static void server_kick(struct http_server *s)
{
    if (s && !s->closing)
        uv_timer_start(&s->kick, on_kick, 0, 0);
}

/* The headers every answer carries: the dashboard is served from the same listener as the API,
 * and no answer of ours may be framed, sniffed or leak its URL elsewhere. */
static void add_security_headers(struct MHD_Response *resp)
{
    static const char *const h[] = {
        "Content-Security-Policy", HTTP_CSP,      "X-Content-Type-Options", "nosniff",
        "Referrer-Policy",         "no-referrer", "X-Frame-Options",        "DENY",
    };
    for (size_t i = 0; i < ARRAY_SIZE(h); i += 2)
        MHD_add_response_header(resp, h[i], h[i + 1]);
}

/* Queues resp (a reference is taken over) on r's connection, or frees r if it has none. */
static void req_send(struct http_req *r, unsigned status, struct MHD_Response *resp)
{
    if (r->state == REQ_REPLIED) {
        log_error("http: %s %s answered twice (bug); ignoring the second answer",
                  r->method ? r->method : "?", r->path ? r->path : "?");
        if (resp)
            MHD_destroy_response(resp);
        return;
    }
    r->state = REQ_REPLIED;
    if (!r->conn) {
        /* The connection or the whole server went away while the answer was being made. */
        if (resp)
            MHD_destroy_response(resp);
        req_free(r);
        return;
    }
    if (resp)
        add_security_headers(resp);
    if (resp && MHD_queue_response(r->conn, status, resp) == MHD_YES)
        r->queued = true;
    else
        log_warn("http: %s %s: cannot queue the answer; closing the connection",
                 r->method ? r->method : "?", r->path ? r->path : "?");
    if (resp)
        MHD_destroy_response(resp);
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        server_kick(r->s);
    }
}

static struct MHD_Response *response_new(const char *content_type, const char *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    if (content_type &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

static struct MHD_Response *json_response_new(json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2); /* a trailing newline is kind to curl users */
    if (!buf) {
        free(text);
        return NULL;
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    struct MHD_Response *resp = response_new("application/json", buf, n + 1);
    free(buf);
    return resp;
}

/* A JSON error answer made by the server itself (401, 413, 500). */
static struct MHD_Response *error_response_new(const char *code, const char *msg)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    struct MHD_Response *resp = json_response_new(j);
    json_decref(j);
    return resp;
}

void http_reply_json(struct http_req *r, unsigned status, json_t *body)
{
    struct MHD_Response *resp = json_response_new(body);
    json_decref(body);
    if (!resp) {
        status = 500;
        resp = error_response_new("internal", "http: cannot encode the answer");
    }
    req_send(r, status, resp);
}

void http_reply_data(struct http_req *r, unsigned status, const char *content_type,
                     const char *data, size_t len)
{
    struct MHD_Response *resp = response_new(content_type, data, len);
    if (!resp) {
        status = 500;
        resp = error_response_new("internal", "http: out of memory");
    }
    req_send(r, status, resp);
}

static bool add_headers(struct MHD_Response *resp, const char *const *headers)
{
    for (size_t i = 0; headers && headers[i]; i += 2)
        if (!headers[i + 1] || MHD_add_response_header(resp, headers[i], headers[i + 1]) != MHD_YES)
            return false;
    return true;
}

void http_reply_full(struct http_req *r, unsigned status, const char *content_type,
                     const char *data, size_t len, const char *const *headers)
{
    struct MHD_Response *resp = response_new(content_type, data, len);
    if (resp && !add_headers(resp, headers)) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    if (!resp) {
        status = 500;
        resp = error_response_new("internal", "http: out of memory");
    }
    req_send(r, status, resp);
}

/* ---- protocol switch (WebSocket) --------------------------------------------------------- */

static void upgrade_unlink(struct http_upgrade *u)
{
    if (!u->s)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        u->s->upgrades = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
}

/* MHD has sent the 101 and hands the socket over (in MHD_run, on the loop thread). */
static void on_mhd_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls,
                           const char *extra_in, size_t extra_in_size, MHD_socket sock,
                           struct MHD_UpgradeResponseHandle *urh)
{
    struct http_upgrade *u = cls;
    u->urh = urh;
    if (!u->s) { /* the server is closing: nobody wants it any more */
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        free(u);
        return;
    }
    u->cb(u, sock, extra_in, extra_in_size, u->data);
}

int http_reply_upgrade(struct http_req *r, const char *const *headers, http_upgraded_cb cb,
                       void (*on_close)(void *data), void *data)
{
    struct http_upgrade *u = calloc(1, sizeof(*u));
    struct MHD_Response *resp = u ? MHD_create_response_for_upgrade(on_mhd_upgrade, u) : NULL;
    if (resp && (!add_headers(resp, headers) ||
                 MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "Upgrade") != MHD_YES)) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    if (!resp || !r->s) {
        free(u);
        if (resp)
            MHD_destroy_response(resp);
        req_send(r, 500, error_response_new("internal", "http: cannot switch protocols"));
        return -ENOMEM;
    }
    u->s = r->s;
    u->cb = cb;
    u->on_close = on_close;
    u->data = data;
    u->next = r->s->upgrades;
    if (u->next)
        u->next->prev = u;
    r->s->upgrades = u;
    req_send(r, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    if (!r->queued) { /* the callback will never run */
        upgrade_unlink(u);
        free(u);
        return -EIO;
    }
    return 0;
}

void http_upgrade_close(struct http_upgrade *u)
{
    struct http_server *s = u->s;
    upgrade_unlink(u);
    if (u->urh)
        MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u);
    server_kick(s); /* MHD cleans the connection up in its next run */
}

bool http_req_is_upgrade(const struct http_req *r)
{
    return token_list_has(http_req_header(r, "Upgrade"), "websocket");
}

void http_reply_error(struct http_req *r, const struct ferr *e)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", ferr_name(e->code), "message",
                          e->msg[0] ? e->msg : ferr_str(e->code));
    http_reply_json(r, (unsigned)ferr_http_status(e->code), j);
}

void http_reply_errorf(struct http_req *r, int code, const char *fmt, ...)
{
    struct ferr e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    http_reply_error(r, &e);
}

void http_reply_answer(int status, json_t *body, const struct ferr *e, void *req)
{
    if (e) {
        json_decref(body);
        http_reply_error(req, e);
        return;
    }
    http_reply_json(req, (unsigned)status, body ? body : json_object());
}

/* ---- streamed answers (http_reply_stream) ------------------------------------------------ */

struct http_stream {
    struct http_server *s;
    struct MHD_Connection *conn; /* NULL once MHD let the answer go */
    char *buf;
    size_t len, off, cap;
    bool suspended, ended;
    http_stream_closed closed;
    void *data;
    struct http_stream *prev, *next; /* in s->streams */
};

/* MHD asks for the next bytes; with nothing queued the connection sleeps until a write. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct http_stream *st = cls;
    (void)pos;
    if (st->off < st->len) {
        size_t n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(out, st->buf + st->off, n);
        st->off += n;
        if (st->off == st->len)
            st->off = st->len = 0;
        return (ssize_t)n;
    }
    if (st->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->conn && !st->suspended) {
        MHD_suspend_connection(st->conn);
        st->suspended = true;
    }
    return 0;
}

/* MHD is done with the answer: the connection closed or the stream ended. */
static void stream_free(void *cls)
{
    struct http_stream *st = cls;
    st->conn = NULL;
    if (st->s) {
        if (st->prev)
            st->prev->next = st->next;
        else
            st->s->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
    }
    if (st->closed)
        st->closed(st, st->data);
    free(st->buf);
    free(st);
}

static void stream_wake(struct http_stream *st)
{
    if (st->conn && st->suspended) {
        st->suspended = false;
        MHD_resume_connection(st->conn);
        server_kick(st->s);
    }
}

int http_reply_stream(struct http_req *r, const char *content_type, http_stream_closed closed,
                      void *data, struct http_stream **out)
{
    struct http_stream *st = calloc(1, sizeof(*st));
    struct MHD_Response *resp = st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                                       stream_read, st, stream_free)
                                   : NULL;
    if (!resp ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES) {
        if (resp)
            MHD_destroy_response(resp); /* frees st through stream_free (closed not set yet) */
        else
            free(st);
        req_send(r, 500, error_response_new("internal", "http: out of memory"));
        return -ENOMEM;
    }
    st->conn = r->conn;
    st->closed = closed;
    st->data = data;
    *out = st;
    if (r->s) {
        st->s = r->s;
        st->next = r->s->streams;
        if (st->next)
            st->next->prev = st;
        r->s->streams = st;
    }
    if (!r->conn) { /* the client is gone already */
        st->closed = NULL;
        req_send(r, 200, resp); /* frees r and, with resp, st */
        return -ECONNRESET;
    }
    req_send(r, 200, resp);
    return 0;
}

int http_stream_write(struct http_stream *st, const char *buf, size_t len)
{
    if (st->ended || !st->conn)
        return 0;
    if (st->len + len > HTTP_STREAM_MAX)
        return -ENOBUFS;
    if (st->len + len > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + len)
            cap *= 2;
        char *nb = realloc(st->buf, cap);
        if (!nb)
            return -ENOMEM;
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, buf, len);
    st->len += len;
    stream_wake(st);
    return 0;
}

void http_stream_end(struct http_stream *st)
{
    st->ended = true;
    stream_wake(st);
}

/* ---- MHD callbacks ----------------------------------------------------------------------- */

static struct http_req *req_new(struct listener *l, struct MHD_Connection *conn)
{
    struct http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->s = l->s;
    r->conn = conn;
    r->state = REQ_READING;
    r->remote = l->token != NULL;
    r->tls = l->tls;
    req_link(l->s, r);
    return r;
}

/*
 * MHD calls this once after the headers (answering then would make MHD close the
 * connection, so we only set up), then once per body chunk, then once with no data.
 */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct listener *l = cls;
    struct http_req *r = *con_cls;

    if (!r) {
        r = req_new(l, conn);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->unauthorized = !req_authorized(l, conn, url, method, r);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        /* A refused body is read and dropped so that the answer can keep the connection;
         * a client that sends endless data is cut off. */
        r->received += *upload_size;
        if (r->received > DRAIN_MAX)
            return MHD_NO;
        if (r->state == REQ_READING && !r->unauthorized && !r->too_large &&
            body_append(r, upload, *upload_size) < 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state != REQ_READING)
        return MHD_NO; /* resumed without an answer queued: drop the connection */

    if (r->unauthorized && r->refusal.code) {
        req_send(r, (unsigned)ferr_http_status(r->refusal.code),
                 error_response_new(ferr_name(r->refusal.code), r->refusal.msg));
        return r->queued ? MHD_YES : MHD_NO;
    }
    if (r->unauthorized) {
        struct MHD_Response *resp =
            error_response_new("unauthorized", "http: missing or wrong bearer token");
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        req_send(r, MHD_HTTP_UNAUTHORIZED, resp);
        return r->queued ? MHD_YES : MHD_NO;
    }
    if (r->too_large) {
        char msg[96];
        snprintf(msg, sizeof(msg), "http: request body is over %d bytes", HTTP_MAX_BODY);
        req_send(r, 413, error_response_new("limit", msg));
        return r->queued ? MHD_YES : MHD_NO;
    }
    if (req_capture(r, url, method) < 0) {
        req_send(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
                 error_response_new("internal", "http: out of memory"));
        return r->queued ? MHD_YES : MHD_NO;
    }
    r->state = REQ_HANDLED;
    l->s->handler(r, l->s->data);
    /* r may have been answered (and must not be freed: MHD still owns the connection). */
    if (r->state == REQ_HANDLED) {
        MHD_suspend_connection(conn);
        r->suspended = true;
        return MHD_YES;
    }
    return r->queued ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_req *r = *con_cls;
    *con_cls = NULL;
    if (!r || !r->conn)
        return; /* already orphaned: the handler that owes the answer owns it */
    if (r->state == REQ_HANDLED) {
        req_orphan(r);
        return;
    }
    req_unlink(r);
    req_free(r);
}

/* Keeps the path raw: the router decodes each segment itself so that %2F stays in its
 * segment. Query arguments are decoded in collect_query. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (LOG_LVL_DEBUG < log_threshold)
        return;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    log_debug("http: mhd: %s", buf);
}

/* ---- driving MHD from the loop ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void listener_run(struct listener *l)
{
    if (l->s->closing)
        return;
    MHD_run(l->mhd);
    if (l->s->closing) /* the handler closed the server */
        return;
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(l->mhd, &to) == MHD_YES)
        uv_timer_start(&l->timer, on_timer, (uint64_t)to, 0); /* 0: run again next tick */
    else
        uv_timer_stop(&l->timer);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    listener_run(p->data);
}

static void on_timer(uv_timer_t *t)
{
    listener_run(t->data);
}

static void on_kick(uv_timer_t *t)
{
    struct http_server *s = t->data;
    for (struct listener *l = s->listeners; l && !s->closing; l = l->next)
        listener_run(l);
}

/* ---- server ------------------------------------------------------------------------------ */

int http_server_new(uv_loop_t *loop, http_handler h, void *data, struct http_server **out,
                    struct ferr *e)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return ferr_set(e, -ENOMEM, "http: out of memory");
    s->loop = loop;
    s->handler = h;
    s->data = data;
    int rc = uv_timer_init(loop, &s->kick);
    if (rc < 0) {
        free(s);
        return ferr_set(e, rc, "http: timer: %s", uv_strerror(rc));
    }
    s->kick.data = s;
    *out = s;
    return 0;
}

/* Starts an MHD daemon on the listening socket fd (taken over, also on failure). */
static int listener_start(struct http_server *s, int fd, bool ipv6, const char *token,
                          const char *unix_path, const char *what, struct ferr *e)
{
    int rc;
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return ferr_set(e, -ENOMEM, "http: listen %s: out of memory", what);
    }
    l->s = s;
    if ((token && !(l->token = strdup(token))) ||
        (unix_path && !(l->unix_path = strdup(unix_path)))) {
        close(fd);
        rc = ferr_set(e, -ENOMEM, "http: listen %s: out of memory", what);
        goto err_after_alloc;
    }
    unsigned flags =
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    l->tls = token && s->tls;
    if (l->tls)
        flags |= MHD_USE_TLS;
    /* The certificate callback goes last: it is ignored without MHD_USE_TLS but its option must
     * then not be given at all. */
    l->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, l, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, l, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none,
        NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, l->tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, tls_retrieve,
        MHD_OPTION_END);
    if (!l->mhd) {
        close(fd);
        rc = ferr_set(e, FERR_INTERNAL, "http: listen %s: libmicrohttpd refused to start", what);
        goto err_after_alloc;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        rc = ferr_set(e, FERR_INTERNAL, "http: listen %s: no epoll fd from libmicrohttpd", what);
        goto err_after_mhd;
    }
    rc = uv_poll_init(s->loop, &l->poll, info->epoll_fd);
    if (rc < 0) {
        ferr_set(e, rc, "http: listen %s: poll: %s", what, uv_strerror(rc));
        goto err_after_mhd;
    }
    uv_timer_init(s->loop, &l->timer); /* cannot fail */
    l->poll.data = l;
    l->timer.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_poll);
    l->next = s->listeners;
    s->listeners = l;
    listener_run(l); /* arms the timer */
    return 0;

err_after_mhd:
    MHD_stop_daemon(l->mhd); /* closes fd */
err_after_alloc:
    free(l->token);
    free(l->unix_path);
    free(l);
    return rc;
}

int http_server_listen_unix(struct http_server *s, const char *path, unsigned mode, struct ferr *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return ferr_set(e, -ENAMETOOLONG, "http: listen %s: path is too long", path);
    strcpy(sa.sun_path, path);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return ferr_set(e, -EEXIST, "http: listen %s: exists and is not a socket", path);
        /* A socket file that answers belongs to a live server: do not steal it. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            close(probe);
            if (live)
                return ferr_set(e, -EADDRINUSE,
                                "http: listen %s: another server is listening there", path);
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            int err = errno;
            return ferr_set(e, -err, "http: listen %s: remove stale socket: %s", path,
                            strerror(err));
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int err = errno;
        return ferr_set(e, -err, "http: listen %s: socket: %s", sa.sun_path, strerror(err));
    }
    int rc;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        rc = ferr_set(e, -err, "http: listen %s: bind: %s", sa.sun_path, strerror(err));
        goto err_after_socket;
    }
    if (chmod(sa.sun_path, mode) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int err = errno;
        rc = ferr_set(e, -err, "http: listen %s: %s", sa.sun_path, strerror(err));
        goto err_after_bind;
    }
    rc = listener_start(s, fd, false, NULL, sa.sun_path, sa.sun_path, e);
    if (rc < 0)
        unlink(sa.sun_path);
    return rc;

err_after_bind:
    unlink(sa.sun_path);
err_after_socket:
    close(fd);
    return rc;
}

int http_server_listen_tcp(struct http_server *s, const char *addr, int port, const char *token,
                           struct ferr *e)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    memset(&u, 0, sizeof(u));
    socklen_t len;
    bool ipv6 = false;
    if (!token || !token[0])
        return ferr_set(e, FERR_INVALID, "http: listen %s:%d: a token is required", addr, port);
    if (port < 0 || port > 65535)
        return ferr_set(e, FERR_INVALID, "http: listen %s:%d: port out of range", addr, port);
    if (inet_pton(AF_INET, addr, &u.in.sin_addr) == 1) {
        u.in.sin_family = AF_INET;
        u.in.sin_port = htons((uint16_t)port);
        len = sizeof(u.in);
    } else if (inet_pton(AF_INET6, addr, &u.in6.sin6_addr) == 1) {
        u.in6.sin6_family = AF_INET6;
        u.in6.sin6_port = htons((uint16_t)port);
        len = sizeof(u.in6);
        ipv6 = true;
    } else {
        return ferr_set(e, FERR_INVALID, "http: listen %s:%d: not an IP address", addr, port);
    }
    int fd = socket(u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int err = errno;
        return ferr_set(e, -err, "http: listen %s:%d: socket: %s", addr, port, strerror(err));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, &u.sa, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int err = errno;
        int rc = ferr_set(e, -err, "http: listen %s:%d: %s", addr, port, strerror(err));
        close(fd);
        return rc;
    }
    char what[128];
    snprintf(what, sizeof(what), "%s:%d", addr, port);
    return listener_start(s, fd, ipv6, token, NULL, what, e);
}

static void server_free(struct http_server *s)
{
    /* Answers still owed by handlers: MHD must not stop with suspended connections. */
    for (struct http_req *r = s->reqs, *next; r; r = next) {
        next = r->next;
        if (r->state == REQ_HANDLED) {
            if (r->suspended)
                MHD_resume_connection(r->conn);
            r->suspended = false;
            req_orphan(r);
        }
    }
    for (struct http_stream *st = s->streams; st; st = st->next) {
        st->ended = true;
        if (st->suspended && st->conn)
            MHD_resume_connection(st->conn);
        st->suspended = false;
    }
    for (struct listener *l = s->listeners, *next; l; l = next) {
        next = l->next;
        MHD_stop_daemon(l->mhd); /* closes the listening socket and all connections */
        if (l->unix_path)
            unlink(l->unix_path);
        free(l->token);
        free(l->unix_path);
        free(l);
    }
    /* Requests MHD did not report completed. */
    for (struct http_req *r = s->reqs, *next; r; r = next) {
        next = r->next;
        r->s = NULL;
        req_free(r);
    }
    void (*cb)(void *) = s->close_cb;
    void *data = s->close_data;
    if (tls_current == s->tls)
        tls_current = NULL;
    tls_cred_free(s->tls);
    free(s);
    if (cb)
        cb(data);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    if (--s->nclosing == 0)
        server_free(s);
}

void http_server_close(struct http_server *s, void (*cb)(void *data), void *data)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_data = data;
    /* Upgraded connections first: their owners stop polling the sockets MHD will close. */
    while (s->upgrades) {
        struct http_upgrade *u = s->upgrades;
        upgrade_unlink(u);
        u->s = NULL;
        if (u->on_close)
            u->on_close(u->data);
        if (u->urh) {
            MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
            free(u);
        } /* else on_mhd_upgrade frees it, if MHD ever calls it */
    }
    /* MHD is stopped from the last close callback, outside any MHD_run that may be on the
     * stack now (a handler may close the server). Closing the poll handle removes the epoll
     * fd from libuv's set before MHD closes it. */
    for (struct listener *l = s->listeners; l; l = l->next) {
        l->poll.data = s;
        l->timer.data = s;
        s->nclosing += 2;
        uv_close((uv_handle_t *)&l->poll, on_handle_closed);
        uv_close((uv_handle_t *)&l->timer, on_handle_closed);
    }
    s->nclosing++;
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
}

/* ---- request accessors ------------------------------------------------------------------- */

const char *http_req_method(const struct http_req *r)
{
    return r->method ? r->method : "";
}

const char *http_req_path(const struct http_req *r)
{
    return r->path ? r->path : "";
}

const char *http_req_query(const struct http_req *r, const char *key)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (strcmp(r->query[i].key, key) == 0)
            return r->query[i].value;
    return NULL;
}

size_t http_req_nquery(const struct http_req *r)
{
    return r->nquery;
}

const char *http_req_query_key(const struct http_req *r, size_t i)
{
    return i < r->nquery ? r->query[i].key : NULL;
}

const char *http_req_header(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].key, name) == 0)
            return r->headers[i].value;
    return NULL;
}

const char *http_req_body(const struct http_req *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : empty_body;
}

int http_req_is_remote(const struct http_req *r)
{
    return r->remote;
}

bool http_req_tls(const struct http_req *r)
{
    return r->tls;
}
