/* SPDX-License-Identifier: MIT */
/* The v1 HTTP API of ferryd: routes, handlers and the Prometheus metrics page. */
#ifndef FERRY_API_API_H
#define FERRY_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/host.h"
#include "host/events.h"
#include "vm/vm.h"

struct http_req;
struct cluster;
struct fleet;
struct web;
struct alerts;
struct history;
struct tasks;
struct evstream;

/* What the handlers may use; owned by the daemon, outlives the HTTP server. */
struct timing_state;

struct api_ctx {
    struct vmset *vms;
    struct events *events;
    struct host_info host;
    const char *node_name;
    const char *accel;
    const char *accel_reason;
    bool accel_forced;
    const char *qemu_version;   /* "10.0.2 (Debian ...)"; NULL if unknown */
    const char *migrate_unsafe; /* why outgoing live migrations are refused; NULL: they are not */
    const char *state_dir;
    const char *api_socket;
    const char *qemu_img;
    const char *version;
    uint64_t start_mono_ms;
    uv_loop_t *loop;
    struct cluster *cluster;
    struct migrator *migrator; /* made by ferryd at start (it also recovers migrations) */
    struct fleet *fleet;       /* the cluster's VMs (src/fleet/) */
    struct volumes *volumes;   /* the cluster's shared volumes (src/fleet/volumes.c) */
    struct redirect *redirect; /* redirected I/O of dynamic VHDs on them (fleet/redirect.c) */
    const struct timing_state *timing; /* the timing profile this node follows (fleet/timing.h) */
    struct web *web; /* the dashboard's files and sessions (api/web.h); NULL without --listen */
    struct alerts *alerts;   /* since when each alert holds (api/alerts.h); made on first use */
    struct history *history; /* this node's VMs' resource histories (api/history.h) */
    struct tasks *tasks;               /* the cluster's tasks (fleet/tasks.h) */
    struct evstream *evstream; /* GET /v1/events?follow=1 streams (api/tasks_api.c), lazily */
};

/* The http_handler of ferryd: routes every request (data is a struct api_ctx). */
void api_handle(struct http_req *req, void *data);

/* The http_authorizer of the TCP listener (data is the struct cluster): the cluster secret
 * makes a peer, the join token a joiner on /v1/internal/join only; anything else is refused. */
int api_authorize(const char *path, const char *bearer, void *data);

/* Renders the Prometheus text exposition (format 0.0.4) into a new buffer the caller frees. */
int metrics_render(struct api_ctx *ctx, char **out, size_t *len);

#endif
