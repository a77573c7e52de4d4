/* SPDX-License-Identifier: MIT */
/* A VM's screen for the browser (noVNC): a WebSocket whose binary messages carry the RFB
 * stream of the VM's QEMU VNC server, a unix socket in its run directory. On another node than
 * the VM's, the WebSocket is relayed byte for byte to the VM's node. QEMU's VNC server never
 * listens on a TCP port. */
#ifndef FERRY_API_WSVNC_H
#define FERRY_API_WSVNC_H

struct api_ctx;
struct http_req;

#define WSVNC_MAX 16 /* screen WebSockets open at once on one node */

/* GET /v1/vms/{name}/vnc/ws: checks the opening handshake, that the VM has a display and runs
 * (here, or on its node: then the node is asked first, and its refusal is passed on), then
 * switches the connection to a WebSocket (101) and relays until either side closes, the VM's
 * QEMU ends (1001), or the request's login session ends (1008 here; a relayed one is cut).
 * Refuses with 400 (not a WebSocket handshake), 403 (an Origin of another site), 404 (no such
 * VM), 409 (no display, not running) or 503 (WSVNC_MAX open, the VM's node not answering). */
void wsvnc_open(struct api_ctx *ctx, struct http_req *req, const char *vm);

#endif
