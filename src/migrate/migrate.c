/* SPDX-License-Identifier: MIT */
/* Live migration, pre-copy: the source drives QEMU's migration to an incoming QEMU that the
 * destination ferryd prepared, then hands the VM's ownership over in the cluster database. */
#include "migrate/migrate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/destwatch.h"
#include "migrate/policy.h"
#include "vm/vm.h"

#define POLL_MS 50                  /* query-migrate while QEMU migrates */
#define MAX_BANDWIDTH (10ULL << 30) /* bytes/s: "unlimited" for a LAN */
#define COMPLETED_REPOLLS 40        /* QEMU 7.2 may say completed before its figures */
#define CONSOLE_CARRY (64 * 1024)   /* console history sent to the destination */
#define RECOVER_RETRY_MS 1000       /* a broken post-copy: ask the destination this often */
/* The convergence policy (downtime-limit, when to escalate to post-copy) is in policy.c. */

struct mig {
    struct migrator *m;
    struct mig *next;
    unsigned refs; /* the list, the timer, every call in flight */
    struct vm *vm;
    char name[VM_NAME_MAX + 1];
    char to[64];
    char uri[160];
    uint64_t bandwidth;    /* bytes/s, QEMU's max-bandwidth */
    uint64_t pc_bandwidth; /* bytes/s, QEMU's max-postcopy-bandwidth (0: unlimited) */
    migrate_cb cb;
    void *data;
    bool prepared, started, cancelled, finished, query_busy;
    bool postcopy;   /* migrate-start-postcopy sent: the VM's state may be split */
    bool recovering; /* taken over after a ferryd restart from the journal (migrate_recover) */
    bool vm_gone;    /* the source definition's delete ran: g->vm may be freed */
    /* Post-copy whose stream broke (QEMU's postcopy-paused): resumed with QEMU's postcopy
     * recovery once the destination answers again (try_recover). */
    bool pc_paused, recover_busy;
    bool dest_has_none;  /* the destination said it has no copy: boot it again here */
    unsigned recoveries; /* post-copy resumed after a break */
    uint64_t recover_ms; /* last recovery attempt (monotonic) */
    struct mig_policy policy;
    unsigned completed_polls;
    uint64_t t0_ms;
    uv_timer_t timer;
    json_int_t total_ms, downtime_ms, setup_ms, bytes, passes;
    json_t *last;            /* QEMU's last query-migrate answer (owned), for migrate_progress */
    struct destwatch *watch; /* destwatch.c: the destination's ferryd still answers */
    char lost[400];          /* why the destination was given up, "" while it answers */
};

struct migrator {
    struct migrator_env env;
    struct mig *migs;
    struct migrate_stats stats;
};

static const double hist_bounds[MIGRATE_HIST_N] = MIGRATE_HIST_BOUNDS;

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

int migrator_new(const struct migrator_env *env, struct migrator **out, struct ferr *e)
{
    struct migrator *m = calloc(1, sizeof(*m));
    if (!m)
        return ferr_set(e, -ENOMEM, "migrate: out of memory");
    m->env = *env;
    *out = m;
    return 0;
}

