/* SPDX-License-Identifier: MIT */
/* The dashboard's alerts (alerts.h), after contrib/prometheus/ferry.rules.yml. */
#include "api/alerts.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfield.h"

struct rule {
    const char *name, *severity;
    unsigned for_s;
};

static const struct rule NODE_DOWN = {"NodeDown", "critical", 30};
static const struct rule QUORUM_LOST = {"QuorumLost", "critical", 30};
static const struct rule NO_LEADER = {"NoLeader", "critical", 30};
static const struct rule NODE_FENCED = {"NodeFenced", "critical", 0};
static const struct rule VM_FAILED = {"VMFailed", "warning", 0};
static const struct rule HA_VM_NOT_RUNNING = {"HAVMNotRunning", "critical", 120};
static const struct rule VOLUME_DEGRADED = {"VolumeDegraded", "critical", 60};
static const struct rule LEASE_STALE = {"LeaseStale", "warning", 30};

struct eval {
    struct alerts *a;
    uint64_t now_s;
    json_t *out;
    bool keep[ALERTS_MAX]; /* seen again in this evaluation */
};

void alerts_init(struct alerts *a)
{
    memset(a, 0, sizeof(*a));
}

static size_t make_key(char *key, const char *name, const char *subject)
{
    size_t n = strlen(name), m = strlen(subject);
    if (n + 1 + m + 1 > sizeof(((struct alerts *)0)->seen[0].key))
        m = sizeof(((struct alerts *)0)->seen[0].key) - n - 2;
    memcpy(key, name, n);
    key[n] = '\0';
    memcpy(key + n + 1, subject, m);
    key[n + 1 + m] = '\0';
    return n + 1 + m + 1;
}

/* When the alert began: known (since_s > 0), or when the table first saw it. */
static uint64_t first_seen(struct eval *ev, const char *name, const char *subject, uint64_t since_s)
{
    char key[sizeof(ev->a->seen[0].key)];
    size_t klen = make_key(key, name, subject);
    struct alerts *a = ev->a;
    for (unsigned i = 0; i < a->n; i++)
        if (memcmp(a->seen[i].key, key, klen) == 0) {
            ev->keep[i] = true;
            if (since_s)
                a->seen[i].since_s = since_s;
            return a->seen[i].since_s;
        }
    uint64_t s = since_s ? since_s : ev->now_s;
    if (a->n < ALERTS_MAX) {
        memcpy(a->seen[a->n].key, key, klen);
        a->seen[a->n].since_s = s;
        ev->keep[a->n++] = true;
    }
    return s;
}

static void add(struct eval *ev, const struct rule *r, const char *subject, uint64_t since_s,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct eval *ev, const struct rule *r, const char *subject, uint64_t since_s,
                const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint64_t since = first_seen(ev, r->name, subject, since_s);
    bool firing = ev->now_s >= since + r->for_s;
    json_array_append_new(ev->out,
                          json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "name", r->name, "severity",
                                    r->severity, "subject", subject, "since", (json_int_t)since,
                                    "message", msg, "state", firing ? "firing" : "pending"));
}

static const char *text(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static bool node_up(const json_t *nodes, const char *name)
{
    size_t i;
    const json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (strcmp(text(n, "name"), name) == 0)
            return strcmp(text(n, "state"), "up") == 0;
    }
    return false;
}

static int severity_rank(const char *s)
{
    return strcmp(s, "critical") == 0 ? 0 : 1;
}

static int compare(const void *x, const void *y)
{
    const json_t *a = *(const json_t *const *)x, *b = *(const json_t *const *)y;
    int d = severity_rank(text(a, "severity")) - severity_rank(text(b, "severity"));
    if (d)
        return d;
    if ((d = strcmp(text(a, "name"), text(b, "name"))))
        return d;
    return strcmp(text(a, "subject"), text(b, "subject"));
}

