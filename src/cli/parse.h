/* SPDX-License-Identifier: MIT */
/* The CLI's argument parsers: numbers, sizes, absolute paths; they print nothing, need no ferryd.
 */
#ifndef FERRY_CLI_PARSE_H
#define FERRY_CLI_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Parses a decimal number in [min, max] into *out. Refuses NULL, "", a sign, a leading space,
 * trailing characters and overflow (strtoull still lets a leading tab or newline through).
 * Returns 0, or -1 with *out untouched. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses a size in MiB into *mib: digits with an optional unit, any case, "512", "512M",
 * "512MiB", "2G", "2GiB", "1T"; no sign or space. Returns 0, or -1 with *mib untouched. */
int cli_parse_size_mib(const char *s, uint64_t *mib);
/* Makes path absolute into out (size bytes): the realpath of its directory plus its last
 * component (which may not exist yet); when the directory does not exist, the current
 * directory, '/' and path (the daemon will say what is missing); when even the current
 * directory is unknown, path as it is. Absolute paths are copied as they are. Returns 0 or
 * -ENAMETOOLONG (out may then hold a truncated path). */
int cli_abspath(const char *path, char *out, size_t size);

#endif
