/* SPDX-License-Identifier: MIT */
/* The CLI's HTTP client of ferryd: libcurl over the unix socket, or TCP with a bearer token. */
#ifndef FERRY_CLI_CLIENT_H
#define FERRY_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

#define CLIENT_DEFAULT_SOCKET "/run/ferry/ferryd.sock"

struct client;

struct client_opts {
    const char *socket_path; /* unix socket, used when url is NULL; NULL means the default */
    const char *url;         /* "https://host:port" of a remote ferryd, or NULL */
    const char *token;       /* bearer token sent with url */
    const char *ca_file;     /* PEM of the CA url's certificate must chain to; NULL: the
                              * system's CAs (a ferry cluster's CA is not among them) */
};

/* Makes a client; nothing is connected yet. Strings in o are copied. */
int client_new(const struct client_opts *o, struct client **out, struct ferr *e);
void client_free(struct client *c);

/* "/run/ferry/ferryd.sock" or "https://host:port": where this client talks to, for messages. */
const char *client_where(const struct client *c);

/*
 * Sends method to path (which may carry a query string) with body (borrowed; NULL sends no
 * body) and waits for the whole answer. Returns 0 with *status and *reply (a new reference
 * the caller owns, NULL if the answer had no JSON body). A ferryd that cannot be reached is
 * FERR_UNAVAIL: "cannot reach ferryd at PATH: REASON (is ferryd running?)".
 */
int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   long *status, json_t **reply, struct ferr *e);

/*
 * Like client_request, but an answer outside 2xx is an error whose message is the API's
 * message and whose code matches the API's error code (FERR_NOTFOUND for "not_found", ...).
 * On success *reply is the answer's JSON (caller owns; never NULL).
 */
int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                json_t **reply, struct ferr *e);
/* client_call that also says the HTTP status; 0 when no answer came (ferryd unreachable, or
 * the connection broke before the answer). */
int client_call_status(struct client *c, const char *method, const char *path, const json_t *body,
                       long *status, json_t **reply, struct ferr *e);

/*
 * GET path as a stream that stays open (text/event-stream): each piece of the body goes to
 * fn as it arrives, with the request header "Last-Event-ID: last_id" when last_id is not
 * NULL. stop (may be NULL) is asked about once a second and ends the stream when it says so.
 * Returns 0 when the server ended the stream or stop said so, the API's error for an answer
 * outside 2xx, or FERR_UNAVAIL when ferryd cannot be reached or the connection broke.
 */
typedef void (*client_stream_fn)(const char *p, size_t n, void *arg);
int client_stream(struct client *c, const char *path, const char *last_id, client_stream_fn fn,
                  bool (*stop)(void), void *arg, struct ferr *e);

/* Percent-encodes s for use as one path segment or query value. Caller frees; NULL on ENOMEM. */
char *client_escape(const char *s);

#endif
