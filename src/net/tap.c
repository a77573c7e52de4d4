/* SPDX-License-Identifier: MIT */
/* Tap devices for VM NICs: created with the TUN ioctls, joined to bridges with rtnetlink. */
#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>

/* A negative errno for a libnl error code (libnl returns -NLE_*). */
static int errno_of(int nlrc)
{
    switch (nlrc < 0 ? -nlrc : nlrc) {
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_EXIST:
        return -EEXIST;
    case NLE_INVAL:
        return -EINVAL;
    case NLE_RANGE:
        return -ERANGE;
    case NLE_OPNOTSUPP:
        return -EOPNOTSUPP;
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
        return -ENODEV;
    case NLE_BUSY:
        return -EBUSY;
    case NLE_NOACCESS:
    case NLE_PERM:
        return -EPERM;
    case NLE_AGAIN:
        return -EAGAIN;
    case NLE_INTR:
        return -EINTR;
    default:
        return -EIO;
    }
}

/* Interface names as Linux takes them, narrowed to characters that need no quoting anywhere. */
static int check_ifname(const char *what, const char *name, struct ferr *e)
{
    size_t n = name ? strlen(name) : 0;
    bool ok = n > 0 && n < IFNAMSIZ && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    }
    if (!ok)
        return ferr_set(e, FERR_INVALID,
                        "%s name \"%.32s\" is invalid: use 1-%d of A-Z a-z 0-9 _ . -", what,
                        name ? name : "", IFNAMSIZ - 1);
    return 0;
}

static int sock_open(struct nl_sock **out, struct ferr *e)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return ferr_set(e, -ENOMEM, "netlink: out of memory");
    int rc = nl_connect(sk, NETLINK_ROUTE);
    if (rc < 0) {
        nl_socket_free(sk);
        return ferr_set(e, errno_of(rc), "netlink: connect: %s", nl_geterror(rc));
    }
    *out = sk;
    return 0;
}

/* Looks a link up by name: 1 and *out (caller puts it with rtnl_link_put) if found, 0 if not. */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **out, struct ferr *e)
{
    int rc = rtnl_link_get_kernel(sk, 0, name, out);
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
        return 0;
    if (rc < 0)
        return ferr_set(e, errno_of(rc), "netlink: get link %s: %s", name, nl_geterror(rc));
    return 1;
}

static bool is_kind(struct rtnl_link *l, const char *kind)
{
    const char *t = rtnl_link_get_type(l);
    return t && strcmp(t, kind) == 0;
}

/* A tap is a "tun" link with an Ethernet header; a tun proper has none. */
static bool is_tap(struct rtnl_link *l)
{
    return is_kind(l, "tun") && rtnl_link_get_arptype(l) == ARPHRD_ETHER;
}

int bridge_exists(const char *name, struct ferr *e)
{
    int rc = check_ifname("bridge", name, e);
    if (rc < 0)
        return rc;
    struct nl_sock *sk;
    if ((rc = sock_open(&sk, e)) < 0)
        return rc;
    struct rtnl_link *l = NULL;
    rc = link_get(sk, name, &l, e);
    if (rc == 1) {
        rc = is_kind(l, "bridge");
        rtnl_link_put(l);
    }
    nl_socket_free(sk);
    return rc;
}

/* A /dev/net/tun descriptor attached to tap name (made if there is none), in *fd. */
static int tun_attach(const char *name, int *fd, struct ferr *e)
{
    *fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (*fd < 0)
        return ferr_set(e, -errno, "open /dev/net/tun: %s", strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name) + 1);
    if (ioctl(*fd, TUNSETIFF, &ifr) < 0) {
        int rc = ferr_set(e, -errno, "tap %s: TUNSETIFF: %s", name, strerror(errno));
        close(*fd);
        *fd = -1;
        return rc;
    }
    return 0;
}

/* Makes a persistent tap with the TUN ioctls; the fd is closed again at once, QEMU gets the
 * device later (tap_open). */
static int tun_make(const char *name, struct ferr *e)
{
    int fd;
    int rc = tun_attach(name, &fd, e);
    if (rc < 0)
        return rc;
    if (ioctl(fd, TUNSETPERSIST, 1) < 0)
        rc = ferr_set(e, -errno, "TUNSETPERSIST %s: %s", name, strerror(errno));
    /* Without TUNSETPERSIST the device goes away with the fd, so nothing is left on failure. */
    close(fd);
    return rc;
}

int tap_open(const char *name, int *fd_out, struct ferr *e)
{
    int rc = check_ifname("tap", name, e);
    if (rc < 0)
        return rc;
    int fd;
    if ((rc = tun_attach(name, &fd, e)) < 0)
        return rc;
    *fd_out = fd;
    return 0;
}

