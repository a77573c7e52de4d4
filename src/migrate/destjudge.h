/* SPDX-License-Identifier: MIT */
/* When a migration's destination counts as lost, and whether a clean-up call to it is tried
 * again: the decisions of destwatch.c, pure, on the monotonic times passed in. */
#ifndef FERRY_MIGRATE_DESTJUDGE_H
#define FERRY_MIGRATE_DESTJUDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "migrate/destwatch.h"
#include "vm/spec.h"

/*
 * The source asks the destination's ferryd about the incoming VM (GET /v1/vms/NAME) every
 * time the watch's timer fires, one request at a time. The destination is lost:
 *   - at once when it answers that it has no such VM (FERR_NOTFOUND), or that the VM is in
 *     a state other than "incoming" or "running" (its QEMU died, or the VM was removed);
 *   - when no good answer came for DESTWATCH_LOST_MS since the last good one (or since the
 *     watch started): an error answer (unreachable, timed out, refused) and a request that
 *     hangs (a cut link) both count as silence; the reason names the last error.
 */
struct destjudge {
    char to[64];                /* the destination node */
    char name[VM_NAME_MAX + 1]; /* the VM */
    uint64_t last_good_ms;      /* the last good answer, or when the watch started */
    bool in_flight;             /* a request is under way */
    char last_err[200];         /* the last error, "" if none yet */
};

/* A judge for VM name migrating to node to (both copied, cut to fit), started at now. */
void destjudge_init(struct destjudge *j, const char *to, const char *name, uint64_t now);

enum destjudge_tick {
    DESTJUDGE_PING, /* send a request now, then destjudge_sent (or destjudge_not_sent) */
    DESTJUDGE_WAIT, /* the last request has not answered yet: send none, the silence counts */
    DESTJUDGE_LOST, /* silent too long: why says so */
};
/* The watch's timer fired at now. For DESTJUDGE_LOST why (size bytes) gets the reason. */
enum destjudge_tick destjudge_tick(struct destjudge *j, uint64_t now, char *why, size_t size);
/* A request went out (after DESTJUDGE_PING). */
void destjudge_sent(struct destjudge *j);
/* The request could not be sent (err: why, borrowed); the next tick tries again. */
void destjudge_not_sent(struct destjudge *j, const char *err);
/* The request answered at now: e NULL and state the VM's state in the answer (NULL if it had
 * none), or e the error (borrowed). True when the destination is lost, with the reason in why
 * (size bytes). */
bool destjudge_answer(struct destjudge *j, uint64_t now, const struct ferr *e, const char *state,
                      char *why, size_t size);

/* destwatch_abort: whether the clean-up call that answered e (NULL: it succeeded) at now is
 * tried again, until deadline_ms. Only "unreachable" and "timed out" are: any answer from the
 * destination is final (a refusal means it owns the VM, so there is nothing to throw away). */
bool destjudge_abort_again(const struct ferr *e, uint64_t now, uint64_t deadline_ms);

#endif
