/* SPDX-License-Identifier: MIT */
/* What the files behind cluster.h share (struct cluster, cluster__ calls); src/cluster/ only. */
#ifndef FERRY_CLUSTER_CLUSTER_INTERNAL_H
#define FERRY_CLUSTER_CLUSTER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/cdb.h"
#include "cluster/certs.h"
#include "cluster/cluster.h"
#include "cluster/health.h"
#include "cluster/roles.h"
#include "cluster/peer.h"
#include "cluster/raftnode.h"
#include "common/err.h"
#include "host/events.h"

/*
 * struct cluster is one object in four files, each owning one concern:
 *   cluster.c     open and close, the Raft node and its callbacks, status and node views,
 *                 requests to other nodes (cluster_forward, cluster_call)
 *   membership.c  cluster.json, init, join (both sides), promotion, leave, remove
 *   write.c       writes (on the leader, or forwarded to it), waits for this node to apply
 *                 something (cluster_wait_until), events
 *   heartbeat.c   heartbeats to and from the other nodes and, on the leader, the health tick
 *                 that writes what health_judge() (health.c, pure) proposes
 * Everything runs on the loop's thread.
 */

#define WRITE_TIMEOUT_MS 5000 /* a write forwarded to the leader, and the wait for its apply */

/* The caller of an operation that answers later. */
struct pending {
    cluster_reply_cb cb;
    void *data;
};

struct cluster_waiter; /* write.c */
struct event_queue;    /* write.c: cluster events not written yet */

struct cluster {
    uv_loop_t *loop;
    struct cluster_config cfg;
    struct events *events;
    cluster_task_fn task_fn; /* told of every task record a task_put changed (tasks.c) */
    void *task_data;
    /* membership, persisted in cluster.json */
    bool active;
    char cluster_id[40];
    char name[64];
    char secret[100];
    char token[100];
    uint64_t node_id;
    struct cdb *db;
    struct raftnode *rn;
    uint64_t leader_since; /* monotonic ms when this node last became leader; 0 otherwise */
    bool roles_busy;       /* the leader is changing a node's Raft role (heartbeat.c) */
    uint64_t announced_at; /* monotonic ms of the last write of this node's cmd_version */
    bool busy;             /* an init, join or leave is under way */
    struct pending op;     /* its caller */
    bool init_pending;     /* waiting to lead, to write the cluster's first records */
    uv_timer_t hb;
    uv_timer_t health;
    uv_timer_t op_timer;
    uv_timer_t wake;                /* runs the waiters after an apply or at a deadline */
    struct cluster_waiter *waiters; /* cluster_wait_until's, oldest first */
    struct event_queue *evq;        /* cluster_event_add's, until the database has them */
    struct health_table peers;      /* what was heard from whom, health writes in flight */
    unsigned hb_send_ms;            /* heartbeats go out this often (cluster_set_timing) */
    uint64_t hb_last;               /* monotonic ms of the last heartbeat tick */
    uint64_t self_late[2], self_late_window; /* how late this node's own ticks came */
    uint64_t late_since;                     /* monotonic ms when lateness began to be measured */
    uint64_t seen_leader;    /* the leader this node knew last (cluster__note_leader) */
    uint64_t leader_changes; /* how often that changed to another known leader */
    /* join retries */
    char join_addr[64];
    char join_body[1024];
    char join_token[100]; /* the secret part of the token (sent as the bearer) */
    char join_pin[80];    /* the CA's SHA-256 in the token, hex */
    char *join_ca;        /* the member's CA, once it matched join_pin (owned) */
    bool cluster_ca;      /* certs hold a cluster's CA (not this node's own) */
    unsigned join_tries;
    bool closing;
    unsigned forwards; /* requests to the leader (forwarded writes, heartbeats) not answered yet:
                        * their callbacks read c, so a closed c lives until the last */
    bool closed;       /* closed, kept only until the last forwarded write's answer came */
    void (*close_cb)(void *);
    void *close_data;
    unsigned close_pending;
};

