/* SPDX-License-Identifier: MIT */
/* The leader's judgement of node health (health.h): pure, on the monotonic times passed in. */
#include "cluster/health.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct health_peer *health_peer(struct health_table *t, uint64_t id, uint64_t now)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->peer[i].id == id)
            return &t->peer[i];
    if (t->n == HEALTH_PEERS_MAX)
        return NULL;
    struct health_peer *h = &t->peer[t->n++];
    memset(h, 0, sizeof(*h));
    h->id = id;
    h->first_seen = now;
    return h;
}

/* Records state for h as in flight since now and returns the proposal to write. */
static void propose(struct health_peer *h, const json_t *node, const char *name, const char *state,
                    const char *reason, uint64_t now, struct health_proposal *out)
{
    snprintf(h->proposed, sizeof(h->proposed), "%s", state);
    h->proposed_at = now;
    out->id = h->id;
    out->node = node;
    out->name = name;
    out->state = state;
    snprintf(out->reason, sizeof(out->reason), "%s", reason);
}

size_t health_judge(struct health_table *t, const json_t *nodes, const struct health_params *p,
                    struct health_proposal *out, size_t max)
{
    uint64_t now = p->now;
    uint64_t limit = (uint64_t)p->heartbeat_ms * p->down_after;
    size_t n = 0, i;
    const json_t *node;
    json_array_foreach(nodes, i, node)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(node, "id"));
        const char *state = json_string_value(json_object_get(node, "state"));
        const char *name = json_string_value(json_object_get(node, "name"));
        struct health_peer *h = health_peer(t, id, now);
        if (!h || !state || !name || n == max)
            continue;
        if (h->proposed[0]) {
            bool landed = strcmp(h->proposed, state) == 0;
            if (!landed && now - h->proposed_at < HEALTH_PROPOSE_RETRY_MS)
                continue;
            h->proposed[0] = '\0';
        }
        bool down = strcmp(state, "down") == 0;
        if (id == p->self_id) {
            if (down)
                propose(h, node, name, "up", "it leads the cluster", now, &out[n++]);
            continue;
        }
        uint64_t base = h->last_heard;
        if (!base)
            base = h->first_seen > p->leader_since ? h->first_seen : p->leader_since;
        bool silent = now - base > limit;
        if (silent && !down) {
            char why[HEALTH_REASON_MAX];
            snprintf(why, sizeof(why), "no heartbeat for %llu ms",
                     (unsigned long long)(now - base));
            propose(h, node, name, "down", why, now, &out[n++]);
        } else if (!silent && down && h->last_heard) {
            propose(h, node, name, "up", "heartbeats again", now, &out[n++]);
        }
    }
    return n;
}
