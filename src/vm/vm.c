/* SPDX-License-Identifier: MIT */
/* One VM on this host: its state machine over a QEMU process (qemu/process.c) and its QMP
 * connection: start, stop, pause, console. */
#include "vm/vm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "host/host.h"
#include "net/tap.h"
#include "qemu/cmdline.h"
#include "qemu/process.h"
#include "qemu/qmp.h"
#include "storage/vhd.h"
#include "vm/firmware.h"
#include "vm/vmstate.h"

#define CONSOLE_RING (256 * 1024)
#define CONSOLE_FILE_MAX (1024 * 1024)
#define CONSOLE_CHUNK 65536
#define STATS_EVERY_MS 2000
#define QMP_RETRY_MS 20
#define QMP_LOST_GRACE_MS 500

const char *vm_reason(const struct vm *vm)
{
    return vm->reason;
}

const char *vm_name(const struct vm *vm)
{
    return vm->spec.name;
}

enum vm_state vm_state(const struct vm *vm)
{
    return vm->state;
}

const struct vm_spec *vm_spec(const struct vm *vm)
{
    return &vm->spec;
}

static bool has_qemu(const struct vm *vm)
{
    return vmstate_has_qemu(vm->state);
}

/* What the state machine (vmstate.c) needs to decide on action a. */
static enum vmstate_do decide(const struct vm *vm, enum vm_action a, struct ferr *e)
{
    struct vmstate_facts f = {
        .name = vm->spec.name,
        .state = vm->state,
        .qmp_ready = vm->qmp_ready,
        .cleaning_up = vm->closing > 0,
        .has_pid = vm->pid > 0,
        .migrating_out = vm->migrating_out,
        .postmigrate = vm->postmigrate,
    };
    return vmstate_decide(a, &f, e);
}

/* ---- waiters: API requests waiting for the VM to settle ---- */

static int add_waiter(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    if (!cb)
        return 0;
    struct vm_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return ferr_set(e, -ENOMEM, "%s: out of memory", vm->spec.name);
    w->cb = cb;
    w->data = data;
    struct vm_waiter **p = &vm->waiters;
    while (*p)
        p = &(*p)->next;
    *p = w;
    return 0;
}

void vm__notify(struct vm *vm, int status, const struct ferr *e)
{
    struct vm_waiter *w = vm->waiters;
    vm->waiters = NULL;
    while (w) {
        struct vm_waiter *next = w->next;
        w->cb(vm->set, vm, status, e, w->data);
        free(w);
        w = next;
    }
}

static void set_state(struct vm *vm, enum vm_state s)
{
    if (vm->state == s)
        return;
    log_debug("vm %s: %s -> %s", vm->spec.name, vm_state_name(vm->state), vm_state_name(s));
    vm->state = s;
    if (vm->set->cfg.on_change)
        vm->set->cfg.on_change(vm->set->cfg.change_data);
}

/* ---- teardown after QEMU is gone ---- */

/* The socket of disk i's relay (redirected I/O). */
static void nbd_sock(const struct vm *vm, unsigned i, char *out, size_t size)
{
    snprintf(out, size, "%s/disk%u.nbd", vm->run, i);
}

static void unredirect_disks(struct vm *vm)
{
    for (unsigned i = 0; i < vm->spec.ndisks; i++)
        if (vm->disk_nbd[i]) {
            vm->disk_nbd[i] = false;
            if (vm->set->cfg.disk_unredirect)
                vm->set->cfg.disk_unredirect(vm->set->cfg.redirect_data, vm->spec.name, i);
        }
}

/* Asks for a relay for each dynamic disk on a volume (vm_config.disk_redirect); on failure
 * the relays made so far go. exports[i] gets the NBD export name of a redirected disk. */
static int redirect_disks(struct vm *vm, const bool *want, bool adopted,
                          char exports[][VM_PATH_MAX], struct ferr *e)
{
    const struct vm_config *cfg = &vm->set->cfg;
    for (unsigned i = 0; i < vm->spec.ndisks; i++) {
        if (!want[i] || !cfg->disk_redirect)
            continue;
        char sock[700];
        nbd_sock(vm, i, sock, sizeof(sock));
        int rc = cfg->disk_redirect(cfg->redirect_data, vm->spec.name, i, vm->spec.disks[i].path,
                                    sock, adopted, exports[i], VM_PATH_MAX, e);
        if (rc < 0) {
            ferr_prefix(e, "disks[%u]", i);
            unredirect_disks(vm);
            return rc;
        }
        vm->disk_nbd[i] = rc > 0;
        /* ferryd's relay made the socket; QEMU, as its user, connects to it (and again at
         * each reconnect). */
        if (vm->disk_nbd[i] && (rc = qemu_user_give(&vm->user, sock, 0600, e)) < 0) {
            ferr_prefix(e, "disks[%u]", i);
            unredirect_disks(vm);
            return rc;
        }
    }
    return 0;
}

/* RUN/NAME, QEMU's own directory: its sockets and pid file are made there by QEMU as its
 * user. ferryd's files in it (qemu.log, the migration keys, the NBD sockets) are opened
 * without following symlinks or given by descriptor (qemu_user_give). */
static int run_dir_ready(const struct vm *vm, struct ferr *e)
{
    const struct qemu_user *u = &vm->user;
    int rc = qemu_user_check_reach(u, vm->set->cfg.run_dir, e);
    if (rc == 0)
        rc = mkdir_p(vm->run, 0700, e);
    if (rc == 0)
        rc = qemu_user_give(u, vm->run, 0700, e);
    return rc;
}

const struct qemu_user *vm_qemu_user(const struct vm *vm)
{
    return &vm->user;
}

static void cleanup_runtime(struct vm *vm)
{
    struct ferr e = {0};
    /* The next QEMU runs as the VM's own user, whatever an adopted one ran as. */
    qemu_user_for_vm(&vm->set->cfg.qemu_user, vm->spec.name, &vm->user);
    unredirect_disks(vm);
    /* A migration's key is of no use without the QEMU that was to use it. */
    vm_mig_tls_remove(vm, true);
    vm_mig_tls_remove(vm, false);
    vm->incoming_tls_user[0] = '\0';
    for (unsigned i = 0; i < vm->spec.nnics; i++)
        if (vm->taps[i][0] && tap_delete(vm->taps[i], &e) < 0)
            log_warn("vm %s: %s", vm->spec.name, e.msg);
    char p[700];
    snprintf(p, sizeof(p), "%s/qmp.sock", vm->run);
    unlink(p);
    snprintf(p, sizeof(p), "%s/qemu.pid", vm->run);
    unlink(p);
    vm->pid = 0;
}

static void drain_console(struct vm *vm);
static void drain_console_timer(uv_timer_t *t);
static void incoming_ready(struct vm *vm);
static void on_ringbuf(struct qmp_conn *c, int status, json_t *result, const char *err, void *d);
static void handle_closed(uv_handle_t *h);

/* QEMU is gone (how: what qemu/process.c knows of its end, NULL if it never ran). Settle the
 * state. */
static void qemu_gone(struct vm *vm, const struct qemu_exit *how)
{
    if (vm->qmp) {
        qmp_conn_close(vm->qmp);
        vm->qmp = NULL;
    }
    vm->qmp_ready = false;
    uv_timer_stop(&vm->timer);
    uv_timer_stop(&vm->poll);
    enum vm_state was = vm->state;
    struct ferr e = {0};
    char tail[300], logp[700];
    snprintf(logp, sizeof(logp), "%s/qemu.log", vm->run);
    qemu_log_tail(logp, tail, sizeof(tail));
    struct vmstate_end end = {
        .was = was,
        .fail_pending = vm->fail_pending,
        .stop_requested = vm->stop_requested,
        .guest_shutdown = vm->guest_shutdown,
        .killed_after_timeout = vm->killed_after_timeout,
        .how = how,
        .log_tail = tail,
    };
    int status;
    set_state(vm, vmstate_on_exit(&end, vm->reason, sizeof(vm->reason), &status));
    cleanup_runtime(vm);
    vm->incoming = false;
    vm->stop_requested = false;
    vm->guest_shutdown = false;
    vm->fail_pending = false;
    vm->attaching = false;
    vm->postmigrate = false;
    vm->killed_after_timeout = false;
    if (vm->state == VM_FAILED) {
        events_add(vm->set->events, vm->spec.name, "vm.failed", "%s", vm->reason);
        ferr_set(&e, FERR_QEMU, "%s: %s", vm->spec.name, vm->reason);
        vm__notify(vm, status, &e);
    } else {
        events_add(vm->set->events, vm->spec.name, "vm.stopped", "%s", vm->reason);
        vm__notify(vm, 0, NULL);
    }
}

