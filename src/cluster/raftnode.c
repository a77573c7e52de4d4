/* SPDX-License-Identifier: MIT */
/* Raft glue: libraft 0.15 (raft_uv data dir + rafttcp) driving a struct cdb. */
#include "cluster/raftnode.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "cluster/rafttcp.h"
#include "common/util.h"

/*
 * Timeouts (Raft thesis 3.4, 9.6). A follower campaigns after a random 1x..2x election timeout
 * without a message from the leader; pre-vote keeps a node that was cut off from deposing a
 * healthy leader; a leader that hears from no majority for one election timeout steps down.
 * Measured with this file on the 2-CPU development VM: 3 processes on loopback, the leader
 * SIGKILLed 10 times per setting (40 at 500/50, 20 at 300/30), kill to first write committed
 * by the new leader:
 *     election/heartbeat  1000/100  700/70  500/50  300/30  200/20  150/15 ms
 *     median                 1.80     1.35    0.95    0.60    0.38    0.27 s  (pre-vote on)
 *     max                    2.01     1.54    1.19    0.74    0.41    0.31 s
 * (pre-vote off: 2.91 s at 1000/100, 0.89 s at 300/30.)
 * Flapping, with 3 busy loops on the 2 CPUs, 120 s runs: no election at any setting down to
 * 150/15 without writes, none at 300/30 or 500/50 with 20 writes/s; with 200 writes/s
 * sustained there were 1-4 elections per run at 300/30 and at 500/50, none at 700/70. The
 * cause: followers answer AppendEntries only once the entries are on disk, and a starved
 * thread pool delays that (commit latency peaks reached 0.76 s), so the leader sees no
 * majority and steps down. 500/50 is the default: failover in about a second, and half a
 * second of tolerance for a stalled loop or a slow fsync, which ferryd's single loop and the
 * lab (many ferryds and QEMUs on one machine) need. Dedicated hosts may go to 300/30; hosts
 * saturated with a heavy write load want 700/70 or more.
 */

struct apply_result {
    uint64_t index;
    int status;
    char msg[FERR_MSG_MAX];
};

struct raftnode {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct cdb *db; /* borrowed */
    struct raftnode_callbacks cb;
    uv_timer_t timer; /* state polling, and the deferred close */
    uint64_t id;
    char *address;
    char *data_dir;
    int lock_fd; /* flock()ed data_dir/ferry.lock: one node per dir, also across processes */
    unsigned heartbeat_ms;
    bool started;
    bool closing;
    int in_fsm; /* > 0 while on_apply runs: proposing from there is refused */
    int closes_pending;
    void (*close_cb)(void *data);
    void *close_data;
    /* Result of the last command applied, for the proposer's callback that libraft calls
     * right after the FSM's apply (replication.c applyCommand); tagged with its index. */
    struct apply_result last;
    struct ferr restore_err; /* why the last snapshot restore failed, for raftnode_start */
    /* Leadership transfer: one at a time, embedded because libraft keeps sending through it
     * after the callback (membershipLeadershipTransferStart uses req->send). */
    struct raft_transfer transfer;
    bool transfer_busy;
    raftnode_done_cb transfer_cb;
    void *transfer_data;
    /* What on_state last reported. */
    enum raftnode_state seen_state;
    uint64_t seen_leader, seen_term;
};

struct apply_req {
    struct raft_apply req; /* first: libraft hands this back */
    struct raftnode *rn;
    raftnode_apply_cb cb;
    void *data;
};

struct change_req {
    struct raft_change req; /* first */
    struct raftnode *rn;
    raftnode_done_cb cb;
    void *data;
    uint64_t id;
    const char *what; /* "add", "assign", "remove" */
};

/* ---- names and small helpers ---- */

const char *raftnode_state_name(enum raftnode_state s)
{
    switch (s) {
    case RAFTNODE_FOLLOWER:
        return "follower";
    case RAFTNODE_CANDIDATE:
        return "candidate";
    case RAFTNODE_LEADER:
        return "leader";
    case RAFTNODE_UNAVAILABLE:
        break;
    }
    return "unavailable";
}

const char *raftnode_role_name(enum raftnode_role r)
{
    switch (r) {
    case RAFTNODE_VOTER:
        return "voter";
    case RAFTNODE_STANDBY:
        return "standby";
    case RAFTNODE_SPARE:
        break;
    }
    return "spare";
}

