/* SPDX-License-Identifier: MIT */
/* The cluster's VMs: ownership, placement, create and delete cluster-wide, reconciliation. */
#include "fleet/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "fleet/failplan.h"
#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "vm/spec.h"

#define CREATED_WAIT_MS 3000 /* until this node applied a VM another node created */

struct fleet {
    struct fleet_env env;
    json_t *syncing; /* names whose record write is in flight (reconciliation) */
    /* HA VMs of this node: name -> {"restarts": [monotonic ms], "due_ms", "pending", "error",
     * "why"} (high availability's restarts on this node, ha_one) */
    json_t *ha;
    /* failover on this node (fleet_tick) */
    uint64_t quorum_seen; /* monotonic ms when the quorum was last there */
    bool fenced;          /* no quorum for fence_after_ms: HA QEMUs killed, leases stopped */
    uint64_t fenced_at;
    json_t *adopting; /* VMs the leader gave to this node: name -> {"made", "pending"} */
    struct fleet_failover_stats fo_stats;
};

int fleet_new(const struct fleet_env *env, struct fleet **out, struct ferr *e)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (!f || !(f->syncing = json_object()) || !(f->ha = json_object()) ||
        !(f->adopting = json_object())) {
        if (f) {
            json_decref(f->syncing);
            json_decref(f->ha);
        }
        free(f);
        return ferr_set(e, -ENOMEM, "fleet: out of memory");
    }
    f->env = *env;
    *out = f;
    return 0;
}

void fleet_free(struct fleet *f)
{
    if (!f)
        return;
    json_decref(f->syncing);
    json_decref(f->ha);
    json_decref(f->adopting);
    free(f);
}

bool fleet_clustered(const struct fleet *f)
{
    return f->env.cluster && cluster_active(f->env.cluster);
}

/* The database's record of VM name (new JSON), or NULL. */
static json_t *record_of(const struct fleet *f, const char *name)
{
    json_t *rec = NULL;
    if (!fleet_clustered(f) || cdb_vm_get(cluster_db(f->env.cluster), name, &rec, NULL) < 0)
        return NULL;
    return rec;
}

int fleet_owner_of(const struct fleet *f, const char *name, char out[64])
{
    json_t *rec = record_of(f, name);
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    int rc = owner ? 0 : FERR_NOTFOUND;
    if (owner)
        snprintf(out, 64, "%s", owner);
    json_decref(rec);
    return rc;
}

/* ---- views ---- */

static json_t *ha_view(const struct fleet *f, struct vm *vm);

json_t *fleet_vm_json(const struct fleet *f, struct vm *vm)
{
    json_t *o = vm_to_json(vm);
    if (o)
        json_object_set_new(o, "ha", ha_view(f, vm));
    if (o)
        json_object_set_new(o, "owner", json_string(f->env.node_name));
    if (o && fleet_clustered(f)) {
        json_object_set_new(
            o, "writer_epoch",
            json_integer((json_int_t)cdb_vm_epoch(cluster_db(f->env.cluster), vm_spec(vm)->name)));
        json_t *rec = record_of(f, vm_spec(vm)->name);
        json_t *fo = json_object_get(rec, "failover");
        if (fo)
            json_object_set(o, "failover", fo);
        json_decref(rec);
    }
    return o;
}

/* Why a record's owner cannot vouch for it: its node is down (says since when and why), or
 * NULL when it is up. */
static void owner_down(const struct fleet *f, const char *owner, char *why, size_t size)
{
    json_t *n = NULL;
    why[0] = '\0';
    if (!owner || !owner[0] || cdb_node_find(cluster_db(f->env.cluster), owner, &n, NULL) < 0)
        return;
    const char *state = json_string_value(json_object_get(n, "state"));
    if (state && strcmp(state, "down") == 0) {
        const char *r = json_string_value(json_object_get(n, "state_reason"));
        time_t since = (time_t)(json_integer_value(json_object_get(n, "state_changed_ms")) / 1000);
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&since, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        snprintf(why, size,
                 "%s is down since %s%s%s; what runs there cannot be known until it "
                 "answers",
                 owner, when, r && r[0] ? " (" : "", r && r[0] ? r : "");
        if (r && r[0])
            snprintf(why + strlen(why), size - strlen(why), ")");
    }
    json_decref(n);
}

/* A VM of another node as the database knows it. */
static json_t *remote_json(const struct fleet *f, const json_t *rec)
{
    json_t *spec = json_object_get(rec, "spec");
    json_t *cpu = json_object_get(spec, "cpu");
    json_int_t s = json_integer_value(json_object_get(cpu, "sockets"));
    json_int_t c = json_integer_value(json_object_get(cpu, "cores"));
    json_int_t t = json_integer_value(json_object_get(cpu, "threads"));
    json_t *rt = json_object_get(rec, "runtime");
    const char *accel = json_string_value(json_object_get(rt, "accel"));
    json_t *o =
        json_pack("{s:O, s:O, s:O, s:O, s:O, s:i, s:I, s:s, s:I, s:I}", "name",
                  json_object_get(rec, "name"), "state", json_object_get(rec, "state"), "reason",
                  json_object_get(rec, "reason"), "owner", json_object_get(rec, "owner"), "spec",
                  spec, "vcpus", (int)((s ? s : 1) * (c ? c : 1) * (t ? t : 1)), "memory_mib",
                  json_integer_value(json_object_get(spec, "memory_mib")), "accel",
                  accel ? accel : "", "pid", json_integer_value(json_object_get(rt, "pid")),
                  "started_ms", json_integer_value(json_object_get(rt, "started_ms")));
    if (o)
        json_object_set_new(o, "net_ms",
                            json_integer(json_integer_value(json_object_get(rt, "net_ms"))));
    if (o)
        json_object_set_new(o, "writer_epoch",
                            json_integer(json_integer_value(json_object_get(rec, "epoch"))));
    if (o && json_object_get(rec, "failover"))
        json_object_set(o, "failover", json_object_get(rec, "failover"));
    /* HA's live state (restarts, why) is its owner's; the record says whether it is on */
    json_t *ha = json_object_get(spec, "ha");
    if (o)
        json_object_set_new(
            o, "ha",
            ha ? json_pack("{ss ss}", "state", "enabled", "priority", jfield_text(ha, "priority"))
               : json_pack("{ss}", "state", "disabled"));
    char why[400];
    owner_down(f, json_string_value(json_object_get(rec, "owner")), why, sizeof(why));
    if (o && why[0]) {
        /* What the owner said last cannot be confirmed: unknown until it answers again. */
        json_object_set(o, "last_state", json_object_get(rec, "state"));
        json_object_set(o, "last_reason", json_object_get(rec, "reason"));
        json_object_set_new(o, "state", json_string("unknown"));
        json_object_set_new(o, "reason", json_string(why));
    }
    return o;
}

json_t *fleet_vm_record_json(const struct fleet *f, const char *name)
{
    json_t *rec = record_of(f, name);
    json_t *o = rec ? remote_json(f, rec) : NULL;
    json_decref(rec);
    return o;
}

struct list_ctx {
    const struct fleet *f;
    json_t *arr;
    json_t *known; /* names in the cluster database */
};

static void add_local(struct vm *vm, void *data)
{
    struct list_ctx *l = data;
    if (!l->known || !json_object_get(l->known, vm_name(vm)))
        json_array_append_new(l->arr, fleet_vm_json(l->f, vm));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* arr sorted by "name" (a new array; arr is released). */
static json_t *sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **items = calloc(n ? n : 1, sizeof(*items));
    json_t *out = json_array();
    if (!items || !out) {
        free(items);
        json_decref(out);
        return arr;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(arr, i);
    qsort(items, n, sizeof(*items), by_name);
    for (size_t i = 0; i < n; i++)
        json_array_append(out, items[i]);
    free(items);
    json_decref(arr);
    return out;
}

json_t *fleet_list(const struct fleet *f)
{
    struct list_ctx l = {f, json_array(), NULL};
    if (!fleet_clustered(f)) {
        vmset_foreach(f->env.vms, add_local, &l);
        return json_pack("{s:o, s:i}", "vms", sorted(l.arr), "stale_ms", 0);
    }
    /* Every VM of the cluster: ours with their live state, the others as the database says. */
    l.known = json_object();
    json_t *recs = cdb_vms(cluster_db(f->env.cluster), NULL);
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec)
    {
        const char *name = json_string_value(json_object_get(rec, "name"));
        json_object_set_new(l.known, name, json_true());
        struct vm *vm = vmset_find(f->env.vms, name);
        if (vm && vm_state(vm) == VM_INCOMING)
            vm = NULL; /* a migration's destination copy: the owner's view counts */
        json_array_append_new(l.arr, vm ? fleet_vm_json(f, vm) : remote_json(f, rec));
    }
    vmset_foreach(f->env.vms, add_local, &l);
    json_decref(recs);
    json_decref(l.known);
    /* How old this node's copy of the cluster database may be (-1: no leader known). */
    return json_pack("{s:o, s:I}", "vms", sorted(l.arr), "stale_ms",
                     cluster_stale_ms(f->env.cluster));
}

