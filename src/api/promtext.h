/* SPDX-License-Identifier: MIT */
/* A writer of the Prometheus text exposition format 0.0.4 into a growing buffer: HELP and TYPE
 * lines, samples with escaped label values, histograms from per-bucket counts. Pure. */
#ifndef FERRY_API_PROMTEXT_H
#define FERRY_API_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

/*
 * The format (prometheus.io, "Exposition formats"): `# HELP name text` (text with \ and newline
 * escaped), `# TYPE name counter|gauge|histogram`, then samples `name{label="value",...} value`
 * (label values with \, " and newline escaped). A histogram's buckets are cumulative, end with
 * le="+Inf", which equals its _count, and come with _sum and _count.
 */

struct promtext {
    char *buf; /* NUL-terminated text, owned */
    size_t len, cap;
    int failed; /* out of memory once: the text is incomplete */
};

struct promtext_label {
    const char *name, *value;
};

/* An empty text; -ENOMEM. */
int promtext_init(struct promtext *o);
/* Frees the text (NULL-safe after a failed init). */
void promtext_free(struct promtext *o);
/* The text for the caller (owned by it, len bytes without the NUL), o emptied; -ENOMEM when a
 * write failed (o is freed then). */
int promtext_take(struct promtext *o, char **text, size_t *len);

/* # HELP and # TYPE of metric name. */
void promtext_help(struct promtext *o, const char *name, const char *type, const char *help);
/* One sample: name, n labels (NULL for none; a NULL value is written as ""), and the value
 * printf-style ("%llu", "%.2f"). */
void promtext_sample(struct promtext *o, const char *name, const struct promtext_label *labels,
                     size_t n, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A histogram named name with its HELP and TYPE: buckets[i] observations fell at or under
 * bounds[i] and above bounds[i - 1] (not cumulative; n of each, ascending); count in all,
 * sum their sum. */
void promtext_histogram(struct promtext *o, const char *name, const char *help,
                        const double *bounds, const uint64_t *buckets, size_t n, uint64_t count,
                        double sum);

#endif
