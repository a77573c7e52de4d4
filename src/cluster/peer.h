/* SPDX-License-Identifier: MIT */
/* Requests from one ferryd to another over the TCP API, run in the libuv thread pool. */
#ifndef FERRY_CLUSTER_PEER_H
#define FERRY_CLUSTER_PEER_H

#include <jansson.h>
#include <uv.h>

#include "common/err.h"

/*
 * Result of peer_request. status: the HTTP status (200, 401, ...), or negative when no answer
 * came (FERR_UNAVAIL with e->msg "peer http://10.0.0.2:7443/v1/PATH: Couldn't connect to
 * server", FERR_TIMEOUT; a reply over 8 MiB is FERR_UNAVAIL too).
 * reply: the parsed JSON body (borrowed for the call; NULL if none or not JSON). raw/raw_len:
 * the body as received (borrowed), so a forwarded request can be relayed unchanged.
 */
typedef void (*peer_cb)(int status, json_t *reply, const char *raw, size_t raw_len,
                        const struct ferr *e, void *data);

/*
 * Sends METHOD http://addr/path with "Authorization: Bearer token" and body (a JSON text,
 * copied; NULL for none). cb runs on the loop thread exactly once. timeout_ms bounds the
 * whole request, PEER_CONNECT_TIMEOUT_MS (or timeout_ms if shorter) its connect. Returns 0,
 * or -ENOMEM/FERR_INVALID without calling cb.
 */
#define PEER_CONNECT_TIMEOUT_MS 3000u
int peer_request(uv_loop_t *loop, const char *addr, const char *token, const char *method,
                 const char *path, const char *body, unsigned timeout_ms, peer_cb cb, void *data,
                 struct ferr *e);

#endif