static struct mig *find_mig(struct migrator *m, const char *name)
{
    for (struct mig *g = m->migs; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

/* Not inlined: the compiler cannot see that the references outnumber the calls. */
__attribute__((noinline)) static void mig_unref(struct mig *g)
{
    if (--g->refs == 0) {
        json_decref(g->last);
        free(g);
    }
}

static void timer_closed(uv_handle_t *h)
{
    mig_unref(h->data);
}

/* ---- the journal: what a restarted ferryd needs to finish a migration ----
 * STATE/vms/NAME/migration.json exists from before the destination is asked to prepare until
 * the migration is over: {"to": NODE, "budget_ms": N, "postcopy": BOOL}. QEMU migrates on
 * when ferryd dies; the journal tells the next ferryd whose migration it was (migrate_recover). */

static int journal_path(const struct vm *vm, char *out, size_t size)
{
    return fmt_path(out, size, "%s/migration.json", vm_state_dir(vm));
}

static int journal_write(const struct mig *g, struct ferr *e)
{
    char path[1300];
    if (journal_path(g->vm, path, sizeof(path)) < 0)
        return ferr_set(e, FERR_INVALID, "migration journal: path too long");
    json_t *j = json_pack("{s:s, s:I, s:b}", "to", g->to, "budget_ms",
                          (json_int_t)g->policy.budget_ms, "postcopy", g->postcopy);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return ferr_set(e, -ENOMEM, "migration journal: out of memory");
    int rc = file_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

static void journal_remove(const struct vm *vm)
{
    char path[1300];
    if (journal_path(vm, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
        log_warn("migrate %s: unlink %s: %s", vm_name(vm), path, strerror(errno));
}

/* QEMU's downtime-limit for this migration (policy.c). */
static uint64_t limit_ms(const struct mig *g)
{
    return mig_policy_limit_ms(&g->policy);
}

static const char *strategy(const struct mig *g)
{
    return g->postcopy ? "post-copy" : "pre-copy";
}

/* The migration's figures: the answer of a completed migration and its record. Figures QEMU
 * did not report (a migration that failed) are what the last query-migrate said; downtime is
 * null then, and the total time is ferry's own. */
static json_t *figures(const struct mig *g, enum migrate_outcome o, const char *error)
{
    bool done = o == MIGRATE_COMPLETED;
    json_int_t total = done ? g->total_ms : (json_int_t)(now_mono_ms() - g->t0_ms);
    char err[400];
    snprintf(err, sizeof(err), "%s", error ? error : "");
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:n, s:o, s:I}",
                     "vm", g->name, "from", g->m->env.node_name, "to", g->to, "status",
                     migrate_outcome_name(o), "strategy", strategy(g), "total_ms", total,
                     "downtime_ms", done ? json_integer(g->downtime_ms) : json_null(), "setup_ms",
                     g->setup_ms, "bytes", g->bytes, "passes", g->passes, "budget_ms",
                     (json_int_t)g->policy.budget_ms, "downtime_limit_ms", (json_int_t)limit_ms(g),
                     "client_gap_ms", "error", error ? json_string(err) : json_null(),
                     "postcopy_recoveries", (json_int_t)g->recoveries);
}

/*
 * The migration's record: a cluster event "vm.migration" whose message is its figures as
 * compact JSON (docs/api.md, GET /v1/migrations), and this node's metrics.
 */
static void record(struct mig *g, enum migrate_outcome o, const char *error)
{
    struct migrate_stats *st = &g->m->stats;
    st->outcomes[o]++;
    json_t *r = figures(g, o, error);
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

/* ---- source: the end of a migration ---- */

static void unlist(struct mig *g)
{
    for (struct mig **p = &g->m->migs; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            return;
        }
}

/* Leaves the list; the memory goes once the last call in flight returned. */
static void finish(struct mig *g)
{
    g->finished = true;
    if (!g->vm_gone)
        journal_remove(g->vm);
    unlist(g);
    destwatch_stop(g->watch);
    g->watch = NULL;
    uv_close((uv_handle_t *)&g->timer, timer_closed);
    mig_unref(g); /* the list's reference */
}

static void after_cont(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (status < 0 && status != -ECANCELED)
        log_warn("migrate %s: cont after the failure: %s", g->name, err ? err : ferr_str(status));
    mig_unref(g);
}

static void after_status(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    const char *st = status == 0 ? json_string_value(json_object_get(r, "status")) : NULL;
    /* QEMU stops the guest for the switchover; a failure after that leaves it paused. */
    if (st && strcmp(st, "running") != 0 && strcmp(st, "shutdown") != 0) {
        struct ferr e = {0};
        g->refs++;
        if (vm_qmp(g->vm, "cont", NULL, after_cont, g, &e) < 0) {
            g->refs--;
            log_warn("migrate %s: %s", g->name, e.msg);
        } else {
            log_info("migrate %s: QEMU was %s after the failure; cont", g->name, st);
        }
    }
    mig_unref(g);
}

/* Boots a VM again once its killed QEMU is fully cleaned up (vm_start refuses until then). */
struct reboot {
    uv_timer_t timer;
    struct vmset *vms;
    char name[VM_NAME_MAX + 1];
    unsigned tries;
};

static void reboot_closed(uv_handle_t *h)
{
    free(h->data);
}

static void rebooted(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    if (status < 0)
        log_warn("migrate: boot after the lost post-copy: %s", e->msg);
}

static void reboot_tick(uv_timer_t *t)
{
    struct reboot *r = t->data;
    struct vm *vm = vmset_find(r->vms, r->name);
    struct ferr e = {0};
    if (vm && vm_start(vm, rebooted, NULL, &e) < 0 && e.code == FERR_STATE && ++r->tries < 50) {
        uv_timer_start(&r->timer, reboot_tick, 100, 0); /* still cleaning up */
        return;
    }
    if (!vm || e.code)
        log_warn("migrate %s: boot after the lost post-copy: %s", r->name,
                 vm ? e.msg : "the VM is gone");
    else
        log_info("migrate %s: booting it again from its disks", r->name);
    uv_close((uv_handle_t *)&r->timer, reboot_closed);
}

/* data: the migrator. */
static void reboot_after_lost(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                              void *data)
{
    struct migrator *m = data;
    struct reboot *r = calloc(1, sizeof(*r));
    if (!r || !vm) {
        free(r);
        return;
    }
    r->vms = set;
    snprintf(r->name, sizeof(r->name), "%s", vm_name(vm));
    uv_timer_init(m->env.loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, reboot_tick, 0, 0);
}

/* Failure before completion: the VM keeps running here, the destination is cleaned up. */
static void fail(struct mig *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct mig *g, int code, const char *fmt, ...)
{
    if (g->finished)
        return;
    struct ferr e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    char why[300];
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* After migrate-start-postcopy the guest runs on the destination with part of its memory
     * still here: neither copy is whole. A broken stream is resumed (try_recover); this is
     * reached only when the destination has no copy left (its QEMU died) or QEMU failed
     * outright. Then the newest whole state is the disks: the VM boots again here. */
    int n = g->postcopy
                ? snprintf(e.msg, sizeof(e.msg),
                           "migrate %.64s to %.63s: %s, after the post-copy switchover: the "
                           "VM's memory was split between %.63s and %.63s and no whole copy "
                           "is left; %.64s %s on %.63s from its disks (its memory state is "
                           "lost)",
                           g->name, g->to, why, g->m->env.node_name, g->to, g->name,
                           g->dest_has_none ? "boots again" : "is stopped; start it again",
                           g->m->env.node_name)
                : snprintf(e.msg, sizeof(e.msg),
                           "migrate %.64s to %.63s: %s; %.64s keeps running on %.63s", g->name,
                           g->to, why, g->name, g->m->env.node_name);
    if (n < 0)
        e.msg[0] = '\0';
    uv_timer_stop(&g->timer);
    vm_set_migrating(g->vm, NULL, NULL);
    if (g->prepared) /* retried while the destination cannot be reached (destwatch.c) */
        destwatch_abort(g->m->env.loop, g->m->env.cluster, g->to, g->name);
    struct ferr qe = {0};
    if (g->postcopy) {
        /* Only when the destination said it has no copy may one run here again. */
        if (vm_kill(g->vm, g->dest_has_none ? reboot_after_lost : NULL, g->m, &qe) < 0)
            log_warn("migrate %s: kill after the failed post-copy: %s", g->name, qe.msg);
    } else {
        g->refs++;
        if (vm_qmp(g->vm, "query-status", NULL, after_status, g, &qe) < 0)
            g->refs--;
    }
    log_warn("%s", e.msg);
    events_add(g->m->env.events, g->name,
               g->cancelled ? "vm.migrate_cancelled" : "vm.migrate_failed", "%s", e.msg);
    record(g, g->cancelled ? MIGRATE_CANCELLED : MIGRATE_FAILED, e.msg);
    g->cb(0, NULL, &e, g->data);
    finish(g);
}

static void source_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                           void *data)
{
    struct mig *g = data;
    if (status < 0)
        log_warn("migrate %s: removing the source definition: %s", g->name, e->msg);
    g->vm_gone = true; /* removed, or not: either way g->vm is not to be touched again */
    char msg[400];
    snprintf(msg, sizeof(msg),
             "to %s: %s, total %lld ms, downtime %lld ms, setup %lld ms, %lld bytes, "
             "%lld passes, budget %llu ms, downtime-limit %llu ms",
             g->to, strategy(g), (long long)g->total_ms, (long long)g->downtime_ms,
             (long long)g->setup_ms, (long long)g->bytes, (long long)g->passes,
             (unsigned long long)g->policy.budget_ms, (unsigned long long)limit_ms(g));
    events_add(g->m->env.events, g->name, "vm.migrated", "%s", msg);
    record(g, MIGRATE_COMPLETED, NULL);
    log_info("migrate %s %s", g->name, msg);
    g->cb(200, figures(g, MIGRATE_COMPLETED, NULL), NULL, g->data);
    finish(g);
    mig_unref(g); /* the quit/delete chain */
}

static void source_quit(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                        void *data)
{
    struct mig *g = data;
    struct ferr e2 = {0};
    if (!vm || vmset_delete(set, vm, true, source_removed, g, &e2) < 0)
        source_removed(set, vm, vm ? e2.code : 0, &e2, g);
}

/* The cluster database took the new owner: the source QEMU and definition go (disks stay). */
static void owner_switched(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    json_decref(body);
    if (g->finished) {
        mig_unref(g);
        return;
    }
    if (e) {
        /* The destination has the newest state but no record says so: it must not run. The
         * abort kills it there; the source QEMU can continue (cont re-activates its disks). */
        fail(g, e->code, "the cluster database refused the owner change: %.200s", e->msg);
        mig_unref(g);
        return;
    }
    vm_set_migrating(g->vm, NULL, NULL);
    struct ferr qe = {0};
    if (vm_quit(g->vm, source_quit, g, &qe) < 0)
        source_quit(vm_vmset(g->vm), g->vm, 0, NULL, g);
    /* the reference of this call passes to the quit/delete chain */
}

/* The cluster database (this node's copy) names node as the owner of the VM called name. */
static bool owner_is(struct migrator *m, const char *name, const char *node)
{
    json_t *rec = NULL;
    if (cdb_vm_get(cluster_db(m->env.cluster), name, &rec, NULL) < 0)
        return false;
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    bool yes = owner && strcmp(owner, node) == 0;
    json_decref(rec);
    return yes;
}

static json_int_t jint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static void completed(struct mig *g, json_t *r)
{
    json_t *ram = json_object_get(r, "ram");
    g->total_ms = jint(r, "total-time");
    g->downtime_ms = jint(r, "downtime");
    g->setup_ms = jint(r, "setup-time");
    g->bytes = jint(ram, "transferred");
    g->passes = jint(ram, "dirty-sync-count");
    uv_timer_stop(&g->timer);
    g->refs++;
    if (owner_is(g->m, g->name, g->to)) { /* switched before a ferryd restart */
        owner_switched(200, NULL, NULL, g);
        return;
    }
    struct ferr e = {0};
    json_t *cmd = cdb_cmd_vm_owner(g->name, g->to, g->m->env.node_name);
    if (!cmd || cluster_write(g->m->env.cluster, cmd, owner_switched, g, &e) < 0)
        owner_switched(0, NULL, &e, g);
    json_decref(cmd);
}

static void poll_timer(uv_timer_t *t);

/* After a ferryd restart QEMU's "completed" may be an older migration's (one whose owner
 * change the database refused, say): only a destination that runs the VM proves it is ours. */
struct confirm {
    struct mig *g;
    json_t *r; /* QEMU's answer */
};

static void confirmed(int status, json_t *body, const struct ferr *e, void *data)
{
    struct confirm *c = data;
    struct mig *g = c->g;
    const char *st = json_string_value(json_object_get(body, "state"));
    if (g->finished) {
        /* over meanwhile */
    } else if (st && strcmp(st, "running") == 0) {
        completed(g, c->r);
    } else if (e && (e->code == FERR_UNAVAIL || e->code == FERR_TIMEOUT)) {
        uv_timer_start(&g->timer, poll_timer, 1000, POLL_MS); /* ask again */
    } else {
        fail(g, FERR_STATE, "ferryd restarted before QEMU started the migration (%s: %s)", g->to,
             st  ? st
             : e ? e->msg
                 : "no state");
    }
    json_decref(body);
    json_decref(c->r);
    free(c);
    mig_unref(g);
}

static void confirm_completed(struct mig *g, json_t *r)
{
    char path[128 + VM_NAME_MAX];
    snprintf(path, sizeof(path), "/v1/vms/%s", g->name);
    struct confirm *c = calloc(1, sizeof(*c));
    struct ferr e = {0};
    uv_timer_stop(&g->timer);
    if (!c) {
        fail(g, -ENOMEM, "out of memory");
        return;
    }
    c->g = g;
    c->r = json_incref(r);
    g->refs++;
    if (cluster_call(g->m->env.cluster, g->to, "GET", path, NULL, confirmed, c, &e) < 0) {
        json_decref(c->r);
        free(c);
        g->refs--;
        uv_timer_start(&g->timer, poll_timer, 1000, POLL_MS);
    }
}

static int qmp_step(struct mig *g, const char *cmd, json_t *args, vm_qmp_cb cb);
static void on_setup(struct qmp_conn *c, int status, json_t *r, const char *err, void *d);

/* ---- source: resuming a broken post-copy (QEMU's postcopy recovery) ---- */

static void dest_lost(const char *why, void *data);

static void after_resume(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    g->recover_busy = false;
    if (status < 0 && status != -ECANCELED && !g->finished)
        log_warn("migrate %s: migrate resume: %s", g->name, err ? err : ferr_str(status));
    mig_unref(g);
}

static void recover_answer(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    const char *uri = json_string_value(json_object_get(body, "uri"));
    json_t *copy = json_object_get(body, "copy");
    g->recover_busy = false;
    if (g->finished) {
        /* over meanwhile */
    } else if (json_is_false(copy)) {
        /* Said in so many words: an error (even a 404 from a ferryd without this call) only
         * means "not now", or a second copy could boot next to a live one. */
        g->dest_has_none = true;
        fail(g, FERR_UNAVAIL, "%s has no copy of the VM any more (%.200s)", g->to,
             json_string_value(json_object_get(body, "why"))
                 ? json_string_value(json_object_get(body, "why"))
                 : "no reason given");
    } else if (e || !uri) {
        log_info("migrate %s: post-copy not resumed yet: %s", g->name,
                 e ? e->msg : "the answer has no uri");
    } else {
        /* The destination listens again: QEMU continues where the stream broke. */
        json_t *args = json_pack("{s:s, s:b}", "uri", uri, "resume", 1);
        struct ferr qe = {0};
        g->refs++;
        g->recover_busy = true;
        if (vm_qmp(g->vm, "migrate", args, after_resume, g, &qe) < 0) {
            g->refs--;
            g->recover_busy = false;
            log_warn("migrate %s: migrate resume: %s", g->name, qe.msg);
        } else {
            log_info("migrate %s: resuming post-copy to %s at %s", g->name, g->to, uri);
        }
    }
    json_decref(body);
    mig_unref(g);
}

/* Asks the destination to listen again for the broken post-copy (at most every second). */
static void try_recover(struct mig *g)
{
    uint64_t now = now_mono_ms();
    if (g->recover_busy || now - g->recover_ms < RECOVER_RETRY_MS)
        return;
    g->recover_ms = now;
    json_t *body = json_pack("{s:s}", "name", g->name);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct ferr e = {0};
    g->recover_busy = true;
    g->refs++;
    if (!text || cluster_call(g->m->env.cluster, g->to, "POST", "/v1/internal/migrate/recover",
                              text, recover_answer, g, &e) < 0) {
        g->recover_busy = false;
        g->refs--;
        log_warn("migrate %s: post-copy recovery: %s", g->name, text ? e.msg : "out of memory");
    }
    free(text);
}

/* query-migrate's figures as the policy wants them. */
static struct mig_observation observe(const struct mig *g, const json_t *r)
{
    const json_t *ram = json_object_get(r, "ram");
    json_int_t page = jint(ram, "page-size") ? jint(ram, "page-size") : 4096;
    const json_t *mbps = json_object_get(ram, "mbps");
    double bps = json_is_number(mbps) ? json_number_value(mbps) * 1e6 / 8 : 0;
    return (struct mig_observation){
        .elapsed_ms = now_mono_ms() - g->t0_ms,
        .passes = jint(ram, "dirty-sync-count"),
        .dirty_rate = (uint64_t)(jint(ram, "dirty-pages-rate") * page),
        .throughput = bps > 0 ? (uint64_t)bps : 0,
    };
}

static void on_query(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    g->query_busy = false;
    if (g->finished)
        goto out;
    if (status < 0) {
        fail(g, FERR_QEMU, "query-migrate: %.300s", err ? err : ferr_str(status));
        goto out;
    }
    const char *st = json_string_value(json_object_get(r, "status"));
    /* Taken over after a restart, QEMU may say no migration ever left it: ferryd died
     * between prepare and "migrate". A QEMU that came here by migration says "completed"
     * then, about its incoming one, with no "ram" figures: that is not ours either. */
    bool none = !st || strcmp(st, "none") == 0 ||
                (g->recovering && strcmp(st, "completed") == 0 && !json_object_get(r, "ram"));
    if (none) {
        if (g->recovering)
            fail(g, FERR_STATE, "ferryd restarted before QEMU started the migration");
        goto out;
    }
    json_decref(g->last);
    g->last = json_incref(r);
    json_t *ram = json_object_get(r, "ram");
    if (ram) {
        g->bytes = jint(ram, "transferred");
        g->passes = jint(ram, "dirty-sync-count");
        g->setup_ms = jint(r, "setup-time");
    }
    if (strcmp(st, "completed") == 0) {
        /* QEMU 7.2 can answer completed with total-time and downtime still 0. */
        if ((jint(r, "total-time") == 0 || jint(r, "downtime") == 0) &&
            ++g->completed_polls < COMPLETED_REPOLLS) {
            uv_timer_start(&g->timer, poll_timer, 5, POLL_MS);
            goto out;
        }
        if (g->recovering)
            confirm_completed(g, r);
        else
            completed(g, r);
    } else if (strcmp(st, "failed") == 0) {
        const char *desc = json_string_value(json_object_get(r, "error-desc"));
        fail(g, FERR_QEMU, "QEMU: migration failed: %.300s", desc ? desc : "no reason given");
    } else if (strcmp(st, "cancelled") == 0) {
        fail(g, g->lost[0] ? FERR_UNAVAIL : FERR_STATE, "%s",
             g->lost[0]     ? g->lost
             : g->cancelled ? "cancelled by request"
                            : "QEMU cancelled it");
    } else if (strcmp(st, "postcopy-paused") == 0) {
        if (!g->pc_paused) {
            g->pc_paused = true;
            log_warn("migrate %s: the post-copy stream to %s broke; resuming it once %s answers",
                     g->name, g->to, g->to);
            events_add(g->m->env.events, g->name, "vm.migrating",
                       "to %s: the post-copy stream broke; resuming it once %s answers", g->to,
                       g->to);
        }
        try_recover(g);
    } else if (strcmp(st, "postcopy-active") == 0 && g->pc_paused) {
        g->pc_paused = false;
        g->recoveries++;
        /* Watch the destination afresh: the old watch reported its loss once and stopped. */
        destwatch_stop(g->watch);
        g->watch = destwatch_start(g->m->env.loop, g->m->env.cluster, g->to, g->name, dest_lost, g);
        log_info("migrate %s: post-copy to %s resumed", g->name, g->to);
        events_add(g->m->env.events, g->name, "vm.migrating", "to %s: post-copy resumed", g->to);
    } else if (strcmp(st, "active") == 0 && !g->postcopy) {
        struct mig_observation o = observe(g, r);
        if (mig_policy_step(&g->policy, &o) == MIG_POSTCOPY) {
            char why[200];
            mig_policy_reason(&o, why, sizeof(why));
            g->postcopy = true;
            struct ferr je = {0};
            if (journal_write(g, &je) < 0) /* a restarted ferryd then assumes pre-copy */
                log_warn("migrate %s: %s", g->name, je.msg);
            log_info("migrate %s: pre-copy does not converge (%s); post-copy", g->name, why);
            events_add(g->m->env.events, g->name, "vm.migrating",
                       "to %s: pre-copy does not converge (%s); switching to post-copy", g->to,
                       why);
            qmp_step(g, "migrate-start-postcopy", NULL, on_setup);
        }
    }
out:
    mig_unref(g);
}

static void poll_now(struct mig *g)
{
    if (g->finished || g->query_busy)
        return;
    struct ferr e = {0};
    g->refs++;
    g->query_busy = true;
    if (vm_qmp(g->vm, "query-migrate", NULL, on_query, g, &e) < 0) {
        g->query_busy = false;
        g->refs--;
        fail(g, FERR_QEMU, "%s", e.msg);
    }
}

static void poll_timer(uv_timer_t *t)
{
    poll_now(t->data);
}

/* QMP events of the source QEMU while migrating: MIGRATION says the status changed. */
static void on_vm_event(struct vm *vm, const char *event, json_t *data, void *d)
{
    struct mig *g = d;
    if (strcmp(event, "MIGRATION") == 0 && g->started)
        poll_now(g);
}

/* ---- destination watch (destwatch.c) ---- */

static void after_cancel(struct qmp_conn *c, int status, json_t *r, const char *err, void *d);

/* The destination's ferryd stopped answering (killed, cut off) or lost the incoming VM:
 * cancel QEMU's pre-copy, so the migration fails with this reason and the VM stays here,
 * instead of completing into a QEMU that no ferryd manages. Post-copy cannot go back. */
static void dest_lost(const char *why, void *data)
{
    struct mig *g = data;
    if (g->finished || g->lost[0])
        return;
    if (g->postcopy) {
        /* Post-copy cannot go back; break the stream now (QEMU would wait for TCP to give
         * up, minutes) and resume it once the destination answers (try_recover). */
        log_warn("migrate %s: %s; pausing the post-copy", g->name, why);
        struct ferr qe = {0};
        if (vm_qmp(g->vm, "migrate-pause", NULL, NULL, NULL, &qe) < 0)
            log_warn("migrate %s: migrate-pause: %s", g->name, qe.msg);
        return;
    }
    snprintf(g->lost, sizeof(g->lost), "%s", why);
    log_warn("migrate %s: %s; cancelling", g->name, why);
    struct ferr qe = {0};
    g->refs++;
    if (vm_qmp(g->vm, "migrate_cancel", NULL, after_cancel, g, &qe) < 0) {
        g->refs--;
        fail(g, FERR_UNAVAIL, "%s", g->lost);
    }
}

/* ---- source: start ---- */

static void on_migrate(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (!g->finished) {
        if (status < 0) {
            fail(g, FERR_QEMU, "migrate %.160s: %.300s", g->uri, err ? err : ferr_str(status));
        } else {
            g->started = true;
            uv_timer_start(&g->timer, poll_timer, POLL_MS, POLL_MS);
            g->watch =
                destwatch_start(g->m->env.loop, g->m->env.cluster, g->to, g->name, dest_lost, g);
        }
    }
    mig_unref(g);
}

static void on_setup(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (!g->finished && status < 0)
        fail(g, FERR_QEMU, "migration parameters: %.300s", err ? err : ferr_str(status));
    mig_unref(g);
}

static int qmp_step(struct mig *g, const char *cmd, json_t *args, vm_qmp_cb cb)
{
    struct ferr e = {0};
    g->refs++;
    if (vm_qmp(g->vm, cmd, args, cb, g, &e) < 0) {
        g->refs--;
        fail(g, FERR_QEMU, "%s: %s", cmd, e.msg);
        return -1;
    }
    return 0;
}

static void console_sent(int status, json_t *body, const struct ferr *e, void *data)
{
    char *name = data;
    if (e) /* an older destination has no such call: its history starts empty */
        log_info("migrate %s: console history not carried over: %s", name, e->msg);
    json_decref(body);
    free(name);
}

/* Sends the tail of the console to the destination, so its history follows the VM. Best
 * effort and in parallel with the copy, which takes far longer than this one call. */
static void send_console(struct mig *g)
{
    char *data = NULL;
    size_t len = 0;
    uint64_t from, start, end;
    if (vm_console_read(g->vm, VM_CONSOLE_TAIL, CONSOLE_CARRY, &data, &len, &from, &start, &end) <
        0)
        return;
    if (len == 0) {
        free(data);
        return;
    }
    size_t skip = 0; /* a cut UTF-8 sequence at the start */
    while (skip < len && ((unsigned char)data[skip] & 0xC0) == 0x80)
        skip++;
    json_t *body = json_pack("{s:s, s:s, s:s%}", "name", g->name, "from", g->m->env.node_name,
                             "data", data + skip, len - skip);
    free(data);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *name = strdup(g->name);
    struct ferr e = {0};
    if (text && name &&
        cluster_call(g->m->env.cluster, g->to, "POST", "/v1/internal/migrate/console", text,
                     console_sent, name, &e) == 0)
        name = NULL;
    else
        log_info("migrate %s: console history not sent: %s", g->name, text ? e.msg : "no text");
    free(name);
    free(text);
}

/* The destination listens: set QEMU's migration policy, then start. QMP answers in order, so
 * the three commands go out at once. */
static void prepared(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    const char *uri = json_string_value(json_object_get(body, "uri"));
    if (uri) {
        g->prepared = true;
        snprintf(g->uri, sizeof(g->uri), "%s", uri);
    }
    json_decref(body);
    if (g->finished)
        goto out;
    if (e) {
        fail(g, e->code, "prepare on %s: %.300s", g->to, e->msg);
        goto out;
    }
    if (!uri) {
        fail(g, FERR_PROTO, "prepare on %s: the answer has no uri", g->to);
        goto out;
    }
    if (g->cancelled) {
        fail(g, FERR_STATE, "cancelled by request");
        goto out;
    }
    if (vm_state(g->vm) != VM_RUNNING) {
        fail(g, FERR_STATE, "the VM is %s now", vm_state_name(vm_state(g->vm)));
        goto out;
    }
    json_t *caps = json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability", "events",
                             "state", 1, "capability", "postcopy-ram", "state", 1);
    json_t *params =
        json_pack("{s:I, s:I, s:I}", "downtime-limit", (json_int_t)limit_ms(g), "max-bandwidth",
                  (json_int_t)g->bandwidth, "max-postcopy-bandwidth", (json_int_t)g->pc_bandwidth);
    json_t *mig = json_pack("{s:s}", "uri", g->uri);
    if (qmp_step(g, "migrate-set-capabilities", caps, on_setup) < 0) {
        json_decref(params);
        json_decref(mig);
    } else if (qmp_step(g, "migrate-set-parameters", params, on_setup) < 0) {
        json_decref(mig);
    } else if (qmp_step(g, "migrate", mig, on_migrate) == 0) {
        send_console(g);
        log_info("migrate %s: to %s at %s, downtime-limit %llu ms (budget %llu ms)", g->name, g->to,
                 g->uri, (unsigned long long)limit_ms(g), (unsigned long long)g->policy.budget_ms);
    }
out:
    mig_unref(g);
}

/* The destination: the named node, or the up node with the most free memory but this one. */
static int pick_destination(struct migrator *m, struct vm *vm, const char *to, char out[64],
                            struct ferr *e)
{
    if (to && strcmp(to, m->env.node_name) == 0)
        return ferr_set(e, FERR_INVALID, "to: %s already runs on %s", vm_name(vm), to);
    json_t *nodes = cluster_nodes(m->env.cluster);
    json_t *others = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(nodes, "nodes"), i, n)
    {
        const char *name = json_string_value(json_object_get(n, "name"));
        if (name && strcmp(name, m->env.node_name) != 0)
            json_array_append(others, n);
    }
    int rc = placement_pick(others, vm_spec(vm)->memory_mib, to, out, e);
    json_decref(others);
    json_decref(nodes);
    if (rc < 0)
        ferr_prefix(e, "to");
    return rc;
}

int migrate_start(struct migrator *m, struct vm *vm, const struct migrate_opts *o, migrate_cb cb,
                  void *data, struct ferr *e)
{
    const char *to = o->to;
    uint64_t budget_ms = o->budget_ms;
    const char *name = vm_name(vm);
    struct mig *busy = find_mig(m, name);
    if (busy || vm_migrating(vm))
        return ferr_set(e, FERR_STATE,
                        "%s is already migrating to %s (ferry vm migrate --cancel %s)", name,
                        busy ? busy->to : "another node", name);
    if (m->env.unsafe)
        return ferr_set(e, FERR_STATE, "%s cannot be live-migrated from %s: %s", name,
                        m->env.node_name, m->env.unsafe);
    switch (vm_state(vm)) {
    case VM_RUNNING:
        break;
    case VM_PAUSED:
        return ferr_set(e, FERR_STATE,
                        "%s is paused; resume it first (ferry vm resume %s): a "
                        "live migration moves a running VM",
                        name, name);
    case VM_STOPPED:
    case VM_FAILED:
        return ferr_set(e, FERR_STATE, "%s is %s; only a running VM can be live-migrated", name,
                        vm_state_name(vm_state(vm)));
    default:
        return ferr_set(e, FERR_STATE, "%s is %s; wait until it runs", name,
                        vm_state_name(vm_state(vm)));
    }
    unsigned max = m->env.max_out ? m->env.max_out : MIGRATE_DEFAULT_OUT, running = 0;
    for (struct mig *x = m->migs; x; x = x->next)
        running++;
    if (running >= max)
        return ferr_set(e, FERR_STATE,
                        "%s already runs %u outgoing live migration%s (at most %u at once: "
                        "ferryd --max-migrations); migrate %s when one has finished",
                        m->env.node_name, running, running == 1 ? "" : "s", max, name);
    if (!m->env.cluster || !cluster_active(m->env.cluster))
        return ferr_set(e, FERR_STATE,
                        "this host is not in a cluster: there is nowhere to "
                        "migrate %s to",
                        name);
    if (!cluster_quorum(m->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "no quorum: the owner change could not be recorded; "
                        "try again when the cluster has a leader");
    if (budget_ms == 0)
        budget_ms = vm_spec(vm)->blackout_budget_ms;
    if (budget_ms == 0)
        budget_ms = 300;
    struct mig *g = calloc(1, sizeof(*g));
    if (!g)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = pick_destination(m, vm, to, g->to, e);
    if (rc < 0) {
        free(g);
        return rc;
    }
    json_t *body = json_pack("{s:s, s:o, s:b}", "name", name, "spec", vm_spec_to_json(vm_spec(vm)),
                             "postcopy", 1);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        free(g);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    g->m = m;
    g->vm = vm;
    snprintf(g->name, sizeof(g->name), "%s", name);
    g->policy = (struct mig_policy){.budget_ms = budget_ms, .postcopy = true};
    g->bandwidth = o->bandwidth_mib ? o->bandwidth_mib << 20 : MAX_BANDWIDTH;
    g->pc_bandwidth = o->postcopy_bandwidth_mib << 20; /* QEMU: 0 is unlimited */
    g->cb = cb;
    g->data = data;
    g->t0_ms = now_mono_ms();
    rc = journal_write(g, e);
    if (rc < 0) {
        ferr_prefix(e, "migrate %s", name);
        free(text);
        free(g);
        return rc;
    }
    g->refs = 3; /* the list, the timer, the prepare call */
    uv_timer_init(m->env.loop, &g->timer);
    g->timer.data = g;
    g->next = m->migs;
    m->migs = g;
    vm_set_migrating(vm, on_vm_event, g);
    rc = cluster_call(m->env.cluster, g->to, "POST", "/v1/internal/migrate/prepare", text, prepared,
                      g, e);
    free(text);
    if (rc < 0) {
        ferr_prefix(e, "migrate %s: prepare on %s", name, g->to);
        vm_set_migrating(vm, NULL, NULL);
        g->refs--; /* no prepare call */
        finish(g);
        return rc;
    }
    events_add(m->env.events, name, "vm.migrating", "to %s, pre-copy, budget %llu ms", g->to,
               (unsigned long long)budget_ms);
    return 0;
}

static void after_cancel(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    if (status < 0 && status != -ECANCELED && !g->finished)
        log_warn("migrate %s: migrate_cancel: %s", g->name, err ? err : ferr_str(status));
    poll_now(g);
    mig_unref(g);
}

int migrate_cancel(struct migrator *m, const char *name, struct ferr *e)
{
    struct mig *g = find_mig(m, name);
    if (!g)
        return ferr_set(e, FERR_STATE, "%s is not migrating", name);
    /* After migrate-start-postcopy the guest may run on the destination already, with part of
     * its memory still here: a cancel would leave no complete copy anywhere. */
    if (g->postcopy)
        return ferr_set(e, FERR_STATE,
                        "%s: the migration to %s is in post-copy: the VM already runs there "
                        "and a cancel now would leave no complete copy; it ends shortly",
                        name, g->to);
    g->cancelled = true;
    if (!g->started)
        return 0; /* prepared() sees the flag */
    struct ferr qe = {0};
    g->refs++;
    if (vm_qmp(g->vm, "migrate_cancel", NULL, after_cancel, g, &qe) < 0) {
        g->refs--;
        fail(g, FERR_STATE, "cancelled by request");
    }
    return 0;
}

/* ---- source: a migration the previous ferryd left behind ---- */

static void recovered(int status, json_t *body, const struct ferr *e, void *data)
{
    json_decref(body); /* nobody waits for this answer: the events and the record tell */
}

static void leftover_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                             void *data)
{
    if (status < 0)
        log_warn("migrate: removing the source definition: %s", e->msg);
}

/* The VM's QEMU is gone (stopped or failed here) and a journal names a destination. */
static void recover_without_qemu(struct migrator *m, struct vm *vm, const char *to)
{
    const char *name = vm_name(vm);
    struct ferr e = {0};
    if (owner_is(m, name, to)) {
        /* The hand-over was complete but for removing the source's definition. */
        log_info("migrate %s: %s owns it; removing what is left here", name, to);
        events_add(m->env.events, name, "vm.migrated", "to %s: finished after a ferryd restart",
                   to);
        if (vmset_delete(m->env.vms, vm, true, leftover_removed, NULL, &e) < 0)
            log_warn("migrate %s: removing the source definition: %s", name, e.msg);
        return;
    }
    /* QEMU exited during the migration while no ferryd watched: whether the destination got
     * the whole VM cannot be told from here. Say so; do not guess either way. */
    log_warn("migrate %s: QEMU exited during the migration to %s while ferryd was down; "
             "check the VM on %s (ferry vm show %s)",
             name, to, to, name);
    events_add(m->env.events, name, "vm.migrate_unknown",
               "QEMU exited during the migration to %s while ferryd was down; check %s there", to,
               name);
    journal_remove(vm);
}

void migrate_recover(struct migrator *m, struct vm *vm)
{
    char path[1300];
    const char *name = vm_name(vm);
    if (!m || journal_path(vm, path, sizeof(path)) < 0 || access(path, F_OK) != 0 ||
        find_mig(m, name))
        return;
    enum vm_state st = vm_state(vm);
    if (st == VM_STARTING || st == VM_STOPPING || st == VM_INCOMING || !m->env.cluster ||
        !cluster_active(m->env.cluster) || !cluster_quorum(m->env.cluster))
        return; /* the next tick */
    char *text = NULL;
    json_t *j = NULL;
    if (file_read_all(path, 4096, &text, NULL, NULL) == 0)
        j = json_loads(text, 0, NULL);
    free(text);
    const char *to = json_string_value(json_object_get(j, "to"));
    json_t *budget = json_object_get(j, "budget_ms");
    json_t *pc = json_object_get(j, "postcopy");
    if (!to || !name_valid(to, 63) || !json_is_integer(budget) || json_integer_value(budget) <= 0 ||
        !json_is_boolean(pc)) {
        log_warn("migrate %s: %s is not a migration journal; removed", name, path);
        json_decref(j);
        journal_remove(vm);
        return;
    }
    if (st != VM_RUNNING && st != VM_PAUSED) {
        recover_without_qemu(m, vm, to);
        json_decref(j);
        return;
    }
    struct mig *g = calloc(1, sizeof(*g));
    if (!g) {
        json_decref(j);
        return;
    }
    g->m = m;
    g->vm = vm;
    snprintf(g->name, sizeof(g->name), "%s", name);
    snprintf(g->to, sizeof(g->to), "%s", to);
    g->postcopy = json_is_true(pc);
    g->policy =
        (struct mig_policy){.budget_ms = (uint64_t)json_integer_value(budget), .postcopy = true};
    json_decref(j);
    g->cb = recovered; /* QEMU keeps the parameters it was given; nothing is set again */
    g->t0_ms = now_mono_ms();
    g->prepared = g->started = g->recovering = true;
    g->refs = 2; /* the list, the timer */
    uv_timer_init(m->env.loop, &g->timer);
    g->timer.data = g;
    g->next = m->migs;
    m->migs = g;
    vm_set_migrating(vm, on_vm_event, g);
    g->watch = destwatch_start(m->env.loop, m->env.cluster, g->to, g->name, dest_lost, g);
    log_info("migrate %s: ferryd restarted during the migration to %s (%s); taking it over", name,
             g->to, strategy(g));
    events_add(m->env.events, name, "vm.migrating",
               "to %s: ferryd restarted during the migration; taking it over", g->to);
    uv_timer_start(&g->timer, poll_timer, 0, POLL_MS);
}

json_t *migrate_progress(struct migrator *m, const char *name)
{
    struct mig *g = m ? find_mig(m, name) : NULL;
    if (!g)
        return NULL;
    const json_t *r = g->last;
    const json_t *ram = json_object_get(r, "ram");
    const char *st = json_string_value(json_object_get(r, "status"));
    json_t *mbps = json_object_get(ram, "mbps");
    json_int_t page = jint(ram, "page-size") ? jint(ram, "page-size") : 4096;
    json_t *exp = json_object_get(r, "expected-downtime");
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I}, s:I, s:f, s:o, s:I, "
                     "s:I, s:I}",
                     "vm", g->name, "from", g->m->env.node_name, "to", g->to, "status",
                     st ? st : (g->started ? "setup" : "preparing"), "strategy", strategy(g),
                     "pass", jint(ram, "dirty-sync-count"), "memory", "transferred",
                     jint(ram, "transferred"), "remaining", jint(ram, "remaining"), "total",
                     jint(ram, "total"), "dirty_rate_bytes_per_s",
                     jint(ram, "dirty-pages-rate") * page, "throughput_mbps",
                     json_is_number(mbps) ? json_number_value(mbps) : 0.0, "expected_downtime_ms",
                     json_is_integer(exp) ? json_incref(exp) : json_null(), "elapsed_ms",
                     (json_int_t)(now_mono_ms() - g->t0_ms), "budget_ms",
                     (json_int_t)g->policy.budget_ms, "downtime_limit_ms", (json_int_t)limit_ms(g));
}

