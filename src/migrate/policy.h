/* SPDX-License-Identifier: MIT */
/* The convergence policy of a live migration, pure: what the source asks of QEMU, decided
 * from what QEMU reports. migrate.c feeds it query-migrate answers; tests/unit feeds it
 * made-up ones. */
#ifndef FERRY_MIGRATE_POLICY_H
#define FERRY_MIGRATE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* Escalation to post-copy when pre-copy has not converged after ESCALATE_PASSES passes, or
 * after ESCALATE_MS once the first pass is done (QEMU counts passes from 1: 2 means the bulk
 * copy is over); sooner (after EARLY_PASSES passes and EARLY_MS) when the guest dirties memory
 * at least as fast as the link sends it (dirty rate >= EARLY_RATE_PCT % of the throughput):
 * more passes cannot converge then. */
#define MIG_POLICY_ESCALATE_PASSES 10
#define MIG_POLICY_ESCALATE_MS 10000
#define MIG_POLICY_EARLY_PASSES 4
#define MIG_POLICY_EARLY_MS 3000
#define MIG_POLICY_EARLY_RATE_PCT 90
#define MIG_POLICY_LIMIT_DIVISOR 3
#define MIG_POLICY_MIN_LIMIT_MS 100

struct mig_policy {
    uint64_t budget_ms; /* the VM's blackout budget */
    bool postcopy;      /* escalation to post-copy is allowed */
};

/* One query-migrate answer while QEMU's status is "active", in plain numbers. */
struct mig_observation {
    uint64_t elapsed_ms; /* since the migration started */
    int64_t passes;      /* ram.dirty-sync-count */
    uint64_t dirty_rate; /* bytes/s, ram.dirty-pages-rate x page size */
    uint64_t throughput; /* bytes/s, from ram.mbps */
};

enum mig_action {
    MIG_CONTINUE, /* pre-copy goes on */
    MIG_POSTCOPY, /* pre-copy does not converge: switch to post-copy now */
};

/* QEMU's downtime-limit for a budget: a third of it, but not below MIG_POLICY_MIN_LIMIT_MS
 * (or the budget, if that is smaller), for the whole migration. QEMU stops the guest once it
 * expects to send the rest within the limit, and its estimate is rough (at a 300 ms limit it
 * stopped guests with up to 285 ms to send; the guest needs 30-40 ms more to answer under
 * TCG), hence a third. Not lower: small limits break guests under QEMU 7.2 TCG (a guest
 * dirtying 8 MB/s on a loaded host: at 30 ms 7 of 24 plain-QEMU and 6 of 16 ferry migrations
 * ended with a corrupted guest kernel; at 100 ms 2 of 46, at 300 ms 1 of 46, ferry and plain
 * QEMU together); see docs/architecture.md. */
uint64_t mig_policy_limit_ms(const struct mig_policy *p);

/* What to do after this observation. Never MIG_POSTCOPY when post-copy is not allowed. */
enum mig_action mig_policy_step(const struct mig_policy *p, const struct mig_observation *o);

/* Why the last step escalated, for events and logs ("10 passes", "dirty rate ... >= ..."). */
const char *mig_policy_reason(const struct mig_observation *o, char *buf, unsigned len);

#endif
