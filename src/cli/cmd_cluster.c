/* SPDX-License-Identifier: MIT */
/* ferry cluster: init, join, leave and status of the cluster this host's ferryd belongs to. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "common/util.h"

#define JOIN_TOKEN_MAX 1024

/* s, or dflt when s is NULL or empty. */
static const char *str_or(const char *s, const char *dflt)
{
    return s && s[0] ? s : dflt;
}

/* No arguments may be left after the options of cmd. */
static int no_args(const char *cmd, int argc, char **argv)
{
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    return EXIT_OK;
}

/* ---- cluster init ------------------------------------------------------------------------ */

static const char init_help[] =
    "Usage: ferry cluster init [--name NAME] [-o table|json]\n"
    "\n"
    "Makes this host's ferryd a one-node cluster and prints the cluster id, the join token\n"
    "and the command that adds another host. ferryd must listen on TCP (--listen ADDR:PORT):\n"
    "that address is where the other hosts join. Refused if this node is in a cluster.\n"
    "\n"
    "Options:\n"
    "  --name NAME              a name for the cluster\n"
    "  -o, --output table|json  output format\n";

static int cluster_init(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "cluster init", *name = NULL;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "n:", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(init_help, stdout);
            return EXIT_OK;
        case 'n':
            if (!optarg[0])
                return cli_usage(cmd, "--name: the name is empty");
            name = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (no_args(cmd, argc, argv) != EXIT_OK)
        return EXIT_USAGE;

    json_t *body = json_object();
    if (!body || (name && json_object_set_new(body, "name", json_string(name)) < 0)) {
        json_decref(body);
        return cli_nomem();
    }
    json_t *r;
    int rc = cli_call(cli, "POST", "/v1/cluster/init", body, &r);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
        json_decref(r);
        return EXIT_OK;
    }
    const char *cname = cli_jstr(r, "name"), *token = str_or(cli_jstr(r, "token"), "TOKEN"),
               *addr = str_or(cli_jstr(r, "api_addr"), "ADDRESS");
    bool named = cname && cname[0];
    output_kv(stdout, "cluster", "%s%s%s%s", str_or(cli_jstr(r, "cluster_id"), "?"),
              named ? " (" : "", named ? cname : "", named ? ")" : "");
    output_kv(stdout, "node id", "%" PRIu64, cli_jnum(r, "node_id"));
    output_kv(stdout, "api address", "%s", addr);
    output_kv(stdout, "join token", "%s", token);
    if (cli_jstr(r, "ca_fingerprint"))
        output_kv(stdout, "tls ca", "%s (SHA-256; the token pins it)",
                  cli_jstr(r, "ca_fingerprint"));
    printf("\nTo add a host, run on it:\n  ferry cluster join %s --token %s\n", addr, token);
    json_decref(r);
    return EXIT_OK;
}

/* ---- cluster join ------------------------------------------------------------------------ */

static const char join_help[] =
    "Usage: ferry cluster join ADDRESS --token TOKEN [-o table|json]\n"
    "\n"
    "Adds this host's ferryd to the cluster that the member at ADDRESS (its API address,\n"
    "IP:PORT, as `ferry cluster init` printed it) belongs to. The node joins as a non-voter\n"
    "and becomes a voter once it caught up with the cluster's log. This ferryd must listen\n"
    "on TCP (--listen ADDR:PORT) and must not be in a cluster yet.\n"
    "\n"
    "Options:\n"
    "  --token TOKEN            the join token `ferry cluster init` printed\n"
    "  -o, --output table|json  output format\n";

static int cluster_join(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"token", required_argument, NULL, 't'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "cluster join", *token = NULL;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "t:", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(join_help, stdout);
            return EXIT_OK;
        case 't':
            token = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    const char *addr;
    int urc = cli_one_operand(cmd, argc, argv, "the ADDRESS (IP:PORT) of a cluster member", &addr);
    if (urc != EXIT_OK)
        return urc;
    char why[256];
    if (cli_check_address(addr, why, sizeof(why)) < 0)
        return cli_usage(cmd, "%s", why);
    if (!token)
        return cli_usage(cmd, "--token TOKEN is needed (`ferry cluster init` printed it)");
    if (!token[0] || strlen(token) > JOIN_TOKEN_MAX)
        return cli_usage(cmd, "--token: expected 1..%d characters", JOIN_TOKEN_MAX);

    json_t *body = json_pack("{s:s, s:s}", "address", addr, "token", token);
    if (!body)
        return cli_nomem();
    json_t *r;
    int rc = cli_call(cli, "POST", "/v1/cluster/join", body, &r);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
    } else {
        const char *cname = cli_jstr(r, "name");
        bool named = cname && cname[0];
        uint64_t n = cli_jnum(r, "members");
        printf("joined cluster %s%s%s%s as node %" PRIu64 " (%" PRIu64 " member%s); it "
               "becomes a voter once it caught up\n",
               str_or(cli_jstr(r, "cluster_id"), "?"), named ? " (" : "", named ? cname : "",
               named ? ")" : "", cli_jnum(r, "node_id"), n, n == 1 ? "" : "s");
    }
    json_decref(r);
    return EXIT_OK;
}

