/* SPDX-License-Identifier: MIT */
/* ferry-probe memverify: asks the guest's memory verifier whether every page still holds what
 * was last written to it, after waiting for whole scans that began after the question. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "probe/probe.h"
#include "../../guest/tools/proto.h"

#define QUERY_EVERY_NS (100 * NS_PER_MS)

void cmd_memverify_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe memverify HOST [--port 7003] [--scans 2] [--timeout-s 60]\n"
               "                                  [--boot-id HEX] [--json]\n"
               "Asks the guest's memory verifier (workload memverify) for its counts, then waits\n"
               "until it has completed SCANS more verification scans of its whole working set, so\n"
               "at least SCANS-1 of them began after this command started (--scans 0: answer at\n"
               "once). The guest is clean when no page ever held anything but its last write and\n"
               "the verifier was not restarted (its boot id is --boot-id's, when given).\n"
               "Exit 0 when clean, 1 when not clean or the verifier did not answer, 2 on bad\n"
               "arguments.\n");
}

struct mv_opts {
    const char *host;
    uint64_t port, scans, timeout_s, boot_id;
    bool have_boot_id, json;
    struct sockaddr_in sa; /* host resolved */
};

static int parse_opts(int argc, char **argv, struct mv_opts *o)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"scans", required_argument, NULL, 's'},
        {"timeout-s", required_argument, NULL, 't'},
        {"boot-id", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct mv_opts){.port = FERRY_MEMVERIFY_PORT, .scans = 2, .timeout_s = 60};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (probe_opt_u64("memverify", "--port", optarg, 1, 65535, &o->port))
                return EXIT_USAGE;
            break;
        case 's':
            if (probe_opt_u64("memverify", "--scans", optarg, 0, 1000, &o->scans))
                return EXIT_USAGE;
            break;
        case 't':
            if (probe_opt_u64("memverify", "--timeout-s", optarg, 1, 86400, &o->timeout_s))
                return EXIT_USAGE;
            break;
        case 'b': {
            char *end;
            errno = 0;
            o->boot_id = strtoull(optarg, &end, 16);
            if (errno || !*optarg || *end || optarg[0] == '-')
                return probe_usage_error("memverify", "--boot-id: expected hex digits, got '%s'",
                                         optarg);
            o->have_boot_id = true;
            break;
        }
        default: {
            int orc = probe_common_opt("memverify", c, &o->json, cmd_memverify_help);
            if (orc != PROBE_OPT_CONTINUE)
                return orc == EXIT_OK ? -1 : orc;
        }
        }
    }
    return probe_host_operand("memverify", argc, argv, (uint16_t)o->port, &o->host, &o->sa);
}

static int send_query(int fd, uint64_t seq)
{
    struct memverify_query q = {.magic = htonl(MEMV_QUERY_MAGIC), .seq = htobe64(seq)};
    return send(fd, &q, sizeof(q), MSG_DONTWAIT) == (ssize_t)sizeof(q) ? 0 : -1;
}

/* Reads one datagram: 1 and *st (host byte order) for a status answering a query of ours
 * (seq in 1..sent), 0 for anything else, -1 when nothing is left to read. */
static int recv_status(int fd, uint64_t sent, struct memverify_status *st)
{
    struct memverify_status in;
    ssize_t n = recv(fd, &in, sizeof(in), MSG_DONTWAIT);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : 0;
    if (n != (ssize_t)sizeof(in) || ntohl(in.magic) != MEMV_STATUS_MAGIC ||
        ntohl(in.version) != MEMV_STATUS_VERSION)
        return 0;
    st->magic = MEMV_STATUS_MAGIC;
    st->version = MEMV_STATUS_VERSION;
    const uint64_t *src = &in.seq;
    uint64_t *dst = &st->seq;
    for (size_t k = 0; k < (sizeof(in) - 8) / 8; k++)
        dst[k] = be64toh(src[k]);
    return st->seq >= 1 && st->seq <= sent ? 1 : 0;
}