/* ---- destination ---- */

struct prep {
    struct migrator *m;
    migrate_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
    char uri[160];
    bool postcopy;
    struct ferr e;
};

/* A free TCP port on ip, for QEMU to listen on (the kernel picks it). */
static int free_port(const char *ip, int *port, struct ferr *e)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return ferr_set(e, FERR_INVALID, "migration address %s is not an IPv4 address", ip);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "socket: %s", strerror(errno));
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        int err = errno;
        close(fd);
        return ferr_set(e, -err, "bind %s:0: %s", ip, strerror(err));
    }
    close(fd);
    *port = ntohs(sa.sin_port);
    return 0;
}

/* This node's management address: the host part of its API address in the cluster. */
static int mgmt_ip(struct migrator *m, char out[64], struct ferr *e)
{
    json_t *rec = NULL;
    int rc = cdb_node_find(cluster_db(m->env.cluster), m->env.node_name, &rec, e);
    if (rc < 0)
        return rc;
    const char *api = json_string_value(json_object_get(rec, "api_addr"));
    const char *colon = api ? strrchr(api, ':') : NULL;
    if (!colon || colon == api || (size_t)(colon - api) >= 64) {
        json_decref(rec);
        return ferr_set(e, FERR_STATE, "this node has no API address in the cluster");
    }
    memcpy(out, api, (size_t)(colon - api));
    out[colon - api] = '\0';
    json_decref(rec);
    return 0;
}

