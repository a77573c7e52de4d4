/* SPDX-License-Identifier: MIT */
/* What vm.c and vmset.c share about a VM and the set; not for other subsystems. */
#ifndef FERRY_VM_VM_INTERNAL_H
#define FERRY_VM_VM_INTERNAL_H

#include "vm/console.h"
#include "vm/vm.h"

struct qmp_conn;
struct qemu_proc;

struct vm_waiter {
    vm_done_cb cb;
    void *data;
    struct vm_waiter *next;
};

struct vm {
    struct vmset *set;
    struct vm *next; /* in set->vms, sorted by name */
    struct vm_spec spec;
    char dir[1200];               /* STATE/vms/NAME */
    char run[600];                /* RUN/NAME */
    bool made_disk[VM_MAX_DISKS]; /* created by its vmset_create (this ferryd's memory only) */
    enum vm_state state;
    char reason[FERR_MSG_MAX];
    uint64_t created_ms;
    uint64_t started_ms;
    /* the guest's first packet since this QEMU started (vm_net_poll): wall clock ms, 0 not yet
     * or unknown; watched while net_watch, from the first tap's rx_packets above net_base */
    uint64_t net_ms, net_base;
    bool net_watch;
    int pid;
    char taps[VM_MAX_NICS][16];
    uint64_t disk_bytes[VM_MAX_DISKS];
    bool disk_vpc[VM_MAX_DISKS]; /* a dynamic VHD: QEMU's vpc driver opens it here or ... */
    bool disk_nbd[VM_MAX_DISKS]; /* ... the volume's coordinator does (redirected, over NBD) */

    struct qemu_proc *qemu; /* while a QEMU runs (or is adopted) for the VM */
    /* The user its QEMU runs as: the VM's own (qemu_user_for_vm), or, for a QEMU adopted after
     * a ferryd restart, whichever that QEMU runs as (an older ferryd's, another qemu_uids);
     * back to the VM's own when that QEMU is gone. */
    struct qemu_user user;

    struct qmp_conn *qmp;
    bool qmp_ready;
    uv_timer_t timer; /* start: wait for QMP; stop: deadline */
    uv_timer_t poll;  /* console and counters */
    uint64_t deadline_ms;
    uint64_t last_stats_ms;
    bool console_busy;
    bool stats_busy; /* a query-blockstats is on its way */

    struct console *console;
    struct vm_waiter *waiters;

    bool stop_requested; /* stop/kill asked: an exit is expected */
    bool guest_shutdown; /* QEMU said SHUTDOWN (guest powered off or ACPI) */
    bool attaching;      /* re-attaching after a ferryd restart */
    bool postmigrate;    /* re-attached to a QEMU whose state went to another by a migration */
    bool deleting;
    bool fail_pending; /* QMP broke: failed once QEMU is gone */
    bool killed_after_timeout;
    char qmp_lost[FERR_MSG_MAX];
    bool releasing;   /* vm__release called: free after the last handle closed */
    unsigned closing; /* uv handles still closing */
    void (*on_freed)(struct vmset *set);

    struct vm_stats stats;

    /* Live migration (src/migrate/): see the vm__ functions at the end. */
    bool incoming;          /* destination: QEMU runs with -incoming defer */
    char incoming_uri[128]; /* what migrate-incoming listens on */
    bool incoming_postcopy; /* destination: enable postcopy-ram before migrate-incoming */
    /* Destination of an encrypted migration: the per-migration PSK identity that QEMU's
     * authz-simple admits ("" for a plain stream); its key is in RUN/NAME/mig-tls-in. */
    char incoming_tls_user[VM_MIG_TLS_USER_MAX + 1];
    bool incoming_tls_failed; /* an object-add of the TLS set-up failed: never listen */
    bool migrating_out;     /* source: a migration is under way; its STOP is not a pause */
    int storage_moving;     /* 1 + the disk whose storage move runs; 0: none */
    vm_event_fn mig_event;
    void *mig_data;
};

struct vmset {
    uv_loop_t *loop;
    struct vm_config cfg;
    struct events *events;
    struct vm *vms;
    unsigned count;
    uint64_t host_memory_mib;
    struct pending_name {
        char name[VM_NAME_MAX + 1];
        struct pending_name *next;
    } * pending;
    void (*close_cb)(void *data);
    void *close_data;
    unsigned live; /* VMs not yet freed during close */
};

/* vm.c */
int vm__new(struct vmset *set, const struct vm_spec *spec, uint64_t created_ms, struct vm **out,
            struct ferr *e);
/* Re-attaches to a QEMU left running by a previous ferryd, if any. */
void vm__attach(struct vm *vm);
/* Stops watching QEMU (it keeps running) and frees the VM once its handles closed. */
void vm__release(struct vm *vm, void (*on_freed)(struct vmset *set));
void vm__notify(struct vm *vm, int status, const struct ferr *e);

#endif
