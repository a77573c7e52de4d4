/* SPDX-License-Identifier: MIT */
/* A VM's resource history (vmhist.h). */
#include "vm/vmhist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vm/spec.h"

void vmhist_init(struct vmhist *h)
{
    memset(h, 0, sizeof(*h));
}

void vmhist_pause(struct vmhist *h)
{
    h->has_last = false;
}

static void push(struct vmhist_point *ring, unsigned size, unsigned *n, unsigned *next,
                 const struct vmhist_point *p)
{
    ring[*next] = *p;
    *next = (*next + 1) % size;
    if (*n < size)
        (*n)++;
}

/* Closes the 5 minutes summed in acc into the day's ring. */
static void close_bucket(struct vmhist *h)
{
    if (!h->acc_n)
        return;
    float n = (float)h->acc_n;
    struct vmhist_point p = {
        .t = (h->acc_bucket + 1) * VMHIST_COARSE_S,
        .cpu = h->acc.cpu / n,
        .memory_bytes = h->acc.memory_bytes / n,
        .disk_read_bps = h->acc.disk_read_bps / n,
        .disk_write_bps = h->acc.disk_write_bps / n,
        .net_rx_bps = h->acc.net_rx_bps / n,
        .net_tx_bps = h->acc.net_tx_bps / n,
    };
    push(h->coarse, VMHIST_COARSE_N, &h->coarse_n, &h->coarse_next, &p);
    memset(&h->acc, 0, sizeof(h->acc));
    h->acc_n = 0;
}

static float rate(uint64_t now, uint64_t before, double dt)
{
    return (float)((double)(now - before) / dt);
}

void vmhist_sample(struct vmhist *h, uint64_t t, const struct vmhist_counters *c)
{
    const struct vmhist_counters *l = &h->last;
    bool ok = h->has_last && t > h->last_t && c->cpu_s >= l->cpu_s &&
              c->disk_read_bytes >= l->disk_read_bytes &&
              c->disk_write_bytes >= l->disk_write_bytes && c->net_rx_bytes >= l->net_rx_bytes &&
              c->net_tx_bytes >= l->net_tx_bytes;
    if (ok) {
        double dt = (double)(t - h->last_t);
        struct vmhist_point p = {
            .t = t,
            .cpu = (float)((c->cpu_s - l->cpu_s) / dt),
            .memory_bytes = (float)c->memory_bytes,
            .disk_read_bps = rate(c->disk_read_bytes, l->disk_read_bytes, dt),
            .disk_write_bps = rate(c->disk_write_bytes, l->disk_write_bytes, dt),
            .net_rx_bps = rate(c->net_rx_bytes, l->net_rx_bytes, dt),
            .net_tx_bps = rate(c->net_tx_bytes, l->net_tx_bytes, dt),
        };
        push(h->fine, VMHIST_FINE_N, &h->fine_n, &h->fine_next, &p);
        /* The point covers the step before t: it belongs to the 5 minutes t - 1 is in. */
        uint64_t bucket = (t - 1) / VMHIST_COARSE_S;
        if (h->acc_n && bucket != h->acc_bucket)
            close_bucket(h);
        h->acc_bucket = bucket;
        h->acc.cpu += p.cpu;
        h->acc.memory_bytes += p.memory_bytes;
        h->acc.disk_read_bps += p.disk_read_bps;
        h->acc.disk_write_bps += p.disk_write_bps;
        h->acc.net_rx_bps += p.net_rx_bps;
        h->acc.net_tx_bps += p.net_tx_bps;
        h->acc_n++;
    }
    h->last = *c;
    h->last_t = t;
    h->has_last = true;
}

static json_t *point_json(const struct vmhist_point *p)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "t", (json_int_t)p->t, "cpu",
                     (double)p->cpu, "memory_bytes", (double)p->memory_bytes, "disk_read_bps",
                     (double)p->disk_read_bps, "disk_write_bps", (double)p->disk_write_bps,
                     "net_rx_bps", (double)p->net_rx_bps, "net_tx_bps", (double)p->net_tx_bps);
}

json_t *vmhist_json(const struct vmhist *h, bool day, uint64_t now_s)
{
    json_t *pts = json_array();
    const struct vmhist_point *ring = day ? h->coarse : h->fine;
    unsigned size = day ? VMHIST_COARSE_N : VMHIST_FINE_N;
    unsigned n = day ? h->coarse_n : h->fine_n, next = day ? h->coarse_next : h->fine_next;
    uint64_t span =
        day ? (uint64_t)VMHIST_COARSE_S * VMHIST_COARSE_N : (uint64_t)VMHIST_STEP_S * VMHIST_FINE_N;
    for (unsigned i = 0; i < n; i++) {
        const struct vmhist_point *p = &ring[(next + size - n + i) % size];
        if (p->t + span > now_s && p->t <= now_s)
            json_array_append_new(pts, point_json(p));
    }
    return json_pack("{s:s, s:i, s:o}", "range", day ? "day" : "hour", "step_s",
                     day ? VMHIST_COARSE_S : VMHIST_STEP_S, "points", pts);
}

/* ---- the set ---- */

struct vmhist_entry {
    char name[VM_NAME_MAX + 1];
    bool marked;
    struct vmhist h;
};

struct vmhist_set {
    struct vmhist_entry **e;
    unsigned n, cap;
};

int vmhist_set_new(struct vmhist_set **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void vmhist_set_free(struct vmhist_set *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        free(s->e[i]);
    free(s->e);
    free(s);
}

struct vmhist *vmhist_set_get(struct vmhist_set *s, const char *name, bool create)
{
    for (unsigned i = 0; i < s->n; i++)
        if (strcmp(s->e[i]->name, name) == 0) {
            if (create)
                s->e[i]->marked = true;
            return &s->e[i]->h;
        }
    if (!create || s->n >= VMHIST_VMS_MAX || strlen(name) > VM_NAME_MAX)
        return NULL;
    if (s->n == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 16;
        struct vmhist_entry **e = realloc(s->e, cap * sizeof(*e));
        if (!e)
            return NULL;
        s->e = e;
        s->cap = cap;
    }
    struct vmhist_entry *en = malloc(sizeof(*en));
    if (!en)
        return NULL;
    strcpy(en->name, name);
    en->marked = true;
    vmhist_init(&en->h);
    s->e[s->n++] = en;
    return &en->h;
}

void vmhist_set_mark(struct vmhist_set *s)
{
    for (unsigned i = 0; i < s->n; i++)
        s->e[i]->marked = false;
}

void vmhist_set_sweep(struct vmhist_set *s)
{
    unsigned w = 0;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->e[i]->marked)
            s->e[w++] = s->e[i];
        else
            free(s->e[i]);
    }
    s->n = w;
}

unsigned vmhist_set_count(const struct vmhist_set *s)
{
    return s->n;
}
