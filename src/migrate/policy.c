/* SPDX-License-Identifier: MIT */
#include "migrate/policy.h"

#include <stdio.h>

uint64_t mig_policy_limit_ms(const struct mig_policy *p)
{
    uint64_t limit = p->budget_ms / MIG_POLICY_LIMIT_DIVISOR;
    uint64_t floor =
        p->budget_ms < MIG_POLICY_MIN_LIMIT_MS ? p->budget_ms : MIG_POLICY_MIN_LIMIT_MS;
    return limit < floor ? floor : limit;
}

static bool outpaced(const struct mig_observation *o)
{
    return o->throughput > 0 &&
           o->dirty_rate * 100 >= o->throughput * (uint64_t)MIG_POLICY_EARLY_RATE_PCT;
}

static bool early(const struct mig_observation *o)
{
    return o->passes >= MIG_POLICY_EARLY_PASSES && o->elapsed_ms >= MIG_POLICY_EARLY_MS &&
           outpaced(o);
}

static bool late(const struct mig_observation *o)
{
    /* Time counts once the first pass (the bulk copy) is done: a big guest on a slow link
     * is still converging while it sends its memory the first time. */
    return o->passes >= MIG_POLICY_ESCALATE_PASSES ||
           (o->elapsed_ms >= MIG_POLICY_ESCALATE_MS && o->passes >= 2);
}

enum mig_action mig_policy_step(const struct mig_policy *p, const struct mig_observation *o)
{
    if (!p->postcopy)
        return MIG_CONTINUE;
    return early(o) || late(o) ? MIG_POSTCOPY : MIG_CONTINUE;
}

const char *mig_policy_reason(const struct mig_observation *o, char *buf, unsigned len)
{
    if (early(o) && !late(o))
        snprintf(buf, len,
                 "the guest dirties %.1f MB/s, the link sends %.1f MB/s (pass %lld, %llu ms)",
                 (double)o->dirty_rate / 1e6, (double)o->throughput / 1e6, (long long)o->passes,
                 (unsigned long long)o->elapsed_ms);
    else
        snprintf(buf, len, "not converged after %lld passes and %llu ms", (long long)o->passes,
                 (unsigned long long)o->elapsed_ms);
    return buf;
}
