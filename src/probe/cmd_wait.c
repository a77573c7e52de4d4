/* SPDX-License-Identifier: MIT */
/* ferry-probe wait: until the guest's probe responder answers. */
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

void cmd_wait_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe wait HOST [--port 7000] [--timeout-s 60] [--json]\n"
               "Sends a UDP probe every 50 ms until the guest's probe responder answers.\n"
               "Exit 0 when answered, 1 on timeout, 2 on bad arguments.\n");
}

int cmd_wait(int argc, char **argv)
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
        if (c == 'p' && probe_opt_u64("wait", "--port", optarg, 1, 65535, &port))
            return EXIT_USAGE;
        if (c == 't' && probe_opt_u64("wait", "--timeout-s", optarg, 1, 86400, &timeout_s))
            return EXIT_USAGE;
        int orc = probe_common_opt("wait", c, &json, cmd_wait_help);
        if (orc != PROBE_OPT_CONTINUE)
            return orc;
    }
    const char *host;
    struct sockaddr_in sa;
    int urc = probe_host_operand("wait", argc, argv, (uint16_t)port, &host, &sa);
    if (urc)
        return urc;
    struct ferr e = {0};
    int sfd = probe_stop_signal_fd(&e);
    if (sfd < 0) {
        fprintf(stderr, "ferry-probe wait: %s\n", e.msg);
        return EXIT_FAIL;
    }
    int fd = probe_udp_socket(&sa, &e);
    if (fd < 0) {
        fprintf(stderr, "ferry-probe wait: %s\n", e.msg);
        close(sfd);
        return EXIT_FAIL;
    }
    uint64_t start = probe_mono_ns(), deadline = start + timeout_s * NS_PER_S, next_send = start;
    uint64_t sent = 0, now = start;
    bool answered = false, interrupted = false;
    while (!answered && !interrupted && (now = probe_mono_ns()) < deadline) {
        if (now >= next_send) {
            probe_send_probe(fd, ++sent); /* errors (no route yet, refused) just mean "not yet" */
            next_send = now + 50 * NS_PER_MS;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        uint64_t until = next_send < deadline ? next_send : deadline;
        if (poll(p, 2, probe_poll_timeout(until, probe_mono_ns())) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            interrupted = true;
        uint64_t seq, sns;
        int r;
        while ((r = probe_recv_probe(fd, &seq, &sns)) >= 0)
            if (r == 1 && seq >= 1 && seq <= sent)
                answered = true;
    }
    double elapsed_ms = probe_ns_to_ms(probe_mono_ns() - start);
    if (json) {
        probe_print_json(json_pack("{s:s, s:I, s:b, s:f, s:I}", "host", host, "port",
                                   (json_int_t)port, "answered", answered, "elapsed_ms",
                                   probe_round1(elapsed_ms), "sent", (json_int_t)sent));
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
