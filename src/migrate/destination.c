/* SPDX-License-Identifier: MIT */
/* Live migration, destination side: prepare an incoming QEMU, carry the console, resume a broken
 * post-copy, abort. */
#include "migrate/migrate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "migrate/migrate_internal.h"

/* ---- destination ---- */

struct prep {
    struct migrator *m;
    migrate_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
    char uri[160];
    bool postcopy;
    bool tls;
    struct vm_mig_tls tls_key; /* wiped once written for QEMU */
    struct ferr e;
};

/* A free TCP port on ip, for QEMU to listen on (the kernel picks it). */
static int free_port(const char *ip, int *port, struct ferr *e)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return ferr_set(e, FERR_INVALID, "migration address %s is not an IPv4 address", ip);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "socket: %s", strerror(errno));
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        int err = errno;
        close(fd);
        return ferr_set(e, -err, "bind %s:0: %s", ip, strerror(err));
    }
    close(fd);
    *port = ntohs(sa.sin_port);
    return 0;
}

/* This node's management address: the host part of its API address in the cluster. */
static int mgmt_ip(struct migrator *m, char out[64], struct ferr *e)
{
    json_t *rec = NULL;
    int rc = cdb_node_find(cluster_db(m->env.cluster), m->env.node_name, &rec, e);
    if (rc < 0)
        return rc;
    const char *api = json_string_value(json_object_get(rec, "api_addr"));
    const char *colon = api ? strrchr(api, ':') : NULL;
    if (!colon || colon == api || (size_t)(colon - api) >= 64) {
        json_decref(rec);
        return ferr_set(e, FERR_STATE, "this node has no API address in the cluster");
    }
    memcpy(out, api, (size_t)(colon - api));
    out[colon - api] = '\0';
    json_decref(rec);
    return 0;
}

static void prep_removed(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    p->cb(0, NULL, &p->e, p->data);
    free(p);
}

/* Undoes a half-made incoming VM, then answers with p->e. */
static void prep_fail(struct prep *p)
{
    ferr_prefix(&p->e, "prepare %s on %s", p->name, p->m->env.node_name);
    log_warn("migrate: %s", p->e.msg);
    struct vm *vm = vmset_find(p->m->env.vms, p->name);
    struct ferr e2 = {0};
    if (!vm || vmset_delete(p->m->env.vms, vm, true, prep_removed, p, &e2) < 0)
        prep_removed(p->m->env.vms, NULL, 0, NULL, p);
}

static void prep_started(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    if (status < 0) {
        p->e = *e;
        prep_fail(p);
        return;
    }
    log_info("migrate %s: incoming at %s", p->name, p->uri);
    p->cb(200,
          json_pack("{s:s, s:s, s:b}", "uri", p->uri, "node", p->m->env.node_name, "tls", p->tls),
          NULL, p->data);
    free(p);
}

static void prep_created(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct prep *p = data;
    if (status < 0) {
        p->cb(0, NULL, e, p->data);
        explicit_bzero(p, sizeof(*p));
        free(p);
        return;
    }
    char ip[64];
    int port = 0;
    if (mgmt_ip(p->m, ip, &p->e) < 0 || free_port(ip, &port, &p->e) < 0) {
        prep_fail(p);
        return;
    }
    snprintf(p->uri, sizeof(p->uri), "tcp:%s:%d", ip, port);
    int rc = vm_start_incoming(vm, p->uri, p->postcopy, p->tls ? &p->tls_key : NULL, prep_started,
                               p, &p->e);
    explicit_bzero(&p->tls_key.key, sizeof(p->tls_key.key));
    if (rc < 0)
        prep_fail(p);
}

/* True (after answering) when the cluster database says this node owns the VM: then it is
 * no incoming copy to make or throw away. */
static bool owned_here(struct migrator *m, const char *name, migrate_cb cb, void *data)
{
    json_t *rec = NULL;
    if (cdb_vm_get(cluster_db(m->env.cluster), name, &rec, NULL) < 0)
        return false;
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    bool mine = owner && strcmp(owner, m->env.node_name) == 0;
    json_decref(rec);
    if (mine)
        reply_err(cb, data, FERR_STATE, "%s is owned by %s in the cluster database", name,
                  m->env.node_name);
    return mine;
}