int raftnode_role_parse(const char *s, enum raftnode_role *out)
{
    static const enum raftnode_role all[] = {RAFTNODE_VOTER, RAFTNODE_STANDBY, RAFTNODE_SPARE};
    for (size_t i = 0; s && i < ARRAY_SIZE(all); i++) {
        if (strcmp(s, raftnode_role_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return FERR_INVALID;
}

static int role_to_raft(enum raftnode_role r)
{
    return r == RAFTNODE_VOTER ? RAFT_VOTER : r == RAFTNODE_STANDBY ? RAFT_STANDBY : RAFT_SPARE;
}

static enum raftnode_role role_from_raft(int r)
{
    return r == RAFT_VOTER ? RAFTNODE_VOTER : r == RAFT_STANDBY ? RAFTNODE_STANDBY : RAFTNODE_SPARE;
}

static enum raftnode_state state_of(const struct raftnode *rn)
{
    if (!rn->started || rn->closing)
        return RAFTNODE_UNAVAILABLE;
    switch (raft_state((struct raft *)&rn->raft)) {
    case RAFT_FOLLOWER:
        return RAFTNODE_FOLLOWER;
    case RAFT_CANDIDATE:
        return RAFTNODE_CANDIDATE;
    case RAFT_LEADER:
        return RAFTNODE_LEADER;
    default:
        return RAFTNODE_UNAVAILABLE;
    }
}

/* "A.B.C.D:PORT" with a port 1..65535: all libraft 0.15's TCP transport understands. */
static bool ipv4_addr_valid(const char *s)
{
    char host[32];
    const char *colon = s ? strchr(s, ':') : NULL;
    struct sockaddr_in sa;
    if (!colon || (size_t)(colon - s) >= sizeof(host) || strchr(colon + 1, ':'))
        return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    const char *p = colon + 1;
    size_t n = strlen(p);
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0') || strspn(p, "0123456789") != n)
        return false;
    long port = strtol(p, NULL, 10);
    return port >= 1 && port <= 65535 && uv_ip4_addr(host, (int)port, &sa) == 0;
}

static const char *port_of(const char *addr)
{
    const char *c = strchr(addr, ':');
    return c ? c + 1 : "";
}

/* The error for a write or change sent to a node that is not (or no longer) the leader. */
static int not_leader(const struct raftnode *rn, struct ferr *e)
{
    if (rn->closing || !rn->started)
        return ferr_set(e, FERR_STATE, "raft: this node is %s",
                        rn->closing ? "closing" : "not started");
    if (state_of(rn) == RAFTNODE_LEADER)
        return ferr_set(e, FERR_UNAVAIL,
                        "raft: a leadership transfer is in progress; retry shortly");
    const char *addr = NULL;
    uint64_t id = raftnode_leader(rn, &addr);
    if (id)
        return ferr_set(e, FERR_STATE, "not the leader; leader is id %" PRIu64 " at %s", id, addr);
    return ferr_set(e, FERR_UNAVAIL,
                    "raft: not the leader and no leader is known (election running); retry "
                    "shortly");
}

/* An error from a libraft call made on the leader, with a message for the caller. */
static int map_call_error(struct raftnode *rn, int rv, const char *what, uint64_t id,
                          struct ferr *e)
{
    switch (rv) {
    case RAFT_NOTLEADER:
        return not_leader(rn, e);
    case RAFT_NOMEM:
        return ferr_set(e, -ENOMEM, "raft: %s: out of memory", what);
    case RAFT_CANTCHANGE:
        return ferr_set(e, FERR_STATE,
                        "raft: %s: another membership change is in progress; "
                        "retry when it is done",
                        what);
    case RAFT_DUPLICATEID:
        return ferr_set(e, FERR_EXISTS, "raft: %s: node %" PRIu64 " is already a member", what, id);
    case RAFT_DUPLICATEADDRESS:
        return ferr_set(e, FERR_EXISTS, "raft: %s: that address is already a member's", what);
    case RAFT_BADROLE:
        return ferr_set(e, FERR_STATE, "raft: %s: node %" PRIu64 " already has that role", what,
                        id);
    case RAFT_BADID:
    case RAFT_NOTFOUND:
        return ferr_set(e, FERR_NOTFOUND, "raft: %s: no %s %" PRIu64 " (%s)", what,
                        strcmp(what, "transfer") == 0 ? "other voter" : "member", id,
                        raft_errmsg(&rn->raft));
    default:
        return ferr_set(e, FERR_INTERNAL, "raft: %s: %s (%s)", what, raft_strerror(rv),
                        raft_errmsg(&rn->raft));
    }
}

/* The status a request that libraft completed with rv reports to its owner. */
static int map_async_status(const struct raftnode *rn, int rv, char *msg, size_t size)
{
    if (rv == 0)
        return 0;
    if (rn->closing || rv == RAFT_SHUTDOWN || rv == RAFT_CANCELED) {
        snprintf(msg, size, "raft: the node closed before the request completed");
        return -ECANCELED;
    }
    if (rv == RAFT_LEADERSHIPLOST || rv == RAFT_NOTLEADER) {
        snprintf(msg, size,
                 "raft: leadership lost before the request committed; it may still "
                 "commit under the next leader: check before retrying");
        return FERR_UNAVAIL;
    }
    if (rv == RAFT_NOCONNECTION) {
        snprintf(msg, size, "raft: the node did not catch up with the log in time");
        return FERR_TIMEOUT;
    }
    if (rv == RAFT_NOMEM) {
        snprintf(msg, size, "raft: out of memory");
        return -ENOMEM;
    }
    snprintf(msg, size, "raft: %s", raft_strerror(rv));
    return FERR_INTERNAL;
}

/* ---- state reports ---- */

static void check_state(struct raftnode *rn)
{
    struct raftnode_info info;
    if (!rn->cb.on_state || rn->closing)
        return;
    raftnode_info(rn, &info);
    if (info.state == rn->seen_state && info.leader_id == rn->seen_leader &&
        info.term == rn->seen_term)
        return;
    rn->seen_state = info.state;
    rn->seen_leader = info.leader_id;
    rn->seen_term = info.term;
    rn->cb.on_state(rn, &info, rn->cb.data);
}

static void tick_cb(uv_timer_t *t)
{
    check_state(t->data);
}

/* ---- the FSM: libraft calls these in log order on every node ---- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct raftnode *rn = fsm->data;
    /* libraft 0.15 gives no index to the FSM; entries are applied in order and last_applied
     * moves right after each (replication.c replicationApply). */
    uint64_t index = rn->raft.last_applied + 1;
    uint64_t now = now_wall_ms();
    struct ferr e;
    json_t *cmd = NULL;
    ferr_clear(&e);
    int rc = cdb_cmd_decode(buf->base, buf->len, &cmd, &e);
    if (rc == 0)
        rc = cdb_apply_cmd(rn->db, index, cmd, now, &e);
    else if (rc != -ENOMEM)
        rc = cdb_apply(rn->db, index, buf->base, buf->len, now, &e); /* counted, rejected */
    if (rc == -ENOMEM) {
        /* Not applied anywhere in the cdb: libraft stops here and retries the entry later. */
        json_decref(cmd);
        return RAFT_NOMEM;
    }
    rn->last.index = index;
    rn->last.status = rc;
    snprintf(rn->last.msg, sizeof(rn->last.msg), "%s", rc ? e.msg : "");
    *result = &rn->last;
    if (rn->cb.on_apply) {
        rn->in_fsm++;
        rn->cb.on_apply(rn, index, cmd, rc, rn->last.msg, rn->cb.data);
        rn->in_fsm--;
    }
    json_decref(cmd);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct raftnode *rn = fsm->data;
    struct ferr e;
    char *text;
    size_t len;
    if (cdb_snapshot(rn->db, &text, &len, &e) < 0)
        return RAFT_NOMEM;
    /* Padded like entries; cdb_restore ignores the NULs. */
    size_t padded = (len + 7) & ~(size_t)7;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    void *base = raft_calloc(1, padded ? padded : 8);
    if (!b || !base) {
        raft_free(b);
        raft_free(base);
        free(text);
        return RAFT_NOMEM;
    }
    memcpy(base, text, len);
    free(text);
    b->base = base;
    b->len = padded;
    *bufs = b; /* libraft owns b and base from here (fsm version 1) */
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct raftnode *rn = fsm->data;
    struct ferr e;
    int rc = cdb_restore(rn->db, buf->base, buf->len, now_wall_ms(), &e);
    if (rc < 0) {
        /* libraft frees buf on failure and refuses the snapshot; the cdb is unchanged. */
        rn->restore_err = e;
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
    }
    raft_free(buf->base); /* on success the FSM owns the data */
    if (rn->cb.on_apply) {
        rn->in_fsm++;
        rn->cb.on_apply(rn, cdb_applied_index(rn->db), NULL, 0, "", rn->cb.data);
        rn->in_fsm--;
    }
    return 0;
}

/* ---- lifecycle ---- */

void raftnode_config_init(struct raftnode_config *c)
{
    memset(c, 0, sizeof(*c));
    c->election_timeout_ms = RAFTNODE_ELECTION_TIMEOUT_MS;
    c->heartbeat_timeout_ms = RAFTNODE_HEARTBEAT_TIMEOUT_MS;
    c->pre_vote = true;
    c->snapshot_threshold = RAFTNODE_SNAPSHOT_THRESHOLD;
    c->snapshot_trailing = RAFTNODE_SNAPSHOT_TRAILING;
    c->connect_retry_ms = RAFTNODE_CONNECT_RETRY_MS;
    c->connect_timeout_ms = RAFTNODE_CONNECT_TIMEOUT_MS;
    c->send_timeout_ms = RAFTNODE_SEND_TIMEOUT_MS;
    c->install_snapshot_timeout_ms = RAFTNODE_INSTALL_SNAPSHOT_TIMEOUT_MS;
}

static int config_check(const struct raftnode_config *c, struct ferr *e)
{
    if (c->id == 0 || c->id > CDB_ID_MAX)
        return ferr_set(e, FERR_INVALID, "raft: node id %" PRIu64 " is out of range 1..%llu", c->id,
                        (unsigned long long)CDB_ID_MAX);
    if (!ipv4_addr_valid(c->address))
        return ferr_set(e, FERR_INVALID,
                        "raft: address \"%s\": use A.B.C.D:PORT (libraft "
                        "0.15 speaks IPv4 only)",
                        c->address ? c->address : "");
    if (c->bind_address && !ipv4_addr_valid(c->bind_address))
        return ferr_set(e, FERR_INVALID, "raft: bind address \"%s\": use A.B.C.D:PORT",
                        c->bind_address);
    if (c->bind_address && strcmp(port_of(c->bind_address), port_of(c->address)) != 0)
        return ferr_set(e, FERR_INVALID,
                        "raft: bind address %s and address %s must have the "
                        "same port",
                        c->bind_address, c->address);
    if (!c->data_dir || !*c->data_dir)
        return ferr_set(e, FERR_INVALID, "raft: no data dir given");
    if (c->heartbeat_timeout_ms == 0 || c->election_timeout_ms > 60000 ||
        c->heartbeat_timeout_ms >= c->election_timeout_ms)
        return ferr_set(e, FERR_INVALID,
                        "raft: heartbeat timeout %u ms must be above 0 and "
                        "below the election timeout %u ms (at most 60000)",
                        c->heartbeat_timeout_ms, c->election_timeout_ms);
    if (c->snapshot_threshold == 0)
        return ferr_set(e, FERR_INVALID, "raft: snapshot threshold must be above 0");
    return 0;
}

/* The message for a data dir that libraft found damaged. */
static int damaged(const struct raftnode *rn, int rv, const char *detail, struct ferr *e)
{
    return ferr_set(e, FERR_STATE,
                    "raft: data dir %s is damaged (%s: %s): this node will not "
                    "serve from it; remove the node from the cluster, delete the directory and "
                    "join again to copy the state from its peers",
                    rn->data_dir, raft_strerror(rv), detail);
}

/* Takes the data dir's lock: two nodes writing one dir would corrupt it silently. */
static int lock_dir(struct raftnode *rn, struct ferr *e)
{
    char path[4096];
    if (fmt_path(path, sizeof(path), "%s/ferry.lock", rn->data_dir) < 0)
        return ferr_set(e, -ENAMETOOLONG, "raft: data dir %s: path too long", rn->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return ferr_set(e, -errno, "raft: open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return ferr_set(e, FERR_STATE, "raft: data dir %s is in use by another node",
                            rn->data_dir);
        return ferr_set(e, -err, "raft: lock %s: %s", path, strerror(err));
    }
    rn->lock_fd = fd;
    return 0;
}

int raftnode_new(uv_loop_t *loop, const struct raftnode_config *cfg, struct cdb *db,
                 const struct raftnode_callbacks *cb, struct raftnode **out, struct ferr *e)
{
    struct sigaction sa;
    int rv;
    int rc = config_check(cfg, e);
    if (rc < 0)
        return rc;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        return ferr_set(e, FERR_STATE,
                        "raft: SIGPIPE is not ignored: a peer that disconnects "
                        "would kill this process (call signal(SIGPIPE, SIG_IGN) at start)");
    if (!db || cdb_applied_index(db) != 0)
        return ferr_set(e, FERR_STATE, "raft: the cluster database must be new and empty");
    if ((rc = mkdir_p(cfg->data_dir, 0700, e)) < 0)
        return ferr_prefix(e, "raft: data dir");

    struct raftnode *rn = calloc(1, sizeof(*rn));
    if (!rn)
        return ferr_set(e, -ENOMEM, "raft: out of memory");
    rn->loop = loop;
    rn->db = db;
    rn->id = cfg->id;
    rn->heartbeat_ms = cfg->heartbeat_timeout_ms;
    if (cb)
        rn->cb = *cb;
    rn->lock_fd = -1;
    rn->address = strdup(cfg->address);
    rn->data_dir = strdup(cfg->data_dir);
    if (!rn->address || !rn->data_dir) {
        rc = ferr_set(e, -ENOMEM, "raft: out of memory");
        goto err_after_alloc;
    }
    if ((rc = lock_dir(rn, e)) < 0)
        goto err_after_alloc;

    struct rafttcp_config tc = {
        .connect_timeout_ms =
            cfg->connect_timeout_ms ? cfg->connect_timeout_ms : RAFTNODE_CONNECT_TIMEOUT_MS,
        .send_timeout_ms = cfg->send_timeout_ms ? cfg->send_timeout_ms : RAFTNODE_SEND_TIMEOUT_MS,
        .bind_address = cfg->bind_address,
    };
    if ((rc = rafttcp_init(&rn->transport, loop, &tc, e)) < 0)
        goto err_after_alloc;
    rv = raft_uv_init(&rn->io, loop, rn->data_dir, &rn->transport);
    if (rv != 0) {
        rc = ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INVALID, "raft: data dir %s: %s (%s)",
                      rn->data_dir, raft_strerror(rv), rn->io.errmsg);
        goto err_after_transport;
    }
    /* Never drop damaged segments silently: that loses entries this node acknowledged. */
    raft_uv_set_auto_recovery(&rn->io, false);
    raft_uv_set_connect_retry_delay(&rn->io, cfg->connect_retry_ms ? cfg->connect_retry_ms
                                                                   : RAFTNODE_CONNECT_RETRY_MS);
    if (cfg->segment_size)
        raft_uv_set_segment_size(&rn->io, cfg->segment_size);

    rn->fsm.version = 1;
    rn->fsm.data = rn;
    rn->fsm.apply = fsm_apply;
    rn->fsm.snapshot = fsm_snapshot;
    rn->fsm.restore = fsm_restore;
    /* raft_init opens the data dir and reads its metadata. */
    rv = raft_init(&rn->raft, &rn->io, &rn->fsm, cfg->id, rn->address);
    if (rv != 0) {
        if (rv == RAFT_CORRUPT || rv == RAFT_MALFORMED)
            rc = damaged(rn, rv, raft_errmsg(&rn->raft), e);
        else
            rc = ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INTERNAL, "raft: open %s: %s (%s)",
                          rn->data_dir, raft_strerror(rv), raft_errmsg(&rn->raft));
        goto err_after_io;
    }
    rn->raft.data = rn;
    raft_set_election_timeout(&rn->raft, cfg->election_timeout_ms);
    raft_set_heartbeat_timeout(&rn->raft, cfg->heartbeat_timeout_ms);
    raft_set_pre_vote(&rn->raft, cfg->pre_vote);
    raft_set_snapshot_threshold(&rn->raft, cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&rn->raft, cfg->snapshot_trailing);
    raft_set_install_snapshot_timeout(&rn->raft, cfg->install_snapshot_timeout_ms
                                                     ? cfg->install_snapshot_timeout_ms
                                                     : RAFTNODE_INSTALL_SNAPSHOT_TIMEOUT_MS);

    uv_timer_init(loop, &rn->timer); /* cannot fail */
    rn->timer.data = rn;
    *out = rn;
    return 0;

err_after_io:
    raft_uv_close(&rn->io);
err_after_transport:
    rafttcp_close(&rn->transport);
err_after_alloc:
    if (rn->lock_fd >= 0)
        close(rn->lock_fd);
    free(rn->address);
    free(rn->data_dir);
    free(rn);
    return rc;
}