static void on_qemu_exit(struct qemu_proc *p, const struct qemu_exit *how, void *data)
{
    struct vm *vm = data;
    vm->qemu = NULL;
    qemu_gone(vm, how);
}

/* QMP broke while QEMU still runs: we cannot manage it any more, so it must not keep running
 * unmanaged. Mark failed and kill it; qemu_gone() finishes when it exits. */
static void fail_and_kill(struct vm *vm, const char *why)
{
    snprintf(vm->reason, sizeof(vm->reason), "%s", why);
    vm->fail_pending = true;
    if (vm->qemu)
        qemu_proc_signal(vm->qemu, SIGKILL);
    else
        qemu_gone(vm, NULL);
}

/* ---- QMP ---- */

static void connect_qmp(struct vm *vm);

static void connect_qmp_timer(uv_timer_t *t)
{
    connect_qmp(t->data);
}

/* The guest powered off; QEMU (-no-shutdown) waits. Read the last console output, then quit.
 * QMP answers in order, so the ring is read before QEMU goes. */
static void finish_shutdown(struct vm *vm)
{
    if (!vm->qmp || !vm->qmp_ready)
        return;
    json_t *args =
        json_pack("{s:s, s:i, s:s}", "device", "console", "size", CONSOLE_CHUNK, "format", "utf8");
    qmp_conn_execute(vm->qmp, "ringbuf-read", args, on_ringbuf, vm);
    vm->console_busy = true;
    qmp_conn_execute(vm->qmp, "quit", NULL, NULL, NULL);
}

/* Destination: QEMU's incoming migration changed status (the "events" capability is on for an
 * encrypted one). Once it is over its key is not needed any more; until then a broken
 * post-copy's recovery handshakes again with it (QEMU's server reads keys.psk at each
 * handshake). */
static void incoming_migration_event(struct vm *vm, const char *status)
{
    if (status && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
                   strcmp(status, "cancelled") == 0)) {
        vm_mig_tls_remove(vm, true);
        vm->incoming_tls_user[0] = '\0';
    }
}

static void on_qmp_event(struct qmp_conn *c, const char *event, json_t *data, uint64_t ts,
                         void *user)
{
    struct vm *vm = user;
    if (vm->mig_event)
        vm->mig_event(vm, event, data, vm->mig_data);
    if (strcmp(event, "MIGRATION") == 0 && !vm->migrating_out)
        incoming_migration_event(vm, json_string_value(json_object_get(data, "status")));
    if (strcmp(event, "RESUME") == 0)
        vm->postmigrate = false; /* someone ran it after all: it is this QEMU's state again */
    enum vm_state next = vmstate_on_event(vm->state, event, vm->migrating_out);
    if (next != vm->state) {
        if (vm->state == VM_INCOMING) {
            /* Destination: the migration completed and QEMU started the guest. */
            vm->incoming = false;
            set_state(vm, next);
            events_add(vm->set->events, vm->spec.name, "vm.migrated_in", "running here now");
        } else if (next == VM_PAUSED) {
            set_state(vm, next);
            events_add(vm->set->events, vm->spec.name, "vm.paused", "QEMU stopped the vCPUs");
        } else {
            vm->reason[0] = '\0';
            set_state(vm, next);
            events_add(vm->set->events, vm->spec.name, "vm.resumed", "vCPUs running again");
        }
        return;
    }
    if (strcmp(event, "SHUTDOWN") == 0) {
        vm->guest_shutdown = true;
        finish_shutdown(vm);
    } else if (strcmp(event, "GUEST_PANICKED") == 0) {
        events_add(vm->set->events, vm->spec.name, "guest.panicked", "the guest kernel panicked");
    }
}

static void qmp_lost_timer(uv_timer_t *t)
{
    struct vm *vm = t->data;
    if (!has_qemu(vm) || vm->qmp)
        return;
    log_warn("vm %s: %s", vm->spec.name, vm->qmp_lost);
    fail_and_kill(vm, vm->qmp_lost);
}

static void on_qmp_closed(struct qmp_conn *c, int status, const char *msg, void *user)
{
    struct vm *vm = user;
    vm->qmp = NULL;
    vm->qmp_ready = false;
    if (vm->state == VM_STARTING && !vm->attaching && now_mono_ms() < vm->deadline_ms &&
        (status == -ECONNREFUSED || status == -ENOENT)) {
        /* QEMU has not bound its QMP socket yet: try again shortly. */
        uv_timer_start(&vm->timer, connect_qmp_timer, QMP_RETRY_MS, 0);
        return;
    }
    if (vm->state == VM_STOPPING || vm->stop_requested || vm->guest_shutdown)
        return; /* QEMU is on its way out; the pidfd tells us when it is gone */
    /* QEMU closes QMP when it exits, usually a moment before the pidfd fires: give the exit
     * a grace period to explain itself before blaming the QMP link. */
    snprintf(vm->qmp_lost, sizeof(vm->qmp_lost), "lost QMP connection: %.400s", msg);
    uv_timer_start(&vm->timer, qmp_lost_timer, QMP_LOST_GRACE_MS, 0);
}

static void on_status(struct qmp_conn *c, int status, json_t *result, const char *err, void *d)
{
    if (status == -ECANCELED)
        return;
    struct vm *vm = d;
    if (status < 0) {
        char why[FERR_MSG_MAX];
        snprintf(why, sizeof(why), "query-status failed: %.400s", err ? err : ferr_str(status));
        fail_and_kill(vm, why);
        return;
    }
    const char *st = json_string_value(json_object_get(result, "status"));
    enum vm_state next = vmstate_on_status(st, vm->incoming, vm->attaching);
    if (next == VM_STOPPING) {
        /* The guest powered off while nobody listened (a ferryd restart): finish it now. */
        vm->guest_shutdown = true;
        vm->attaching = false;
        set_state(vm, VM_STOPPING);
        finish_shutdown(vm);
        return;
    }
    if (next == VM_INCOMING) {
        incoming_ready(vm);
        return;
    }
    /* A QEMU re-attached in "postmigrate" (its migration completed while no ferryd watched)
     * has its vCPUs stopped and its state in another QEMU: listed paused (vmstate), never
     * resumed here. */
    bool was_attaching = vm->attaching;
    vm->attaching = false;
    vm->postmigrate = st && strcmp(st, "postmigrate") == 0;
    set_state(vm, next);
    if (vm->postmigrate)
        snprintf(vm->reason, sizeof(vm->reason),
                 "QEMU is postmigrate: a live migration moved the VM's state to another host");
    else
        vm->reason[0] = '\0';
    if (was_attaching)
        events_add(vm->set->events, vm->spec.name, "vm.attached", "re-attached to QEMU pid %d (%s)",
                   vm->pid, st ? st : "?");
    else
        events_add(vm->set->events, vm->spec.name, "vm.started", "QEMU pid %d, accel %s", vm->pid,
                   vm->set->cfg.accel);
    uv_timer_stop(&vm->timer);
    uv_timer_start(&vm->poll, drain_console_timer, 0, vm->set->cfg.console_poll_ms);
    vm__notify(vm, 0, NULL);
}

static void on_migrate_incoming(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    if (status == -ECANCELED)
        return;
    struct vm *vm = d;
    if (status < 0) {
        char why[FERR_MSG_MAX];
        snprintf(why, sizeof(why), "migrate-incoming %.120s: %.300s", vm->incoming_uri,
                 err ? err : ferr_str(status));
        struct ferr e;
        ferr_set(&e, FERR_QEMU, "%s", why);
        vm__notify(vm, FERR_QEMU, &e);
        fail_and_kill(vm, why);
        return;
    }
    vm__notify(vm, 0, NULL);
}

