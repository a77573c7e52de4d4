/* SPDX-License-Identifier: MIT */
/* The VMs of this host: their specs on disk, the QEMU process each runs in, its QMP
 * connection, console and state machine. */
#ifndef FERRY_VM_VM_H
#define FERRY_VM_VM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "host/events.h"
#include "qemu/user.h"
#include "vm/spec.h"

/*
 * States (QEMU's own run states are in the QMP schema, RunState; ours are coarser):
 *   stopped  --start-->  starting  --QMP ready-->  running <--pause/resume--> paused
 *   running/paused --stop--> stopping --QEMU exits--> stopped
 *   any state with a QEMU --QEMU dies / QMP breaks--> failed (reason kept) --start--> starting
 *   (migration destination) starting --QMP ready, migrate-incoming--> incoming --RESUME--> running
 */
enum vm_state {
    VM_STOPPED,
    VM_STARTING,
    VM_RUNNING,
    VM_PAUSED,
    VM_STOPPING,
    VM_FAILED,
    VM_INCOMING
};
#define VM_STATES (VM_INCOMING + 1) /* how many states there are */
const char *vm_state_name(enum vm_state s);

struct vm;
struct vmset;
struct qemu_machines;

struct vm_config {
    char state_dir[1024]; /* specs and console logs: STATE/vms/NAME/ */
    char run_dir[512];    /* per-VM runtime files: RUN/NAME/{qmp.sock,qemu.pid,qemu.log} */
    char qemu_binary[256];
    char qemu_img[256];
    char accel[8];             /* "kvm" or "tcg", already decided */
    unsigned console_poll_ms;  /* how often the console ring is drained */
    unsigned start_timeout_ms; /* QEMU must answer QMP within this */
    /* A migration destination's QEMU touches all guest memory before it listens (-mem-prealloc):
     * the stream then refaults memory the host just used (docs/architecture.md). */
    bool incoming_prealloc;
    /* QEMU can join the console ring and an input socket (10.0's hub chardev): the serial
     * console then takes input (vm_console_input_path). */
    bool console_input;
    /* The user QEMU runs as (qemu/user.h; without drop: ferryd's own, root) and QEMU's own
     * seccomp filter (-sandbox): before a QEMU starts ferryd gives that user the VM's run dir
     * RUN/NAME (0700), its disks, migration keys and NBD sockets, and opens its taps. */
    struct qemu_user qemu_user;
    bool qemu_sandbox;
    /* This host's QEMU machine types (borrowed; outlives the set): specs are checked against
     * them, and new VMs get the one "pc" stands for. NULL: not checked, not pinned. */
    const struct qemu_machines *machines;
    /* Called after any VM changed state (may be NULL); the cluster copy follows from it. */
    void (*on_change)(void *data);
    void *change_data;
    /* Redirected I/O (fleet/redirect.c; may be NULL): a dynamic VHD on a cluster shared volume
     * is opened by the volume's coordinator, and the VM's QEMU reaches it over NBD through the
     * unix socket sock on this host. Asked before QEMU starts for each dynamic disk: 1 with
     * export set: attach QEMU to sock; 0: not on a volume (QEMU's vpc driver opens the file);
     * negative with e set: the VM does not start. Asked too (adopted true) for each disk an
     * adopted QEMU reaches through sock, which must be served again. */
    int (*disk_redirect)(void *data, const char *vm, unsigned disk, const char *path,
                         const char *sock, bool adopted, char *export, size_t export_size,
                         struct ferr *e);
    /* That QEMU is gone or not watched any more: the socket goes. */
    void (*disk_unredirect)(void *data, const char *vm, unsigned disk);
    void *redirect_data;
};

/* Result of an asynchronous operation. status 0 or negative with e filled. vm may be NULL
 * when the operation removed it (delete) or never made it (failed create). */
typedef void (*vm_done_cb)(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                           void *data);

/* Loads every VM under cfg->state_dir and re-attaches to QEMUs that still run (their pid
 * files and QMP sockets), so a ferryd restart never stops a VM. cfg is copied. */
int vmset_open(uv_loop_t *loop, const struct vm_config *cfg, struct events *ev, struct vmset **out,
               struct ferr *e);
