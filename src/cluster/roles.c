/* SPDX-License-Identifier: MIT */
/* Raft roles: how many voters, and which node changes role next (roles.h). Pure. */
#include "cluster/roles.h"

bool roles_max_ok(unsigned max)
{
    return max >= 1 && max <= ROLES_MAX_VOTERS_LIMIT && max % 2 == 1;
}

static size_t count_role(const struct roles_node *n, size_t count, enum roles_role r)
{
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        k += n[i].role == r;
    return k;
}

enum roles_role roles_for_newcomer(const struct roles_node *n, size_t count, unsigned max)
{
    return count_role(n, count, ROLES_VOTER) < max ? ROLES_VOTER : ROLES_STANDBY;
}

/* The up standby with the lowest id, or NULL. */
static const struct roles_node *best_standby(const struct roles_node *n, size_t count)
{
    const struct roles_node *best = NULL;
    for (size_t i = 0; i < count; i++)
        if (n[i].role == ROLES_STANDBY && n[i].up && (!best || n[i].id < best->id))
            best = &n[i];
    return best;
}

struct roles_change roles_next(const struct roles_node *n, size_t count, uint64_t self,
                               unsigned max)
{
    struct roles_change none = {ROLES_NONE, 0, ""};
    if (!roles_max_ok(max))
        return none;
    size_t voters = count_role(n, count, ROLES_VOTER);
    size_t members = count - count_role(n, count, ROLES_SPARE);
    size_t want = members < max ? members : max;
    const struct roles_node *standby = best_standby(n, count);
    if (standby) {
        const struct roles_node *dead = NULL;
        for (size_t i = 0; i < count; i++)
            if (n[i].role == ROLES_VOTER && !n[i].up && n[i].id != self &&
                (!dead || n[i].id < dead->id))
                dead = &n[i];
        if (dead)
            return (struct roles_change){ROLES_DEMOTE, dead->id,
                                         "a voter that is down makes room for an up standby"};
        if (voters < want)
            return (struct roles_change){ROLES_PROMOTE, standby->id,
                                         "fewer voters than the cluster keeps"};
    }
    if (voters > max) {
        const struct roles_node *extra = NULL;
        for (size_t i = 0; i < count; i++)
            if (n[i].role == ROLES_VOTER && n[i].up && n[i].id != self &&
                (!extra || n[i].id > extra->id))
                extra = &n[i];
        if (extra)
            return (struct roles_change){ROLES_DEMOTE, extra->id, "more voters than --max-voters"};
    }
    return none;
}
