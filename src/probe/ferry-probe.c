/* SPDX-License-Identifier: MIT */
/* ferry-probe: host-side client of the guest tools that measures what a VM's user would notice. */
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
#include "../../guest/tools/proto.h"

/* Exit codes shared by every subcommand. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* ---- small helpers shared by the subcommands ---------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static double ns_to_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* Rounds to one decimal so reports stay readable (jansson prints doubles in full). */
static double round1(double v)
{
    return (double)(int64_t)(v * 10.0 + (v < 0 ? -0.5 : 0.5)) / 10.0;
}

/* Prints "ferry-probe CMD: message" to stderr; returns EXIT_USAGE for `return usage_error()`. */
static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ferry-probe %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see ferry-probe %s --help)\n", cmd);
    return EXIT_USAGE;
}

/* Parses a whole decimal unsigned number within [min, max]. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return FERR_INVALID;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return FERR_INVALID;
    *out = v;
    return 0;
}

/* Parses an option value or prints why it is wrong. Returns 0 or EXIT_USAGE. */
static int opt_u64(const char *cmd, const char *opt, const char *val, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    if (parse_u64(val, min, max, out) == 0)
        return 0;
    return usage_error(cmd, "%s: expected a whole number %" PRIu64 "..%" PRIu64 ", got '%s'", opt,
                       min, max, val);
}

/* Resolves an IPv4 host name or address into sa (port set by the caller). */
static int resolve_host(const char *host, uint16_t port, struct sockaddr_in *sa, struct ferr *e)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return ferr_set(e, FERR_INVALID, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    *sa = *(struct sockaddr_in *)res->ai_addr;
    sa->sin_port = htons(port);
    freeaddrinfo(res);
    return 0;
}

/* Blocks SIGINT and SIGTERM and returns a signalfd that reports them, so every loop can stop
 * cleanly and still print its report. */
static int stop_signal_fd(struct ferr *e)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return ferr_set(e, -errno, "sigprocmask: %s", strerror(errno));
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "signalfd: %s", strerror(errno));
    return fd;
}

/* A periodic CLOCK_MONOTONIC timer whose first expiry is one period from now. */
static int periodic_timer(uint64_t period_ns, struct ferr *e)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "timerfd_create: %s", strerror(errno));
    struct itimerspec its = {
        .it_interval = {.tv_sec = (time_t)(period_ns / NS_PER_S),
                        .tv_nsec = (long)(period_ns % NS_PER_S)},
    };
    its.it_value = its.it_interval;
    if (timerfd_settime(fd, 0, &its, NULL) < 0) {
        int saved = errno;
        close(fd);
        return ferr_set(e, -saved, "timerfd_settime: %s", strerror(saved));
    }
    return fd;
}

/* Number of expirations since the last read; 0 if none. */
static uint64_t timer_take(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
        return 0;
    return n;
}

/* Poll timeout in ms until deadline (0 = none): rounded up, -1 for no deadline. */
static int poll_timeout(uint64_t deadline, uint64_t now)
{
    if (deadline == 0)
        return -1;
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Prints the JSON report on one line. Takes ownership of obj. */
static void print_json(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12));
    if (s) {
        printf("%s\n", s);
        free(s);
    }
    json_decref(obj);
    fflush(stdout);
}

/* Opens a TCP connection without blocking; *pending is true while connect is in progress. */
static int tcp_connect_start(const struct sockaddr_in *sa, bool *pending, struct ferr *e)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *pending = false;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        if (errno != EINPROGRESS) {
            int saved = errno;
            close(fd);
            return ferr_set(e, -saved, "connect %s:%u: %s", inet_ntoa(sa->sin_addr),
                            ntohs(sa->sin_port), strerror(saved));
        }
        *pending = true;
    }
    return fd;
}

/* Result of a non-blocking connect once the socket polled writable. */
static int tcp_connect_finish(int fd, const struct sockaddr_in *sa, struct ferr *e)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        return ferr_set(e, -err, "connect %s:%u: %s", inet_ntoa(sa->sin_addr), ntohs(sa->sin_port),
                        strerror(err));
    return 0;
}

