/* SPDX-License-Identifier: MIT */
/* Redirected I/O's last hop on a VM's host: a unix socket the VM's QEMU opens as its NBD server,
 * relayed to wherever the export is served now (the volume's coordinator, which moves). The
 * relay never reads NBD: it pipes bytes. When the coordinator changes, nbd_relay_reset drops
 * the connections and QEMU's NBD client re-makes them (reconnect-delay), replaying the requests
 * it had in flight; a new connection is held, not refused, while no coordinator serves the
 * export, so the guest's requests wait instead of failing. */
#ifndef FERRY_STORAGE_NBDRELAY_H
#define FERRY_STORAGE_NBDRELAY_H

#include <stdbool.h>
#include <uv.h>

#include "common/err.h"

struct nbd_relay;

/* Where is the export now? Answer with nbd_relay_resolved(token, ...), now or later, exactly
 * once. */
typedef void (*nbd_relay_resolve_fn)(void *data, void *token);

/* hostport "IP:PORT" of the NBD server serving the export, or NULL with why: not now (asked
 * again after a pause while the client waits). */
void nbd_relay_resolved(void *token, const char *hostport, const char *why);

/* Listens on sock_path (an existing file there is replaced). */
int nbd_relay_open(uv_loop_t *loop, const char *sock_path, nbd_relay_resolve_fn fn, void *data,
                   struct nbd_relay **out, struct ferr *e);
/* Drops every connection (the clients reconnect and are sent to the export's new place). */
void nbd_relay_reset(struct nbd_relay *r);
/* Stops listening, removes the socket file, drops the connections; frees r once its handles
 * closed. The resolve function is not called any more. */
void nbd_relay_close(struct nbd_relay *r);
/* Connections piped to a server now. */
unsigned nbd_relay_connected(const struct nbd_relay *r);
/* Why the last attempt to reach the export failed ("" once one succeeded). */
const char *nbd_relay_why(const struct nbd_relay *r);

#endif
