/* SPDX-License-Identifier: MIT */
/* Tap devices for VM NICs and the host bridges they join, through netlink (libnl-route). */
#ifndef FERRY_NET_TAP_H
#define FERRY_NET_TAP_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* Returns 1 if a bridge of that name exists in this network namespace, 0 if not (or the
 * link is not a bridge), negative on netlink failure. */
int bridge_exists(const char *name, struct ferr *e);

/* Creates a persistent tap device name (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), enslaves it to
 * bridge and sets it up. On failure nothing is left behind. An existing tap of that name is
 * reused (ferryd restart). */
int tap_create(const char *name, const char *bridge, struct ferr *e);

/* Opens the existing tap name as QEMU would (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so the guest
 * sees the same virtio-net offloads as with a tap QEMU opened itself: a migration's two ends
 * must agree on them) and returns the descriptor in *fd (O_CLOEXEC; the caller closes it once
 * QEMU has its copy). A QEMU running as an unprivileged user gets its taps this way. */
int tap_open(const char *name, int *fd, struct ferr *e);

/* Deletes the tap; a missing tap is not an error. */
int tap_delete(const char *name, struct ferr *e);

/* Tap name for NIC idx of a VM: "fy" + 8 hex of a hash of the VM name + idx; at most 15 chars. */
void tap_name_for(const char *vm_name, unsigned idx, char out[16]);

struct tap_stats {
    uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
};
/* Reads the counters of a link (from the host's side of the tap). */
int tap_stats_read(const char *name, struct tap_stats *out, struct ferr *e);

#endif