static void prep_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    p->cb(0, NULL, &p->e, p->data);
    free(p);
}

/* Undoes a half-made incoming VM, then answers with p->e. */
static void prep_fail(struct prep *p)
{
    ferr_prefix(&p->e, "prepare %s on %s", p->name, p->m->env.node_name);
    log_warn("migrate: %s", p->e.msg);
    struct vm *vm = vmset_find(p->m->env.vms, p->name);
    struct ferr e2 = {0};
    if (!vm || vmset_delete(p->m->env.vms, vm, true, prep_removed, p, &e2) < 0)
        prep_removed(p->m->env.vms, NULL, 0, NULL, p);
}

static void prep_started(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    if (status < 0) {
        p->e = *e;
        prep_fail(p);
        return;
    }
    log_info("migrate %s: incoming at %s", p->name, p->uri);
    p->cb(200, json_pack("{s:s, s:s}", "uri", p->uri, "node", p->m->env.node_name), NULL, p->data);
    free(p);
}

static void prep_created(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    if (status < 0) {
        p->cb(0, NULL, e, p->data);
        free(p);
        return;
    }
    char ip[64];
    int port = 0;
    if (mgmt_ip(p->m, ip, &p->e) < 0 || free_port(ip, &port, &p->e) < 0) {
        prep_fail(p);
        return;
    }
    snprintf(p->uri, sizeof(p->uri), "tcp:%s:%d", ip, port);
    if (vm_start_incoming(vm, p->uri, p->postcopy, prep_started, p, &p->e) < 0)
        prep_fail(p);
}

