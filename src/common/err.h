/* SPDX-License-Identifier: MIT */
/* Error codes and error messages that gain a prefix at each layer on their way up. */
#ifndef FERRY_COMMON_ERR_H
#define FERRY_COMMON_ERR_H

#include <stdarg.h>
#include <stddef.h>

/*
 * Functions that can fail return 0 or a negative code: either a negative errno
 * (-ENOENT, ...) or one of the project codes below, which live far above errno's range.
 */
enum {
    FERR_INVALID = -10001,   /* bad input: a field, argument or body failed validation */
    FERR_NOTFOUND = -10002,  /* no such object (VM, node, disk) */
    FERR_EXISTS = -10003,    /* the object already exists */
    FERR_STATE = -10004,     /* the object is in a state that forbids the operation */
    FERR_PROTO = -10005,     /* a peer (QEMU, another ferryd) broke its protocol */
    FERR_QEMU = -10006,      /* QEMU refused or failed */
    FERR_LIMIT = -10007,     /* a host or configured limit would be exceeded */
    FERR_INTERNAL = -10008,  /* a bug or an impossible condition */
    FERR_UNAVAIL = -10009,   /* a service (daemon, peer) is unreachable */
    FERR_TIMEOUT = -10010,   /* a deadline passed */
    FERR_AUTH = -10011,      /* missing or wrong credentials */
    FERR_METHOD = -10012,    /* the HTTP method is not allowed on that path */
    FERR_TOOBIG = -10013,    /* a request body over the limit */
    FERR_FORBIDDEN = -10014, /* authenticated, but this request is refused (CSRF, origin) */
};

#define FERR_MSG_MAX 512

/* A code with a readable message. Lives on the stack of the caller; never heap. */
struct ferr {
    int code;
    char msg[FERR_MSG_MAX];
};

/* Short stable name of a code, e.g. "invalid", "not_found", "ENOENT". Never NULL. */
const char *ferr_name(int code);
/* Human text of a code, e.g. "invalid input" or strerror's text. Never NULL. */
const char *ferr_str(int code);
/* HTTP status that fits a code (400, 404, 409, 500, 503, ...). */
int ferr_http_status(int code);
/* The other way, for answers from a ferryd: the code a name like "not_found" stands for (0 if
 * none), and the code that fits an HTTP status (FERR_INTERNAL if none fits better). */
int ferr_from_name(const char *name);
int ferr_from_http_status(int status);

/* Sets code and message (printf-style); returns code so callers can `return ferr_set(...)`.
 * A NULL e is allowed and ignored. */
int ferr_set(struct ferr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with "prefix: " (printf-style); returns e->code. Never
 * `return ferr_prefix(e, ...)` with a possibly NULL e: it returns 0 then. */
int ferr_prefix(struct ferr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears e to "no error". */
void ferr_clear(struct ferr *e);

#endif
