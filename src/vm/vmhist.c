/* SPDX-License-Identifier: MIT */
/* A VM's resource history (vmhist.h). */
#include "vm/vmhist.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfield.h"
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

/* ---- merging, and the JSON of files and peers ---- */

/* The points of a ring oldest first into out (room for size); their count. */
static unsigned ring_list(const struct vmhist_point *ring, unsigned size, unsigned n, unsigned next,
                          struct vmhist_point *out)
{
    for (unsigned i = 0; i < n; i++)
        out[i] = ring[(next + size - n + i) % size];
    return n;
}

/* ring := the points of a (mine) and b (theirs), both oldest first, by time, the newest
 * size kept; at the same t, a's. */
static void ring_merge(struct vmhist_point *ring, unsigned size, unsigned *n, unsigned *next,
                       const struct vmhist_point *a, unsigned na, const struct vmhist_point *b,
                       unsigned nb)
{
    struct vmhist_point *all = malloc((na + nb) * sizeof(*all) + 1);
    if (!all)
        return; /* h keeps its own points */
    unsigned i = 0, j = 0, k = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a[i].t <= b[j].t)) {
            if (j < nb && b[j].t == a[i].t)
                j++;
            all[k++] = a[i++];
        } else {
            all[k++] = b[j++];
        }
    }
    unsigned skip = k > size ? k - size : 0;
    *n = k - skip;
    memcpy(ring, all + skip, *n * sizeof(*ring));
    *next = *n % size;
    free(all);
}

void vmhist_merge(struct vmhist *h, const struct vmhist *o)
{
    struct vmhist_point a[VMHIST_FINE_N], b[VMHIST_FINE_N + 1];
    unsigned na = ring_list(h->fine, VMHIST_FINE_N, h->fine_n, h->fine_next, a);
    unsigned nb = ring_list(o->fine, VMHIST_FINE_N, o->fine_n, o->fine_next, b);
    ring_merge(h->fine, VMHIST_FINE_N, &h->fine_n, &h->fine_next, a, na, b, nb);
    struct vmhist tmp = *o; /* o's 5 minutes under way, closed into its day ring if need be */
    if (o->acc_n && !h->acc_n) {
        h->acc = o->acc;
        h->acc_n = o->acc_n;
        h->acc_bucket = o->acc_bucket;
    } else if (o->acc_n && h->acc_bucket == o->acc_bucket) {
        h->acc.cpu += o->acc.cpu;
        h->acc.memory_bytes += o->acc.memory_bytes;
        h->acc.disk_read_bps += o->acc.disk_read_bps;
        h->acc.disk_write_bps += o->acc.disk_write_bps;
        h->acc.net_rx_bps += o->acc.net_rx_bps;
        h->acc.net_tx_bps += o->acc.net_tx_bps;
        h->acc_n += o->acc_n;
    } else if (o->acc_n) {
        close_bucket(&tmp);
    }
    na = ring_list(h->coarse, VMHIST_COARSE_N, h->coarse_n, h->coarse_next, a);
    nb = ring_list(tmp.coarse, VMHIST_COARSE_N, tmp.coarse_n, tmp.coarse_next, b);
    ring_merge(h->coarse, VMHIST_COARSE_N, &h->coarse_n, &h->coarse_next, a, na, b, nb);
}

static json_t *point_row(const struct vmhist_point *p)
{
    return json_pack("[I, f, f, f, f, f, f]", (json_int_t)p->t, (double)p->cpu,
                     (double)p->memory_bytes, (double)p->disk_read_bps, (double)p->disk_write_bps,
                     (double)p->net_rx_bps, (double)p->net_tx_bps);
}