/* True (after answering) when the cluster database says this node owns the VM: then it is
 * no incoming copy to make or throw away. */
static bool owned_here(struct migrator *m, const char *name, migrate_cb cb, void *data)
{
    json_t *rec = NULL;
    if (cdb_vm_get(cluster_db(m->env.cluster), name, &rec, NULL) < 0)
        return false;
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    bool mine = owner && strcmp(owner, m->env.node_name) == 0;
    json_decref(rec);
    if (mine)
        reply_err(cb, data, FERR_STATE, "%s is owned by %s in the cluster database", name,
                  m->env.node_name);
    return mine;
}

void migrate_on_prepare(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *spec = json_object_get(body, "spec");
    const char *sname = json_string_value(json_object_get(spec, "name"));
    json_t *pc = json_object_get(body, "postcopy");
    if (!name || !json_is_object(spec) || !sname || strcmp(name, sname) != 0 ||
        (pc && !json_is_boolean(pc)) || json_object_size(body) != (pc ? 3 : 2)) {
        reply_err(cb, data, FERR_INVALID,
                  "body: expected {\"name\": NAME, \"spec\": {the VM's spec, same name}, "
                  "\"postcopy\": BOOL (optional)}");
        return;
    }
    if (!m->env.cluster || !cluster_active(m->env.cluster)) {
        reply_err(cb, data, FERR_STATE, "prepare %s: this node is not in a cluster", name);
        return;
    }
    if (owned_here(m, name, cb, data))
        return;
    struct prep *p = calloc(1, sizeof(*p));
    if (!p) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    p->m = m;
    p->cb = cb;
    p->data = data;
    p->postcopy = json_is_true(pc);
    snprintf(p->name, sizeof(p->name), "%s", name);
    struct ferr e = {0};
    if (vmset_create(m->env.vms, spec, prep_created, p, &e) < 0) {
        ferr_prefix(&e, "prepare %s on %s", name, m->env.node_name);
        cb(0, NULL, &e, data);
        free(p);
    }
}

