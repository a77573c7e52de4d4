/* SPDX-License-Identifier: MIT */
/* When a migration's destination counts as lost (destjudge.h): pure, no I/O, no clock. */
#include "migrate/destjudge.h"

#include <stdio.h>
#include <string.h>

void destjudge_init(struct destjudge *j, const char *to, const char *name, uint64_t now)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->to, sizeof(j->to), "%s", to);
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->last_good_ms = now;
}

enum destjudge_tick destjudge_tick(struct destjudge *j, uint64_t now, char *why, size_t size)
{
    uint64_t silent = now - j->last_good_ms;
    if (silent >= DESTWATCH_LOST_MS) {
        snprintf(why, size, "%s's ferryd has not answered for %llu ms%s%s", j->to,
                 (unsigned long long)silent, j->last_err[0] ? ": " : "", j->last_err);
        return DESTJUDGE_LOST;
    }
    return j->in_flight ? DESTJUDGE_WAIT : DESTJUDGE_PING;
}

void destjudge_sent(struct destjudge *j)
{
    j->in_flight = true;
}

void destjudge_not_sent(struct destjudge *j, const char *err)
{
    j->in_flight = false;
    snprintf(j->last_err, sizeof(j->last_err), "%.199s", err);
}

bool destjudge_answer(struct destjudge *j, uint64_t now, const struct ferr *e, const char *state,
                      char *why, size_t size)
{
    j->in_flight = false;
    if (e) {
        snprintf(j->last_err, sizeof(j->last_err), "%.199s", e->msg);
        if (e->code != FERR_NOTFOUND)
            return false; /* unreachable or refusing: the silence counts */
        snprintf(why, size, "%s no longer holds the incoming %s", j->to, j->name);
        return true;
    }
    if (state && (strcmp(state, "incoming") == 0 || strcmp(state, "running") == 0)) {
        j->last_good_ms = now;
        return false;
    }
    snprintf(why, size, "the incoming %s on %s is %s", j->name, j->to, state ? state : "gone");
    return true;
}

bool destjudge_abort_again(const struct ferr *e, uint64_t now, uint64_t deadline_ms)
{
    return e && (e->code == FERR_UNAVAIL || e->code == FERR_TIMEOUT) && now < deadline_ms;
}
