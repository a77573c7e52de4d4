/* SPDX-License-Identifier: MIT */
/* Wire and disk formats shared by ferry's guest tools and the host-side ferry-probe. */
#ifndef FERRY_GUEST_PROTO_H
#define FERRY_GUEST_PROTO_H

/*
 * This header is self-contained (libc only) because it is compiled both into the static
 * guest tools and into ferry-probe on the host.
 *
 * Ports (guest side):
 *   7000/udp  probe-responder: every datagram is echoed back unchanged to its sender.
 *   7001/tcp  probe-responder: byte-for-byte echo, any number of connections.
 *   7002/tcp  recorder: one line "ACK <seq>\n" per record, after the write returned.
 *   7003/udp  memverify: answers a struct memverify_query with a struct memverify_status.
 *
 * UDP probe (ferry-probe's format; the responder does not look inside): struct probe_pkt,
 * all fields big-endian.
 *
 * Recorder disk format: one record per 4096-byte block, written with O_DIRECT|O_DSYNC from
 * offset 0. Record seq N always lives in block N-1 (byte offset (N-1)*4096), so seqs are
 * contiguous from 1 and a reader can tell a missing record from a misplaced one. All
 * integers are little-endian:
 *   0   char[8] "FYREC001"
 *   8   u64     seq (1, 2, ...)
 *   16  u64     boot id (random per recorder start)
 *   24  u64     wall clock of the write, ns since the epoch (informational)
 *   32  u32     CRC-32 (IEEE, as zlib) of the whole 4096-byte record with this field zeroed
 *   36  u32     0
 *   40  ...     payload up to 4096: a xorshift64* stream seeded from seq (record_fill_payload)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FERRY_PROBE_UDP_PORT 7000
#define FERRY_PROBE_TCP_PORT 7001
#define FERRY_RECORDER_PORT 7002

#define PROBE_MAGIC 0x46525950u /* "FRYP" */

struct probe_pkt {
    uint32_t magic;   /* PROBE_MAGIC */
    uint32_t flags;   /* 0 */
    uint64_t seq;     /* 1, 2, ... */
    uint64_t send_ns; /* sender's CLOCK_MONOTONIC at send time */
};
_Static_assert(sizeof(struct probe_pkt) == 24, "probe_pkt must have no padding");

/*
 * Memory verifier (memverify): a working set of 4096-byte pages, each a record of
 * 512 little-endian u64 words in the guest's own byte order:
 *   w[0] MEMV_MAGIC   w[1] page index   w[2] generation (1, 2, ... per rewrite)
 *   w[3] checksum of w[4..511] (memv_sum)   w[4..511] memv_word(page, generation, k)
 * Every rewrite writes every word of the page. A page read back is
 *   ok       exactly the last generation written,
 *   stale    a whole, self-consistent older generation (a write lost: the copy missed it),
 *   ahead    a whole, self-consistent newer generation than the verifier's own table says
 *            (the table's write was lost instead),
 *   torn     header of one generation, words of another (part of a rewrite lost),
 *   garbage  no magic or the wrong page index (the page is someone else's, or zero).
 * Query and status datagrams are big-endian, all fields u64 after the two u32s.
 */
#define FERRY_MEMVERIFY_PORT 7003
#define MEMV_MAGIC 0x31305645564d5946ull /* "FYMVEV01" little-endian */
#define MEMV_WORDS 512
#define MEMV_QUERY_MAGIC 0x46594d51u  /* "FYMQ" */
#define MEMV_STATUS_MAGIC 0x46594d53u /* "FYMS" */
#define MEMV_STATUS_VERSION 1

struct memverify_query {
    uint32_t magic; /* MEMV_QUERY_MAGIC */
    uint32_t flags; /* 0 */
    uint64_t seq;   /* echoed in the status */
};
_Static_assert(sizeof(struct memverify_query) == 16, "memverify_query must have no padding");

struct memverify_status {
    uint32_t magic;   /* MEMV_STATUS_MAGIC */
    uint32_t version; /* MEMV_STATUS_VERSION */
    uint64_t seq;     /* the query's */
    uint64_t boot_id; /* random per verifier start: a new one means the guest restarted */
    uint64_t uptime_ms;
    uint64_t pages;         /* size of the working set */
    uint64_t write_rate_mb; /* MB/s, 0 = as fast as it can */
    uint64_t writes;        /* pages rewritten so far */
    uint64_t scans;         /* complete verification scans of the whole working set */
    uint64_t checked;       /* pages verified so far */
    uint64_t bad;           /* pages found wrong (each counted once, then rewritten) */
    uint64_t stale, ahead, torn, garbage;
    uint64_t first_bad_page; /* valid when bad > 0 */
    uint64_t first_bad_scan; /* the scan (0-based) that found it */
    uint64_t last_bad_scan;
};
_Static_assert(sizeof(struct memverify_status) == 136, "memverify_status must have no padding");