void migrate_on_prepare(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *spec = json_object_get(body, "spec");
    const char *sname = json_string_value(json_object_get(spec, "name"));
    json_t *pc = json_object_get(body, "postcopy");
    json_t *tls = json_object_get(body, "tls");
    struct vm_mig_tls key;
    memset(&key, 0, sizeof(key));
    const char *tuser = json_string_value(json_object_get(tls, "user"));
    const char *tkey = json_string_value(json_object_get(tls, "key"));
    if (tls && tuser && tkey) {
        snprintf(key.user, sizeof(key.user), "%.*s", VM_MIG_TLS_USER_MAX, tuser);
        snprintf(key.key, sizeof(key.key), "%.*s", VM_MIG_TLS_KEY_HEX, tkey);
    }
    if (!name || !json_is_object(spec) || !sname || strcmp(name, sname) != 0 ||
        (pc && !json_is_boolean(pc)) ||
        (tls &&
         (!json_is_object(tls) || json_object_size(tls) != 2 || !tuser || !tkey ||
          strcmp(key.user, tuser) != 0 || strcmp(key.key, tkey) != 0 || !vm_mig_tls_valid(&key))) ||
        json_object_size(body) != 2u + (pc != NULL) + (tls != NULL)) {
        explicit_bzero(&key, sizeof(key));
        reply_err(cb, data, FERR_INVALID,
                  "body: expected {\"name\": NAME, \"spec\": {the VM's spec, same name}, "
                  "\"postcopy\": BOOL (optional), \"tls\": {\"user\": 1-%d of a-z 0-9 -, "
                  "\"key\": %d lowercase hex digits} (optional: a plain stream without it)}",
                  VM_MIG_TLS_USER_MAX, VM_MIG_TLS_KEY_HEX);
        return;
    }
    if (!m->env.cluster || !cluster_active(m->env.cluster)) {
        reply_err(cb, data, FERR_STATE, "prepare %s: this node is not in a cluster", name);
        return;
    }
    if (owned_here(m, name, cb, data)) {
        explicit_bzero(&key, sizeof(key));
        return;
    }
    struct prep *p = calloc(1, sizeof(*p));
    if (!p) {
        explicit_bzero(&key, sizeof(key));
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    p->m = m;
    p->cb = cb;
    p->data = data;
    p->postcopy = json_is_true(pc);
    p->tls = tls != NULL;
    p->tls_key = key;
    explicit_bzero(&key, sizeof(key));
    snprintf(p->name, sizeof(p->name), "%s", name);
    struct ferr e = {0};
    if (vmset_create(m->env.vms, spec, prep_created, p, &e) < 0) {
        ferr_prefix(&e, "prepare %s on %s", name, m->env.node_name);
        cb(0, NULL, &e, data);
        explicit_bzero(p, sizeof(*p));
        free(p);
    }
}

void migrate_on_console(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *from = json_string_value(json_object_get(body, "from"));
    json_t *text = json_object_get(body, "data");
    if (!name || !from || !name_valid(from, 63) || !json_is_string(text) ||
        json_string_length(text) > 4 * CONSOLE_CARRY || json_object_size(body) != 3) {
        reply_err(cb, data, FERR_INVALID,
                  "body: expected {\"name\": NAME, \"from\": NODE, \"data\": TEXT (at most "
                  "%d bytes)}",
                  4 * CONSOLE_CARRY);
        return;
    }
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm || vm_state(vm) != VM_INCOMING) {
        reply_err(cb, data, FERR_STATE, "%s is not waiting here for a migration", name);
        return;
    }
    size_t len = json_string_length(text);
    char mark[200];
    int n = snprintf(mark, sizeof(mark),
                     "%s[ferry] the console above is %s's; the VM is live-migrating to %s\r\n",
                     len && json_string_value(text)[len - 1] != '\n' ? "\r\n" : "", from,
                     m->env.node_name);
    vm_console_append(vm, json_string_value(text), len);
    vm_console_append(vm, mark, (size_t)n);
    cb(200, json_pack("{s:I}", "appended", (json_int_t)len), NULL, data);
}