/* Gaps between consecutive events (replies, echoes, acks), measured on receive times. */
struct gaps {
    uint64_t start;      /* run start, for "at" */
    uint64_t last;       /* time of the last event, 0 before the first */
    uint64_t longest;    /* longest gap seen */
    uint64_t longest_at; /* start of that gap, relative to start */
    uint64_t over[3];    /* gaps over 50, 100, 300 ms */
};

static const uint64_t gap_limits_ms[3] = {50, 100, 300};

static void gaps_note(struct gaps *g, uint64_t now)
{
    if (g->last) {
        uint64_t gap = now - g->last;
        if (gap > g->longest) {
            g->longest = gap;
            g->longest_at = g->last - g->start;
        }
        for (int i = 0; i < 3; i++)
            if (gap > gap_limits_ms[i] * NS_PER_MS)
                g->over[i]++;
    }
    g->last = now;
}

/* ---- wait ----------------------------------------------------------------------------------- */

static void wait_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe wait HOST [--port 7000] [--timeout-s 60] [--json]\n"
               "Sends a UDP probe every 50 ms until the guest's probe responder answers.\n"
               "Exit 0 when answered, 1 on timeout, 2 on bad arguments.\n");
}

static int send_probe(int fd, uint64_t seq)
{
    struct probe_pkt p = {
        .magic = htonl(PROBE_MAGIC), .seq = htobe64(seq), .send_ns = htobe64(mono_ns())};
    return send(fd, &p, sizeof(p), MSG_DONTWAIT) == (ssize_t)sizeof(p) ? 0 : -1;
}

/* Reads one datagram; returns 1 with seq and send time when it is one of our probes,
 * 0 for anything else, -1 when nothing is left to read. */
static int recv_probe(int fd, uint64_t *seq, uint64_t *send_ns)
{
    struct probe_pkt p;
    ssize_t n = recv(fd, &p, sizeof(p), MSG_DONTWAIT);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : 0;
    if (n != (ssize_t)sizeof(p) || ntohl(p.magic) != PROBE_MAGIC)
        return 0;
    *seq = be64toh(p.seq);
    *send_ns = be64toh(p.send_ns);
    return 1;
}

static int udp_socket(const struct sockaddr_in *sa, struct ferr *e)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "socket: %s", strerror(errno));
    int big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        int saved = errno;
        close(fd);
        return ferr_set(e, -saved, "connect udp %s:%u: %s", inet_ntoa(sa->sin_addr),
                        ntohs(sa->sin_port), strerror(saved));
    }
    return fd;
}