static void on_incoming_caps(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct vm *vm = d;
    if (status < 0 && status != -ECANCELED)
        log_warn("vm %s: migrate-set-capabilities postcopy-ram: %s", vm->spec.name,
                 err ? err : ferr_str(status)); /* the source's post-copy then fails */
}

static void incoming_listen(struct vm *vm)
{
    json_t *args = json_pack("{s:s}", "uri", vm->incoming_uri);
    qmp_conn_execute(vm->qmp, "migrate-incoming", args, on_migrate_incoming, vm);
}

/* The set-up's failure: QEMU never listens, and goes. */
static void incoming_tls_fail(struct vm *vm, const char *cmd, const char *err, int status)
{
    char why[FERR_MSG_MAX];
    snprintf(why, sizeof(why), "encrypted migration set-up, %s: %.300s", cmd,
             err ? err : ferr_str(status));
    struct ferr e;
    ferr_set(&e, FERR_QEMU, "%s", why);
    vm__notify(vm, FERR_QEMU, &e);
    fail_and_kill(vm, why);
}

static void on_incoming_tls_object(struct qmp_conn *c, int status, json_t *r, const char *err,
                                   void *d)
{
    struct vm *vm = d;
    if (status < 0 && status != -ECANCELED && !vm->incoming_tls_failed) {
        vm->incoming_tls_failed = true;
        incoming_tls_fail(vm, "object-add", err, status);
    }
}

/* The TLS parameters are set: listen, unless an object of them was refused (answered
 * before this, QMP answers in order). */
static void on_incoming_tls_params(struct qmp_conn *c, int status, json_t *r, const char *err,
                                   void *d)
{
    struct vm *vm = d;
    if (status == -ECANCELED || vm->incoming_tls_failed)
        return;
    if (status < 0) {
        vm->incoming_tls_failed = true;
        incoming_tls_fail(vm, "migrate-set-parameters", err, status);
        return;
    }
    incoming_listen(vm);
}

/*
 * Destination of an encrypted migration (QEMU's docs/system/tls.rst and the QMP schema's
 * MigrationParameters tls-creds, tls-authz): a PSK server credential over the key file and an
 * authz-simple object that admits only this migration's identity, named in the migration
 * parameters before migrate-incoming, which is sent only once they are set: QEMU then never
 * accepts a plain stream, nor a TLS one with another key or identity.
 */
static void incoming_tls_setup(struct vm *vm)
{
    char dir[700];
    vm->incoming_tls_failed = false;
    if (vm_mig_tls_dir(vm, true, dir, sizeof(dir)) < 0) {
        incoming_tls_fail(vm, "key directory", "path too long", FERR_INVALID);
        return;
    }
    qmp_conn_execute(vm->qmp, "object-add",
                     json_pack("{s:s, s:s, s:s, s:s}", "qom-type", "tls-creds-psk", "id",
                               VM_MIG_TLS_CREDS_ID, "endpoint", "server", "dir", dir),
                     on_incoming_tls_object, vm);
    qmp_conn_execute(vm->qmp, "object-add",
                     json_pack("{s:s, s:s, s:s}", "qom-type", "authz-simple", "id",
                               VM_MIG_TLS_AUTHZ_ID, "identity", vm->incoming_tls_user),
                     on_incoming_tls_object, vm);
    qmp_conn_execute(
        vm->qmp, "migrate-set-parameters",
        json_pack("{s:s, s:s}", "tls-creds", VM_MIG_TLS_CREDS_ID, "tls-authz", VM_MIG_TLS_AUTHZ_ID),
        on_incoming_tls_params, vm);
}

/* Destination: QEMU waits in "inmigrate"; make it listen where the source will send. A
 * post-copy migration needs postcopy-ram on both sides before it starts (QEMU's
 * docs/devel/migration.rst); QMP answers in order, so both commands go out at once. */
static void incoming_ready(struct vm *vm)
{
    set_state(vm, VM_INCOMING);
    vm->reason[0] = '\0';
    events_add(vm->set->events, vm->spec.name, "vm.incoming", "QEMU pid %d waits for %s", vm->pid,
               vm->incoming_uri);
    uv_timer_stop(&vm->timer);
    uv_timer_start(&vm->poll, drain_console_timer, 0, vm->set->cfg.console_poll_ms);
    bool tls = vm->incoming_tls_user[0] != '\0';
    if (vm->incoming_postcopy || tls) {
        /* "events": QEMU says when the incoming migration is over (incoming_migration_event). */
        json_t *caps = json_pack("{s:[]}", "capabilities");
        json_t *list = json_object_get(caps, "capabilities");
        if (vm->incoming_postcopy)
            json_array_append_new(
                list, json_pack("{s:s, s:b}", "capability", "postcopy-ram", "state", 1));
        if (tls)
            json_array_append_new(list,
                                  json_pack("{s:s, s:b}", "capability", "events", "state", 1));
        qmp_conn_execute(vm->qmp, "migrate-set-capabilities", caps, on_incoming_caps, vm);
    }
    if (tls)
        incoming_tls_setup(vm);
    else
        incoming_listen(vm);
}

static void on_qmp_ready(struct qmp_conn *c, void *user)
{
    struct vm *vm = user;
    vm->qmp_ready = true;
    /* A new connection: requests of the last one were cancelled without their answers. */
    vm->console_busy = vm->stats_busy = false;
    qmp_conn_execute(c, "query-status", NULL, on_status, vm);
}

static void connect_qmp(struct vm *vm)
{
    struct qmp_callbacks cb = {
        .on_ready = on_qmp_ready,
        .on_event = on_qmp_event,
        .on_closed = on_qmp_closed,
        .data = vm,
    };
    char path[700];
    struct ferr e = {0};
    snprintf(path, sizeof(path), "%s/qmp.sock", vm->run);
    if (qmp_conn_open(vm->set->loop, path, &cb, &vm->qmp, &e) < 0)
        fail_and_kill(vm, e.msg);
}

/* ---- console and counters ---- */

static void on_ringbuf(struct qmp_conn *c, int status, json_t *result, const char *err, void *d)
{
    if (status == -ECANCELED)
        return;
    struct vm *vm = d;
    vm->console_busy = false;
    if (status < 0 || !json_is_string(result))
        return;
    size_t n = json_string_length(result);
    console_append(vm->console, json_string_value(result), n);
    /* A full chunk means more is waiting in QEMU's ring. */
    if (n >= CONSOLE_CHUNK / 2)
        drain_console(vm);
}

static uint64_t jint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void on_blockstats(struct qmp_conn *c, int status, json_t *result, const char *err, void *d)
{
    if (status == -ECANCELED)
        return;
    struct vm *vm = d;
    vm->stats_busy = false;
    if (status < 0 || !json_is_array(result))
        return;
    size_t i;
    json_t *dev;
    json_array_foreach(result, i, dev)
    {
        const char *node = json_string_value(json_object_get(dev, "node-name"));
        const char *qdev = json_string_value(json_object_get(dev, "qdev"));
        json_t *st = json_object_get(dev, "stats");
        for (unsigned k = 0; k < vm->spec.ndisks && json_is_object(st); k++) {
            char want[16], wantdev[24];
            snprintf(want, sizeof(want), "disk%u", k);
            snprintf(wantdev, sizeof(wantdev), "disk%u-dev", k);
            if (!((node && strcmp(node, want) == 0) || (qdev && strstr(qdev, wantdev))))
                continue;
            snprintf(vm->stats.disks[k].name, sizeof(vm->stats.disks[k].name), "%s", want);
            vm->stats.disks[k].rd_bytes = jint(st, "rd_bytes");
            vm->stats.disks[k].wr_bytes = jint(st, "wr_bytes");
            vm->stats.disks[k].rd_ops = jint(st, "rd_operations");
            vm->stats.disks[k].wr_ops = jint(st, "wr_operations");
        }
    }
    vm->stats.ndisks = vm->spec.ndisks;
}

