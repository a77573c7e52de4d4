/* SPDX-License-Identifier: MIT */
/* Unit tests of taps and bridges, run as root inside a private network namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>

#include "net/tap.h"

#define SKIP_STATUS 77

/*
 * The namespace tests run in a forked child that unshares its network namespace: whatever they
 * create disappears with the child, also when a check fails half way. cmocka's asserts do not
 * cross the fork, so the child reports the first failed check on stderr and through its exit
 * status.
 */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)
#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        struct ferr ce_ = {0};                                                                     \
        int crc_ = (call);                                                                         \
        if (crc_ != 0) {                                                                           \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, crc_,        \
                    ce_.msg);                                                                      \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

/* A test that cannot run here is skipped, unless FERRY_NO_SKIP=1 (make check): then it fails,
 * as the e2e tests do, so a missing prerequisite never passes as green. */
static void skip_or_fail(const char *why)
{
    const char *no_skip = getenv("FERRY_NO_SKIP");
    if (no_skip && strcmp(no_skip, "1") == 0)
        fail_msg("cannot run here (%s) and FERRY_NO_SKIP=1", why);
    skip();
}

static void run_in_netns(void (*body)(void))
{
    if (geteuid() != 0)
        skip_or_fail("not root");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0) {
            fprintf(stderr, "unshare(CLONE_NEWNET): %s; skipping\n", strerror(errno));
            _exit(SKIP_STATUS);
        }
        if (access("/dev/net/tun", R_OK | W_OK) < 0) {
            fprintf(stderr, "/dev/net/tun: %s; skipping\n", strerror(errno));
            _exit(SKIP_STATUS);
        }
        body();
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS)
        skip_or_fail("no network namespace or /dev/net/tun");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("namespace child failed (status 0x%x)", (unsigned)status);
}

/* Link facts straight from the kernel, independent of the code under test. */
struct link_facts {
    bool found;
    char kind[16];
    int ifindex, master;
    unsigned flags, mtu;
};

static struct link_facts facts(const char *name)
{
    struct link_facts f = {0};
    struct nl_sock *sk = nl_socket_alloc();
    CHECK(sk && nl_connect(sk, NETLINK_ROUTE) == 0);
    struct rtnl_link *l;
    if (rtnl_link_get_kernel(sk, 0, name, &l) == 0) {
        f.found = true;
        snprintf(f.kind, sizeof(f.kind), "%s", rtnl_link_get_type(l) ? rtnl_link_get_type(l) : "");
        f.ifindex = rtnl_link_get_ifindex(l);
        f.master = rtnl_link_get_master(l);
        f.flags = rtnl_link_get_flags(l);
        f.mtu = rtnl_link_get_mtu(l);
        rtnl_link_put(l);
    }
    nl_socket_free(sk);
    return f;
}

static void make_bridge(const char *name, unsigned mtu)
{
    struct nl_sock *sk = nl_socket_alloc();
    CHECK(sk && nl_connect(sk, NETLINK_ROUTE) == 0);
    CHECK(rtnl_link_bridge_add(sk, name) == 0);
    struct rtnl_link *l, *change = rtnl_link_alloc();
    CHECK(rtnl_link_get_kernel(sk, 0, name, &l) == 0);
    rtnl_link_set_mtu(change, mtu);
    rtnl_link_set_flags(change, IFF_UP);
    CHECK(rtnl_link_change(sk, l, change, 0) == 0);
    rtnl_link_put(change);
    rtnl_link_put(l);
    nl_socket_free(sk);
}

static void body_bridge_exists(void)
{
    make_bridge("fybr0", 1500);
    struct ferr e = {0};
    CHECK(bridge_exists("fybr0", &e) == 1);
    CHECK(bridge_exists("lo", &e) == 0);    /* exists, but is no bridge */
    CHECK(bridge_exists("fybr9", &e) == 0); /* does not exist */
    CHECK(bridge_exists("bad name", &e) == FERR_INVALID);
    CHECK(bridge_exists("", &e) == FERR_INVALID);
}

static void test_bridge_exists(void **state)
{
    (void)state;
    run_in_netns(body_bridge_exists);
}

/* Sends one Ethernet frame into the tap as a guest would (writing to the tap fd), which the
 * host counts as received. */
static void send_guest_frame(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    CHECK(ioctl(fd, TUNSETIFF, &ifr) == 0);
    unsigned char frame[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* broadcast */
                               0x52, 0x54, 0x00, 0x12, 0x34, 0x56, /* guest MAC */
                               0x88, 0xb5};                        /* local experimental */
    CHECK(write(fd, frame, sizeof(frame)) == (ssize_t)sizeof(frame));
    close(fd);
}

