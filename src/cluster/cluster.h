/* SPDX-License-Identifier: MIT */
/* This node's membership in a ferry cluster: init, join, leave, node health, and writes to the
 * cluster database forwarded to the Raft leader. */
#ifndef FERRY_CLUSTER_CLUSTER_H
#define FERRY_CLUSTER_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/cdb.h"
#include "cluster/peer.h"
#include "common/err.h"
#include "common/reply.h"
#include "host/events.h"

#define CLUSTER_HEARTBEAT_MS 1000
#define CLUSTER_HEARTBEAT_MIN_MS 250
#define CLUSTER_HEARTBEAT_MAX_MS 2000
#define CLUSTER_DOWN_AFTER 5
#define CLUSTER_DOWN_AFTER_MIN 3
#define CLUSTER_DOWN_AFTER_MAX 10

struct cluster;
struct certs;

struct cluster_config {
    char state_dir[1024]; /* cluster.json and raft/ live here */
    char node_name[64];
    char api_addr[64];  /* "IP:PORT" of this node's TCP API; "" when it has none */
    char raft_addr[64]; /* "IP:PORT" for Raft */
    unsigned heartbeat_ms;
    unsigned down_after;
    unsigned max_voters; /* Raft voters kept while this node leads (cluster/roles.h); 0: 5 */
    /* Fills info (an object) with this node's "memory": {"total_mib", "free_mib"}, "vms" and
     * "accel" for heartbeats and node lists. */
    void (*self_info)(json_t *info, void *data);
    void *self_data;
    /* This node's TLS material (cluster/certs.h; borrowed, outlives the cluster; NULL without
     * a TCP API): peers are trusted when its CA signed their certificate; cluster init makes
     * a new CA, a join adopts the cluster's, leaving makes the node its own again. tls_changed
     * (may be NULL) is told after each such change, so the TCP listener presents the new
     * certificate. */
    struct certs *certs;
    void (*tls_changed)(void *data);
    void *tls_data;
};

/* Answer to an API call (common/reply.h). */
typedef reply_cb cluster_reply_cb;

/* Opens the cluster state in cfg->state_dir; if this node is a member, starts its Raft node
 * (it catches up from its log and its peers). cfg is copied. */
int cluster_open(uv_loop_t *loop, const struct cluster_config *cfg, struct events *ev,
                 struct cluster **out, struct ferr *e);
void cluster_close(struct cluster *c, void (*cb)(void *data), void *data);

bool cluster_active(const struct cluster *c);

/* This node's view of the cluster for /metrics. */
struct cluster_metrics {
    bool has_leader, leading, quorum;
    unsigned members, voters;
    uint64_t term, commit_index;
    uint64_t leader_changes; /* changes of the known leader since ferryd started */
};
/* 0 with *out, or -1 (out zeroed) when this node is in no cluster. */
int cluster_metrics(struct cluster *c, struct cluster_metrics *out);

/* The timings in use (fleet/timing.h): heartbeats go out every send_ms; the leader judges a
 * node down after judge_ms x down_after of silence. Starts the measurement of heartbeat
 * lateness afresh. */
void cluster_set_timing(struct cluster *c, unsigned send_ms, unsigned judge_ms,
                        unsigned down_after);
/* How late heartbeats came, in ms after they were due, the most in the last 1-2 minutes: of
 * every up node as this node heard them, and of this node's own ticks. The node is named in
 * worst (its name, size bytes); *measured_ms tells how long the measurement has run. -1 when
 * this node is in no cluster. A node never heard is not counted (it is down), nor a silence
 * longer than the down time (an outage, not jitter). */
json_int_t cluster_heartbeat_late(struct cluster *c, char *worst, size_t size,
                                  uint64_t *measured_ms);
/* True while this node is the Raft leader (it makes the cluster-wide decisions). */
bool cluster_leading(const struct cluster *c);
/* True when this node knows a leader it heard from recently (or leads): writes can commit. */
bool cluster_quorum(const struct cluster *c);
const struct cdb *cluster_db(const struct cluster *c);
/* This node's name as the cluster knows it. */
const char *cluster_self(const struct cluster *c);

/* Whether bearer (may be NULL) is this cluster's secret, which every member holds, or its join
 * token (ferry cluster init prints it); false outside a cluster. Compared in constant time.
 * The API's authorizer (api_authorize) asks these. */
bool cluster_secret_matches(const struct cluster *c, const char *bearer);
bool cluster_join_token_matches(const struct cluster *c, const char *bearer);

/* User operations (docs/api.md, Cluster). Synchronous refusals return negative with e set;
 * otherwise cb answers later. */
int cluster_init(struct cluster *c, const char *name, cluster_reply_cb cb, void *data,
                 struct ferr *e);