int tap_create(const char *name, const char *bridge, struct ferr *e)
{
    int rc;
    if ((rc = check_ifname("tap", name, e)) < 0 || (rc = check_ifname("bridge", bridge, e)) < 0)
        return rc;
    struct nl_sock *sk;
    if ((rc = sock_open(&sk, e)) < 0)
        goto err;

    struct rtnl_link *br = NULL, *tap = NULL, *change = NULL;
    bool created = false;
    if ((rc = link_get(sk, bridge, &br, e)) < 0)
        goto err_after_sock;
    if (rc == 0 || !is_kind(br, "bridge")) {
        rc = ferr_set(e, FERR_NOTFOUND, "bridge %s does not exist", bridge);
        goto err_after_sock;
    }

    if ((rc = link_get(sk, name, &tap, e)) < 0)
        goto err_after_sock;
    if (rc == 1 && !is_tap(tap)) {
        rc = ferr_set(e, FERR_EXISTS, "%s exists and is not a tap device", name);
        goto err_after_sock;
    }
    if (rc == 0) {
        if ((rc = tun_make(name, e)) < 0)
            goto err_after_sock;
        created = true;
        if ((rc = link_get(sk, name, &tap, e)) <= 0) {
            if (rc == 0)
                rc = ferr_set(e, -ENODEV, "%s vanished right after it was created", name);
            goto err_after_tap;
        }
    }

    /* One request: join the bridge with the bridge's MTU (so it does not shrink the bridge's)
     * and come up. */
    change = rtnl_link_alloc();
    if (!change) {
        rc = ferr_set(e, -ENOMEM, "netlink: out of memory");
        goto err_after_tap;
    }
    rtnl_link_set_master(change, rtnl_link_get_ifindex(br));
    rtnl_link_set_mtu(change, rtnl_link_get_mtu(br));
    rtnl_link_set_flags(change, IFF_UP);
    if ((rc = rtnl_link_change(sk, tap, change, 0)) < 0) {
        rc = ferr_set(e, errno_of(rc), "netlink: join %s to bridge %s and set it up: %s", name,
                      bridge, nl_geterror(rc));
        goto err_after_tap;
    }
    rtnl_link_put(change);
    rtnl_link_put(tap);
    rtnl_link_put(br);
    nl_socket_free(sk);
    return 0;

err_after_tap:
    if (change)
        rtnl_link_put(change);
    if (created) {
        /* A reused tap was there before us and stays; one we made goes. */
        struct rtnl_link *del = rtnl_link_alloc();
        if (del) {
            rtnl_link_set_name(del, name);
            rtnl_link_delete(sk, del);
            rtnl_link_put(del);
        }
    }
err_after_sock:
    if (tap)
        rtnl_link_put(tap);
    if (br)
        rtnl_link_put(br);
    nl_socket_free(sk);
err:
    ferr_prefix(e, "tap %s", name);
    return rc;
}

int tap_delete(const char *name, struct ferr *e)
{
    int rc = check_ifname("tap", name, e);
    if (rc < 0)
        return rc;
    struct nl_sock *sk;
    if ((rc = sock_open(&sk, e)) < 0) {
        ferr_prefix(e, "tap %s", name);
        return rc;
    }
    struct rtnl_link *l = NULL;
    if ((rc = link_get(sk, name, &l, e)) <= 0)
        goto out;
    if (!is_tap(l)) {
        rc = ferr_set(e, FERR_INVALID, "%s is not a tap device; not deleting it", name);
        goto out;
    }
    /* RTM_DELLINK removes a persistent tap even if a QEMU still holds it open. */
    rc = rtnl_link_delete(sk, l);
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
        rc = 0;
    else if (rc < 0)
        rc = ferr_set(e, errno_of(rc), "netlink: delete: %s", nl_geterror(rc));
out:
    if (l)
        rtnl_link_put(l);
    nl_socket_free(sk);
    if (rc < 0)
        ferr_prefix(e, "tap %s", name);
    return rc < 0 ? rc : 0;
}

void tap_name_for(const char *vm_name, unsigned idx, char out[16])
{
    /* FNV-1a of the VM name: all taps of one VM share the 8 hex digits, which helps someone
     * reading `ip link`. "fy" + 8 + up to 5 digits of idx fit IFNAMSIZ - 1. */
    uint32_t h = 2166136261u;
    for (const char *c = vm_name; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    snprintf(out, 16, "fy%08x%u", h, idx % 100000u);
}

int tap_stats_read(const char *name, struct tap_stats *out, struct ferr *e)
{
    int rc = check_ifname("tap", name, e);
    if (rc < 0)
        return rc;
    struct nl_sock *sk;
    if ((rc = sock_open(&sk, e)) < 0) {
        ferr_prefix(e, "tap %s", name);
        return rc;
    }
    struct rtnl_link *l = NULL;
    rc = link_get(sk, name, &l, e);
    if (rc == 0)
        rc = ferr_set(e, FERR_NOTFOUND, "no such device");
    if (rc == 1) {
        out->rx_bytes = rtnl_link_get_stat(l, RTNL_LINK_RX_BYTES);
        out->tx_bytes = rtnl_link_get_stat(l, RTNL_LINK_TX_BYTES);
        out->rx_packets = rtnl_link_get_stat(l, RTNL_LINK_RX_PACKETS);
        out->tx_packets = rtnl_link_get_stat(l, RTNL_LINK_TX_PACKETS);
        rtnl_link_put(l);
        rc = 0;
    }
    nl_socket_free(sk);
    if (rc < 0)
        ferr_prefix(e, "tap %s", name);
    return rc < 0 ? rc : 0;
}