json_t *alerts_eval(struct alerts *a, const struct alert_input *in, uint64_t now_s)
{
    struct eval ev = {.a = a, .now_s = now_s, .out = json_array()};
    if (!ev.out)
        return NULL;
    size_t i;
    const json_t *x;
    if (in->clustered) {
        json_array_foreach(in->nodes, i, x)
        {
            if (strcmp(text(x, "state"), "down") != 0)
                continue;
            json_int_t changed = json_integer_value(json_object_get(x, "state_changed_ms"));
            add(&ev, &NODE_DOWN, text(x, "name"), changed > 0 ? (uint64_t)changed / 1000 : 0,
                "ferry node %s is down: the cluster hears no heartbeat from it; its HA VMs fail "
                "over once its volume leases are stale too",
                text(x, "name"));
        }
        if (!in->quorum)
            add(&ev, &QUORUM_LOST, in->node, 0,
                "ferry node %s has no quorum: without it the node fences itself (its HA VMs "
                "are killed) and nothing starts there",
                in->node);
        if (!in->has_leader)
            add(&ev, &NO_LEADER, "cluster", 0,
                "the ferry cluster has no leader (as %s sees it): no change to the cluster can "
                "be made",
                in->node);
    }
    if (in->fenced)
        add(&ev, &NODE_FENCED, in->node, 0, "%s fenced itself (no quorum): its HA VMs were killed",
            in->node);
    json_array_foreach(in->vms, i, x)
    {
        const char *name = text(x, "name"), *state = text(x, "state");
        if (strcmp(state, "failed") == 0)
            add(&ev, &VM_FAILED, name, 0, "VM %s failed%s%s%s: %s", name,
                *text(x, "owner") ? " on " : "", text(x, "owner"),
                *text(x, "reason") ? "" : " (ferry vm show says why)", text(x, "reason"));
        const json_t *ha = json_object_get(json_object_get(x, "spec"), "ha");
        /* A stopped HA VM was stopped on purpose; priority none is never started by HA. */
        if (!in->clustered || !json_is_object(ha) || strcmp(text(ha, "priority"), "none") == 0 ||
            strcmp(state, "stopped") == 0)
            continue;
        const char *owner = text(x, "owner");
        if (strcmp(state, "running") != 0 || !node_up(in->nodes, owner))
            add(&ev, &HA_VM_NOT_RUNNING, name, 0,
                "HA VM %s does not run (%s on %s%s): ferry vm show %s says why it waits", name,
                state, *owner ? owner : "no node", node_up(in->nodes, owner) ? "" : ", down", name);
    }
    json_array_foreach(in->volumes, i, x)
    {
        const char *vol = text(x, "name");
        char subject[200];
        if (strcmp(text(x, "access"), "none") == 0) {
            snprintf(subject, sizeof(subject), "%s on %s", vol, in->node);
            add(&ev, &VOLUME_DEGRADED, subject, 0,
                "%s lost its path to volume %s: its dynamic VHDs are redirected through the "
                "coordinator, its direct-I/O VMs move away",
                in->node, vol);
        }
        const char *node;
        json_t *age;
        json_object_foreach((json_t *)json_object_get(x, "leases"), node, age)
        {
            json_int_t ms = json_integer_value(age);
            if (ms <= ALERTS_LEASE_STALE_MS)
                continue;
            snprintf(subject, sizeof(subject), "%s on %s", node, vol);
            add(&ev, &LEASE_STALE, subject, 0, "%s's lease on volume %s is %.1f s old", node, vol,
                (double)ms / 1000.0);
        }
    }
    /* Forget what is no longer seen, keeping the order of the rest. */
    unsigned w = 0;
    for (unsigned r = 0; r < a->n; r++)
        if (ev.keep[r])
            a->seen[w++] = a->seen[r];
    a->n = w;
    size_t n = json_array_size(ev.out);
    json_t **items = n ? malloc(n * sizeof(*items)) : NULL;
    if (n && !items) {
        json_decref(ev.out);
        return NULL;
    }
    for (i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(ev.out, i));
    if (n > 1) /* qsort takes no NULL array, even of 0 items */
        qsort(items, n, sizeof(*items), compare);
    json_array_clear(ev.out);
    for (i = 0; i < n; i++)
        json_array_append_new(ev.out, items[i]);
    free(items);
    return json_pack("{s:o}", "alerts", ev.out);
}
