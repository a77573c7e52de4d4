/* SPDX-License-Identifier: MIT */
/* The one table that maps error codes to names, messages and HTTP statuses. */
#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
    const char *text;
    int http;
} table[] = {
    {FERR_INVALID, "invalid", "invalid input", 400},
    {FERR_NOTFOUND, "not_found", "not found", 404},
    {FERR_EXISTS, "exists", "already exists", 409},
    {FERR_STATE, "bad_state", "not allowed in the current state", 409},
    {FERR_PROTO, "protocol", "protocol error", 502},
    {FERR_QEMU, "qemu", "QEMU error", 500},
    {FERR_LIMIT, "limit", "limit exceeded", 422},
    {FERR_INTERNAL, "internal", "internal error", 500},
    {FERR_UNAVAIL, "unavailable", "service unavailable", 503},
    {FERR_TIMEOUT, "timeout", "timed out", 504},
    {FERR_AUTH, "unauthorized", "unauthorized", 401},
    {FERR_METHOD, "method_not_allowed", "method not allowed", 405},
    {FERR_TOOBIG, "too_large", "request body too large", 413},
    {FERR_FORBIDDEN, "forbidden", "forbidden", 403},
};

static int find(int code)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == code)
            return (int)i;
    return -1;
}

const char *ferr_name(int code)
{
    int i = find(code);
    if (i >= 0)
        return table[i].name;
    switch (-code) {
    case ENOENT:
        return "ENOENT";
    case EEXIST:
        return "EEXIST";
    case ENOMEM:
        return "ENOMEM";
    case EACCES:
        return "EACCES";
    case EPERM:
        return "EPERM";
    case EINVAL:
        return "EINVAL";
    case EIO:
        return "EIO";
    case ENOSPC:
        return "ENOSPC";
    case EBUSY:
        return "EBUSY";
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    default:
        return "error";
    }
}

int ferr_from_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].code;
    return 0;
}

int ferr_from_http_status(int status)
{
    switch (status) {
    case 400:
        return FERR_INVALID;
    case 401:
        return FERR_AUTH;
    case 403:
        return FERR_FORBIDDEN;
    case 404:
        return FERR_NOTFOUND;
    case 405:
        return FERR_METHOD;
    case 409:
        return FERR_STATE;
    case 413:
        return FERR_TOOBIG;
    case 422:
        return FERR_LIMIT;
    case 502:
        return FERR_PROTO;
    case 503:
        return FERR_UNAVAIL;
    case 504:
        return FERR_TIMEOUT;
    default:
        return FERR_INTERNAL;
    }
}

const char *ferr_str(int code)
{
    int i = find(code);
    if (i >= 0)
        return table[i].text;
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

int ferr_http_status(int code)
{
    int i = find(code);
    if (i >= 0)
        return table[i].http;
    switch (-code) {
    case ENOENT:
        return 404;
    case EEXIST:
        return 409;
    case EINVAL:
        return 400;
    case EACCES:
    case EPERM:
        return 403;
    case EBUSY:
        return 409;
    default:
        return 500;
    }
}

int ferr_set(struct ferr *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return code;
}

int ferr_prefix(struct ferr *e, const char *fmt, ...)
{
    if (!e)
        return 0;
    char pre[FERR_MSG_MAX], old[FERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    /* Truncating the tail of a long message is fine; the prefix must come first. */
    size_t n = strlen(pre);
    if (n > sizeof(e->msg) - 3)
        n = sizeof(e->msg) - 3;
    memcpy(e->msg, pre, n);
    e->msg[n] = ':';
    e->msg[n + 1] = ' ';
    size_t rest = sizeof(e->msg) - n - 2;
    size_t m = strnlen(old, rest - 1);
    memcpy(e->msg + n + 2, old, m);
    e->msg[n + 2 + m] = '\0';
    return e->code;
}

void ferr_clear(struct ferr *e)
{
    if (!e)
        return;
    e->code = 0;
    e->msg[0] = '\0';
}
