/* SPDX-License-Identifier: MIT */
/* ferry, the command line client of ferryd: global options, usage, the command table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.1.0"
#endif

static int cmd_version(struct cli *cli, int argc, char **argv)
{
    printf("ferry %s\n", FERRY_VERSION);
    return EXIT_OK;
}

static const struct cli_cmd commands[] = {
    {"vm", cmd_vm, "create, list, start, stop and inspect virtual machines"},
    {"node", cmd_node, "show this host, list the cluster's nodes"},
    {"cluster", cmd_cluster, "init, join, leave a cluster; its status"},
    {"disk", cmd_disk, "create, convert and inspect VHD disk files"},
    {"csv", cmd_csv, "cluster shared volumes: add, list, show, remove, move-coordinator"},
    {"events", cmd_events, "show (and follow) the event log"},
    {"task", cmd_task, "the cluster's long operations: list, show (follow), cancel"},
    {"lab", cmd_lab, "N simulated hosts on this machine: up, status, exec, migrate, restart, down"},
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
            "  --url URL        a remote ferryd, https://HOST:PORT (env FERRY_URL)\n"
            "  --token TOKEN    bearer token for --url (env FERRY_TOKEN)\n"
            "  --ca FILE        the cluster's CA certificate that --url's must chain to\n"
            "                   (env FERRY_CA; a member's STATE_DIR/tls/ca.crt)\n"
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
    enum { OPT_SOCKET = 256, OPT_URL, OPT_TOKEN, OPT_CA, OPT_VERSION };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"url", required_argument, NULL, OPT_URL},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"ca", required_argument, NULL, OPT_CA},
        {"version", no_argument, NULL, OPT_VERSION},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli cli = {.fmt = OUTPUT_TABLE};
    struct client_opts co = {0};
    const char *sock_flag = NULL, *url_flag = NULL, *token = getenv("FERRY_TOKEN");
    const char *ca = getenv("FERRY_CA");
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
        case OPT_CA:
            ca = optarg;
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
        if (strncmp(co.url, "http://", 7) == 0)
            return main_usage("--url: '%s': ferryd's TCP API speaks HTTPS only: "
                              "https://HOST:PORT",
                              co.url);
        if (strncmp(co.url, "https://", 8) != 0)
            return main_usage("--url: '%s' is not https://HOST:PORT", co.url);
        if (ca && ca[0] && access(ca, R_OK) != 0)
            return main_usage("--ca: cannot read '%s' (the cluster's CA certificate, a "
                              "member's STATE_DIR/tls/ca.crt)",
                              ca);
        co.ca_file = ca && ca[0] ? ca : NULL;
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
