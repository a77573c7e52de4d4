/* SPDX-License-Identifier: MIT */
/* The one place that builds cluster database commands: typed arguments in, the JSON of cdb.h out.
 */
#include "cluster/cdb.h"

#include <stdio.h>
#include <string.h>

#include "common/jsonfield.h"

/* The version of every op that versions 1 and 2 share: nodes of both apply it. */
#define CMD_V1 1

/* {"v": v, "op": op}; NULL when out of memory. */
static json_t *cmd_new(int v, const char *op)
{
    return json_pack("{s:i, s:s}", "v", v, "op", op);
}

/*
 * The field adders: each adds key to cmd and returns cmd, or frees cmd and returns NULL when
 * out of memory. A NULL cmd stays NULL, so a builder adds every field and checks once. val is
 * stolen, also on failure; a NULL val means out of memory.
 */
static json_t *with(json_t *cmd, const char *key, json_t *val)
{
    if (json_object_set_new(cmd, key, val) == 0) /* frees val when it fails */
        return cmd;
    json_decref(cmd);
    return NULL;
}

/* A string; NULL leaves the field out. */
static json_t *with_str(json_t *cmd, const char *key, const char *s)
{
    return s ? with(cmd, key, json_string(s)) : cmd;
}

static json_t *with_int(json_t *cmd, const char *key, uint64_t i)
{
    return with(cmd, key, json_integer((json_int_t)i));
}

/* A copy of j; NULL leaves the field out. */
static json_t *with_copy(json_t *cmd, const char *key, const json_t *j)
{
    return j ? with(cmd, key, json_deep_copy(j)) : cmd;
}

json_t *cdb_cmd_vm_put(const char *name, json_t *spec, const char *owner, const char *state)
{
    json_t *cmd = with_str(cmd_new(CMD_V1, "vm_put"), "name", name);
    cmd = with(cmd, "spec", spec);
    cmd = with_str(cmd, "owner", owner);
    return with_str(cmd, "state", state);
}

/* An op on a VM by name with two optional strings after it (vm_owner, vm_state). */
static json_t *vm_cmd(const char *op, const char *name, const char *k1, const char *v1,
                      const char *k2, const char *v2)
{
    json_t *cmd = with_str(cmd_new(CMD_V1, op), "name", name);
    cmd = with_str(cmd, k1, v1);
    return with_str(cmd, k2, v2);
}

json_t *cdb_cmd_vm_owner(const char *name, const char *owner, const char *expect_owner)
{
    return vm_cmd("vm_owner", name, "owner", owner, "expect_owner", expect_owner);
}

json_t *cdb_cmd_vm_state(const char *name, const char *state, const char *reason)
{
    return vm_cmd("vm_state", name, "state", state, "reason", reason);
}

json_t *cdb_cmd_vm_state_at(int version, const char *name, const char *state, const char *reason,
                            const struct cdb_vm_runtime *rt)
{
    if (version < 3)
        return cdb_cmd_vm_state(name, state, reason);
    bool net = rt && rt->net_ms && version >= 7;
    json_t *cmd = with_str(cmd_new(net ? 7 : 3, "vm_state"), "name", name);
    cmd = with_str(cmd, "state", state);
    cmd = with_str(cmd, "reason", reason);
    if (!cmd || !rt)
        return cmd;
    json_t *r = json_object();
    r = with_str(r, "accel", rt->accel);
    if (rt->pid > 0)
        r = with_int(r, "pid", (uint64_t)rt->pid);
    if (rt->started_ms)
        r = with_int(r, "started_ms", rt->started_ms);
    if (net)
        r = with_int(r, "net_ms", rt->net_ms);
    return with(cmd, "runtime", r);
}

json_t *cdb_cmd_vm_remove(const char *name)
{
    return with_str(cmd_new(CMD_V1, "vm_remove"), "name", name);
}

json_t *cdb_cmd_event_add(uint64_t time_ms, const char *type, const char *node, const char *vm,
                          const char *message)
{
    json_t *cmd = with_int(cmd_new(CMD_V1, "event_add"), "time_ms", time_ms);
    cmd = with_str(cmd, "type", type);
    cmd = with_str(cmd, "node", node);
    cmd = with_str(cmd, "vm", vm);
    return with_str(cmd, "message", message);
}

json_t *cdb_cmd_event_add_uid(uint64_t time_ms, const char *type, const char *node,
                              const char *vm, const char *message, const char *uid)
{
    json_t *cmd = cdb_cmd_event_add(time_ms, type, node, vm, message);
    if (!uid)
        return cmd;
    cmd = with(cmd, "v", json_integer(4));
    return with_str(cmd, "uid", uid);
}

json_t *cdb_cmd_migration_measure(uint64_t id, const json_t *client_gap_ms, const char *source,
                                  bool replace)
{
    json_t *cmd = with_int(cmd_new(CMD_V1, "migration_measure"), "id", id);
    cmd = with_copy(cmd, "client_gap_ms", client_gap_ms);
    cmd = with_str(cmd, "source", source);
    return with(cmd, "replace", json_boolean(replace));
}

json_t *cdb_cmd_node_upsert(const struct cdb_node_fields *f)
{
    json_t *cmd = with_int(cmd_new(CMD_V1, "node_upsert"), "id", f->id);
    cmd = with_str(cmd, "name", f->name);
    cmd = with_str(cmd, "api_addr", f->api_addr);
    cmd = with_str(cmd, "raft_addr", f->raft_addr);
    cmd = with_str(cmd, "role", f->role);
    cmd = with_str(cmd, "state", f->state);
    if (f->last_heartbeat_ms)
        cmd = with_int(cmd, "last_heartbeat_ms", f->last_heartbeat_ms);
    if (f->cmd_version)
        cmd = with(cmd, "cmd_version", json_integer(f->cmd_version));
    cmd = with_copy(cmd, "memory", f->memory);
    return with_str(cmd, "accel", f->accel);
}

