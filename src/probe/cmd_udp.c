/* SPDX-License-Identifier: MIT */
/* ferry-probe udp: UDP (and TCP echo) reachability over time, with gaps as a user sees them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "probe/probe.h"
#include "../../guest/tools/proto.h"

void cmd_udp_help(FILE *f)
{
    fprintf(f,
            "usage: ferry-probe udp HOST [--port 7000] [--interval-ms 1] [--duration-s N]\n"
            "                            [--tcp-port 7001] [--json]\n"
            "Sends sequence-numbered UDP probes every interval and records the replies;\n"
            "N=0 (the default) runs until SIGINT/SIGTERM. With --tcp-port it also holds one TCP\n"
            "echo connection, sending 8 bytes every 10 ms and checking the echo.\n"
            "Reports sent, received, lost, longest gap between replies (and when), gaps over\n"
            "50/100/300 ms and the age of the last reply. Exit 0 when the run completed, 1 on a\n"
            "local error, 2 on bad arguments.\n");
}

/* Grace after the last probe for replies still in flight, and for the TCP echo to drain. */
#define UDP_GRACE_NS (300 * NS_PER_MS)
#define TCP_GRACE_NS (1000 * NS_PER_MS)
#define TCP_TICK_NS (10 * NS_PER_MS)
#define TCP_MSG 8
#define TCP_MAX_BACKLOG (1 << 20)
#define TCP_CONNECT_NS (5 * NS_PER_S)

/* The TCP echo stream is the sequence of 8-byte big-endian counters 0, 1, 2, ...; this is
 * its byte at offset off, so neither side needs to keep what it sent. */
static unsigned char stream_byte(uint64_t off)
{
    uint64_t msg = off / TCP_MSG;
    return (unsigned char)(msg >> (8 * (TCP_MSG - 1 - off % TCP_MSG)));
}

struct tcp_echo {
    struct sockaddr_in sa;
    int fd;
    bool connecting, connected, failed;
    uint64_t connect_deadline;
    uint64_t tx_due; /* bytes the schedule wants sent */
    uint64_t tx_off; /* bytes sent */
    uint64_t rx_off; /* bytes echoed and checked */
    struct gaps gaps;
    struct ferr err;
};

static void tcp_fail(struct tcp_echo *t, int code, const char *what)
{
    if (t->failed)
        return;
    t->failed = true;
    ferr_set(&t->err, code, "%s after %" PRIu64 " bytes echoed", what, t->rx_off);
}

static void tcp_flush(struct tcp_echo *t)
{
    unsigned char buf[4096];
    while (t->connected && !t->failed && t->tx_off < t->tx_due) {
        size_t n = t->tx_due - t->tx_off < sizeof(buf) ? t->tx_due - t->tx_off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = stream_byte(t->tx_off + i);
        ssize_t w = send(t->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                tcp_fail(t, -errno, strerror(errno));
            return;
        }
        t->tx_off += (uint64_t)w;
    }
}

static void tcp_receive(struct tcp_echo *t, uint64_t now)
{
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = recv(t->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            tcp_fail(t, FERR_PROTO, "connection closed by the guest");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                tcp_fail(t, -errno, strerror(errno));
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (t->rx_off + (uint64_t)i >= t->tx_off ||
                buf[i] != stream_byte(t->rx_off + (uint64_t)i)) {
                t->rx_off += (uint64_t)i;
                tcp_fail(t, FERR_PROTO, "echo does not match what was sent");
                return;
            }
        }
        t->rx_off += (uint64_t)n;
        probe_gaps_note(&t->gaps, now);
    }
}

/* Handles poll events on the TCP socket. */
static void tcp_event(struct tcp_echo *t, short revents, uint64_t now)
{
    if (t->failed)
        return;
    if (t->connecting) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            return;
        t->connecting = false;
        if (probe_tcp_connect_finish(t->fd, &t->sa, &t->err) < 0) {
            t->failed = true;
            return;
        }
        t->connected = true;
        t->gaps.last = now; /* the first gap counts from the moment we could send */
        return;
    }
    if (revents & (POLLIN | POLLERR | POLLHUP))
        tcp_receive(t, now);
    if (revents & POLLOUT)
        tcp_flush(t);
}

