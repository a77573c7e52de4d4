/* SPDX-License-Identifier: MIT */
/* A task's record: checks, filters, a migration's phase (taskrec.h). */
#include "cluster/taskrec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfield.h"
#include "common/util.h"

#define TIME_MAX ((json_int_t)((1ULL << 53) - 1))

static const char *const kinds[] = {"migrate", "drain", "storage-move", "failover", "import", NULL};
static const char *const states[] = {"running", "done", "failed", "cancelled", NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; s && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

bool taskrec_final(const char *state)
{
    return state && strcmp(state, "running") != 0 && in_list(state, states);
}

bool taskrec_kind_valid(const char *kind)
{
    return in_list(kind, kinds);
}

bool taskrec_state_valid(const char *state)
{
    return in_list(state, states);
}

/* s is min..max bytes of [a-z0-9_.-]. */
static bool is_token(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static int get_token(const json_t *rec, const char *key, size_t min, size_t max, const char **out,
                     struct ferr *e)
{
    json_t *v = json_object_get(rec, key);
    if (!v)
        return ferr_set(e, FERR_INVALID, "%s is missing", key);
    int rc = jfield_str(v, key, out, e);
    if (rc < 0)
        return rc;
    if (!is_token(*out, min, max))
        return ferr_set(e, FERR_INVALID, "%s: expected %zu-%zu of [a-z0-9_.-]", key, min, max);
    return 0;
}

static int detail_check(const json_t *d, struct ferr *e)
{
    if (!json_is_object(d))
        return ferr_set(e, FERR_INVALID, "detail: expected an object, not %s", jfield_type(d));
    if (json_object_size(d) > TASKREC_DETAIL_MAX)
        return ferr_set(e, FERR_INVALID, "detail: %zu members, at most %d", json_object_size(d),
                        TASKREC_DETAIL_MAX);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)d, key, v)
    {
        if (!is_token(key, 1, 32))
            return ferr_set(e, FERR_INVALID, "detail: member names are 1-32 of [a-z0-9_.-]");
        if (json_is_string(v) && json_string_length(v) > TASKREC_DETAIL_STR)
            return ferr_set(e, FERR_INVALID, "detail.%s: over %d bytes", key, TASKREC_DETAIL_STR);
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v) && !json_is_null(v))
            return ferr_set(e, FERR_INVALID,
                            "detail.%s: expected a number, a string, a boolean "
                            "or null, not %s",
                            key, jfield_type(v));
    }
    return 0;
}

int taskrec_check(const json_t *rec, bool with_generation, struct ferr *e)
{
    static const char *const fields[] = {"id",     "kind",   "target",     "node",     "user",
                                         "state",  "phase",  "percent",    "start_ms", "end_ms",
                                         "result", "detail", "generation", NULL};
    if (!json_is_object(rec))
        return ferr_set(e, FERR_INVALID, "task: expected an object");
    const char *bad = jfield_unknown(rec, fields);
    if (bad || (!with_generation && json_object_get(rec, "generation")))
        return ferr_set(e, FERR_INVALID, "unknown field \"%.40s\"", bad ? bad : "generation");
    const char *s, *state;
    json_int_t start, end, i;
    int rc;
    if ((rc = get_token(rec, "id", 1, TASKREC_ID_MAX, &s, e)) < 0 ||
        (rc = get_token(rec, "target", 1, 64, &s, e)) < 0 ||
        (rc = get_token(rec, "node", 1, 63, &s, e)) < 0 ||
        (rc = get_token(rec, "user", 1, 32, &s, e)) < 0 ||
        (rc = get_token(rec, "phase", 0, 32, &s, e)) < 0)
        return rc;
    if ((rc = get_token(rec, "kind", 1, 32, &s, e)) < 0)
        return rc;
    if (!taskrec_kind_valid(s))
        return ferr_set(e, FERR_INVALID,
                        "kind: \"%s\" is not one of migrate, drain, storage-move, failover, import",
                        s);
    if ((rc = get_token(rec, "state", 1, 32, &state, e)) < 0)
        return rc;
    if (!taskrec_state_valid(state))
        return ferr_set(e, FERR_INVALID,
                        "state: \"%s\" is not one of running, done, failed, cancelled", state);
    if ((rc = jfield_int(json_object_get(rec, "percent"), "percent", 0, 100, &i, e)) < 0 ||
        (rc = jfield_int(json_object_get(rec, "start_ms"), "start_ms", 0, TIME_MAX, &start, e)) <
            0 ||
        (rc = jfield_int(json_object_get(rec, "end_ms"), "end_ms", 0, TIME_MAX, &end, e)) < 0)
        return rc;
    if (taskrec_final(state) && end < start)
        return ferr_set(e, FERR_INVALID, "end_ms: an ended task ends at or after its start");
    if (!taskrec_final(state) && end != 0)
        return ferr_set(e, FERR_INVALID, "end_ms: a running task has none (0)");
    json_t *r = json_object_get(rec, "result");
    if (!r)
        return ferr_set(e, FERR_INVALID, "result is missing");
    if ((rc = jfield_str(r, "result", &s, e)) < 0)
        return rc;
    if (json_string_length(r) > TASKREC_RESULT_MAX)
        return ferr_set(e, FERR_INVALID, "result: over %d bytes", TASKREC_RESULT_MAX);
    json_t *d = json_object_get(rec, "detail");
    if (!d)
        return ferr_set(e, FERR_INVALID, "detail is missing");
    if ((rc = detail_check(d, e)) < 0)
        return rc;
    if (with_generation &&
        (rc = jfield_int(json_object_get(rec, "generation"), "generation", 1, TIME_MAX, &i, e)) < 0)
        return rc;
    return 0;
}

