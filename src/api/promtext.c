/* SPDX-License-Identifier: MIT */
/* The Prometheus text exposition format writer (promtext.h): pure, no I/O. */
#include "api/promtext.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROMTEXT_START 8192

int promtext_init(struct promtext *o)
{
    memset(o, 0, sizeof(*o));
    o->buf = malloc(PROMTEXT_START);
    if (!o->buf)
        return -ENOMEM;
    o->cap = PROMTEXT_START;
    o->buf[0] = '\0';
    return 0;
}

void promtext_free(struct promtext *o)
{
    free(o->buf);
    memset(o, 0, sizeof(*o));
}

int promtext_take(struct promtext *o, char **text, size_t *len)
{
    if (o->failed || !o->buf) {
        promtext_free(o);
        return -ENOMEM;
    }
    *text = o->buf;
    *len = o->len;
    memset(o, 0, sizeof(*o));
    return 0;
}

static void vput(struct promtext *o, const char *fmt, va_list ap)
{
    if (o->failed)
        return;
    for (;;) {
        va_list aq;
        va_copy(aq, ap);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, aq);
        va_end(aq);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 + (size_t)n;
        char *nb = realloc(o->buf, ncap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

static void put(struct promtext *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct promtext *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vput(o, fmt, ap);
    va_end(ap);
}

/* s with \ and newline escaped, and " too when quote (a label value). */
static void put_escaped(struct promtext *o, const char *s, int quote)
{
    size_t run = 0;
    for (const char *p = s;; p++) {
        const char *esc = *p == '\\'           ? "\\\\"
                          : *p == '\n'         ? "\\n"
                          : *p == '"' && quote ? "\\\""
                                               : NULL;
        if (!esc && *p) {
            run++;
            continue;
        }
        if (run)
            put(o, "%.*s", (int)run, p - run);
        run = 0;
        if (!*p)
            return;
        put(o, "%s", esc);
    }
}

void promtext_help(struct promtext *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s ", name);
    put_escaped(o, help, 0);
    put(o, "\n# TYPE %s %s\n", name, type);
}

void promtext_sample(struct promtext *o, const char *name, const struct promtext_label *labels,
                     size_t n, const char *fmt, ...)
{
    put(o, "%s", name);
    for (size_t i = 0; i < n; i++) {
        put(o, "%s%s=\"", i ? "," : "{", labels[i].name);
        put_escaped(o, labels[i].value ? labels[i].value : "", 1);
        put(o, "\"");
    }
    put(o, "%s ", n ? "}" : "");
    va_list ap;
    va_start(ap, fmt);
    vput(o, fmt, ap);
    va_end(ap);
    put(o, "\n");
}

void promtext_histogram(struct promtext *o, const char *name, const char *help,
                        const double *bounds, const uint64_t *buckets, size_t n, uint64_t count,
                        double sum)
{
    promtext_help(o, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += buckets[i];
        put(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
    put(o, "%s_sum %.3f\n%s_count %llu\n", name, sum, name, (unsigned long long)count);
}