static void body_tap_lifecycle(void)
{
    make_bridge("fybr0", 9000);
    struct link_facts br = facts("fybr0");
    CHECK(br.found);

    char name[16];
    tap_name_for("web-1", 0, name);
    CHECK_OK(tap_create(name, "fybr0", &ce_));
    struct link_facts t = facts(name);
    CHECK(t.found);
    CHECK(strcmp(t.kind, "tun") == 0);
    CHECK(t.master == br.ifindex);
    CHECK(t.flags & IFF_UP);
    CHECK(t.mtu == 9000); /* joined with the bridge's MTU */

    /* ferryd restarts: the same tap is reused, and still enslaved and up. */
    CHECK_OK(tap_create(name, "fybr0", &ce_));
    t = facts(name);
    CHECK(t.found && t.master == br.ifindex && (t.flags & IFF_UP));

    /* A reused tap moves to the bridge it is asked for. */
    make_bridge("fybr1", 1500);
    CHECK_OK(tap_create(name, "fybr1", &ce_));
    CHECK(facts(name).master == facts("fybr1").ifindex);

    /* Opened for a QEMU that cannot open it itself: with the flags QEMU asks for (a
     * virtio-net guest's offloads need IFF_VNET_HDR); while that QEMU holds it, nobody else
     * attaches. */
    int qfd = -1, other = -1;
    CHECK_OK(tap_open(name, &qfd, &ce_));
    struct ifreq got;
    memset(&got, 0, sizeof(got));
    CHECK(ioctl(qfd, TUNGETIFF, &got) == 0);
    CHECK((got.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)) ==
          (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR));
    CHECK(strcmp(got.ifr_name, name) == 0);
    struct ferr oe = {0};
    CHECK(tap_open(name, &other, &oe) == -EBUSY && other == -1);
    CHECK(strstr(oe.msg, name) != NULL);
    close(qfd);
    CHECK(facts(name).found); /* persistent: closing QEMU's copy keeps it */
    CHECK(tap_open("fy/x", &other, &oe) == FERR_INVALID);

    struct tap_stats s0, s1;
    CHECK_OK(tap_stats_read(name, &s0, &ce_));
    send_guest_frame(name);
    CHECK_OK(tap_stats_read(name, &s1, &ce_));
    CHECK(s1.rx_packets == s0.rx_packets + 1);
    CHECK(s1.rx_bytes == s0.rx_bytes + 60);
    CHECK(s1.tx_packets >= s0.tx_packets);

    CHECK_OK(tap_delete(name, &ce_));
    CHECK(!facts(name).found);
    /* Missing is fine. */
    CHECK_OK(tap_delete(name, &ce_));
    CHECK_OK(tap_delete("fynotthere", &ce_));

    struct ferr e = {0};
    CHECK(tap_stats_read(name, &s0, &e) == FERR_NOTFOUND);
    CHECK(strstr(e.msg, name) != NULL);
}

static void test_tap_lifecycle(void **state)
{
    (void)state;
    run_in_netns(body_tap_lifecycle);
}

static void body_tap_failures(void)
{
    make_bridge("fybr0", 1500);
    struct ferr e = {0};

    /* No such bridge: nothing is created. */
    CHECK(tap_create("fytest0", "fybr9", &e) == FERR_NOTFOUND);
    CHECK(strstr(e.msg, "bridge fybr9 does not exist") != NULL);
    CHECK(!facts("fytest0").found);

    /* "lo" is a link but no bridge. */
    CHECK(tap_create("fytest0", "lo", &e) == FERR_NOTFOUND);
    CHECK(!facts("fytest0").found);

    /* A name taken by something that is not a tap is neither reused nor deleted. */
    CHECK(tap_create("fybr0", "fybr0", &e) == FERR_EXISTS);
    CHECK(strstr(e.msg, "not a tap") != NULL);
    CHECK(tap_delete("fybr0", &e) == FERR_INVALID);
    CHECK(facts("fybr0").found);
    CHECK(tap_delete("lo", &e) == FERR_INVALID);

    /* Bad names never reach the kernel. */
    CHECK(tap_create("a-name-that-is-too-long", "fybr0", &e) == FERR_INVALID);
    CHECK(tap_create("fy/x", "fybr0", &e) == FERR_INVALID);
    CHECK(tap_create("fytest0", "", &e) == FERR_INVALID);
    CHECK(tap_delete("..", &e) == FERR_INVALID);
    CHECK(!facts("fytest0").found);

    /* Joining a bridge can fail after the tap exists: a bridge takes at most 1023 ports
     * (BR_MAX_PORTS - 1), so fill one up and the next tap_create must fail at the join step
     * and take its new tap away again. */
    make_bridge("fybr1", 1500);
    unsigned ports = 0;
    for (;;) {
        char n[16];
        snprintf(n, sizeof(n), "fyp%u", ports);
        if (tap_create(n, "fybr1", &e) != 0)
            break;
        CHECK(++ports <= 1100);
    }
    CHECK(ports == 1023);
    CHECK(strstr(e.msg, "join") != NULL);
    CHECK(!facts("fyp1023").found);
    CHECK(facts("fyp1022").found);
}

static void test_tap_failures(void **state)
{
    (void)state;
    run_in_netns(body_tap_failures);
}

static void test_tap_name_for(void **state)
{
    (void)state;
    char a[16], b[16], c[16], d[16];
    tap_name_for("web-1", 0, a);
    tap_name_for("web-1", 1, b);
    tap_name_for("web-2", 0, c);
    tap_name_for("a-name-that-is-sixty-three-characters-long-and-then-some-more-x", 7, d);
    assert_memory_equal(a, "fy", 2);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    assert_memory_equal(a, b, 10); /* one VM's taps share their hash part */
    assert_true(strlen(a) <= 15);
    assert_true(strlen(d) <= 15);
    char again[16];
    tap_name_for("web-1", 0, again);
    assert_string_equal(a, again);
    tap_name_for("web-1", 99999, again);
    assert_int_equal(strlen(again), 15);
}

static void test_bad_names_without_root(void **state)
{
    (void)state;
    struct ferr e = {0};
    struct tap_stats s;
    assert_int_equal(tap_create("", "br0", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "tap name"));
    assert_int_equal(tap_create("fy0", "br 0", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "bridge name"));
    assert_int_equal(tap_delete(NULL, &e), FERR_INVALID);
    assert_int_equal(tap_stats_read("0123456789abcdef", &s, &e), FERR_INVALID);
    assert_int_equal(bridge_exists("x\ny", &e), FERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tap_name_for),  cmocka_unit_test(test_bad_names_without_root),
        cmocka_unit_test(test_bridge_exists), cmocka_unit_test(test_tap_lifecycle),
        cmocka_unit_test(test_tap_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
