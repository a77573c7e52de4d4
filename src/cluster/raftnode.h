/* SPDX-License-Identifier: MIT */
/* One node of the cluster database's Raft group on a libuv loop (raft.h stays behind it). */
#ifndef FERRY_CLUSTER_RAFTNODE_H
#define FERRY_CLUSTER_RAFTNODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/cdb.h"
#include "common/err.h"

/*
 * A raftnode replicates the commands of a struct cdb (cdb.h) with canonical raft 0.15 and its
 * libuv backend (data dir) and ferry's TCP transport (rafttcp.h: libraft's wire protocol, with
 * connects and unacknowledged sends that time out). Its maintained successor cowsql/raft has
 * the same API; raftnode.c and rafttcp.c are the files to touch when switching.
 *
 * Life of a cluster, as the daemon drives it:
 *   - "cluster init" on the first host: raftnode_new + raftnode_start(bootstrap = true). The
 *     node is a one-voter cluster and leads at once. Bootstrapping a data dir that already
 *     holds state is a no-op, so "init" is safe to repeat on restart.
 *   - "join" (the token is checked by the API layer): the new host starts with bootstrap =
 *     false and an empty data dir and waits. On the leader: raftnode_add (the new node becomes
 *     a spare that receives nothing), then raftnode_assign(VOTER) - or STANDBY, which replicates
 *     the log without voting. Promotion to voter first lets the node catch up with the log
 *     (Raft thesis 4.2.1), so a new member never stalls commits.
 *   - "leave"/"remove": raftnode_remove on the leader; a leader that removes itself steps down.
 *     Hand leadership over first with raftnode_transfer for a quick switch.
 *   - a restart catches up from the node's own log and snapshot, then from the leader (log
 *     entries or a snapshot).
 *   - a data dir that fails its checksums makes raftnode_start fail with a message that says
 *     so; this node never serves state from it, and libraft's "auto recovery" (dropping the
 *     damaged segments silently) is off. The way back: remove the node from the cluster,
 *     delete the dir, join again.
 *
 * Writes are proposed on the leader only: elsewhere raftnode_apply fails with FERR_STATE and
 * names the leader so the daemon can forward the write there. Reads come from the local cdb;
 * raftnode_info() says how fresh it is (leader_contact_ms, last_applied, commit_index).
 *
 * The process must ignore SIGPIPE (ferryd does, at start): a peer that dies leaves a socket
 * that libuv writes to, and the default SIGPIPE action would kill every survivor.
 * raftnode_new refuses to run otherwise. Every entry is padded to a multiple of 8 bytes
 * (cdb_cmd_encode) because libraft 0.15 garbles other sizes batched in one message.
 *
 * Everything runs on the loop's thread; no function here may be called from another thread.
 */

/* Defaults, measured on loopback with 3 processes (numbers in raftnode.c): the leader's death
 * costs 0.6-1.2 s (median 0.95 s) until the next write commits, with no spurious elections
 * under full CPU load at realistic write rates. */
#define RAFTNODE_ELECTION_TIMEOUT_MS 500
#define RAFTNODE_HEARTBEAT_TIMEOUT_MS 50
#define RAFTNODE_SNAPSHOT_THRESHOLD 1024
#define RAFTNODE_SNAPSHOT_TRAILING 128
#define RAFTNODE_CONNECT_RETRY_MS 200
/* How long one connect to a peer may take before it is given up and retried (after the retry
 * delay above) with a fresh SYN, and how long sent data may stay unacknowledged before the
 * connection is dropped and made anew (TCP_USER_TIMEOUT). Without them (libraft's stock
 * transport) a connection tried or in use while a peer was unreachable waited on TCP's
 * exponential backoff: in the lab a node cut off for 8 s took writes again 5.5-6.2 s after its
 * link was back, one cut off for 20 s 6.6-7.6 s; with them 0.4-1.9 s, whatever the cut's
 * length (Raft alone needs at most connect timeout + retry delay + heartbeat, 0.75 s).
 * A LAN answers a SYN in well under a millisecond and the kernel's own first SYN retry comes
 * only after 1 s, so a connect still pending after an election timeout has lost its SYN, and
 * a node that hears nothing for an election timeout campaigns anyway. Unacknowledged data for
 * two election timeouts means three or more lost retransmissions in a row: the peer is gone,
 * not slow (a peer whose loop stalls still has its kernel acknowledge). */
#define RAFTNODE_CONNECT_TIMEOUT_MS 500
#define RAFTNODE_SEND_TIMEOUT_MS 1000
#define RAFTNODE_INSTALL_SNAPSHOT_TIMEOUT_MS 5000

struct raftnode;

enum raftnode_state {
    RAFTNODE_UNAVAILABLE,
    RAFTNODE_FOLLOWER,
    RAFTNODE_CANDIDATE,
    RAFTNODE_LEADER
};
/* Voter: replicates and votes. Standby: replicates, does not vote. Spare: neither. */
enum raftnode_role { RAFTNODE_VOTER, RAFTNODE_STANDBY, RAFTNODE_SPARE };

