/* SPDX-License-Identifier: MIT */
/* The failover plan (failplan.h): pure, on the records passed in. */
#include "fleet/failplan.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOWHERE ((size_t)-1)
#define DEFAULT_PRIORITY 500
#define MAX_PRIORITY 1000

/* A VM to recover; its strings are borrowed from the records. */
struct want {
    const char *name, *owner;
    const json_t *preferred, *possible; /* arrays of strings, or NULL */
    const char *cls;                    /* anti-affinity class, "" for none */
    bool strict;
    int tier;        /* 0 high, 1 medium, 2 low */
    json_int_t prio; /* the spec's numeric priority */
    json_int_t mem;
    size_t index; /* in vms: the last tie-break, so that the order is total */
    size_t room;  /* where the plan put it, NOWHERE if nowhere */
};

/* A node that may take VMs: up, active and not dead. */
struct room {
    const char *name; /* borrowed */
    json_int_t left;  /* free_mib less what this plan placed there */
    bool allowed;     /* for the VM being placed: in its ha.possible */
    bool holds;       /* for the VM being placed: holds a VM of its class */
};

/* A member that is missing or JSON null counts as absent (as in vm/spec.c). */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static bool has_string(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *x;
    json_array_foreach(arr, i, x)
    {
        const char *v = json_string_value(x);
        if (v && strcmp(v, s) == 0)
            return true;
    }
    return false;
}

/* Absent, or an array of strings. */
static bool names_ok(const json_t *v)
{
    if (!v)
        return true;
    if (!json_is_array(v))
        return false;
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x))
            return false;
    }
    return true;
}

/* 0 high, 1 medium, 2 low, 3 none, -1 anything else. */
static int tier_of(const char *p)
{
    static const char *const tiers[] = {"high", "medium", "low", "none"};
    for (int i = 0; i < 4; i++)
        if (strcmp(p, tiers[i]) == 0)
            return i;
    return -1;
}

/* The last-known states in which the VM should run. */
static bool should_run(const char *state)
{
    static const char *const states[] = {"running",  "paused",    "failed",
                                         "starting", "migrating", "recovering"};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(state, states[i]) == 0)
            return true;
    return false;
}

/* Whether record rec (at index in vms) is a VM to recover; fills w if so. */
static bool want_read(const json_t *rec, size_t index, const json_t *dead, struct want *w)
{
    const char *name = json_string_value(json_object_get(rec, "name"));
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    const char *state = json_string_value(json_object_get(rec, "state"));
    const json_t *spec = json_object_get(rec, "spec");
    const json_t *ha = member(spec, "ha");
    const json_t *mem = json_object_get(spec, "memory_mib");
    if (!name || !name[0] || !owner || !state || !json_is_object(spec) || !json_is_object(ha) ||
        !json_is_integer(mem) || json_integer_value(mem) <= 0)
        return false;
    if (!has_string(dead, owner) || !should_run(state))
        return false;
    const json_t *prio = member(spec, "priority");
    const json_t *tier = member(ha, "priority");
    const json_t *cls = member(ha, "anti_affinity");
    const json_t *strict = member(ha, "anti_affinity_strict");
    const json_t *preferred = member(ha, "preferred");
    const json_t *possible = member(ha, "possible");
    if (prio && (!json_is_integer(prio) || json_integer_value(prio) < 0 ||
                 json_integer_value(prio) > MAX_PRIORITY))
        return false;
    if ((tier && !json_is_string(tier)) || (cls && !json_is_string(cls)) ||
        (strict && !json_is_boolean(strict)) || !names_ok(preferred) || !names_ok(possible))
        return false;
    w->tier = tier ? tier_of(json_string_value(tier)) : 1;
    if (w->tier < 0 || w->tier > 2)
        return false;
    w->name = name;
    w->owner = owner;
    w->preferred = preferred;
    w->possible = json_array_size(possible) ? possible : NULL;
    w->cls = cls ? json_string_value(cls) : "";
    w->strict = strict && json_is_true(strict);
    w->prio = prio ? json_integer_value(prio) : DEFAULT_PRIORITY;
    w->mem = json_integer_value(mem);
    w->index = index;
    w->room = NOWHERE;
    return true;
}

