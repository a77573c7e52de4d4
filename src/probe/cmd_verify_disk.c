/* SPDX-License-Identifier: MIT */
/* ferry-probe verify-disk: checks the recorder's records in a disk image. */
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

void cmd_verify_disk_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe verify-disk PATH [--acked N] [--offset BYTES] [--json]\n"
               "Reads the recorder's records from a disk image (raw or fixed VHD: data at offset\n"
               "0) and reports valid records, the highest seq and the first missing or bad seq\n"
               "below it. With --acked N, exit 1 unless every seq 1..N is present and valid.\n"
               "Exit 2 on bad arguments or an unreadable file.\n");
}

struct disk_scan {
    uint64_t blocks, valid, max_seq, first_bad, corrupt, misplaced, boots, last_boot;
    uint64_t *bad; /* seqs of the not-valid blocks seen so far below the running max */
    size_t nbad, badcap;
};

/* Records block b; a block that is not a correctly placed valid record becomes a candidate
 * "first bad" if a valid record turns up after it. */
static int scan_block(struct disk_scan *d, uint64_t b, const unsigned char *rec)
{
    uint64_t seq = 0, boot = 0;
    enum record_state st = record_check(rec, &seq, &boot);
    d->blocks++;
    if (st == RECORD_VALID && seq == b + 1) {
        d->valid++;
        d->max_seq = seq;
        if (d->boots == 0 || boot != d->last_boot)
            d->boots++;
        d->last_boot = boot;
        if (d->nbad && !d->first_bad)
            d->first_bad = d->bad[0];
        return 0;
    }
    if (st == RECORD_VALID)
        d->misplaced++;
    else if (st == RECORD_BAD_CRC)
        d->corrupt++;
    if (d->first_bad || d->nbad)
        return 0; /* only the first hole matters */
    if (d->nbad == d->badcap) {
        size_t n = d->badcap ? d->badcap * 2 : 16;
        uint64_t *p = realloc(d->bad, n * sizeof(*p));
        if (!p)
            return -ENOMEM;
        d->bad = p;
        d->badcap = n;
    }
    d->bad[d->nbad++] = b + 1;
    return 0;
}

static int scan_disk(int fd, uint64_t offset, struct disk_scan *d, struct ferr *e)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return ferr_set(e, -ENOMEM, "out of memory");
    uint64_t b = 0, pos = offset;
    int rc = 0;
    for (;;) {
        size_t have = 0;
        while (have < CHUNK) {
            ssize_t n = pread(fd, buf + have, CHUNK - have, (off_t)(pos + have));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = ferr_set(e, -errno, "read at byte %" PRIu64 ": %s", pos + have,
                              strerror(errno));
                goto out;
            }
            if (n == 0)
                break;
            have += (size_t)n;
        }
        for (size_t off = 0; off + RECORD_SIZE <= have; off += RECORD_SIZE, b++)
            if (scan_block(d, b, buf + off) < 0) {
                rc = ferr_set(e, -ENOMEM, "out of memory");
                goto out;
            }
        if (have < CHUNK)
            break;
        pos += CHUNK;
    }
out:
    free(buf);
    return rc;
}

int cmd_verify_disk(int argc, char **argv)
{
    static const struct option opts[] = {
        {"acked", required_argument, NULL, 'a'},
        {"offset", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t acked = 0, offset = 0;
    bool have_acked = false, json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'a') {
            if (probe_opt_u64("verify-disk", "--acked", optarg, 0, UINT64_MAX / RECORD_SIZE,
                              &acked))
                return EXIT_USAGE;
            have_acked = true;
        }
        if (c == 'o' && probe_opt_u64("verify-disk", "--offset", optarg, 0, INT64_MAX, &offset))
            return EXIT_USAGE;
        int orc = probe_common_opt("verify-disk", c, &json, cmd_verify_disk_help);
        if (orc != PROBE_OPT_CONTINUE)
            return orc;
    }
    const char *path;
    int urc = probe_operand("verify-disk", argc, argv, "PATH", &path);
    if (urc)
        return urc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return probe_usage_error("verify-disk", "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd);
        return probe_usage_error("verify-disk", "%s is not a regular file or block device", path);
    }
    struct disk_scan d = {0};
    struct ferr e = {0};
    if (scan_disk(fd, offset, &d, &e) < 0) {
        fprintf(stderr, "ferry-probe verify-disk: %s: %s\n", path, e.msg);
        close(fd);
        free(d.bad);
        return EXIT_FAIL;
    }
    close(fd);
    free(d.bad);
    /* Every seq 1..acked must be a valid record in its own block. */
    bool acked_ok = acked <= d.max_seq && (!d.first_bad || d.first_bad > acked);
    uint64_t acked_missing = 0;
    if (have_acked && !acked_ok)
        acked_missing = d.first_bad && d.first_bad <= acked ? d.first_bad : d.max_seq + 1;
    if (json) {
        json_t *j =
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I}", "path", path, "offset",
                      (json_int_t)offset, "blocks", (json_int_t)d.blocks, "records_valid",
                      (json_int_t)d.valid, "max_seq", (json_int_t)d.max_seq, "first_bad",
                      d.first_bad ? json_integer((json_int_t)d.first_bad) : json_null(), "corrupt",
                      (json_int_t)d.corrupt, "misplaced", (json_int_t)d.misplaced, "boots",
                      (json_int_t)d.boots);
        if (have_acked) {
            json_object_set_new(j, "acked", json_integer((json_int_t)acked));
            json_object_set_new(j, "acked_ok", json_boolean(acked_ok));
            json_object_set_new(j, "acked_first_missing",
                                acked_missing ? json_integer((json_int_t)acked_missing)
                                              : json_null());
        }
        probe_print_json(j);
    } else {
        printf("verify-disk: %" PRIu64 " valid records, max seq %" PRIu64 ", ", d.valid, d.max_seq);
        if (d.first_bad)
            printf("first bad seq %" PRIu64, d.first_bad);
        else
            printf("no gap");
        printf(", %" PRIu64 " boot(s)\n", d.boots);
        if (have_acked && acked_ok)
            printf("verify-disk: all %" PRIu64 " acked records present\n", acked);
        else if (have_acked)
            printf("verify-disk: acked seq %" PRIu64 " is missing or bad (acked up to %" PRIu64
                   ")\n",
                   acked_missing, acked);
    }
    return have_acked && !acked_ok ? EXIT_FAIL : EXIT_OK;
}
