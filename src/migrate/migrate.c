/* SPDX-License-Identifier: MIT */
/* The migrator: the migrations this node runs, found by VM name. */
#include "migrate/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/migrate_internal.h"

int migrator_new(const struct migrator_env *env, struct migrator **out, struct ferr *e)
{
    struct migrator *m = calloc(1, sizeof(*m));
    if (!m)
        return ferr_set(e, -ENOMEM, "migrate: out of memory");
    m->env = *env;
    *out = m;
    return 0;
}

void migrator_free(struct migrator *m)
{
    if (m && !m->migs)
        free(m);
}

struct mig *migrate__find(struct migrator *m, const char *name)
{
    for (struct mig *g = m->migs; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

/* Not inlined: the compiler cannot see that the references outnumber the calls. */
__attribute__((noinline)) void migrate__unref(struct mig *g)
{
    if (--g->refs == 0) {
        json_decref(g->last);
        free(g);
    }
}

void migrate__timer_closed(uv_handle_t *h)
{
    migrate__unref(h->data);
}
