/* SPDX-License-Identifier: MIT */
/* Recent events of this host, kept in memory and appended to a JSON-lines file. */
#include "host/events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"

#define EVENTS_FILE_MAX (1024 * 1024)

struct events {
    char path[4096];
    unsigned keep;
    unsigned count; /* events in ring */
    unsigned head;  /* index of the oldest */
    uint64_t next_id;
    json_t **ring;
    bool torn; /* the file may end inside a line: start the next one on a new line */
    events_listener listener;
    void *listener_data;
};

static void ring_push(struct events *ev, json_t *o)
{
    if (ev->count < ev->keep) {
        ev->ring[(ev->head + ev->count) % ev->keep] = o;
        ev->count++;
    } else {
        json_decref(ev->ring[ev->head]);
        ev->ring[ev->head] = o;
        ev->head = (ev->head + 1) % ev->keep;
    }
}

int events_open(const char *path, unsigned keep, struct events **out, struct ferr *e)
{
    if (keep == 0) /* the ring's size is a divisor */
        return ferr_set(e, FERR_INVALID, "events: keep must be at least 1");
    struct events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        goto err_alloc;
    ev->ring = calloc(keep, sizeof(*ev->ring));
    if (!ev->ring)
        goto err_alloc;
    if (fmt_path(ev->path, sizeof(ev->path), "%s", path) < 0) {
        free(ev->ring);
        free(ev);
        return ferr_set(e, -ENAMETOOLONG, "events: path too long: %s", path);
    }
    ev->keep = keep;
    ev->next_id = 1;
    FILE *f = fopen(path, "r");
    if (f) {
        char line[8192];
        while (fgets(line, sizeof(line), f)) {
            size_t n = strlen(line);
            ev->torn = n > 0 && line[n - 1] != '\n'; /* what counts is the file's last line */
            json_t *o = json_loads(line, 0, NULL);
            json_t *id = o ? json_object_get(o, "id") : NULL;
            if (!json_is_integer(id)) {
                json_decref(o);
                continue; /* a torn last line after a crash is skipped */
            }
            if ((uint64_t)json_integer_value(id) >= ev->next_id)
                ev->next_id = (uint64_t)json_integer_value(id) + 1;
            ring_push(ev, o);
        }
        fclose(f);
    }
    *out = ev;
    return 0;
err_alloc:
    if (ev)
        free(ev->ring);
    free(ev);
    return ferr_set(e, -ENOMEM, "events: out of memory");
}

void events_close(struct events *ev)
{
    if (!ev)
        return;
    for (unsigned i = 0; i < ev->count; i++)
        json_decref(ev->ring[(ev->head + i) % ev->keep]);
    free(ev->ring);
    free(ev);
}

static void append_file(struct events *ev, const char *line)
{
    struct stat st;
    if (stat(ev->path, &st) == 0 && st.st_size > EVENTS_FILE_MAX) {
        char old[4200];
        snprintf(old, sizeof(old), "%s.1", ev->path);
        if (rename(ev->path, old) == 0)
            ev->torn = false; /* a torn last line left with the old file */
    }
    FILE *f = fopen(ev->path, "a");
    if (!f) {
        log_warn("events: cannot append to %s: %s", ev->path, strerror(errno));
        return;
    }
    /* After a crash the file may end inside a line; glued to it, this event would be skipped
     * on the next start and its id given out again. A failed write may leave a torn line too;
     * an empty line in its place is harmless (skipped). */
    bool failed = fprintf(f, "%s%s\n", ev->torn ? "\n" : "", line) < 0;
    failed |= fclose(f) != 0;
    if (failed)
        log_warn("events: write %s: %s", ev->path, strerror(errno));
    ev->torn = failed;
}

/* Replaces each byte that is not part of well-formed UTF-8 by '?': JSON cannot carry it. */
static void scrub_utf8(char *s)
{
    size_t len = strlen(s), i = 0;
    while ((i += utf8_valid_len(s + i, len - i)) < len)
        s[i++] = '?';
}

/* Appends o (taken over) to the file and the ring and tells the listener. */
static void push(struct events *ev, json_t *o)
{
    char *line = json_dumps(o, JSON_COMPACT);
    if (line) {
        append_file(ev, line);
        free(line);
    }
    ring_push(ev, o);
    if (ev->listener)
        ev->listener(o, ev->listener_data);
}

void events_add(struct events *ev, const char *vm, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages carry outside text (QEMU's stderr), and the cut above can split a character:
     * json_pack would refuse the message and the event would be lost. */
    scrub_utf8(msg);
    json_t *o =
        json_pack("{s:I, s:I, s:s, s:s, s:s}", "id", (json_int_t)ev->next_id++, "time_ms",
                  (json_int_t)now_wall_ms(), "vm", vm ? vm : "", "type", type, "message", msg);
    if (!o)
        return;
    log_info("event %s%s%s: %s", type, vm && *vm ? " " : "", vm ? vm : "", msg);
    push(ev, o);
}

void events_add_task(struct events *ev, const char *type, const json_t *task)
{
    const char *kind = json_string_value(json_object_get(task, "kind"));
    const char *target = json_string_value(json_object_get(task, "target"));
    const char *state = json_string_value(json_object_get(task, "state"));
    const char *phase = json_string_value(json_object_get(task, "phase"));
    const char *result = json_string_value(json_object_get(task, "result"));
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s %s %s: %s%s%s %lld%%%s%s",
             json_string_value(json_object_get(task, "id")) ?: "?", kind ?: "?", target ?: "?",
             state ?: "?", phase && *phase ? " " : "", phase ?: "",
             (long long)json_integer_value(json_object_get(task, "percent")),
             result && *result ? ": " : "", result ?: "");
    scrub_utf8(msg);
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:O}", "id", (json_int_t)ev->next_id++,
                          "time_ms", (json_int_t)now_wall_ms(), "vm",
                          kind && strcmp(kind, "drain") != 0 && target ? target : "", "type", type,
                          "message", msg, "task", task);
    if (!o)
        return;
    if (strcmp(type, "task.progress") != 0)
        log_info("event %s: %s", type, msg);
    push(ev, o);
}

void events_set_listener(struct events *ev, events_listener fn, void *data)
{
    ev->listener = fn;
    ev->listener_data = data;
}

uint64_t events_last_id(const struct events *ev)
{
    return ev->next_id - 1;
}

json_t *events_list(const struct events *ev, uint64_t since, unsigned limit)
{
    json_t *arr = json_array();
    for (unsigned i = 0; arr && i < ev->count && json_array_size(arr) < limit; i++) {
        json_t *o = ev->ring[(ev->head + i) % ev->keep];
        if ((uint64_t)json_integer_value(json_object_get(o, "id")) > since)
            json_array_append(arr, o);
    }
    return arr;
}
