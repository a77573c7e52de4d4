/* SPDX-License-Identifier: MIT */
/* A broken post-copy resumed with QEMU's postcopy recovery: the source side. */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/migrate_internal.h"

/* ---- source: resuming a broken post-copy (QEMU's postcopy recovery) ---- */

static void after_resume(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct mig *g = d;
    g->recover_busy = false;
    if (status < 0 && status != -ECANCELED && !g->finished)
        log_warn("migrate %s: migrate resume: %s", g->name, err ? err : ferr_str(status));
    migrate__unref(g);
}

static void recover_answer(int status, json_t *body, const struct ferr *e, void *data)
{
    struct mig *g = data;
    const char *uri = json_string_value(json_object_get(body, "uri"));
    json_t *copy = json_object_get(body, "copy");
    g->recover_busy = false;
    if (g->finished) {
        /* over meanwhile */
    } else if (json_is_false(copy)) {
        /* Said in so many words: an error (even a 404 from a ferryd without this call) only
         * means "not now", or a second copy could boot next to a live one. */
        g->dest_has_none = true;
        migrate__fail(g, FERR_UNAVAIL, "%s has no copy of the VM any more (%.200s)", g->to,
                      json_string_value(json_object_get(body, "why"))
                          ? json_string_value(json_object_get(body, "why"))
                          : "no reason given");
    } else if (e || !uri) {
        log_info("migrate %s: post-copy not resumed yet: %s", g->name,
                 e ? e->msg : "the answer has no uri");
    } else {
        /* The destination listens again: QEMU continues where the stream broke. */
        json_t *args = json_pack("{s:s, s:b}", "uri", uri, "resume", 1);
        struct ferr qe = {0};
        g->refs++;
        g->recover_busy = true;
        if (vm_qmp(g->vm, "migrate", args, after_resume, g, &qe) < 0) {
            g->refs--;
            g->recover_busy = false;
            log_warn("migrate %s: migrate resume: %s", g->name, qe.msg);
        } else {
            log_info("migrate %s: resuming post-copy to %s at %s", g->name, g->to, uri);
        }
    }
    json_decref(body);
    migrate__unref(g);
}

/* Asks the destination to listen again for the broken post-copy (at most every second). */
void migrate__try_recover(struct mig *g)
{
    uint64_t now = now_mono_ms();
    if (g->recover_busy || now - g->recover_ms < RECOVER_RETRY_MS)
        return;
    g->recover_ms = now;
    json_t *body = json_pack("{s:s}", "name", g->name);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct ferr e = {0};
    g->recover_busy = true;
    g->refs++;
    if (!text || cluster_call(g->m->env.cluster, g->to, "POST", "/v1/internal/migrate/recover",
                              text, recover_answer, g, &e) < 0) {
        g->recover_busy = false;
        g->refs--;
        log_warn("migrate %s: post-copy recovery: %s", g->name, text ? e.msg : "out of memory");
    }
    free(text);
}