static int cmd_wait(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"timeout-s", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t port = FERRY_PROBE_UDP_PORT, timeout_s = 60;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'p' && opt_u64("wait", "--port", optarg, 1, 65535, &port))
            return EXIT_USAGE;
        if (c == 't' && opt_u64("wait", "--timeout-s", optarg, 1, 86400, &timeout_s))
            return EXIT_USAGE;
        if (c == 'j')
            json = true;
        if (c == 'h') {
            wait_help(stdout);
            return EXIT_OK;
        }
        if (c == '?')
            return usage_error("wait", "bad option");
    }
    if (argc - optind != 1)
        return usage_error("wait", "expected exactly one HOST");
    const char *host = argv[optind];
    struct ferr e = {0};
    struct sockaddr_in sa;
    if (resolve_host(host, (uint16_t)port, &sa, &e) < 0)
        return usage_error("wait", "%s", e.msg);
    int sfd = stop_signal_fd(&e);
    if (sfd < 0) {
        fprintf(stderr, "ferry-probe wait: %s\n", e.msg);
        return EXIT_FAIL;
    }
    int fd = udp_socket(&sa, &e);
    if (fd < 0) {
        fprintf(stderr, "ferry-probe wait: %s\n", e.msg);
        close(sfd);
        return EXIT_FAIL;
    }
    uint64_t start = mono_ns(), deadline = start + timeout_s * NS_PER_S, next_send = start;
    uint64_t sent = 0, now = start;
    bool answered = false, interrupted = false;
    while (!answered && !interrupted && (now = mono_ns()) < deadline) {
        if (now >= next_send) {
            send_probe(fd, ++sent); /* errors (no route yet, refused) just mean "not yet" */
            next_send = now + 50 * NS_PER_MS;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        uint64_t until = next_send < deadline ? next_send : deadline;
        if (poll(p, 2, poll_timeout(until, mono_ns())) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            interrupted = true;
        uint64_t seq, sns;
        int r;
        while ((r = recv_probe(fd, &seq, &sns)) >= 0)
            if (r == 1 && seq >= 1 && seq <= sent)
                answered = true;
    }
    double elapsed_ms = ns_to_ms(mono_ns() - start);
    if (json) {
        print_json(json_pack("{s:s, s:I, s:b, s:f, s:I}", "host", host, "port", (json_int_t)port,
                             "answered", answered, "elapsed_ms", round1(elapsed_ms), "sent",
                             (json_int_t)sent));
    } else if (answered) {
        printf("wait: %s answered after %.1f ms\n", host, elapsed_ms);
    } else {
        printf("wait: no answer from %s:%" PRIu64 " after %.1f s%s\n", host, port,
               elapsed_ms / 1000.0, interrupted ? " (interrupted)" : "");
    }
    close(fd);
    close(sfd);
    return answered ? EXIT_OK : EXIT_FAIL;
}

/* ---- udp (+ optional tcp echo) ------------------------------------------------------------- */

static void udp_help(FILE *f)
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
        gaps_note(&t->gaps, now);
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
        if (tcp_connect_finish(t->fd, &t->sa, &t->err) < 0) {
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
    while ((r = recv_probe(fd, &seq, &sns)) >= 0) {
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
        gaps_note(&u->gaps, now);
    }
}

struct udp_opts {
    const char *host;
    uint64_t port, interval_ms, duration_s, tcp_port;
    bool json;
};

static void udp_report(const struct udp_opts *o, const struct udp_stats *u,
                       const struct tcp_echo *t, uint64_t start, uint64_t end)
{
    double longest = ns_to_ms(u->gaps.longest), at = ns_to_ms(u->gaps.longest_at) / 1000.0;
    /* Age when the run was told to end; replies that arrive during the grace count as 0. */
    double age = u->gaps.last && end > u->gaps.last ? ns_to_ms(end - u->gaps.last) : 0;
    double rtt_avg = u->received ? ns_to_ms(u->rtt_sum / u->received) : 0;
    uint64_t lost = u->sent - u->received;
    if (o->json) {
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:o, s:f, s:f, "
            "s:I}",
            "host", o->host, "port", (json_int_t)o->port, "interval_ms", (json_int_t)o->interval_ms,
            "duration_s", round1(ns_to_ms(end - start) / 1000.0), "sent", (json_int_t)u->sent,
            "received", (json_int_t)u->received, "lost", (json_int_t)lost, "duplicates",
            (json_int_t)u->duplicates, "longest_gap_ms", round1(longest), "longest_gap_at_s",
            round1(at), "gaps_over_50ms", (json_int_t)u->gaps.over[0], "gaps_over_100ms",
            (json_int_t)u->gaps.over[1], "gaps_over_300ms", (json_int_t)u->gaps.over[2],
            "last_reply_age_ms", u->gaps.last ? json_real(round1(age)) : json_null(), "rtt_avg_ms",
            round1(rtt_avg), "rtt_max_ms", round1(ns_to_ms(u->rtt_max)), "timer_overruns",
            (json_int_t)u->overruns);
        if (t) {
            bool survived = t->connected && !t->failed && t->rx_off > 0 && t->rx_off == t->tx_off;
            json_object_set_new(j, "tcp_port", json_integer((json_int_t)o->tcp_port));
            json_object_set_new(j, "tcp_connected", json_boolean(t->connected));
            json_object_set_new(j, "tcp_survived", json_boolean(survived));
            json_object_set_new(j, "tcp_longest_gap_ms",
                                json_real(round1(ns_to_ms(t->gaps.longest))));
            json_object_set_new(j, "tcp_longest_gap_at_s",
                                json_real(round1(ns_to_ms(t->gaps.longest_at) / 1000.0)));
            json_object_set_new(j, "tcp_bytes_sent", json_integer((json_int_t)t->tx_off));
            json_object_set_new(j, "tcp_bytes_echoed", json_integer((json_int_t)t->rx_off));
            json_object_set_new(j, "tcp_error",
                                t->err.code ? json_string(t->err.msg) : json_null());
        }
        print_json(j);
        return;
    }
    printf("udp: sent %" PRIu64 " received %" PRIu64 " lost %" PRIu64
           " longest-gap %.1f ms (at %.1f s)\n",
           u->sent, u->received, lost, longest, at);
    printf("udp: gaps >50ms %" PRIu64 " >100ms %" PRIu64 " >300ms %" PRIu64, u->gaps.over[0],
           u->gaps.over[1], u->gaps.over[2]);
    if (u->gaps.last)
        printf(", last reply %.1f ms ago, rtt avg %.2f ms max %.1f ms", age, rtt_avg,
               ns_to_ms(u->rtt_max));
    printf("\n");
    if (t) {
        bool survived = t->connected && !t->failed && t->rx_off > 0 && t->rx_off == t->tx_off;
        printf("tcp: %s, %s, longest-gap %.1f ms, %" PRIu64 " of %" PRIu64 " bytes echoed%s%s\n",
               t->connected ? "connected" : "not connected",
               survived ? "survived" : "did not survive", ns_to_ms(t->gaps.longest), t->rx_off,
               t->tx_off, t->err.code ? ": " : "", t->err.code ? t->err.msg : "");
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
        if (c == 'p' && opt_u64("udp", "--port", optarg, 1, 65535, &o->port))
            return EXIT_USAGE;
        if (c == 'i' && opt_u64("udp", "--interval-ms", optarg, 1, 60000, &o->interval_ms))
            return EXIT_USAGE;
        if (c == 'd' && opt_u64("udp", "--duration-s", optarg, 0, 30 * 86400, &o->duration_s))
            return EXIT_USAGE;
        if (c == 't' && opt_u64("udp", "--tcp-port", optarg, 1, 65535, &o->tcp_port))
            return EXIT_USAGE;
        if (c == 'j')
            o->json = true;
        if (c == 'h') {
            udp_help(stdout);
            return -1;
        }
        if (c == '?')
            return usage_error("udp", "bad option");
    }
    if (argc - optind != 1)
        return usage_error("udp", "expected exactly one HOST");
    o->host = argv[optind];
    return 0;
}