/* ---- cluster leave ----------------------------------------------------------------------- */

static int cluster_leave(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "cluster leave";
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry cluster leave [-o table|json]\n\n"
                   "Takes this host's ferryd out of its cluster. Refused while this node owns\n"
                   "VMs: move or delete them first.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (no_args(cmd, argc, argv) != EXIT_OK)
        return EXIT_USAGE;
    json_t *r;
    int rc = cli_call(cli, "POST", "/v1/cluster/leave", NULL, &r);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
    } else {
        printf("left cluster %s\n", str_or(cli_jstr(r, "left"), "?"));
    }
    json_decref(r);
    return EXIT_OK;
}

/* ---- cluster remove ---------------------------------------------------------------------- */

static int cluster_remove(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "cluster remove";
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry cluster remove NODE [-o table|json]\n\n"
                   "Removes another member, e.g. a host that died for good, from the cluster.\n"
                   "Refused while it owns VMs. To take this node out, use ferry cluster leave.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    const char *node;
    int urc = cli_one_operand(cmd, argc, argv, "a NODE name", &node);
    if (urc != EXIT_OK)
        return urc;
    if (!name_valid(node, 63))
        return cli_usage(cmd, "'%s' is not a node name", node);
    json_t *body = json_pack("{s:s}", "node", node);
    json_t *r;
    int rc = body ? cli_call(cli, "POST", "/v1/cluster/remove", body, &r) : EXIT_FAIL;
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, r);
    else
        printf("%s: removed from the cluster\n", node);
    json_decref(r);
    return EXIT_OK;
}

/* ---- cluster status ---------------------------------------------------------------------- */

static void show_status(const json_t *s)
{
    const json_t *leader = json_object_get(s, "leader");
    const json_t *to = json_object_get(s, "timeouts");
    const char *name = cli_jstr(s, "name");
    bool named = name && name[0];

    output_kv(stdout, "cluster", "%s%s%s%s", str_or(cli_jstr(s, "cluster_id"), "?"),
              named ? " (" : "", named ? name : "", named ? ")" : "");
    output_kv(stdout, "this node", "%s (id %" PRIu64 "), %s", str_or(cli_jstr(s, "node_name"), "?"),
              cli_jnum(s, "node_id"), str_or(cli_jstr(s, "state"), "?"));
    if (json_is_object(leader))
        output_kv(stdout, "leader", "%s (id %" PRIu64 ", %s)",
                  str_or(cli_jstr(leader, "name"), "?"), cli_jnum(leader, "id"),
                  str_or(cli_jstr(leader, "api_addr"), "-"));
    else
        output_kv(stdout, "leader", "none known");
    output_kv(stdout, "quorum", "%s (%" PRIu64 " voter%s)",
              json_is_true(json_object_get(s, "quorum")) ? "yes" : "NO", cli_jnum(s, "voters"),
              cli_jnum(s, "voters") == 1 ? "" : "s");
    output_kv(stdout, "term", "%" PRIu64, cli_jnum(s, "term"));
    output_kv(stdout, "commit index", "%" PRIu64, cli_jnum(s, "commit_index"));
    output_kv(stdout, "last applied", "%" PRIu64, cli_jnum(s, "last_applied"));
    json_t *stale = json_object_get(s, "stale_ms");
    if (json_is_integer(stale) && json_integer_value(stale) >= 0)
        output_kv(stdout, "stale", "%" PRIu64 " ms (how old this node's copy may be)",
                  cli_jnum(s, "stale_ms"));
    else
        output_kv(stdout, "stale", "unknown: no contact with a leader");
    output_kv(stdout, "timeouts",
              "election %" PRIu64 " ms, raft heartbeat %" PRIu64 " ms, node heartbeat %" PRIu64
              " ms, down after %" PRIu64 " missed",
              cli_jnum(to, "election_ms"), cli_jnum(to, "heartbeat_ms"),
              cli_jnum(to, "node_heartbeat_ms"), cli_jnum(to, "node_down_after"));
    const json_t *tls = json_object_get(s, "tls");
    if (json_is_object(tls))
        output_kv(stdout, "tls ca", "%s (SHA-256; what a join token pins)",
                  cli_jstr(tls, "ca_fingerprint") ? cli_jstr(tls, "ca_fingerprint") : "-");
    const json_t *tm = json_object_get(s, "timing");
    if (json_is_object(tm)) {
        output_kv(stdout, "profile",
                  "%s%s: heartbeats every %" PRIu64 " ms, down after %" PRIu64
                  " ms; leases every %" PRIu64 " ms, stale after %" PRIu64
                  " ms; fence after %" PRIu64 " ms",
                  str_or(cli_jstr(tm, "profile"), "?"),
                  json_is_true(json_object_get(tm, "settling")) ? " (settling)" : "",
                  cli_jnum(tm, "heartbeat_ms"), cli_jnum(tm, "down_after_ms"),
                  cli_jnum(tm, "lease_ms"), cli_jnum(tm, "lease_expiry_ms"),
                  cli_jnum(tm, "fence_after_ms"));
        if (json_is_integer(json_object_get(tm, "heartbeat_late_ms")))
            output_kv(stdout, "heartbeat jitter",
                      "up to %" PRIu64 " ms late (%s), over the last %" PRIu64 " s",
                      cli_jnum(tm, "heartbeat_late_ms"),
                      str_or(cli_jstr(tm, "heartbeat_late_node"), "?"),
                      cli_jnum(tm, "heartbeat_late_measured_ms") / 1000 > 120
                          ? 120
                          : cli_jnum(tm, "heartbeat_late_measured_ms") / 1000);
    }
}

