/* SPDX-License-Identifier: MIT */
/* Guest probe responder: UDP echo on 7000 and a many-connection TCP echo server on 7001. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

#define TCP_BUF 65536

/* One TCP echo connection: bytes read but not yet written back wait in buf. */
struct conn {
    int fd;
    size_t len; /* pending bytes in buf */
    size_t off; /* first pending byte */
    unsigned char buf[TCP_BUF];
};

struct responder {
    int udp_fd;
    int listen_fd;
    struct conn **conns;
    size_t nconns;
    size_t cap;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int bind_socket(int type, int port)
{
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        int big = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (type == SOCK_STREAM && listen(fd, 128) < 0)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Echoes every datagram waiting on the socket; never blocks. */
static void udp_drain(int fd)
{
    unsigned char buf[65536];
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        /* A full send buffer drops the echo, as a lossy network would. */
        (void)sendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&from, flen);
    }
}

static void conn_close(struct responder *r, size_t i)
{
    close(r->conns[i]->fd);
    free(r->conns[i]);
    r->conns[i] = r->conns[--r->nconns];
}

static void accept_all(struct responder *r)
{
    for (;;) {
        int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (r->nconns == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 16;
            struct conn **n = realloc(r->conns, ncap * sizeof(*n));
            if (!n) {
                close(fd);
                return;
            }
            r->conns = n;
            r->cap = ncap;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        r->conns[r->nconns++] = c;
    }
}

/* Moves bytes from the socket back to it. Returns -1 when the connection is finished. */
static int conn_service(struct conn *c)
{
    for (;;) {
        while (c->len > 0) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len, MSG_NOSIGNAL);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            c->off += (size_t)n;
            c->len -= (size_t)n;
        }
        c->off = 0;
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n == 0)
            return -1;
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        c->len = (size_t)n;
    }
}

static int run(struct responder *r)
{
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    while (!stop_requested) {
        size_t want = r->nconns + 2;
        if (want > pcap) {
            struct pollfd *n = realloc(pfds, want * 2 * sizeof(*n));
            if (!n) {
                fprintf(stderr, "ferry-guest: probe-responder: out of memory\n");
                free(pfds);
                return 1;
            }
            pfds = n;
            pcap = want * 2;
        }
        pfds[0] = (struct pollfd){.fd = r->udp_fd, .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        for (size_t i = 0; i < r->nconns; i++) {
            struct conn *c = r->conns[i];
            pfds[i + 2] = (struct pollfd){.fd = c->fd, .events = c->len ? POLLOUT : POLLIN};
        }
        size_t npoll = r->nconns + 2;
        if (poll(pfds, npoll, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "ferry-guest: probe-responder: poll: %s\n", strerror(errno));
            free(pfds);
            return 1;
        }
        if (pfds[0].revents)
            udp_drain(r->udp_fd);
        /* Walk backwards: conn_close moves the last connection into the freed slot. */
        for (size_t i = npoll - 2; i-- > 0;) {
            if (pfds[i + 2].revents && conn_service(r->conns[i]) < 0)
                conn_close(r, i);
        }
        if (pfds[1].revents)
            accept_all(r);
    }
    free(pfds);
    return 0;
}

int main(int argc, char **argv)
{
    int udp_port = FERRY_PROBE_UDP_PORT, tcp_port = FERRY_PROBE_TCP_PORT;
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: probe-responder [UDP_PORT [TCP_PORT]]\n"
               "Echoes UDP datagrams (default port %d) and TCP streams (default port %d).\n",
               FERRY_PROBE_UDP_PORT, FERRY_PROBE_TCP_PORT);
        return 0;
    }
    if (argc > 1)
        udp_port = atoi(argv[1]);
    if (argc > 2)
        tcp_port = atoi(argv[2]);
    if (udp_port <= 0 || udp_port > 65535 || tcp_port <= 0 || tcp_port > 65535) {
        fprintf(stderr, "ferry-guest: probe-responder: ports must be 1..65535\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct responder r = {.udp_fd = bind_socket(SOCK_DGRAM, udp_port)};
    if (r.udp_fd < 0) {
        fprintf(stderr, "ferry-guest: probe-responder: udp port %d: %s\n", udp_port,
                strerror(errno));
        return 1;
    }
    r.listen_fd = bind_socket(SOCK_STREAM, tcp_port);
    if (r.listen_fd < 0) {
        fprintf(stderr, "ferry-guest: probe-responder: tcp port %d: %s\n", tcp_port,
                strerror(errno));
        close(r.udp_fd);
        return 1;
    }
    int rc = run(&r);
    while (r.nconns)
        conn_close(&r, r.nconns - 1);
    free(r.conns);
    close(r.listen_fd);
    close(r.udp_fd);
    return rc;
}
