/* SPDX-License-Identifier: MIT */
/* The CLI's argument parsers: numbers, sizes, paths, disks, NICs, addresses; they print nothing. */
#ifndef FERRY_CLI_PARSE_H
#define FERRY_CLI_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Parses a decimal number in [min, max] into *out. Refuses NULL, "", a sign, any leading
 * whitespace, trailing characters and overflow. Returns 0, or FERR_INVALID with *out
 * untouched. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses a size in MiB into *mib: digits with an optional unit, any case, "512", "512M",
 * "512MiB", "2G", "2GiB", "1T"; no sign or space. Returns 0, or FERR_INVALID with *mib
 * untouched. */
int cli_parse_size_mib(const char *s, uint64_t *mib);
/* Makes path absolute into out (size bytes): the realpath of its directory plus its last
 * component (which may not exist yet); when the directory does not exist, the current
 * directory, '/' and path (the daemon will say what is missing). Absolute paths are copied as
 * they are. Returns 0, or with a message in e (may be NULL; it shows at most 80 bytes of path):
 * FERR_INVALID for "" ("empty path"), -ENAMETOOLONG (out may then hold a truncated path), or
 * getcwd's -errno when the current directory is needed but cannot be told (removed, out of reach).
 */
int cli_abspath(const char *path, char *out, size_t size, struct ferr *e);

/*
 * Parses the value of --disk, "PATH[,size=SIZE][,ro|,readonly]" (SIZE as cli_parse_size_mib
 * takes it, at most INT64_MAX MiB), into a new object {"path", "size_mib", "readonly"} with only
 * the fields given. Returns 0 with *out (caller owns); FERR_INVALID with a message in why
 * (whylen bytes) when arg is bad (no PATH, a PATH that is not UTF-8 and so cannot travel in
 * JSON, a bad size, an unknown option); -ENOMEM (why untouched). *out is set only on success.
 */
int cli_parse_disk(const char *arg, json_t **out, char *why, size_t whylen);
/*
 * Parses the value of --nic, "BRIDGE[,mac=MAC]", into a new object {"bridge", "mac"} (MAC is
 * not checked here: ferryd does). Returns 0 with *out (caller owns); FERR_INVALID with a
 * message in why (whylen bytes) when arg is bad (no BRIDGE, anything but one non-empty mac=,
 * a BRIDGE or MAC that is not UTF-8); -ENOMEM (why untouched). *out is set only on success.
 */
int cli_parse_nic(const char *arg, json_t **out, char *why, size_t whylen);
/* True if s is an IPv4 address with a prefix length, "A.B.C.D/NN" with NN in 0..32. */
bool cli_ipv4_prefix_valid(const char *s);
/*
 * Checks that s is an API address "A.B.C.D:PORT" or "[V6]:PORT" (what the join API takes),
 * with PORT in 1..65535. Returns 0, or FERR_INVALID with a message in why (whylen bytes).
 */
int cli_check_address(const char *s, char *why, size_t whylen);

#endif
