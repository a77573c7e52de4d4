/* SPDX-License-Identifier: MIT */
/* The answer of an asynchronous operation (cluster, migration, drain): an HTTP-like status
 * and JSON body, or an error. */
#ifndef FERRY_COMMON_REPLY_H
#define FERRY_COMMON_REPLY_H

#include <jansson.h>

#include "common/err.h"

/* An HTTP status and a JSON body (stolen; may be NULL), or, when e is not NULL, an error to
 * answer with. */
typedef void (*reply_cb)(int status, json_t *body, const struct ferr *e, void *data);

/* Answers cb with an error of code and a printf-style message. */
void reply_err(reply_cb cb, void *data, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Whether an answer, as a reply_cb gets it, failed: 0 for a 2xx answer without e. Else out
 * gets e, or the body's {"error": {"code", "message"}} (the code by its name, else by the
 * HTTP status), and that code is returned. */
int reply_failed(int status, const json_t *body, const struct ferr *e, struct ferr *out);

#endif
