/* SPDX-License-Identifier: MIT */
/* The API's tasks and live events (tasks_api.h). */
#include "api/tasks_api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/sse.h"
#include "cluster/cluster.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/storagemove.h"

const char *api_principal_name(const struct http_req *req)
{
    switch (http_req_principal(req)) {
    case HTTP_PRINCIPAL_LOCAL:
        return "local";
    case HTTP_PRINCIPAL_CLIENT:
        return "client";
    case HTTP_PRINCIPAL_PEER:
        return "peer";
    default:
        return "ferryd";
    }
}

static bool no_tasks(struct api_ctx *ctx, struct http_req *req)
{
    if (ctx->tasks)
        return false;
    http_reply_errorf(req, FERR_UNAVAIL, "tasks: not ready yet (ferryd is starting); try again");
    return true;
}

void api_tasks_list(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (no_tasks(ctx, req))
        return;
    struct taskrec_filter f = {
        .state = http_req_query(req, "state"),
        .kind = http_req_query(req, "kind"),
        .target = http_req_query(req, "target"),
        .node = http_req_query(req, "node"),
        .limit = 100,
    };
    const char *lim = http_req_query(req, "limit");
    if (lim) {
        char *end;
        long v = strtol(lim, &end, 10);
        if (!*lim || *end || v < 1 || v > TASKREC_LIMIT_MAX) {
            http_reply_errorf(req, FERR_INVALID,
                              "limit: expected an integer in 1..%d, got \"%.40s\"",
                              TASKREC_LIMIT_MAX, lim);
            return;
        }
        f.limit = (unsigned)v;
    }
    struct ferr e = {0};
    if (taskrec_filter_check(&f, &e) < 0) {
        http_reply_error(req, &e);
        return;
    }
    json_t *list = tasks_list(ctx->tasks, &f);
    if (!list) {
        http_reply_errorf(req, -ENOMEM, "tasks: out of memory");
        return;
    }
    http_reply_json(req, 200, json_pack("{s:o}", "tasks", list));
}

void api_task_get(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (no_tasks(ctx, req))
        return;
    json_t *t = NULL;
    struct ferr e = {0};
    if (tasks_get(ctx->tasks, route_param(m, "id"), &t, &e) < 0)
        http_reply_error(req, &e);
    else
        http_reply_json(req, 200, t);
}

void api_task_cancel(struct api_ctx *ctx, struct http_req *req, const struct route_match *m)
{
    if (no_tasks(ctx, req))
        return;
    const char *id = route_param(m, "id");
    json_t *t = NULL;
    struct ferr e = {0};
    if (tasks_get(ctx->tasks, id, &t, &e) < 0) {
        http_reply_error(req, &e);
        return;
    }
    const char *state = jfield_text(t, "state"), *node = jfield_text(t, "node");
    if (taskrec_final(state)) {
        http_reply_errorf(req, FERR_STATE,
                          "task %.64s (%s %s) has ended (%s); there is nothing to cancel", id,
                          jfield_text(t, "kind"), jfield_text(t, "target"), state);
    } else if (strcmp(node, ctx->node_name) != 0) {
        /* It runs elsewhere: its node cancels it (once: a peer's request is not passed on). */
        if (http_req_principal(req) == HTTP_PRINCIPAL_PEER)
            http_reply_errorf(req, FERR_STATE, "task %.64s runs on %s, not on %s", id, node,
                              ctx->node_name);
        else if (cluster_forward(ctx->cluster, node, "POST", http_req_path(req), NULL,
                                 http_reply_answer, req, &e) < 0)
            http_reply_error(req, &e);
    } else if (tasks_cancel(ctx->tasks, id, &e) < 0) {
        http_reply_error(req, &e);
    } else {
        http_reply_json(req, 200,
                        json_pack("{s:s, s:s, s:s, s:b}", "task", id, "kind",
                                  jfield_text(t, "kind"), "target", jfield_text(t, "target"),
                                  "cancelling", 1));
    }
    json_decref(t);
}

/* ---- tasks around operations that answer a request ---- */

struct api_task_reply {
    struct api_ctx *ctx;
    struct http_req *req;
    char id[TASKREC_ID_MAX + 1];
    char target[64];
};

struct api_task_reply *api_task_reply_new(struct api_ctx *ctx, struct http_req *req)
{
    struct api_task_reply *tr = calloc(1, sizeof(*tr));
    if (tr) {
        tr->ctx = ctx;
        tr->req = req;
    }
    return tr;
}

void api_task_reply_begin(struct api_task_reply *tr, const char *kind, const char *target,
                          const struct task_ops *ops, void *data)
{
    struct ferr e = {0};
    if (tr->ctx->tasks && tasks_begin(tr->ctx->tasks, kind, target, api_principal_name(tr->req),
                                      ops, data, tr->id, &e) < 0) {
        log_warn("%s %s: no task: %s", kind, target, e.msg);
        tr->id[0] = '\0';
    }
}

void api_task_reply_drop(struct api_task_reply *tr)
{
    free(tr);
}

void api_task_reply_cb(int status, json_t *body, const struct ferr *e, void *data)
{
    struct api_task_reply *tr = data;
    if (tr->id[0] && tr->ctx->tasks) {
        struct ferr f = {0};
        bool failed = reply_failed(status, body, e, &f) != 0;
        const char *state = !failed ? "done" : strstr(f.msg, "cancel") ? "cancelled" : "failed";
        tasks_end(tr->ctx->tasks, tr->id, state, failed ? f.msg : "done", NULL);
        if (!failed && json_is_object(body))
            json_object_set_new(body, "task", json_string(tr->id));
    }
    struct http_req *req = tr->req;
    free(tr);
    http_reply_answer(status, body, e, req);
}