struct raftnode_config {
    uint64_t id;                   /* 1..CDB_ID_MAX, unique in the cluster, never reused */
    const char *address;           /* "A.B.C.D:PORT" that peers dial (IPv4 only in libraft 0.15) */
    const char *bind_address;      /* "A.B.C.D:PORT" to listen on, same port; NULL: address */
    const char *data_dir;          /* created (0700) if missing; one node per dir */
    unsigned election_timeout_ms;  /* followers wait 1x..2x this for a leader before voting */
    unsigned heartbeat_timeout_ms; /* leader's heartbeat period; must be below the above */
    bool pre_vote;                 /* Raft thesis 9.6: a rejoining node cannot depose a leader */
    unsigned snapshot_threshold;   /* take a snapshot every this many entries */
    unsigned snapshot_trailing;    /* entries kept after a snapshot, for slow followers */
    unsigned connect_retry_ms;     /* delay between reconnects to an unreachable peer */
    unsigned connect_timeout_ms;   /* a connect not done by then is retried; 0: default */
    unsigned send_timeout_ms;      /* data unacked that long: a new connection; 0: default */
    /* The leader re-sends a snapshot not acknowledged within this. libraft 0.15 drops an
     * InstallSnapshot that reaches a follower busy taking its own snapshot, without an answer,
     * so this bounds how long such a follower stays behind (libraft's default is 30 s).
     * Must exceed the time to send and store one snapshot. */
    unsigned install_snapshot_timeout_ms;
    size_t segment_size; /* bytes per log segment file; 0: libraft's 8 MiB */
};

/* Fills c with the defaults above (pre_vote on) and zero id, address, data dir. */
void raftnode_config_init(struct raftnode_config *c);

struct raftnode_info {
    uint64_t id;
    enum raftnode_state state;
    uint64_t term;
    uint64_t leader_id;      /* 0 when no leader is known */
    char leader_address[64]; /* "" when none */
    uint64_t commit_index;   /* highest entry known committed */
    uint64_t last_applied;   /* highest entry applied to the cdb (any entry type) */
    uint64_t last_index;     /* highest entry in the local log */
    uint64_t snapshot_index; /* last entry covered by the local snapshot, 0: none */
    /* How old the local view may be: 0 on the leader; on a follower, ms since the last
     * message from the leader (reads lag the leader by about this much plus one apply);
     * UINT64_MAX when no leader is known (candidate, or a follower not yet contacted). */
    uint64_t leader_contact_ms;
};

struct raftnode_callbacks {
    /* A command entry was applied on this node (every node sees every entry, in order).
     * status 0: cmd changed the cdb; else the cdb rejected it (msg says why) and nothing
     * changed. cmd NULL: the whole cdb was replaced by a snapshot from the leader (or at
     * start) up to index. cmd and msg are borrowed for the call. May be NULL. */
    void (*on_apply)(struct raftnode *rn, uint64_t index, const json_t *cmd, int status,
                     const char *msg, void *data);
    /* The state, the leader or the term changed (checked every heartbeat period and after
     * each call). info is borrowed. May be NULL. */
    void (*on_state)(struct raftnode *rn, const struct raftnode_info *info, void *data);
    void *data;
};

/*
 * Creates a node on loop: checks cfg, creates the data dir, opens it (reading its metadata)
 * and sets up the TCP transport (rafttcp.h), but sends and listens to nothing yet. db is borrowed
 * for the node's whole life and must be empty (new from cdb_new); cfg strings are copied; cb (may
 * be NULL) is copied. On failure nothing is left to free. Errors: FERR_INVALID (cfg), FERR_STATE
 * (SIGPIPE not ignored, db not empty, the dir locked by another node - the lock is D/ferry.lock,
 * held until the close callback -, a damaged data dir: "raft: data dir D is damaged (...)"), -errno
 * or FERR_INTERNAL from libraft, with a message.
 */
int raftnode_new(uv_loop_t *loop, const struct raftnode_config *cfg, struct cdb *db,
                 const struct raftnode_callbacks *cb, struct raftnode **out, struct ferr *e);

/*
 * Loads the log and the snapshot from the data dir into db, starts listening on the bind
 * address and joins the Raft group. bootstrap: make a fresh data dir a one-voter cluster of
 * this node ("cluster init"); ignored when the dir already holds a cluster. On failure the
 * node is left unstarted and must still be closed with raftnode_close(). Errors: a damaged
 * data dir or a snapshot this version cannot read (FERR_STATE, saying so: the node refuses to
 * serve), the address in use (-EADDRINUSE), others from libraft.
 */
int raftnode_start(struct raftnode *rn, bool bootstrap, struct ferr *e);

/*
 * Closes the node: on the next loop pass pending requests get their callbacks with
 * -ECANCELED, libraft closes its files and sockets, then cb (may be NULL) runs and rn is
 * freed. db is not touched after cb. Safe to call from any raftnode callback, once.
 */
void raftnode_close(struct raftnode *rn, void (*cb)(void *data), void *data);

