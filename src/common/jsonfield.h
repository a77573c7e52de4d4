/* SPDX-License-Identifier: MIT */
/* Reading JSON from outside (API bodies, spec files, cluster commands and snapshots): the
 * field checks and the words every message about a bad field uses. */
#ifndef FERRY_COMMON_JSONFIELD_H
#define FERRY_COMMON_JSONFIELD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* "an object", "an array", "a string", "an integer", "a fractional number", "a boolean",
 * "null": what a message says v is. */
const char *jfield_type(const json_t *v);

/* s double-quoted into buf for a message: quotes and backslashes escaped, control characters
 * as \xNN, cut with "..." to fit (size >= 16), so one bad field cannot flood a message or a
 * terminal. Returns buf. */
const char *jfield_quote(const char *s, char *buf, size_t size);

/* obj's member key as a string: "" when it is missing or not a string (for records this
 * program wrote itself, whose fields are known to be there). */
const char *jfield_text(const json_t *obj, const char *key);

/* The first member of obj whose name is not in the NULL-terminated list accepted, or NULL. */
const char *jfield_unknown(const json_t *obj, const char *const *accepted);

/* v as an integer in min..max: 0, or FERR_INVALID with "FIELD: expected an integer, not X" or
 * "FIELD: N is out of range MIN..MAX" (numbers written as strings or with a fraction are
 * refused). */
int jfield_int(const json_t *v, const char *field, json_int_t min, json_int_t max, json_int_t *out,
               struct ferr *e);

/* v as a string without NUL characters inside (C code after us would silently cut it): 0 and
 * *out (borrowed from v), or FERR_INVALID naming field. */
int jfield_str(const json_t *v, const char *field, const char **out, struct ferr *e);

#endif