int cluster_join(struct cluster *c, const char *addr, const char *token, cluster_reply_cb cb,
                 void *data, struct ferr *e);
int cluster_leave(struct cluster *c, cluster_reply_cb cb, void *data, struct ferr *e);
/* Removes another member (e.g. a dead host) by name; refused while it owns VMs. */
int cluster_remove(struct cluster *c, const char *node, cluster_reply_cb cb, void *data,
                   struct ferr *e);
/* New JSON (caller owns); FERR_STATE when not in a cluster. */
int cluster_status(struct cluster *c, json_t **out, struct ferr *e);
/* This node's TLS: {"ca_fingerprint", "node_fingerprint", "node_not_after"}, new (caller
 * owns), or NULL without certificates. */
json_t *cluster_tls_info(const struct cluster *c);
/* The CA this node trusts (PEM, borrowed until the next init/join/leave), or NULL. */
const char *cluster_ca(const struct cluster *c);
json_t *cluster_nodes(struct cluster *c);
/* How old this node's copy of the cluster database may be: ms since the leader was last heard
 * (0 on the leader and outside a cluster), -1 when no leader is known. */
json_int_t cluster_stale_ms(struct cluster *c);

/* Requests from other nodes (body borrowed). */
void cluster_on_join(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data);
void cluster_on_heartbeat(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data);
void cluster_on_apply(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data);
void cluster_on_remove(struct cluster *c, const json_t *body, cluster_reply_cb cb, void *data);

/* Writes one command to the cluster database: applied on the leader (forwarded there from a
 * follower); cb gets 200 and {"index": N} once this node has applied it too, or an error
 * (FERR_UNAVAIL when there is no quorum). cmd borrowed. */
int cluster_write(struct cluster *c, const json_t *cmd, cluster_reply_cb cb, void *data,
                  struct ferr *e);

/*
 * Waiting until this node's copy of the database shows something, e.g. a write that another
 * node made (read-your-writes). pred (data passed on) says whether db shows it; db is NULL
 * while this node runs no cluster member. It is asked on the loop pass after this call (never
 * inside it) and then after every entry this node applies, until it holds or timeout_ms
 * passed. cb then runs once with 0 (pred held), FERR_TIMEOUT, or -ECANCELED (cluster_close;
 * cb must not wait again then). Returns 0, or -ENOMEM or -ECANCELED (closing) with e set and
 * no callback. data is the caller's; it must live until cb.
 */
typedef bool (*cluster_wait_pred)(const struct cdb *db, void *data);
typedef void (*cluster_wait_cb)(int status, void *data);
int cluster_wait_until(struct cluster *c, cluster_wait_pred pred, unsigned timeout_ms,
                       cluster_wait_cb cb, void *data, struct ferr *e);

/* Adds a cluster event (event_add) from this node at the wall clock's time. It waits on
 * this node until the database has it (asked again on every heartbeat while there is no
 * quorum, written once: write.c, "Cluster events"); only what cdb refuses is dropped, logged. type is a token such as
 * "node.joined"; vm a VM's name or NULL (none); the message is printf-style (cdb refuses one
 * over 1024 bytes, which is logged). */
void cluster_event_add(struct cluster *c, const char *type, const char *vm, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Called on every node, after it applied a task_put, with the task's new record (borrowed,
 * valid during the call; cluster/taskrec.h). ferryd's tasks (fleet/tasks.c) turn it into the
 * events task.created, task.progress and task.ended. */
typedef void (*cluster_task_fn)(const json_t *rec, void *data);
void cluster_set_task_fn(struct cluster *c, cluster_task_fn fn, void *data);

/* Sends an API request to another node with the cluster secret and relays its answer as it
 * came (status and body, also for an error: for passing it on to a client). */
int cluster_forward(struct cluster *c, const char *node, const char *method, const char *path,
                    const char *body, cluster_reply_cb cb, void *data, struct ferr *e);
/* The same for a node's own calls to another: an answer outside 2xx reaches cb as an error
 * (its code and message from the answer's body, common/reply.h), so cb checks e alone. */
int cluster_call(struct cluster *c, const char *node, const char *method, const char *path,
                 const char *body, cluster_reply_cb cb, void *data, struct ferr *e);
/* Opens a WebSocket to another node's GET path with the cluster secret (peer_upgrade). */
int cluster_upgrade(struct cluster *c, const char *node, const char *path, unsigned timeout_ms,
                    peer_upgrade_cb cb, void *data, struct ferr *e);
/* cluster_call with a timeout of its own (cluster_call waits up to 120 s). */
int cluster_call_within(struct cluster *c, const char *node, const char *method, const char *path,
                        const char *body, unsigned timeout_ms, cluster_reply_cb cb, void *data,
                        struct ferr *e);

#endif