static void tcp_tick(struct tcp_echo *t, uint64_t ticks, uint64_t now)
{
    if (t->connecting && now > t->connect_deadline) {
        t->connecting = false;
        t->failed = true;
        ferr_set(&t->err, FERR_TIMEOUT, "connect %s:%u: timed out", inet_ntoa(t->sa.sin_addr),
                 ntohs(t->sa.sin_port));
    }
    if (!t->connected || t->failed)
        return;
    if (t->tx_due - t->tx_off < TCP_MAX_BACKLOG)
        t->tx_due += ticks * TCP_MSG;
    tcp_flush(t);
}

/* Receipt bookkeeping for the UDP probes. */
struct udp_stats {
    uint64_t sent, received, duplicates, overruns;
    uint64_t rtt_sum, rtt_max;
    unsigned char *seen; /* bit per seq */
    size_t seen_bytes;
    struct gaps gaps;
};

static int seen_mark(struct udp_stats *u, uint64_t seq)
{
    size_t byte = (size_t)(seq / 8);
    if (byte >= u->seen_bytes) {
        size_t n = u->seen_bytes ? u->seen_bytes : 4096;
        while (n <= byte)
            n *= 2;
        unsigned char *p = realloc(u->seen, n);
        if (!p)
            return -ENOMEM;
        memset(p + u->seen_bytes, 0, n - u->seen_bytes);
        u->seen = p;
        u->seen_bytes = n;
    }
    unsigned char bit = (unsigned char)(1u << (seq % 8));
    if (u->seen[byte] & bit)
        return 1;
    u->seen[byte] |= bit;
    return 0;
}

static void udp_receive(struct udp_stats *u, int fd, uint64_t now)
{
    uint64_t seq, sns;
    int r;
    while ((r = probe_recv_probe(fd, &seq, &sns)) >= 0) {
        if (r == 0 || seq == 0 || seq > u->sent || sns > now)
            continue; /* not one of ours, or an ICMP error */
        int dup = seen_mark(u, seq);
        if (dup) {
            u->duplicates += dup > 0;
            continue;
        }
        u->received++;
        uint64_t rtt = now - sns;
        u->rtt_sum += rtt;
        if (rtt > u->rtt_max)
            u->rtt_max = rtt;
        probe_gaps_note(&u->gaps, now);
    }
}

struct udp_opts {
    const char *host;
    uint64_t port, interval_ms, duration_s, tcp_port;
    bool json;
    struct sockaddr_in sa; /* host resolved */
};