static void drain_console(struct vm *vm)
{
    if (!vm->qmp || !vm->qmp_ready)
        return;
    if (!vm->console_busy) {
        json_t *args = json_pack("{s:s, s:i, s:s}", "device", "console", "size", CONSOLE_CHUNK,
                                 "format", "utf8");
        if (qmp_conn_execute(vm->qmp, "ringbuf-read", args, on_ringbuf, vm) == 0)
            vm->console_busy = true;
    }
    uint64_t now = now_mono_ms();
    /* One at a time: while QEMU's main loop is stuck (a post-copy waiting for pages) queued
     * requests would fill its monitor's queue (8), which then stops reading, out-of-band
     * commands too. */
    if (now - vm->last_stats_ms >= STATS_EVERY_MS && !vm->stats_busy) {
        vm->last_stats_ms = now;
        if (qmp_conn_execute(vm->qmp, "query-blockstats", NULL, on_blockstats, vm) == 0)
            vm->stats_busy = true;
    }
}

static void drain_console_timer(uv_timer_t *t)
{
    drain_console(t->data);
}

/* ---- start ---- */

/* How long QEMU may take to answer QMP. A preallocating destination first touches all guest
 * memory: allow 2 s per GiB on top (measured here: ~0.6 s per 256 MiB of fresh host memory). */
static uint64_t start_limit_ms(const struct vm *vm)
{
    uint64_t ms = vm->set->cfg.start_timeout_ms;
    if (vm->incoming && vm->set->cfg.incoming_prealloc)
        ms += vm->spec.memory_mib * 2;
    return ms;
}

static void start_timeout(uv_timer_t *t)
{
    struct vm *vm = t->data;
    if (vm->state != VM_STARTING)
        return;
    fail_and_kill(vm, vm->attaching ? "QEMU did not answer on QMP after the ferryd restart"
                                    : "QEMU did not answer on QMP in time");
}

struct start_work {
    uv_work_t req;
    struct vm *vm;
    struct vm_spec spec;
    char qemu_img[256];
    struct qemu_user user;
    uint64_t bytes[VM_MAX_DISKS];
    bool vpc[VM_MAX_DISKS];
    struct host_info host;
    bool incoming, vars_made;
    bool may_redirect; /* vm_config.disk_redirect is set: a dynamic disk may be served over NBD */
    int status;
    struct ferr e;
};

/* Thread pool: every disk's metadata checked (vhd_info_read: a damaged, differencing or foreign
 * file never reaches QEMU), and host memory. Touches only sw. A fixed VHD is attached as raw,
 * a dynamic one with QEMU's vpc driver. */
static void start_work(uv_work_t *req)
{
    struct start_work *sw = req->data;
    for (unsigned i = 0; i < sw->spec.ndisks; i++) {
        struct vhd_info info;
        sw->status = vhd_info_read(sw->qemu_img, sw->spec.disks[i].path, &info, &sw->e);
        if (sw->status < 0) {
            ferr_prefix(&sw->e, "disks[%u]", i);
            return;
        }
        sw->bytes[i] = info.virtual_size;
        sw->vpc[i] = strcmp(info.subformat, "dynamic") == 0;
        /* A dynamic disk that may be redirected is given in spawn_qemu, once that is known: a
         * redirected one is the volume coordinator's storage daemon's alone. */
        if (sw->vpc[i] && sw->may_redirect)
            continue;
        if ((sw->status = qemu_user_give_file(&sw->user, sw->spec.disks[i].path, &sw->e)) < 0) {
            ferr_prefix(&sw->e, "disks[%u]", i);
            return;
        }
    }
    if (sw->spec.firmware == VM_FIRMWARE_EFI) { /* OVMF here, the variable store made once */
        char code[VM_PATH_MAX];
        if ((sw->status = firmware_find(FIRMWARE_DIR, code, sizeof(code), &sw->e)) < 0 ||
            (sw->status = firmware_vars_ready(FIRMWARE_DIR, sw->spec.efi_vars, !sw->incoming,
                                              &sw->vars_made, &sw->e)) < 0)
            return;
        /* QEMU writes the variables as its user, like a disk */
        if ((sw->status = qemu_user_give_file(&sw->user, sw->spec.efi_vars, &sw->e)) < 0) {
            ferr_prefix(&sw->e, "efi_vars");
            return;
        }
    }
    sw->status = host_info_read(&sw->host, &sw->e);
}

_Static_assert(VM_MAX_DISKS <= QEMU_MAX_DISKS && VM_MAX_NICS <= QEMU_MAX_NICS &&
                   VM_PATH_MAX <= QEMU_PATH_MAX && VM_CMDLINE_MAX <= QEMU_APPEND_MAX &&
                   VM_NAME_MAX <= QEMU_NAME_MAX && VM_MACHINE_MAX <= QEMU_NAME_MAX &&
                   VM_MAX_VCPUS <= QEMU_MAX_VCPUS && VM_MIN_MEMORY_MIB >= QEMU_MIN_MEMORY_MIB,
               "every VM spec must fit the QEMU command line builder");
_Static_assert((int)VM_BUS_VIRTIO == (int)QEMU_BUS_VIRTIO &&
                   (int)VM_BUS_SCSI == (int)QEMU_BUS_SCSI &&
                   (int)VM_BUS_SATA == (int)QEMU_BUS_SATA && (int)VM_BUS_IDE == (int)QEMU_BUS_IDE &&
                   (int)VM_NIC_E1000 == (int)QEMU_NIC_E1000 &&
                   (int)VM_NIC_VMXNET3 == (int)QEMU_NIC_VMXNET3 &&
                   VM_MAX_IDE_DISKS == QEMU_MAX_IDE_DISKS &&
                   VM_MAX_SATA_DISKS == QEMU_MAX_SATA_DISKS &&
                   VM_MAX_LSI_DISKS == QEMU_MAX_LSI_DISKS,
               "the spec's buses and models are the command line's");

static void close_fds(const int *fds, unsigned n)
{
    for (unsigned k = 0; k < n; k++)
        close(fds[k]);
}

static int spawn_qemu(struct vm *vm, struct ferr *e)
{
    const struct vm_spec *s = &vm->spec;
    struct qemu_disk disks[VM_MAX_DISKS];
    struct qemu_nic nics[VM_MAX_NICS];
    static char exports[VM_MAX_DISKS][VM_PATH_MAX]; /* loop thread only */
    char socks[VM_MAX_DISKS][700];
    if (redirect_disks(vm, vm->disk_vpc, false, exports, e) < 0)
        return FERR_UNAVAIL;
    for (unsigned i = 0; i < s->ndisks; i++) {
        disks[i] = (struct qemu_disk){s->disks[i].path,
                                      vm->disk_bytes[i],
                                      s->disks[i].readonly,
                                      vm->disk_vpc[i] ? QEMU_DISK_VPC : QEMU_DISK_FIXED_VHD,
                                      NULL,
                                      (enum qemu_disk_bus)s->disks[i].bus};
        if (vm->disk_nbd[i]) {
            nbd_sock(vm, i, socks[i], sizeof(socks[i]));
            disks[i].path = socks[i];
            disks[i].format = QEMU_DISK_NBD;
            disks[i].export = exports[i];
        } else if (vm->disk_vpc[i] && vm->set->cfg.disk_redirect &&
                   qemu_user_give_file(&vm->user, s->disks[i].path, e) < 0) {
            /* not redirected after all (start_work left it): QEMU opens it itself */
            ferr_prefix(e, "disks[%u]", i);
            unredirect_disks(vm);
            return e->code;
        }
    }
    /* A QEMU that is not root cannot open its taps: ferryd hands them over open, as 3, 4, ... */
    const struct qemu_user *user = &vm->user;
    int tapfd[VM_MAX_NICS];
    unsigned ntapfd = 0;
    for (unsigned i = 0; i < s->nnics; i++) {
        nics[i] = (struct qemu_nic){.tap = vm->taps[i],
                                    .mac = s->nics[i].mac,
                                    .model = (enum qemu_nic_model)s->nics[i].model};
        if (!user->drop)
            continue;
        if (tap_open(vm->taps[i], &tapfd[ntapfd], e) < 0) {
            ferr_prefix(e, "nics[%u]", i);
            close_fds(tapfd, ntapfd);
            unredirect_disks(vm);
            return e->code;
        }
        nics[i].fd = 3 + (int)ntapfd++;
    }
    struct qemu_machine m = {
        .name = s->name,
        .type = s->machine,
        .sockets = s->sockets,
        .cores = s->cores,
        .threads = s->threads,
        .memory_mib = s->memory_mib,
        .ndisks = s->ndisks,
        .disks = disks,
        .nnics = s->nnics,
        .nics = nics,
        .kernel = s->boot.kernel,
        .initrd = s->boot.initrd,
        .append = s->boot.cmdline,
        .vga = s->display == VM_DISPLAY_VGA,
        .scsi = s->scsi_controller == VM_SCSI_LSI ? QEMU_SCSI_LSI : QEMU_SCSI_PVSCSI,
        .efi_code = s->firmware == VM_FIRMWARE_EFI ? FIRMWARE_DIR "/" FIRMWARE_CODE : NULL,
        .efi_vars = s->firmware == VM_FIRMWARE_EFI ? s->efi_vars : NULL,
    };
    struct qemu_launch l = {
        .m = &m,
        .qemu_binary = vm->set->cfg.qemu_binary,
        .accel = vm->set->cfg.accel,
        .run_dir = vm->run,
        .incoming = vm->incoming ? "defer" : NULL,
        .prealloc = vm->incoming && vm->set->cfg.incoming_prealloc,
        .console_input = vm->set->cfg.console_input,
        .sandbox = vm->set->cfg.qemu_sandbox,
    };
    char **argv = NULL;
    int rc = qemu_argv_build(&l, &argv, e);
    if (rc < 0) {
        close_fds(tapfd, ntapfd);
        unredirect_disks(vm);
        return rc;
    }
    char logp[700];
    snprintf(logp, sizeof(logp), "%s/qemu.log", vm->run);
    struct qemu_spawn_opts so = {.user = user, .fds = tapfd, .nfds = ntapfd};
    rc = qemu_proc_spawn(vm->set->loop, argv, logp, &so, on_qemu_exit, vm, &vm->qemu, e);
    close_fds(tapfd, ntapfd); /* QEMU has its copies */
    if (rc == 0) {
        vm->pid = qemu_proc_pid(vm->qemu);
        log_info("vm %s: QEMU pid %d started", vm->spec.name, vm->pid);
    } else {
        unredirect_disks(vm);
    }
    qemu_argv_free(argv);
    return rc;
}