/* ---- placement ---- */

int fleet_place(struct fleet *f, uint64_t memory_mib, const char *want, const char *exclude,
                const json_t *pending, char out[64], struct ferr *e)
{
    if (!fleet_clustered(f)) {
        if (want && strcmp(want, f->env.node_name) != 0)
            return ferr_set(e, FERR_STATE,
                            "node: this host is not in a cluster; it can only place VMs on "
                            "itself (%s)",
                            f->env.node_name);
        snprintf(out, 64, "%s", f->env.node_name);
        return 0;
    }
    json_t *nodes = cluster_nodes(f->env.cluster);
    int rc = placement_pick_pending(json_object_get(nodes, "nodes"), memory_mib, want, exclude,
                                    pending, out, e);
    json_decref(nodes);
    return rc;
}

/* ---- create ---- */

/* A create or delete in flight. */
struct op {
    struct fleet *f;
    fleet_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
    json_t *body;
    int status;
    json_t *made; /* create: disks volume coordinators made for it ([{"node", "path"}]) */
};

static struct op *op_new(struct fleet *f, const char *name, fleet_cb cb, void *data, struct ferr *e)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op) {
        ferr_set(e, -ENOMEM, "out of memory");
        return NULL;
    }
    *op = (struct op){.f = f, .cb = cb, .data = data};
    snprintf(op->name, sizeof(op->name), "%s", name ? name : "");
    return op;
}

/* Answers and frees op; body stolen. */
static void op_done(struct op *op, int status, json_t *body, const struct ferr *e)
{
    op->cb(status, body, e, op->data);
    free(op);
}

struct undo {
    struct op *op;
    struct ferr why; /* the database's refusal */
};

static void undone(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    struct undo *u = data;
    if (status < 0) {
        struct ferr both;
        ferr_set(&both, u->why.code,
                 "%s; and removing the VM here failed too: %s (ferry vm delete "
                 "--force %s)",
                 u->why.msg, e->msg, u->op->name);
        log_warn("%s", both.msg);
        op_done(u->op, 0, NULL, &both);
    } else {
        op_done(u->op, 0, NULL, &u->why);
    }
    free(u);
}

/* The cluster database took (or refused) the new VM's record. */
static void published(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *op = data;
    json_decref(body);
    struct vm *vm = vmset_find(op->f->env.vms, op->name);
    if (!e) {
        if (vm)
            op_done(op, 201, fleet_vm_json(op->f, vm), NULL);
        else
            op_done(op, 0, NULL,
                    &(struct ferr){FERR_INTERNAL, "create: the VM vanished before it was listed"});
        return;
    }
    /* Nothing half-written: without its record the VM is removed here too. */
    struct undo *u = calloc(1, sizeof(*u));
    struct ferr e2 = {0};
    if (!u) {
        op_done(op, 0, NULL, e);
        return;
    }
    u->op = op;
    u->why = *e;
    ferr_prefix(&u->why, "create %s: the cluster database refused it", op->name);
    if (!vm || vmset_undo_create(op->f->env.vms, vm, undone, u, &e2) < 0)
        undone(op->f->env.vms, vm, vm ? e2.code : 0, &e2, u);
}

static void undo_remote(struct fleet *f, json_t *made);

static void made_here(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                      void *data)
{
    struct op *op = data;
    if (status < 0) {
        undo_remote(op->f, op->made);
        op->made = NULL;
        op_done(op, 0, NULL, e);
        return;
    }
    json_decref(op->made);
    op->made = NULL;
    if (!fleet_clustered(op->f)) {
        op_done(op, 201, fleet_vm_json(op->f, vm), NULL);
        return;
    }
    struct ferr e2 = {0};
    if (fleet_publish_spec(op->f, vm, published, op, &e2) < 0)
        published(0, NULL, &e2, op);
}

/* ---- the disks a new VM makes on shared volumes: their coordinators make them ---- */

struct remote_disks {
    struct fleet *f;
    json_t *spec;  /* the spec being created (owned) */
    json_t *todo;  /* [{"node", "path", "size_mib", "type"}] still to make */
    json_t *made;  /* [{"node", "path"}] made, deleted again if the VM is not made */
    struct op *op; /* answered at the end */
};

static void remote_disks_free(struct remote_disks *rd)
{
    json_decref(rd->spec);
    json_decref(rd->todo);
    json_decref(rd->made);
    free(rd);
}

static void undo_deleted(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    char *path = data;
    if (e)
        log_warn("a disk made for a VM that was not created stays: %s: %s", path, e->msg);
    free(path);
}

/* The disks made on volumes go again (the VM was not made). made is stolen. */
static void undo_remote(struct fleet *f, json_t *made)
{
    size_t i;
    json_t *x;
    json_array_foreach(made, i, x)
    {
        json_t *b = json_pack("{sO}", "path", json_object_get(x, "path"));
        char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        char *path = strdup(jfield_text(x, "path"));
        struct ferr e = {0};
        json_decref(b);
        if (!text || !path ||
            cluster_call(f->env.cluster, jfield_text(x, "node"), "POST", "/v1/disks/delete", text,
                         undo_deleted, path, &e) < 0) {
            log_warn("a disk made for a VM that was not created stays: %s", jfield_text(x, "path"));
            free(path);
        }
        free(text);
    }
    json_decref(made);
}

static void remote_next(struct remote_disks *rd);

static void remote_made(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct remote_disks *rd = data;
    json_t *x = json_array_get(rd->todo, 0);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "%s (made by volume coordinator %s)", jfield_text(x, "path"),
                    jfield_text(x, "node"));
        undo_remote(rd->f, json_incref(rd->made));
        op_done(rd->op, 0, NULL, &e2);
        remote_disks_free(rd);
        return;
    }
    json_array_append_new(rd->made, json_pack("{sO sO}", "node", json_object_get(x, "node"), "path",
                                              json_object_get(x, "path")));
    json_array_remove(rd->todo, 0);
    remote_next(rd);
}

static void remote_next(struct remote_disks *rd)
{
    struct ferr e = {0};
    json_t *x = json_array_get(rd->todo, 0);
    int rc;
    if (!x) { /* every one made: the VM is made here on them */
        struct op *op = rd->op;
        op->made = json_incref(rd->made);
        if ((rc = vmset_create(rd->f->env.vms, rd->spec, made_here, op, &e)) < 0) {
            undo_remote(rd->f, op->made);
            op->made = NULL;
            op_done(op, 0, NULL, &e);
        }
        remote_disks_free(rd);
        return;
    }
    json_t *b = json_pack("{sO sO sO}", "path", json_object_get(x, "path"), "size_mib",
                          json_object_get(x, "size_mib"), "type", json_object_get(x, "type"));
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    rc = text ? cluster_call(rd->f->env.cluster, jfield_text(x, "node"), "POST", "/v1/disks", text,
                             remote_made, rd, &e)
              : ferr_set(&e, -ENOMEM, "out of memory");
    free(text);
    if (rc < 0)
        remote_made(0, NULL, &e, rd);
}

/* The disks of spec to be made (size_mib given, no file yet) on a volume another node
 * coordinates: [{"node", "path", "size_mib", "type"}]; new JSON. */
