/* SPDX-License-Identifier: MIT */
/* The web dashboard's side of ferryd: its static files, login sessions, and the gate that
 * lets a browser's requests on the TCP listener in (session cookie, CSRF token, Origin). */
#ifndef FERRY_API_WEB_H
#define FERRY_API_WEB_H

#include <stdbool.h>
#include <uv.h>

#include "api/http.h"
#include "common/err.h"

struct web;

struct web_config {
    uv_loop_t *loop;
    const char *token;     /* the API token a login must give (copied) */
    const char *dir;       /* the dashboard's files (copied); NULL or "": none */
    const char *node_name; /* this node, told to the browser (borrowed, outlives web) */
    unsigned session_ttl_s;
};

/* Makes the web side: 0 with *out, or -ENOMEM / FERR_INVALID (ttl out of range, dir too long)
 * with e set. A dir that does not exist is not an error: its pages answer 404 saying so. */
int web_new(const struct web_config *cfg, struct web **out, struct ferr *e);
/* Frees w; its requests waiting out a failed login's delay are answered first. */
void web_free(struct web *w);
/* The dashboard's directory ("" if none). */
const char *web_dir(const struct web *w);

/* The http_gate of the TCP listener (data is the struct web): static files and the login are
 * public; anything else needs a valid session cookie, and a state-changing request (not GET or
 * HEAD) also X-CSRF-Token and an Origin (when sent) of this server; a WebSocket the Origin too. */
int web_gate(const struct http_gate_req *q, struct ferr *e, void *data);
/* The one API path the gate lets in for anyone: the cluster's CA certificate (public). */
#define WEB_CA_PATH "/v1/cluster/ca"
/* Answers the dashboard's own requests: GET/HEAD / and /ui/..., and /v1/session. Returns false
 * (and leaves req alone) for any other path. */
bool web_handle(struct web *w, struct http_req *req);
/* Whether the session of the request's cookie is still valid (the console WebSocket asks this
 * while it runs). id is the cookie's value. */
bool web_session_valid(struct web *w, const char *id);
/* The session cookie's value of a request into id (SESSION_HEX bytes); false without one. */
bool web_req_session(const struct http_req *req, char *id, size_t size);

#endif
