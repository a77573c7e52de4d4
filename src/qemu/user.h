/* SPDX-License-Identifier: MIT */
/* The unprivileged user a VM's QEMU runs as, and the files ferryd hands over to it. */
#ifndef FERRY_QEMU_USER_H
#define FERRY_QEMU_USER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define QEMU_USER_DEFAULT "ferry-qemu"
#define QEMU_USER_NAME_MAX 32
#define QEMU_USER_GROUPS_MAX 32
/* Per-VM uids (qemu_uids): 2^27 ids above systemd's container ranges (which end at
 * 1879048191) and below its foreign-image range (2147352576): see docs/architecture.md. */
#define QEMU_UIDS_DEFAULT "1879048192-2013265919"

/*
 * QEMU runs as this user from its first instruction: ferryd starts it through setpriv(1)
 * (--reuid, --regid, --groups, no capabilities, no new privileges), never through QEMU's
 * own -runas/-run-with user=, which switch after -sandbox's elevateprivileges=deny is in force
 * and are killed by it (SIGSYS on setgid, measured with QEMU 10.0). So everything QEMU opens
 * must be the user's first: ferryd gives it the VM's run dir, disks, migration keys and NBD
 * sockets (qemu_user_give) and passes taps as open descriptors.
 */
struct qemu_user {
    bool drop; /* false: QEMU runs as ferryd's own user (qemu_user "root") */
    uid_t uid;
    gid_t gid; /* the user's primary group */
    /* The supplementary groups QEMU runs with (setpriv --groups): the configured user's, its
     * primary group among them (it lets QEMU pass RUN, 0710 root:that group), kvm where the
     * user is in it. */
    gid_t groups[QEMU_USER_GROUPS_MAX];
    int ngroups;
    /* Per-VM uids, on the configured user (the template): each VM's QEMU runs as uid = gid =
     * vm_first + a hash of the VM's name mod vm_count, with the template's groups, so that an
     * escaped QEMU reaches no other VM's files or processes. vm_count 0: every VM's QEMU runs
     * as the template itself (qemu_uids "shared"). */
    uid_t vm_first;
    uint32_t vm_count;
    char name[96]; /* for messages: the user's name, or which VM's uid this is */
};

/* Looks name up in the user database. "root" (or any name of uid 0) means no drop. Returns 0,
 * FERR_INVALID for a bad name, FERR_NOTFOUND for a user this host does not have (the message
 * says how to create it). */
int qemu_user_lookup(const char *name, struct qemu_user *u, struct ferr *e);

/* Parses qemu_uids: "FIRST-LAST" (decimal, 65536 <= FIRST <= LAST <= 2147352575: above the
 * ids of users and systemd's dynamic users, below systemd's foreign-image range) or "shared".
 * Returns 0 (count 0 for shared) or FERR_INVALID with what to write. */
int qemu_uids_parse(const char *s, uid_t *first, uint32_t *count, struct ferr *e);

/* Sets the per-VM range on the template u (from qemu_uids_parse). FERR_INVALID if the
 * template's own uid or gid lies inside it. No-op without drop. */
int qemu_user_set_vm_uids(struct qemu_user *u, uid_t first, uint32_t count, struct ferr *e);

/* The uid the QEMU of the VM named vm runs as: the template's own uid without per-VM uids
 * (or without drop: 0). The same on every node with the same qemu_uids (a VM's files on a
 * shared volume keep one owner across migrations). */
uid_t qemu_user_vm_uid(const struct qemu_user *tmpl, const char *vm);

/* The user the QEMU of the VM named vm runs as (see qemu_user_vm_uid). */
void qemu_user_for_vm(const struct qemu_user *tmpl, const char *vm, struct qemu_user *out);

/* The user a running process runs as, from /proc/PID/status (real uid and gid, groups): for a
 * QEMU that ferryd adopts after a restart, which may have been started with another
 * qemu_uids or by an older ferryd. Returns 0 or a negative errno. */
int qemu_user_of_pid(int pid, struct qemu_user *out, struct ferr *e);

/* Gives path to the user: owner uid:gid and mode (e.g. 0600, 0700), without following a
 * symlink at path (the run dir is the user's: what is in it may have been replaced). A path
 * that is already the user's with that mode is left alone, so a file that root may not chown
 * (NFS with root_squash) but that the user already owns is fine. No-op without drop. Returns 0
 * or a negative errno with a message that says what to do. */
int qemu_user_give(const struct qemu_user *u, const char *path, unsigned mode, struct ferr *e);

/* Gives the file that path names (a symlink resolved: what QEMU opens) to the user, 0600: a
 * spec's disk, a volume's VHD. Same returns as qemu_user_give. */
int qemu_user_give_file(const struct qemu_user *u, const char *path, struct ferr *e);

/* Whether the user may search (x) every directory on the way to dir and dir itself, by the
 * permission bits of each against its uid, gid and supplementary groups. 0 if so (or without
 * drop), else FERR_STATE naming the first directory it cannot pass and what to change. */
int qemu_user_check_reach(const struct qemu_user *u, const char *dir, struct ferr *e);

/* Whether the user may open the device or file at path for reading and writing, by its
 * permission bits against the user's uid, gid and supplementary groups (ACLs are not read).
 * True without drop. For warnings at start: /dev/kvm, /dev/userfaultfd. */
bool qemu_user_may_rw(const struct qemu_user *u, const char *path);

#endif
