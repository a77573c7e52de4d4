/* SPDX-License-Identifier: MIT */
/* An asynchronous QMP client on the libuv loop: greeting, capabilities, commands with ids,
 * events. Spec: QEMU's docs/interop/qmp-spec.txt. */
#ifndef FERRY_QEMU_QMP_H
#define FERRY_QEMU_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/err.h"

struct qmp_conn;

/*
 * Reply to one command. status 0: result is the "return" value (borrowed, valid during the
 * call). status FERR_QEMU: QEMU answered with an error; errmsg is its "desc" (class in front:
 * "GenericError: ..."). Any other negative status: no reply will come (connection lost or
 * closed: -ECANCELED when closed by the user, FERR_PROTO on garbage); errmsg says why.
 */
typedef void (*qmp_reply_cb)(struct qmp_conn *c, int status, json_t *result, const char *errmsg,
                             void *data);

struct qmp_callbacks {
    /* Greeting read and qmp_capabilities accepted: commands may be sent. Called once. */
    void (*on_ready)(struct qmp_conn *c, void *data);
    /* An asynchronous event, e.g. "STOP", "SHUTDOWN", "MIGRATION". data_j may be NULL;
     * both borrowed for the call. ts_ms is QEMU's timestamp in wall-clock ms. */
    void (*on_event)(struct qmp_conn *c, const char *event, json_t *data_j, uint64_t ts_ms,
                     void *data);
    /* The connection failed or was lost (connect refused, EOF, read error, garbage, a line
     * over the size limit). Called once, never after qmp_conn_close(). After it returns the
     * connection frees itself on the next loop pass: do not use c again. Pending commands
     * have had their callbacks called with a negative status before this. */
    void (*on_closed)(struct qmp_conn *c, int status, const char *msg, void *data);
    void *data;
};

/* Longest QMP line accepted (a reply or event); longer input is a protocol error. */
#define QMP_MAX_LINE (8u * 1024 * 1024)

/*
 * Starts connecting to the QMP unix socket at path. On 0, *out is the connection and exactly
 * one of on_ready / on_closed will follow. cb is copied. Fails synchronously only on bad
 * arguments or allocation failure (nothing allocated then).
 */
int qmp_conn_open(uv_loop_t *loop, const char *path, const struct qmp_callbacks *cb,
                  struct qmp_conn **out, struct ferr *e);

/*
 * Sends {"execute": cmd, "arguments": args, "id": N}. args is stolen (NULL for none), also on
 * failure. cb may be NULL (fire and forget). Commands may be queued before on_ready; they are
 * sent after capabilities negotiation. Returns FERR_STATE if the connection is closing.
 */
int qmp_conn_execute(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb,
                     void *data);

/*
 * As qmp_conn_execute, out of band ({"exec-oob": ...}) when QEMU's monitor offered "oob" and
 * it was enabled at negotiation: QEMU runs it at once in the monitor's thread, even while its
 * main loop is stuck (only commands marked allow-oob: migrate-pause, migrate-recover). In band
 * otherwise (a monitor without it, or before on_ready). Its reply may overtake others'.
 */
int qmp_conn_execute_oob(struct qmp_conn *c, const char *cmd, json_t *args, qmp_reply_cb cb,
                         void *data);
/* Whether out-of-band execution is on for this connection. */
bool qmp_conn_oob(const struct qmp_conn *c);

/* Closes the connection: pending callbacks get -ECANCELED, on_closed is not called, memory
 * is freed on a later loop pass. Safe to call from inside any callback of this connection. */
void qmp_conn_close(struct qmp_conn *c);

/* Note: when QEMU hangs up (EOF, reset) pending callbacks and on_closed get -ECONNRESET. */

/* Pure framing and classification, exported for unit tests and reuse. */
struct qmp_parser;
/* Called for each complete JSON message (borrowed). Return non-zero to stop parsing. */
typedef int (*qmp_msg_cb)(json_t *msg, void *data);
struct qmp_parser *qmp_parser_new(size_t max_line);
void qmp_parser_free(struct qmp_parser *p);
/* Feeds bytes; calls cb per complete line that is a JSON object. Returns 0, FERR_PROTO on
 * a line that is not a JSON object or is longer than max_line (message in e), or what cb
 * returned if non-zero. */
int qmp_parser_feed(struct qmp_parser *p, const char *buf, size_t len, qmp_msg_cb cb, void *data,
                    struct ferr *e);

enum qmp_msg_kind { QMP_MSG_GREETING, QMP_MSG_RETURN, QMP_MSG_ERROR, QMP_MSG_EVENT, QMP_MSG_BAD };
/* Classifies a message; for RETURN/ERROR sets *id (-1 if absent or not an integer). */
enum qmp_msg_kind qmp_msg_classify(const json_t *msg, long long *id);

#endif
