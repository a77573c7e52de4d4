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
    /* Reads a progress object: *pct (0..100), *mark (a pass, a phase: a plain line is
     * printed at once when it changes) and the words after the bar into text. The line is a
     * bar redrawn in place on a terminal, else a plain line at most every second. */
    void (*describe)(const json_t *p, unsigned *pct, uint64_t *mark, char *text, size_t size);
    /* Said when ferryd went away during the request after progress was seen ("" none). */
    const char *lost_note;
};

/* Runs the request; on EXIT_OK *answer is its answer (new JSON). The request's own error is
 * printed and its exit code returned. */
int cli_watched_call(struct cli *cli, const struct cli_watch *w, json_t **answer);

#endif