static json_t *remote_disks_of(const struct fleet *f, const json_t *spec)
{
    json_t *out = json_array();
    if (!fleet_clustered(f))
        return out;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(spec, "disks"), i, d)
    {
        const char *path = jfield_text(d, "path");
        struct stat st;
        if (!json_is_integer(json_object_get(d, "size_mib")) || stat(path, &st) == 0)
            continue;
        json_t *vol = cdb_csv_holding(cluster_db(f->env.cluster), path);
        const char *coord = vol ? jfield_text(vol, "coordinator") : "";
        if (vol && strcmp(coord, f->env.node_name) != 0)
            json_array_append_new(
                out,
                json_pack("{ss ss sO ss}", "node", coord, "path", path, "size_mib",
                          json_object_get(d, "size_mib"), "type",
                          strcmp(jfield_text(d, "type"), "dynamic") == 0 ? "dynamic" : "fixed"));
        json_decref(vol);
    }
    return out;
}

static int create_here(struct fleet *f, const json_t *spec, fleet_cb cb, void *data, struct ferr *e)
{
    json_t *s = json_deep_copy(spec);
    struct op *op =
        s ? op_new(f, json_string_value(json_object_get(spec, "name")), cb, data, e) : NULL;
    if (!op) {
        json_decref(s);
        return s ? e->code : ferr_set(e, -ENOMEM, "out of memory");
    }
    /* Pin the machine type where the VM is made: "pc" names another machine after a QEMU
     * upgrade, and a migration needs the same machine on both ends. */
    const char *machine = vmset_default_machine(f->env.vms);
    if (!json_object_get(s, "machine") && machine)
        json_object_set_new(s, "machine", json_string(machine));
    json_t *todo = remote_disks_of(f, s);
    if (json_array_size(todo) > 0) {
        /* a new disk on a volume is made by its coordinator, then the VM here on it */
        struct remote_disks *rd = calloc(1, sizeof(*rd));
        if (!rd || !(rd->made = json_array())) {
            free(rd);
            json_decref(todo);
            json_decref(s);
            free(op);
            return ferr_set(e, -ENOMEM, "out of memory");
        }
        *rd = (struct remote_disks){.f = f, .spec = s, .todo = todo, .made = rd->made, .op = op};
        remote_next(rd);
        return 0;
    }
    json_decref(todo);
    int rc = vmset_create(f->env.vms, s, made_here, op, e);
    json_decref(s);
    if (rc < 0)
        free(op);
    return rc;
}

static bool record_applied(const struct cdb *db, void *data)
{
    struct op *op = data;
    json_t *rec = NULL;
    bool have = db && cdb_vm_get(db, op->name, &rec, NULL) == 0;
    json_decref(rec);
    return have;
}

static void record_waited(int status, void *data)
{
    struct op *op = data;
    op_done(op, op->status, op->body, NULL);
}

/* The owner created the VM and its record committed; answer once this node has applied the
 * record too, so the caller's next request here (start, show) finds it. */
static void made_elsewhere(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *op = data;
    if (e || status != 201) {
        op_done(op, status, body, e);
        return;
    }
    op->body = body;
    op->status = status;
    if (cluster_wait_until(op->f->env.cluster, record_applied, CREATED_WAIT_MS, record_waited, op,
                           NULL) < 0)
        record_waited(0, op);
}

struct clash_ctx {
    const struct fleet *f;
    const char *name;
    struct ferr *e;
    int rc;
};

static void clash_local(struct vm *vm, void *data)
{
    struct clash_ctx *c = data;
    if (c->rc == 0)
        c->rc = vmset_uid_clash(c->f->env.vms, c->name, vm_spec(vm)->name, c->e);
}

/* A new VM's name must not give its QEMU another VM's uid (per-VM uids): any VM of the
 * cluster (the database has them all, this node's too), as its files on a shared volume are
 * reached from every node; a standalone node's own. */
static int uid_clash(const struct fleet *f, const char *name, struct ferr *e)
{
    struct clash_ctx c = {f, name, e, 0};
    if (!fleet_clustered(f)) {
        vmset_foreach(f->env.vms, clash_local, &c);
        return c.rc;
    }
    json_t *recs = cdb_vms(cluster_db(f->env.cluster), NULL);
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec)
    {
        const char *other = json_string_value(json_object_get(rec, "name"));
        if (c.rc == 0 && other)
            c.rc = vmset_uid_clash(f->env.vms, name, other, e);
    }
    json_decref(recs);
    return c.rc;
}