int raftnode_start(struct raftnode *rn, bool bootstrap, struct ferr *e)
{
    int rv;
    if (rn->started || rn->closing)
        return ferr_set(e, FERR_STATE, "raft: node already %s",
                        rn->closing ? "closing" : "started");
    if (bootstrap) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rv = raft_configuration_add(&conf, rn->id, rn->address, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&rn->raft, &conf);
        raft_configuration_close(&conf);
        /* RAFT_CANTBOOTSTRAP: the dir already holds a cluster; start from it. */
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
            return ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INTERNAL,
                            "raft: bootstrap %s: %s (%s)", rn->data_dir, raft_strerror(rv),
                            raft_errmsg(&rn->raft));
    }
    ferr_clear(&rn->restore_err);
    rv = raft_start(&rn->raft);
    if (rv != 0) {
        int rc;
        /* Whatever a failed start restored must not be served. */
        cdb_clear(rn->db);
        if (rn->restore_err.code)
            rc = ferr_set(e, FERR_STATE,
                          "raft: the snapshot in %s cannot be restored, this "
                          "node will not serve from it: %s",
                          rn->data_dir, rn->restore_err.msg);
        else if (rv == RAFT_CORRUPT || rv == RAFT_MALFORMED)
            rc = damaged(rn, rv, raft_errmsg(&rn->raft), e);
        else if (strstr(raft_errmsg(&rn->raft), "address already in use"))
            rc =
                ferr_set(e, -EADDRINUSE, "raft: listen on %s: address already in use", rn->address);
        else
            rc = ferr_set(e, rv == RAFT_NOMEM ? -ENOMEM : FERR_INTERNAL, "raft: start %s: %s (%s)",
                          rn->data_dir, raft_strerror(rv), raft_errmsg(&rn->raft));
        return rc;
    }
    rn->started = true;
    uv_timer_start(&rn->timer, tick_cb, rn->heartbeat_ms, rn->heartbeat_ms);
    check_state(rn);
    return 0;
}