static void report(const struct mv_opts *o, bool answered, const struct memverify_status *first,
                   const struct memverify_status *st, bool scanned, bool restarted,
                   double elapsed_ms)
{
    bool clean = answered && scanned && !restarted && st->bad == 0;
    const char *verdict = !answered   ? "no answer from the verifier"
                          : restarted ? "the verifier restarted (new boot id): the guest rebooted"
                          : st->bad   ? "bad pages: guest memory lost writes"
                          : !scanned  ? "timed out before the scans completed"
                                      : "clean";
    char boot[17];
    snprintf(boot, sizeof(boot), "%016" PRIx64, answered ? st->boot_id : 0);
    if (o->json) {
        json_t *j =
            json_pack("{s:s, s:b, s:b, s:s, s:f}", "host", o->host, "answered", answered, "clean",
                      clean, "verdict", verdict, "elapsed_ms", probe_round1(elapsed_ms));
        if (answered) {
            json_object_set_new(j, "boot_id", json_string(boot));
            json_object_set_new(j, "restarted", json_boolean(restarted));
            json_object_set_new(j, "mb", json_integer((json_int_t)(st->pages / 256)));
            json_object_set_new(j, "uptime_ms", json_integer((json_int_t)st->uptime_ms));
            json_object_set_new(j, "write_rate_mb", json_integer((json_int_t)st->write_rate_mb));
            json_object_set_new(j, "writes", json_integer((json_int_t)st->writes));
            json_object_set_new(j, "scans", json_integer((json_int_t)st->scans));
            json_object_set_new(j, "scans_waited",
                                json_integer((json_int_t)(st->scans - first->scans)));
            json_object_set_new(j, "checked", json_integer((json_int_t)st->checked));
            json_object_set_new(j, "bad", json_integer((json_int_t)st->bad));
            json_object_set_new(j, "stale", json_integer((json_int_t)st->stale));
            json_object_set_new(j, "ahead", json_integer((json_int_t)st->ahead));
            json_object_set_new(j, "torn", json_integer((json_int_t)st->torn));
            json_object_set_new(j, "garbage", json_integer((json_int_t)st->garbage));
            if (st->bad) {
                json_object_set_new(j, "first_bad_page",
                                    json_integer((json_int_t)st->first_bad_page));
                json_object_set_new(j, "first_bad_scan",
                                    json_integer((json_int_t)st->first_bad_scan));
                json_object_set_new(j, "last_bad_scan",
                                    json_integer((json_int_t)st->last_bad_scan));
            }
        }
        probe_print_json(j);
        return;
    }
    if (!answered) {
        printf("memverify: %s: %s after %.1f s\n", o->host, verdict, elapsed_ms / 1000.0);
        return;
    }
    printf("memverify: %s: %s; %" PRIu64 " MB, %" PRIu64 " scans (%" PRIu64 " waited for), %" PRIu64
           " pages checked, %" PRIu64 " bad (stale %" PRIu64 ", ahead %" PRIu64 ", torn %" PRIu64
           ", garbage %" PRIu64 "), boot id %s\n",
           o->host, verdict, st->pages / 256, st->scans, st->scans - first->scans, st->checked,
           st->bad, st->stale, st->ahead, st->torn, st->garbage, boot);
}

int cmd_memverify(int argc, char **argv)
{
    struct mv_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct ferr e = {0};
    struct sockaddr_in sa = o.sa;
    int sfd = probe_stop_signal_fd(&e);
    if (sfd < 0) {
        fprintf(stderr, "ferry-probe memverify: %s\n", e.msg);
        return EXIT_FAIL;
    }
    int fd = probe_udp_socket(&sa, &e);
    if (fd < 0) {
        fprintf(stderr, "ferry-probe memverify: %s\n", e.msg);
        close(sfd);
        return EXIT_FAIL;
    }
    uint64_t start = probe_mono_ns(), deadline = start + o.timeout_s * NS_PER_S, next = start;
    uint64_t sent = 0, now;
    struct memverify_status first = {0}, st = {0};
    bool answered = false, scanned = false, restarted = false, interrupted = false;
    while (!scanned && !restarted && !interrupted && (now = probe_mono_ns()) < deadline) {
        if (now >= next) {
            send_query(fd, ++sent); /* errors (no route yet, refused) just mean "not yet" */
            next = now + QUERY_EVERY_NS;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, probe_poll_timeout(next < deadline ? next : deadline, probe_mono_ns())) <
                0 &&
            errno != EINTR)
            break;
        if (p[1].revents)
            interrupted = true;
        struct memverify_status got;
        int r;
        while ((r = recv_status(fd, sent, &got)) >= 0) {
            if (r == 0)
                continue;
            if (!answered) {
                first = got;
                answered = true;
            }
            if (got.boot_id != first.boot_id || (o.have_boot_id && got.boot_id != o.boot_id)) {
                restarted = true;
                st = got;
                break;
            }
            if (got.scans >= st.scans)
                st = got;
        }
        if (answered && st.scans >= first.scans + o.scans)
            scanned = true;
    }
    report(&o, answered, &first, &st, scanned, restarted, probe_ns_to_ms(probe_mono_ns() - start));
    close(fd);
    close(sfd);
    return answered && scanned && !restarted && st.bad == 0 ? EXIT_OK : EXIT_FAIL;
}