int fleet_create(struct fleet *f, const json_t *spec, const char *want, bool forwarded, fleet_cb cb,
                 void *data, struct ferr *e)
{
    if (!fleet_clustered(f)) {
        char node[64];
        json_t *ha = json_object_get(spec, "ha");
        if (ha && !json_is_null(ha))
            return ferr_set(e, FERR_STATE,
                            "ha: this node is not in a cluster: high availability restarts a VM "
                            "on another node, and there is none (ferry cluster init)");
        const char *name = json_string_value(json_object_get(spec, "name"));
        int rc = name ? uid_clash(f, name, e) : 0;
        if (rc == 0)
            rc = fleet_place(f, 0, want, NULL, NULL, node, e);
        return rc < 0 ? rc : create_here(f, spec, cb, data, e);
    }
    if (!cluster_quorum(f->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "no quorum: this node cannot reach the cluster's leader, so nothing can "
                        "be created now; try again when it can (ferry cluster status)");
    /* Check the spec before choosing a node (the owner checks it against its host again). */
    struct vm_spec *parsed = calloc(1, sizeof(*parsed));
    struct vm_spec_env env = {0};
    char node[64];
    int rc;
    if (!parsed)
        return ferr_set(e, -ENOMEM, "out of memory");
    if ((rc = vm_spec_from_json(spec, &env, parsed, e)) < 0) {
        ferr_prefix(e, "spec");
        goto out;
    }
    if ((rc = fleet_ha_check(f, parsed, e)) < 0)
        goto out;
    json_t *rec = record_of(f, parsed->name);
    if (rec) {
        rc = ferr_set(e, FERR_EXISTS, "a VM named %s already exists (on %s)", parsed->name,
                      json_string_value(json_object_get(rec, "owner")));
        json_decref(rec);
        goto out;
    }
    if ((rc = uid_clash(f, parsed->name, e)) < 0)
        goto out;
    if ((rc = fleet_place(f, parsed->memory_mib, want, NULL, NULL, node, e)) < 0)
        goto out;
    if (strcmp(node, f->env.node_name) == 0) {
        rc = create_here(f, spec, cb, data, e);
    } else if (forwarded) {
        rc = ferr_set(e, FERR_STATE, "placement changed while the request was forwarded; retry");
    } else {
        char path[128];
        char *body = json_dumps(spec, JSON_COMPACT);
        struct op *op = body ? op_new(f, parsed->name, cb, data, e) : NULL;
        snprintf(path, sizeof(path), "/v1/vms?node=%s", node);
        if (!op) {
            rc = body ? e->code : ferr_set(e, -ENOMEM, "out of memory");
        } else {
            rc = cluster_forward(f->env.cluster, node, "POST", path, body, made_elsewhere, op, e);
            if (rc < 0)
                free(op);
        }
        free(body);
    }
out:
    free(parsed);
    return rc;
}

/* ---- delete ---- */

static void unpublished(int status, json_t *body, const struct ferr *e, void *data)
{
    struct op *op = data;
    json_decref(body);
    if (e)
        log_warn("delete %s: the cluster database still lists it: %s", op->name, e->msg);
    op_done(op, 200, json_pack("{s:b}", "deleted", 1), NULL);
}

static void deleted(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    struct op *op = data;
    if (status < 0) {
        op_done(op, 0, NULL, e);
        return;
    }
    if (!fleet_clustered(op->f)) {
        unpublished(200, NULL, NULL, op);
        return;
    }
    struct ferr e2 = {0};
    json_t *cmd = cdb_cmd_vm_remove(op->name);
    if (!cmd)
        unpublished(0, NULL, &(struct ferr){-ENOMEM, "out of memory"}, op);
    else if (cluster_write(op->f->env.cluster, cmd, unpublished, op, &e2) < 0)
        unpublished(0, NULL, &e2, op);
    json_decref(cmd);
}

int fleet_delete(struct fleet *f, struct vm *vm, bool force, fleet_cb cb, void *data,
                 struct ferr *e)
{
    struct op *op = op_new(f, vm_name(vm), cb, data, e);
    if (!op)
        return e->code;
    int rc = vmset_delete(f->env.vms, vm, force, deleted, op, e);
    if (rc < 0)
        free(op);
    return rc;
}

/* ---- a changed spec (a disk moved) ---- */

int fleet_publish_spec(struct fleet *f, struct vm *vm, fleet_cb cb, void *data, struct ferr *e)
{
    if (!fleet_clustered(f)) {
        cb(200, NULL, NULL, data);
        return 0;
    }
    json_t *cmd = cdb_cmd_vm_put(vm_name(vm), vm_spec_to_json(vm_spec(vm)), f->env.node_name,
                                 vm_state_name(vm_state(vm)));
    if (!cmd)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = cluster_write(f->env.cluster, cmd, cb, data, e);
    json_decref(cmd);
    return rc;
}

/* ---- the hand-over of a migration ---- */

int fleet_hand_over(struct fleet *f, const char *name, const char *to, fleet_cb cb, void *data,
                    struct ferr *e)
{
    if (!fleet_clustered(f))
        return ferr_set(e, FERR_STATE, "not in a cluster: %s cannot change its owner", name);
    json_t *cmd = cdb_cmd_vm_owner(name, to, f->env.node_name);
    if (!cmd)
        return ferr_set(e, -ENOMEM, "out of memory");
    int rc = cluster_write(f->env.cluster, cmd, cb, data, e);
    json_decref(cmd);
    return rc;
}

/* ---- high availability settings ---- */

/* How many disks of s are on shared volumes of the database; *first_off: the first that is
 * not (s->ndisks when every one is). */
static unsigned disks_on_volumes(const struct fleet *f, const struct vm_spec *s,
                                 unsigned *first_off)
{
    const struct cdb *db = cluster_db(f->env.cluster);
    unsigned on = 0;
    *first_off = s->ndisks;
    for (unsigned i = 0; i < s->ndisks; i++) {
        json_t *rec = cdb_csv_holding(db, s->disks[i].path);
        json_decref(rec);
        if (rec)
            on++;
        else if (*first_off == s->ndisks)
            *first_off = i;
    }
    return on;
}

int fleet_ha_check(const struct fleet *f, const struct vm_spec *spec, struct ferr *e)
{
    if (!spec->ha.enabled)
        return 0;
    if (!fleet_clustered(f))
        return ferr_set(e, FERR_STATE,
                        "ha: %s is not in a cluster: high availability restarts a VM on another "
                        "node, and there is none (ferry cluster init)",
                        spec->name);
    const struct cdb *db = cluster_db(f->env.cluster);
    unsigned i;
    disks_on_volumes(f, spec, &i);
    if (i < spec->ndisks)
        return ferr_set(e, FERR_INVALID,
                        "ha: disks[%u] (%s) is on no cluster shared volume, so no other node "
                        "could run the VM: move it onto one first (ferry vm storage-move %s "
                        "--disk %u --to csv:VOLUME)",
                        i, spec->disks[i].path, spec->name, i);
    json_t *vars = spec->firmware == VM_FIRMWARE_EFI ? cdb_csv_holding(db, spec->efi_vars) : NULL;
    json_decref(vars);
    if (spec->firmware == VM_FIRMWARE_EFI && !vars)
        return ferr_set(e, FERR_INVALID,
                        "ha: efi_vars (%s), the VM's EFI variables, is on no cluster shared "
                        "volume, so no other node could boot it as it was: put it on one",
                        spec->efi_vars);
    int rc = 0;
    for (i = 0; rc == 0 && i < spec->ha.npreferred + spec->ha.npossible; i++) {
        bool pref = i < spec->ha.npreferred;
        const char *n = pref ? spec->ha.preferred[i] : spec->ha.possible[i - spec->ha.npreferred];
        json_t *node = NULL;
        struct ferr ignored;
        if (cdb_node_find(db, n, &node, &ignored) < 0)
            rc = ferr_set(e, FERR_INVALID,
                          "ha.%s: no node named %s in the cluster (ferry node list)",
                          pref ? "preferred" : "possible", n);
        json_decref(node);
    }
    return rc;
}

struct ha_set {
    struct fleet *f;
    fleet_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
};

static void ha_published(int status, json_t *body, const struct ferr *e, void *data)
{
    struct ha_set *h = data;
    json_decref(body);
    struct vm *vm = vmset_find(h->f->env.vms, h->name);
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2,
                    "%s: its HA settings are saved here but not in the cluster's record "
                    "yet (written again with its next change)",
                    h->name);
        h->cb(0, NULL, &e2, h->data);
    } else {
        h->cb(200, vm ? fleet_vm_json(h->f, vm) : json_object(), NULL, h->data);
    }
    free(h);
}

int fleet_set_ha(struct fleet *f, struct vm *vm, const json_t *ha_json, fleet_cb cb, void *data,
                 struct ferr *e)
{
    struct vm_spec *spec = malloc(sizeof(*spec));
    if (!spec)
        return ferr_set(e, -ENOMEM, "out of memory");
    *spec = *vm_spec(vm);
    int rc = vm_ha_from_json(ha_json, &spec->ha, e);
    if (rc == 0)
        rc = fleet_ha_check(f, spec, e);
    struct ha_set *h = rc == 0 ? calloc(1, sizeof(*h)) : NULL;
    if (rc == 0 && !h)
        rc = ferr_set(e, -ENOMEM, "out of memory");
    if (rc == 0)
        rc = vm_set_ha(vm, &spec->ha, e);
    if (rc == 0)
        events_add(f->env.events, spec->name, spec->ha.enabled ? "vm.ha_enabled" : "vm.ha_disabled",
                   "%s", spec->ha.enabled ? spec->ha.priority : "");
    free(spec);
    if (rc < 0) {
        free(h);
        return rc;
    }
    *h = (struct ha_set){.f = f, .cb = cb, .data = data};
    snprintf(h->name, sizeof(h->name), "%s", vm_name(vm));
    if (!fleet_clustered(f)) {
        ha_published(200, NULL, NULL, h);
        return 0;
    }
    struct ferr e2 = {0};
    if (fleet_publish_spec(f, vm, ha_published, h, &e2) < 0)
        ha_published(0, NULL, &e2, h);
    return 0;
}

/* ---- a cold start: a new writer epoch ---- */

#define EPOCH_WAIT_MS 3000 /* until this node applied the VM's new writer epoch */

struct start {
    struct fleet *f;
    char name[VM_NAME_MAX + 1];
    uint64_t epoch;
    vm_done_cb cb;
    void *data;
};

static void start_end(struct start *st, int status, const struct ferr *e)
{
    struct vm *vm = vmset_find(st->f->env.vms, st->name);
    struct ferr e2 = {0};
    if (status == 0 && !vm)
        status = ferr_set(&e2, FERR_NOTFOUND, "%s was deleted while it started", st->name);
    if (status == 0 && vm_start(vm, st->cb, st->data, &e2) < 0)
        status = e2.code;
    if (status < 0)
        st->cb(st->f->env.vms, vm, status, e ? e : &e2, st->data);
    free(st);
}

static bool epoch_applied(const struct cdb *db, void *data)
{
    struct start *st = data;
    return db && cdb_vm_epoch(db, st->name) >= st->epoch;
}

static void epoch_waited(int status, void *data)
{
    struct start *st = data;
    struct ferr e = {0};
    if (status < 0)
        ferr_set(&e, FERR_TIMEOUT,
                 "start %s: this node did not apply its new writer epoch %llu in %d ms; try "
                 "again",
                 st->name, (unsigned long long)st->epoch, EPOCH_WAIT_MS);
    start_end(st, status < 0 ? e.code : 0, status < 0 ? &e : NULL);
}