static json_t *ring_dump(const struct vmhist_point *ring, unsigned size, unsigned n, unsigned next)
{
    json_t *a = json_array();
    for (unsigned i = 0; a && i < n; i++)
        if (json_array_append_new(a, point_row(&ring[(next + size - n + i) % size])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *vmhist_dump(const struct vmhist *h)
{
    json_t *j = json_pack("{s:o?, s:o?}", "fine",
                          ring_dump(h->fine, VMHIST_FINE_N, h->fine_n, h->fine_next), "coarse",
                          ring_dump(h->coarse, VMHIST_COARSE_N, h->coarse_n, h->coarse_next));
    if (!j || !json_object_get(j, "fine") || !json_object_get(j, "coarse")) {
        json_decref(j);
        return NULL;
    }
    if (h->acc_n) {
        struct vmhist_point p = h->acc;
        p.t = h->acc_bucket;
        json_t *row = point_row(&p);
        if (!row || json_array_insert_new(row, 1, json_integer(h->acc_n)) < 0 ||
            json_object_set_new(j, "acc", row) < 0) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* One number of a row: finite, 0 or more, below VMHIST_VALUE_MAX. */
static int row_value(const json_t *v, const char *field, size_t i, float *out, struct ferr *e)
{
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d < 0 || d >= VMHIST_VALUE_MAX)
        return ferr_set(e, FERR_INVALID, "%s[%zu]: expected a number in 0..1e18, not %s", field, i,
                        json_is_number(v) ? "that" : jfield_type(v));
    *out = (float)d;
    return 0;
}

/* A point [t, 6 numbers] (acc: [bucket, n, 6 numbers]). */
static int row_read(const json_t *row, const char *field, size_t i, bool acc, uint64_t t_max,
                    struct vmhist_point *p, unsigned *n, struct ferr *e)
{
    size_t want = acc ? 8 : 7, at = acc ? 2 : 1;
    char f[48];
    snprintf(f, sizeof(f), "%s[%zu]", field, i);
    if (!json_is_array(row) || json_array_size(row) != want)
        return ferr_set(e, FERR_INVALID, "%s: expected an array of %zu numbers", f, want);
    json_int_t t, cnt = 0;
    if (jfield_int(json_array_get(row, 0), f, 1, (json_int_t)t_max, &t, e) < 0)
        return FERR_INVALID;
    if (acc &&
        jfield_int(json_array_get(row, 1), f, 1, 10 * VMHIST_COARSE_S / VMHIST_STEP_S, &cnt, e) < 0)
        return FERR_INVALID;
    float *v[] = {&p->cpu,        &p->memory_bytes, &p->disk_read_bps, &p->disk_write_bps,
                  &p->net_rx_bps, &p->net_tx_bps};
    for (size_t k = 0; k < 6; k++)
        if (row_value(json_array_get(row, at + k), f, at + k, v[k], e) < 0)
            return FERR_INVALID;
    p->t = (uint64_t)t;
    if (n)
        *n = (unsigned)cnt;
    return 0;
}

/* A ring's points, oldest first, at most size, times increasing. */
static int ring_read(const json_t *a, const char *field, unsigned size, uint64_t t_max,
                     struct vmhist_point *ring, unsigned *n, struct ferr *e)
{
    if (!json_is_array(a))
        return ferr_set(e, FERR_INVALID, "%s: expected an array, not %s", field, jfield_type(a));
    if (json_array_size(a) > size)
        return ferr_set(e, FERR_INVALID, "%s: %zu points, more than the %u it holds", field,
                        json_array_size(a), size);
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (row_read(json_array_get(a, i), field, i, false, t_max, &ring[i], NULL, e) < 0)
            return FERR_INVALID;
        if (i > 0 && ring[i].t <= ring[i - 1].t)
            return ferr_set(e, FERR_INVALID, "%s[%zu]: its time is not after the one before", field,
                            i);
    }
    *n = (unsigned)json_array_size(a);
    return 0;
}

int vmhist_undump(struct vmhist *h, const json_t *j, uint64_t now_s, struct ferr *e)
{
    static const char *const fields[] = {"fine", "coarse", "acc", NULL};
    struct vmhist r;
    const char *bad;
    if (!json_is_object(j))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(j));
    if ((bad = jfield_unknown(j, fields)))
        return ferr_set(e, FERR_INVALID, "%.64s: unknown field", bad);
    vmhist_init(&r);
    uint64_t t_max = now_s + VMHIST_SKEW_S;
    if (ring_read(json_object_get(j, "fine"), "fine", VMHIST_FINE_N, t_max, r.fine, &r.fine_n, e) <
            0 ||
        ring_read(json_object_get(j, "coarse"), "coarse", VMHIST_COARSE_N, t_max, r.coarse,
                  &r.coarse_n, e) < 0)
        return FERR_INVALID;
    r.fine_next = r.fine_n % VMHIST_FINE_N;
    r.coarse_next = r.coarse_n % VMHIST_COARSE_N;
    const json_t *acc = json_object_get(j, "acc");
    if (acc) {
        if (row_read(acc, "acc", 0, true, t_max / VMHIST_COARSE_S, &r.acc, &r.acc_n, e) < 0)
            return FERR_INVALID;
        r.acc_bucket = r.acc.t;
        r.acc.t = 0;
        if (r.coarse_n && r.coarse[r.coarse_n - 1].t > r.acc_bucket * VMHIST_COARSE_S)
            return ferr_set(e, FERR_INVALID, "acc: its 5 minutes are before the last of coarse");
    }
    *h = r;
    return 0;
}

/* ---- the set ---- */

struct vmhist_entry {
    char name[VM_NAME_MAX + 1];
    bool marked;
    bool arrived;        /* made or taken back, its past not yet asked for */
    uint64_t departed_s; /* when its VM left this node; 0 here */
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

static struct vmhist_entry *find(const struct vmhist_set *s, const char *name)
{
    for (unsigned i = 0; i < s->n; i++)
        if (strcmp(s->e[i]->name, name) == 0)
            return s->e[i];
    return NULL;
}

static void drop_at(struct vmhist_set *s, unsigned i)
{
    free(s->e[i]);
    memmove(&s->e[i], &s->e[i + 1], (s->n - i - 1) * sizeof(*s->e));
    s->n--;
}

/* Room for one more: a slot, or the history of the VM that left longest ago given up. */
static bool make_room(struct vmhist_set *s)
{
    if (s->n >= VMHIST_VMS_MAX) {
        unsigned old = s->n;
        for (unsigned i = 0; i < s->n; i++)
            if (s->e[i]->departed_s && (old == s->n || s->e[i]->departed_s < s->e[old]->departed_s))
                old = i;
        if (old == s->n)
            return false;
        drop_at(s, old);
    }
    if (s->n == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 16;
        struct vmhist_entry **e = realloc(s->e, cap * sizeof(*e));
        if (!e)
            return false;
        s->e = e;
        s->cap = cap;
    }
    return true;
}

struct vmhist *vmhist_set_get(struct vmhist_set *s, const char *name, bool create)
{
    struct vmhist_entry *en = find(s, name);
    if (en) {
        if (create) {
            en->marked = true;
            if (en->departed_s) {
                en->departed_s = 0;
                en->arrived = true;
            }
        }
        return &en->h;
    }
    if (!create || strlen(name) > VM_NAME_MAX || !make_room(s))
        return NULL;
    en = malloc(sizeof(*en));
    if (!en)
        return NULL;
    strcpy(en->name, name);
    en->marked = true;
    en->arrived = true;
    en->departed_s = 0;
    vmhist_init(&en->h);
    s->e[s->n++] = en;
    return &en->h;
}

bool vmhist_set_take_arrived(struct vmhist_set *s, const char *name)
{
    struct vmhist_entry *en = find(s, name);
    bool was = en && en->arrived;
    if (en)
        en->arrived = false;
    return was;
}

void vmhist_set_mark(struct vmhist_set *s)
{
    for (unsigned i = 0; i < s->n; i++)
        s->e[i]->marked = false;
}

void vmhist_set_sweep(struct vmhist_set *s, uint64_t now_s, uint64_t keep_s)
{
    for (unsigned i = 0; i < s->n;) {
        struct vmhist_entry *en = s->e[i];
        if (!en->marked && !en->departed_s) {
            en->departed_s = now_s ? now_s : 1;
            en->arrived = false;
            vmhist_pause(&en->h);
        }
        if (en->departed_s && (keep_s == 0 || now_s >= en->departed_s + keep_s))
            drop_at(s, i);
        else
            i++;
    }
}

void vmhist_set_each(struct vmhist_set *s, vmhist_set_fn fn, void *data)
{
    for (unsigned i = 0; i < s->n;) {
        if (fn(s->e[i]->name, &s->e[i]->h, s->e[i]->departed_s, data))
            i++;
        else
            drop_at(s, i);
    }
}

unsigned vmhist_set_count(const struct vmhist_set *s)
{
    return s->n;
}

/* ---- the file ---- */

char *vmhist_file_text(struct vmhist_set *s, const struct vmhist *node, uint64_t now_s, size_t *len)
{
    json_t *vms = json_array();
    json_t *j = json_pack("{s:s, s:i, s:I, s:o?, s:o?}", "format", VMHIST_FILE_FORMAT, "version",
                          VMHIST_FILE_VERSION, "saved_s", (json_int_t)now_s, "node",
                          vmhist_dump(node), "vms", vms);
    char *text = NULL;
    if (!j || !json_object_get(j, "node") || !vms)
        goto out;
    for (unsigned i = 0; i < s->n; i++) {
        const struct vmhist_entry *en = s->e[i];
        json_t *v = json_pack("{s:s, s:I, s:o?}", "name", en->name, "departed_s",
                              (json_int_t)en->departed_s, "history", vmhist_dump(&en->h));
        if (!v || !json_object_get(v, "history") || json_array_append_new(vms, v) < 0) {
            json_decref(v);
            goto out;
        }
    }
    text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (text && len)
        *len = strlen(text);
out:
    json_decref(j);
    return text;
}

/* One VM of the file into a new entry (*out), or FERR_INVALID. */
static int entry_read(const json_t *v, size_t i, uint64_t now_s, struct vmhist_entry **out,
                      struct ferr *e)
{
    static const char *const fields[] = {"name", "departed_s", "history", NULL};
    const char *bad, *name;
    json_int_t dep;
    char f[48];
    snprintf(f, sizeof(f), "vms[%zu]", i);
    if (!json_is_object(v))
        return ferr_set(e, FERR_INVALID, "%s: expected an object, not %s", f, jfield_type(v));
    if ((bad = jfield_unknown(v, fields)))
        return ferr_set(e, FERR_INVALID, "%s: %.64s: unknown field", f, bad);
    if (jfield_str(json_object_get(v, "name"), "name", &name, e) < 0 ||
        jfield_int(json_object_get(v, "departed_s"), "departed_s", 0,
                   (json_int_t)(now_s + VMHIST_SKEW_S), &dep, e) < 0)
        return ferr_prefix(e, "%s", f);
    char q[80];
    if (!name[0] || strlen(name) > VM_NAME_MAX)
        return ferr_set(e, FERR_INVALID, "%s: name %s: expected 1..%d characters", f,
                        jfield_quote(name, q, sizeof(q)), VM_NAME_MAX);
    struct vmhist_entry *en = calloc(1, sizeof(*en));
    if (!en)
        return ferr_set(e, -ENOMEM, "out of memory");
    if (vmhist_undump(&en->h, json_object_get(v, "history"), now_s, e) < 0) {
        free(en);
        return ferr_prefix(e, "%s (%s): history", f, jfield_quote(name, q, sizeof(q)));
    }
    strcpy(en->name, name);
    en->departed_s = (uint64_t)dep;
    en->marked = true;
    *out = en;
    return 0;
}

int vmhist_file_load(struct vmhist_set *s, struct vmhist *node, const char *text, size_t len,
                     uint64_t now_s, struct ferr *e)
{
    static const char *const fields[] = {"format", "version", "saved_s", "node", "vms", NULL};
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    struct vmhist_set *n = NULL;
    struct vmhist nh;
    json_int_t version, saved;
    const char *bad, *format;
    int rc = FERR_INVALID;
    if (!j) {
        ferr_set(e, FERR_INVALID, "not JSON (cut short?): line %d: %.100s", je.line, je.text);
        goto out;
    }
    if (!json_is_object(j)) {
        ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(j));
        goto out;
    }
    if (jfield_str(json_object_get(j, "format"), "format", &format, e) < 0)
        goto out;
    if (strcmp(format, VMHIST_FILE_FORMAT) != 0) {
        char q[80];
        ferr_set(e, FERR_INVALID, "format %s is not " VMHIST_FILE_FORMAT,
                 jfield_quote(format, q, sizeof(q)));
        goto out;
    }
    if (jfield_int(json_object_get(j, "version"), "version", 0, 1 << 30, &version, e) < 0)
        goto out;
    if (version != VMHIST_FILE_VERSION) {
        ferr_set(e, FERR_INVALID, "version %lld: this ferryd reads version %d", (long long)version,
                 VMHIST_FILE_VERSION);
        goto out;
    }
    if ((bad = jfield_unknown(j, fields))) {
        ferr_set(e, FERR_INVALID, "%.64s: unknown field", bad);
        goto out;
    }
    if (jfield_int(json_object_get(j, "saved_s"), "saved_s", 0, (json_int_t)(now_s + VMHIST_SKEW_S),
                   &saved, e) < 0)
        goto out;
    if (vmhist_undump(&nh, json_object_get(j, "node"), now_s, e) < 0) {
        ferr_prefix(e, "node");
        goto out;
    }
    const json_t *vms = json_object_get(j, "vms");
    if (!json_is_array(vms) || json_array_size(vms) > VMHIST_VMS_MAX) {
        ferr_set(e, FERR_INVALID, "vms: expected an array of at most %d, not %s", VMHIST_VMS_MAX,
                 jfield_type(vms));
        goto out;
    }
    if ((rc = vmhist_set_new(&n)) < 0) {
        ferr_set(e, rc, "out of memory");
        goto out;
    }
    n->cap = (unsigned)json_array_size(vms) + 1;
    if (!(n->e = calloc(n->cap, sizeof(*n->e)))) {
        rc = ferr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(vms); i++) {
        struct vmhist_entry *en = NULL;
        if ((rc = entry_read(json_array_get(vms, i), i, now_s, &en, e)) < 0)
            goto out;
        if (find(n, en->name)) {
            char q[80];
            rc = ferr_set(e, FERR_INVALID, "vms[%zu]: %s is there twice", i,
                          jfield_quote(en->name, q, sizeof(q)));
            free(en);
            goto out;
        }
        n->e[n->n++] = en;
    }
    /* Swap the contents: s keeps its address. */
    struct vmhist_set old = *s;
    *s = *n;
    *n = old;
    *node = nh;
    rc = 0;
out:
    vmhist_set_free(n);
    json_decref(j);
    return rc;
}