void migrate_on_console(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *from = json_string_value(json_object_get(body, "from"));
    json_t *text = json_object_get(body, "data");
    if (!name || !from || !name_valid(from, 63) || !json_is_string(text) ||
        json_string_length(text) > 4 * CONSOLE_CARRY || json_object_size(body) != 3) {
        reply_err(cb, data, FERR_INVALID,
                  "body: expected {\"name\": NAME, \"from\": NODE, \"data\": TEXT (at most "
                  "%d bytes)}",
                  4 * CONSOLE_CARRY);
        return;
    }
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm || vm_state(vm) != VM_INCOMING) {
        reply_err(cb, data, FERR_STATE, "%s is not waiting here for a migration", name);
        return;
    }
    size_t len = json_string_length(text);
    char mark[200];
    int n = snprintf(mark, sizeof(mark),
                     "%s[ferry] the console above is %s's; the VM is live-migrating to %s\r\n",
                     len && json_string_value(text)[len - 1] != '\n' ? "\r\n" : "", from,
                     m->env.node_name);
    vm_console_append(vm, json_string_value(text), len);
    vm_console_append(vm, mark, (size_t)n);
    cb(200, json_pack("{s:I}", "appended", (json_int_t)len), NULL, data);
}

/* ---- destination: resuming a broken post-copy ---- */