static void start_fail(struct vm *vm, struct ferr *e)
{
    cleanup_runtime(vm);
    set_state(vm, VM_FAILED);
    snprintf(vm->reason, sizeof(vm->reason), "%s", e->msg);
    events_add(vm->set->events, vm->spec.name, "vm.failed", "%s", e->msg);
    vm__notify(vm, e->code ? e->code : FERR_INTERNAL, e);
}

/* The guest's first packet is watched from now: the first tap's rx (from the host's side: what
 * the guest sent) above what it counts now. */
static void net_watch_start(struct vm *vm)
{
    struct tap_stats ts;
    vm->net_ms = 0;
    vm->net_watch = vm->spec.nnics > 0 && tap_stats_read(vm->taps[0], &ts, NULL) == 0;
    vm->net_base = vm->net_watch ? ts.rx_packets : 0;
}

static void start_after_work(uv_work_t *req, int status)
{
    struct start_work *sw = req->data;
    struct vm *vm = sw->vm;
    struct ferr *e = &sw->e;
    if (sw->status < 0)
        goto fail;
    if (sw->host.mem_avail_mib && vm->spec.memory_mib > sw->host.mem_avail_mib) {
        ferr_set(
            e, FERR_LIMIT, "memory_mib: %llu MiB wanted but the host has only %llu MiB available",
            (unsigned long long)vm->spec.memory_mib, (unsigned long long)sw->host.mem_avail_mib);
        goto fail;
    }
    if (sw->vars_made)
        log_info("vm %s: EFI variable store %s made from %s/%s", vm->spec.name, vm->spec.efi_vars,
                 FIRMWARE_DIR, FIRMWARE_VARS);
    memcpy(vm->disk_bytes, sw->bytes, sizeof(vm->disk_bytes));
    memcpy(vm->disk_vpc, sw->vpc, sizeof(vm->disk_vpc));
    if (run_dir_ready(vm, e) < 0)
        goto fail;
    for (unsigned i = 0; i < vm->spec.nnics; i++) {
        tap_name_for(vm->spec.name, i, vm->taps[i]);
        if (tap_create(vm->taps[i], vm->spec.nics[i].bridge, e) < 0) {
            ferr_prefix(e, "nics[%u]", i);
            goto fail;
        }
    }
    if (spawn_qemu(vm, e) < 0)
        goto fail;
    vm->deadline_ms = now_mono_ms() + start_limit_ms(vm);
    vm->started_ms = qemu_proc_started_ms(vm->qemu);
    net_watch_start(vm);
    uv_timer_start(&vm->poll, start_timeout, start_limit_ms(vm), 0);
    uv_timer_start(&vm->timer, connect_qmp_timer, QMP_RETRY_MS, 0);
    free(sw);
    return;
fail:
    ferr_prefix(e, "start %s", vm->spec.name);
    start_fail(vm, e);
    free(sw);
}

int vm_may_start(const struct vm *vm, struct ferr *e)
{
    return decide(vm, VM_ACT_START, e) == VMSTATE_REFUSE ? FERR_STATE : 0;
}

int vm_start(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    if (decide(vm, VM_ACT_START, e) == VMSTATE_REFUSE)
        return FERR_STATE;
    /* Two VMs whose names hash to one uid (made at once on two nodes, say) never run side by
     * side here: each could reach the other's files and process. */
    for (const struct vm *o = vm->set->vms; o; o = o->next)
        if (o != vm && o->qemu && vmset_uid_clash(vm->set, vm->spec.name, o->spec.name, e) < 0)
            return e->code;
    struct start_work *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return ferr_set(e, -ENOMEM, "%s: out of memory", vm->spec.name);
    int rc = add_waiter(vm, cb, data, e);
    if (rc < 0) {
        free(sw);
        return rc;
    }
    sw->vm = vm;
    sw->spec = vm->spec;
    sw->incoming = vm->incoming;
    snprintf(sw->qemu_img, sizeof(sw->qemu_img), "%s", vm->set->cfg.qemu_img);
    sw->user = vm->user;
    sw->may_redirect = vm->set->cfg.disk_redirect != NULL;
    sw->req.data = sw;
    set_state(vm, VM_STARTING);
    vm->reason[0] = '\0';
    vm->stop_requested = vm->guest_shutdown = vm->fail_pending = vm->attaching = false;
    uv_queue_work(vm->set->loop, &sw->req, start_work, start_after_work);
    return 0;
}

/* ---- stop, kill, pause, resume ---- */

/* SIGKILL to the VM's QEMU, if one is watched (never to a pid that may have been recycled);
 * qemu_gone() follows when it is gone. */
static void kill_qemu(struct vm *vm)
{
    if (vm->qemu)
        qemu_proc_signal(vm->qemu, SIGKILL);
}

static void stop_deadline(uv_timer_t *t)
{
    struct vm *vm = t->data;
    if (vm->state != VM_STOPPING || vm->pid <= 0)
        return;
    log_info("vm %s: no power-off within the timeout; killing QEMU", vm->spec.name);
    events_add(vm->set->events, vm->spec.name, "vm.killed", "guest did not power off in time");
    vm->killed_after_timeout = true;
    kill_qemu(vm);
}

static void on_powerdown(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    if (status == -ECANCELED)
        return;
    struct vm *vm = d;
    if (status < 0 && vm->pid > 0 && vm->state == VM_STOPPING) {
        log_warn("vm %s: system_powerdown failed (%s); killing QEMU", vm->spec.name, err);
        kill_qemu(vm);
    }
}

