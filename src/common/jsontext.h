/* SPDX-License-Identifier: MIT */
/* Whether jansson would accept a JSON text, told without allocating anything. */
#ifndef FERRY_COMMON_JSONTEXT_H
#define FERRY_COMMON_JSONTEXT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether json_loadb(buf, len, 0, ...) of jansson 2.14 would accept buf: one object or array
 * at the top (white space around it), no \u0000 in strings, valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF; a \u escape of a high surrogate must be followed by one
 * of a low surrogate), integers that fit in 64 bits, reals that do not overflow, at most 2048
 * levels of nesting (JSON_PARSER_MAX_DEPTH). buf is borrowed and need not end in a NUL.
 *
 * It allocates nothing, so when jansson fails on a text this says why: the text, or a memory
 * shortage, which jansson's error codes cannot always tell apart. A caller that must not
 * confuse the two (cdb.c: a bad log entry counts as applied on every node, one that met a
 * memory shortage on one node must be retried) asks this. Where in doubt (a number of 512
 * characters or more) it says "valid", which turns a mistake into a retry, not a rejection.
 */
bool jsontext_valid(const void *buf, size_t len);

#endif