static void epoch_written(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct start *st = data;
    if (e) {
        struct ferr e2 = *e;
        ferr_prefix(&e2, "start %s: its new writer epoch", st->name);
        start_end(st, e2.code, &e2);
        return;
    }
    log_info("vm %s: writer epoch %llu", st->name, (unsigned long long)st->epoch);
    if (cluster_wait_until(st->f->env.cluster, epoch_applied, EPOCH_WAIT_MS, epoch_waited, st,
                           NULL) < 0)
        epoch_waited(0, st);
}

static int fleet_start_as(struct fleet *f, struct vm *vm, bool by_user, vm_done_cb cb, void *data,
                          struct ferr *e);

int fleet_start(struct fleet *f, struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    return fleet_start_as(f, vm, true, cb, data, e);
}

static int fleet_start_as(struct fleet *f, struct vm *vm, bool by_user, vm_done_cb cb, void *data,
                          struct ferr *e)
{
    const struct vm_spec *s = vm_spec(vm);
    struct ferr ignored;
    if (by_user && vm_may_start(vm, &ignored) == 0)
        json_object_del(f->ha, s->name); /* a start by hand: HA's count begins again */
    unsigned off;
    if (!fleet_clustered(f) || disks_on_volumes(f, s, &off) == 0 ||
        cdb_cmd_version_min(cluster_db(f->env.cluster)) < 5)
        return vm_start(vm, cb, data, e);
    int rc = vm_may_start(vm, e);
    if (rc < 0)
        return rc;
    if (!cluster_quorum(f->env.cluster))
        return ferr_set(e, FERR_UNAVAIL,
                        "%s: its disks are on cluster shared volumes, and a start takes a new "
                        "writer epoch, which needs the cluster's quorum (ferry cluster status)",
                        s->name);
    struct start *st = calloc(1, sizeof(*st));
    if (!st)
        return ferr_set(e, -ENOMEM, "out of memory");
    *st = (struct start){.f = f, .cb = cb, .data = data};
    snprintf(st->name, sizeof(st->name), "%s", s->name);
    uint64_t cur = cdb_vm_epoch(cluster_db(f->env.cluster), s->name);
    st->epoch = cur + 1;
    /* from version 6 on only while this node owns it: a node cut off while the cluster gave
     * the VM to another cannot start it on a stale copy of the database */
    json_t *cmd = cdb_cmd_version_min(cluster_db(f->env.cluster)) >= 6
                      ? cdb_cmd_vm_epoch_owned(s->name, st->epoch, (long long)cur, f->env.node_name)
                      : cdb_cmd_vm_epoch(s->name, st->epoch, (long long)cur);
    rc = cmd ? cluster_write(f->env.cluster, cmd, epoch_written, st, e)
             : ferr_set(e, -ENOMEM, "out of memory");
    json_decref(cmd);
    if (rc < 0)
        free(st);
    return rc;
}

/* ---- reconciliation: the records of this node's VMs follow what runs here ---- */

struct sync_write {
    struct fleet *f;
    char name[VM_NAME_MAX + 1];
};

static void synced(int status, json_t *body, const struct ferr *e, void *data)
{
    struct sync_write *w = data;
    json_decref(body);
    if (e)
        log_debug("vm %s: state not yet in the cluster database: %s", w->name, e->msg);
    json_object_del(w->f->syncing, w->name);
    free(w);
}

/* The record's runtime says what rt says (both may be absent). */
static bool same_runtime(const json_t *rec_rt, const struct cdb_vm_runtime *rt)
{
    if (!rt)
        return !rec_rt;
    const char *accel = json_string_value(json_object_get(rec_rt, "accel"));
    return rec_rt && accel && rt->accel && strcmp(accel, rt->accel) == 0 &&
           json_integer_value(json_object_get(rec_rt, "pid")) == rt->pid &&
           (uint64_t)json_integer_value(json_object_get(rec_rt, "started_ms")) == rt->started_ms &&
           (uint64_t)json_integer_value(json_object_get(rec_rt, "net_ms")) == rt->net_ms;
}

/* Whether the owner changed spec after its record was written and the write of the change
 * failed (fleet_publish_spec): a disk moved here, or its HA settings. */
static bool spec_changed_here(const struct vm_spec *spec, const json_t *rec_spec)
{
    json_t *disks = json_object_get(rec_spec, "disks");
    if (json_array_size(disks) != spec->ndisks)
        return true;
    for (unsigned i = 0; i < spec->ndisks; i++)
        if (strcmp(jfield_text(json_array_get(disks, i), "path"), spec->disks[i].path) != 0)
            return true;
    json_t *rec_ha = json_object_get(rec_spec, "ha");
    if (!spec->ha.enabled || !rec_ha)
        return spec->ha.enabled != (rec_ha != NULL);
    json_t *ha = vm_ha_to_json(&spec->ha);
    bool differ = ha && !json_equal(ha, rec_ha);
    json_decref(ha);
    return differ;
}

static void sync_one(struct vm *vm, void *data)
{
    struct fleet *f = data;
    const char *name = vm_name(vm);
    const struct cdb *db = cluster_db(f->env.cluster);
    json_t *rec = NULL;
    if (json_object_get(f->syncing, name) || cdb_vm_get(db, name, &rec, NULL) < 0)
        return;
    int version = cdb_cmd_version_min(db);
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    const char *state = json_string_value(json_object_get(rec, "state"));
    const char *reason = json_string_value(json_object_get(rec, "reason"));
    struct cdb_vm_runtime run = {vm_accel(vm), vm_pid(vm), vm_started_ms(vm), vm_net_ms(vm)};
    const struct cdb_vm_runtime *rt = run.pid > 0 ? &run : NULL;
    /* A QEMU re-attached after a ferryd restart: when its guest's network came up is in the
     * record, if the same QEMU's was. */
    json_t *rec_rt = json_object_get(rec, "runtime");
    if (rt && !run.net_ms && json_integer_value(json_object_get(rec_rt, "pid")) == run.pid &&
        (uint64_t)json_integer_value(json_object_get(rec_rt, "started_ms")) == run.started_ms)
        run.net_ms = (uint64_t)json_integer_value(json_object_get(rec_rt, "net_ms"));
    if (version < 7)
        run.net_ms = 0; /* not in the record: not compared */
    bool mine = owner && strcmp(owner, f->env.node_name) == 0;
    const struct vm_spec *spec = vm_spec(vm);
    if (mine && spec_changed_here(spec, json_object_get(rec, "spec"))) {
        json_decref(rec);
        struct ferr e = {0};
        json_object_set_new(f->syncing, name, json_true());
        struct sync_write *w = calloc(1, sizeof(*w));
        if (!w) {
            json_object_del(f->syncing, name);
            return;
        }
        w->f = f;
        snprintf(w->name, sizeof(w->name), "%s", name);
        json_t *cmd = cdb_cmd_vm_put(name, vm_spec_to_json(spec), NULL, NULL);
        log_info("vm %s: its record's disks or HA settings are not its spec's: written again",
                 name);
        if (!cmd || cluster_write(f->env.cluster, cmd, synced, w, &e) < 0)
            synced(0, NULL, &e, w);
        json_decref(cmd);
        return;
    }
    if (json_is_true(json_object_get(json_object_get(f->ha, name), "moving"))) {
        json_decref(rec); /* given to another node (ha_elsewhere): its record is theirs now */
        return;
    }
    if (mine && json_object_get(f->adopting, name) && vm_state(vm) == VM_STOPPED) {
        json_decref(rec); /* adopted, not started yet: the record says "recovering" */
        return;
    }
    bool same = state && strcmp(state, vm_state_name(vm_state(vm))) == 0 && reason &&
                strcmp(reason, vm_reason(vm)) == 0 &&
                (version < 3 || same_runtime(json_object_get(rec, "runtime"), rt));
    json_decref(rec);
    if (!mine || same)
        return;
    struct sync_write *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    w->f = f;
    snprintf(w->name, sizeof(w->name), "%s", name);
    char why[CDB_REASON_MAX];
    snprintf(why, sizeof(why), "%s", vm_reason(vm));
    json_t *cmd = cdb_cmd_vm_state_at(version, name, vm_state_name(vm_state(vm)), why, rt);
    struct ferr e = {0};
    json_object_set_new(f->syncing, name, json_true());
    if (!cmd || cluster_write(f->env.cluster, cmd, synced, w, &e) < 0)
        synced(0, NULL, &e, w);
    json_decref(cmd);
}