/* Detaches from all VMs (QEMUs keep running), then frees everything; cb runs when done. */
void vmset_close(struct vmset *set, void (*cb)(void *data), void *data);

/* The versioned machine type a new VM gets ("pc-i440fx-7.2"), or NULL if unknown. */
const char *vmset_default_machine(const struct vmset *set);

/* Host memory in MiB used by spec validation (0 = unchecked). */
void vmset_set_host_memory(struct vmset *set, uint64_t mib);

struct vm *vmset_find(struct vmset *set, const char *name);
/* FERR_EXISTS when VMs named name and other (different names) would run their QEMUs as the
 * same uid under per-VM uids (qemu_uids: a hash of the name, rarely shared); e names the uid
 * and asks for another name. 0 otherwise, and always with shared uids. */
int vmset_uid_clash(const struct vmset *set, const char *name, const char *other, struct ferr *e);
/* Calls fn for every VM in name order. */
void vmset_foreach(struct vmset *set, void (*fn)(struct vm *vm, void *data), void *data);
unsigned vmset_count(const struct vmset *set);
/* Memory of VMs that have a QEMU (starting, running, paused, stopping). */
uint64_t vmset_allocated_mib(const struct vmset *set);

/* Validates spec_json (borrowed) and creates a stopped VM: fixed VHDs that do not exist and
 * have size_mib are created (in the thread pool). Synchronous errors (bad spec, duplicate)
 * return negative and change nothing; otherwise returns 0 and cb reports the outcome. */
int vmset_create(struct vmset *set, const json_t *spec_json, vm_done_cb cb, void *data,
                 struct ferr *e);
/* Deletes a stopped or failed VM (force: kill it first). Disk files are kept. */
int vmset_delete(struct vmset *set, struct vm *vm, bool force, vm_done_cb cb, void *data,
                 struct ferr *e);
/* Undoes vmset_create of vm (the create's record was refused elsewhere, say): deletes it as
 * vmset_delete --force does, and removes the disk files that create made (not the ones it
 * found). */
int vmset_undo_create(struct vmset *set, struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);

/* Lifecycle operations. Each validates the state synchronously (FERR_STATE with a message
 * that says what to do) and otherwise returns 0 and calls cb once the VM settled. */
int vm_start(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);
/* 0 when vm_start would start vm now, else FERR_STATE with e set why not. */
int vm_may_start(const struct vm *vm, struct ferr *e);
int vm_stop(struct vm *vm, unsigned timeout_s, vm_done_cb cb, void *data, struct ferr *e);
int vm_kill(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);
int vm_pause(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);
int vm_resume(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);

const char *vm_name(const struct vm *vm);
/* Why the VM is failed or last stopped ("" if nothing to say). */
const char *vm_reason(const struct vm *vm);
enum vm_state vm_state(const struct vm *vm);
const struct vm_spec *vm_spec(const struct vm *vm);
/* The API's VM object (docs/api.md); caller owns the reference. */
json_t *vm_to_json(const struct vm *vm);
/* Console bytes from offset (VM_CONSOLE_TAIL: the last max bytes); see console_read. */
#define VM_CONSOLE_TAIL UINT64_MAX
int vm_console_read(const struct vm *vm, uint64_t offset, size_t max, char **out, size_t *len,
                    uint64_t *from, uint64_t *start, uint64_t *end);

/* Where a running VM's serial console takes input: the unix socket of its QEMU (connect, write
 * what is typed, read and drop what comes back). Returns 0 with path, or FERR_STATE (no QEMU, or
 * one started without console input: this host's QEMU is older than 10.0, or the VM was started
 * by an older ferryd: restart the VM) or -ENAMETOOLONG. */
int vm_console_input_path(const struct vm *vm, char *path, size_t size, struct ferr *e);

/* Where a running VM's screen is served: the unix socket of its QEMU's VNC server (RFB, no
 * authentication: only ferryd reaches it). Returns 0 with path, or FERR_STATE (the spec has no
 * display, the VM is not running, or its QEMU was started without one) or -ENAMETOOLONG. */
int vm_vnc_path(const struct vm *vm, char *path, size_t size, struct ferr *e);

