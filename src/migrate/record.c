/* SPDX-License-Identifier: MIT */
/* A migration's figures, its record in the cluster database and the node's counts. */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/migrate_internal.h"
#include "fleet/tasks.h"

void migrator_stats(const struct migrator *m, struct migrate_stats *out)
{
    if (m)
        *out = m->stats;
    else
        memset(out, 0, sizeof(*out));
}

const char *migrate_outcome_name(enum migrate_outcome o)
{
    static const char *names[] = {"completed", "failed", "cancelled"};
    return o < MIGRATE_OUTCOMES ? names[o] : "?";
}

static void hist_observe(struct migrate_hist *h, double s)
{
    unsigned i = 0;
    while (i < MIGRATE_HIST_N && s > hist_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_s += s;
}

void migrator_note_client_gap(struct migrator *m, double gap_ms)
{
    hist_observe(&m->stats.client_gap, gap_ms / 1000.0);
}

uint64_t migrate__limit_ms(const struct mig *g)
{
    return mig_policy_limit_ms(&g->policy);
}

const char *migrate__strategy(const struct mig *g)
{
    return g->postcopy ? "post-copy" : "pre-copy";
}

/* The migration's figures: the answer of a completed migration and its record. Figures QEMU
 * did not report (a migration that failed) are what the last query-migrate said; downtime is
 * null then, and the total time is ferry's own. */
json_t *migrate__figures(const struct mig *g, enum migrate_outcome o, const char *error)
{
    bool done = o == MIGRATE_COMPLETED;
    json_int_t total = done ? g->total_ms : (json_int_t)(now_mono_ms() - g->t0_ms);
    char err[400];
    snprintf(err, sizeof(err), "%s", error ? error : "");
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:n, s:o, s:I, s:b}", "vm",
        g->name, "from", g->m->env.node_name, "to", g->to, "status", migrate_outcome_name(o),
        "strategy", migrate__strategy(g), "total_ms", total, "downtime_ms",
        done ? json_integer(g->downtime_ms) : json_null(), "setup_ms", g->setup_ms, "bytes",
        g->bytes, "passes", g->passes, "budget_ms", (json_int_t)g->policy.budget_ms,
        "downtime_limit_ms", (json_int_t)migrate__limit_ms(g), "client_gap_ms", "error",
        error ? json_string(err) : json_null(), "postcopy_recoveries", (json_int_t)g->recoveries,
        "encrypted", g->tls);
}

/*
 * The migration's record: a cluster event "vm.migration" whose message is its figures as
 * compact JSON (docs/api.md, GET /v1/migrations), and this node's metrics.
 */
void migrate__record(struct mig *g, enum migrate_outcome o, const char *error)
{
    struct migrate_stats *st = &g->m->stats;
    st->outcomes[o]++;
    json_t *r = migrate__figures(g, o, error);
    if (o == MIGRATE_COMPLETED) {
        hist_observe(&st->blackout, (double)g->downtime_ms / 1000.0);
        hist_observe(&st->total, (double)g->total_ms / 1000.0);
    }
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    if (text)
        cluster_event_add(g->m->env.cluster, "vm.migration", g->name, "%s", text);
    else
        log_warn("migrate %s: no record: out of memory", g->name);
    free(text);
    json_decref(r);
}

/* ---- the migration's task (fleet/tasks.h) ---- */

static json_t *task_progress(void *data)
{
    struct mig *g = data;
    json_t *p = migrate_progress(g->m, g->name);
    if (!p)
        return NULL;
    json_t *mem = json_object_get(p, "memory");
    uint64_t sent = (uint64_t)json_integer_value(json_object_get(mem, "transferred"));
    uint64_t left = (uint64_t)json_integer_value(json_object_get(mem, "remaining"));
    const char *st = json_string_value(json_object_get(p, "status"));
    const char *phase = taskrec_migration_phase(st);
    int pct = strcmp(phase, "setup") == 0 ? 0 : taskrec_percent(sent, left);
    json_t *mbps = json_object_get(p, "throughput_mbps");
    json_t *out =
        json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:O}}", "phase",
                  phase, "percent", pct, "detail", "to", g->to, "status", st ? st : "setup",
                  "strategy", migrate__strategy(g), "transferred_bytes", (json_int_t)sent,
                  "remaining_bytes", (json_int_t)left, "dirty_rate_bytes_per_s",
                  json_integer_value(json_object_get(p, "dirty_rate_bytes_per_s")), "pass",
                  json_integer_value(json_object_get(p, "pass")), "throughput_mbps",
                  json_is_number(mbps) ? json_number_value(mbps) : 0.0, "elapsed_ms",
                  json_integer_value(json_object_get(p, "elapsed_ms")), "expected_downtime_ms",
                  json_object_get(p, "expected_downtime_ms") ?: json_null());
    json_decref(p);
    return out;
}

static int task_cancel(void *data, struct ferr *e)
{
    struct mig *g = data;
    return migrate_cancel(g->m, g->name, e);
}

void migrate__task_begin(struct mig *g, const char *user)
{
    static const struct task_ops ops = {.progress = task_progress, .cancel = task_cancel};
    struct ferr e = {0};
    if (!g->m->env.tasks)
        return;
    if (tasks_begin(g->m->env.tasks, "migrate", g->name, user ? user : "ferryd", &ops, g, g->task,
                    &e) < 0) {
        log_warn("migrate %s: no task: %s", g->name, e.msg);
        g->task[0] = '\0';
    }
}

void migrate__task_end(struct mig *g, enum migrate_outcome o, const char *error)
{
    if (!g->task[0] || !g->m->env.tasks)
        return;
    char text[TASKREC_RESULT_MAX + 1];
    bool done = o == MIGRATE_COMPLETED;
    if (done)
        snprintf(text, sizeof(text),
                 "migrated to %s: blackout (downtime) %lld ms, total %lld ms, %s, %lld bytes, %s",
                 g->to, (long long)g->downtime_ms, (long long)g->total_ms, migrate__strategy(g),
                 (long long)g->bytes, g->tls ? "TLS" : "plain stream");
    else
        snprintf(text, sizeof(text), "%s", error ? error : migrate_outcome_name(o));
    json_t *d = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "to", g->to, "strategy", migrate__strategy(g),
        "total_ms", done ? g->total_ms : (json_int_t)(now_mono_ms() - g->t0_ms), "bytes", g->bytes,
        "passes", g->passes, "budget_ms", (json_int_t)g->policy.budget_ms, "encrypted", g->tls);
    if (d && done)
        json_object_set_new(d, "downtime_ms", json_integer(g->downtime_ms));
    tasks_end(g->m->env.tasks, g->task,
              done                     ? "done"
              : o == MIGRATE_CANCELLED ? "cancelled"
                                       : "failed",
              text, d);
}
