/* SPDX-License-Identifier: MIT */
/* The cluster's shared volumes (CSV): adding one once every up node proved it sees the same
 * directory, removing it, its coordinator (moved by hand, and by the leader off a node that is
 * down, draining or paused), and what each node sees of it. */
#ifndef FERRY_FLEET_VOLUMES_H
#define FERRY_FLEET_VOLUMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/reply.h"

struct volumes;
struct cluster;
struct redirect;
struct events;

struct volumes_env {
    uv_loop_t *loop;
    struct cluster *cluster;
    struct events *events;
    const char *node_name;     /* borrowed; outlives the volumes */
    unsigned lease_ms;         /* renew this node's lease on each volume this often; 0: never */
    unsigned lease_expiry_ms;  /* a lease whose counter did not move this long is stale */
    struct redirect *redirect; /* this node's storage daemons, released when a volume moves */
    /* Where the volumes this node renews leases on are remembered (NULL: nowhere): a node that
     * restarts cut off from the cluster has a database that may lack the newest volumes
     * (entries not known to be committed are not applied), and must renew its leases on them
     * all the same until it fences itself. */
    const char *lease_volumes_file;
    /* A volume this node has lost (access none for a while; may be NULL): how many of its
     * running VMs open a file under path themselves (direct I/O), and moving them live to
     * node `to`, which was just seen to have direct access. Redirected disks need no move. */
    unsigned (*direct_users)(void *data, const char *path);
    void (*evacuate)(void *data, const char *volume, const char *path, const char *to);
    void *evacuate_data;
};

/* env copied. Only -ENOMEM. */
int volumes_new(const struct volumes_env *env, struct volumes **out, struct ferr *e);
/* ferryd shuts down, before the cluster closes: nothing of v touches the cluster any more,
 * the lease timer stops, and operations under way end with -ECANCELED. */
void volumes_stop(struct volumes *v);
/* Frees v once no operation of it is under way any more (they hold a reference). */
void volumes_free(struct volumes *v);

/*
 * The operations (docs/api.md, Cluster shared volumes). Synchronous refusals return negative
 * with e set; otherwise cb answers later, once this node's copy of the database shows the
 * change. Nothing is left half-done: a volume that is not added leaves no id file behind.
 */
int volumes_add(struct volumes *v, const char *name, const char *path, reply_cb cb, void *data,
                struct ferr *e);
int volumes_remove(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e);
int volumes_move_coordinator(struct volumes *v, const char *name, const char *to, reply_cb cb,
                             void *data, struct ferr *e);
/* {"csvs": [...]}: the records with the VMs using each and this node's view; new JSON. */
json_t *volumes_list(struct volumes *v);
/* GET /v1/csvs/NAME/audit: the volume's writers' audit (storage/audit.h), read from the
 * volume by this node: audit_check's verdict with "volume", "records" (oldest first) and
 * "unreadable_lines". */
int volumes_audit(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e);

/* One volume with every node's access (asked now), its VHD files and the VMs using them. */
int volumes_show(struct volumes *v, const char *name, reply_cb cb, void *data, struct ferr *e);
/* POST /v1/internal/csv/probe {"path", "id"} from another node: what this node sees now. */
void volumes_on_probe(struct volumes *v, const json_t *body, reply_cb cb, void *data);
/* Every 2 s from ferryd: refreshes this node's view of every volume; on the leader, moves a
 * coordinator off a node that is down, draining or paused. */
void volumes_tick(struct volumes *v);
/* Whether every lease of node is stale as this node reads them (the storage heartbeat: a
 * node silent on the network but renewing is isolated, not dead). False with why while this
 * node cannot judge (it fails to renew its own leases, or has not read a volume's leases
 * yet) or one of node's leases is fresh. *age_ms: how long the youngest of node's leases has
 * not moved (0 when none was ever seen). True, age 0, when there are no volumes. */
bool volumes_node_stale(struct volumes *v, const char *node, uint64_t *age_ms, char *why,
                        size_t size);
/* The timings in use (fleet/timing.h): renew every lease_ms (from now on; a node started
 * without renewals keeps none), call a lease stale after lease_expiry_ms. */
void volumes_set_timing(struct volumes *v, unsigned lease_ms, unsigned lease_expiry_ms);
/* Self-fencing (fleet.h): on stops this node's lease renewals (one under way still lands),
 * off starts them again. */
void volumes_set_fenced(struct volumes *v, bool on);

/* This node's view for /metrics: [{"name", "path", "coordinator", "epoch", "access",
 * "size_bytes", "free_bytes", "leases": {"NODE": age_ms}}]; new JSON. */
json_t *volumes_local_view(struct volumes *v);

#endif
