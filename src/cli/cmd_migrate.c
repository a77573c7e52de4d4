/* SPDX-License-Identifier: MIT */
/* ferry vm migrate: live-migrate a VM to another node of the cluster, or cancel that. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "common/util.h"

static const char migrate_help[] =
    "Usage: ferry vm migrate NAME [--to NODE] [--budget-ms N] [--bandwidth-mib N]\n"
    "       ferry vm migrate --cancel NAME\n"
    "\n"
    "Live-migrates a running VM to another node (pre-copy) and answers when it is done:\n"
    "total time, QEMU's downtime (the blackout), bytes sent, passes and strategy.\n"
    "On any failure the VM keeps running where it was.\n"
    "\n"
    "  --to NODE       destination (default: the up node with the most free memory)\n"
    "  --budget-ms N   blackout budget, QEMU's downtime-limit (default: the VM's spec)\n"
    "  --bandwidth-mib N  cap the migration at N MiB/s (default: unlimited)\n"
    "  --cancel        cancel the migration of NAME under way\n"
    "  -o json         print the answer as JSON\n";

static int print_figures(struct cli *cli, const json_t *r)
{
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
        return EXIT_OK;
    }
    printf("%s: migrated %s -> %s\n", cli_jstr(r, "vm") ? cli_jstr(r, "vm") : "?",
           cli_jstr(r, "from") ? cli_jstr(r, "from") : "?",
           cli_jstr(r, "to") ? cli_jstr(r, "to") : "?");
    output_kv(stdout, "strategy", "%s", cli_jstr(r, "strategy") ? cli_jstr(r, "strategy") : "?");
    output_kv(stdout, "total", "%llu ms", (unsigned long long)cli_jnum(r, "total_ms"));
    output_kv(stdout, "downtime", "%llu ms (budget %llu ms, QEMU downtime-limit %llu ms)",
              (unsigned long long)cli_jnum(r, "downtime_ms"),
              (unsigned long long)cli_jnum(r, "budget_ms"),
              (unsigned long long)cli_jnum(r, "downtime_limit_ms"));
    output_kv(stdout, "setup", "%llu ms", (unsigned long long)cli_jnum(r, "setup_ms"));
    output_kv(stdout, "bytes", "%llu (%.1f MiB)", (unsigned long long)cli_jnum(r, "bytes"),
              (double)cli_jnum(r, "bytes") / (1024.0 * 1024.0));
    output_kv(stdout, "passes", "%llu", (unsigned long long)cli_jnum(r, "passes"));
    return EXIT_OK;
}

int cmd_vm_migrate(struct cli *cli, int argc, char **argv)
{
    enum { O_TO = 256, O_BUDGET, O_CANCEL, O_BW };
    static const struct option opts[] = {{"to", required_argument, NULL, O_TO},
                                         {"budget-ms", required_argument, NULL, O_BUDGET},
                                         {"cancel", no_argument, NULL, O_CANCEL},
                                         {"bandwidth-mib", required_argument, NULL, O_BW},
                                         CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "vm migrate", *to = NULL;
    uint64_t budget = 0, bw = 0;
    bool cancel = false, first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(migrate_help, stdout);
            return EXIT_OK;
        case O_TO:
            to = optarg;
            break;
        case O_BUDGET:
            if (cli_parse_u64(optarg, 1, 60000, &budget) < 0)
                return cli_usage(cmd, "--budget-ms: '%s' is not a number in 1..60000", optarg);
            break;
        case O_BW:
            if (cli_parse_u64(optarg, 1, 1048576, &bw) < 0)
                return cli_usage(cmd, "--bandwidth-mib: '%s' is not a number in 1..1048576",
                                 optarg);
            break;
        case O_CANCEL:
            cancel = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return cli_usage(cmd, "a VM NAME is needed");
    if (optind + 1 < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    if (cancel && (to || budget || bw))
        return cli_usage(cmd, "--cancel takes no --to, --budget-ms or --bandwidth-mib");
    char *esc = client_escape(argv[optind]);
    char path[512];
    if (!esc || snprintf(path, sizeof(path), "/v1/vms/%s/migrate%s", esc,
                         cancel ? "/cancel" : "") >= (int)sizeof(path)) {
        free(esc);
        return cli_usage(cmd, "NAME is too long");
    }
    free(esc);
    json_t *body = json_object();
    if (to)
        json_object_set_new(body, "to", json_string(to));
    if (budget)
        json_object_set_new(body, "budget_ms", json_integer((json_int_t)budget));
    if (bw)
        json_object_set_new(body, "max_bandwidth_mib", json_integer((json_int_t)bw));
    json_t *reply = NULL;
    int rc = cli_call(cli, "POST", path, body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cancel) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, reply);
        else
            printf("%s: cancelling the migration\n", argv[optind]);
    } else {
        rc = print_figures(cli, reply);
    }
    json_decref(reply);
    return rc;
}
