/* SPDX-License-Identifier: MIT */
/* Which file of the dashboard's directory a URL names, and its content type. Pure. */
#ifndef FERRY_API_WEBPATH_H
#define FERRY_API_WEBPATH_H

#include <stdbool.h>
#include <stddef.h>

#define WEBPATH_MAX 512 /* longest relative path served */

/* True if the request path is one of the dashboard's: "/" or "/ui/..." (no query string). */
bool webpath_is_static(const char *path);
/*
 * Maps a raw request path to a file relative to the web directory: "/" gives "index.html",
 * "/ui/a/b.js" gives "a/b.js" (percent-escapes decoded). Returns 0, or -1 for anything that
 * could leave the directory or is not a plain file name: a ".." or "." segment (also when
 * encoded), an empty segment, a NUL or control byte, a backslash, a bad escape, a hidden name
 * (".x"), a path over WEBPATH_MAX, a directory ("/ui/", "/ui/a/"). Symlinks are the server's
 * to refuse when it opens the file.
 */
int webpath_resolve(const char *path, char *rel, size_t size);
/* The content type for a file name by its extension, or NULL: not served. */
const char *webpath_content_type(const char *rel);

#endif