/* ---- high availability on this node: a QEMU that died is started again ---- */

#define HA_FIRST_DELAY_MS 1000 /* the first restart; each next one waits twice as long ... */
#define HA_MAX_DELAY_MS 30000  /* ... up to this */

static json_t *ha_entry(struct fleet *f, const char *name)
{
    json_t *h = json_object_get(f->ha, name);
    if (!h) {
        h = json_pack("{s[] sI sb ss ss}", "restarts", "due_ms", (json_int_t)0, "pending", 0,
                      "error", "", "why", "");
        json_object_set_new(f->ha, name, h);
    }
    return h;
}

/* The HA state of vm (Proxmox's words): {"state": "disabled" | "started" | "stopped" |
 * "recovery" | "error", "why", "restarts" (in the current period)}; new JSON. */
static json_t *ha_view(const struct fleet *f, struct vm *vm)
{
    const struct vm_spec *s = vm_spec(vm);
    if (!s->ha.enabled)
        return json_pack("{ss ss si}", "state", "disabled", "why", "", "restarts", 0);
    json_t *h = json_object_get(f->ha, s->name);
    enum vm_state st = vm_state(vm);
    const char *err = jfield_text(h, "error"), *why = jfield_text(h, "why"), *state;
    if (f->fenced || json_is_true(json_object_get(h, "fenced")))
        state = "fence";
    else if (st == VM_FAILED)
        state = err[0] ? "error" : "recovery";
    else if (st == VM_STOPPED)
        state = "stopped";
    else
        state = "started";
    return json_pack("{ss ss si ss}", "state", state, "why", st == VM_FAILED && err[0] ? err : why,
                     "restarts", (int)json_array_size(json_object_get(h, "restarts")), "priority",
                     s->ha.priority);
}

struct ha_restart {
    struct fleet *f;
    char name[VM_NAME_MAX + 1];
};

static void ha_restarted(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    (void)set;
    struct ha_restart *r = data;
    json_t *h = json_object_get(r->f->ha, r->name);
    if (h) {
        json_object_set_new(h, "pending", json_false());
        if (status < 0)
            json_object_set_new(h, "why", json_string(e->msg));
    }
    if (status < 0)
        log_warn("vm %s: HA restart failed: %s", r->name, e->msg);
    free(r);
}

static void ha_moved(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    json_decref(body);
    struct ha_restart *r = data;
    json_t *h = json_object_get(r->f->ha, r->name);
    if (h)
        json_object_set_new(h, "pending", json_false());
    if (e) {
        log_warn("vm %s: HA could not give it to another node: %s", r->name, e->msg);
        if (h) {
            json_object_set_new(h, "elsewhere_failed", json_string(e->msg));
            json_object_del(h, "moving");
        }
    }
    free(r);
}

/* An HA VM that failed restart_max times here within its period goes to another node (once per
 * period: a VM that fails everywhere is not passed around), as a failover from this node
 * (vm_failover: the new owner defines and starts it, fleet_tick removes it here). True when
 * that was asked for. */
static bool ha_elsewhere(struct fleet *f, struct vm *vm, json_t *h, size_t n)
{
    const struct vm_spec *s = vm_spec(vm);
    if (!fleet_clustered(f) || !cluster_quorum(f->env.cluster) ||
        cdb_cmd_version_min(cluster_db(f->env.cluster)) < 6 ||
        json_object_get(h, "elsewhere_failed"))
        return false;
    if (json_object_get(f->syncing, s->name))
        return true; /* not now: a write of its state in flight could land after the move's
                      * and leave the new owner a record that is not "recovering" */
    json_t *rec = record_of(f, s->name);
    json_t *last = json_object_get(json_object_get(rec, "failover"), "decided_ms");
    uint64_t wall = now_wall_ms();
    if (!rec || (last && wall - (uint64_t)json_integer_value(last) <
                             (uint64_t)s->ha.restart_period_s * 1000)) {
        json_decref(rec);
        return false;
    }
    json_t *all = cluster_nodes(f->env.cluster), *me = json_pack("[s]", f->env.node_name);
    json_t *one = json_array();
    json_object_set_new(rec, "state", json_string("failed"));
    json_array_append(one, rec);
    struct failplan_move m = {0};
    size_t k = failplan_make(me, json_object_get(all, "nodes"), one, &m, 1);
    json_decref(all);
    json_decref(me);
    json_decref(one);
    json_decref(rec);
    if (k == 0 || !m.to[0]) {
        if (k == 1)
            json_object_set_new(h, "elsewhere_failed", json_string(m.why));
        return false;
    }
    struct ha_restart *r = calloc(1, sizeof(*r));
    if (!r)
        return false;
    r->f = f;
    snprintf(r->name, sizeof(r->name), "%s", s->name);
    char why[256], reason[300];
    snprintf(why, sizeof(why), "its QEMU failed %zu times on %s within %u s", n,
             f->env.node_name, s->ha.restart_period_s);
    snprintf(reason, sizeof(reason), "HA moves it from %s: %s starts it", f->env.node_name, m.to);
    /* its node is alive: no heartbeat was missed, no lease went stale (0: none) */
    struct cdb_failover rec2 = {.from = f->env.node_name, .to = m.to, .why = why, .decided_ms = wall};
    json_t *cmd = cdb_cmd_vm_failover(s->name, "recovering", reason, &rec2);
    struct ferr e = {0};
    json_object_set_new(h, "pending", json_true());
    json_object_set_new(h, "moving", json_true()); /* sync_one writes no state of it now */
    json_object_set_new(h, "why", json_string(reason));
    events_add(f->env.events, s->name, "vm.failover", "%s; %s", why, reason);
    if (!cmd || cluster_write(f->env.cluster, cmd, ha_moved, r, &e) < 0)
        ha_moved(0, NULL, e.msg[0] ? &e : &(struct ferr){.code = -ENOMEM, .msg = "out of memory"},
                 r);
    json_decref(cmd);
    return true;
}

/* HA starts vm (h its entry) again here, saying why (event vm.ha_restart); false with the
 * refusal in h's why when it cannot now. */
static bool ha_start(struct fleet *f, struct vm *vm, json_t *h, const char *why)
{
    struct ha_restart *r = calloc(1, sizeof(*r));
    struct ferr e = {0};
    if (!r)
        return false;
    r->f = f;
    snprintf(r->name, sizeof(r->name), "%s", vm_name(vm));
    if (fleet_start_as(f, vm, false, ha_restarted, r, &e) < 0) {
        json_object_set_new(h, "why", json_string(e.msg));
        free(r);
        return false;
    }
    json_object_set_new(h, "pending", json_true());
    json_object_set_new(h, "why", json_string(why));
    events_add(f->env.events, vm_name(vm), "vm.ha_restart", "%s", why);
    return true;
}