int vm_stop(struct vm *vm, unsigned timeout_s, vm_done_cb cb, void *data, struct ferr *e)
{
    enum vmstate_do how = decide(vm, VM_ACT_STOP, e);
    if (how == VMSTATE_REFUSE)
        return FERR_STATE;
    int rc = add_waiter(vm, cb, data, e);
    if (rc < 0)
        return rc;
    if (how == VMSTATE_JOIN)
        return 0; /* joins the stop already under way */
    set_state(vm, VM_STOPPING);
    vm->stop_requested = true;
    if (how == VMSTATE_KILL) {
        kill_qemu(vm);
        return 0;
    }
    qmp_conn_execute(vm->qmp, "system_powerdown", NULL, on_powerdown, vm);
    uv_timer_start(&vm->timer, stop_deadline, (uint64_t)timeout_s * 1000, 0);
    return 0;
}

/* The start of kill and quit: a QEMU to end, cb waiting for it, the VM stopping. */
static int begin_end(struct vm *vm, enum vm_action a, vm_done_cb cb, void *data, struct ferr *e)
{
    if (decide(vm, a, e) == VMSTATE_REFUSE)
        return FERR_STATE;
    int rc = add_waiter(vm, cb, data, e);
    if (rc < 0)
        return rc;
    set_state(vm, VM_STOPPING);
    vm->stop_requested = true;
    return 0;
}

int vm_kill(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    int rc = begin_end(vm, VM_ACT_KILL, cb, data, e);
    if (rc < 0)
        return rc;
    kill_qemu(vm);
    return 0;
}

struct pr_ctx {
    struct vm *vm;
    bool pause;
};

static void on_pause_reply(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct pr_ctx *pc = d;
    struct vm *vm = pc->vm;
    bool pause = pc->pause;
    free(pc);
    if (status == -ECANCELED)
        return;
    if (status < 0) {
        struct ferr e;
        ferr_set(&e, FERR_QEMU, "%s %s: %.400s", pause ? "pause" : "resume", vm->spec.name,
                 err ? err : ferr_str(status));
        vm__notify(vm, e.code, &e);
        return;
    }
    if (vm->state == VM_RUNNING || vm->state == VM_PAUSED) {
        if (vm->state != (pause ? VM_PAUSED : VM_RUNNING))
            events_add(vm->set->events, vm->spec.name, pause ? "vm.paused" : "vm.resumed",
                       "by request");
        set_state(vm, pause ? VM_PAUSED : VM_RUNNING);
    }
    vm__notify(vm, 0, NULL);
}

static int pause_resume(struct vm *vm, bool pause, vm_done_cb cb, void *data, struct ferr *e)
{
    if (decide(vm, pause ? VM_ACT_PAUSE : VM_ACT_RESUME, e) == VMSTATE_REFUSE)
        return FERR_STATE;
    struct pr_ctx *pc = malloc(sizeof(*pc));
    if (!pc)
        return ferr_set(e, -ENOMEM, "out of memory");
    pc->vm = vm;
    pc->pause = pause;
    int rc = add_waiter(vm, cb, data, e);
    if (rc < 0) {
        free(pc);
        return rc;
    }
    rc = qmp_conn_execute(vm->qmp, pause ? "stop" : "cont", NULL, on_pause_reply, pc);
    if (rc < 0) {
        free(pc);
        ferr_set(e, rc, "%s: QMP is closing", vm->spec.name);
        vm__notify(vm, rc, e);
    }
    return 0;
}

int vm_pause(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    return pause_resume(vm, true, cb, data, e);
}

int vm_resume(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    return pause_resume(vm, false, cb, data, e);
}

/* ---- attach after a ferryd restart ---- */

void vm__attach(struct vm *vm)
{
    char p[700];
    struct ferr e = {0};
    snprintf(p, sizeof(p), "%s/qemu.pid", vm->run);
    int rc = qemu_proc_adopt(vm->set->loop, p, vm->spec.name, on_qemu_exit, vm, &vm->qemu, &e);
    if (rc == FERR_NOTFOUND) {
        /* Not running. A QEMU that exited while ferryd was down unlinked its pid file itself
         * (an incoming QEMU whose migration failed, say), but the taps ferryd made for it
         * stay behind: remove them (deleting an absent tap is no error). */
        struct ferr te = {0};
        for (unsigned i = 0; i < vm->spec.nnics; i++) {
            tap_name_for(vm->spec.name, i, vm->taps[i]);
            if (tap_delete(vm->taps[i], &te) < 0)
                log_warn("vm %s: %s", vm->spec.name, te.msg);
        }
        return;
    }
    for (unsigned i = 0; i < vm->spec.nnics; i++)
        tap_name_for(vm->spec.name, i, vm->taps[i]);
    if (rc < 0) {
        cleanup_runtime(vm);
        snprintf(vm->reason, sizeof(vm->reason), "QEMU exited while ferryd was not running");
        set_state(vm, VM_FAILED);
        events_add(vm->set->events, vm->spec.name, "vm.failed", "%s", vm->reason);
        return;
    }
    vm->pid = qemu_proc_pid(vm->qemu);
    vm->started_ms = qemu_proc_started_ms(vm->qemu);
    struct qemu_user running;
    if (qemu_user_of_pid(vm->pid, &running, &e) == 0) {
        if (running.uid != vm->user.uid)
            log_info("vm %s: its QEMU (pid %d) runs as uid %u, not the VM's own %u: it keeps "
                     "it until it stops or migrates",
                     vm->spec.name, vm->pid, (unsigned)running.uid, (unsigned)vm->user.uid);
        vm->user = running;
    } else {
        log_warn("vm %s: %s", vm->spec.name, e.msg);
    }
    vm->net_ms = 0; /* long up, most likely; its owner's record may know when (fleet.c) */
    vm->net_watch = false;
    /* How its disks were attached is on QEMU's command line (qemu/cmdline.c's node names). */
    bool nbd[VM_MAX_DISKS] = {false};
    for (unsigned i = 0; i < vm->spec.ndisks; i++) {
        char arg[800], sock[700];
        snprintf(arg, sizeof(arg), "driver=vpc,file=disk%u-file,", i);
        vm->disk_vpc[i] = qemu_pid_has_arg(vm->pid, arg);
        nbd_sock(vm, i, sock, sizeof(sock));
        snprintf(arg, sizeof(arg), "driver=nbd,server.type=unix,server.path=%s,", sock);
        nbd[i] = qemu_pid_has_arg(vm->pid, arg);
        vm->disk_vpc[i] |= nbd[i];
    }
    /* Its redirected disks' relays died with the previous ferryd: QEMU's NBD client is
     * re-making its connections to the same sockets. */
    static char exports[VM_MAX_DISKS][VM_PATH_MAX]; /* loop thread only */
    struct ferr re = {0};
    if (redirect_disks(vm, nbd, true, exports, &re) < 0)
        log_warn("vm %s: its redirected disks wait: %s", vm->spec.name, re.msg);
    set_state(vm, VM_STARTING);
    vm->attaching = true;
    vm->deadline_ms = now_mono_ms() + start_limit_ms(vm);
    uv_timer_start(&vm->poll, start_timeout, start_limit_ms(vm), 0);
    connect_qmp(vm);
}

/* ---- object lifetime ---- */

int vm__new(struct vmset *set, const struct vm_spec *spec, uint64_t created_ms, struct vm **out,
            struct ferr *e)
{
    struct vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return ferr_set(e, -ENOMEM, "out of memory");
    vm->set = set;
    vm->spec = *spec;
    vm->created_ms = created_ms;
    qemu_user_for_vm(&set->cfg.qemu_user, spec->name, &vm->user);
    if (fmt_path(vm->dir, sizeof(vm->dir), "%s/vms/%s", set->cfg.state_dir, spec->name) < 0 ||
        fmt_path(vm->run, sizeof(vm->run), "%s/%s", set->cfg.run_dir, spec->name) < 0) {
        free(vm);
        return ferr_set(e, FERR_INVALID, "name: state or run path for %s is too long", spec->name);
    }
    char cpath[1300];
    snprintf(cpath, sizeof(cpath), "%s/console.log", vm->dir);
    int rc = console_open(cpath, CONSOLE_RING, CONSOLE_FILE_MAX, &vm->console, e);
    if (rc < 0) {
        free(vm);
        return rc;
    }
    uv_timer_init(set->loop, &vm->timer);
    uv_timer_init(set->loop, &vm->poll);
    vm->timer.data = vm;
    vm->poll.data = vm;
    vm->stats.nnics = spec->nnics;
    *out = vm;
    return 0;
}

