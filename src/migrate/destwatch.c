/* SPDX-License-Identifier: MIT */
/* The source's watch over a migration's destination, and the destination clean-up that is
 * retried until the destination's ferryd can be reached again. Without the watch a migration
 * to a host whose ferryd died would complete into a QEMU nobody manages, and one to a host cut
 * off the network would wait on its TCP stream for as long as the kernel retransmits. */
#include "migrate/destwatch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "vm/vm.h"

struct destwatch {
    struct cluster *c;
    char to[64];
    char name[VM_NAME_MAX + 1];
    destwatch_lost_cb lost;
    void *data;
    uv_timer_t timer;
    unsigned refs; /* the timer, a ping in flight */
    bool stopped, in_flight;
    uint64_t last_good_ms;
    char last_err[200];
};

static void watch_unref(struct destwatch *w)
{
    if (--w->refs == 0)
        free(w);
}

static void watch_closed(uv_handle_t *h)
{
    watch_unref(h->data);
}

static void declare_lost(struct destwatch *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void declare_lost(struct destwatch *w, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    destwatch_lost_cb cb = w->lost;
    w->lost = NULL; /* once */
    uv_timer_stop(&w->timer);
    if (cb)
        cb(why, w->data);
}

static void pinged(int status, json_t *body, const struct ferr *e, void *data)
{
    struct destwatch *w = data;
    w->in_flight = false;
    if (!w->stopped && w->lost) {
        const char *st = json_string_value(json_object_get(body, "state"));
        if (e) { /* unreachable or refusing: the silence counts, unless the VM is gone */
            snprintf(w->last_err, sizeof(w->last_err), "%.199s", e->msg);
            if (e->code == FERR_NOTFOUND)
                declare_lost(w, "%s no longer holds the incoming %s", w->to, w->name);
        } else if (st && (strcmp(st, "incoming") == 0 || strcmp(st, "running") == 0)) {
            w->last_good_ms = now_mono_ms();
        } else {
            declare_lost(w, "the incoming %s on %s is %s", w->name, w->to, st ? st : "gone");
        }
    }
    json_decref(body);
    watch_unref(w);
}

static void tick(uv_timer_t *t)
{
    struct destwatch *w = t->data;
    uint64_t silent = now_mono_ms() - w->last_good_ms;
    if (silent >= DESTWATCH_LOST_MS) {
        declare_lost(w, "%s's ferryd has not answered for %llu ms%s%s", w->to,
                     (unsigned long long)silent, w->last_err[0] ? ": " : "", w->last_err);
        return;
    }
    if (w->in_flight)
        return; /* a cut link: the request hangs; the silence counts */
    char path[128 + VM_NAME_MAX];
    snprintf(path, sizeof(path), "/v1/vms/%s", w->name);
    struct ferr e = {0};
    w->refs++;
    w->in_flight = true;
    if (cluster_call(w->c, w->to, "GET", path, NULL, pinged, w, &e) < 0) {
        w->in_flight = false;
        w->refs--;
        snprintf(w->last_err, sizeof(w->last_err), "%.199s", e.msg);
    }
}

struct destwatch *destwatch_start(uv_loop_t *loop, struct cluster *c, const char *to,
                                  const char *name, destwatch_lost_cb lost, void *data)
{
    struct destwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->c = c;
    snprintf(w->to, sizeof(w->to), "%s", to);
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->lost = lost;
    w->data = data;
    w->refs = 1;
    w->last_good_ms = now_mono_ms();
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, tick, DESTWATCH_PING_MS, DESTWATCH_PING_MS);
    return w;
}

void destwatch_stop(struct destwatch *w)
{
    if (!w)
        return;
    w->stopped = true;
    w->lost = NULL;
    uv_close((uv_handle_t *)&w->timer, watch_closed);
}

/* ---- abort, retried ---- */

struct abort_try {
    struct cluster *c;
    char to[64];
    char name[VM_NAME_MAX + 1];
    uint64_t deadline_ms;
    unsigned tries;
    uv_timer_t timer;
    destwatch_abort_cb done;
    void *data;
};

static void abort_closed(uv_handle_t *h)
{
    free(h->data);
}

static void abort_send(struct abort_try *a);

static void abort_tick(uv_timer_t *t)
{
    abort_send(t->data);
}

static void abort_answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct abort_try *a = data;
    json_decref(body);
    /* Unreachable or timed out: try again. Any answer of the destination's is final (a
     * refusal means it owns the VM: then there is nothing to throw away). */
    if (e && (e->code == FERR_UNAVAIL || e->code == FERR_TIMEOUT) &&
        now_mono_ms() < a->deadline_ms) {
        if (a->tries == 1)
            log_info("migrate %s: %s cannot be reached to clean up (%s); retrying", a->name, a->to,
                     e->msg);
        uv_timer_start(&a->timer, abort_tick, DESTWATCH_ABORT_RETRY_MS, 0);
        return;
    }
    if (e)
        log_warn("migrate %s: clean-up on %s: %s", a->name, a->to, e->msg);
    else if (a->tries > 1)
        log_info("migrate %s: %s cleaned up after %u tries", a->name, a->to, a->tries);
    if (a->done)
        a->done(e ? (e->code ? e->code : FERR_INTERNAL) : 0, e, a->data);
    uv_close((uv_handle_t *)&a->timer, abort_closed);
}

static void abort_send(struct abort_try *a)
{
    struct ferr e = {0};
    char *text = NULL;
    json_t *body = json_pack("{s:s}", "name", a->name);
    if (body)
        text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    a->tries++;
    if (!text) {
        ferr_set(&e, -ENOMEM, "out of memory");
        abort_answered(0, NULL, &e, a);
        return;
    }
    if (cluster_call(a->c, a->to, "POST", "/v1/internal/migrate/abort", text, abort_answered, a,
                     &e) < 0)
        abort_answered(0, NULL, &e, a);
    free(text);
}

void destwatch_abort(uv_loop_t *loop, struct cluster *c, const char *to, const char *name,
                     destwatch_abort_cb done, void *data)
{
    struct abort_try *a = calloc(1, sizeof(*a));
    if (!a) {
        log_warn("migrate %s: clean-up on %s: out of memory", name, to);
        if (done)
            done(-ENOMEM, &(struct ferr){-ENOMEM, "out of memory"}, data);
        return;
    }
    a->done = done;
    a->data = data;
    a->c = c;
    snprintf(a->to, sizeof(a->to), "%s", to);
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->deadline_ms = now_mono_ms() + DESTWATCH_ABORT_MAX_MS;
    uv_timer_init(loop, &a->timer);
    uv_unref((uv_handle_t *)&a->timer);
    a->timer.data = a;
    abort_send(a);
}
