/* SPDX-License-Identifier: MIT */
/* ferry-probe recorder: collects the disk recorder's acks. */
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

void cmd_recorder_help(FILE *f)
{
    fprintf(f,
            "usage: ferry-probe recorder HOST [--port 7002] [--duration-s N] [--count N] [--json]\n"
            "Connects to the guest's recorder and collects its \"ACK <seq>\" lines until N\n"
            "seconds passed, N acks arrived, or SIGINT/SIGTERM (0 = no limit, the default).\n"
            "Reports acked_max, acked_count, first_acked, the longest gap between acks and\n"
            "last_ack_age_ms (how long before the end the last ack came). Exit 0 when a limit or signal\n"
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
    if (strncmp(line, "ACK ", 4) != 0 || probe_parse_u64(line + 4, 1, UINT64_MAX, &seq) < 0)
        return ferr_set(e, FERR_PROTO, "recorder sent a bad line: '%.40s'", line);
    if (a->count == 0)
        a->first = seq;
    else if (seq != a->max + 1)
        a->out_of_order++;
    if (seq > a->max)
        a->max = seq;
    a->count++;
    probe_gaps_note(&a->gaps, now);
    return 0;
}

/* Waits for a non-blocking connect to finish, or the deadline, or a stop signal. */
static int connect_wait(int fd, int sfd, const struct sockaddr_in *sa, uint64_t deadline,
                        struct ferr *e)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = sfd, .events = POLLIN}};
    int n;
    while ((n = poll(p, 2, probe_poll_timeout(deadline, probe_mono_ns()))) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return ferr_set(e, FERR_TIMEOUT, "connect %s:%u: timed out", inet_ntoa(sa->sin_addr),
                        ntohs(sa->sin_port));
    if (p[1].revents)
        return ferr_set(e, -EINTR, "connect %s:%u: interrupted", inet_ntoa(sa->sin_addr),
                        ntohs(sa->sin_port));
    return probe_tcp_connect_finish(fd, sa, e);
}

int cmd_recorder(int argc, char **argv)
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
        if (c == 'p' && probe_opt_u64("recorder", "--port", optarg, 1, 65535, &port))
            return EXIT_USAGE;
        if (c == 'd' &&
            probe_opt_u64("recorder", "--duration-s", optarg, 0, 30 * 86400, &duration_s))
            return EXIT_USAGE;
        if (c == 'c' && probe_opt_u64("recorder", "--count", optarg, 0, UINT32_MAX, &count))
            return EXIT_USAGE;
        int orc = probe_common_opt("recorder", c, &json, cmd_recorder_help);
        if (orc != PROBE_OPT_CONTINUE)
            return orc;
    }
    const char *host;
    struct sockaddr_in sa;
    int urc = probe_host_operand("recorder", argc, argv, (uint16_t)port, &host, &sa);
    if (urc)
        return urc;
    struct ferr e = {0};

    struct ack_stats a = {0};
    bool lost = false, pending;
    int fd = -1, sfd = probe_stop_signal_fd(&e);
    uint64_t start = probe_mono_ns(), end = duration_s ? start + duration_s * NS_PER_S : 0;
    a.gaps.start = start;
    if (sfd < 0)
        goto report;
    /* The recorder starts listening a moment after the guest answers probes: a refused
     * connection is retried for up to 10 s before it counts as a failure. */
    for (uint64_t give_up = start + 10 * NS_PER_S;;) {
        fd = probe_tcp_connect_start(&sa, &pending, &e);
        if (fd >= 0 && (!pending || connect_wait(fd, sfd, &sa, start + 15 * NS_PER_S, &e) == 0))
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (e.code != -ECONNREFUSED || probe_mono_ns() >= give_up) {
            lost = true;
            goto report;
        }
        struct pollfd sp = {.fd = sfd, .events = POLLIN};
        if (poll(&sp, 1, 100) > 0) {
            lost = true;
            goto report;
        }
    }
    start = probe_mono_ns();
    end = duration_s ? start + duration_s * NS_PER_S : 0;
    a.gaps.start = start;
    char buf[4096];
    size_t len = 0;
    bool done = false;
    while (!done) {
        uint64_t now = probe_mono_ns();
        if ((end && now >= end) || (count && a.count >= count))
            break;
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, probe_poll_timeout(end, now)) < 0 && errno != EINTR)
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
        now = probe_mono_ns();
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
report:; /* a label takes a statement, not a declaration (C11) */
    uint64_t stop = probe_mono_ns();
    if (json) {
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:I, s:o, s:I, s:f, s:o, s:f, s:b, s:o}", "host", host, "port",
            (json_int_t)port, "acked_count", (json_int_t)a.count, "acked_max", (json_int_t)a.max,
            "first_acked", a.count ? json_integer((json_int_t)a.first) : json_null(),
            "out_of_order", (json_int_t)a.out_of_order, "longest_gap_ms",
            probe_round1(probe_ns_to_ms(a.gaps.longest)), "last_ack_age_ms",
            a.gaps.last ? json_real(probe_round1(probe_ns_to_ms(stop - a.gaps.last))) : json_null(),
            "duration_s", probe_round1(probe_ns_to_ms(stop - start) / 1000.0), "connection_lost", lost,
            "error", e.code ? json_string(e.msg) : json_null());
        probe_print_json(j);
    } else {
        printf("recorder: acked %" PRIu64 " records, max seq %" PRIu64, a.count, a.max);
        if (a.count)
            printf(", first %" PRIu64 ", longest gap %.1f ms", a.first,
                   probe_ns_to_ms(a.gaps.longest));
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
