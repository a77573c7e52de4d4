/* SPDX-License-Identifier: MIT */
/* What the ferry subcommands share: their context, their entry points, the helpers of cli.c. */
#ifndef FERRY_CLI_CMD_H
#define FERRY_CLI_CMD_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/client.h"
#include "cli/output.h"
#include "cli/parse.h" /* cli_parse_u64, cli_parse_size_mib, cli_abspath, ... */

/* Exit codes of every command. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Passed to every command; lives in main. */
struct cli {
    struct client *client;
    enum output_format fmt;
};

/* A command (or subcommand) of a dispatch table, kvmtool builtin style. argv[0] is the
 * command's own name; the function returns an exit code. */
struct cli_cmd {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *summary;
};

int cmd_vm(struct cli *cli, int argc, char **argv);
int cmd_vm_create(struct cli *cli, int argc, char **argv); /* cmd_vm_create.c */
int cmd_node(struct cli *cli, int argc, char **argv);
int cmd_events(struct cli *cli, int argc, char **argv);
int cmd_task(struct cli *cli, int argc, char **argv); /* cmd_task.c */
int cmd_disk(struct cli *cli, int argc, char **argv);
int cmd_csv(struct cli *cli, int argc, char **argv); /* cmd_csv.c */
/* A file on a cluster shared volume, ref "csv:VOLUME/FILE" (or "csv:VOLUME" with dflt as the
 * FILE), as its absolute path (the volume's path asked of ferryd) in out. Usage errors name cmd
 * and what ("--disk"). EXIT_OK, EXIT_USAGE or EXIT_FAIL. */
int cli_csv_file(struct cli *cli, const char *cmd, const char *what, const char *ref,
                 const char *dflt, char *out, size_t size);
int cmd_lab(struct cli *cli, int argc, char **argv); /* execs lab/ferry-lab */
int cmd_cluster(struct cli *cli, int argc, char **argv);
int cmd_node_drain(struct cli *cli, int argc, char **argv);           /* cmd_drain.c */
int cmd_node_resume(struct cli *cli, int argc, char **argv);          /* cmd_drain.c */
int cmd_vm_migrate(struct cli *cli, int argc, char **argv);           /* cmd_migrate.c */
int cmd_vm_migrations(struct cli *cli, int argc, char **argv);        /* cmd_migrate.c */
int cmd_vm_storage_move(struct cli *cli, int argc, char **argv);      /* cmd_storage.c */
int cmd_vm_import(struct cli *cli, int argc, char **argv);            /* cmd_vm_import.c */
int cmd_vm_measure_migration(struct cli *cli, int argc, char **argv); /* cmd_migrate.c */

/* Runs the entry of table named argv[0]; "help"/--help/no name print the table under title
 * (exit 0, or 2 when the name is missing or unknown). */
int cli_dispatch(struct cli *cli, const char *title, const struct cli_cmd *table, size_t n,
                 int argc, char **argv);

/* Options every command accepts; put them into each option table. */
#define CLI_COMMON_SHORTOPTS ":ho:"
#define CLI_COMMON_LONGOPTS                                                                        \
    {"help", no_argument, NULL, 'h'},                                                              \
    {                                                                                              \
        "output", required_argument, NULL, 'o'                                                     \
    }

/* What cli_getopt returns besides an option character and -1 (end of options). */
#define CLI_OPT_BAD 0x7fff

/*
 * getopt_long over argv (argv[0] is the command), quiet: an unknown option, a missing value
 * or a bad -o prints a usage error for cmd ("ferry vm create") and returns CLI_OPT_BAD.
 * Handles -o/--output itself. The first call must come with *first set; it resets getopt.
 */
/* What cli_common_options returns when the command goes on with its operands (at optind). */
#define CLI_GO (-1)
/* Parses the options of a command that takes only the common ones (-o, -h), and without
 * operands when operands is false: CLI_GO, or EXIT_OK after printing help, or EXIT_USAGE
 * after saying what is wrong. */
int cli_common_options(struct cli *cli, const char *cmd, int argc, char **argv, const char *help,
                       bool operands);
int cli_getopt(struct cli *cli, const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts, bool *first);

/* Prints "ferry CMD: MESSAGE" and "Try 'ferry CMD --help'." to stderr; returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The one operand left after the options (*out), or a usage error: what ("a VM NAME") is
 * missing, or an unexpected second operand. Returns EXIT_OK or EXIT_USAGE. */
int cli_one_operand(const char *cmd, int argc, char **argv, const char *what, const char **out);
/* Prints "ferry: MESSAGE" to stderr; returns EXIT_FAIL. */
int cli_fail(const struct ferr *e);
/* Prints "ferry: out of memory" to stderr; returns EXIT_FAIL. */
int cli_nomem(void);

/* client_call on cli's client; on error prints "ferry: MESSAGE" and returns EXIT_FAIL with
 * *reply NULL. On success *reply (caller owns) is set and EXIT_OK returned. */
int cli_call(struct cli *cli, const char *method, const char *path, const json_t *body,
             json_t **reply);

/* Blocks until ms pass or Ctrl-C; returns false once Ctrl-C was pressed. cli_follow_begin
 * installs the SIGINT handler that makes the follow loops of -f end cleanly. */
void cli_follow_begin(void);
bool cli_follow_sleep(unsigned ms);
bool cli_interrupted(void);

/* An age in ms (a JSON integer, like "last_contact_ms") as "0.4s ago", "5m03s ago"; "-" when v
 * is null, negative or not an integer. Returns buf. */
char *cli_ago(const json_t *v, char *buf, size_t size);
/* Prints a note to stderr when a read's "stale_ms" says the answer may be old (over 2 s, or -1:
 * no leader known). */
void cli_stale_note(const json_t *reply);

/* Small JSON getters that tolerate missing fields. */
const char *cli_jstr(const json_t *o, const char *key); /* NULL if absent or not a string */
uint64_t cli_jnum(const json_t *o, const char *key);    /* 0 if absent; reals are truncated */

#endif
