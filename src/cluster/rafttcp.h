/* SPDX-License-Identifier: MIT */
/* libraft's TCP transport with bounded connects: stock wire protocol, timed-out SYNs retried. */
#ifndef FERRY_CLUSTER_RAFTTCP_H
#define FERRY_CLUSTER_RAFTTCP_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "common/err.h"

/*
 * A struct raft_uv_transport (raft/uv.h) for raft_uv_init, in place of libraft 0.15's
 * raft_uv_tcp_init. Only raftnode.c and its tests use it.
 *
 * Why: the stock transport's outgoing connections have no deadline. A connect made while the
 * peer is unreachable sits in the kernel's SYN retransmission backoff (1, 3, 7, 15, 31 s),
 * and an established connection whose peer stopped acknowledging retransmits on TCP's RTO
 * backoff (0.2 s doubling up to 2 min) and is given up only after ~15 min (tcp_retries2).
 * libraft retries a peer only once its previous attempt has failed, so a node cut off the
 * network heard the leader again only when the backoff next let a packet through: measured in
 * the lab, 5.5-6.2 s after its link was back for a cut of 8 s, 6.6-7.6 s for 20 s, 0.4-1.9 s
 * with this transport whatever the length of the cut.
 *
 * What changes:
 *   - A connect that has not completed after connect_timeout_ms is abandoned and fails with
 *     RAFT_NOCONNECTION; libraft retries after its connect retry delay with a fresh SYN.
 *     A connect the kernel finished while the loop was stalled is not abandoned (the timer
 *     checks the socket before giving up).
 *   - Each outgoing socket gets TCP_USER_TIMEOUT = send_timeout_ms: data left unacknowledged
 *     that long ends the connection (ETIMEDOUT), libraft's next write on it fails, and libraft
 *     reconnects. An idle connection is never ended: TCP_USER_TIMEOUT only counts while data
 *     is in flight (or zero-window probes go unanswered).
 *   - Accepted sockets get keepalive probes after send_timeout_ms (in whole seconds) of
 *     silence and the same user timeout, so a connection whose sender gave up during an outage (it
 * cannot tell the receiver) ends instead of staying open, unread, for ever. What does not:
 * listening and accepting are the stock transport's own (this one wraps it and forwards listen and
 * close), and the bytes an outgoing connection sends are the stock handshake - version 1, the
 * sender's id, the length of its address padded to 8 bytes, the address with its NUL, all integers
 * 64-bit little endian - and then libraft's own messages. Nodes with either transport therefore
 * talk to each other, which a rolling upgrade needs. (The stock transport leaves the padding bytes
 * after the NUL uninitialized; this one zeroes them. Receivers read the address up to the NUL.)
 */

struct rafttcp_config {
    unsigned connect_timeout_ms; /* > 0: a connect not done by then fails */
    unsigned send_timeout_ms;    /* > 0: TCP_USER_TIMEOUT of every connection */
    const char *bind_address;    /* "A.B.C.D:PORT" to listen on (copied); NULL: the node's own */
};

/*
 * Sets up t (its data field is kept; every other field is overwritten) as a transport on
 * loop. Pass t to raft_uv_init; libraft then calls t->init, listen, connect and close. After
 * libraft has closed it (raft_close's callback) or if raft_uv_init was never reached, release
 * it with rafttcp_close. On failure nothing is left to release. Errors: FERR_INVALID (a zero
 * timeout, a bind address libraft refuses), -ENOMEM.
 */
int rafttcp_init(struct raft_uv_transport *t, uv_loop_t *loop, const struct rafttcp_config *cfg,
                 struct ferr *e);

/* Frees what rafttcp_init allocated. t must be closed (t->close's callback ran) or never
 * initialized by libraft (t->init not called). */
void rafttcp_close(struct raft_uv_transport *t);

#endif