/* ---- destination: resuming a broken post-copy ---- */

/* The answer that lets the source boot the VM again: no copy of it runs here. */
static json_t *no_copy(const char *name, const char *why)
{
    char text[200];
    snprintf(text, sizeof(text), "%.63s is not running here: %.100s", name, why);
    return json_pack("{s:b, s:s}", "copy", 0, "why", text);
}

struct recover_ctx {
    struct migrator *m;
    migrate_cb cb;
    void *data;
    char name[VM_NAME_MAX + 1];
    char uri[160];
};

/*
 * Everything here goes out of band (vm_qmp_oob): a broken post-copy can leave the destination's
 * QEMU with a vCPU waiting for a page while it holds the big lock, and then no in-band command
 * ever runs (not even query-migrate). migrate-recover issued out of band also listens in the
 * monitor's own thread, so the source's connection is taken without the main loop. So there is
 * no asking first: migrate-recover is tried, and when QEMU says the post-copy is not paused
 * here, migrate-pause breaks this side (it was still postcopy-active, or recovering for an
 * earlier call) and the source asks again.
 */
static void recover_paused(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct recover_ctx *x = d;
    if (status < 0)
        reply_err(x->cb, x->data, FERR_STATE,
                  "%s: its incoming migration is not in post-copy here (%.200s)", x->name,
                  err ? err : ferr_str(status));
    else
        reply_err(x->cb, x->data, FERR_STATE,
                  "%s: the post-copy stream was still up here; it is broken now, ask again",
                  x->name);
    free(x);
}

static void recover_listening(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct recover_ctx *x = d;
    struct vm *vm = vmset_find(x->m->env.vms, x->name);
    struct ferr e = {0};
    if (!vm) {
        x->cb(200, no_copy(x->name, "its QEMU is gone"), NULL, x->data);
    } else if (status == 0) {
        vm_set_incoming_uri(vm, x->uri); /* x->uri is "tcp:IP:PORT": it fits */
        log_info("migrate %s: post-copy broke; listening again at %s", x->name, x->uri);
        events_add(x->m->env.events, x->name, "vm.migrating",
                   "the post-copy stream broke; listening again at %s", x->uri);
        x->cb(200, json_pack("{s:s, s:s}", "uri", x->uri, "node", x->m->env.node_name), NULL,
              x->data);
    } else if (err && strstr(err, "when postcopy is paused")) {
        if (vm_qmp_oob(vm, "migrate-pause", NULL, recover_paused, x, &e) == 0)
            return;
        reply_err(x->cb, x->data, FERR_QEMU, "%s", e.msg);
    } else {
        reply_err(x->cb, x->data, FERR_QEMU, "migrate-recover %s: %.300s", x->uri,
                  err ? err : ferr_str(status));
    }
    free(x);
}

void migrate_on_recover(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || json_object_size(body) != 1) {
        reply_err(cb, data, FERR_INVALID, "body: expected {\"name\": NAME}");
        return;
    }
    if (owned_here(m, name, cb, data))
        return;
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm || (vm_state(vm) != VM_RUNNING && vm_state(vm) != VM_PAUSED)) {
        cb(200, no_copy(name, vm ? vm_state_name(vm_state(vm)) : "no such VM here"), NULL, data);
        return;
    }
    struct recover_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    x->m = m;
    x->cb = cb;
    x->data = data;
    snprintf(x->name, sizeof(x->name), "%s", name);
    struct ferr e = {0};
    char ip[64];
    int port = 0;
    if (mgmt_ip(m, ip, &e) < 0 || free_port(ip, &port, &e) < 0) {
        free(x);
        reply_err(cb, data, e.code, "%s", e.msg);
        return;
    }
    snprintf(x->uri, sizeof(x->uri), "tcp:%s:%d", ip, port);
    if (vm_qmp_oob(vm, "migrate-recover", json_pack("{s:s}", "uri", x->uri), recover_listening, x,
                   &e) < 0) {
        free(x);
        reply_err(cb, data, FERR_STATE, "%s: %s; ask again", name, e.msg);
    }
}