static void ha_one(struct vm *vm, void *data)
{
    struct fleet *f = data;
    const struct vm_spec *s = vm_spec(vm);
    if (!s->ha.enabled) {
        json_object_del(f->ha, s->name);
        return;
    }
    json_t *h = ha_entry(f, s->name);
    bool fenced = json_is_true(json_object_get(h, "fenced"));
    if (!h || f->fenced || json_is_true(json_object_get(h, "pending")) ||
        jfield_text(h, "error")[0])
        return;
    if (fenced && vm_state(vm) == VM_STOPPED) {
        /* the quorum is back and the cluster left it here (else drop_one removes it): it
         * starts again now; only its owner can raise its epoch, so a stale copy of the
         * database cannot start it twice */
        char owner[64];
        if (fleet_owner_of(f, s->name, owner) < 0 || strcmp(owner, f->env.node_name) != 0)
            return;
        if (ha_start(f, vm, h,
                     "the quorum is back and the cluster left it on this node: started again"))
            json_object_set_new(h, "fenced", json_false());
        return;
    }
    if (vm_state(vm) != VM_FAILED)
        return;
    char owner[64];
    if (fleet_owner_of(f, s->name, owner) == 0 && strcmp(owner, f->env.node_name) != 0)
        return; /* the cluster gave it to another node: never started here */
    uint64_t now = now_mono_ms();
    json_t *list = json_object_get(h, "restarts");
    for (size_t i = json_array_size(list); i-- > 0;)
        if (now - (uint64_t)json_integer_value(json_array_get(list, i)) >
            (uint64_t)s->ha.restart_period_s * 1000)
            json_array_remove(list, i);
    size_t n = json_array_size(list);
    char msg[600];
    if (strcmp(s->ha.priority, "none") != 0 && n >= s->ha.restart_max &&
        ha_elsewhere(f, vm, h, n))
        return;
    if (strcmp(s->ha.priority, "none") == 0 || n >= s->ha.restart_max) {
        if (strcmp(s->ha.priority, "none") == 0)
            snprintf(msg, sizeof(msg), "HA priority none: never started by HA; left failed: %s",
                     vm_reason(vm));
        else
            snprintf(msg, sizeof(msg),
                     "HA restarted it %zu time%s in %u s (ha.restart_max %u); left failed: %s%s%s",
                     n, n == 1 ? "" : "s", s->ha.restart_period_s, s->ha.restart_max,
                     vm_reason(vm),
                     json_object_get(h, "elsewhere_failed") ? "; no other node takes it: " : "",
                     jfield_text(h, "elsewhere_failed"));
        json_object_set_new(h, "error", json_string(msg));
        events_add(f->env.events, s->name, "vm.ha_error", "%s", msg);
        return;
    }
    uint64_t due = (uint64_t)json_integer_value(json_object_get(h, "due_ms"));
    if (!due) { /* just failed: the restart waits a little, longer each time */
        uint64_t delay = HA_FIRST_DELAY_MS << (n < 5 ? n : 5);
        json_object_set_new(
            h, "due_ms",
            json_integer((json_int_t)(now + (delay < HA_MAX_DELAY_MS ? delay : HA_MAX_DELAY_MS))));
        return;
    }
    if (now < due)
        return;
    snprintf(msg, sizeof(msg), "its QEMU ended (%s); HA starts it again here (%zu of %u in %u s)",
             vm_reason(vm), n + 1, s->ha.restart_max, s->ha.restart_period_s);
    if (!ha_start(f, vm, h, msg))
        return; /* e.g. no quorum for its new writer epoch: tried again on the next tick */
    json_array_append_new(list, json_integer((json_int_t)now));
    json_object_set_new(h, "due_ms", json_integer(0));
}

static void drop_one(struct vm *vm, void *data);

void fleet_reconcile(struct fleet *f)
{
    vmset_foreach(f->env.vms, ha_one, f);
    if (fleet_clustered(f)) {
        vmset_foreach(f->env.vms, sync_one, f);
        if (cluster_quorum(f->env.cluster))
            vmset_foreach(f->env.vms, drop_one, f);
    }
}

/* ---- failover on this node: self-fencing, adoption, removal of what went elsewhere ---- */

bool fleet_fenced(const struct fleet *f)
{
    return f->fenced;
}

void fleet_set_fence_after(struct fleet *f, unsigned ms)
{
    if (f->env.fence_after_ms)
        f->env.fence_after_ms = ms;
}

struct fence_scan {
    struct fleet *f;
    unsigned killed, alive;
    char late[VM_NAME_MAX + 1];
};

static void fence_killed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    (void)set;
    (void)vm;
    char *name = data;
    if (status < 0)
        log_error("vm %s: the fence could not kill its QEMU: %s", name, e->msg);
    free(name);
}

static void fence_one(struct vm *vm, void *data)
{
    struct fence_scan *fs = data;
    const struct vm_spec *s = vm_spec(vm);
    if (!s->ha.enabled || vm_pid(vm) <= 0)
        return; /* a migrating one too: its leases stop as well */
    json_t *h = ha_entry(fs->f, s->name);
    if (h)
        json_object_set_new(h, "fenced", json_true());
    char *name = strdup(s->name);
    struct ferr e = {0};
    if (!name || vm_kill(vm, fence_killed, name, &e) < 0) {
        if (name)
            log_error("vm %s: the fence could not kill its QEMU: %s", s->name, e.msg);
        free(name);
        return;
    }
    fs->killed++;
    events_add(fs->f->env.events, s->name, "vm.fenced",
               "this node lost the cluster's quorum: its QEMU is killed so that another node "
               "may start it");
}

static void fence_count(struct vm *vm, void *data)
{
    struct fence_scan *fs = data;
    json_t *h = json_object_get(fs->f->ha, vm_name(vm));
    if (vm_pid(vm) > 0 && json_is_true(json_object_get(h, "fenced"))) {
        fs->alive++;
        snprintf(fs->late, sizeof(fs->late), "%s", vm_name(vm));
    }
}

bool fleet_fence_ok(const struct fleet *f, char *why, size_t size)
{
    /* No grace: the leases stopped when the fence began, so the watchdog's whole timeout must
     * count from there (watchdog.h): a SIGKILLed QEMU is gone in milliseconds, one that is not
     * (stuck in the kernel on I/O) gets the host reset before the leases go stale. */
    if (!f->fenced)
        return true;
    struct fence_scan fs = {.f = (struct fleet *)f};
    vmset_foreach(f->env.vms, fence_count, &fs);
    if (fs.alive == 0)
        return true;
    snprintf(why, size, "fenced %llu ms ago and the QEMU of %s (and %u more) still runs",
             (unsigned long long)(now_mono_ms() - f->fenced_at), fs.late, fs.alive - 1);
    return false;
}

static void fence_tick(struct fleet *f, uint64_t now)
{
    if (!f->env.fence_after_ms)
        return;
    if (cluster_quorum(f->env.cluster)) {
        f->quorum_seen = now;
        if (f->fenced) {
            f->fenced = false;
            if (f->env.fence)
                f->env.fence(f->env.fence_data, false);
            log_info("fence: the cluster's quorum is back: this node renews its leases again");
            events_add(f->env.events, NULL, "node.unfenced",
                       "%s: the cluster's quorum is back; leases renewed again", f->env.node_name);
        }
        return;
    }
    if (!f->quorum_seen)
        f->quorum_seen = now; /* a whole period from the first look */
    if (f->fenced || now - f->quorum_seen < f->env.fence_after_ms)
        return;
    /* leases first: from now on the cluster counts towards their expiry */
    f->fenced = true;
    f->fenced_at = now;
    if (f->env.fence)
        f->env.fence(f->env.fence_data, true);
    struct fence_scan fs = {.f = f};
    vmset_foreach(f->env.vms, fence_one, &fs);
    log_warn("fence: no quorum for %llu ms (--fence-after-ms %u): this node stopped renewing "
             "its leases and killed %u HA VM%s",
             (unsigned long long)(now - f->quorum_seen), f->env.fence_after_ms, fs.killed,
             fs.killed == 1 ? "" : "s");
    events_add(f->env.events, NULL, "node.fenced",
               "%s: no quorum for %llu ms: leases stopped, %u HA VM%s killed", f->env.node_name,
               (unsigned long long)(now - f->quorum_seen), fs.killed, fs.killed == 1 ? "" : "s");
}

/* -- adoption: the leader gave a dead node's VM to this node -- */

struct adopt {
    struct fleet *f;
    char name[VM_NAME_MAX + 1];
    uint64_t t0;
};

static void adopt_end(struct adopt *a, const char *failed)
{
    json_t *x = json_object_get(a->f->adopting, a->name);
    if (x)
        json_object_set_new(x, "pending", json_false());
    if (failed) {
        log_warn("vm %s: failover: %s", a->name, failed);
        events_add(a->f->env.events, a->name, "vm.failover_error", "%s", failed);
    }
    free(a);
}

