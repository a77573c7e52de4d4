/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 server on the libuv loop: libmicrohttpd in external-epoll mode, driven by a uv_poll
 * on its epoll fd and a uv_timer from MHD_get_timeout. Unix socket and/or TCP with a token. */
#ifndef FERRY_API_HTTP_H
#define FERRY_API_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/err.h"

#define HTTP_MAX_BODY (1024 * 1024)

struct http_server;
struct http_req;

/*
 * Called once per request, with the whole body read. The handler must answer exactly once
 * with one of the http_reply_* functions, either before it returns or later from any loop
 * callback (the connection is suspended meanwhile). Requests with a body over HTTP_MAX_BODY
 * are answered 413 by the server without calling the handler; requests on the TCP listener
 * without "Authorization: Bearer <token>" get 401.
 */
typedef void (*http_handler)(struct http_req *req, void *data);

int http_server_new(uv_loop_t *loop, http_handler h, void *data, struct http_server **out,
                    struct ferr *e);
/* Listens on a unix socket at path (an existing stale socket file is replaced), chmod mode. */
int http_server_listen_unix(struct http_server *s, const char *path, unsigned mode, struct ferr *e);
/* Listens on TCP addr:port; every request must carry the bearer token (copied). */
int http_server_listen_tcp(struct http_server *s, const char *addr, int port, const char *token,
                           struct ferr *e);
/* The certificate and key (PEM, copied) the TCP listener presents: set before
 * http_server_listen_tcp, it speaks TLS (HTTPS); set again later, new connections get the new
 * ones. The unix socket stays plain. One server per process may have TLS. Returns 0, or
 * FERR_INVALID (a certificate or key that does not parse) with the old ones kept. */
int http_server_set_tls(struct http_server *s, const char *cert, const char *key, struct ferr *e);
/* Stops listening, answers nothing more, frees everything; cb (may be NULL) runs when done. */
void http_server_close(struct http_server *s, void (*cb)(void *data), void *data);

const char *http_req_method(const struct http_req *r); /* "GET", ... */
const char *http_req_path(const struct http_req *r);   /* "/v1/vms/a", no query string */
/* Query argument value or NULL. */
const char *http_req_query(const struct http_req *r, const char *key);
/* How many query arguments the request has, and the (decoded) name of the i-th. */
size_t http_req_nquery(const struct http_req *r);
const char *http_req_query_key(const struct http_req *r, size_t i);
/* Request header value or NULL (case-insensitive name). */
const char *http_req_header(const struct http_req *r, const char *name);
/* Body bytes (NUL-terminated for convenience) and length; "" when there is none. */
const char *http_req_body(const struct http_req *r, size_t *len);
/* True if the request came on the TCP listener (a peer or a remote CLI), false for unix. */
int http_req_is_remote(const struct http_req *r);
/* True if the request came over TLS (the TCP listener with a certificate). */
bool http_req_tls(const struct http_req *r);

/* Who sent a request: the unix socket (root on this host), a TCP client with the API token
 * (or a browser with a login session, src/api/web.h), or whatever else an authorizer accepted
 * (a cluster peer, a node that joins), or what the gate let through without one. */
enum {
    HTTP_PRINCIPAL_NONE = 0,
    HTTP_PRINCIPAL_LOCAL = 1,
    HTTP_PRINCIPAL_CLIENT = 2,
    HTTP_PRINCIPAL_PEER = 3,
    HTTP_PRINCIPAL_JOINER = 4,
    HTTP_PRINCIPAL_PUBLIC = 5, /* nobody yet: the gate let it through (login, static files) */
};
int http_req_principal(const struct http_req *r);

/* Decides about a TCP request whose bearer token is not the listener's own: returns an
 * HTTP_PRINCIPAL_* (NONE refuses with 401). path is the raw request path. */
typedef int (*http_authorizer)(const char *path, const char *bearer, void *data);
void http_server_set_authorizer(struct http_server *s, http_authorizer fn, void *data);

