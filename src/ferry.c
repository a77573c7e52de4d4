/* SPDX-License-Identifier: MIT */
/* ferry, the command line client of ferryd: global options, command dispatch, shared helpers. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cmd.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.1.0"
#endif

/* ---- helpers shared by the commands (declared in cli/cmd.h) ------------------------------- */

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

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size_mib(const char *s, uint64_t *mib)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},      {"m", 1},      {"mb", 1},          {"mib", 1},          {"g", 1024},
        {"gb", 1024}, {"gib", 1024}, {"t", 1024 * 1024}, {"tb", 1024 * 1024}, {"tib", 1024 * 1024},
    };
    if (!s || !(*s >= '0' && *s <= '9'))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -1;
        *mib = v * units[i].mult;
        return 0;
    }
    return -1;
}

int cli_abspath(const char *path, char *out, size_t size)
{
    char dir[PATH_MAX], resolved[PATH_MAX], cwd[PATH_MAX];
    if (path[0] == '/') {
        if (strlen(path) >= size)
            return -ENAMETOOLONG;
        strcpy(out, path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        if ((size_t)(slash - path) >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int n;
    if (realpath(dir, resolved)) {
        if (base[0] == '\0' || strcmp(base, ".") == 0)
            n = snprintf(out, size, "%s", resolved);
        else
            n = snprintf(out, size, "%s%s%s", resolved, strcmp(resolved, "/") ? "/" : "", base);
    } else if (getcwd(cwd, sizeof(cwd))) {
        n = snprintf(out, size, "%s/%s", cwd, path); /* the daemon will say what is missing */
    } else {
        n = snprintf(out, size, "%s", path);
    }
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
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

/* ---- main -------------------------------------------------------------------------------- */

static int cmd_version(struct cli *cli, int argc, char **argv)
{
    printf("ferry %s\n", FERRY_VERSION);
    return EXIT_OK;
}

static const struct cli_cmd commands[] = {
    {"vm", cmd_vm, "create, list, start, stop and inspect virtual machines"},
    {"node", cmd_node, "show this host, list the cluster's nodes"},
    {"cluster", cmd_cluster, "init, join, leave a cluster; its status"},
    {"disk", cmd_disk, "create and inspect VHD disk files"},
    {"events", cmd_events, "show (and follow) the event log"},
    {"lab", cmd_lab, "N simulated hosts on this machine: up, status, exec, down"},
    {"version", cmd_version, "print the version of ferry"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ferry [GLOBAL OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "ferry drives ferryd, the ferry daemon, over its HTTP API.\n"
            "\n"
            "Global options:\n"
            "  --socket PATH    ferryd's unix socket (env FERRY_SOCKET, default %s)\n"
            "  --url URL        a remote ferryd, http://HOST:PORT (env FERRY_URL)\n"
            "  --token TOKEN    bearer token for --url (env FERRY_TOKEN)\n"
            "  -o, --output F   'table' (default) or 'json' (the API's JSON)\n"
            "  -h, --help       show this help\n"
            "  --version        show the version\n"
            "\n"
            "Commands:\n",
            CLIENT_DEFAULT_SOCKET);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'ferry COMMAND --help' for more about a command.\n");
}

static int main_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "ferry: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'ferry --help'.\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    enum { OPT_SOCKET = 256, OPT_URL, OPT_TOKEN, OPT_VERSION };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"url", required_argument, NULL, OPT_URL},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"version", no_argument, NULL, OPT_VERSION},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli cli = {.fmt = OUTPUT_TABLE};
    struct client_opts co = {0};
    const char *sock_flag = NULL, *url_flag = NULL, *token = getenv("FERRY_TOKEN");
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:ho:", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            sock_flag = optarg;
            break;
        case OPT_URL:
            url_flag = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_VERSION:
            return cmd_version(&cli, 0, NULL);
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'o':
            if (output_format_parse(optarg, &cli.fmt) < 0)
                return main_usage("-o: '%s' is not 'table' or 'json'", optarg);
            break;
        case ':':
            return main_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return main_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[optind], "help") == 0 && optind + 1 >= argc) {
        usage(stdout);
        return EXIT_OK;
    }

    /* Flags beat the environment; the URL of FERRY_URL beats FERRY_SOCKET. */
    if (sock_flag && url_flag)
        return main_usage("%s", "use either --socket or --url, not both");
    if (sock_flag)
        co.socket_path = sock_flag;
    else if (url_flag)
        co.url = url_flag;
    else if (getenv("FERRY_URL") && getenv("FERRY_URL")[0])
        co.url = getenv("FERRY_URL");
    else if (getenv("FERRY_SOCKET") && getenv("FERRY_SOCKET")[0])
        co.socket_path = getenv("FERRY_SOCKET");
    if (co.url) {
        if (strncmp(co.url, "http://", 7) != 0 && strncmp(co.url, "https://", 8) != 0)
            return main_usage("--url: '%s' is not http://HOST:PORT", co.url);
        if (!token || !token[0])
            return main_usage("%s", "--url needs a token: --token TOKEN or FERRY_TOKEN");
        co.token = token;
    }

    struct ferr e;
    if (client_new(&co, &cli.client, &e) < 0)
        return cli_fail(&e);
    int rc;
    if (strcmp(argv[optind], "help") == 0) { /* "ferry help vm" = "ferry vm --help" */
        char *hargv[] = {argv[optind + 1], "--help", NULL};
        rc = cli_dispatch(&cli, "", commands, sizeof(commands) / sizeof(commands[0]), 2, hargv);
    } else {
        rc = cli_dispatch(&cli, "", commands, sizeof(commands) / sizeof(commands[0]), argc - optind,
                          argv + optind);
    }
    client_free(cli.client);
    return rc;
}
