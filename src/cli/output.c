/* SPDX-License-Identifier: MIT */
/* What the CLI prints: aligned tables, "key: value" lines, sizes, durations, JSON. */
#include "cli/output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KV_WIDTH 14 /* "key:" column of output_kv */
#define COL_GAP 2

struct output_table {
    unsigned ncols;
    const char *const *headers;
    char **cells; /* nrows * ncols, owned */
    size_t nrows, cap;
};

int output_format_parse(const char *s, enum output_format *out)
{
    if (strcmp(s, "table") == 0)
        *out = OUTPUT_TABLE;
    else if (strcmp(s, "json") == 0)
        *out = OUTPUT_JSON;
    else
        return -1;
    return 0;
}

struct output_table *output_table_new(unsigned ncols, const char *const *headers)
{
    struct output_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->headers = headers;
    return t;
}

int output_table_add(struct output_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof(*nc));
        if (!nc)
            return -ENOMEM;
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (unsigned i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

static void print_row(FILE *f, const char *const *cells, const size_t *width, unsigned ncols)
{
    for (unsigned i = 0; i < ncols; i++) {
        if (i + 1 == ncols)
            fprintf(f, "%s\n", cells[i]); /* no trailing blanks */
        else
            fprintf(f, "%-*s", (int)(width[i] + COL_GAP), cells[i]);
    }
}

void output_table_print(const struct output_table *t, FILE *f)
{
    size_t *width = calloc(t->ncols ? t->ncols : 1, sizeof(*width));
    if (!width)
        return;
    for (unsigned i = 0; i < t->ncols; i++) {
        width[i] = strlen(t->headers[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t n = strlen(t->cells[r * t->ncols + i]);
            if (n > width[i])
                width[i] = n;
        }
    }
    print_row(f, t->headers, width, t->ncols);
    for (size_t r = 0; r < t->nrows; r++)
        print_row(f, (const char *const *)(t->cells + r * t->ncols), width, t->ncols);
    free(width);
}

void output_table_free(struct output_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void output_kv(FILE *f, const char *key, const char *fmt, ...)
{
    char k[64];
    if (!fmt) /* never; also keeps gcc -O2 with UBSan from seeing a NULL format path */
        return;
    snprintf(k, sizeof(k), "%s:", key);
    fprintf(f, "%-*s", KV_WIDTH, k);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

char *output_bytes(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    unsigned u = 0;
    double v = (double)bytes;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    double tenths = v * 10 - (double)(uint64_t)v * 10;
    if (u == 0)
        snprintf(buf, size, "%" PRIu64 " B", bytes);
    else if (v >= 100 || tenths < 0.5 || tenths >= 9.5)
        snprintf(buf, size, "%.0f %s", v, units[u]);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

char *output_duration(uint64_t s, char *buf, size_t size)
{
    if (s < 60)
        snprintf(buf, size, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(buf, size, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, size, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
    return buf;
}

char *output_time(uint64_t wall_ms, char *buf, size_t size)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (wall_ms == 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, size, "-");
    return buf;
}

void output_json(FILE *f, const json_t *j)
{
    json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
}