struct abort_ctx {
    migrate_cb cb;
    void *data;
};

static void aborted(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    struct abort_ctx *a = data;
    if (status < 0)
        a->cb(0, NULL, e, a->data);
    else
        a->cb(200, json_pack("{s:b}", "aborted", 1), NULL, a->data);
    free(a);
}

static void abort_now(struct migrator *m, struct vm *vm, migrate_cb cb, void *data)
{
    struct abort_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    a->cb = cb;
    a->data = data;
    struct ferr e = {0};
    events_add(m->env.events, vm_name(vm), "vm.migrate_aborted",
               "the source gave up the migration");
    if (vmset_delete(m->env.vms, vm, true, aborted, a, &e) < 0) {
        free(a);
        cb(0, NULL, &e, data);
    }
}

struct unstarted_ctx {
    struct migrator *m;
    char name[VM_NAME_MAX + 1];
    migrate_cb cb;
    void *data;
};

/* The incoming QEMU's own word on what it received (query-migrate on the destination). */
static void unstarted_queried(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    (void)c;
    struct unstarted_ctx *u = d;
    struct vm *vm = vmset_find(u->m->env.vms, u->name);
    const char *st = json_string_value(json_object_get(r, "status"));
    if (!vm) {
        u->cb(200, json_pack("{s:b}", "aborted", 0), NULL, u->data);
    } else if (status < 0 || err) {
        reply_err(u->cb, u->data, FERR_STATE,
                  "%s: its incoming QEMU did not say what it received "
                  "(%s): kept",
                  u->name, err ? err : "no answer");
    } else if (vm_state(vm) == VM_INCOMING &&
               (!st || strcmp(st, "setup") == 0 || strcmp(st, "none") == 0)) {
        abort_now(u->m, vm, u->cb, u->data);
    } else {
        reply_err(u->cb, u->data, FERR_STATE,
                  "%s: its incoming QEMU has received state (migration %s, VM %s): kept, as it "
                  "may be the only copy",
                  u->name, st ? st : "?", vm_state_name(vm_state(vm)));
    }
    free(u);
}

void migrate_on_abort(struct migrator *m, const json_t *body, migrate_cb cb, void *data)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *only = json_object_get(body, "only_unstarted");
    if (!name || (only && !json_is_boolean(only)) || json_object_size(body) != 1u + !!only) {
        reply_err(cb, data, FERR_INVALID,
                  "body: expected {\"name\": NAME, \"only_unstarted\": BOOL (optional)}");
        return;
    }
    struct vm *vm = vmset_find(m->env.vms, name);
    if (!vm) {
        cb(200, json_pack("{s:b}", "aborted", 0), NULL, data); /* nothing (left) here */
        return;
    }
    if (owned_here(m, name, cb, data))
        return;
    enum vm_state st = vm_state(vm);
    if (!json_is_true(only) || st == VM_FAILED || st == VM_STOPPED) {
        abort_now(m, vm, cb, data);
        return;
    }
    if (st != VM_INCOMING) {
        reply_err(cb, data, FERR_STATE, "%s is %s here, not waiting for a stream: kept", name,
                  vm_state_name(st));
        return;
    }
    struct unstarted_ctx *u = calloc(1, sizeof(*u));
    struct ferr e = {0};
    if (!u) {
        reply_err(cb, data, -ENOMEM, "out of memory");
        return;
    }
    u->m = m;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->cb = cb;
    u->data = data;
    if (vm_qmp(vm, "query-migrate", NULL, unstarted_queried, u, &e) < 0) {
        free(u);
        reply_err(cb, data, FERR_STATE,
                  "%s: its incoming QEMU cannot be asked (%s): kept; ask "
                  "again",
                  name, e.msg);
    }
}