/* One observation of ms in a failover histogram (fleet_failover_stats). */
static void hist_add(struct fleet_hist *h, uint64_t ms)
{
    static const double bounds[FLEET_FAILOVER_HIST_N] = FLEET_FAILOVER_HIST_BOUNDS;
    double secs = (double)ms / 1000.0;
    for (unsigned i = 0; i < FLEET_FAILOVER_HIST_N; i++)
        if (secs <= bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum_s += secs;
}

static void adopt_started(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                          void *data)
{
    (void)set;
    struct adopt *a = data;
    if (status < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "not started on %s: %s (tried again)", a->f->env.node_name,
                 e->msg);
        adopt_end(a, msg);
        return;
    }
    json_object_del(a->f->adopting, a->name);
    json_t *rec = record_of(a->f, a->name);
    uint64_t heard =
        (uint64_t)json_integer_value(json_object_get(json_object_get(rec, "failover"), "heard_ms"));
    json_decref(rec);
    struct fleet_failover_stats *st = &a->f->fo_stats;
    st->adopted++;
    if (heard && vm_started_ms(vm) >= heard)
        hist_add(&st->started, vm_started_ms(vm) - heard);
    log_info("vm %s: failover: running on this node %llu ms after the cluster gave it here",
             a->name, (unsigned long long)(now_mono_ms() - a->t0));
    events_add(a->f->env.events, a->name, "vm.failover_started",
               "running on %s %llu ms after the leader gave it here", a->f->env.node_name,
               (unsigned long long)(now_mono_ms() - a->t0));
    free(a);
}

static void adopt_start(struct adopt *a, struct vm *vm)
{
    struct ferr e = {0};
    json_object_set_new(json_object_get(a->f->adopting, a->name), "pending", json_true());
    if (fleet_start_as(a->f, vm, false, adopt_started, a, &e) < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "not started on %s: %s (tried again)", a->f->env.node_name,
                 e.msg);
        adopt_end(a, msg);
    }
}

static void adopt_made(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                       void *data)
{
    (void)set;
    struct adopt *a = data;
    if (status < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "not defined on %s: %s (tried again)", a->f->env.node_name,
                 e->msg);
        adopt_end(a, msg);
        return;
    }
    json_object_set_new(json_object_get(a->f->adopting, a->name), "made", json_true());
    adopt_start(a, vm);
}

static unsigned adopting_now(const struct fleet *f)
{
    unsigned n = 0;
    const char *k;
    json_t *x;
    json_object_foreach(f->adopting, k, x) n += json_is_true(json_object_get(x, "pending"));
    return n;
}

static void adopt_tick(struct fleet *f)
{
    const struct cdb *db = cluster_db(f->env.cluster);
    if (!cluster_quorum(f->env.cluster) || f->fenced)
        return;
    /* what the cluster no longer asks of this node is forgotten (a start that failed is HA's
     * restart policy's now) */
    const char *k;
    json_t *x0, *tmp;
    json_object_foreach_safe(f->adopting, tmp, k, x0)
    {
        json_t *r = record_of(f, k);
        if (!json_is_true(json_object_get(x0, "pending")) &&
            (!r || strcmp(jfield_text(r, "owner"), f->env.node_name) != 0 ||
             strcmp(jfield_text(r, "state"), "recovering") != 0))
            json_object_del(f->adopting, k);
        json_decref(r);
    }
    json_t *vms = cdb_vms(db, f->env.node_name);
    size_t i;
    json_t *rec;
    json_array_foreach(vms, i, rec)
    {
        const char *name = jfield_text(rec, "name");
        if (strcmp(jfield_text(rec, "owner"), f->env.node_name) != 0 ||
            strcmp(jfield_text(rec, "state"), "recovering") != 0)
            continue;
        json_t *x = json_object_get(f->adopting, name);
        struct vm *vm = vmset_find(f->env.vms, name);
        if (json_is_true(json_object_get(x, "pending")) || adopting_now(f) >= FLEET_ADOPT_MAX)
            continue;
        if (vm && (!x || vm_state(vm) != VM_STOPPED))
            continue; /* here already (sync_one writes its state) */
        struct adopt *a = calloc(1, sizeof(*a));
        if (!a)
            break;
        *a = (struct adopt){.f = f, .t0 = now_mono_ms()};
        snprintf(a->name, sizeof(a->name), "%s", name);
        if (!x) {
            x = json_pack("{sb sb}", "made", 0, "pending", 1);
            json_object_set_new(f->adopting, name, x);
            log_info("vm %s: failover: the cluster gave it to this node (%s)", name,
                     jfield_text(rec, "reason"));
        }
        if (vm) {
            adopt_start(a, vm);
            continue;
        }
        struct ferr e = {0};
        json_object_set_new(x, "pending", json_true());
        if (vmset_create(f->env.vms, json_object_get(rec, "spec"), adopt_made, a, &e) < 0) {
            char msg[600];
            snprintf(msg, sizeof(msg), "not defined on %s: %s (tried again)", f->env.node_name,
                     e.msg);
            adopt_end(a, msg);
        }
    }
    json_decref(vms);
}

/* -- a VM failed over away from this node while it was cut off: removed here -- */

static void dropped(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    (void)set;
    (void)vm;
    char *name = data;
    if (status < 0)
        log_warn("vm %s: this node's stale copy not removed: %s (tried again)", name, e->msg);
    free(name);
}

static void drop_one(struct vm *vm, void *data)
{
    struct fleet *f = data;
    const char *name = vm_name(vm);
    json_t *rec = record_of(f, name);
    const char *owner = jfield_text(rec, "owner");
    const char *from = jfield_text(json_object_get(rec, "failover"), "from");
    enum vm_state st = vm_state(vm);
    uint64_t decided = (uint64_t)json_integer_value(
        json_object_get(json_object_get(rec, "failover"), "decided_ms"));
    /* a QEMU that runs here is stale only if it started before the failover was decided: one
     * that came later is a live migration arriving here (its owner changes at the hand-over) */
    bool stale_qemu = vm_pid(vm) <= 0 || vm_started_ms(vm) < decided;
    bool gone = rec && owner[0] && strcmp(owner, f->env.node_name) != 0 &&
                strcmp(from, f->env.node_name) == 0 && !vm_migrating(vm) && stale_qemu &&
                st != VM_INCOMING && st != VM_STOPPING && !json_object_get(f->adopting, name);
    if (!gone) {
        json_decref(rec);
        return;
    }
    char *n = strdup(name);
    struct ferr e = {0};
    if (!n) {
        json_decref(rec);
        return;
    }
    if (vm_pid(vm) > 0)
        log_error("vm %s: its QEMU runs here, but the cluster failed it over to %s while this "
                  "node was cut off: killed (the writer epoch already fences it)",
                  name, owner);
    events_add(f->env.events, name, "vm.failover_removed",
               "failed over to %s while %s was cut off: this node's copy is removed (disks "
               "kept)",
               owner, f->env.node_name);
    json_decref(rec);
    json_object_del(f->ha, name);
    if (vmset_delete(f->env.vms, vm, true, dropped, n, &e) < 0) {
        log_warn("vm %s: this node's stale copy not removed: %s (tried again)", name, e.msg);
        free(n);
    }
}

/* A VM's guest sent its first packet (vm_net_poll): the failover that brought it here ends. */
static void net_one(struct vm *vm, void *data)
{
    struct fleet *f = data;
    if (!vm_net_poll(vm))
        return;
    json_t *rec = record_of(f, vm_name(vm));
    json_t *fo = json_object_get(rec, "failover");
    uint64_t heard = (uint64_t)json_integer_value(json_object_get(fo, "heard_ms"));
    uint64_t decided = (uint64_t)json_integer_value(json_object_get(fo, "decided_ms"));
    const char *to = json_string_value(json_object_get(fo, "to"));
    struct fleet_failover_stats *st = &f->fo_stats;
    if (to && strcmp(to, f->env.node_name) == 0 && heard && vm_started_ms(vm) >= decided &&
        vm_net_ms(vm) >= heard) {
        hist_add(&st->net, vm_net_ms(vm) - heard);
        log_info("vm %s: failover: the guest's network is up %llu ms after %s was last heard",
                 vm_name(vm), (unsigned long long)(vm_net_ms(vm) - heard),
                 json_string_value(json_object_get(fo, "from")));
    }
    json_decref(rec);
}

void fleet_tick(struct fleet *f)
{
    vmset_foreach(f->env.vms, net_one, f);
    if (!fleet_clustered(f))
        return;
    fence_tick(f, now_mono_ms());
    if (!cluster_quorum(f->env.cluster))
        return;
    adopt_tick(f);
}

void fleet_failover_stats(const struct fleet *f, struct fleet_failover_stats *out)
{
    *out = f->fo_stats;
}
