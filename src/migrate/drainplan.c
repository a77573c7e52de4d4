/* SPDX-License-Identifier: MIT */
/* A node drain's plan (drainplan.h): pure, no I/O. */
#include "migrate/drainplan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "migrate/migrate.h"

const char *drain_outcome_name(enum drain_outcome o)
{
    static const char *names[] = {"pending", "migrating", "migrated", "failed", "stayed"};
    return (unsigned)o < ARRAY_SIZE(names) ? names[o] : "?";
}

int drain_plan_init(struct drain_plan *p, const json_t *recs, unsigned parallel)
{
    memset(p, 0, sizeof(*p));
    p->parallel = parallel ? parallel : DRAIN_PARALLEL_DEFAULT;
    p->n = json_array_size(recs);
    p->items = calloc(p->n ? p->n : 1, sizeof(*p->items));
    p->sent = json_object();
    if (!p->items || !p->sent) {
        drain_plan_free(p);
        return -ENOMEM;
    }
    size_t i;
    const json_t *rec;
    json_array_foreach(recs, i, rec)
    {
        snprintf(p->items[i].name, sizeof(p->items[i].name), "%s",
                 json_string_value(json_object_get(rec, "name")) ?: "");
        p->items[i].outcome = DRAIN_PENDING;
    }
    return 0;
}

void drain_plan_free(struct drain_plan *p)
{
    for (size_t i = 0; p->items && i < p->n; i++)
        json_decref(p->items[i].figures);
    free(p->items);
    json_decref(p->sent);
    memset(p, 0, sizeof(*p));
}

struct drain_item *drain_plan_next(struct drain_plan *p)
{
    if (p->running >= p->parallel || p->next >= p->n)
        return NULL;
    return &p->items[p->next++];
}

enum drain_step drain_plan_judge(struct drain_plan *p, struct drain_item *it, const char *node,
                                 bool found, enum vm_state st)
{
    if (!found) {
        char msg[FERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "the cluster database says %s owns %s, but it has no such VM",
                 node, it->name);
        drain_plan_fail(p, it, msg);
        return DRAIN_SETTLED;
    }
    if (st == VM_STOPPED || st == VM_FAILED) {
        it->outcome = DRAIN_STAYED;
        snprintf(it->msg, sizeof(it->msg),
                 "%s: stays here; start it after ferry node resume, or delete it",
                 vm_state_name(st));
        p->stayed++;
        return DRAIN_SETTLED;
    }
    return DRAIN_MOVE;
}

void drain_plan_started(struct drain_plan *p, struct drain_item *it, const char *to,
                        uint64_t memory_mib)
{
    it->outcome = DRAIN_MIGRATING;
    if (to != it->to)
        snprintf(it->to, sizeof(it->to), "%s", to);
    p->running++;
    json_int_t before = json_integer_value(json_object_get(p->sent, it->to));
    json_object_set_new(p->sent, it->to, json_integer(before + (json_int_t)memory_mib));
}

void drain_plan_wait(struct drain_plan *p, struct drain_item *it)
{
    it->outcome = DRAIN_PENDING;
    /* it is the last one taken: the next drain_plan_next returns it again */
    if (p->next > 0 && &p->items[p->next - 1] == it)
        p->next--;
}

void drain_plan_fail(struct drain_plan *p, struct drain_item *it, const char *msg)
{
    it->outcome = DRAIN_FAILED;
    snprintf(it->msg, sizeof(it->msg), "%s", msg);
    p->failed++;
}

void drain_plan_answered(struct drain_plan *p, struct drain_item *it, const struct ferr *e,
                         json_t *body)
{
    p->running--;
    if (e) {
        json_decref(body);
        drain_plan_fail(p, it, e->msg);
        return;
    }
    const char *to = json_string_value(json_object_get(body, "to"));
    if (to)
        snprintf(it->to, sizeof(it->to), "%s", to);
    it->outcome = DRAIN_MIGRATED;
    json_decref(it->figures);
    it->figures = body;
    p->migrated++;
}

bool drain_plan_host_busy(const struct ferr *e)
{
    return e && strstr(e->msg, MIGRATE_BUSY_WORDS) != NULL;
}

const json_t *drain_plan_sent(const struct drain_plan *p)
{
    return p->sent;
}

bool drain_plan_done(const struct drain_plan *p)
{
    return p->running == 0 && p->next == p->n;
}

const char *drain_plan_admin(const struct drain_plan *p)
{
    return p->failed ? "draining" : "paused";
}

json_t *drain_plan_result(const struct drain_plan *p, const char *node, const char *admin,
                          uint64_t total_ms)
{
    json_t *vms = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const struct drain_item *it = &p->items[i];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "name", it->name, "outcome",
                              drain_outcome_name(it->outcome), "to", it->to, "message", it->msg);
        json_t *f = it->figures;
        if (o && f) {
            const char *keys[] = {"total_ms", "downtime_ms", "bytes", "passes", "strategy"};
            for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
                if (json_object_get(f, keys[k]))
                    json_object_set(o, keys[k], json_object_get(f, keys[k]));
        }
        json_array_append_new(vms, o);
    }
    return json_pack("{s:s, s:s, s:i, s:I, s:i, s:i, s:i, s:o}", "node", node, "admin", admin,
                     "parallel", (int)p->parallel, "total_ms", (json_int_t)total_ms, "migrated",
                     (int)p->migrated, "failed", (int)p->failed, "stayed", (int)p->stayed, "vms",
                     vms);
}