static void close_step(struct raftnode *rn)
{
    if (--rn->closes_pending > 0)
        return;
    void (*cb)(void *) = rn->close_cb;
    void *data = rn->close_data;
    close(rn->lock_fd); /* the dir is free for a new node from here */
    free(rn->address);
    free(rn->data_dir);
    free(rn);
    if (cb)
        cb(data);
}

static void raft_closed(struct raft *r)
{
    struct raftnode *rn = r->data;
    raft_uv_close(&rn->io);
    rafttcp_close(&rn->transport);
    close_step(rn);
}

static void timer_closed(uv_handle_t *h)
{
    close_step(h->data);
}

/* Runs on the loop pass after raftnode_close, outside any libraft callback. */
static void close_now(uv_timer_t *t)
{
    struct raftnode *rn = t->data;
    rn->closes_pending = 2;
    uv_close((uv_handle_t *)&rn->timer, timer_closed);
    /* Fails pending requests (their callbacks see closing: -ECANCELED), then closes I/O. */
    rn->raft.data = rn;
    raft_close(&rn->raft, raft_closed);
}

void raftnode_close(struct raftnode *rn, void (*cb)(void *data), void *data)
{
    if (rn->closing)
        return;
    rn->closing = true;
    rn->close_cb = cb;
    rn->close_data = data;
    uv_timer_stop(&rn->timer);
    uv_timer_start(&rn->timer, close_now, 0, 0);
}