/* ---- heartbeat.c ---- */
/* How late node id's heartbeats came (cluster_heartbeat_late), this node's own ticks for its
 * own id; -1 when none was heard. */
json_int_t cluster__late_ms(struct cluster *c, uint64_t id);

/* ---- cluster.c ---- */
/* The CA peers must present certificates of (NULL: none, every peer request is refused). */
const char *cluster__ca(const struct cluster *c);
/* Counts a change of the known leader (for /metrics); called on state changes and
 * heartbeat ticks. */
void cluster__note_leader(struct cluster *c);

/* STATE_DIR/leaf into out; 0 or -ENAMETOOLONG. */
int cluster__path(const struct cluster *c, const char *leaf, char *out, size_t size);
/* Creates c->db and starts this node's Raft member on it (bootstrap: a new one-voter cluster).
 * On failure nothing runs and c->db is NULL. */
int cluster__start_raft(struct cluster *c, bool bootstrap, struct ferr *e);
/* Stops this node's Raft member; its database is freed (and, with wipe, its data dir removed)
 * once libraft has closed its files. c->rn and c->db are NULL on return. */
void cluster__stop_raft(struct cluster *c, bool wipe);
/* A peer_cb that passes a peer's answer on as it came to the struct pending in data (freed). */
void cluster__relay(int status, json_t *body, const char *raw, size_t len, const struct ferr *e,
                    void *data);

/* ---- membership.c ---- */

/* Reads cluster.json into c (c->active when this node is a member). FERR_INVALID when damaged. */
int cluster__load_state(struct cluster *c, struct ferr *e);
/* Ends the init, join or leave under way: its caller gets status and body (stolen), or e. */
void cluster__finish_op(struct cluster *c, int status, json_t *body, const struct ferr *e);
/* On the leader that cluster_init started: writes the cluster's identity and this node's
 * record, then answers the init. */
void cluster__write_first_records(struct cluster *c);

/* ---- write.c ---- */

/* Fire-and-forget write of cmd (stolen; NULL is ignored); failures are logged as "cluster:
 * what: ...". what must be a static string. */
void cluster__write_bg(struct cluster *c, json_t *cmd, const char *what);
/* The Raft configuration's nodes with their roles, and whether the database calls each up;
 * returns how many (at most max). */
size_t cluster__roles_view(struct cluster *c, struct roles_node *out, size_t max);
/* The voters this node keeps when it leads (cfg.max_voters, 0 meaning the default). */
unsigned cluster__max_voters(const struct cluster *c);
/* Sends the cluster events that wait (a write that failed is asked again from here, on every
 * heartbeat tick). */
void cluster__events_pump(struct cluster *c);
/* The cluster closes: the events that wait are dropped (logged); one in flight frees the
 * queue when its answer comes. */
void cluster__events_close(struct cluster *c);
/* Sends body (borrowed) to the leader's path with bearer and relays its answer to cb. */
void cluster__to_leader(struct cluster *c, const char *path, const json_t *body, const char *bearer,
                        cluster_reply_cb cb, void *data);
/* This node applied an entry or a snapshot: the waiters are checked on the next loop pass
 * (not here: raftnode refuses proposals from inside its apply callback, and a waiter's
 * callback may write). */
void cluster__applied(struct cluster *c);
/* Answers every waiter with -ECANCELED (cluster_close). */
void cluster__waiters_cancel(struct cluster *c);

/* ---- heartbeat.c ---- */

/* Starts sending heartbeats and, while this node leads, judging the nodes' health. */
void cluster__heartbeat_start(struct cluster *c);
/* What this node knows of node id, added (first seen now) if new; NULL when the table is full. */
struct health_peer *cluster__peer(struct cluster *c, uint64_t id);
/* Forgets every peer. */
void cluster__peers_clear(struct cluster *c);

#endif
