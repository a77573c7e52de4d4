/* SPDX-License-Identifier: MIT */
/* Guest memory dirtier: keeps rewriting every page of an N MB working set at R MB/s, forever. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MB (1024ul * 1024ul)
#define PAGE 4096ul
#define MAX_MB (1024ul * 1024ul) /* 1 TiB: a sanity bound, not a real limit */

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                          .tv_nsec = (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Writes one word into every page of one MB, so every page becomes dirty. */
static void dirty_mb(unsigned char *mb, uint64_t pass)
{
    for (size_t off = 0; off < MB; off += PAGE)
        *(volatile uint64_t *)(mb + off) = pass + off;
}

/* Rewrites the working set forever. A rate of 0 means as fast as the CPU allows; otherwise
 * megabyte k of the run is due at start + k/rate seconds, and a schedule that fell behind by
 * more than a second (the VM was paused) restarts instead of bursting to catch up. */
static void run(unsigned char *buf, unsigned long mb, unsigned long rate)
{
    uint64_t start = mono_ns(), done = 0, pass = 1;
    for (;;) {
        for (unsigned long i = 0; i < mb; i++) {
            dirty_mb(buf + i * MB, pass);
            if (rate == 0)
                continue;
            done++;
            uint64_t due = start + done * 1000000000ull / rate;
            uint64_t now = mono_ns();
            if (now > due + 1000000000ull) {
                start = now;
                done = 0;
            } else if (due > now) {
                sleep_until_ns(due);
            }
        }
        pass++;
    }
}

int main(int argc, char **argv)
{
    unsigned long mb = 64, rate = 0;
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: dirtier [MB [RATE]]\n"
               "Allocates MB megabytes (default 64) and rewrites every page at RATE MB/s\n"
               "(default 0 = as fast as possible), forever.\n");
        return 0;
    }
    if (argc > 3 || (argc > 1 && parse_ulong(argv[1], MAX_MB, &mb) < 0) || mb == 0 ||
        (argc > 2 && parse_ulong(argv[2], MAX_MB, &rate) < 0)) {
        fprintf(stderr, "ferry-guest: dirtier: usage: dirtier [MB (1..%lu) [RATE MB/s]]\n", MAX_MB);
        return 2;
    }
    unsigned char *buf =
        mmap(NULL, mb * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        fprintf(stderr, "ferry-guest: dirtier: cannot allocate %lu MB: %s\n", mb, strerror(errno));
        return 1;
    }
    /* Fault the whole set in first so the line below means "the working set exists". */
    for (unsigned long i = 0; i < mb; i++)
        dirty_mb(buf + i * MB, 0);
    /* Stay behind the probe responder and the recorder when the single vCPU is contended. */
    errno = 0;
    if (nice(10) == -1 && errno != 0)
        fprintf(stderr, "ferry-guest: dirtier: nice: %s\n", strerror(errno));
    printf("ferry-guest: dirtier %lu MB rate %lu\n", mb, rate);
    fflush(stdout);
    run(buf, mb, rate);
    return 0;
}
