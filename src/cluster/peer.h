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
 * and body (a JSON text, copied; NULL for none), trusting only a server certificate that ca
 * (PEM, copied; the cluster's CA) signed and that names addr's host. cb runs on the loop
 * thread exactly once. timeout_ms bounds the whole request, PEER_CONNECT_TIMEOUT_MS (or
 * timeout_ms if shorter) its connect. Returns 0, or -ENOMEM/FERR_INVALID (also: no ca)
 * without calling cb.
 */
#define PEER_CONNECT_TIMEOUT_MS 3000u
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

/*
 * A connection to another ferryd switched to a WebSocket (a console relayed from the VM's
 * node): GET path with "Upgrade: websocket" and the bearer token over TLS (ca as for
 * peer_request), in the thread pool, within
 * timeout_ms. cb runs on the loop exactly once: with a stream (the caller's, closed with
 * peer_stream_close) and the bytes that came after the 101 (extra, borrowed), or with NULL and
 * e (no connection, or an answer other than 101: its status line is in the message). The
 * stream is read and written with peer_stream_recv/send (which speak TLS when the connection
 * does) when poll says its fd is ready.
 */
struct peer_stream;
typedef void (*peer_upgrade_cb)(struct peer_stream *s, const char *extra, size_t extra_len,
                                const struct ferr *e, void *data);
int peer_upgrade(uv_loop_t *loop, const char *addr, const char *ca, const char *token,
                 const char *path, unsigned timeout_ms, peer_upgrade_cb cb, void *data,
                 struct ferr *e);
int peer_stream_fd(const struct peer_stream *s);
/* Bytes read or sent (0 from recv: the peer closed), -EAGAIN (not ready), -EIO. */
long peer_stream_recv(struct peer_stream *s, void *buf, size_t len);
long peer_stream_send(struct peer_stream *s, const void *buf, size_t len);
void peer_stream_close(struct peer_stream *s);

#endif
