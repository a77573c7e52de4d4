/* SPDX-License-Identifier: MIT */
/* The API's tasks and live events (GET /v1/tasks, /v1/tasks/{id}, POST .../cancel, GET
 * /v1/events?follow=1): handlers that routes.c's table names. */
#ifndef FERRY_API_TASKS_API_H
#define FERRY_API_TASKS_API_H

#include "api/api.h"
#include "api/http.h"
#include "api/router.h"
#include "common/reply.h"
#include "fleet/tasks.h"

void api_tasks_list(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);
void api_task_get(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);
void api_task_cancel(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);

/* GET /v1/events?follow=1: the event log as Server-Sent Events (text/event-stream), from
 * Last-Event-ID (or ?since=) on; at most API_STREAMS_MAX at once (503 after). */
#define API_STREAMS_MAX 64
#define API_KEEPALIVE_MS 15000
void api_events_follow(struct api_ctx *ctx, struct http_req *req);

/* Who sent req, as a task's user: "local", "client", "peer" (or "ferryd"). */
const char *api_principal_name(const struct http_req *req);

/* A task around an operation that answers an HTTP request: the operation is started with
 * api_task_reply_cb and the wrapper (api_task_reply_new) as data; api_task_reply_begin then
 * makes the task (after the operation started: a refusal makes none); when the operation
 * answers, the task ends with it (done on 2xx, cancelled when the error says "cancel",
 * failed otherwise), a 2xx body gets "task", and req is answered. api_task_reply_drop frees a
 * wrapper whose operation refused to start. The operation must answer later, never inside
 * its start call (tr would be gone before api_task_reply_begin). */
struct api_task_reply;
struct api_task_reply *api_task_reply_new(struct api_ctx *ctx, struct http_req *req);
void api_task_reply_begin(struct api_task_reply *tr, const char *kind, const char *target,
                          const struct task_ops *ops, void *data);
void api_task_reply_drop(struct api_task_reply *tr);
/* Begins the task of a storage move of vm (fleet/storagemove.h) started with tr. */
void api_storage_move_task(struct api_task_reply *tr, const char *vm);
void api_task_reply_cb(int status, json_t *body, const struct ferr *e, void *data);

#endif