/* The payload word k of a page's generation: differs per page, per generation and per word. */
static inline uint64_t memv_word(uint64_t page, uint64_t gen, unsigned k)
{
    uint64_t x = (page << 24 ^ gen) * 0x9E3779B97F4A7C15ull;
    return x ^ (uint64_t)k * 0xD6E8FEB86659FD93ull;
}

/* Checksum of a page's payload (w[4..511]). */
static inline uint64_t memv_sum(const volatile uint64_t *w)
{
    uint64_t s = 0;
    for (unsigned k = 4; k < MEMV_WORDS; k++)
        s = (s ^ w[k]) * 0x100000001B3ull;
    return s;
}

#define RECORD_SIZE 4096
#define RECORD_MAGIC "FYREC001"
#define RECORD_MAGIC_LEN 8
#define RECORD_OFF_SEQ 8
#define RECORD_OFF_BOOT 16
#define RECORD_OFF_TIME 24
#define RECORD_OFF_CRC 32
#define RECORD_OFF_PAYLOAD 40

static inline void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Running CRC-32/IEEE (reflected, poly 0xEDB88320, as zlib's crc32): start with
 * crc32_update(0, ...) and chain calls; the table is built on first use. */
static inline uint32_t crc32_update(uint32_t crc, const unsigned char *buf, size_t len)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t n = 0; n < 256; n++) {
            uint32_t c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        ready = true;
    }
    uint32_t c = crc ^ 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        c = table[(c ^ buf[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The payload of record seq: deterministic, so a reader can check it without the writer. */
static inline void record_fill_payload(unsigned char *rec, uint64_t seq)
{
    uint64_t x = seq * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (size_t off = RECORD_OFF_PAYLOAD; off < RECORD_SIZE; off += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        put_le64(rec + off, x * 0x2545F4914F6CDD1Dull);
    }
}

/* CRC of a record with its CRC field taken as zero. */
static inline uint32_t record_crc(const unsigned char *rec)
{
    static const unsigned char zero[4];
    uint32_t c = crc32_update(0, rec, RECORD_OFF_CRC);
    c = crc32_update(c, zero, sizeof(zero));
    return crc32_update(c, rec + RECORD_OFF_CRC + 4, RECORD_SIZE - RECORD_OFF_CRC - 4);
}

/* Fills a whole record for seq. rec must hold RECORD_SIZE bytes. */
static inline void record_build(unsigned char *rec, uint64_t seq, uint64_t boot_id,
                                uint64_t time_ns)
{
    memset(rec, 0, RECORD_OFF_PAYLOAD);
    memcpy(rec, RECORD_MAGIC, RECORD_MAGIC_LEN);
    put_le64(rec + RECORD_OFF_SEQ, seq);
    put_le64(rec + RECORD_OFF_BOOT, boot_id);
    put_le64(rec + RECORD_OFF_TIME, time_ns);
    record_fill_payload(rec, seq);
    put_le32(rec + RECORD_OFF_CRC, record_crc(rec));
}

enum record_state {
    RECORD_EMPTY,   /* no magic: never written (or overwritten by something else) */
    RECORD_BAD_CRC, /* magic present but CRC or payload wrong: torn or corrupted */
    RECORD_VALID,
};

/* Checks one record; on RECORD_VALID stores its seq and boot id (either pointer may be NULL). */
static inline enum record_state record_check(const unsigned char *rec, uint64_t *seq,
                                             uint64_t *boot_id)
{
    if (memcmp(rec, RECORD_MAGIC, RECORD_MAGIC_LEN) != 0)
        return RECORD_EMPTY;
    if (get_le32(rec + RECORD_OFF_CRC) != record_crc(rec))
        return RECORD_BAD_CRC;
    uint64_t s = get_le64(rec + RECORD_OFF_SEQ);
    unsigned char payload[RECORD_SIZE];
    record_fill_payload(payload, s);
    if (s == 0 || memcmp(payload + RECORD_OFF_PAYLOAD, rec + RECORD_OFF_PAYLOAD,
                         RECORD_SIZE - RECORD_OFF_PAYLOAD) != 0)
        return RECORD_BAD_CRC;
    if (seq)
        *seq = s;
    if (boot_id)
        *boot_id = get_le64(rec + RECORD_OFF_BOOT);
    return RECORD_VALID;
}

#endif