static void udp_report(const struct udp_opts *o, const struct udp_stats *u,
                       const struct tcp_echo *t, uint64_t start, uint64_t end)
{
    double longest = probe_ns_to_ms(u->gaps.longest),
           at = probe_ns_to_ms(u->gaps.longest_at) / 1000.0;
    /* Age when the run was told to end; replies that arrive during the grace count as 0. */
    double age = u->gaps.last && end > u->gaps.last ? probe_ns_to_ms(end - u->gaps.last) : 0;
    double rtt_avg = u->received ? probe_ns_to_ms(u->rtt_sum / u->received) : 0;
    uint64_t lost = u->sent - u->received;
    if (o->json) {
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:o, s:f, s:f, "
            "s:I}",
            "host", o->host, "port", (json_int_t)o->port, "interval_ms", (json_int_t)o->interval_ms,
            "duration_s", probe_round1(probe_ns_to_ms(end - start) / 1000.0), "sent",
            (json_int_t)u->sent, "received", (json_int_t)u->received, "lost", (json_int_t)lost,
            "duplicates", (json_int_t)u->duplicates, "longest_gap_ms", probe_round1(longest),
            "longest_gap_at_s", probe_round1(at), "gaps_over_50ms", (json_int_t)u->gaps.over[0],
            "gaps_over_100ms", (json_int_t)u->gaps.over[1], "gaps_over_300ms",
            (json_int_t)u->gaps.over[2], "last_reply_age_ms",
            u->gaps.last ? json_real(probe_round1(age)) : json_null(), "rtt_avg_ms",
            probe_round1(rtt_avg), "rtt_max_ms", probe_round1(probe_ns_to_ms(u->rtt_max)),
            "timer_overruns", (json_int_t)u->overruns);
        if (t) {
            bool survived = t->connected && !t->failed && t->rx_off > 0 && t->rx_off == t->tx_off;
            json_object_set_new(j, "tcp_port", json_integer((json_int_t)o->tcp_port));
            json_object_set_new(j, "tcp_connected", json_boolean(t->connected));
            json_object_set_new(j, "tcp_survived", json_boolean(survived));
            json_object_set_new(j, "tcp_longest_gap_ms",
                                json_real(probe_round1(probe_ns_to_ms(t->gaps.longest))));
            json_object_set_new(
                j, "tcp_longest_gap_at_s",
                json_real(probe_round1(probe_ns_to_ms(t->gaps.longest_at) / 1000.0)));
            json_object_set_new(j, "tcp_bytes_sent", json_integer((json_int_t)t->tx_off));
            json_object_set_new(j, "tcp_bytes_echoed", json_integer((json_int_t)t->rx_off));
            json_object_set_new(j, "tcp_error",
                                t->err.code ? json_string(t->err.msg) : json_null());
        }
        probe_print_json(j);
        return;
    }
    printf("udp: sent %" PRIu64 " received %" PRIu64 " lost %" PRIu64
           " longest-gap %.1f ms (at %.1f s)\n",
           u->sent, u->received, lost, longest, at);
    printf("udp: gaps >50ms %" PRIu64 " >100ms %" PRIu64 " >300ms %" PRIu64, u->gaps.over[0],
           u->gaps.over[1], u->gaps.over[2]);
    if (u->gaps.last)
        printf(", last reply %.1f ms ago, rtt avg %.2f ms max %.1f ms", age, rtt_avg,
               probe_ns_to_ms(u->rtt_max));
    printf("\n");
    if (t) {
        bool survived = t->connected && !t->failed && t->rx_off > 0 && t->rx_off == t->tx_off;
        printf("tcp: %s, %s, longest-gap %.1f ms, %" PRIu64 " of %" PRIu64 " bytes echoed%s%s\n",
               t->connected ? "connected" : "not connected",
               survived ? "survived" : "did not survive", probe_ns_to_ms(t->gaps.longest),
               t->rx_off, t->tx_off, t->err.code ? ": " : "", t->err.code ? t->err.msg : "");
    }
}

static int parse_udp_opts(int argc, char **argv, struct udp_opts *o)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"duration-s", required_argument, NULL, 'd'},
        {"tcp-port", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'p' && probe_opt_u64("udp", "--port", optarg, 1, 65535, &o->port))
            return EXIT_USAGE;
        if (c == 'i' && probe_opt_u64("udp", "--interval-ms", optarg, 1, 60000, &o->interval_ms))
            return EXIT_USAGE;
        if (c == 'd' && probe_opt_u64("udp", "--duration-s", optarg, 0, 30 * 86400, &o->duration_s))
            return EXIT_USAGE;
        if (c == 't' && probe_opt_u64("udp", "--tcp-port", optarg, 1, 65535, &o->tcp_port))
            return EXIT_USAGE;
        int orc = probe_common_opt("udp", c, &o->json, cmd_udp_help);
        if (orc != PROBE_OPT_CONTINUE)
            return orc == EXIT_OK ? -1 : orc;
    }
    return probe_host_operand("udp", argc, argv, (uint16_t)o->port, &o->host, &o->sa);
}

enum { PFD_SIG, PFD_SEND, PFD_UDP, PFD_TICK, PFD_TCP, PFD_N };