/*
 * Completion of raftnode_apply. status 0: committed and applied by the cdb at index. A cdb
 * error code (FERR_INVALID, FERR_NOTFOUND, FERR_EXISTS, FERR_STATE, ...): committed, but the
 * cdb rejected it everywhere, msg says why, nothing changed. FERR_UNAVAIL: leadership was
 * lost before the entry committed; it may still commit under the next leader, so re-read
 * before retrying. -ECANCELED: the node was closed (same uncertainty). msg borrowed.
 */
typedef void (*raftnode_apply_cb)(struct raftnode *rn, int status, uint64_t index, const char *msg,
                                  void *data);

/*
 * Proposes cmd (borrowed; checked with cdb_cmd_check and encoded here). On 0, cb (may be
 * NULL) runs exactly once, never before this returns. Errors, with no callback: FERR_STATE
 * "not the leader; leader is id N at ADDR" (forward the write there), FERR_UNAVAIL (no leader
 * known, or a leadership transfer running: retry shortly), FERR_INVALID/FERR_TOOBIG (a bad
 * command), -ENOMEM.
 */
int raftnode_apply(struct raftnode *rn, const json_t *cmd, raftnode_apply_cb cb, void *data,
                   struct ferr *e);

/*
 * On the leader: appends a barrier entry at once, so every follower hears the current commit
 * index now instead of with the next heartbeat (libraft sends those on its 50 ms tick, so a
 * follower learnt of a commit 50-100 ms late). A node that forwarded a write to the leader
 * waits until it applied that write itself, and a user may read through another node what
 * they wrote through one: the leader nudges after every write it applied (cluster/write.c).
 * Does nothing elsewhere or when out of memory.
 */
void raftnode_nudge(struct raftnode *rn);

/*
 * Completion of the membership calls. status 0: done (for a transfer: the target leads).
 * FERR_UNAVAIL: leadership lost, the change may or may not have happened; FERR_TIMEOUT: a node
 * being promoted did not catch up with the log in time (it stays what it was), or a transfer
 * did not finish within an election timeout; -ECANCELED: closed. msg borrowed.
 */
typedef void (*raftnode_done_cb)(struct raftnode *rn, int status, const char *msg, void *data);

/* Leader only (else FERR_STATE naming the leader, like raftnode_apply). One membership change
 * runs at a time: another gets FERR_STATE "... in progress". cb may be NULL. */
/* Adds node id at address (IPv4 "A.B.C.D:PORT") as a spare. FERR_EXISTS: id or address
 * already in the configuration. */
int raftnode_add(struct raftnode *rn, uint64_t id, const char *address, raftnode_done_cb cb,
                 void *data, struct ferr *e);
/* Gives node id a new role. To VOTER the node first catches up with the log. FERR_NOTFOUND:
 * no such node; FERR_STATE: it already has that role. */
int raftnode_assign(struct raftnode *rn, uint64_t id, enum raftnode_role role, raftnode_done_cb cb,
                    void *data, struct ferr *e);
/* Removes node id from the configuration (the leader itself too: it steps down once the
 * change commits). FERR_NOTFOUND. */
int raftnode_remove(struct raftnode *rn, uint64_t id, raftnode_done_cb cb, void *data,
                    struct ferr *e);
/* Hands leadership to voter id (0: the most up-to-date voter). Writes are refused with
 * FERR_UNAVAIL while it runs. FERR_NOTFOUND: no such voter (or none other). */
int raftnode_transfer(struct raftnode *rn, uint64_t id, raftnode_done_cb cb, void *data,
                      struct ferr *e);

/* A snapshot of the node's Raft state. */
void raftnode_info(const struct raftnode *rn, struct raftnode_info *out);
/* The same as JSON for the API: {"id", "state", "term", "leader_id", "leader_address",
 * "commit_index", "last_applied", "last_index", "snapshot_index", "leader_contact_ms" (null
 * when no leader is known)}. New JSON the caller owns; NULL when out of memory. */
json_t *raftnode_info_json(const struct raftnode *rn);
/* The leader's id (0 if none known) and, if address is not NULL, its Raft address (a
 * pointer valid until the next loop pass, "" when none). */
uint64_t raftnode_leader(const struct raftnode *rn, const char **address);
bool raftnode_is_leader(const struct raftnode *rn);
/* The configuration as this node knows it: [{"id", "address", "role"}], sorted by id, new
 * JSON the caller owns; NULL when out of memory. */
json_t *raftnode_members(const struct raftnode *rn);
/* The cdb this node applies to (the one passed to raftnode_new). */
struct cdb *raftnode_cdb(const struct raftnode *rn);

/* "unavailable", "follower", "candidate", "leader". */
const char *raftnode_state_name(enum raftnode_state s);
/* "voter", "standby", "spare" (the names cdb uses for a node's role). */
const char *raftnode_role_name(enum raftnode_role r);
/* Parses a role name; returns 0 or FERR_INVALID. */
int raftnode_role_parse(const char *s, enum raftnode_role *out);

#endif
