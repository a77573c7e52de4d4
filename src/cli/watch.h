/* SPDX-License-Identifier: MIT */
/* A long request (a migration, a storage move) that answers only when it is over, run with
 * its progress polled and drawn meanwhile and Ctrl-C asking whether to cancel it. */
#ifndef FERRY_CLI_WATCH_H
#define FERRY_CLI_WATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/cmd.h"

struct cli_watch {
    const char *name;          /* the VM */
    const char *what;          /* "migration", "storage move": in the Ctrl-C question */
    const char *path;          /* POST path of the request */
    const json_t *body;        /* its body */
    const char *progress_path; /* GET: a progress object while it runs */
    const char *cancel_path;   /* POST: cancel it */
    /* Draws one progress line (tty: a bar redrawn in place; else a plain line, at most
     * every second: draw decides with *last_ms and *last_mark, its own to keep). */
    void (*draw)(const json_t *p, bool tty, uint64_t *last_ms, uint64_t *last_mark);
    /* Said when ferryd went away during the request after progress was seen ("" none). */
    const char *lost_note;
};

/* Runs the request; on EXIT_OK *answer is its answer (new JSON). The request's own error is
 * printed and its exit code returned. */
int cli_watched_call(struct cli *cli, const struct cli_watch *w, json_t **answer);

#endif