/* The answer that lets the source boot the VM again: no copy of it runs here. */
static json_t *no_copy(const char *name, const char *why)
{
    char text[200];
    snprintf(text, sizeof(text), "%.63s is not running here: %.100s", name, why);
    return json_pack("{s:b, s:s}", "copy", 0, "why", text);
}

struct recover_ctx {
    struct migrator *m;
    migrate_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
    char uri[160];
};

static void recover_listening(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct recover_ctx *x = d;
    if (status < 0)
        reply_err(x->cb, x->data, FERR_QEMU, "migrate-recover %s: %.300s", x->uri,
                  err ? err : ferr_str(status));
    else
        x->cb(200, json_pack("{s:s, s:s}", "uri", x->uri, "node", x->m->env.node_name), NULL,
              x->data);
    free(x);
}

static void recover_paused(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct recover_ctx *x = d;
    reply_err(x->cb, x->data, FERR_STATE,
              "%s: the post-copy stream was still up here; it is broken now, ask again", x->name);
    free(x);
}

static void recover_status(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct recover_ctx *x = d;
    const char *st = status == 0 ? json_string_value(json_object_get(r, "status")) : NULL;
    struct vm *vm = vmset_find(x->m->env.vms, x->name);
    struct ferr e = {0};
    char ip[64];
    int port = 0;
    if (!vm || (vm_state(vm) != VM_RUNNING && vm_state(vm) != VM_PAUSED)) {
        x->cb(200, no_copy(x->name, "its QEMU is gone"), NULL, x->data);
    } else if (!st) {
        reply_err(x->cb, x->data, FERR_STATE, "%s: query-migrate: %.200s; ask again", x->name,
                  err ? err : ferr_str(status));
    } else if (strcmp(st, "postcopy-active") == 0) {
        /* The source saw the stream break, this side not yet (TCP still waits): break it. */
        if (vm_qmp(vm, "migrate-pause", NULL, recover_paused, x, &e) == 0)
            return;
        reply_err(x->cb, x->data, FERR_QEMU, "%s", e.msg);
    } else if (strcmp(st, "postcopy-recover") == 0 && vm_incoming_uri(vm)[0]) {
        /* Listening from an earlier call whose answer was lost. */
        x->cb(200, json_pack("{s:s, s:s}", "uri", vm_incoming_uri(vm), "node", x->m->env.node_name),
              NULL, x->data);
    } else if (strcmp(st, "postcopy-paused") != 0) {
        reply_err(x->cb, x->data, FERR_STATE, "%s: its incoming migration is %s here", x->name, st);
    } else if (mgmt_ip(x->m, ip, &e) < 0 || free_port(ip, &port, &e) < 0) {
        reply_err(x->cb, x->data, e.code, "%s", e.msg);
    } else {
        snprintf(x->uri, sizeof(x->uri), "tcp:%s:%d", ip, port);
        vm_set_incoming_uri(vm, x->uri); /* x->uri is "tcp:IP:PORT": it fits */
        log_info("migrate %s: post-copy broke; listening again at %s", x->name, x->uri);
        events_add(x->m->env.events, x->name, "vm.migrating",
                   "the post-copy stream broke; listening again at %s", x->uri);
        if (vm_qmp(vm, "migrate-recover", json_pack("{s:s}", "uri", x->uri), recover_listening, x,
                   &e) == 0)
            return;
        reply_err(x->cb, x->data, FERR_QEMU, "%s", e.msg);
    }
    free(x);
}