static int print_members(const json_t *s)
{
    static const char *const headers[] = {"ID",    "NAME",   "ROLE",         "HEALTH",
                                          "ADMIN", "LEADER", "LAST-CONTACT", "API"};
    struct output_table *t = output_table_new(ARRAY_SIZE(headers), headers);
    if (!t)
        return cli_nomem();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(s, "members"), i, m)
    {
        char id[24], ago[48];
        snprintf(id, sizeof(id), "%" PRIu64, cli_jnum(m, "id"));
        const char *cells[] = {id,
                               cli_jstr(m, "name"),
                               cli_jstr(m, "role"),
                               cli_jstr(m, "state"),
                               cli_jstr(m, "admin"),
                               json_is_true(json_object_get(m, "leader")) ? "*" : "",
                               cli_ago(json_object_get(m, "last_contact_ms"), ago, sizeof(ago)),
                               cli_jstr(m, "api_addr")};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return cli_nomem();
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    return EXIT_OK;
}

static int cluster_status(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "cluster status";
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry cluster status [-o table|json]\n\n"
                   "Shows the cluster as this node sees it: its Raft state, the leader, whether\n"
                   "a quorum of voters is reachable, the term, commit and applied index, how\n"
                   "stale this node's copy of the database may be, the timeouts, and each\n"
                   "member with its role, health state and last contact.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (no_args(cmd, argc, argv) != EXIT_OK)
        return EXIT_USAGE;
    json_t *r;
    int rc = cli_call(cli, "GET", "/v1/cluster/status", NULL, &r);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
    } else {
        show_status(r);
        putchar('\n');
        rc = print_members(r);
    }
    json_decref(r);
    return rc;
}

/* ---- cluster set ------------------------------------------------------------------------- */

static int cluster_set(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"profile", required_argument, NULL, 'p'}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "cluster set";
    const char *profile = NULL;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'p') {
            profile = optarg;
            continue;
        }
        if (c == 'h') {
            printf("Usage: ferry cluster set --profile default|fast [-o table|json]\n\n"
                   "Sets the cluster's timing profile, which every node follows:\n"
                   "  default  each node's own ferryd options (heartbeats every 1000 ms, down\n"
                   "           after 5 missed; leases every 1000 ms, stale after 5000 ms; fence\n"
                   "           after 3000 ms; watchdog 3000 ms unless changed)\n"
                   "  fast     heartbeats every 250 ms, down after 4 missed; leases every\n"
                   "           250 ms, stale after 2500 ms; fence after 2000 ms; watchdog\n"
                   "           1000 ms: a dead host's VMs restart about 3 s sooner\n"
                   "A change settles for 10 s (faster senders, patient judges). fast is refused\n"
                   "while a node is not up or its heartbeats come more than 250 ms late\n"
                   "(ferry cluster status shows the jitter).\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (no_args(cmd, argc, argv) != EXIT_OK)
        return EXIT_USAGE;
    if (!profile)
        return cli_usage(cmd, "nothing to set: give --profile default|fast");
    if (strcmp(profile, "default") != 0 && strcmp(profile, "fast") != 0)
        return cli_usage(cmd, "--profile: expected default or fast, not '%s'", profile);
    json_t *body = json_pack("{s:s}", "profile", profile);
    json_t *r;
    int rc = body ? cli_call(cli, "POST", "/v1/cluster/profile", body, &r) : EXIT_FAIL;
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, r);
    else if (json_is_true(json_object_get(r, "changed")))
        printf("profile %s: every node follows it, settled in %" PRIu64 " s\n", profile,
               cli_jnum(r, "settle_ms") / 1000);
    else
        printf("profile %s: already the cluster's\n", profile);
    json_decref(r);
    return EXIT_OK;
}

static const struct cli_cmd cluster_cmds[] = {
    {"init", cluster_init, "make this node a one-node cluster; prints the join token"},
    {"join", cluster_join, "join the cluster of the member at ADDRESS"},
    {"leave", cluster_leave, "take this node out of its cluster"},
    {"remove", cluster_remove, "remove another member (a dead host) from the cluster"},
    {"status", cluster_status, "members, leader, quorum, Raft term and indexes"},
    {"set", cluster_set, "set the cluster's timing profile (--profile default|fast)"},
};

int cmd_cluster(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "cluster", cluster_cmds, ARRAY_SIZE(cluster_cmds), argc - 1, argv + 1);
}
