/* SPDX-License-Identifier: MIT */
/* Server-Sent Events framing (WHATWG HTML, "Server-sent events", the text/event-stream
 * format): pure, for GET /v1/events?follow=1. */
#ifndef FERRY_API_SSE_H
#define FERRY_API_SSE_H

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

#endif
