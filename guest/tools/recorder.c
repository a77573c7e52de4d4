/* SPDX-License-Identifier: MIT */
/* Guest disk recorder: writes numbered records with O_DIRECT|O_DSYNC and acks each on TCP 7002. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define SCAN_CHUNK (1024 * 1024)
/* The scan stops after this many blocks (64 MiB) without a valid record past the last one:
 * records only ever advance one block at a time, and a full scan of a big disk under TCG
 * would cost seconds per GiB. ferry-probe verify-disk always reads the whole image. */
#define SCAN_GIVE_UP_BLOCKS 16384
#define MAX_CLIENTS 64
#define OPEN_WAIT_MS 10000

struct recorder {
    const char *dev;
    int port;
    int interval_ms;
    int dev_fd;
    int listen_fd;
    uint64_t nblocks;  /* whole records that fit on the device */
    uint64_t next_seq; /* seq of the next record; it goes to block next_seq - 1 */
    uint64_t boot_id;
    unsigned char *rec; /* RECORD_SIZE bytes, aligned for O_DIRECT */
    int clients[MAX_CLIENTS];
    int nclients;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A random id for this start of the recorder, so readers can tell boots apart. */
static uint64_t make_boot_id(void)
{
    uint64_t id = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &id, sizeof(id)) != (ssize_t)sizeof(id))
            id = 0;
        close(fd);
    }
    if (id == 0)
        id = wall_ns() ^ ((uint64_t)getpid() << 32);
    return id;
}

