/* SPDX-License-Identifier: MIT */
/* The unprivileged user a VM's QEMU runs as, and the files ferryd hands over to it. */
#ifndef FERRY_QEMU_USER_H
#define FERRY_QEMU_USER_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/err.h"

#define QEMU_USER_DEFAULT "ferry-qemu"
#define QEMU_USER_NAME_MAX 32

/*
 * QEMU runs as this user from its first instruction: ferryd starts it through setpriv(1)
 * (--reuid, --regid, --init-groups, no capabilities, no new privileges), never through QEMU's
 * own -runas/-run-with user=, which switch after -sandbox's elevateprivileges=deny is in force
 * and are killed by it (SIGSYS on setgid, measured with QEMU 10.0). So everything QEMU opens
 * must be the user's first: ferryd gives it the VM's run dir, disks, migration keys and NBD
 * sockets (qemu_user_give) and passes taps as open descriptors.
 */
struct qemu_user {
    bool drop; /* false: QEMU runs as ferryd's own user (qemu_user "root") */
    uid_t uid;
    gid_t gid; /* the user's primary group */
    char name[QEMU_USER_NAME_MAX + 1];
};

/* Looks name up in the user database. "root" (or any name of uid 0) means no drop. Returns 0,
 * FERR_INVALID for a bad name, FERR_NOTFOUND for a user this host does not have (the message
 * says how to create it). */
int qemu_user_lookup(const char *name, struct qemu_user *u, struct ferr *e);

/* Gives path to the user: owner uid:gid and mode (e.g. 0600, 0700), without following a
 * symlink at path (the run dir is the user's: what is in it may have been replaced). A path
 * that is already the user's with that mode is left alone, so a file that root may not chown
 * (NFS with root_squash) but that the user already owns is fine. No-op without drop. Returns 0
 * or a negative errno with a message that says what to do. */
int qemu_user_give(const struct qemu_user *u, const char *path, unsigned mode, struct ferr *e);

/* Whether the user may search (x) every directory on the way to dir and dir itself, by the
 * permission bits of each against its uid, gid and supplementary groups. 0 if so (or without
 * drop), else FERR_STATE naming the first directory it cannot pass and what to change. */
int qemu_user_check_reach(const struct qemu_user *u, const char *dir, struct ferr *e);

/* Whether the user may open the device or file at path for reading and writing, by its
 * permission bits against the user's uid, gid and supplementary groups (ACLs are not read).
 * True without drop. For warnings at start: /dev/kvm, /dev/userfaultfd. */
bool qemu_user_may_rw(const struct qemu_user *u, const char *path);

#endif
