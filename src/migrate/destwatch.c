/* SPDX-License-Identifier: MIT */
/* The source's watch over a migration's destination, and the destination clean-up that is
 * retried until the destination's ferryd can be reached again. Without the watch a migration
 * to a host whose ferryd died would complete into a QEMU nobody manages, and one to a host cut
 * off the network would wait on its TCP stream for as long as the kernel retransmits. */
#include "migrate/destwatch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/destjudge.h"
#include "vm/vm.h"

struct destwatch {
    struct cluster *c;
    struct destjudge judge; /* the destination, the VM, and what their answers mean */
    destwatch_lost_cb lost;
    void *data;
    uv_timer_t timer;
    unsigned refs; /* the timer, a ping in flight */
    bool stopped;
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

static void declare_lost(struct destwatch *w, const char *why)
{
    destwatch_lost_cb cb = w->lost;
    w->lost = NULL; /* once */
    uv_timer_stop(&w->timer);
    if (cb)
        cb(why, w->data);
}

static void pinged(int status, json_t *body, const struct ferr *e, void *data)
{
    struct destwatch *w = data;
    if (!w->stopped && w->lost) {
        char why[400];
        const char *st = json_string_value(json_object_get(body, "state"));
        if (destjudge_answer(&w->judge, now_mono_ms(), e, st, why, sizeof(why)))
            declare_lost(w, why);
    }
    json_decref(body);
    watch_unref(w);
}

static void tick(uv_timer_t *t)
{
    struct destwatch *w = t->data;
    char why[400];
    switch (destjudge_tick(&w->judge, now_mono_ms(), why, sizeof(why))) {
    case DESTJUDGE_LOST:
        declare_lost(w, why);
        return;
    case DESTJUDGE_WAIT:
        return; /* a cut link: the request hangs; the silence counts */
    case DESTJUDGE_PING:
        break;
    }
    char path[128 + VM_NAME_MAX];
    snprintf(path, sizeof(path), "/v1/vms/%s", w->judge.name);
    struct ferr e = {0};
    w->refs++;
    destjudge_sent(&w->judge);
    if (cluster_call(w->c, w->judge.to, "GET", path, NULL, pinged, w, &e) < 0) {
        w->refs--;
        destjudge_not_sent(&w->judge, e.msg);
    }
}

struct destwatch *destwatch_start(uv_loop_t *loop, struct cluster *c, const char *to,
                                  const char *name, destwatch_lost_cb lost, void *data)
{
    struct destwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->c = c;
    destjudge_init(&w->judge, to, name, now_mono_ms());
    w->lost = lost;
    w->data = data;
    w->refs = 1;
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
    bool only_unstarted;
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
    /* Unreachable or timed out: try again (destjudge.h). */
    if (destjudge_abort_again(e, now_mono_ms(), a->deadline_ms)) {
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
    /* The plain form as before: a destination of an older release refuses an unknown field. */
    json_t *body = a->only_unstarted ? json_pack("{s:s, s:b}", "name", a->name, "only_unstarted", 1)
                                     : json_pack("{s:s}", "name", a->name);
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
                     bool only_unstarted, destwatch_abort_cb done, void *data)
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
    a->only_unstarted = only_unstarted;
    snprintf(a->to, sizeof(a->to), "%s", to);
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->deadline_ms = now_mono_ms() + DESTWATCH_ABORT_MAX_MS;
    uv_timer_init(loop, &a->timer);
    uv_unref((uv_handle_t *)&a->timer);
    a->timer.data = a;
    abort_send(a);
}
