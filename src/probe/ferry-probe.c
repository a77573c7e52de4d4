/* SPDX-License-Identifier: MIT */
/* ferry-probe: host-side client of the guest tools that measures what a VM's user would notice.
 * One file per subcommand (cmd_*.c); this one only dispatches. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "probe/probe.h"

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(FILE *f);
};

static const struct command commands[] = {
    {"wait", "wait until the guest answers UDP probes", cmd_wait, cmd_wait_help},
    {"udp", "measure UDP (and TCP) reachability over time", cmd_udp, cmd_udp_help},
    {"recorder", "collect the disk recorder's acks", cmd_recorder, cmd_recorder_help},
    {"verify-disk", "check recorder records in a disk image", cmd_verify_disk,
     cmd_verify_disk_help},
    {"memverify", "ask the guest's memory verifier whether memory lost writes", cmd_memverify,
     cmd_memverify_help},
};

static void main_help(FILE *f)
{
    fprintf(f, "usage: ferry-probe COMMAND [ARGS] [--json]\n"
               "Host-side client of ferry's guest tools.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'ferry-probe COMMAND --help' for a command's options;\n"
               "ferry-probe --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_help(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ferry-probe %s\n", FERRY_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            opterr = 1;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "ferry-probe: unknown command '%s'\n", argv[1]);
    main_help(stderr);
    return EXIT_USAGE;
}