static int listen_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Opens the device for direct synchronous writes; waits a little for it to appear. */
static int open_device(struct recorder *r)
{
    uint64_t deadline = mono_ms() + OPEN_WAIT_MS;
    for (;;) {
        r->dev_fd = open(r->dev, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
        if (r->dev_fd >= 0)
            break;
        if (errno != ENOENT || mono_ms() > deadline) {
            fprintf(stderr, "ferry-guest: recorder: open %s: %s\n", r->dev, strerror(errno));
            return -1;
        }
        usleep(100 * 1000);
    }
    struct stat st;
    uint64_t size = 0;
    if (fstat(r->dev_fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        if (ioctl(r->dev_fd, BLKGETSIZE64, &size) < 0)
            size = 0;
    } else if (fstat(r->dev_fd, &st) == 0) {
        size = (uint64_t)st.st_size;
    }
    r->nblocks = size / RECORD_SIZE;
    if (r->nblocks == 0) {
        fprintf(stderr, "ferry-guest: recorder: %s is smaller than one record (%d bytes)\n", r->dev,
                RECORD_SIZE);
        return -1;
    }
    return 0;
}

/* Finds the highest valid record on the device (record seq N must sit in block N-1) and sets
 * next_seq after it, so a restart never overwrites a record that may have been acked. Holes
 * below it are reported, not repaired. */
static int scan_device(struct recorder *r)
{
    unsigned char *buf;
    if (posix_memalign((void **)&buf, RECORD_SIZE, SCAN_CHUNK) != 0) {
        fprintf(stderr, "ferry-guest: recorder: out of memory\n");
        return -1;
    }
    uint64_t max_seq = 0, valid = 0, blocks_per_chunk = SCAN_CHUNK / RECORD_SIZE;
    for (uint64_t b = 0; b < r->nblocks; b += blocks_per_chunk) {
        uint64_t n = r->nblocks - b < blocks_per_chunk ? r->nblocks - b : blocks_per_chunk;
        ssize_t got = pread(r->dev_fd, buf, n * RECORD_SIZE, (off_t)(b * RECORD_SIZE));
        if (got < 0) {
            fprintf(stderr, "ferry-guest: recorder: read %s at block %llu: %s\n", r->dev,
                    (unsigned long long)b, strerror(errno));
            free(buf);
            return -1;
        }
        for (uint64_t i = 0; i < (uint64_t)got / RECORD_SIZE; i++) {
            uint64_t seq;
            if (record_check(buf + i * RECORD_SIZE, &seq, NULL) == RECORD_VALID &&
                seq == b + i + 1) {
                valid++;
                max_seq = seq;
            }
        }
        if ((uint64_t)got < n * RECORD_SIZE || b + n >= max_seq + SCAN_GIVE_UP_BLOCKS)
            break;
    }
    free(buf);
    r->next_seq = max_seq + 1;
    printf("ferry-guest: recorder %s: %llu blocks, %llu records found", r->dev,
           (unsigned long long)r->nblocks, (unsigned long long)valid);
    if (valid != max_seq)
        printf(" (%llu missing below %llu)", (unsigned long long)(max_seq - valid),
               (unsigned long long)max_seq);
    printf(", next seq %llu\n", (unsigned long long)r->next_seq);
    fflush(stdout);
    return 0;
}

static void client_drop(struct recorder *r, int i)
{
    close(r->clients[i]);
    r->clients[i] = r->clients[--r->nclients];
}

static void accept_clients(struct recorder *r)
{
    for (;;) {
        int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (r->nclients == MAX_CLIENTS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        r->clients[r->nclients++] = fd;
    }
}

/* Sends the ack line to every client. A client that cannot take a whole line right now is
 * dropped, because a partial line would corrupt its stream. */
static void ack_all(struct recorder *r, uint64_t seq)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "ACK %llu\n", (unsigned long long)seq);
    for (int i = r->nclients; i-- > 0;) {
        ssize_t n = send(r->clients[i], line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != len)
            client_drop(r, i);
    }
}

/* Reads and discards what clients send; drops the ones that hung up. */
static void service_clients(struct recorder *r, const struct pollfd *pfds, int n)
{
    for (int i = n; i-- > 0;) {
        if (!pfds[i].revents)
            continue;
        char buf[512];
        ssize_t got = recv(r->clients[i], buf, sizeof(buf), 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
            client_drop(r, i);
    }
}

/* Writes the next record. Returns 0 on success, -1 on an I/O error (retried later). */
static int write_record(struct recorder *r)
{
    record_build(r->rec, r->next_seq, r->boot_id, wall_ns());
    off_t off = (off_t)((r->next_seq - 1) * RECORD_SIZE);
    ssize_t n = pwrite(r->dev_fd, r->rec, RECORD_SIZE, off);
    if (n != RECORD_SIZE) {
        fprintf(stderr, "ferry-guest: recorder: write seq %llu to %s: %s\n",
                (unsigned long long)r->next_seq, r->dev, n < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

static void run(struct recorder *r)
{
    uint64_t next_due = mono_ms();
    int at_end = 0;
    while (!stop_requested) {
        uint64_t now = mono_ms();
        if (!at_end && now >= next_due) {
            if (r->next_seq > r->nblocks) {
                printf("ferry-guest: recorder: end of %s reached after seq %llu, stopped\n", r->dev,
                       (unsigned long long)(r->next_seq - 1));
                fflush(stdout);
                at_end = 1;
            } else if (write_record(r) == 0) {
                ack_all(r, r->next_seq);
                r->next_seq++;
                next_due = mono_ms() + (uint64_t)r->interval_ms;
            } else {
                next_due = mono_ms() + 1000;
            }
            continue;
        }
        struct pollfd pfds[MAX_CLIENTS + 1];
        for (int i = 0; i < r->nclients; i++)
            pfds[i] = (struct pollfd){.fd = r->clients[i], .events = POLLIN};
        int n = r->nclients;
        pfds[n] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        int timeout = at_end ? -1 : (int)(next_due - now);
        if (poll(pfds, (nfds_t)n + 1, timeout) < 0)
            continue;
        service_clients(r, pfds, n);
        if (pfds[n].revents)
            accept_clients(r);
    }
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: recorder [-p PORT] [-i INTERVAL_MS] [DEVICE]\n"
            "Writes a numbered %d-byte record to DEVICE (default /dev/vda) every INTERVAL_MS\n"
            "(default 5) with O_DIRECT|O_DSYNC, continuing after the last valid record, and\n"
            "sends \"ACK <seq>\" to every client of TCP PORT (default %d) after each write.\n",
            RECORD_SIZE, FERRY_RECORDER_PORT);
}

int main(int argc, char **argv)
{
    struct recorder r = {.dev = "/dev/vda",
                         .port = FERRY_RECORDER_PORT,
                         .interval_ms = 5,
                         .dev_fd = -1,
                         .listen_fd = -1};
    int opt;
    while ((opt = getopt(argc, argv, "hp:i:")) != -1) {
        if (opt == 'p' && parse_int(optarg, 1, 65535, &r.port) == 0)
            continue;
        if (opt == 'i' && parse_int(optarg, 0, 60000, &r.interval_ms) == 0)
            continue;
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    if (optind < argc)
        r.dev = argv[optind++];
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int rc = 1;
    r.listen_fd = listen_tcp(r.port);
    if (r.listen_fd < 0) {
        fprintf(stderr, "ferry-guest: recorder: tcp port %d: %s\n", r.port, strerror(errno));
        return 1;
    }
    if (posix_memalign((void **)&r.rec, RECORD_SIZE, RECORD_SIZE) != 0) {
        fprintf(stderr, "ferry-guest: recorder: out of memory\n");
        goto err_after_listen;
    }
    if (open_device(&r) < 0)
        goto err_after_alloc;
    if (scan_device(&r) < 0)
        goto err_after_open;
    r.boot_id = make_boot_id();
    run(&r);
    rc = 0;
    while (r.nclients)
        client_drop(&r, r.nclients - 1);
err_after_open:
    close(r.dev_fd);
err_after_alloc:
    free(r.rec);
err_after_listen:
    close(r.listen_fd);
    return rc;
}
