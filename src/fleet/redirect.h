/* SPDX-License-Identifier: MIT */
/* Redirected I/O for dynamic VHDs on cluster shared volumes (docs/architecture.md, "Redirected
 * I/O"). On the volume's coordinator a qemu-storage-daemon (storage/storaged.h) opens the VHD
 * and exports it over NBD; on the VM's host, ferryd relays a unix socket to it
 * (storage/nbdrelay.h), so the VM's QEMU holds no image state: it live-migrates, and when the
 * coordinator moves its requests wait and are replayed on the new one. */
#ifndef FERRY_FLEET_REDIRECT_H
#define FERRY_FLEET_REDIRECT_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "common/err.h"
#include "common/reply.h"
#include "qemu/user.h"

struct redirect;
struct cluster;

struct redirect_env {
    uv_loop_t *loop;
    struct cluster *cluster; /* may come later (redirect_set_cluster): VMs are adopted first */
    const char *node_name;   /* borrowed; outlive the redirect */
    const char *run_dir;     /* RUN: the daemons' directories are RUN/.csvd/VOLUME */
    const char *qsd_binary;  /* qemu-storage-daemon */
    const char *nbd_host;    /* this node's address for NBD ("" : it cannot coordinate) */
    unsigned nbd_port;       /* the first volume's daemon listens here, the next on +1, ... */
    /* The user the storage daemons run as (ferryd's qemu_user; copied; NULL: as ferryd). */
    const struct qemu_user *qemu_user;
};

int redirect_new(const struct redirect_env *env, struct redirect **out, struct ferr *e);
/* ferryd stops: the relays close (QEMUs keep running and reconnect to the next ferryd) and
 * the daemons end (their clients wait for the next one). */
void redirect_stop(struct redirect *r);
void redirect_set_cluster(struct redirect *r, struct cluster *c);
void redirect_free(struct redirect *r);

/* vm_config.disk_redirect / disk_unredirect (vm/vm.h); data is the redirect. */
int redirect_disk(void *data, const char *vm, unsigned disk, const char *path, const char *sock,
                  bool adopted, char *export, size_t export_size, struct ferr *e);
void redirect_undisk(void *data, const char *vm, unsigned disk);

/* POST /v1/internal/csv/export {"volume", "file", "vm", "node"}: this node, the volume's
 * coordinator, serves the file over NBD; answers {"nbd": "IP:PORT", "export", "epoch"}. */
void redirect_on_export(struct redirect *r, const json_t *body, reply_cb cb, void *data);
/* POST /v1/internal/csv/release {"volume", "epoch"}: the coordinator gives the volume up
 * before another node takes it: its daemon ends (files flushed and closed, locks gone), and
 * it serves nothing of that epoch again. Answered once the daemon is gone. */
void redirect_on_release(struct redirect *r, const json_t *body, reply_cb cb, void *data);
/* The same for this node's own volume. */
void redirect_release(struct redirect *r, const char *volume, long long epoch, reply_cb cb,
                      void *data);
/* Self-fencing (fleet.h): a node without quorum may not coordinate any more (the cluster
 * moves its volumes once its leases expire), so every storage daemon of it ends now, and its
 * locks on the VHDs go with it; the new coordinator could not open them otherwise. */
void redirect_fence(struct redirect *r);
/* Every 2 s: daemons of volumes this node does not coordinate any more end; relays whose
 * volume changed coordinator drop their connections (QEMU reconnects to the new one). */
void redirect_tick(struct redirect *r);
/* Closes this node's export of the file at path, if its storage daemon has one (a stopped
 * VM's disk is kept open for 10 s), so the file can be grown or deleted; cb gets 200 once it
 * is gone (at once when there is none), or the error. The caller checked no VM uses it. */
void redirect_free_file(struct redirect *r, const char *path, reply_cb cb, void *data);
/* {"exports": [{"volume", "name", "path", "port", "pid"}], "relays": [{"vm", "disk",
 * "volume", "file", "connected", "why"}]} for volume views and /metrics; new JSON. */
json_t *redirect_view(struct redirect *r);

#endif
