/* SPDX-License-Identifier: MIT */
/* Requests from one ferryd to another over the TCP API, run in the libuv thread pool. */
#ifndef FERRY_CLUSTER_PEER_H
#define FERRY_CLUSTER_PEER_H

#include <jansson.h>
#include <uv.h>

#include "common/err.h"

/*
 * Result of peer_request. status: the HTTP status (200, 401, ...), or negative when no answer
 * came (FERR_UNAVAIL with e->msg "peer https://10.0.0.2:7443/v1/PATH: Couldn't connect to
 * server", or "...: SSL peer certificate or SSH remote key was not OK" for a certificate the
 * CA did not sign or that does not name the address; FERR_TIMEOUT; a reply over 8 MiB is
 * FERR_UNAVAIL too).
 * reply: the parsed JSON body (borrowed for the call; NULL if none or not JSON). raw/raw_len:
 * the body as received (borrowed), so a forwarded request can be relayed unchanged.
 */
typedef void (*peer_cb)(int status, json_t *reply, const char *raw, size_t raw_len,
                        const struct ferr *e, void *data);

/*
 * Sends METHOD https://addr/path with "Authorization: Bearer token" (none when token is NULL)
 * and body (a JSON text,
 * copied; NULL for none), trusting only a server certificate that ca (PEM, copied; the
 * cluster's CA) signed and that names addr's host. cb runs on the loop thread exactly once.
 * timeout_ms bounds the whole request. Returns 0, or -ENOMEM/FERR_INVALID (also: no ca)
 * without calling cb.
 */
int peer_request(uv_loop_t *loop, const char *addr, const char *ca, const char *token,
                 const char *method, const char *path, const char *body, unsigned timeout_ms,
                 peer_cb cb, void *data, struct ferr *e);

/*
 * GET https://addr/v1/cluster/ca WITHOUT checking the server's certificate and without a
 * token: the one request a node that joins makes before it knows the cluster's CA. The caller
 * must check the answer against the fingerprint pinned in its join token before trusting it
 * or sending anything secret (cluster_join). Otherwise as peer_request.
 */
int peer_fetch_ca(uv_loop_t *loop, const char *addr, unsigned timeout_ms, peer_cb cb, void *data,
                  struct ferr *e);

#endif
