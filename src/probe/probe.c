/* SPDX-License-Identifier: MIT */
/* ferry-probe's shared parts: option parsing, clocks, sockets, reports and gap bookkeeping. */
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

uint64_t probe_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

double probe_ns_to_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* Rounds to one decimal so reports stay readable (jansson prints doubles in full). */
double probe_round1(double v)
{
    return (double)(int64_t)(v * 10.0 + (v < 0 ? -0.5 : 0.5)) / 10.0;
}

/* Prints "ferry-probe CMD: message" to stderr; returns EXIT_USAGE for `return probe_usage_error()`.
 */
int probe_usage_error(const char *cmd, const char *fmt, ...)
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
int probe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    /* Only a digit may come first: strtoull would skip blanks and then take a sign. */
    if (!s || !(*s >= '0' && *s <= '9'))
        return FERR_INVALID;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return FERR_INVALID;
    *out = v;
    return 0;
}

/* Parses an option value or prints why it is wrong. Returns 0 or EXIT_USAGE. */
int probe_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t min, uint64_t max,
                  uint64_t *out)
{
    if (probe_parse_u64(val, min, max, out) == 0)
        return 0;
    return probe_usage_error(cmd, "%s: expected a whole number %" PRIu64 "..%" PRIu64 ", got '%s'",
                             opt, min, max, val);
}

int probe_common_opt(const char *cmd, int c, bool *json, void (*help)(FILE *f))
{
    switch (c) {
    case 'j':
        *json = true;
        return PROBE_OPT_CONTINUE;
    case 'h':
        help(stdout);
        return EXIT_OK;
    case '?':
        return probe_usage_error(cmd, "bad option");
    default:
        return PROBE_OPT_CONTINUE;
    }
}

int probe_operand(const char *cmd, int argc, char **argv, const char *what, const char **out)
{
    if (argc - optind != 1)
        return probe_usage_error(cmd, "expected exactly one %s", what);
    *out = argv[optind];
    return 0;
}

int probe_host_operand(const char *cmd, int argc, char **argv, uint16_t port, const char **host,
                       struct sockaddr_in *sa)
{
    struct ferr e = {0};
    int rc = probe_operand(cmd, argc, argv, "HOST", host);
    if (rc == 0 && probe_resolve_host(*host, port, sa, &e) < 0)
        rc = probe_usage_error(cmd, "%s", e.msg);
    return rc;
}

/* Resolves an IPv4 host name or address into sa (port set by the caller). */
int probe_resolve_host(const char *host, uint16_t port, struct sockaddr_in *sa, struct ferr *e)
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
int probe_stop_signal_fd(struct ferr *e)
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
int probe_periodic_timer(uint64_t period_ns, struct ferr *e)
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
uint64_t probe_timer_take(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
        return 0;
    return n;
}

/* Poll timeout in ms until deadline (0 = none): rounded up, -1 for no deadline. */
int probe_poll_timeout(uint64_t deadline, uint64_t now)
{
    if (deadline == 0)
        return -1;
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Prints the JSON report on one line. Takes ownership of obj. */
void probe_print_json(json_t *obj)
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
int probe_tcp_connect_start(const struct sockaddr_in *sa, bool *pending, struct ferr *e)
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
int probe_tcp_connect_finish(int fd, const struct sockaddr_in *sa, struct ferr *e)
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

const uint64_t probe_gap_limits_ms[3] = {50, 100, 300};

void probe_gaps_note(struct gaps *g, uint64_t now)
{
    if (g->last) {
        uint64_t gap = now - g->last;
        if (gap > g->longest) {
            g->longest = gap;
            g->longest_at = g->last - g->start;
        }
        for (int i = 0; i < 3; i++)
            if (gap > probe_gap_limits_ms[i] * NS_PER_MS)
                g->over[i]++;
    }
    g->last = now;
}

int probe_send_probe(int fd, uint64_t seq)
{
    struct probe_pkt p = {
        .magic = htonl(PROBE_MAGIC), .seq = htobe64(seq), .send_ns = htobe64(probe_mono_ns())};
    return send(fd, &p, sizeof(p), MSG_DONTWAIT) == (ssize_t)sizeof(p) ? 0 : -1;
}

/* Reads one datagram; returns 1 with seq and send time when it is one of our probes,
 * 0 for anything else, -1 when nothing is left to read. */
int probe_recv_probe(int fd, uint64_t *seq, uint64_t *send_ns)
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

int probe_udp_socket(const struct sockaddr_in *sa, struct ferr *e)
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