struct vm_stats {
    double cpu_seconds; /* QEMU process user+system time */
    unsigned ndisks;
    struct {
        char name[16];
        uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops;
    } disks[VM_MAX_DISKS];
    unsigned nnics;
    struct {
        char tap[16];
        uint64_t rx_bytes, tx_bytes; /* as the guest sees them */
    } nics[VM_MAX_NICS];
};
/* Latest counters (disk counters are refreshed from QMP query-blockstats in the background). */
void vm_stats_get(const struct vm *vm, struct vm_stats *out);

/* What runs: the QEMU's pid and when it started (wall clock ms), 0 while no QEMU runs; the
 * accelerator this host gives its VMs. */
int vm_pid(const struct vm *vm);
uint64_t vm_started_ms(const struct vm *vm);
/* When the guest sent its first packet since its QEMU started (its network is up: the
 * failover timeline's "guest answering"), wall clock ms; 0 not yet, never within
 * VM_NET_WATCH_MS, no NIC, or unknown (a QEMU re-attached after a ferryd restart). */
uint64_t vm_net_ms(const struct vm *vm);
/* Looks at the first tap's counters while the first packet is awaited (call it often, e.g.
 * every 250 ms: its time is when it is seen). True when it just came. */
bool vm_net_poll(struct vm *vm);
#define VM_NET_WATCH_MS 300000
const char *vm_accel(const struct vm *vm);
/* Where the VM's definition, console log and other files live (STATE/vms/NAME). */
const char *vm_state_dir(const struct vm *vm);
/* The set the VM belongs to. */
struct vmset *vm_vmset(const struct vm *vm);

/*
 * ---- Live migration: the VM's side of it ----
 * src/migrate/ drives a migration; these are the only hooks it has into a VM.
 */
struct qmp_conn;
/* A QMP answer (qemu/qmp.h's qmp_reply_cb): status 0 with result, or negative with errmsg;
 * -ECANCELED when the connection closed first. */
typedef void (*vm_qmp_cb)(struct qmp_conn *c, int status, json_t *result, const char *errmsg,
                          void *data);
/* Sees every QMP event of the VM's QEMU while a migration watches it. */
typedef void (*vm_event_fn)(struct vm *vm, const char *event, json_t *data, void *d);

/* An encrypted migration stream (QEMU's TLS with a pre-shared key, tls-creds-psk): the
 * identity, 1..VM_MIG_TLS_USER_MAX of a-z 0-9 -, and the key, VM_MIG_TLS_KEY_HEX lowercase
 * hex digits (32 random bytes), both made by the source for this one migration. */
#define VM_MIG_TLS_USER_MAX 40
#define VM_MIG_TLS_KEY_HEX 64
/* The ids of the QEMU objects of an encrypted migration (either side). */
#define VM_MIG_TLS_CREDS_ID "ferry-mig-tls"
#define VM_MIG_TLS_AUTHZ_ID "ferry-mig-authz"
struct vm_mig_tls {
    char user[VM_MIG_TLS_USER_MAX + 1];
    char key[VM_MIG_TLS_KEY_HEX + 1];
};
/* Whether t's identity and key have the forms above. */
bool vm_mig_tls_valid(const struct vm_mig_tls *t);
/* Where the key file of a migration of vm is kept while QEMU needs it: RUN/NAME/mig-tls-in
 * (destination) or RUN/NAME/mig-tls-out (source), a 0700 directory holding keys.psk (0600,
 * "user:hexkey", QEMU's tls-creds-psk format) and, on the destination, dh-params.pem (RFC
 * 7919's ffdhe2048). -ENAMETOOLONG if it does not fit. */
int vm_mig_tls_dir(const struct vm *vm, bool incoming, char *out, size_t size);
/* Writes t into vm_mig_tls_dir(vm, incoming); e says why not. */
int vm_mig_tls_write(const struct vm *vm, bool incoming, const struct vm_mig_tls *t,
                     struct ferr *e);
/* Removes that directory (nothing there is fine). */
void vm_mig_tls_remove(const struct vm *vm, bool incoming);

