/* SPDX-License-Identifier: MIT */
/* Small text helpers shared by the import parsers (vmx, vmdk, mf): pure. */
#ifndef FERRY_IMPORT_TEXT_H
#define FERRY_IMPORT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* FERR_INVALID with "NAME:LINE: " and the printf-style message in e; returns the code. */
int text_bad(struct ferr *e, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
bool text_utf8_valid(const char *s, size_t n);
/* Converts n bytes of ISO-8859-1 (or windows-1252 when cp1252) to UTF-8 into out, which holds
 * at least 3 * n + 1 bytes; NUL-terminates. */
void text_8bit_to_utf8(const char *s, size_t n, bool cp1252, char *out);
/* Parses a whole NUL-terminated string as an unsigned number in base 10 or 16 (no sign, no
 * spaces, no prefix); -1 on anything else or overflow. */
int text_parse_u64(const char *s, int base, uint64_t *out);
/* Whether a relative path stays inside its folder: not empty, not absolute, no ".."
 * component, no backslash, no control character. */
bool text_path_inside(const char *path);
/* Whether s is a MAC address as VMware writes one: six hex pairs between ':' or '-'. */
bool text_mac_valid(const char *s);

#endif