static void free_now(struct vm *vm)
{
    console_close(vm->console);
    void (*fn)(struct vmset *) = vm->on_freed;
    struct vmset *set = vm->set;
    struct vm_waiter *w = vm->waiters;
    while (w) {
        struct vm_waiter *n = w->next;
        free(w);
        w = n;
    }
    free(vm);
    if (fn)
        fn(set);
}

/* Every close callback of a VM's handles ends here; the VM is freed after the last one once
 * vm__release asked for it. */
static void handle_closed(uv_handle_t *h)
{
    struct vm *vm = h->data;
    vm->closing--;
    if (vm->releasing && vm->closing == 0)
        free_now(vm);
}

void vm__release(struct vm *vm, void (*on_freed)(struct vmset *set))
{
    if (vm->qmp) {
        qmp_conn_close(vm->qmp);
        vm->qmp = NULL;
    }
    vm->on_freed = on_freed;
    vm->releasing = true;
    unredirect_disks(vm); /* QEMU keeps running and reconnects to the next ferryd's relay */
    if (vm->qemu) {
        /* QEMU runs on as its own session and is adopted again later. */
        qemu_proc_release(vm->qemu);
        vm->qemu = NULL;
    }
    vm->closing += 2;
    uv_close((uv_handle_t *)&vm->timer, handle_closed);
    uv_close((uv_handle_t *)&vm->poll, handle_closed);
}

/* ---- views ---- */

static double proc_cpu_seconds(int pid)
{
    char p[64], *text = NULL;
    if (pid <= 0)
        return 0;
    snprintf(p, sizeof(p), "/proc/%d/stat", pid);
    if (file_read_all(p, 4096, &text, NULL, NULL) < 0)
        return 0;
    double s = 0;
    char *rp = strrchr(text, ')');
    unsigned long ut = 0, st = 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    free(text);
    return s;
}

bool vm_net_poll(struct vm *vm)
{
    if (!vm->net_watch || !has_qemu(vm))
        return false;
    uint64_t now = now_wall_ms();
    struct tap_stats ts;
    if (now - vm->started_ms > VM_NET_WATCH_MS || tap_stats_read(vm->taps[0], &ts, NULL) < 0) {
        vm->net_watch = false;
        return false;
    }
    if (ts.rx_packets <= vm->net_base)
        return false;
    vm->net_ms = now;
    vm->net_watch = false;
    return true;
}

uint64_t vm_net_ms(const struct vm *vm)
{
    return has_qemu(vm) ? vm->net_ms : 0;
}

void vm_stats_get(const struct vm *vm, struct vm_stats *out)
{
    *out = vm->stats;
    out->cpu_seconds = proc_cpu_seconds(vm->pid);
    out->nnics = 0;
    for (unsigned i = 0; i < vm->spec.nnics && vm->pid > 0; i++) {
        struct tap_stats ts;
        if (tap_stats_read(vm->taps[i], &ts, NULL) < 0)
            continue;
        unsigned k = out->nnics++;
        snprintf(out->nics[k].tap, sizeof(out->nics[k].tap), "%s", vm->taps[i]);
        /* The host's rx on the tap is what the guest sent. */
        out->nics[k].rx_bytes = ts.tx_bytes;
        out->nics[k].tx_bytes = ts.rx_bytes;
    }
}

json_t *vm_to_json(const struct vm *vm)
{
    json_t *taps = json_array();
    for (unsigned i = 0; i < vm->spec.nnics; i++) {
        char t[16];
        tap_name_for(vm->spec.name, i, t);
        json_array_append_new(taps, json_string(t));
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:i, s:s, s:i, s:I, s:I, s:I, s:I, s:o, s:f}", "name",
                     vm->spec.name, "state", vm_state_name(vm->state), "reason", vm->reason, "spec",
                     vm_spec_to_json(&vm->spec), "pid", has_qemu(vm) ? vm->pid : 0, "accel",
                     vm->set->cfg.accel, "vcpus", (int)vm_spec_vcpus(&vm->spec), "memory_mib",
                     (json_int_t)vm->spec.memory_mib, "created_ms", (json_int_t)vm->created_ms,
                     "started_ms", (json_int_t)(has_qemu(vm) ? vm->started_ms : 0), "net_ms",
                     (json_int_t)vm_net_ms(vm), "taps", taps, "qemu_cpu_s",
                     proc_cpu_seconds(has_qemu(vm) ? vm->pid : 0));
}

int vm_console_read(const struct vm *vm, uint64_t offset, size_t max, char **out, size_t *len,
                    uint64_t *from, uint64_t *start, uint64_t *end)
{
    *start = console_start(vm->console);
    *end = console_end(vm->console);
    if (offset == VM_CONSOLE_TAIL)
        offset = *end > max ? *end - max : 0;
    return console_read(vm->console, offset, max, out, len, from);
}

/* ---- live migration: the VM's side (src/migrate/ drives it) ---- */

int vm_console_input_path(const struct vm *vm, char *path, size_t size, struct ferr *e)
{
    struct stat st;
    if (vm->state == VM_STOPPED || vm->state == VM_FAILED)
        return ferr_set(e, FERR_STATE, "%s is %s: start it first (ferry vm start %s)",
                        vm->spec.name, vm_state_name(vm->state), vm->spec.name);
    if (fmt_path(path, size, "%s/console.sock", vm->run) < 0)
        return ferr_set(e, -ENAMETOOLONG, "%s: console socket path too long", vm->spec.name);
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return ferr_set(e, FERR_STATE,
                        "%s: its console takes no input (%s): its QEMU was started without an "
                        "input socket (QEMU before 10.0 has no hub chardev, or an older ferryd "
                        "started it; restart the VM)",
                        vm->spec.name,
                        vm->set->cfg.console_input ? "old QEMU process"
                                                   : "this host's QEMU is too old");
    return 0;
}

int vm_vnc_path(const struct vm *vm, char *path, size_t size, struct ferr *e)
{
    struct stat st;
    if (vm->spec.display != VM_DISPLAY_VGA)
        return ferr_set(e, FERR_STATE,
                        "%s has no display (its spec says \"display\": \"none\"; create it "
                        "with --display vga for a screen)",
                        vm->spec.name);
    if (vm->state == VM_STOPPED || vm->state == VM_FAILED)
        return ferr_set(e, FERR_STATE, "%s is %s: start it first (ferry vm start %s)",
                        vm->spec.name, vm_state_name(vm->state), vm->spec.name);
    if (fmt_path(path, size, "%s/vnc.sock", vm->run) < 0)
        return ferr_set(e, -ENAMETOOLONG, "%s: VNC socket path too long", vm->spec.name);
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return ferr_set(e, FERR_STATE,
                        "%s: its QEMU has no VNC socket (it was started before the VM had a "
                        "display: restart the VM)",
                        vm->spec.name);
    return 0;
}

void vm_console_append(struct vm *vm, const char *data, size_t len)
{
    console_append(vm->console, data, len);
}

bool vm_mig_tls_valid(const struct vm_mig_tls *t)
{
    size_t ulen = strnlen(t->user, sizeof(t->user));
    if (ulen == 0 || ulen > VM_MIG_TLS_USER_MAX || strlen(t->key) != VM_MIG_TLS_KEY_HEX)
        return false;
    for (size_t i = 0; i < ulen; i++)
        if (!((t->user[i] >= 'a' && t->user[i] <= 'z') ||
              (t->user[i] >= '0' && t->user[i] <= '9') || t->user[i] == '-'))
            return false;
    for (size_t i = 0; i < VM_MIG_TLS_KEY_HEX; i++)
        if (hex_value(t->key[i]) < 0 || (t->key[i] >= 'A' && t->key[i] <= 'F'))
            return false;
    return true;
}

int vm_mig_tls_dir(const struct vm *vm, bool incoming, char *out, size_t size)
{
    return fmt_path(out, size, "%s/%s", vm->run, incoming ? "mig-tls-in" : "mig-tls-out");
}