static int want_cmp(const void *pa, const void *pb)
{
    const struct want *a = pa, *b = pb;
    if (a->tier != b->tier)
        return a->tier < b->tier ? -1 : 1;
    if (a->prio != b->prio)
        return a->prio > b->prio ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The nodes of nodes that may take VMs into r, a name given twice once; their count. */
static size_t rooms_read(const json_t *nodes, const json_t *dead, struct room *r)
{
    size_t n = 0, i, k;
    const json_t *node;
    json_array_foreach(nodes, i, node)
    {
        const char *name = json_string_value(json_object_get(node, "name"));
        const char *state = json_string_value(json_object_get(node, "state"));
        const char *admin = json_string_value(json_object_get(node, "admin"));
        const json_t *free_mib = json_object_get(json_object_get(node, "memory"), "free_mib");
        if (!name || !state || !admin || !json_is_integer(free_mib))
            continue;
        for (k = 0; k < n && strcmp(r[k].name, name) != 0; k++)
            ;
        if (k < n || strcmp(state, "up") != 0 || strcmp(admin, "active") != 0 ||
            has_string(dead, name))
            continue;
        r[n].name = name;
        r[n].left = json_integer_value(free_mib) > 0 ? json_integer_value(free_mib) : 0;
        n++;
    }
    return n;
}

static size_t room_find(const struct room *r, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(r[k].name, name) == 0)
            return k;
    return NOWHERE;
}

/* Marks which rooms w may go to, and which hold a VM of its class: a live record (vms) or
 * one of the first nplaced VMs of the plan (done). */
static void rooms_mark(struct room *r, size_t n, const struct want *w, const json_t *vms,
                       const struct want *done, size_t nplaced)
{
    for (size_t k = 0; k < n; k++) {
        r[k].allowed = !w->possible || has_string(w->possible, r[k].name);
        r[k].holds = false;
    }
    if (!w->cls[0])
        return;
    size_t i, k;
    const json_t *rec;
    json_array_foreach(vms, i, rec)
    {
        const char *owner = json_string_value(json_object_get(rec, "owner"));
        const char *state = json_string_value(json_object_get(rec, "state"));
        const char *cls = json_string_value(
            json_object_get(json_object_get(json_object_get(rec, "spec"), "ha"), "anti_affinity"));
        /* Rooms are never dead, so a record of a dead owner finds none. */
        if (owner && state && cls && strcmp(state, "stopped") != 0 && strcmp(cls, w->cls) == 0 &&
            (k = room_find(r, n, owner)) != NOWHERE)
            r[k].holds = true;
    }
    for (i = 0; i < nplaced; i++)
        if (done[i].room != NOWHERE && strcmp(done[i].cls, w->cls) == 0)
            r[done[i].room].holds = true;
}

static bool fits(const struct room *r, const struct want *w, bool avoid)
{
    return r->allowed && r->left >= w->mem && !(avoid && r->holds);
}

/* The first preferred room that fits, else the one that fits with the most left, then the
 * first name; NOWHERE if none fits. avoid: rooms holding a VM of w's class do not fit. */
static size_t choose(const struct room *r, size_t n, const struct want *w, bool avoid)
{
    size_t i, k, best = NOWHERE;
    const json_t *p;
    json_array_foreach(w->preferred, i, p)
    {
        k = room_find(r, n, json_string_value(p));
        if (k != NOWHERE && fits(&r[k], w, avoid))
            return k;
    }
    for (k = 0; k < n; k++) {
        if (!fits(&r[k], w, avoid))
            continue;
        if (best == NOWHERE || r[k].left > r[best].left ||
            (r[k].left == r[best].left && strcmp(r[k].name, r[best].name) < 0))
            best = k;
    }
    return best;
}

