/* SPDX-License-Identifier: MIT */
/* One qemu-storage-daemon serving one volume's redirected disks over NBD (the coordinator's
 * side of redirected I/O, DESIGN.md "Cluster shared volumes"). It is the only process that
 * opens those VHD files (QEMU's vpc driver, image locks on); VMs anywhere reach them as NBD
 * exports, so their QEMUs hold no image state and migrate. */
#ifndef FERRY_STORAGE_STORAGED_H
#define FERRY_STORAGE_STORAGED_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "common/err.h"
#include "qemu/user.h"

struct storaged;

struct storaged_cfg {
    const char *binary; /* qemu-storage-daemon */
    const char *dir;    /* its runtime directory (made): qmp.sock, qsd.pid, qsd.log */
    const char *host;   /* the NBD server's address (this node's) */
    unsigned port;
    const char *label; /* for logs: the volume's name */
    /* The daemon runs as this user (copied; NULL or one without drop: as ferryd): dir and
     * every exported file become its own (qemu_user_give), and dir's parents must let it pass
     * (qemu_user_check_reach). */
    const struct qemu_user *user;
    /* The daemon ended without storaged_stop (crashed, killed, could not listen): called
     * once; the storaged is freed after it returns. */
    void (*on_gone)(struct storaged *s, const char *why, void *data);
    void *data;
};

typedef void (*storaged_cb)(int status, const struct ferr *e, void *data);

/* Spawns the daemon (a stale one of a previous ferryd in dir is ended first); exports wait
 * until its QMP answers. It gets SIGKILL if this process dies (as another user only while
 * this process may signal it: CAP_KILL). cfg's strings are copied. Fails, starting nothing,
 * if dir cannot be made the user's or the user cannot reach it. */
int storaged_start(uv_loop_t *loop, const struct storaged_cfg *cfg, struct storaged **out,
                   struct ferr *e);
/* Exports the VHD at path (QEMU's vpc driver) as name, writable; done when an NBD client can
 * open it. The file (a symlink's target) is given to the daemon's user first, 0600, in the
 * thread pool (a volume's server may be slow); a file that cannot be given fails the export
 * and nothing is opened. Already exported: answered at once. */
int storaged_export(struct storaged *s, const char *name, const char *path, storaged_cb cb,
                    void *data, struct ferr *e);
/* Stops exporting name (its clients' connections drop) and closes the file; done once it is
 * closed. Not exported: answered at once. */
int storaged_unexport(struct storaged *s, const char *name, storaged_cb cb, void *data,
                      struct ferr *e);
/* Ends the daemon (SIGTERM: it flushes and closes the files; SIGKILL after 5 s); every
 * client's connection drops. done runs once the process is gone; s is freed then. */
void storaged_stop(struct storaged *s, void (*done)(void *data), void *data);
unsigned storaged_port(const struct storaged *s);
/* [{"name", "path"}] exported now; new JSON. */
json_t *storaged_exports(const struct storaged *s);
int storaged_pid(const struct storaged *s);

#endif