/* ---- writes ---- */

static void apply_done(struct raft_apply *req, int status, void *result)
{
    struct apply_req *a = (struct apply_req *)req;
    struct raftnode *rn = a->rn;
    char msg[FERR_MSG_MAX] = "";
    int rc = map_async_status(rn, status, msg, sizeof(msg));
    if (rc == 0) {
        const struct apply_result *last = result;
        if (last && last->index == req->index) {
            rc = last->status;
            snprintf(msg, sizeof(msg), "%s", last->msg);
        } else {
            rc = FERR_INTERNAL;
            snprintf(msg, sizeof(msg), "raft: the result of entry %llu was lost", req->index);
        }
    }
    if (a->cb)
        a->cb(rn, rc, req->index, msg, a->data);
    free(a);
    check_state(rn);
}

int raftnode_apply(struct raftnode *rn, const json_t *cmd, raftnode_apply_cb cb, void *data,
                   struct ferr *e)
{
    char *text;
    size_t len;
    if (rn->in_fsm)
        return ferr_set(e, FERR_STATE,
                        "raft: cannot propose from inside on_apply; defer it to "
                        "the next loop pass");
    if (rn->closing || !rn->started || state_of(rn) != RAFTNODE_LEADER || rn->raft.transfer)
        return not_leader(rn, e);
    int rc = cdb_cmd_encode(cmd, &text, &len, e);
    if (rc < 0)
        return rc;
    struct apply_req *a = calloc(1, sizeof(*a));
    void *base = raft_malloc(len);
    if (!a || !base) {
        free(a);
        raft_free(base);
        free(text);
        return ferr_set(e, -ENOMEM, "raft: apply: out of memory");
    }
    memcpy(base, text, len);
    free(text);
    a->rn = rn;
    a->cb = cb;
    a->data = data;
    struct raft_buffer buf = {.base = base, .len = len};
    int rv = raft_apply(&rn->raft, &a->req, &buf, 1, apply_done);
    if (rv != 0) {
        /* On failure the buffer stays ours (client.c raft_apply). */
        raft_free(base);
        free(a);
        return map_call_error(rn, rv, "apply", 0, e);
    }
    return 0;
}