/* RFC 7919's ffdhe2048 group, a published constant: QEMU's PSK server credential loads DH
 * parameters from the key directory's dh-params.pem, and without one it generates fresh
 * ones, which took 0.5-1.7 s per object-add here (2 busy CPUs) against 1 ms with the file,
 * on the prepare's path. (TLS 1.3 negotiates its own groups; they serve TLS 1.2's DHE-PSK.) */
static const char ffdhe2048_pem[] =
    "-----BEGIN DH PARAMETERS-----\n"
    "MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz\n"
    "+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a\n"
    "87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7\n"
    "YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi\n"
    "7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD\n"
    "ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==\n"
    "-----END DH PARAMETERS-----\n";

int vm_mig_tls_write(const struct vm *vm, bool incoming, const struct vm_mig_tls *t, struct ferr *e)
{
    char dir[700], path[760], line[VM_MIG_TLS_USER_MAX + VM_MIG_TLS_KEY_HEX + 4];
    if (!vm_mig_tls_valid(t))
        return ferr_set(e, FERR_INVALID, "migration key: not a valid identity and key");
    if (vm_mig_tls_dir(vm, incoming, dir, sizeof(dir)) < 0 ||
        fmt_path(path, sizeof(path), "%s/keys.psk", dir) < 0)
        return ferr_set(e, -ENAMETOOLONG, "migration key: path too long");
    int rc = run_dir_ready(vm, e);
    if (rc == 0)
        rc = mkdir_p(dir, 0700, e);
    if (rc < 0)
        return rc;
    int n = snprintf(line, sizeof(line), "%s:%s\n", t->user, t->key);
    rc = file_write_atomic(path, line, (size_t)n, e); /* 0600 */
    explicit_bzero(line, sizeof(line));
    if (rc == 0 && incoming) {
        if (fmt_path(path, sizeof(path), "%s/dh-params.pem", dir) < 0)
            rc = ferr_set(e, -ENAMETOOLONG, "migration key: path too long");
        else
            rc = file_write_atomic(path, ffdhe2048_pem, sizeof(ffdhe2048_pem) - 1, e);
    }
    /* QEMU reads them (tls-creds-psk, at object-add and at each handshake) as its user. */
    const struct qemu_user *u = &vm->user;
    static const char *const names[] = {"keys.psk", "dh-params.pem"};
    for (unsigned i = 0; rc == 0 && i < (incoming ? 2u : 1u); i++)
        if ((rc = fmt_path(path, sizeof(path), "%s/%s", dir, names[i])) == 0)
            rc = qemu_user_give(u, path, 0600, e);
    if (rc == 0)
        rc = qemu_user_give(u, dir, 0700, e);
    if (rc < 0)
        rm_rf(dir);
    return rc;
}

void vm_mig_tls_remove(const struct vm *vm, bool incoming)
{
    char dir[700];
    if (vm_mig_tls_dir(vm, incoming, dir, sizeof(dir)) == 0 && rm_rf(dir) < 0)
        log_warn("vm %s: removing %s failed", vm->spec.name, dir);
}

int vm_start_incoming(struct vm *vm, const char *uri, bool postcopy, const struct vm_mig_tls *tls,
                      vm_done_cb cb, void *data, struct ferr *e)
{
    if (snprintf(vm->incoming_uri, sizeof(vm->incoming_uri), "%s", uri) >=
        (int)sizeof(vm->incoming_uri))
        return ferr_set(e, FERR_INVALID, "incoming uri too long");
    if (tls && !vm_mig_tls_valid(tls))
        return ferr_set(e, FERR_INVALID, "migration key: not a valid identity and key");
    int rc = vm_may_start(vm, e);
    if (rc < 0)
        return rc;
    if (tls && vm_mig_tls_write(vm, true, tls, e) < 0)
        return e->code;
    snprintf(vm->incoming_tls_user, sizeof(vm->incoming_tls_user), "%s", tls ? tls->user : "");
    vm->incoming = true;
    vm->incoming_postcopy = postcopy;
    rc = vm_start(vm, cb, data, e);
    if (rc < 0) {
        vm->incoming = false;
        vm->incoming_tls_user[0] = '\0';
        if (tls)
            vm_mig_tls_remove(vm, true);
    }
    return rc;
}

const char *vm_incoming_uri(const struct vm *vm)
{
    return vm->incoming_uri;
}

int vm_set_incoming_uri(struct vm *vm, const char *uri)
{
    if (strlen(uri) >= sizeof(vm->incoming_uri))
        return FERR_INVALID;
    snprintf(vm->incoming_uri, sizeof(vm->incoming_uri), "%s", uri);
    return 0;
}

static int qmp_call(struct vm *vm, const char *cmd, json_t *args, vm_qmp_cb cb, void *data,
                    bool oob, struct ferr *e)
{
    if (!vm->qmp || !vm->qmp_ready) {
        json_decref(args);
        return ferr_set(e, FERR_STATE, "%s: no QMP connection to its QEMU", vm->spec.name);
    }
    int rc = oob ? qmp_conn_execute_oob(vm->qmp, cmd, args, cb, data)
                 : qmp_conn_execute(vm->qmp, cmd, args, cb, data);
    if (rc < 0)
        return ferr_set(e, rc, "%s: QMP is closing", vm->spec.name);
    return 0;
}

int vm_qmp(struct vm *vm, const char *cmd, json_t *args, vm_qmp_cb cb, void *data, struct ferr *e)
{
    return qmp_call(vm, cmd, args, cb, data, false, e);
}

int vm_qmp_oob(struct vm *vm, const char *cmd, json_t *args, vm_qmp_cb cb, void *data,
               struct ferr *e)
{
    return qmp_call(vm, cmd, args, cb, data, true, e);
}

void vm_set_migrating(struct vm *vm, vm_event_fn fn, void *d)
{
    vm->mig_event = fn;
    vm->mig_data = d;
    vm->migrating_out = fn != NULL;
}

bool vm_can_migrate(const struct vm *vm, char *why, size_t size)
{
    if (vm->storage_moving) {
        snprintf(why, size, "a storage move of disks[%d] is under way (ferry vm storage-move)",
                 vm->storage_moving - 1);
        return false;
    }
    for (unsigned i = 0; i < vm->spec.ndisks; i++)
        if (vm->disk_vpc[i] && !vm->disk_nbd[i]) {
            snprintf(why, size,
                     "disks[%u] (%s) is a dynamic VHD outside the shared volumes, opened by "
                     "this QEMU's vpc driver, which does not support live migration; on a "
                     "volume (csv:VOLUME/FILE) its coordinator serves it and it migrates, or "
                     "make it fixed (ferry disk convert)",
                     i, vm->spec.disks[i].path);
            return false;
        }
    return true;
}

bool vm_storage_move_mark(struct vm *vm, int disk)
{
    if (disk >= 0 && vm->storage_moving)
        return false;
    vm->storage_moving = disk >= 0 ? disk + 1 : 0;
    return true;
}

int vm_storage_moving(const struct vm *vm)
{
    return vm->storage_moving - 1;
}

bool vm_disk_fixed(const struct vm *vm, unsigned i)
{
    return i < vm->spec.ndisks && !vm->disk_vpc[i];
}

bool vm_disk_redirected(const struct vm *vm, unsigned i)
{
    return i < vm->spec.ndisks && vm->disk_nbd[i];
}

bool vm_migrating(const struct vm *vm)
{
    return vm->migrating_out;
}

int vm_quit(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    int rc = begin_end(vm, VM_ACT_QUIT, cb, data, e);
    if (rc < 0)
        return rc;
    if (!vm->qmp_ready || qmp_conn_execute(vm->qmp, "quit", NULL, NULL, NULL) < 0)
        kill_qemu(vm);
    else
        uv_timer_start(&vm->timer, stop_deadline, 5000, 0);
    return 0;
}

int vm_pid(const struct vm *vm)
{
    return has_qemu(vm) ? vm->pid : 0;
}

uint64_t vm_started_ms(const struct vm *vm)
{
    return has_qemu(vm) ? vm->started_ms : 0;
}

const char *vm_accel(const struct vm *vm)
{
    return vm->set->cfg.accel;
}

const char *vm_state_dir(const struct vm *vm)
{
    return vm->dir;
}

struct vmset *vm_vmset(const struct vm *vm)
{
    return vm->set;
}