int taskrec_filter_check(const struct taskrec_filter *f, struct ferr *e)
{
    if (f->state && !taskrec_state_valid(f->state))
        return ferr_set(e, FERR_INVALID,
                        "state: \"%.40s\" is not a task state: running, done, failed or "
                        "cancelled",
                        f->state);
    if (f->kind && !taskrec_kind_valid(f->kind))
        return ferr_set(e, FERR_INVALID,
                        "kind: \"%.40s\" is not a task kind: migrate, drain, storage-move, "
                        "failover or import",
                        f->kind);
    if (f->target && !is_token(f->target, 1, 64))
        return ferr_set(e, FERR_INVALID, "target: expected a VM or node name");
    if (f->node && !is_token(f->node, 1, 63))
        return ferr_set(e, FERR_INVALID, "node: expected a node name");
    if (f->limit < 1 || f->limit > TASKREC_LIMIT_MAX)
        return ferr_set(e, FERR_INVALID, "limit: %u is out of range 1..%d", f->limit,
                        TASKREC_LIMIT_MAX);
    return 0;
}

static bool field_is(const json_t *rec, const char *key, const char *want)
{
    return !want || strcmp(jfield_text(rec, key), want) == 0;
}

bool taskrec_matches(const json_t *rec, const struct taskrec_filter *f)
{
    return field_is(rec, "state", f->state) && field_is(rec, "kind", f->kind) &&
           field_is(rec, "target", f->target) && field_is(rec, "node", f->node);
}

/* Newest start first, then by id: a stable order on every node. */
static int cmp_newest(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t sx = json_integer_value(json_object_get(x, "start_ms"));
    json_int_t sy = json_integer_value(json_object_get(y, "start_ms"));
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(jfield_text(y, "id"), jfield_text(x, "id"));
}

json_t *taskrec_select(const json_t *recs, const struct taskrec_filter *f)
{
    size_t n = json_array_size(recs), k = 0, i;
    json_t **v = calloc(n ? n : 1, sizeof(*v)), *rec;
    json_t *out = json_array();
    if (!v || !out) {
        free(v);
        json_decref(out);
        return NULL;
    }
    json_array_foreach(recs, i, rec) if (taskrec_matches(rec, f)) v[k++] = rec;
    qsort(v, k, sizeof(*v), cmp_newest);
    for (i = 0; i < k && i < f->limit; i++)
        if (json_array_append(out, v[i]) < 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    free(v);
    return out;
}

bool taskrec_orphaned(const json_t *rec, const json_t *nodes, const char *self, bool held,
                      bool leading, char *why, size_t size)
{
    const char *node = jfield_text(rec, "node");
    if (taskrec_final(jfield_text(rec, "state")))
        return false;
    if (strcmp(node, self) == 0) {
        if (held)
            return false;
        snprintf(why, size, "ferryd on %.63s restarted while the task ran", node);
        return true;
    }
    if (!leading)
        return false;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (strcmp(jfield_text(n, "name"), node) != 0)
            continue;
        if (strcmp(jfield_text(n, "state"), "down") != 0)
            return false;
        const char *reason = jfield_text(n, "state_reason");
        snprintf(why, size, "node %.63s went down while the task ran%s%.200s", node,
                 *reason ? ": " : "", reason);
        return true;
    }
    snprintf(why, size, "node %.63s left the cluster while the task ran", node);
    return true;
}

const char *taskrec_migration_phase(const char *status)
{
    if (!status)
        return "setup";
    /* MigrationStatus: active is the pre-copy; pre-switchover, device and postcopy-* are the
     * switch-over and what follows it; completed is still the switch-over until the owner
     * changed (the task ends "done" then). */
    if (strcmp(status, "active") == 0)
        return "data-transfer";
    if (strcmp(status, "pre-switchover") == 0 || strcmp(status, "device") == 0 ||
        strncmp(status, "postcopy", 8) == 0 || strcmp(status, "completed") == 0)
        return "switchover";
    return "setup";
}

int taskrec_percent(uint64_t transferred, uint64_t remaining)
{
    if (transferred == 0 && remaining == 0)
        return 0;
    /* Dirty pages are sent again, so transferred can pass the guest's size: the share of what
     * is sent against what is still to send, never 100 before the task ends. */
    double p = (double)transferred * 100.0 / ((double)transferred + (double)remaining);
    return p >= 99.0 ? 99 : (int)p;
}
