/* SPDX-License-Identifier: MIT */
/* ferry-probe's shared parts: option parsing, clocks, sockets, reports and gap bookkeeping. */
#ifndef FERRY_PROBE_H
#define FERRY_PROBE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/err.h"

/* Exit codes shared by every subcommand. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

uint64_t probe_mono_ns(void);
double probe_ns_to_ms(uint64_t ns);
/* Rounds to one decimal so reports stay readable (jansson prints doubles in full). */
double probe_round1(double v);

/* Prints "ferry-probe CMD: message" to stderr; returns EXIT_USAGE for
 * `return probe_usage_error()`. */
int probe_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a whole decimal unsigned number within [min, max]: digits only, no sign or blank.
 * Returns 0, or FERR_INVALID with *out untouched. */
int probe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses an option value or prints why it is wrong. Returns 0 or EXIT_USAGE. */
int probe_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t min, uint64_t max,
                  uint64_t *out);

/* What probe_common_opt returns for an option it does not handle. */
#define PROBE_OPT_CONTINUE (-1)
/* The options every subcommand takes, in its getopt loop: c == 'j' (--json) sets *json, 'h'
 * (--help) prints help and gives EXIT_OK, '?' gives EXIT_USAGE after saying so; anything
 * else gives PROBE_OPT_CONTINUE (and so does 'j'). */
int probe_common_opt(const char *cmd, int c, bool *json, void (*help)(FILE *f));
/* The one operand after the options (getopt's optind), what it is named in the message: 0 and
 * *out, or EXIT_USAGE after saying "expected exactly one WHAT". */
int probe_operand(const char *cmd, int argc, char **argv, const char *what, const char **out);
/* probe_operand for a HOST, resolved into sa with port: 0, or EXIT_USAGE after saying why. */
int probe_host_operand(const char *cmd, int argc, char **argv, uint16_t port, const char **host,
                       struct sockaddr_in *sa);

/* Resolves an IPv4 host name or address into sa (port set by the caller). */
int probe_resolve_host(const char *host, uint16_t port, struct sockaddr_in *sa, struct ferr *e);
/* Blocks SIGINT and SIGTERM and returns a signalfd that reports them, so every loop can stop
 * cleanly and still print its report. */
int probe_stop_signal_fd(struct ferr *e);
/* A periodic CLOCK_MONOTONIC timer whose first expiry is one period from now. */
int probe_periodic_timer(uint64_t period_ns, struct ferr *e);
/* Number of expirations since the last read; 0 if none. */
uint64_t probe_timer_take(int fd);
/* Poll timeout in ms until deadline (0 = none): rounded up, -1 for no deadline. */
int probe_poll_timeout(uint64_t deadline, uint64_t now);
/* Prints the JSON report on one line. Takes ownership of obj. */
void probe_print_json(json_t *obj);

/* Opens a TCP connection without blocking; *pending is true while connect is in progress. */
int probe_tcp_connect_start(const struct sockaddr_in *sa, bool *pending, struct ferr *e);
/* Result of a non-blocking connect once the socket polled writable. */
int probe_tcp_connect_finish(int fd, const struct sockaddr_in *sa, struct ferr *e);
/* A non-blocking UDP socket connected to sa. */
int probe_udp_socket(const struct sockaddr_in *sa, struct ferr *e);
/* Sends UDP probe seq (struct probe_pkt) stamped with the monotonic clock; 0 or -1. */
int probe_send_probe(int fd, uint64_t seq);
/* Reads one datagram; returns 1 with seq and send time when it is one of our probes,
 * 0 for anything else, -1 when nothing is left to read. */
int probe_recv_probe(int fd, uint64_t *seq, uint64_t *send_ns);

/* Gaps between consecutive events (replies, echoes, acks), measured on receive times. */
struct gaps {
    uint64_t start;      /* run start, for "at" */
    uint64_t last;       /* time of the last event, 0 before the first */
    uint64_t longest;    /* longest gap seen */
    uint64_t longest_at; /* start of that gap, relative to start */
    uint64_t over[3];    /* gaps over 50, 100, 300 ms */
};
extern const uint64_t probe_gap_limits_ms[3];
/* Notes an event at now (monotonic ns, never before the previous one). */
void probe_gaps_note(struct gaps *g, uint64_t now);

/* The subcommands: each parses its own argv (argv[0] is the command) and returns an exit
 * code; *_help prints its usage to f. */
int cmd_wait(int argc, char **argv);
void cmd_wait_help(FILE *f);
int cmd_udp(int argc, char **argv);
void cmd_udp_help(FILE *f);
int cmd_recorder(int argc, char **argv);
void cmd_recorder_help(FILE *f);
int cmd_verify_disk(int argc, char **argv);
void cmd_verify_disk_help(FILE *f);
int cmd_memverify(int argc, char **argv);
void cmd_memverify_help(FILE *f);

#endif