/* Appends to the string in buf (size bytes), cut when full. */
__attribute__((format(printf, 3, 4))) static void append(char *buf, size_t size, const char *fmt,
                                                         ...)
{
    size_t len = strnlen(buf, size);
    if (len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/* Why w goes nowhere, into why (size bytes). */
static void say_why(char *why, size_t size, const struct room *r, size_t n, const struct want *w)
{
    size_t k, i, largest = NOWHERE, count = 0;
    const json_t *p;
    why[0] = '\0';
    for (k = 0; k < n; k++) {
        if (!r[k].allowed)
            continue;
        count++;
        if (largest == NOWHERE || r[k].left > r[largest].left ||
            (r[k].left == r[largest].left && strcmp(r[k].name, r[largest].name) < 0))
            largest = k;
    }
    if (!count && w->possible) {
        append(why, size, "none of ha.possible (");
        json_array_foreach(w->possible, i, p)
        {
            append(why, size, "%s%s", i ? ", " : "", json_string_value(p));
        }
        append(why, size, ") is up, active and alive");
        return;
    }
    if (!count) {
        append(why, size, "no node is up, active and alive");
        return;
    }
    if (choose(r, n, w, false) == NOWHERE) {
        append(why, size, "no up, active node%s has %lld MiB free (largest: %s, %lld MiB)",
               w->possible ? " of ha.possible" : "", (long long)w->mem, r[largest].name,
               (long long)r[largest].left);
        return;
    }
    /* Something fits, so it is anti-affinity that refused: a strict class. */
    append(why, size,
           "ha.anti_affinity_strict: every up, active node%s with %lld MiB free holds a VM of "
           "class %s (",
           w->possible ? " of ha.possible" : "", (long long)w->mem, w->cls);
    for (k = 0, count = 0; k < n; k++)
        if (fits(&r[k], w, false))
            append(why, size, "%s%s", count++ ? ", " : "", r[k].name);
    append(why, size, ")");
}

size_t failplan_make(const json_t *dead, const json_t *nodes, const json_t *vms,
                     struct failplan_move *out, size_t max)
{
    if (!max)
        return 0;
    size_t nvms = json_array_size(vms), nnodes = json_array_size(nodes);
    struct want *w = calloc(nvms ? nvms : 1, sizeof(*w));
    struct room *r = calloc(nnodes ? nnodes : 1, sizeof(*r));
    size_t nw = 0, nr, i;
    const json_t *rec;
    if (!w || !r) {
        free(w);
        free(r);
        return 0;
    }
    json_array_foreach(vms, i, rec)
    {
        if (want_read(rec, i, dead, &w[nw]))
            nw++;
    }
    qsort(w, nw, sizeof(*w), want_cmp);
    nr = rooms_read(nodes, dead, r);
    if (nw > max)
        nw = max;
    for (i = 0; i < nw; i++) {
        struct failplan_move *m = &out[i];
        memset(m, 0, sizeof(*m));
        snprintf(m->vm, sizeof(m->vm), "%s", w[i].name);
        snprintf(m->from, sizeof(m->from), "%s", w[i].owner);
        rooms_mark(r, nr, &w[i], vms, w, i);
        size_t k = w[i].cls[0] ? choose(r, nr, &w[i], true) : NOWHERE;
        if (k == NOWHERE && !(w[i].cls[0] && w[i].strict))
            k = choose(r, nr, &w[i], false);
        if (k == NOWHERE) {
            say_why(m->why, sizeof(m->why), r, nr, &w[i]);
            continue;
        }
        w[i].room = k;
        r[k].left -= w[i].mem;
        snprintf(m->to, sizeof(m->to), "%s", r[k].name);
    }
    free(w);
    free(r);
    return nw;
}