int cmd_udp(int argc, char **argv)
{
    struct udp_opts o = {.port = FERRY_PROBE_UDP_PORT, .interval_ms = 1};
    int rc = parse_udp_opts(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct ferr e = {0};
    struct sockaddr_in sa = o.sa;

    struct udp_stats u = {0};
    struct tcp_echo tcp = {.fd = -1}, *t = o.tcp_port ? &tcp : NULL;
    int fds[PFD_N] = {-1, -1, -1, -1, -1};
    rc = EXIT_FAIL;
    if ((fds[PFD_SIG] = probe_stop_signal_fd(&e)) < 0 ||
        (fds[PFD_UDP] = probe_udp_socket(&sa, &e)) < 0 ||
        (fds[PFD_SEND] = probe_periodic_timer(o.interval_ms * NS_PER_MS, &e)) < 0)
        goto out;
    uint64_t start = probe_mono_ns(), now = start;
    u.gaps.start = start;
    if (t) {
        tcp.sa = sa;
        tcp.sa.sin_port = htons((uint16_t)o.tcp_port);
        tcp.gaps.start = start;
        tcp.connect_deadline = start + TCP_CONNECT_NS;
        if ((fds[PFD_TICK] = probe_periodic_timer(TCP_TICK_NS, &e)) < 0)
            goto out;
        tcp.fd = probe_tcp_connect_start(&tcp.sa, &tcp.connecting, &tcp.err);
        if (tcp.fd < 0)
            tcp.failed = true;
        else
            tcp.connected = !tcp.connecting;
        fds[PFD_TCP] = tcp.fd;
    }
    uint64_t end = o.duration_s ? start + o.duration_s * NS_PER_S : 0, stop = 0;
    probe_send_probe(fds[PFD_UDP], ++u.sent);
    for (;;) {
        now = probe_mono_ns();
        if (!stop && end && now >= end)
            stop = now;
        /* After the stop, wait a little for replies and echoes still in flight. */
        uint64_t until = end;
        if (stop) {
            bool udp_done = u.received == u.sent || now >= stop + UDP_GRACE_NS;
            bool tcp_done = !t || t->failed || !t->connected || t->rx_off == t->tx_off ||
                            now >= stop + TCP_GRACE_NS;
            if (udp_done && tcp_done)
                break;
            until = stop + (udp_done ? TCP_GRACE_NS : UDP_GRACE_NS);
        }
        struct pollfd p[PFD_N];
        for (int i = 0; i < PFD_N; i++)
            p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (stop) {
            p[PFD_SEND].fd = -1;
            p[PFD_TICK].fd = -1;
        }
        if (t && (t->connecting || t->tx_off < t->tx_due))
            p[PFD_TCP].events |= POLLOUT;
        if (t && t->failed)
            p[PFD_TCP].fd = -1;
        if (poll(p, PFD_N, probe_poll_timeout(until, now)) < 0 && errno != EINTR) {
            ferr_set(&e, -errno, "poll: %s", strerror(errno));
            goto out;
        }
        now = probe_mono_ns();
        if (p[PFD_SIG].revents && !stop) {
            struct signalfd_siginfo si;
            if (read(fds[PFD_SIG], &si, sizeof(si)) > 0)
                stop = now;
        }
        if (p[PFD_UDP].revents)
            udp_receive(&u, fds[PFD_UDP], now);
        if (!stop && p[PFD_SEND].revents) {
            uint64_t n = probe_timer_take(fds[PFD_SEND]);
            if (n) {
                u.overruns += n - 1;
                probe_send_probe(fds[PFD_UDP], ++u.sent);
            }
        }
        if (t && p[PFD_TCP].revents)
            tcp_event(t, p[PFD_TCP].revents, now);
        if (t && !stop && p[PFD_TICK].revents)
            tcp_tick(t, probe_timer_take(fds[PFD_TICK]), now);
    }
    udp_report(&o, &u, t, start, stop);
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        fprintf(stderr, "ferry-probe udp: %s\n", e.msg);
    for (int i = 0; i < PFD_N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(u.seen);
    return rc;
}
