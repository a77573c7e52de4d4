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

/* Who sent a request: the unix socket (root on this host), a TCP client with the API token,
 * or whatever else an authorizer accepted (a cluster peer, a node that joins). */
enum {
    HTTP_PRINCIPAL_NONE = 0,
    HTTP_PRINCIPAL_LOCAL = 1,
    HTTP_PRINCIPAL_CLIENT = 2,
    HTTP_PRINCIPAL_PEER = 3,
    HTTP_PRINCIPAL_JOINER = 4,
};
int http_req_principal(const struct http_req *r);

/* Decides about a TCP request whose bearer token is not the listener's own: returns an
 * HTTP_PRINCIPAL_* (NONE refuses with 401). path is the raw request path. */
typedef int (*http_authorizer)(const char *path, const char *bearer, void *data);
void http_server_set_authorizer(struct http_server *s, http_authorizer fn, void *data);

/* Answers with JSON; body is stolen. Frees the request afterwards. */
void http_reply_json(struct http_req *r, unsigned status, json_t *body);
/* Answers with bytes (copied) and a content type. */
void http_reply_data(struct http_req *r, unsigned status, const char *content_type,
                     const char *data, size_t len);
/* Answers {"error": {"code": ferr_name(e->code), "message": e->msg}} with
 * ferr_http_status(e->code). */
void http_reply_error(struct http_req *r, const struct ferr *e);

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