/* A storage move's task: its phase, and how much of the disk is copied. */
static json_t *smove_progress(void *data)
{
    struct api_task_reply *tr = data;
    json_t *p = storage_move_progress(tr->target);
    if (!p)
        return NULL;
    json_int_t done = json_integer_value(json_object_get(p, "done_bytes"));
    json_int_t total = json_integer_value(json_object_get(p, "total_bytes"));
    json_t *out = json_pack("{s:s, s:i, s:O}", "phase", jfield_text(p, "phase"), "percent",
                            total > 0 ? (int)(done * 99 / total) : 0, "detail", p);
    json_decref(p);
    return out;
}

static int smove_cancel(void *data, struct ferr *e)
{
    struct api_task_reply *tr = data;
    return storage_move_cancel(tr->target, e);
}

void api_storage_move_task(struct api_task_reply *tr, const char *vm)
{
    static const struct task_ops ops = {.progress = smove_progress, .cancel = smove_cancel};
    snprintf(tr->target, sizeof(tr->target), "%s", vm);
    api_task_reply_begin(tr, "storage-move", vm, &ops, tr);
}

/* ---- GET /v1/events?follow=1 ---- */

struct evstream;

struct evclient {
    struct evstream *hub;
    struct http_stream *st;
    struct evclient *next;
};

/* The live streams of one ferryd: the event log's listener and the keepalive timer. */
struct evstream {
    struct api_ctx *ctx;
    struct evclient *clients;
    unsigned n;
    uv_timer_t keepalive;
};

static void send_to(struct evclient *c, const char *buf, size_t len)
{
    if (http_stream_write(c->st, buf, len) < 0) {
        /* A client this far behind (or no memory): it reconnects with Last-Event-ID. */
        log_warn("events: a follower is %d bytes behind; ending its stream", HTTP_STREAM_MAX);
        http_stream_end(c->st);
    }
}

static void send_event(struct evclient *c, const json_t *ev)
{
    char *data = json_dumps(ev, JSON_COMPACT);
    size_t len;
    char *frame = data ? sse_event((uint64_t)json_integer_value(json_object_get(ev, "id")),
                                   jfield_text(ev, "type"), data, &len)
                       : NULL;
    if (frame)
        send_to(c, frame, len);
    free(frame);
    free(data);
}

static void on_event(const json_t *ev, void *data)
{
    struct evstream *hub = data;
    for (struct evclient *c = hub->clients; c; c = c->next)
        send_event(c, ev);
}

static void on_keepalive(uv_timer_t *t)
{
    struct evstream *hub = t->data;
    size_t len;
    char *frame = sse_comment("keepalive", &len);
    for (struct evclient *c = hub->clients; frame && c; c = c->next)
        send_to(c, frame, len);
    free(frame);
}

static void client_closed(struct http_stream *st, void *data)
{
    struct evclient *c = data;
    struct evstream *hub = c->hub;
    for (struct evclient **p = &hub->clients; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    hub->n--;
    free(c);
    if (hub->n == 0) {
        uv_timer_stop(&hub->keepalive);
        events_set_listener(hub->ctx->events, NULL, NULL);
    }
}

void api_events_follow(struct api_ctx *ctx, struct http_req *req)
{
    uint64_t since = 0;
    const char *last = http_req_header(req, "Last-Event-ID");
    const char *q = http_req_query(req, "since");
    if (last && sse_last_id(last, &since) < 0) {
        http_reply_errorf(req, FERR_INVALID, "Last-Event-ID: expected an event id, got \"%.40s\"",
                          last);
        return;
    }
    if (!last && q && sse_last_id(q, &since) < 0) {
        http_reply_errorf(req, FERR_INVALID, "since: expected an event id, got \"%.40s\"", q);
        return;
    }
    if (!ctx->evstream) {
        struct evstream *hub = calloc(1, sizeof(*hub));
        if (!hub) {
            http_reply_errorf(req, -ENOMEM, "events: out of memory");
            return;
        }
        hub->ctx = ctx;
        uv_timer_init(ctx->loop, &hub->keepalive);
        uv_unref((uv_handle_t *)&hub->keepalive); /* never what keeps ferryd's loop alive */
        hub->keepalive.data = hub;
        ctx->evstream = hub; /* lives as long as ferryd */
    }
    struct evstream *hub = ctx->evstream;
    if (hub->n >= API_STREAMS_MAX) {
        http_reply_errorf(
            req, FERR_UNAVAIL,
            "events: %d event streams are open on %s, the most it serves; close one or "
            "poll GET /v1/events?since=ID",
            API_STREAMS_MAX, ctx->node_name);
        return;
    }
    struct evclient *c = calloc(1, sizeof(*c));
    json_t *backlog = events_list(ctx->events, since, 1000);
    if (!c || !backlog) {
        free(c);
        json_decref(backlog);
        http_reply_errorf(req, -ENOMEM, "events: out of memory");
        return;
    }
    c->hub = hub;
    if (http_reply_stream(req, "text/event-stream", client_closed, c, &c->st) < 0) {
        free(c);
        json_decref(backlog);
        return;
    }
    c->next = hub->clients;
    hub->clients = c;
    if (hub->n++ == 0) {
        events_set_listener(ctx->events, on_event, hub);
        uv_timer_start(&hub->keepalive, on_keepalive, API_KEEPALIVE_MS, API_KEEPALIVE_MS);
    }
    /* What is kept after the client's last id comes first, then every new event. */
    size_t i;
    json_t *ev;
    json_array_foreach(backlog, i, ev) send_event(c, ev);
    json_decref(backlog);
    size_t len;
    char *hello = sse_comment("ferry events", &len); /* the headers go out at once */
    if (hello)
        send_to(c, hello, len);
    free(hello);
}