/* What the gate sees of a TCP request that came without an Authorization header. */
struct http_gate_req {
    const char *method, *path;
    const char *cookie, *csrf, *origin, *host; /* headers (X-CSRF-Token for csrf); NULL: absent */
    bool websocket;                            /* "Upgrade: websocket" */
    bool tls;                                  /* the listener speaks TLS */
};
/* Decides about such a request: returns an HTTP_PRINCIPAL_* or HTTP_PRINCIPAL_NONE with e set
 * (FERR_AUTH answers 401, FERR_FORBIDDEN 403, with e's message). Without a gate these requests
 * get 401. */
typedef int (*http_gate)(const struct http_gate_req *q, struct ferr *e, void *data);
void http_server_set_gate(struct http_server *s, http_gate fn, void *data);

/* Every answer carries these (the dashboard's Content-Security-Policy and friends). */
#define HTTP_CSP "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/* Answers with JSON; body is stolen. Frees the request afterwards. */
void http_reply_json(struct http_req *r, unsigned status, json_t *body);
/* Answers with bytes (copied) and a content type. */
void http_reply_data(struct http_req *r, unsigned status, const char *content_type,
                     const char *data, size_t len);
/* Answers with bytes (copied; content_type NULL: none) and more headers: headers is a
 * NULL-terminated list of name, value, name, value... (may be NULL). */
void http_reply_full(struct http_req *r, unsigned status, const char *content_type,
                     const char *data, size_t len, const char *const *headers);

/*
 * Switches the connection to another protocol (101 Switching Protocols with headers, as in
 * http_reply_full). Once the 101 is sent, cb gets the connection's socket fd (non-blocking,
 * still owned by the server), the bytes the client sent after the request (extra) and a handle.
 * The owner then reads and writes fd itself and ends with http_upgrade_close. When the server
 * closes first, on_close runs (from http_server_close): the owner must stop using fd and the
 * handle, which the server then closes itself.
 */
struct http_upgrade;
typedef void (*http_upgraded_cb)(struct http_upgrade *u, int fd, const char *extra,
                                 size_t extra_len, void *data);
/* Returns 0 (the 101 is queued: cb runs once it is sent, or on_close when the server closes
 * first), or a negative errno when the request was answered with an error instead (neither
 * callback runs). */
int http_reply_upgrade(struct http_req *r, const char *const *headers, http_upgraded_cb cb,
                       void (*on_close)(void *data), void *data);
/* Closes the connection of u (fd must no longer be polled) and frees u. */
void http_upgrade_close(struct http_upgrade *u);
/* True if the request asks for a protocol switch to WebSocket ("Upgrade: websocket"). */
bool http_req_is_upgrade(const struct http_req *r);

/* Answers {"error": {"code": ferr_name(e->code), "message": e->msg}} with
 * ferr_http_status(e->code). */
void http_reply_error(struct http_req *r, const struct ferr *e);
/* The same for a code and a printf-style message. */
void http_reply_errorf(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A reply_cb (common/reply.h) whose data is the request: answers it with the body (stolen; {}
 * when NULL) and status, or with e. For handlers that answer what a cluster call answered. */
void http_reply_answer(int status, json_t *body, const struct ferr *e, void *req);

/*
 * A streamed answer that stays open (text/event-stream): http_reply_stream answers r with 200,
 * content_type and no length (chunked), and gives a stream that sends what is written to it.
 * The connection is suspended while there is nothing to send and resumed by a write. closed
 * runs once when the connection is gone (the client left, http_stream_end's end was sent, or
 * the server closes), after which st is freed and must not be used. Returns 0, or -ENOMEM
 * (then r was answered 500 and closed does not run).
 */
struct http_stream;
typedef void (*http_stream_closed)(struct http_stream *st, void *data);
int http_reply_stream(struct http_req *r, const char *content_type, http_stream_closed closed,
                      void *data, struct http_stream **out);
/* Queues len bytes (copied). -ENOMEM, or -ENOBUFS when over HTTP_STREAM_MAX bytes wait for a
 * slow client (the caller then ends the stream). */
#define HTTP_STREAM_MAX (1024 * 1024)
int http_stream_write(struct http_stream *st, const char *buf, size_t len);
/* Ends the stream once what is queued was sent; closed follows. */
void http_stream_end(struct http_stream *st);

#endif