json_t *cdb_cmd_node_remove(uint64_t id)
{
    return with_int(cmd_new(CMD_V1, "node_remove"), "id", id);
}

json_t *cdb_cmd_cluster_meta(const char *id, const char *name, uint64_t created_ms)
{
    json_t *cmd = with_str(cmd_new(CMD_V1, "cluster_meta"), "id", id);
    cmd = with_str(cmd, "name", name);
    return with_int(cmd, "created_ms", created_ms);
}

json_t *cdb_cmd_cluster_profile(const char *profile, uint64_t time_ms)
{
    return with_int(with_str(cmd_new(7, "cluster_profile"), "profile", profile), "time_ms",
                    time_ms);
}

const char *cdb_cmd_op(const json_t *cmd)
{
    return json_string_value(json_object_get(cmd, "op"));
}

json_t *cdb_node_cmd(int version, const json_t *rec, const char *state, const char *admin,
                     const char *reason, uint64_t time_ms)
{
    json_int_t id = json_integer_value(json_object_get(rec, "id"));
    if (!reason)
        reason = "";
    if (version >= 2)
        return json_pack("{si ss sI ss ss sI}", "v", 2, "op", state ? "node_state" : "node_admin",
                         "id", id, state ? "state" : "admin", state ? state : admin, "reason",
                         reason, "time_ms", (json_int_t)time_ms);
    /* Version 1: one word for both, the admin state of a down node in its reason. */
    const char *health = state ? state : jfield_text(rec, "state");
    const char *adm = admin ? admin : jfield_text(rec, "admin");
    bool active = !*adm || strcmp(adm, "active") == 0;
    char why[CDB_REASON_MAX + 1];
    if (strcmp(health, "down") == 0 && !active) {
        char marker[32];
        snprintf(marker, sizeof(marker), " (was %s)", adm);
        snprintf(why, sizeof(why), "%.*s%s", (int)(CDB_REASON_MAX - strlen(marker)), reason,
                 marker);
    } else {
        snprintf(why, sizeof(why), "%s", reason);
    }
    const char *word = strcmp(health, "down") == 0 ? "down" : active ? "up" : adm;
    return json_pack("{si ss sI ss ss sI}", "v", 1, "op", "node_state", "id", id, "state", word,
                     "reason", why, "time_ms", (json_int_t)time_ms);
}

json_t *cdb_cmd_csv_put(const char *name, const char *path, const char *id, const char *coordinator,
                        uint64_t epoch, uint64_t time_ms, int64_t expect_epoch)
{
    json_t *cmd = with_str(cmd_new(4, "csv_put"), "name", name);
    cmd = with_str(cmd, "path", path);
    cmd = with_str(cmd, "id", id);
    cmd = with_str(cmd, "coordinator", coordinator);
    cmd = with_int(cmd, "epoch", epoch);
    cmd = with_int(cmd, "time_ms", time_ms);
    return expect_epoch >= 0 ? with_int(cmd, "expect_epoch", (uint64_t)expect_epoch) : cmd;
}

json_t *cdb_cmd_csv_remove(const char *name)
{
    return with_str(cmd_new(4, "csv_remove"), "name", name);
}

/* vm_epoch in version v, with owner (version 6) or without (NULL). */
static json_t *vm_epoch_cmd(int v, const char *name, uint64_t epoch, long long expect_epoch,
                            const char *owner)
{
    json_t *cmd = with_str(cmd_new(v, "vm_epoch"), "name", name);
    cmd = with_int(cmd, "epoch", epoch);
    if (expect_epoch >= 0)
        cmd = with_int(cmd, "expect_epoch", (uint64_t)expect_epoch);
    return with_str(cmd, "owner", owner);
}

json_t *cdb_cmd_vm_epoch(const char *name, uint64_t epoch, long long expect_epoch)
{
    return vm_epoch_cmd(5, name, epoch, expect_epoch, NULL);
}

json_t *cdb_cmd_vm_epoch_owned(const char *name, uint64_t epoch, long long expect_epoch,
                               const char *owner)
{
    return vm_epoch_cmd(6, name, epoch, expect_epoch, owner);
}

json_t *cdb_cmd_vm_failover(const char *name, const char *state, const char *reason,
                            const struct cdb_failover *fo)
{
    json_t *f = json_pack("{s:s?, s:s?}", "from", fo->from, "to", fo->to);
    f = with_str(f, "why", fo->why ? fo->why : "");
    f = with_int(f, "heard_ms", fo->heard_ms);
    f = with_int(f, "down_ms", fo->down_ms);
    f = with_int(f, "stale_ms", fo->stale_ms);
    f = with_int(f, "decided_ms", fo->decided_ms);
    json_t *cmd = with_str(cmd_new(6, "vm_failover"), "name", name);
    cmd = with_str(cmd, "owner", fo->to);
    cmd = with_str(cmd, "expect_owner", fo->from);
    cmd = with_str(cmd, "state", state);
    cmd = with_str(cmd, "reason", reason ? reason : "");
    return f ? with(cmd, "failover", f) : (json_decref(cmd), NULL);
}

json_t *cdb_cmd_task_put(const json_t *rec, uint64_t time_ms)
{
    return with_copy(with_int(cmd_new(8, "task_put"), "time_ms", time_ms), "task", rec);
}