enum { PFD_SIG, PFD_SEND, PFD_UDP, PFD_TICK, PFD_TCP, PFD_N };

static int cmd_udp(int argc, char **argv)
{
    struct udp_opts o = {.port = FERRY_PROBE_UDP_PORT, .interval_ms = 1};
    int rc = parse_udp_opts(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct ferr e = {0};
    struct sockaddr_in sa;
    if (resolve_host(o.host, (uint16_t)o.port, &sa, &e) < 0)
        return usage_error("udp", "%s", e.msg);

    struct udp_stats u = {0};
    struct tcp_echo tcp = {.fd = -1}, *t = o.tcp_port ? &tcp : NULL;
    int fds[PFD_N] = {-1, -1, -1, -1, -1};
    rc = EXIT_FAIL;
    if ((fds[PFD_SIG] = stop_signal_fd(&e)) < 0 || (fds[PFD_UDP] = udp_socket(&sa, &e)) < 0 ||
        (fds[PFD_SEND] = periodic_timer(o.interval_ms * NS_PER_MS, &e)) < 0)
        goto out;
    uint64_t start = mono_ns(), now = start;
    u.gaps.start = start;
    if (t) {
        tcp.sa = sa;
        tcp.sa.sin_port = htons((uint16_t)o.tcp_port);
        tcp.gaps.start = start;
        tcp.connect_deadline = start + TCP_CONNECT_NS;
        if ((fds[PFD_TICK] = periodic_timer(TCP_TICK_NS, &e)) < 0)
            goto out;
        tcp.fd = tcp_connect_start(&tcp.sa, &tcp.connecting, &tcp.err);
        if (tcp.fd < 0)
            tcp.failed = true;
        else
            tcp.connected = !tcp.connecting;
        fds[PFD_TCP] = tcp.fd;
    }
    uint64_t end = o.duration_s ? start + o.duration_s * NS_PER_S : 0, stop = 0;
    send_probe(fds[PFD_UDP], ++u.sent);
    for (;;) {
        now = mono_ns();
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
        if (poll(p, PFD_N, poll_timeout(until, now)) < 0 && errno != EINTR) {
            ferr_set(&e, -errno, "poll: %s", strerror(errno));
            goto out;
        }
        now = mono_ns();
        if (p[PFD_SIG].revents && !stop) {
            struct signalfd_siginfo si;
            if (read(fds[PFD_SIG], &si, sizeof(si)) > 0)
                stop = now;
        }
        if (p[PFD_UDP].revents)
            udp_receive(&u, fds[PFD_UDP], now);
        if (!stop && p[PFD_SEND].revents) {
            uint64_t n = timer_take(fds[PFD_SEND]);
            if (n) {
                u.overruns += n - 1;
                send_probe(fds[PFD_UDP], ++u.sent);
            }
        }
        if (t && p[PFD_TCP].revents)
            tcp_event(t, p[PFD_TCP].revents, now);
        if (t && !stop && p[PFD_TICK].revents)
            tcp_tick(t, timer_take(fds[PFD_TICK]), now);
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

/* ---- recorder ------------------------------------------------------------------------------ */

static void recorder_help(FILE *f)
{
    fprintf(f,
            "usage: ferry-probe recorder HOST [--port 7002] [--duration-s N] [--count N] [--json]\n"
            "Connects to the guest's recorder and collects its \"ACK <seq>\" lines until N\n"
            "seconds passed, N acks arrived, or SIGINT/SIGTERM (0 = no limit, the default).\n"
            "Reports acked_max, acked_count and first_acked. Exit 0 when a limit or signal\n"
            "ended the run, 1 when the connection failed or was lost, 2 on bad arguments.\n"
            "A refused connection is retried for up to 10 s (the recorder starts listening a\n"
            "moment after the guest answers probes); the duration counts from the connection.\n");
}

struct ack_stats {
    uint64_t count, max, first, out_of_order;
    struct gaps gaps;
};

/* Parses one "ACK <seq>" line. */
static int ack_line(struct ack_stats *a, const char *line, uint64_t now, struct ferr *e)
{
    uint64_t seq;
    if (strncmp(line, "ACK ", 4) != 0 || parse_u64(line + 4, 1, UINT64_MAX, &seq) < 0)
        return ferr_set(e, FERR_PROTO, "recorder sent a bad line: '%.40s'", line);
    if (a->count == 0)
        a->first = seq;
    else if (seq != a->max + 1)
        a->out_of_order++;
    if (seq > a->max)
        a->max = seq;
    a->count++;
    gaps_note(&a->gaps, now);
    return 0;
}

/* Waits for a non-blocking connect to finish, or the deadline, or a stop signal. */
static int connect_wait(int fd, int sfd, const struct sockaddr_in *sa, uint64_t deadline,
                        struct ferr *e)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = sfd, .events = POLLIN}};
    int n;
    while ((n = poll(p, 2, poll_timeout(deadline, mono_ns()))) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return ferr_set(e, FERR_TIMEOUT, "connect %s:%u: timed out", inet_ntoa(sa->sin_addr),
                        ntohs(sa->sin_port));
    if (p[1].revents)
        return ferr_set(e, -EINTR, "connect %s:%u: interrupted", inet_ntoa(sa->sin_addr),
                        ntohs(sa->sin_port));
    return tcp_connect_finish(fd, sa, e);
}

static int cmd_recorder(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},  {"duration-s", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    uint64_t port = FERRY_RECORDER_PORT, duration_s = 0, count = 0;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'p' && opt_u64("recorder", "--port", optarg, 1, 65535, &port))
            return EXIT_USAGE;
        if (c == 'd' && opt_u64("recorder", "--duration-s", optarg, 0, 30 * 86400, &duration_s))
            return EXIT_USAGE;
        if (c == 'c' && opt_u64("recorder", "--count", optarg, 0, UINT32_MAX, &count))
            return EXIT_USAGE;
        if (c == 'j')
            json = true;
        if (c == 'h') {
            recorder_help(stdout);
            return EXIT_OK;
        }
        if (c == '?')
            return usage_error("recorder", "bad option");
    }
    if (argc - optind != 1)
        return usage_error("recorder", "expected exactly one HOST");
    const char *host = argv[optind];
    struct ferr e = {0};
    struct sockaddr_in sa;
    if (resolve_host(host, (uint16_t)port, &sa, &e) < 0)
        return usage_error("recorder", "%s", e.msg);

    struct ack_stats a = {0};
    bool lost = false, pending;
    int fd = -1, sfd = stop_signal_fd(&e);
    uint64_t start = mono_ns(), end = duration_s ? start + duration_s * NS_PER_S : 0;
    a.gaps.start = start;
    if (sfd < 0)
        goto report;
    /* The recorder starts listening a moment after the guest answers probes: a refused
     * connection is retried for up to 10 s before it counts as a failure. */
    for (uint64_t give_up = start + 10 * NS_PER_S;;) {
        fd = tcp_connect_start(&sa, &pending, &e);
        if (fd >= 0 && (!pending || connect_wait(fd, sfd, &sa, start + 15 * NS_PER_S, &e) == 0))
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (e.code != -ECONNREFUSED || mono_ns() >= give_up) {
            lost = true;
            goto report;
        }
        struct pollfd sp = {.fd = sfd, .events = POLLIN};
        if (poll(&sp, 1, 100) > 0) {
            lost = true;
            goto report;
        }
    }
    start = mono_ns();
    end = duration_s ? start + duration_s * NS_PER_S : 0;
    a.gaps.start = start;
    char buf[4096];
    size_t len = 0;
    bool done = false;
    while (!done) {
        uint64_t now = mono_ns();
        if ((end && now >= end) || (count && a.count >= count))
            break;
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, poll_timeout(end, now)) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!p[0].revents)
            continue;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
            ferr_set(&e, n == 0 ? FERR_PROTO : -errno, "connection to %s:%" PRIu64 " %s", host,
                     port, n == 0 ? "closed by the guest" : strerror(errno));
            lost = true;
            break;
        }
        if (n < 0)
            continue;
        len += (size_t)n;
        buf[len] = '\0';
        char *line = buf, *nl;
        now = mono_ns();
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            if (ack_line(&a, line, now, &e) < 0) {
                lost = done = true;
                break;
            }
            line = nl + 1;
            if (count && a.count >= count) {
                done = true;
                break;
            }
        }
        len -= (size_t)(line - buf);
        memmove(buf, line, len);
        if (len == sizeof(buf) - 1) {
            ferr_set(&e, FERR_PROTO, "recorder sent a line longer than %zu bytes", len);
            lost = true;
            break;
        }
    }
