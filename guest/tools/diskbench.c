/* SPDX-License-Identifier: MIT */
/* Guest disk benchmark for `make bench-storage`: sequential 1 MiB and random 4 KiB writes with
 * O_DIRECT to a block device, each write timed; prints one line
 * "ferry-diskbench {json}" with MB/s, IOPS and latency percentiles, then exits. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BLOCK (1024 * 1024)
#define RND_BLOCK 4096
#define MAX_SAMPLES 200000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(p * (n - 1) + 0.5);
    return v[i];
}

static int write_at(int fd, const void *buf, size_t len, uint64_t off)
{
    ssize_t w = pwrite(fd, buf, len, (off_t)off);
    if (w != (ssize_t)len) {
        fprintf(stderr, "diskbench: write at %llu: %s\n", (unsigned long long)off,
                w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned seq_mb = 64, rnd_s = 5;
    int opt, extra = 0;
    while ((opt = getopt(argc, argv, "m:s:d")) != -1) {
        if (opt == 'm')
            seq_mb = (unsigned)atoi(optarg);
        else if (opt == 's')
            rnd_s = (unsigned)atoi(optarg);
        else if (opt == 'd')
            extra = O_DSYNC;
        else
            return 2;
    }
    if (optind >= argc || seq_mb == 0 || seq_mb > 4096 || rnd_s > 600) {
        fprintf(stderr, "usage: diskbench [-m SEQ_MB] [-s RANDOM_S] [-d (O_DSYNC)] DEVICE\n");
        return 2;
    }
    const char *dev = argv[optind];
    int fd = open(dev, O_RDWR | O_DIRECT | extra);
    uint64_t size = 0;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
        fprintf(stderr, "diskbench: %s: %s\n", dev, strerror(errno));
        return 1;
    }
    if (size < (uint64_t)seq_mb * SEQ_BLOCK)
        seq_mb = (unsigned)(size / SEQ_BLOCK);
    void *buf;
    if (posix_memalign(&buf, 4096, SEQ_BLOCK) != 0)
        return 1;
    memset(buf, 0xa5, SEQ_BLOCK);
    double *lat = calloc(MAX_SAMPLES, sizeof(double));
    if (!lat)
        return 1;

    double t0 = now_s();
    for (unsigned i = 0; i < seq_mb; i++) {
        double a = now_s();
        if (write_at(fd, buf, SEQ_BLOCK, (uint64_t)i * SEQ_BLOCK) < 0)
            return 1;
        lat[i] = (now_s() - a) * 1000;
    }
    double seq_s = now_s() - t0;
    double seq_p99 = pct(lat, seq_mb, 0.99), seq_p50 = pct(lat, seq_mb, 0.50);

    uint64_t span = size / RND_BLOCK, x = 88172645463325252ull;
    size_t n = 0;
    t0 = now_s();
    double end = t0 + rnd_s;
    while (n < MAX_SAMPLES) {
        double a = now_s();
        if (a >= end)
            break;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (write_at(fd, buf, RND_BLOCK, (x % span) * RND_BLOCK) < 0)
            return 1;
        lat[n++] = (now_s() - a) * 1000;
    }
    double rnd_time = now_s() - t0;
    printf("ferry-diskbench {\"device\": \"%s\", \"dsync\": %s, \"seq_mb\": %u, "
           "\"seq_mb_s\": %.2f, \"seq_p50_ms\": %.3f, \"seq_p99_ms\": %.3f, \"rnd_writes\": %zu, "
           "\"rnd_iops\": %.1f, \"rnd_p50_ms\": %.3f, \"rnd_p99_ms\": %.3f}\n",
           dev, extra ? "true" : "false", seq_mb, seq_mb / seq_s, seq_p50, seq_p99, n,
           n / (rnd_time > 0 ? rnd_time : 1), pct(lat, n, 0.50), pct(lat, n, 0.99));
    fflush(stdout);
    close(fd);
    return 0;
}
