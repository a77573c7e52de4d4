/* SPDX-License-Identifier: MIT */
/* What the files of src/migrate/ share: a migration in flight and the migrator; not for other
 * subsystems (migrate.h is their API). */
#ifndef FERRY_MIGRATE_MIGRATE_INTERNAL_H
#define FERRY_MIGRATE_MIGRATE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "migrate/migrate.h"
#include "cluster/taskrec.h"
#include "migrate/policy.h"
#include "vm/vm.h"

#define POLL_MS 50                  /* query-migrate while QEMU migrates */
#define HANDOVER_RETRY_MS 500       /* the owner write again, after no quorum or a timeout */
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
    bool completed;  /* QEMU said completed: the destination's QEMU runs the guest */
    bool recovering; /* taken over after a ferryd restart from the journal (migrate_recover) */
    bool vm_gone;    /* the source definition's delete ran: g->vm may be freed */
    /* Post-copy whose stream broke (QEMU's postcopy-paused): resumed with QEMU's postcopy
     * recovery once the destination answers again (try_recover). */
    bool pc_paused, recover_busy;
    bool handover_waiting; /* the owner write could not be made yet: asked again */
    bool dest_has_none;    /* the destination said it has no copy: boot it again here */
    /* The stream is encrypted and authenticated (QEMU's TLS with a per-migration PSK); the key
     * is wiped once QEMU has loaded it (tls_key.key ""). */
    bool tls;
    struct vm_mig_tls tls_key;
    unsigned recoveries;   /* post-copy resumed after a break */
    uint64_t recover_ms;   /* last recovery attempt (monotonic) */
    struct mig_policy policy;
    unsigned completed_polls;
    uint64_t t0_ms;
    uv_timer_t timer;
    json_int_t total_ms, downtime_ms, setup_ms, bytes, passes;
    json_t *last;            /* QEMU's last query-migrate answer (owned), for migrate_progress */
    struct destwatch *watch; /* destwatch.c: the destination's ferryd still answers */
    char lost[400];          /* why the destination was given up, "" while it answers */
    char task[TASKREC_ID_MAX + 1]; /* its task (fleet/tasks.h), "" for none */
};

struct migrator {
    struct migrator_env env;
    struct mig *migs;
    struct migrate_stats stats;
};

static const double hist_bounds[MIGRATE_HIST_N] = MIGRATE_HIST_BOUNDS;

/* migrate.c: the migrator's list of migrations */
struct mig *migrate__find(struct migrator *m, const char *name);
/* Drops one reference; the last frees g. */
void migrate__unref(struct mig *g);
/* Close callback of g->timer (drops the timer's reference). */
void migrate__timer_closed(uv_handle_t *h);

/* journal.c: STATE/vms/NAME/migration.json, what a restarted ferryd needs to finish it */
int migrate__journal_path(const struct vm *vm, char *out, size_t size);
int migrate__journal_write(const struct mig *g, struct ferr *e);
void migrate__journal_remove(const struct vm *vm);

/* record.c: the figures of a migration, its record in the cluster database, the stats */
uint64_t migrate__limit_ms(const struct mig *g);
const char *migrate__strategy(const struct mig *g);
json_t *migrate__figures(const struct mig *g, enum migrate_outcome o, const char *error);
void migrate__record(struct mig *g, enum migrate_outcome o, const char *error);
/* Its task: begun for user once the migration is under way, ended with the outcome (the
 * error's text, or the figures' summary). */
void migrate__task_begin(struct mig *g, const char *user);
void migrate__task_end(struct mig *g, enum migrate_outcome o, const char *error);

/* source.c: driving the source QEMU; the end of a migration */
json_int_t migrate__jint(const json_t *o, const char *k);
bool migrate__owner_is(struct migrator *m, const char *name, const char *node);
void migrate__fail(struct mig *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void migrate__completed(struct mig *g, json_t *r);
void migrate__poll_now(struct mig *g);
void migrate__poll_timer(uv_timer_t *t);
void migrate__on_vm_event(struct vm *vm, const char *event, json_t *data, void *d);
void migrate__dest_lost(const char *why, void *data);
int migrate__qmp_step(struct mig *g, const char *cmd, json_t *args, vm_qmp_cb cb);
void migrate__on_setup(struct qmp_conn *c, int status, json_t *r, const char *err, void *d);
void migrate__after_cancel(struct qmp_conn *c, int status, json_t *r, const char *err, void *d);

/* resume.c: a broken post-copy resumed (QEMU's postcopy recovery), source side */
void migrate__try_recover(struct mig *g);

/* restart.c: a migration the previous ferryd left under way */
void migrate__confirm_completed(struct mig *g, json_t *r);

#endif
