/* SPDX-License-Identifier: MIT */
/* Server-Sent Events framing (WHATWG HTML, "Server-sent events", the text/event-stream
 * format): pure, for GET /v1/events?follow=1. */
#ifndef FERRY_API_SSE_H
#define FERRY_API_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One event as "id: ID\nevent: TYPE\ndata: LINE\n...\n\n": every line of data (split at \n,
 * \r\n or \r, as the format's parser does) becomes a data line, so that a payload can never
 * end the event early or inject a field. type must be a token without line breaks (else it is
 * left out). Returns a new NUL-terminated buffer (caller frees) and its length in *len, or
 * NULL when out of memory.
 */
char *sse_event(uint64_t id, const char *type, const char *data, size_t *len);
/* A comment line ": TEXT\n\n" (line breaks in text become spaces); same ownership. */
char *sse_comment(const char *text, size_t *len);
/* A Last-Event-ID header's value (or ?since=) as an event id: 0 and *out for a decimal
 * integer of 1-19 digits (leading and trailing blanks allowed), -1 for anything else. */
int sse_last_id(const char *s, uint64_t *out);

/*
 * Reading a stream (the CLI's ferry events -f): bytes are fed as they arrive, in any pieces;
 * lines end with \n, \r\n or \r; "data" lines are joined with \n, "event" sets the type,
 * "id" the last event id (kept across events, as the format says), comments and unknown
 * fields are skipped, and a blank line hands a complete event (with data) to fn. Lines over
 * SSE_LINE_MAX bytes are refused (FERR_TOOBIG) rather than buffered without end.
 */
#define SSE_LINE_MAX (1024 * 1024)
typedef void (*sse_event_fn)(uint64_t id, const char *type, const char *data, void *arg);
struct sse_reader {
    char *line, *data; /* owned */
    size_t len, cap, dlen, dcap;
    char type[128];
    uint64_t id;
    bool cr; /* the last byte was \r: a \n right after it ends no second line */
};
/* r zeroed is ready; sse_reader_free frees what it holds. */
void sse_reader_free(struct sse_reader *r);
/* 0, or -ENOMEM / FERR_TOOBIG (then r must be freed). */
int sse_reader_feed(struct sse_reader *r, const char *buf, size_t n, sse_event_fn fn, void *arg);

#endif
