/* SPDX-License-Identifier: MIT */
/* Where a new VM goes: the up, active node with the most free memory that fits it. */
#include "cluster/placement.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int placement_pick(const json_t *nodes, uint64_t memory_mib, const char *want, char out[64],
                   struct ferr *e)
{
    const json_t *best = NULL;
    json_int_t best_free = -1, largest = 0;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = json_string_value(json_object_get(n, "name"));
        const char *state = json_string_value(json_object_get(n, "state"));
        const char *admin = json_string_value(json_object_get(n, "admin"));
        json_int_t freem =
            json_integer_value(json_object_get(json_object_get(n, "memory"), "free_mib"));
        if (!name)
            continue;
        bool up = state && strcmp(state, "up") == 0;
        bool active = admin && strcmp(admin, "active") == 0;
        if (want) {
            if (strcmp(name, want) != 0)
                continue;
            if (!up)
                return ferr_set(e, FERR_STATE, "node %s is %s%s%s; it takes no new VMs", name,
                                state ? state : "in no known state", active ? "" : " and ",
                                active  ? ""
                                : admin ? admin
                                        : "in no known admin state");
            if (!active)
                return ferr_set(e, FERR_STATE,
                                "node %s is %s; it takes no new VMs until it is resumed "
                                "(ferry node resume %s)",
                                name, admin ? admin : "in no known admin state", name);
            if ((uint64_t)(freem < 0 ? 0 : freem) < memory_mib)
                return ferr_set(e, FERR_LIMIT, "node %s has %lld MiB free; the VM needs %llu", name,
                                (long long)freem, (unsigned long long)memory_mib);
            snprintf(out, 64, "%s", name);
            return 0;
        }
        if (!up || !active)
            continue;
        if (freem > largest)
            largest = freem;
        if ((uint64_t)(freem < 0 ? 0 : freem) >= memory_mib && freem > best_free) {
            best = n;
            best_free = freem;
        }
    }
    if (want)
        return ferr_set(e, FERR_NOTFOUND, "no node named %s in the cluster (ferry node list)",
                        want);
    if (!best)
        return ferr_set(e, FERR_LIMIT,
                        "no up, active node has %llu MiB free (the most free is %lld MiB)",
                        (unsigned long long)memory_mib, (long long)largest);
    snprintf(out, 64, "%s", json_string_value(json_object_get(best, "name")));
    return 0;
}

int placement_pick_pending(const json_t *nodes, uint64_t memory_mib, const char *want,
                           const char *exclude, const json_t *pending, char out[64], struct ferr *e)
{
    json_t *cands = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = json_string_value(json_object_get(n, "name"));
        if (!name || (exclude && strcmp(name, exclude) == 0))
            continue;
        json_t *copy = json_deep_copy(n);
        json_t *mem = json_object_get(copy, "memory");
        json_int_t on_way = json_integer_value(json_object_get(pending, name));
        if (on_way > 0 && json_is_object(mem)) {
            json_int_t free_mib = json_integer_value(json_object_get(mem, "free_mib")) - on_way;
            json_object_set_new(mem, "free_mib", json_integer(free_mib > 0 ? free_mib : 0));
        }
        json_array_append_new(cands, copy);
    }
    int rc = placement_pick(cands, memory_mib, want, out, e);
    json_decref(cands);
    return rc;
}