/* Destination: starts the stopped VM's QEMU with "-incoming defer" (preallocating its memory
 * when the set's incoming_prealloc says so), enables postcopy-ram when postcopy, then QMP
 * migrate-incoming uri; cb runs once QEMU listens (VM_INCOMING) or failed. The VM becomes
 * running when QEMU says RESUME after the migration. tls (borrowed; NULL: a plain stream):
 * QEMU accepts only a TLS stream from a client that has t's key and identity (tls-creds-psk
 * endpoint=server, authz-simple, migrate-set-parameters tls-creds/tls-authz before it
 * listens); the key file stays until QEMU says the incoming migration is over or QEMU exits
 * (a post-copy recovery handshakes again). Same refusals as vm_start; FERR_INVALID for a uri
 * too long or a tls that is not valid. */
int vm_start_incoming(struct vm *vm, const char *uri, bool postcopy, const struct vm_mig_tls *tls,
                      vm_done_cb cb, void *data, struct ferr *e);
/* Destination: where QEMU listens for the stream ("" before vm_start_incoming); after a
 * post-copy recovery (migrate-recover) the caller records the new address with
 * vm_set_incoming_uri (FERR_INVALID if too long). */
const char *vm_incoming_uri(const struct vm *vm);
int vm_set_incoming_uri(struct vm *vm, const char *uri);
/* Sends a QMP command to the VM's QEMU (args stolen, also on failure). FERR_STATE without a
 * ready QMP connection. */
int vm_qmp(struct vm *vm, const char *cmd, json_t *args, vm_qmp_cb cb, void *data, struct ferr *e);
/* The user vm's QEMU runs as (vm_config.qemu_user): a file QEMU is to open later
 * (blockdev-add) is given to it first (qemu_user_give). Borrowed from the set. */
const struct qemu_user *vm_qemu_user(const struct vm *vm);
/* As vm_qmp, out of band where QEMU's monitor allows it (qmp_conn_execute_oob): for
 * migrate-pause and migrate-recover, which must get through while QEMU's main loop is stuck
 * on a broken post-copy. */
int vm_qmp_oob(struct vm *vm, const char *cmd, json_t *args, vm_qmp_cb cb, void *data,
               struct ferr *e);
/* Source: whether the VM's QEMU can be live-migrated as it runs: false, with the reason in why
 * ("disks[1] (/csv/d.vhd) is a dynamic VHD, ..."), while a disk is attached with QEMU's vpc
 * driver, which refuses live migration. */
bool vm_can_migrate(const struct vm *vm, char *why, size_t size);
/* Source: marks the VM as migrating out (fn != NULL, which then sees every QMP event) or not.
 * While set, QEMU's STOP (the switchover) does not make the VM "paused". */
void vm_set_migrating(struct vm *vm, vm_event_fn fn, void *d);
bool vm_migrating(const struct vm *vm);
/* Destination: adds text to the console history (the source's, sent before the switchover). */
void vm_console_append(struct vm *vm, const char *data, size_t len);
/*
 * ---- Storage moves: the VM's side (src/fleet/storagemove.c) ----
 */
/* Marks disk (>= 0) as moving, or none (-1); false when another move runs. While one runs the
 * VM is not live-migrated (vm_can_migrate says why). */
bool vm_storage_move_mark(struct vm *vm, int disk);
/* The disk whose move runs, or -1. */
int vm_storage_moving(const struct vm *vm);
/* Disk i is a fixed VHD, attached as raw over the file (not with QEMU's vpc driver). */
bool vm_disk_fixed(const struct vm *vm, unsigned i);
/* Disk i is reached over NBD through the volume's coordinator (redirected I/O). */
bool vm_disk_redirected(const struct vm *vm, unsigned i);
/* After the pivot: disk i's spec path is path, saved (STATE/vms/NAME/vm.json); nothing
 * changes when saving fails. */
int vm_set_disk_path(struct vm *vm, unsigned i, const char *path, struct ferr *e);
/* The VM's HA settings (spec.ha) become ha, saved in its vm.json first. */
int vm_set_ha(struct vm *vm, const struct vm_ha *ha, struct ferr *e);

/* Source after a completed migration: QMP quit (SIGKILL after 5 s); cb once QEMU is gone and
 * the VM is stopped. FERR_STATE without a QEMU. */
int vm_quit(struct vm *vm, vm_done_cb cb, void *data, struct ferr *e);

#endif
