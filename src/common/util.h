/* SPDX-License-Identifier: MIT */
/* Small helpers: clocks, files, names. */
#ifndef FERRY_COMMON_UTIL_H
#define FERRY_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "common/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic milliseconds, for deadlines and durations. */
uint64_t now_mono_ms(void);
/* Wall clock milliseconds since the epoch, for records shown to users. */
uint64_t now_wall_ms(void);

/* Creates dir and its parents with mode; existing dirs (and symlinks to dirs) are fine.
 * Returns 0, FERR_INVALID for "", -ENAMETOOLONG, -ENOTDIR when path or a parent exists and is
 * not a directory, or mkdir's -errno; e gets a message. */
int mkdir_p(const char *path, unsigned mode, struct ferr *e);
/* True if path is dir or inside it (by name: no symlinks resolved). */
bool path_under(const char *path, const char *dir);
/* Reads a whole file (at most max bytes) into a new NUL-terminated buffer that the
 * caller frees; len (may be NULL) gets the byte count. Returns 0, -EFBIG for a file over max
 * bytes, or open's or read's -errno; on failure *out is untouched. */
int file_read_all(const char *path, size_t max, char **out, size_t *len, struct ferr *e);
/* Writes data to path atomically (temp file, fsync, rename). */
int file_write_atomic(const char *path, const void *data, size_t len, struct ferr *e);
/* Removes a directory tree (rm -rf semantics, no symlink following). */
int rm_rf(const char *path);

/* Whether got equals want, compared in a time that depends only on the length of want, not
 * on where the bytes differ: for secrets and tokens. NULL for got is never equal. */
bool secret_equal(const char *got, const char *want);

/* The value of a hex digit (0-9, a-f, A-F), or -1. */
int hex_value(char c);

/* A name of a VM, node, bridge-independent object: 1..max chars of [a-z0-9-], starting with
 * a letter, not ending with '-'. Returns true if valid. */
bool name_valid(const char *s, size_t max);
/* Whether a comma-separated header value list (an HTTP "Connection: keep-alive, Upgrade")
 * has token, compared without case; list may be NULL. */
bool token_list_has(const char *list, const char *token);

/* The length of the longest prefix of s[0..len) that is well-formed UTF-8 (RFC 3629, what
 * JSON and jansson take: no overlong forms, no surrogates, nothing above U+10FFFF); len when
 * all of it is. */
size_t utf8_valid_len(const char *s, size_t len);

/* Safe bounded formatting that fails instead of truncating: returns 0 or -ENAMETOOLONG. */
int fmt_path(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
