/* SPDX-License-Identifier: MIT */
/* What the CLI prints: aligned tables, "key: value" lines, sizes, durations, JSON. */
#ifndef FERRY_CLI_OUTPUT_H
#define FERRY_CLI_OUTPUT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

enum output_format { OUTPUT_TABLE, OUTPUT_JSON };

/* Parses "table" or "json"; returns 0 or -1. */
int output_format_parse(const char *s, enum output_format *out);

struct output_table;

/* A table with ncols columns and these headers (borrowed, must outlive the table). NULL on
 * ENOMEM. */
struct output_table *output_table_new(unsigned ncols, const char *const *headers);
/* Appends a row of ncols cells (copied; a NULL cell prints as "-"). Returns 0 or -ENOMEM. */
int output_table_add(struct output_table *t, const char *const *cells);
/* Prints headers and rows with each column as wide as its widest cell, two spaces apart. */
void output_table_print(const struct output_table *t, FILE *f);
void output_table_free(struct output_table *t);

/* "key:" padded to a fixed width, then the printf-formatted value and a newline. */
void output_kv(FILE *f, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Human sizes in binary units: "512 B", "1.5 KiB", "256 MiB", "2 GiB". Returns buf. */
char *output_bytes(uint64_t bytes, char *buf, size_t size);
/* Durations: "42s", "5m03s", "2h05m", "3d04h". Returns buf. */
char *output_duration(uint64_t seconds, char *buf, size_t size);
/* Wall-clock milliseconds as local "YYYY-MM-DD HH:MM:SS"; 0 prints "-". Returns buf. */
char *output_time(uint64_t wall_ms, char *buf, size_t size);

/* Pretty-prints j (indent 2, keys in the server's order) and a newline. */
void output_json(FILE *f, const json_t *j);

#endif
