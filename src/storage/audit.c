/* SPDX-License-Identifier: MIT */
/* The writers' audit of a volume (audit.h). */
#include "storage/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/jsonfield.h"
#include "common/util.h"

int audit_append(const char *dir, const json_t *rec, struct ferr *e)
{
    json_t *r = json_deep_copy(rec);
    if (!r || (!json_object_get(r, "time_ms") &&
               json_object_set_new(r, "time_ms", json_integer((json_int_t)now_wall_ms())) < 0)) {
        json_decref(r);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    char *line = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(r);
    size_t n = line ? strlen(line) : 0;
    char path[1200];
    if (!line || fmt_path(path, sizeof(path), "%s/%s", dir, AUDIT_FILE) < 0) {
        free(line);
        return ferr_set(e, line ? FERR_INVALID : -ENOMEM, "audit of %s: path too long", dir);
    }
    line[n] = '\n'; /* replaces the terminating NUL: written as one line */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    int rc = 0;
    if (fd < 0) {
        rc = ferr_set(e, -errno, "audit %s: %s", path, strerror(errno));
    } else {
        ssize_t w = write(fd, line, n + 1);
        if (w != (ssize_t)(n + 1))
            rc = ferr_set(e, w < 0 ? -errno : -EIO, "audit %s: %s", path,
                          w < 0 ? strerror(errno) : "short write");
        close(fd);
    }
    free(line);
    return rc;
}

json_t *audit_read(const char *dir, unsigned *bad, struct ferr *e)
{
    *bad = 0;
    char path[1200];
    if (fmt_path(path, sizeof(path), "%s/%s", dir, AUDIT_FILE) < 0) {
        ferr_set(e, FERR_INVALID, "audit of %s: path too long", dir);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return json_array();
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        ferr_set(e, -errno, "audit %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    off_t from = st.st_size > (off_t)AUDIT_READ_MAX ? st.st_size - (off_t)AUDIT_READ_MAX : 0;
    size_t len = (size_t)(st.st_size - from);
    char *buf = malloc(len + 1);
    ssize_t got = buf ? pread(fd, buf, len, from) : -1;
    close(fd);
    if (got < 0) {
        ferr_set(e, buf ? -errno : -ENOMEM, "audit %s: %s", path,
                 buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    json_t *out = json_array();
    char *p = buf;
    if (from > 0) { /* the first line is cut: skip it */
        char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + got;
    }
    while (out && *p) {
        char *nl = strchr(p, '\n');
        if (!nl)
            break; /* a line being written */
        *nl = '\0';
        json_t *rec = json_loads(p, 0, NULL);
        if (json_is_object(rec))
            json_array_append_new(out, rec);
        else if (*p) {
            json_decref(rec);
            (*bad)++;
        }
        p = nl + 1;
    }
    free(buf);
    return out;
}

/* {"vm", "epoch", "nodes"} of a record (its node) or of an open entry (its nodes). */
static json_t *who(const json_t *x)
{
    json_t *nodes = json_object_get(x, "nodes");
    return json_pack("{ss sI so}", "vm", jfield_text(x, "vm"), "epoch",
                     json_integer_value(json_object_get(x, "epoch")), "nodes",
                     nodes ? json_deep_copy(nodes) : json_pack("[s]", jfield_text(x, "node")));
}

static bool same_writer(const json_t *a, const json_t *b)
{
    return strcmp(jfield_text(a, "vm"), jfield_text(b, "vm")) == 0 &&
           json_integer_value(json_object_get(a, "epoch")) ==
               json_integer_value(json_object_get(b, "epoch"));
}

json_t *audit_check(const json_t *records)
{
    json_t *open = json_object(); /* file -> [open entries: {"vm", "epoch", "nodes", ...}] */
    json_t *violations = json_array();
    json_int_t coord_epoch = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        json_int_t ce = json_integer_value(json_object_get(rec, "coord_epoch"));
        if (ce > coord_epoch) { /* a newer coordinator: the older ones' exports ended */
            coord_epoch = ce;
            const char *f;
            json_t *list;
            json_object_foreach(open, f, list)
            {
                for (size_t k = json_array_size(list); k-- > 0;)
                    if (json_integer_value(
                            json_object_get(json_array_get(list, k), "coord_epoch")) < ce)
                        json_array_remove(list, k);
            }
        }
        const char *file = jfield_text(rec, "file");
        const char *op = jfield_text(rec, "op");
        if (strcmp(op, "daemon") == 0) { /* a new daemon: this coordinator's older ones ended */
            const char *f, *coord = jfield_text(rec, "coordinator");
            json_t *l;
            json_object_foreach(open, f, l)
            {
                for (size_t k = json_array_size(l); k-- > 0;)
                    if (strcmp(jfield_text(json_array_get(l, k), "coordinator"), coord) == 0)
                        json_array_remove(l, k);
            }
            continue;
        }
        json_t *list = json_object_get(open, file);
        if (!list) {
            list = json_array();
            json_object_set_new(open, file, list);
        }
        if (strcmp(op, "close") == 0) {
            for (size_t k = json_array_size(list); k-- > 0;)
                if (same_writer(json_array_get(list, k), rec))
                    json_array_remove(list, k);
            continue;
        }
        if (strcmp(op, "open") != 0)
            continue;
        json_t *mine = NULL, *x;
        size_t k;
        json_array_foreach(list, k, x)
        {
            if (same_writer(x, rec)) {
                mine = x;
                continue;
            }
            json_array_append_new(violations,
                                  json_pack("{ss sI so so}", "file", file, "time_ms",
                                            json_integer_value(json_object_get(rec, "time_ms")),
                                            "writer", who(rec), "other", who(x)));
        }
        const char *node = jfield_text(rec, "node");
        if (!mine) {
            mine = json_pack("{ss ss sI s[] ss sI sI}", "file", file, "vm", jfield_text(rec, "vm"),
                             "epoch", json_integer_value(json_object_get(rec, "epoch")), "nodes",
                             "coordinator", jfield_text(rec, "coordinator"), "coord_epoch", ce,
                             "since_ms", json_integer_value(json_object_get(rec, "time_ms")));
            json_array_append_new(list, mine);
        }
        json_t *nodes = json_object_get(mine, "nodes");
        bool known = false;
        json_array_foreach(nodes, k, x) known |= strcmp(json_string_value(x), node) == 0;
        if (!known)
            json_array_append_new(nodes, json_string(node));
    }
    json_t *still = json_array();
    const char *f;
    json_t *list;
    json_object_foreach(open, f, list)
    {
        json_array_extend(still, list);
    }
    json_decref(open);
    return json_pack("{sb so so}", "writers_ok", json_array_size(violations) == 0, "violations",
                     violations, "open", still);
}
