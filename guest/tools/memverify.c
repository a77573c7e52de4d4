/* SPDX-License-Identifier: MIT */
/* Guest memory verifier: rewrites a working set of page records and keeps checking every page
 * holds the last thing written to it, so a live migration that loses a write is seen. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MB (1024ul * 1024ul)
#define PAGE 4096ul
#define PAGES_PER_MB (MB / PAGE)
#define CHUNK 64ul        /* pages per step of the main loop (256 KiB) */
#define MAX_MB 65536ul    /* a sanity bound for a test tool */
#define REPORT_FIRST 16ul /* bad pages described one by one on the console */
#define BEHIND_NS 1000000000ull

/* A rate schedule: page n of the run is due at start + n * ns_per_page. */
struct sched {
    uint64_t ns_per_page; /* 0 = as fast as it can */
    uint64_t start;
    uint64_t done;
};

struct verifier {
    volatile uint64_t *set; /* pages * MEMV_WORDS words */
    uint64_t *gens;         /* the generation each page was last written with */
    uint64_t pages;
    uint64_t hot;        /* pages 0..hot-1 are rewritten on every turn of the loop */
    uint64_t wcur, scur; /* next page to write / to check */
    struct sched w, s;
    struct memverify_status st; /* host byte order; converted when sent */
    uint64_t start_ns;
    uint64_t reported_bad; /* bad count at the last console summary */
    int fd;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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

static volatile uint64_t *page_at(struct verifier *v, uint64_t p)
{
    return v->set + p * MEMV_WORDS;
}

/* Rewrites every word of page p with its next generation; the header goes last. */
static void write_page(struct verifier *v, uint64_t p)
{
    volatile uint64_t *w = page_at(v, p);
    uint64_t gen = ++v->gens[p], sum = 0;
    for (unsigned k = 4; k < MEMV_WORDS; k++) {
        uint64_t x = memv_word(p, gen, k);
        w[k] = x;
        sum = (sum ^ x) * 0x100000001B3ull;
    }
    w[0] = MEMV_MAGIC;
    w[1] = p;
    w[2] = gen;
    w[3] = sum;
    v->st.writes++;
}

/* True when every payload word is generation gen's. */
static int payload_is(const volatile uint64_t *w, uint64_t p, uint64_t gen)
{
    for (unsigned k = 4; k < MEMV_WORDS; k++)
        if (w[k] != memv_word(p, gen, k))
            return 0;
    return 1;
}

static void report_bad(struct verifier *v, uint64_t p, const char *kind, uint64_t got)
{
    struct memverify_status *st = &v->st;
    if (st->bad == 0) {
        st->first_bad_page = p;
        st->first_bad_scan = st->scans;
    }
    st->last_bad_scan = st->scans;
    st->bad++;
    if (st->bad <= REPORT_FIRST)
        printf("ferry-guest: memverify: BAD page %llu (scan %llu): %s, generation %llu, "
               "want %llu\n",
               (unsigned long long)p, (unsigned long long)st->scans, kind, (unsigned long long)got,
               (unsigned long long)v->gens[p]);
}

/* Checks page p against the generation last written to it; 0 when it holds exactly that,
 * else the page is counted (once: the caller rewrites it) and -1. */
static int check_page(struct verifier *v, uint64_t p)
{
    const volatile uint64_t *w = page_at(v, p);
    uint64_t want = v->gens[p];
    v->st.checked++;
    if (w[0] == MEMV_MAGIC && w[1] == p && w[2] == want && payload_is(w, p, want) &&
        w[3] == memv_sum(w))
        return 0;
    if (w[0] != MEMV_MAGIC || w[1] != p) {
        v->st.garbage++;
        report_bad(v, p, "garbage", w[2]);
    } else if (payload_is(w, p, w[2]) && w[3] == memv_sum(w)) {
        if (w[2] < want) {
            v->st.stale++;
            report_bad(v, p, "stale", w[2]);
        } else {
            v->st.ahead++;
            report_bad(v, p, "ahead", w[2]);
        }
    } else {
        v->st.torn++;
        report_bad(v, p, "torn", w[2]);
    }
    if (w[2] > want && w[0] == MEMV_MAGIC && w[1] == p)
        v->gens[p] = w[2]; /* keep generations increasing */
    return -1;
}

/* The next generation of page p, written only after checking the last one: a full rewrite
 * would otherwise hide a lost write before any scan saw it (software that updates memory in
 * place, like a kernel's lists and counters, is hurt by exactly such losses). */
static void rewrite_page(struct verifier *v, uint64_t p)
{
    check_page(v, p);
    write_page(v, p);
}

static void scan_done(struct verifier *v)
{
    v->st.scans++;
    if (v->st.bad != v->reported_bad) {
        printf("ferry-guest: memverify: BAD scan %llu: %llu bad pages so far (stale %llu, "
               "ahead %llu, torn %llu, garbage %llu)\n",
               (unsigned long long)v->st.scans, (unsigned long long)v->st.bad,
               (unsigned long long)v->st.stale, (unsigned long long)v->st.ahead,
               (unsigned long long)v->st.torn, (unsigned long long)v->st.garbage);
        fflush(stdout);
        v->reported_bad = v->st.bad;
    }
}

/* Due time of the schedule's next chunk; a schedule more than a second behind (the VM was
 * paused, or the vCPU was busy elsewhere) restarts instead of bursting to catch up. */
static uint64_t sched_due(struct sched *s, uint64_t now)
{
    if (s->ns_per_page == 0)
        return now;
    uint64_t due = s->start + s->done * s->ns_per_page;
    if (now > due + BEHIND_NS) {
        s->start = now;
        s->done = 0;
        due = now;
    }
    return due;
}

static void answer_queries(struct verifier *v)
{
    for (int i = 0; i < 64; i++) {
        struct memverify_query q;
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(v->fd, &q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        if (n != (ssize_t)sizeof(q) || ntohl(q.magic) != MEMV_QUERY_MAGIC)
            continue;
        struct memverify_status st = v->st, out;
        st.seq = be64toh(q.seq);
        st.uptime_ms = (mono_ns() - v->start_ns) / 1000000ull;
        out.magic = htonl(MEMV_STATUS_MAGIC);
        out.version = htonl(MEMV_STATUS_VERSION);
        /* Every field after the two u32s is a u64. */
        const uint64_t *src = &st.seq;
        uint64_t *dst = &out.seq;
        for (size_t k = 0; k < (sizeof(st) - 8) / 8; k++)
            dst[k] = htobe64(src[k]);
        (void)sendto(v->fd, &out, sizeof(out), MSG_DONTWAIT, (struct sockaddr *)&from, flen);
    }
}

static int run(struct verifier *v)
{
    while (!stop_requested) {
        answer_queries(v);
        uint64_t now = mono_ns();
        uint64_t wdue = sched_due(&v->w, now), sdue = sched_due(&v->s, now);
        int worked = 0;
        if (wdue <= now) {
            for (uint64_t i = 0; i < CHUNK; i++) {
                rewrite_page(v, v->wcur);
                v->wcur = (v->wcur + 1) % v->pages;
            }
            v->w.done += CHUNK;
            worked = 1;
        }
        if (sdue <= now) {
            for (uint64_t i = 0; i < CHUNK; i++) {
                if (check_page(v, v->scur) < 0)
                    write_page(v, v->scur);
                if (++v->scur == v->pages) {
                    v->scur = 0;
                    scan_done(v);
                }
            }
            v->s.done += CHUNK;
            worked = 1;
        }
        /* The hot pages: rewritten every turn, and instead of sleeping. */
        for (uint64_t p = 0; p < v->hot; p++)
            rewrite_page(v, p);
        if (worked || v->hot)
            continue;
        uint64_t until = wdue < sdue ? wdue : sdue;
        struct pollfd pfd = {.fd = v->fd, .events = POLLIN};
        int ms = (int)((until - now + 999999ull) / 1000000ull);
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
            fprintf(stderr, "ferry-guest: memverify: poll: %s\n", strerror(errno));
            return 1;
        }
    }
    return 0;
}

static int bind_udp(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static uint64_t ns_per_page(unsigned long rate_mb)
{
    return rate_mb ? 1000000000ull / (rate_mb * PAGES_PER_MB) : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: memverify [-m MB] [-w WRITE_RATE] [-s SCAN_RATE] [-H HOT_PAGES]\n"
            "Keeps a working set of MB megabytes (default 64) of page records, rewrites\n"
            "every word of its pages in turn at WRITE_RATE MB/s (default 0 = as fast as it\n"
            "can) and checks every page against the last write at SCAN_RATE MB/s (default:\n"
            "the whole set once a second; 0 = as fast as it can). With -H, the first\n"
            "HOT_PAGES pages are also rewritten again and again in a tight loop (default 0):\n"
            "a write lost by dirty tracking shows on pages rewritten soon after the copy\n"
            "started, which a sequential pass rarely does. Reports on UDP port %d\n"
            "(ferry-probe memverify) and prints bad pages on stdout.\n",
            FERRY_MEMVERIFY_PORT);
}

int main(int argc, char **argv)
{
    unsigned long mb = 64, wrate = 0, srate = 0, hot = 0;
    int have_srate = 0, c;
    while ((c = getopt(argc, argv, "m:w:s:H:h")) != -1) {
        int bad = 0;
        switch (c) {
        case 'm':
            bad = parse_ulong(optarg, MAX_MB, &mb) < 0 || mb == 0;
            break;
        case 'w':
            bad = parse_ulong(optarg, MAX_MB, &wrate) < 0;
            break;
        case 's':
            bad = parse_ulong(optarg, MAX_MB, &srate) < 0;
            have_srate = 1;
            break;
        case 'H':
            bad = parse_ulong(optarg, MAX_MB * PAGES_PER_MB, &hot) < 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            bad = 1;
        }
        if (bad) {
            if (c == '?')
                fprintf(stderr, "ferry-guest: memverify: see memverify -h\n");
            else
                fprintf(stderr, "ferry-guest: memverify: bad -%c %s (see memverify -h)\n", c,
                        optarg);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ferry-guest: memverify: unexpected argument '%s' (see memverify -h)\n",
                argv[optind]);
        return 2;
    }
    if (!have_srate)
        srate = mb;
    if (hot > mb * PAGES_PER_MB)
        hot = mb * PAGES_PER_MB;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct verifier v = {.pages = mb * PAGES_PER_MB, .hot = hot};
    void *set = mmap(NULL, mb * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v.gens = calloc(v.pages, sizeof(*v.gens));
    if (set == MAP_FAILED || !v.gens) {
        fprintf(stderr, "ferry-guest: memverify: cannot allocate %lu MB\n", mb);
        return 1;
    }
    v.set = set;
    if (getrandom(&v.st.boot_id, sizeof(v.st.boot_id), 0) != sizeof(v.st.boot_id))
        v.st.boot_id = mono_ns() ^ (uint64_t)getpid() << 48;
    v.st.pages = v.pages;
    v.st.write_rate_mb = wrate;
    v.start_ns = mono_ns();
    for (uint64_t p = 0; p < v.pages; p++)
        write_page(&v, p);
    /* Stay behind the probe responder and the recorder when the single vCPU is contended. */
    errno = 0;
    if (nice(10) == -1 && errno != 0)
        fprintf(stderr, "ferry-guest: memverify: nice: %s\n", strerror(errno));
    v.w = (struct sched){.ns_per_page = ns_per_page(wrate), .start = mono_ns()};
    v.s = (struct sched){.ns_per_page = ns_per_page(srate), .start = mono_ns()};
    printf("ferry-guest: memverify %lu MB write %lu MB/s scan %lu MB/s hot %lu pages\n", mb, wrate,
           srate, hot);
    fflush(stdout);
    /* The port last: the appliance's init waits for it before it says "ready", so "ready"
     * means the working set is written and this line is on the console before it. */
    v.fd = bind_udp(FERRY_MEMVERIFY_PORT);
    if (v.fd < 0) {
        fprintf(stderr, "ferry-guest: memverify: udp port %d: %s\n", FERRY_MEMVERIFY_PORT,
                strerror(errno));
        return 1;
    }
    int rc = run(&v);
    munmap(set, mb * MB);
    free(v.gens);
    close(v.fd);
    return rc;
}