static void barrier_done(struct raft_barrier *req, int status)
{
    (void)status;
    free(req);
}

void raftnode_nudge(struct raftnode *rn)
{
    if (rn->in_fsm || rn->closing || !rn->started || state_of(rn) != RAFTNODE_LEADER ||
        rn->raft.transfer)
        return;
    struct raft_barrier *b = calloc(1, sizeof(*b));
    if (b && raft_barrier(&rn->raft, b, barrier_done) != 0)
        free(b);
}

/* ---- membership ---- */

static void change_done(struct raft_change *req, int status)
{
    struct change_req *c = (struct change_req *)req;
    struct raftnode *rn = c->rn;
    char msg[FERR_MSG_MAX] = "";
    int rc = map_async_status(rn, status, msg, sizeof(msg));
    if (c->cb)
        c->cb(rn, rc, msg, c->data);
    free(c);
    check_state(rn);
}

static int change_begin(struct raftnode *rn, uint64_t id, const char *what, raftnode_done_cb cb,
                        void *data, struct change_req **out, struct ferr *e)
{
    if (rn->in_fsm)
        return ferr_set(e, FERR_STATE,
                        "raft: %s: not from inside on_apply; defer it to the next "
                        "loop pass",
                        what);
    if (rn->closing || !rn->started || state_of(rn) != RAFTNODE_LEADER)
        return not_leader(rn, e);
    if (id == 0 || id > CDB_ID_MAX)
        return ferr_set(e, FERR_INVALID, "raft: %s: node id %" PRIu64 " is out of range", what, id);
    struct change_req *c = calloc(1, sizeof(*c));
    if (!c)
        return ferr_set(e, -ENOMEM, "raft: %s: out of memory", what);
    c->rn = rn;
    c->cb = cb;
    c->data = data;
    c->id = id;
    c->what = what;
    *out = c;
    return 0;
}

