/* SPDX-License-Identifier: MIT */
/* The cluster database: a pure state machine of nodes, VMs, owners and events, replicated by Raft.
 */
#ifndef FERRY_CLUSTER_CDB_H
#define FERRY_CLUSTER_CDB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/*
 * The database changes only through commands, JSON objects encoded to bytes by
 * cdb_cmd_encode() and applied in log order by cdb_apply() on every node. There is no I/O
 * and no clock in here: the log index and the local wall time are passed in, and a command
 * carries every time it needs ("time_ms", ...), so every node reaches the same state.
 * Every node rejects a bad command the same way and the rejection changes nothing but the
 * applied index. Nothing here knows about Raft; raftnode.c glues the two.
 *
 * Commands (version 8; versions 1 to 7 are still applied, see below). Every command is {"v": 8,
 * "op": OP, ...fields}; unknown fields, unknown ops and other versions are rejected. A node
 * has two independent states: its health, "state" ("up"|"down", set by the leader's health
 * check), and its admin state, "admin" ("active"|"draining"|"paused", set by drain and
 * resume; only an up, active node takes new VMs). Names are 1-63 of [a-z0-9-], starting with a
 * letter. Node ids are integers 1..2^53-1 (exact in JavaScript too) and equal the node's Raft
 * id. Addresses are "A.B.C.D:PORT" or "[V6]:PORT".
 *
 *   node_upsert  id; name, api_addr, raft_addr (required when the node is new);
 *                role "voter"|"standby"|"spare" (default spare); state "up"|"down"
 *                (default up; a new node's admin state is "active"); memory {"total_mib",
 *                "free_mib"};
 *                vm_count; accel ""|"kvm"|"tcg"; last_heartbeat_ms; cmd_version (the newest
 *                command version the node understands, default 1). Creates the node or
 *                replaces the fields given. A node's name never changes; names are unique.
 *   node_remove  id. Refused (FERR_STATE) while the node owns VMs or coordinates a volume.
 *   node_state   id, state ("up"|"down"), time_ms; reason (optional, default ""). Sets the
 *                health only.
 *   node_admin   id, admin ("active"|"draining"|"paused"), time_ms; reason (optional,
 *                default ""). Sets the admin state only. New in version 2.
 *   vm_put       name, spec (a JSON object; its "name", if any, must equal name); owner (a
 *                node name or "" for none; default: kept, or "" for a new VM); state (a
 *                token of 1-32 [a-z0-9_.-]; default: kept, or "stopped"); reason (optional).
 *   vm_owner     name, owner; expect_owner (optional: the command fails with FERR_STATE
 *                unless the current owner is this, which makes moves compare-and-set).
 *   vm_state     name, state; reason (optional, default ""); runtime (version 3, optional:
 *                what the owner runs the VM with, {"accel": "kvm"|"tcg", "pid": 1..CDB_PID_MAX,
 *                "started_ms"}, each optional; a version 3 vm_state without it says nothing
 *                runs and removes it from the record; older versions leave it as it is).
 *   vm_epoch     (version 5) name, epoch (1..2^53-1: the VM's writer epoch, a fencing token for
 *                its disks); expect_epoch (optional: FERR_STATE unless the VM's epoch is this, 0
 *                for a VM that has none). Sets the record's "epoch"; FERR_STATE when epoch is
 *                not above the current one (it only rises). No other op changes it: vm_put,
 *                vm_owner and vm_state keep it.
 *                Version 6 adds owner (optional): FERR_STATE unless the VM's owner is this
 *                node, so only a VM's owner raises its epoch (a node cut off from the cluster
 *                cannot start a VM the cluster gave to another while it was away).
 *   vm_failover  (version 6) name, owner, expect_owner (required: compare-and-set), state,
 *                reason (optional), failover {"from", "to", "why" (optional), "heard_ms",
 *                "down_ms", "stale_ms", "decided_ms" (wall clock ms, optional)}: the leader gives a
 * VM of a dead node to another in one step; sets owner, state, reason and the record's "failover",
 * removes the runtime; the epoch stays. vm_remove    name. cluster_profile (version 7) profile
 * ("default"|"fast", fleet/timing.h), time_ms (wall clock): the cluster's timing profile, kept in
 * the meta record as "profile" and "profile_ms"; FERR_STATE before the cluster has its meta.
 *   event_add    time_ms, type (a token of 1-64 [a-z0-9_.-], e.g. "vm.failover"); node, vm
 *                (names or "", optional); message (optional, at most 1024 bytes). The event
 *                gets the next id; only the last CDB_EVENTS_MAX events are kept. uid
 *                (version 4, optional: 1-64 of [a-z0-9_.-], unique per event): an event_add
 *                whose uid a kept event has is applied as nothing, so a writer may send an
 *                event again when it cannot know whether the first try was applied.
 *   task_put     (version 8) task (a task record, cluster/taskrec.h, without "generation"),
 *                time_ms (the writer's wall clock): adds the task or replaces its record
 *                (generation +1); FERR_STATE when the task has ended already (an ended
 *                task never changes) or when its kind, target, node, user or start_ms would
 *                change. Ended tasks older than CDB_TASKS_KEEP_MS at time_ms are dropped,
 *                then the oldest ended ones over CDB_TASKS_MAX.
 *   cluster_meta id (1-64 of [A-Za-z0-9-]; once set it never changes), name, created_ms.
 *   csv_put      (version 4) name, path (absolute, normalized, at most CDB_CSV_PATH_MAX), id
 *                (1-64 of [a-z0-9_.-]: what the volume's id file says), coordinator (a
 *                node), epoch, time_ms; expect_epoch (optional: FERR_STATE unless the
 *                volume's epoch is this, 0 for "no such volume"). Adds a volume at epoch 1
 *                (FERR_EXISTS when its path is, contains or is inside another volume's, or
 *                its id is another's) or moves its coordinator to a higher epoch (its path
 *                and id never change).
 *   csv_remove   (version 4) name; FERR_STATE while a VM's spec names a file on the volume
 *                (a disk, the kernel or the initrd), naming the VMs.
 *   migration_measure  id (of a "vm.migration" event: a migration's record), client_gap_ms
 *                (a number 0..CDB_CLIENT_GAP_MAX_MS: the longest gap a client of the VM saw,
 *                stored to 0.1 ms), source (a token of 1-32 [a-z0-9_.-] saying how it was
 *                measured, e.g. "lab-probe"); replace (optional bool, default false). Adds
 *                "client_gap_ms" and "client_gap_source" to the record (the event's message);
 *                FERR_NOTFOUND when no such record is kept, FERR_EXISTS when it has a client
 *                gap already and replace is not true, FERR_LIMIT when the message would grow
 *                over 1024 bytes. The event keeps its id and time.
 *
 * Records returned by the queries:
 *   node  {"id", "name", "api_addr", "raft_addr", "role", "state", "state_reason",
 *          "state_changed_ms", "admin", "admin_reason", "admin_changed_ms", "memory":
 *          {"total_mib", "free_mib"}, "vm_count", "accel", "last_heartbeat_ms", "cmd_version"}
 *   csv   {"name", "path", "id", "coordinator", "epoch", "created_ms", "coordinator_since_ms"}
 *   vm    {"name", "spec", "owner", "state", "reason", "generation", "runtime" (only while
 *          the owner says something runs), "epoch" (only once above 0; none means 0),
 *          "failover" (its last failover, only once it had one)}
 *          (generation counts the changes of the record, starting at 1)
 *   event {"id", "time_ms", "type", "node", "vm", "message"}
 *   meta  {"id", "name", "created_ms"} or {} before the first cluster_meta
 *
 * Version 1 differs only in the node state: one word for health and admin state, "up"
 * (health up, admin active), "paused" or "draining" (health up, that admin state), or "down"
 * (health down; the admin state stays, or is the one a reason containing "(was paused)" or
 * "(was draining)" names: version 1's health check kept it there), in node_state and
 * node_upsert; there is no node_admin. Snapshot format 1 has node records without the admin
 * fields and that state; they are read the same way (a down node that does not say is active).
 *
 * Version 2 differs from version 3 only in vm_state, which has no runtime in version 2.
 * Version 4 adds csv_put and csv_remove, and a uid to event_add. Snapshots carry "csvs" only
 * when there are volumes (format 2 otherwise unchanged).
 * Version 6 adds vm_failover and vm_epoch's owner; a VM record carries "failover" only once
 * a vm_failover wrote it (a snapshot reader of version 5 refuses such a record).
 * Version 7 adds cluster_profile, and net_ms to a vm_state's runtime; the meta record carries
 * "profile" only once it was set, a runtime "net_ms" only once a version 7 vm_state wrote it
 * (a snapshot reader of version 6 refuses such records).
 * Version 8 adds task_put; snapshots carry "tasks" only when there are some (a snapshot
 * reader of version 7 refuses the field).
 * Version 5 adds vm_epoch. A VM record carries "epoch" only once a vm_epoch set it, so the
 * snapshots of a cluster that never used version 5 are the bytes version 4 writes.
 *
 * Upgrades: a node rejects a command version it does not know, so a cluster stays
 * consistent only if the leader never proposes a version above cdb_cmd_version_min(). A
 * record with a runtime (written only once every node applied version 3) is refused by a
 * snapshot reader of version 2: downgrading a node below version 3 after that needs a fresh
 * join. The same holds for an event with a uid (version 4) and a snapshot reader of version 3,
 * and for a VM record with an epoch (version 5) and a snapshot reader of version 4: it knows
 * no "epoch" field and refuses the record as it refuses any unknown field.
 */

#define CDB_CMD_VERSION 8            /* version of the commands this code writes and applies */
#define CDB_CMD_VERSION_OLDEST 1     /* oldest command version this code still applies */
#define CDB_SNAPSHOT_FORMAT 2        /* format of the snapshots this code writes */
#define CDB_SNAPSHOT_FORMAT_OLDEST 1 /* oldest snapshot format this code still reads */
#define CDB_EVENTS_MAX 1000          /* events kept */
#define CDB_TASKS_MAX 500            /* ended tasks kept, the newest */
#define CDB_TASKS_KEEP_MS (7LL * 24 * 3600 * 1000) /* ended tasks kept at most this long */
#define CDB_CMD_MAX (1024 * 1024)    /* largest encoded command, padding included */
#define CDB_SNAPSHOT_MAX (256u * 1024 * 1024) /* largest snapshot restored */
#define CDB_ID_MAX ((1ULL << 53) - 1)         /* largest node id */
#define CDB_CLIENT_GAP_MAX_MS 3600000         /* largest client gap recorded (an hour) */
#define CDB_CSV_PATH_MAX 400                  /* longest volume path */
#define CDB_PID_MAX 4194304                   /* Linux's PID_MAX_LIMIT */
#define CDB_REASON_MAX 256 /* longest reason of a node's health or admin state, in bytes */

/*
 * Building commands: the one place that writes the JSON of every op above, so that a caller
 * names what it wants and never packs the envelope by hand. Each builder returns a new
 * command the caller owns (json_decref), or NULL when out of memory (or when a string is not
 * UTF-8, which jansson cannot store). Nothing is checked here: cdb_cmd_check() checks the
 * values when the command is written (cdb_cmd_encode, raftnode_apply), as for any command.
 * A NULL for a required string leaves its field out, so that check refuses the command and
 * names the field; a NULL optional string or object leaves its field out, which means "the
 * default" or "keep", as the op says. Strings and objects passed in are copied.
 *
 * Every op but node_state and node_admin is the same in command versions 1 and 2 and is
 * written as version 1, which nodes of both versions apply; cdb_node_cmd() writes the
 * version that cdb_cmd_version_min() allows. The JSON (key order included) is the one the
 * call sites packed by hand before these existed, byte for byte, so older nodes read it.
 */

/* vm_put: name, spec (stolen, also on failure; NULL gives NULL), owner and state (NULL: left
 * out: kept, or "" and "stopped" for a new VM). */
json_t *cdb_cmd_vm_put(const char *name, json_t *spec, const char *owner, const char *state);
/* vm_owner: name, owner; expect_owner NULL leaves the compare-and-set out. */
json_t *cdb_cmd_vm_owner(const char *name, const char *owner, const char *expect_owner);
/* vm_state: name, state; reason NULL leaves it out (""). */
json_t *cdb_cmd_vm_state(const char *name, const char *state, const char *reason);
/* What a VM's owner runs it with, for vm_state from command version 3 on. */
struct cdb_vm_runtime {
    const char *accel;   /* "kvm"|"tcg", NULL: left out */
    int pid;             /* 0: left out */
    uint64_t started_ms; /* wall clock; 0: left out */
    uint64_t net_ms;     /* wall clock, the guest's first packet; 0: left out (version 7) */
};
/* vm_state in command version `version` (cdb_cmd_version_min()): from version 3 on with rt
 * (NULL: nothing runs); below it, cdb_cmd_vm_state's version 1 command without the runtime,
 * which every node applies. */
json_t *cdb_cmd_vm_state_at(int version, const char *name, const char *state, const char *reason,
                            const struct cdb_vm_runtime *rt);
/* vm_remove: name. */
json_t *cdb_cmd_vm_remove(const char *name);
/* event_add at time_ms (wall clock) of type; node, vm and message NULL leave them out (""). A
 * time above 2^53 - 1 gives a command that cdb_cmd_check() refuses. */
json_t *cdb_cmd_event_add(uint64_t time_ms, const char *type, const char *node, const char *vm,
                          const char *message);
/* The same in command version 4 with a uid (NULL: none; then it is version 1's). */
json_t *cdb_cmd_event_add_uid(uint64_t time_ms, const char *type, const char *node,
                              const char *vm, const char *message, const char *uid);
/* csv_put (command version 4); expect_epoch < 0 leaves it out. */
json_t *cdb_cmd_csv_put(const char *name, const char *path, const char *id, const char *coordinator,
                        uint64_t epoch, uint64_t time_ms, int64_t expect_epoch);
/* csv_remove (command version 4). */
json_t *cdb_cmd_csv_remove(const char *name);
/* vm_epoch (command version 5): name, epoch; expect_epoch < 0 leaves it out. */
json_t *cdb_cmd_vm_epoch(const char *name, uint64_t epoch, long long expect_epoch);
/* vm_epoch in command version 6 with owner: raised only if owner still owns the VM. */
json_t *cdb_cmd_vm_epoch_owned(const char *name, uint64_t epoch, long long expect_epoch,
                               const char *owner);
/* The timeline of a failover (wall clock ms, 0: unknown). */
struct cdb_failover {
    const char *from, *to, *why;
    uint64_t heard_ms, down_ms, stale_ms, decided_ms;
};
/* vm_failover (command version 6): name moves from fo->from to fo->to in state, with reason. */
json_t *cdb_cmd_vm_failover(const char *name, const char *state, const char *reason,
                            const struct cdb_failover *fo);
/* migration_measure of migration id: client_gap_ms is a JSON number (borrowed, copied: an
 * integer stays an integer on the wire; NULL leaves it out); source; replace is always
 * written, true or false. */
json_t *cdb_cmd_migration_measure(uint64_t id, const json_t *client_gap_ms, const char *source,
                                  bool replace);

/* The fields of a node_upsert. A NULL pointer or a zero number leaves its field out: the
 * record keeps what it has (or, for a new node, gets the default). */
struct cdb_node_fields {
    uint64_t id;      /* required: 1..CDB_ID_MAX, the node's Raft id */
    const char *name; /* name, api_addr, raft_addr: required for a new node */
    const char *api_addr;
    const char *raft_addr;
    const char *role;           /* "voter"|"standby"|"spare" */
    const char *state;          /* "up"|"down" */
    uint64_t last_heartbeat_ms; /* wall clock */
    int cmd_version;            /* the newest command version the node applies */
    const json_t *memory;       /* {"total_mib", "free_mib"}, copied */
    const char *accel;          /* ""|"kvm"|"tcg" */
};
/* node_upsert of f (borrowed), its fields in the order the struct lists them. */
json_t *cdb_cmd_node_upsert(const struct cdb_node_fields *f);
/* node_remove: id. */
json_t *cdb_cmd_node_remove(uint64_t id);
/* cluster_meta: the cluster's id, name and creation time (wall clock). */
json_t *cdb_cmd_cluster_meta(const char *id, const char *name, uint64_t created_ms);
/* cluster_profile (command version 7): profile, set at time_ms (wall clock). */
json_t *cdb_cmd_cluster_profile(const char *profile, uint64_t time_ms);

/* The op of a command ("vm_put", ...), NULL when it has none. cmd borrowed; the string
 * lives as long as cmd. */
const char *cdb_cmd_op(const json_t *cmd);

/*
 * Builds the command that sets the health (state "up"|"down", admin NULL) or the admin state
 * (admin "active"|"draining"|"paused", state NULL) of the node whose record is rec, in command
 * version `version` (cdb_cmd_version_min()): node_state or node_admin from version 2 on; for
 * version 1 a node_state whose one word carries what rec says of the other half (and a down
 * node's admin state in its reason), so nodes of both versions reach the same state. reason
 * may be NULL (""). Returns a new command the caller owns, NULL when out of memory; its
 * values are checked when it is written. rec borrowed.
 */
json_t *cdb_node_cmd(int version, const json_t *rec, const char *state, const char *admin,
                     const char *reason, uint64_t time_ms);

struct cdb;

/* A new, empty database (applied index 0). NULL when out of memory. */
struct cdb *cdb_new(void);
/* Frees db and everything in it. NULL is fine. */
void cdb_free(struct cdb *db);

/*
 * Checks that cmd is a well-formed command of a known version and op: field names, types,
 * ranges and syntax. It does not look at any state, so a command that passes can still be
 * rejected by cdb_apply() (a missing node, a duplicate name). Returns 0 or FERR_INVALID.
 */
int cdb_cmd_check(const json_t *cmd, struct ferr *e);

/*
 * Checks cmd (cdb_cmd_check) and encodes it as compact JSON padded with NULs to a multiple of
 * 8 bytes: libraft 0.15 garbles entries of other sizes when several share one message
 * (canonical/raft #189, #304). On 0, *out is a new malloc()ed buffer of *len bytes that the
 * caller frees. Returns FERR_INVALID, FERR_TOOBIG (over CDB_CMD_MAX) or -ENOMEM; then *out
 * is untouched. cmd stays the caller's.
 */
int cdb_cmd_encode(const json_t *cmd, char **out, size_t *len, struct ferr *e);

/*
 * Decodes an encoded command: trailing NULs and whitespace (the padding) are stripped, the
 * rest must be one JSON object (of duplicate keys the last wins, as in jansson; the encoder
 * never writes them). Only the syntax of JSON is checked here. On 0, *out is a new reference
 * the caller owns. Returns FERR_INVALID, FERR_TOOBIG, or -ENOMEM when jansson ran out of
 * memory on text that is valid: callers must not mistake that for a bad command.
 */
int cdb_cmd_decode(const void *buf, size_t len, json_t **out, struct ferr *e);

/*
 * Applies the command encoded in buf as log entry number index, at local wall time now_ms
 * (recorded for staleness reports, never stored in the state). index must be above the
 * applied index (else FERR_STATE and nothing changes). A valid command changes the state;
 * a rejected one (FERR_INVALID, FERR_NOTFOUND, FERR_EXISTS, FERR_STATE: message in e,
 * prefixed "cdb: OP: ") leaves the state as it was, but the index still counts as applied,
 * because every node rejects that entry identically. -ENOMEM is the only error that leaves
 * the applied index behind too: the same entry may be applied again later. buf is borrowed.
 */
int cdb_apply(struct cdb *db, uint64_t index, const void *buf, size_t len, uint64_t now_ms,
              struct ferr *e);
/* The same for a command already decoded (cmd borrowed). */
int cdb_apply_cmd(struct cdb *db, uint64_t index, const json_t *cmd, uint64_t now_ms,
                  struct ferr *e);

/*
 * Serializes the whole state as JSON {"format": 2, "index", "next_event_id", "meta", "nodes",
 * "vms", "events"}. On 0, *out is a new malloc()ed buffer of *len bytes (not NUL-terminated
 * as far as the length goes; a NUL follows it) the caller frees. Returns -ENOMEM.
 */
int cdb_snapshot(const struct cdb *db, char **out, size_t *len, struct ferr *e);

/*
 * Replaces the whole state with a snapshot from cdb_snapshot(), taken at applied index
 * "index" inside it; now_ms becomes the applied wall time. Every record is checked as if it
 * came from a command. Returns FERR_INVALID (not a snapshot, a bad record, an unknown format:
 * the message names it), FERR_TOOBIG or -ENOMEM; then db is exactly as before. buf borrowed;
 * trailing NULs are ignored.
 */
int cdb_restore(struct cdb *db, const void *buf, size_t len, uint64_t now_ms, struct ferr *e);

/* Empties db back to how cdb_new() made it (applied index 0). Never fails. */
void cdb_clear(struct cdb *db);

/* Index of the last command applied (or of the restored snapshot); 0 for a new database. */
uint64_t cdb_applied_index(const struct cdb *db);
/* Local wall time (as passed in) of the last apply or restore; 0 if none. Reads served from
 * this node are at least as old as this. */
uint64_t cdb_applied_wall_ms(const struct cdb *db);
/* The lowest cmd_version of all nodes (CDB_CMD_VERSION when there are none): the newest
 * command version the leader may propose. */
int cdb_cmd_version_min(const struct cdb *db);

/*
 * Queries. Each returns new JSON that the caller owns (json_decref), deep copies that later
 * commands do not change. The list functions return NULL only when out of memory.
 */
/* All nodes, as an array sorted by id. */
json_t *cdb_nodes(const struct cdb *db);
/* The same sorted by name. */
json_t *cdb_nodes_by_name(const struct cdb *db);
/* One node by id or by name; FERR_NOTFOUND when absent (-ENOMEM). *out untouched on error. */
int cdb_node_get(const struct cdb *db, uint64_t id, json_t **out, struct ferr *e);
int cdb_node_find(const struct cdb *db, const char *name, json_t **out, struct ferr *e);
/* VMs as an array sorted by name; owner NULL for all, "" for unowned ones, else that node's. */
json_t *cdb_vms(const struct cdb *db, const char *owner);
/* One VM; FERR_NOTFOUND when absent (-ENOMEM). */
int cdb_vm_get(const struct cdb *db, const char *name, json_t **out, struct ferr *e);
/* A VM's writer epoch (vm_epoch); 0 when it has none or there is no such VM (or name is NULL). */
uint64_t cdb_vm_epoch(const struct cdb *db, const char *name);
/* Events with id > since, oldest first, at most limit of them (0: no limit). */
json_t *cdb_events(const struct cdb *db, uint64_t since, size_t limit);
/* Task records (cluster/taskrec.h) in no order (taskrec_select sorts); one by id
 * (FERR_NOTFOUND). */
json_t *cdb_tasks(const struct cdb *db);
int cdb_task_get(const struct cdb *db, const char *id, json_t **out, struct ferr *e);
/* task_put (command version 8) of rec (borrowed, copied) at time_ms (wall clock). */
json_t *cdb_cmd_task_put(const json_t *rec, uint64_t time_ms);
/* Cluster shared volume records, sorted by name; one by name (FERR_NOTFOUND). */
json_t *cdb_csvs(const struct cdb *db);
int cdb_csv_get(const struct cdb *db, const char *name, json_t **out, struct ferr *e);
/* The volume whose directory holds the file path (a copy), or NULL: volumes never nest. */
json_t *cdb_csv_holding(const struct cdb *db, const char *path);
/* 0 when no volume's path is, contains or is inside path; else FERR_EXISTS naming it (what
 * csv_put refuses for a new volume). */
int cdb_csv_path_free(const struct cdb *db, const char *path, struct ferr *e);
/* The names of the VMs whose spec names a file on volume name (sorted; [] for no volume). */
json_t *cdb_csv_vms(const struct cdb *db, const char *name);
/* The cluster's identity, {} until set. */
json_t *cdb_meta(const struct cdb *db);
/* The cluster's timing profile, "default" when never set; valid until the next apply or
 * restore. */
const char *cdb_profile(const struct cdb *db);

#endif