report:
    if (json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:o, s:I, s:f, s:f, s:b, s:o}", "host", host,
                              "port", (json_int_t)port, "acked_count", (json_int_t)a.count,
                              "acked_max", (json_int_t)a.max, "first_acked",
                              a.count ? json_integer((json_int_t)a.first) : json_null(),
                              "out_of_order", (json_int_t)a.out_of_order, "longest_gap_ms",
                              round1(ns_to_ms(a.gaps.longest)), "duration_s",
                              round1(ns_to_ms(mono_ns() - start) / 1000.0), "connection_lost", lost,
                              "error", e.code ? json_string(e.msg) : json_null());
        print_json(j);
    } else {
        printf("recorder: acked %" PRIu64 " records, max seq %" PRIu64, a.count, a.max);
        if (a.count)
            printf(", first %" PRIu64 ", longest gap %.1f ms", a.first, ns_to_ms(a.gaps.longest));
        printf("\n");
    }
    if (e.code)
        fprintf(stderr, "ferry-probe recorder: %s\n", e.msg);
    if (fd >= 0)
        close(fd);
    if (sfd >= 0)
        close(sfd);
    return lost || sfd < 0 ? EXIT_FAIL : EXIT_OK;
}

/* ---- verify-disk --------------------------------------------------------------------------- */