void migrate_on_recover(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || json_object_size(body) != 1) {
        reply_err(cb, data, FERR_INVALID, "body: expected {\"name\": NAME}");
        return;
    }
    if (owned_here(m, name, cb, data))
        return;
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm || (vm_state(vm) != VM_RUNNING && vm_state(vm) != VM_PAUSED)) {
        cb(200, no_copy(name, vm ? vm_state_name(vm_state(vm)) : "no such VM here"), NULL, data);
        return;
    }
    struct recover_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    x->m = m;
    x->cb = cb;
    x->data = data;
    snprintf(x->name, sizeof(x->name), "%s", name);
    struct ferr e = {0};
    if (vm_qmp(vm, "query-migrate", NULL, recover_status, x, &e) < 0) {
        free(x);
        reply_err(cb, data, FERR_STATE, "%s: %s; ask again", name, e.msg);
    }
}

struct abort_ctx {
    migrate_cb cb;
    void *data;
};

static void aborted(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    struct abort_ctx *a = data;
    if (status < 0)
        a->cb(0, NULL, e, a->data);
    else
        a->cb(200, json_pack("{s:b}", "aborted", 1), NULL, a->data);
    free(a);
}

void migrate_on_abort(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || json_object_size(body) != 1) {
        reply_err(cb, data, FERR_INVALID, "body: expected {\"name\": NAME}");
        return;
    }
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm) {
        cb(200, json_pack("{s:b}", "aborted", 0), NULL, data); /* nothing (left) here */
        return;
    }
    if (owned_here(m, name, cb, data))
        return;
    struct abort_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    a->cb = cb;
    a->data = data;
    struct ferr e = {0};
    events_add(m->env.events, name, "vm.migrate_aborted", "the source gave up the migration");
    if (vmset_delete(m->env.vms, vm, true, aborted, a, &e) < 0) {
        free(a);
        cb(0, NULL, &e, data);
    }
}
