/* SPDX-License-Identifier: MIT */
/* ferry node drain and node resume: empty a node for maintenance, and bring it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "common/util.h"

static const char drain_help[] =
    "Usage: ferry node drain NODE [--parallel N]\n"
    "\n"
    "Sets NODE's admin state to draining (it takes no new VMs), live-migrates every running\n"
    "VM it owns to the up, active node with the most free memory, at most N at a time, then\n"
    "sets it to paused. The admin state is apart from the node's health (up or down): a\n"
    "paused node stays paused when it goes down and comes back, until ferry node resume.\n"
    "Stopped VMs stay on NODE (their definition lives with their owner): start them after\n"
    "ferry node resume, or delete them. A VM whose migration fails keeps running on NODE,\n"
    "NODE stays draining, and the command exits 1; run it again to retry.\n"
    "\n"
    "  --parallel N    migrations at a time, 1..16 (default 2)\n"
    "  -o json         print the answer as JSON\n";

static const char resume_help[] = "Usage: ferry node resume NODE\n"
                                  "\n"
                                  "Sets the admin state of a paused or draining NODE to active:\n"
                                  "it takes new VMs again. NODE must be up.\n";

static void print_result(const json_t *r)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(r, "vms"), i, v)
    {
        const char *out = cli_jstr(v, "outcome"), *to = cli_jstr(v, "to"),
                   *msg = cli_jstr(v, "message");
        if (out && strcmp(out, "migrated") == 0)
            printf("  %-20s migrated to %s (total %llu ms, downtime %llu ms)\n",
                   cli_jstr(v, "name"), to ? to : "?", (unsigned long long)cli_jnum(v, "total_ms"),
                   (unsigned long long)cli_jnum(v, "downtime_ms"));
        else
            printf("  %-20s %s: %s\n", cli_jstr(v, "name"), out ? out : "?", msg ? msg : "");
    }
    printf("%s is %s: %llu migrated, %llu failed, %llu stayed, in %llu ms\n",
           cli_jstr(r, "node") ? cli_jstr(r, "node") : "?",
           cli_jstr(r, "admin") ? cli_jstr(r, "admin") : "?",
           (unsigned long long)cli_jnum(r, "migrated"), (unsigned long long)cli_jnum(r, "failed"),
           (unsigned long long)cli_jnum(r, "stayed"), (unsigned long long)cli_jnum(r, "total_ms"));
}

/* The one NODE operand of cmd, checked, and the API path of its action. */
static int node_action(const char *cmd, int argc, char **argv, const char *action,
                       const char **node, char *path, size_t size)
{
    int urc = cli_one_operand(cmd, argc, argv, "a NODE", node);
    if (urc != EXIT_OK)
        return urc;
    if (!name_valid(*node, 63))
        return cli_usage(cmd, "'%s' is not a node name", *node);
    snprintf(path, size, "/v1/nodes/%s/%s", *node, action);
    return EXIT_OK;
}

int cmd_node_drain(struct cli *cli, int argc, char **argv)
{
    enum { O_PARALLEL = 256 };
    static const struct option opts[] = {
        {"parallel", required_argument, NULL, O_PARALLEL}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "node drain";
    uint64_t parallel = 2;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(drain_help, stdout);
            return EXIT_OK;
        case O_PARALLEL:
            if (cli_parse_u64(optarg, 1, 16, &parallel) < 0)
                return cli_usage(cmd, "--parallel: '%s' is not a number in 1..16", optarg);
            break;
        default:
            return EXIT_USAGE;
        }
    }
    const char *node;
    char path[128];
    int urc = node_action(cmd, argc, argv, "drain", &node, path, sizeof(path));
    if (urc != EXIT_OK)
        return urc;
    json_t *body = json_pack("{s:I}", "parallel", (json_int_t)parallel), *reply;
    if (cli->fmt != OUTPUT_JSON) {
        printf("draining %s, %llu at a time...\n", node, (unsigned long long)parallel);
        fflush(stdout);
    }
    int rc = cli_call(cli, "POST", path, body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        print_result(reply);
    rc = cli_jnum(reply, "failed") ? EXIT_FAIL : EXIT_OK;
    if (rc != EXIT_OK)
        fprintf(stderr,
                "ferry: %s stays draining: %llu VMs could not be migrated and keep "
                "running there\n",
                node, (unsigned long long)cli_jnum(reply, "failed"));
    json_decref(reply);
    return rc;
}

int cmd_node_resume(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "node resume";
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            fputs(resume_help, stdout);
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    const char *node;
    char path[128];
    int urc = node_action(cmd, argc, argv, "resume", &node, path, sizeof(path));
    if (urc != EXIT_OK)
        return urc;
    json_t *reply;
    int rc = cli_call(cli, "POST", path, NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("%s is %s: it takes new VMs again\n", node,
               cli_jstr(reply, "admin") ? cli_jstr(reply, "admin") : "?");
    json_decref(reply);
    return EXIT_OK;
}