static void verify_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe verify-disk PATH [--acked N] [--offset BYTES] [--json]\n"
               "Reads the recorder's records from a disk image (raw or fixed VHD: data at offset\n"
               "0) and reports valid records, the highest seq and the first missing or bad seq\n"
               "below it. With --acked N, exit 1 unless every seq 1..N is present and valid.\n"
               "Exit 2 on bad arguments or an unreadable file.\n");
}

struct disk_scan {
    uint64_t blocks, valid, max_seq, first_bad, corrupt, misplaced, boots, last_boot;
    uint64_t *bad; /* seqs of the not-valid blocks seen so far below the running max */
    size_t nbad, badcap;
};

/* Records block b; a block that is not a correctly placed valid record becomes a candidate
 * "first bad" if a valid record turns up after it. */
static int scan_block(struct disk_scan *d, uint64_t b, const unsigned char *rec)
{
    uint64_t seq = 0, boot = 0;
    enum record_state st = record_check(rec, &seq, &boot);
    d->blocks++;
    if (st == RECORD_VALID && seq == b + 1) {
        d->valid++;
        d->max_seq = seq;
        if (d->boots == 0 || boot != d->last_boot)
            d->boots++;
        d->last_boot = boot;
        if (d->nbad && !d->first_bad)
            d->first_bad = d->bad[0];
        return 0;
    }
    if (st == RECORD_VALID)
        d->misplaced++;
    else if (st == RECORD_BAD_CRC)
        d->corrupt++;
    if (d->first_bad || d->nbad)
        return 0; /* only the first hole matters */
    if (d->nbad == d->badcap) {
        size_t n = d->badcap ? d->badcap * 2 : 16;
        uint64_t *p = realloc(d->bad, n * sizeof(*p));
        if (!p)
            return -ENOMEM;
        d->bad = p;
        d->badcap = n;
    }
    d->bad[d->nbad++] = b + 1;
    return 0;
}