static int change_end(struct raftnode *rn, struct change_req *c, int rv, struct ferr *e)
{
    if (rv == 0)
        return 0;
    int rc = map_call_error(rn, rv, c->what, c->id, e);
    free(c);
    return rc;
}

int raftnode_add(struct raftnode *rn, uint64_t id, const char *address, raftnode_done_cb cb,
                 void *data, struct ferr *e)
{
    struct change_req *c;
    if (!ipv4_addr_valid(address))
        return ferr_set(e, FERR_INVALID, "raft: add: address \"%s\": use A.B.C.D:PORT",
                        address ? address : "");
    int rc = change_begin(rn, id, "add", cb, data, &c, e);
    if (rc < 0)
        return rc;
    return change_end(rn, c, raft_add(&rn->raft, &c->req, id, address, change_done), e);
}

int raftnode_assign(struct raftnode *rn, uint64_t id, enum raftnode_role role, raftnode_done_cb cb,
                    void *data, struct ferr *e)
{
    struct change_req *c;
    int rc = change_begin(rn, id, "assign", cb, data, &c, e);
    if (rc < 0)
        return rc;
    return change_end(rn, c, raft_assign(&rn->raft, &c->req, id, role_to_raft(role), change_done),
                      e);
}

int raftnode_remove(struct raftnode *rn, uint64_t id, raftnode_done_cb cb, void *data,
                    struct ferr *e)
{
    struct change_req *c;
    int rc = change_begin(rn, id, "remove", cb, data, &c, e);
    if (rc < 0)
        return rc;
    return change_end(rn, c, raft_remove(&rn->raft, &c->req, id, change_done), e);
}

static void transfer_done(struct raft_transfer *req)
{
    struct raftnode *rn = req->data;
    char msg[FERR_MSG_MAX] = "";
    int rc = 0;
    uint64_t leader = raftnode_leader(rn, NULL);
    rn->transfer_busy = false;
    if (rn->closing) {
        rc = -ECANCELED;
        snprintf(msg, sizeof(msg), "raft: the node closed before the transfer completed");
    } else if (leader != req->id) {
        rc = FERR_TIMEOUT;
        snprintf(msg, sizeof(msg),
                 "raft: node %llu did not take over leadership within an "
                 "election timeout",
                 req->id);
    }
    if (rn->transfer_cb)
        rn->transfer_cb(rn, rc, msg, rn->transfer_data);
    check_state(rn);
}

