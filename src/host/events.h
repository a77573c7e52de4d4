/* SPDX-License-Identifier: MIT */
/* Recent events of this host (VM lifecycle, failures), kept in memory and appended to a file. */
#ifndef FERRY_HOST_EVENTS_H
#define FERRY_HOST_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"

struct events;

/* Opens the event log at path (the first event creates the file); the last events of the file
 * are loaded so ids keep increasing across restarts, and lines that are not events (a line torn
 * by a crash) are skipped. keep = how many events stay in memory, at least 1. Returns 0 with
 * *out (events_close frees it), or FERR_INVALID (keep 0), -ENAMETOOLONG or -ENOMEM with *out
 * untouched. A file that cannot be read is not an error: the log starts empty, from id 1. */
int events_open(const char *path, unsigned keep, struct events **out, struct ferr *e);
void events_close(struct events *ev);

/* Records an event; vm may be NULL or "". type like "vm.started". The message is cut at 1023
 * bytes, and bytes that are not UTF-8 become '?'. Never fails the caller: a write error is
 * logged. */
void events_add(struct events *ev, const char *vm, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records a task event (type "task.created", "task.progress" or "task.ended") whose "task"
 * member is a copy of the task record (borrowed; cluster/taskrec.h) and whose message sums it
 * up; vm is the task's target unless it is a drain (a node). Never fails the caller. */
void events_add_task(struct events *ev, const char *type, const json_t *task);

/* Called after every event is recorded, with the event (borrowed, valid during the call): the
 * live stream of GET /v1/events?follow=1 (api/stream.c). One listener; NULL removes it. */
typedef void (*events_listener)(const json_t *event, void *data);
void events_set_listener(struct events *ev, events_listener fn, void *data);
/* The id of the newest event recorded, 0 before the first. */
uint64_t events_last_id(const struct events *ev);

/* Events with id > since, oldest first, at most limit. Returns a new JSON array (caller owns;
 * NULL if out of memory). */
json_t *events_list(const struct events *ev, uint64_t since, unsigned limit);

#endif
