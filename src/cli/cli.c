/* SPDX-License-Identifier: MIT */
/* What every ferry command shares: usage errors, getopt, API calls, -f loops, JSON, dispatch. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmd.h"

/* cli_stale_note warns on stderr when a read's answer may be older than this. */
#define STALE_WARN_MS 2000

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ferry %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ferry %s --help'.\n", cmd);
    return EXIT_USAGE;
}

int cli_one_operand(const char *cmd, int argc, char **argv, const char *what, const char **out)
{
    if (optind >= argc)
        return cli_usage(cmd, "%s is needed", what);
    if (optind + 1 < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    *out = argv[optind];
    return EXIT_OK;
}

int cli_fail(const struct ferr *e)
{
    fprintf(stderr, "ferry: %s\n", e->msg[0] ? e->msg : ferr_str(e->code));
    return EXIT_FAIL;
}

int cli_nomem(void)
{
    struct ferr e;
    ferr_set(&e, -ENOMEM, "out of memory");
    return cli_fail(&e);
}

/* True if arg is "--NAME=..." for a NAME of longopts. */
static bool known_long(const struct option *longopts, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return false;
    for (const struct option *o = longopts; o->name; o++)
        if (strlen(o->name) == (size_t)(eq - arg - 2) &&
            strncmp(o->name, arg + 2, (size_t)(eq - arg - 2)) == 0)
            return true;
    return false;
}

int cli_common_options(struct cli *cli, const char *cmd, int argc, char **argv, const char *help,
                       bool operands)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (!operands && optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    return CLI_GO;
}

int cli_getopt(struct cli *cli, const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts, bool *first)
{
    if (*first) {
        optind = 0; /* GNU: full reinitialization */
        opterr = 0;
        *first = false;
    }
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, shortopts, longopts, NULL);
        /* A long option that failed is argv[optind - 1]; a short one is optopt. */
        const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
        bool is_long = optind != prev && strncmp(arg, "--", 2) == 0;
        switch (c) {
        case '?':
            if (!is_long)
                return cli_usage(cmd, "unknown option '-%c'", optopt), CLI_OPT_BAD;
            if (known_long(longopts, arg))
                return cli_usage(cmd, "option '%.*s' takes no value", (int)(strchr(arg, '=') - arg),
                                 arg),
                       CLI_OPT_BAD;
            return cli_usage(cmd, "unknown option '%.*s'", (int)strcspn(arg, "="), arg),
                   CLI_OPT_BAD;
        case ':':
            if (!is_long)
                return cli_usage(cmd, "option '-%c' needs a value", optopt), CLI_OPT_BAD;
            return cli_usage(cmd, "option '%s' needs a value", arg), CLI_OPT_BAD;
        case 'o':
            if (output_format_parse(optarg, &cli->fmt) < 0)
                return cli_usage(cmd, "-o: '%s' is not 'table' or 'json'", optarg), CLI_OPT_BAD;
            continue;
        default:
            return c;
        }
    }
}

int cli_call(struct cli *cli, const char *method, const char *path, const json_t *body,
             json_t **reply)
{
    struct ferr e;
    *reply = NULL;
    if (client_call(cli->client, method, path, body, reply, &e) < 0)
        return cli_fail(&e);
    return EXIT_OK;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

void cli_follow_begin(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint; /* no SA_RESTART: the sleep ends at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool cli_follow_sleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    if (!interrupted)
        nanosleep(&ts, NULL);
    return !interrupted;
}

bool cli_interrupted(void)
{
    return interrupted != 0;
}

const char *cli_jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

uint64_t cli_jnum(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    if (json_is_real(v))
        return json_real_value(v) > 0 ? (uint64_t)json_real_value(v) : 0;
    return 0;
}

char *cli_ago(const json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    uint64_t ms = (uint64_t)json_integer_value(v);
    if (ms < 10000) {
        snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "s ago", ms / 1000, ms % 1000 / 100);
    } else {
        char d[32];
        snprintf(buf, size, "%s ago", output_duration(ms / 1000, d, sizeof(d)));
    }
    return buf;
}

void cli_stale_note(const json_t *reply)
{
    json_t *v = json_object_get(reply, "stale_ms");
    if (!json_is_integer(v))
        return;
    uint64_t stale = cli_jnum(reply, "stale_ms");
    if (json_integer_value(v) < 0)
        fprintf(stderr, "ferry: note: this node has no contact with a cluster leader; what it "
                        "shows may be out of date\n");
    else if (stale > STALE_WARN_MS)
        fprintf(stderr,
                "ferry: note: this node last heard from the cluster leader %" PRIu64
                " ms ago; what it shows may be that old\n",
                stale);
}

int cli_dispatch(struct cli *cli, const char *title, const struct cli_cmd *table, size_t n,
                 int argc, char **argv)
{
    const char *name = argc > 0 ? argv[0] : NULL;
    bool help = name && (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 ||
                         strcmp(name, "-h") == 0);
    if (name && !help)
        for (size_t i = 0; i < n; i++)
            if (strcmp(table[i].name, name) == 0)
                return table[i].run(cli, argc, argv);
    if (help && argc > 1) { /* "ferry vm help create" = "ferry vm create --help" */
        for (size_t i = 0; i < n; i++) {
            if (strcmp(table[i].name, argv[1]) == 0) {
                char *hargv[] = {argv[1], "--help", NULL};
                return table[i].run(cli, 2, hargv);
            }
        }
    }
    FILE *f = help ? stdout : stderr;
    if (name && !help)
        fprintf(f, "ferry%s%s: unknown command '%s'\n\n", title[0] ? " " : "", title, name);
    fprintf(f, "Usage: ferry %s%sCOMMAND [OPTIONS]\n\nCommands:\n", title, title[0] ? " " : "");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-10s %s\n", table[i].name, table[i].summary);
    fprintf(f, "\nRun 'ferry %s%sCOMMAND --help' for the options of a command.\n", title,
            title[0] ? " " : "");
    return help ? EXIT_OK : EXIT_USAGE;
}
