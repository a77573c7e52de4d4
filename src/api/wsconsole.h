/* SPDX-License-Identifier: MIT */
/* A VM's serial console for the browser: a WebSocket that streams the console's output (from
 * the ring here, or relayed from the VM's node) and types what it receives into the guest
 * (QEMU's console input socket here, or POST .../console/input on the VM's node). */
#ifndef FERRY_API_WSCONSOLE_H
#define FERRY_API_WSCONSOLE_H

#include <stddef.h>

struct api_ctx;
struct http_req;

#define WSCONSOLE_MAX 16          /* console WebSockets open at once on one node */
#define WSCONSOLE_INPUT_MAX 16384 /* bytes typed in one message or one input request */

/* GET /v1/vms/{name}/console/ws: checks the opening handshake and that vm is known here or on
 * its node, then switches the connection to a WebSocket (101) and relays until either side
 * closes, the VM goes away, or the request's login session ends (the socket closes with 1008).
 * Refuses with 400 (not a WebSocket handshake), 403 (an Origin of another site), 404 (no such
 * VM) or 503 (WSCONSOLE_MAX open). */
void wsconsole_open(struct api_ctx *ctx, struct http_req *req, const char *vm);

/* Types data (len bytes, at most WSCONSOLE_INPUT_MAX) into the console of VM name, which runs
 * here: connects to its QEMU's console socket, writes, and answers req 200 {"written": N} once
 * written, or an error (FERR_STATE: not running or no console input). */
void wsconsole_input_local(struct api_ctx *ctx, struct http_req *req, const char *vm,
                           const char *data, size_t len);

#endif