static int scan_disk(int fd, uint64_t offset, struct disk_scan *d, struct ferr *e)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return ferr_set(e, -ENOMEM, "out of memory");
    uint64_t b = 0, pos = offset;
    int rc = 0;
    for (;;) {
        size_t have = 0;
        while (have < CHUNK) {
            ssize_t n = pread(fd, buf + have, CHUNK - have, (off_t)(pos + have));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = ferr_set(e, -errno, "read at byte %" PRIu64 ": %s", pos + have,
                              strerror(errno));
                goto out;
            }
            if (n == 0)
                break;
            have += (size_t)n;
        }
        for (size_t off = 0; off + RECORD_SIZE <= have; off += RECORD_SIZE, b++)
            if (scan_block(d, b, buf + off) < 0) {
                rc = ferr_set(e, -ENOMEM, "out of memory");
                goto out;
            }
        if (have < CHUNK)
            break;
        pos += CHUNK;
    }
out:
    free(buf);
    return rc;
}

static int cmd_verify_disk(int argc, char **argv)
{
    static const struct option opts[] = {
        {"acked", required_argument, NULL, 'a'},
        {"offset", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t acked = 0, offset = 0;
    bool have_acked = false, json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'a') {
            if (opt_u64("verify-disk", "--acked", optarg, 0, UINT64_MAX / RECORD_SIZE, &acked))
                return EXIT_USAGE;
            have_acked = true;
        }
        if (c == 'o' && opt_u64("verify-disk", "--offset", optarg, 0, INT64_MAX, &offset))
            return EXIT_USAGE;
        if (c == 'j')
            json = true;
        if (c == 'h') {
            verify_help(stdout);
            return EXIT_OK;
        }
        if (c == '?')
            return usage_error("verify-disk", "bad option");
    }
    if (argc - optind != 1)
        return usage_error("verify-disk", "expected exactly one PATH");
    const char *path = argv[optind];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return usage_error("verify-disk", "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd);
        return usage_error("verify-disk", "%s is not a regular file or block device", path);
    }
    struct disk_scan d = {0};
    struct ferr e = {0};
    if (scan_disk(fd, offset, &d, &e) < 0) {
        fprintf(stderr, "ferry-probe verify-disk: %s: %s\n", path, e.msg);
        close(fd);
        free(d.bad);
        return EXIT_FAIL;
    }
    close(fd);
    free(d.bad);
    /* Every seq 1..acked must be a valid record in its own block. */
    bool acked_ok = acked <= d.max_seq && (!d.first_bad || d.first_bad > acked);
    uint64_t acked_missing = 0;
    if (have_acked && !acked_ok)
        acked_missing = d.first_bad && d.first_bad <= acked ? d.first_bad : d.max_seq + 1;
    if (json) {
        json_t *j =
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I}", "path", path, "offset",
                      (json_int_t)offset, "blocks", (json_int_t)d.blocks, "records_valid",
                      (json_int_t)d.valid, "max_seq", (json_int_t)d.max_seq, "first_bad",
                      d.first_bad ? json_integer((json_int_t)d.first_bad) : json_null(), "corrupt",
                      (json_int_t)d.corrupt, "misplaced", (json_int_t)d.misplaced, "boots",
                      (json_int_t)d.boots);
        if (have_acked) {
            json_object_set_new(j, "acked", json_integer((json_int_t)acked));
            json_object_set_new(j, "acked_ok", json_boolean(acked_ok));
            json_object_set_new(j, "acked_first_missing",
                                acked_missing ? json_integer((json_int_t)acked_missing)
                                              : json_null());
        }
        print_json(j);
    } else {
        printf("verify-disk: %" PRIu64 " valid records, max seq %" PRIu64 ", ", d.valid, d.max_seq);
        if (d.first_bad)
            printf("first bad seq %" PRIu64, d.first_bad);
        else
            printf("no gap");
        printf(", %" PRIu64 " boot(s)\n", d.boots);
        if (have_acked && acked_ok)
            printf("verify-disk: all %" PRIu64 " acked records present\n", acked);
        else if (have_acked)
            printf("verify-disk: acked seq %" PRIu64 " is missing or bad (acked up to %" PRIu64
                   ")\n",
                   acked_missing, acked);
    }
    return have_acked && !acked_ok ? EXIT_FAIL : EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(FILE *f);
};

static const struct command commands[] = {
    {"wait", "wait until the guest answers UDP probes", cmd_wait, wait_help},
    {"udp", "measure UDP (and TCP) reachability over time", cmd_udp, udp_help},
    {"recorder", "collect the disk recorder's acks", cmd_recorder, recorder_help},
    {"verify-disk", "check recorder records in a disk image", cmd_verify_disk, verify_help},
};

static void main_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe COMMAND [ARGS] [--json]\n"
               "Host-side client of ferry's guest tools.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'ferry-probe COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_help(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            opterr = 1;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "ferry-probe: unknown command '%s'\n", argv[1]);
    main_help(stderr);
    return EXIT_USAGE;
}