int raftnode_transfer(struct raftnode *rn, uint64_t id, raftnode_done_cb cb, void *data,
                      struct ferr *e)
{
    if (rn->in_fsm)
        return ferr_set(e, FERR_STATE,
                        "raft: transfer: not from inside on_apply; defer it to "
                        "the next loop pass");
    if (rn->closing || !rn->started || state_of(rn) != RAFTNODE_LEADER)
        return not_leader(rn, e);
    if (rn->transfer_busy || rn->raft.transfer)
        return ferr_set(e, FERR_STATE, "raft: a leadership transfer is already in progress");
    memset(&rn->transfer, 0, sizeof(rn->transfer));
    rn->transfer.data = rn;
    rn->transfer_cb = cb;
    rn->transfer_data = data;
    int rv = raft_transfer(&rn->raft, &rn->transfer, id, transfer_done);
    if (rv != 0)
        return map_call_error(rn, rv, "transfer", id, e);
    rn->transfer_busy = true;
    return 0;
}

/* ---- queries ---- */

uint64_t raftnode_leader(const struct raftnode *rn, const char **address)
{
    raft_id id = 0;
    const char *addr = NULL;
    if (rn->started && !rn->closing)
        raft_leader((struct raft *)&rn->raft, &id, &addr);
    if (address)
        *address = id && addr ? addr : "";
    return id;
}

bool raftnode_is_leader(const struct raftnode *rn)
{
    return state_of(rn) == RAFTNODE_LEADER;
}

void raftnode_info(const struct raftnode *rn, struct raftnode_info *out)
{
    struct raft *r = (struct raft *)&rn->raft;
    const char *addr;
    memset(out, 0, sizeof(*out));
    out->id = rn->id;
    out->state = state_of(rn);
    out->leader_contact_ms = UINT64_MAX;
    if (out->state == RAFTNODE_UNAVAILABLE)
        return;
    out->term = r->current_term;
    out->leader_id = raftnode_leader(rn, &addr);
    snprintf(out->leader_address, sizeof(out->leader_address), "%s", addr);
    out->commit_index = r->commit_index;
    out->last_applied = raft_last_applied(r);
    out->last_index = raft_last_index(r);
    out->snapshot_index = r->log.snapshot.last_index;
    if (out->state == RAFTNODE_LEADER) {
        out->leader_contact_ms = 0;
    } else if (out->state == RAFTNODE_FOLLOWER && out->leader_id) {
        /* Followers restart this timer on every AppendEntries from the leader
         * (recv_append_entries.c), heartbeats included; same clock as uv_now. */
        uint64_t now = uv_now(rn->loop);
        out->leader_contact_ms = now > r->election_timer_start ? now - r->election_timer_start : 0;
    }
}

json_t *raftnode_info_json(const struct raftnode *rn)
{
    struct raftnode_info i;
    raftnode_info(rn, &i);
    json_t *contact = i.leader_contact_ms == UINT64_MAX
                          ? json_null()
                          : json_integer((json_int_t)i.leader_contact_ms);
    return json_pack("{sI ss sI sI ss sI sI sI sI so}", "id", (json_int_t)i.id, "state",
                     raftnode_state_name(i.state), "term", (json_int_t)i.term, "leader_id",
                     (json_int_t)i.leader_id, "leader_address", i.leader_address, "commit_index",
                     (json_int_t)i.commit_index, "last_applied", (json_int_t)i.last_applied,
                     "last_index", (json_int_t)i.last_index, "snapshot_index",
                     (json_int_t)i.snapshot_index, "leader_contact_ms", contact);
}

static int cmp_member(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "id"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "id"));
    return x < y ? -1 : x > y;
}

json_t *raftnode_members(const struct raftnode *rn)
{
    const struct raft_configuration *conf = &rn->raft.configuration;
    unsigned n = rn->started && !rn->closing ? conf->n : 0;
    json_t **items = calloc(n ? n : 1, sizeof(*items));
    json_t *arr = json_array();
    unsigned i;
    if (!items || !arr)
        goto fail;
    for (i = 0; i < n; i++) {
        items[i] = json_pack("{sI ss ss}", "id", (json_int_t)conf->servers[i].id, "address",
                             conf->servers[i].address, "role",
                             raftnode_role_name(role_from_raft(conf->servers[i].role)));
        if (!items[i])
            goto fail;
    }
    qsort(items, n, sizeof(*items), cmp_member);
    for (i = 0; i < n; i++) {
        json_t *it = items[i];
        items[i] = NULL;
        if (json_array_append_new(arr, it) < 0)
            goto fail;
    }
    free(items);
    return arr;
fail:
    for (i = 0; items && i < n; i++)
        json_decref(items[i]);
    free(items);
    json_decref(arr);
    return NULL;
}

struct cdb *raftnode_cdb(const struct raftnode *rn)
{
    return rn->db;
}
