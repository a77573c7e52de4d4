/* SPDX-License-Identifier: MIT */
/* ferry vm ha enable|disable, and the HA options vm create shares. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_vm.h"
#include "common/util.h"

static const char ha_options_help[] =
    "  --preferred N1,N2        nodes to run on, most preferred first\n"
    "  --possible N1,N2,...     the only nodes it may run on (default: every node)\n"
    "  --anti-affinity CLASS    keep apart from other VMs of CLASS (soft)\n"
    "  --anti-affinity-strict   ... and never together, even if that leaves it stopped\n"
    "  --restart-max N          restarts on its own node within the period (0..100,\n"
    "                           default 3) before it is left failed\n"
    "  --restart-period S       that period in seconds (1..86400, default 900)\n"
    "  --failback WHEN          back to the most preferred node when it returns: never\n"
    "                           (default), immediate, or in a window of hours HH-HH\n";

const char *cli_ha_options_help(void)
{
    return ha_options_help;
}

/* "a,b,c" into a JSON array of strings; NULL for an empty item. */
static json_t *split_list(const char *arg)
{
    json_t *arr = json_array();
    char *copy = strdup(arg), *save = NULL;
    if (!arr || !copy) {
        json_decref(arr);
        free(copy);
        return NULL;
    }
    bool empty = !*copy || copy[strlen(copy) - 1] == ',' || copy[0] == ',' || strstr(copy, ",,");
    for (char *t = strtok_r(copy, ",", &save); t && !empty; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    free(copy);
    if (empty) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

int cli_ha_option(const char *cmd, int c, const char *arg, json_t *ha)
{
    uint64_t n;
    json_t *list;
    switch (c) {
    case CLI_HA_PRIORITY:
        json_object_set_new(ha, "priority", json_string(arg));
        break;
    case CLI_HA_PREFERRED:
    case CLI_HA_POSSIBLE:
        if (!(list = split_list(arg)))
            return cli_usage(cmd, "--%s: '%s' is not a list of node names like host2,host3",
                             c == CLI_HA_PREFERRED ? "preferred" : "possible", arg);
        json_object_set_new(ha, c == CLI_HA_PREFERRED ? "preferred" : "possible", list);
        break;
    case CLI_HA_ANTI:
        json_object_set_new(ha, "anti_affinity", json_string(arg));
        break;
    case CLI_HA_ANTI_STRICT:
        json_object_set_new(ha, "anti_affinity_strict", json_true());
        break;
    case CLI_HA_RESTART_MAX:
    case CLI_HA_PERIOD:
        if (cli_parse_u64(arg, 0, 1000000, &n) < 0)
            return cli_usage(cmd, "--%s: '%s' is not a number",
                             c == CLI_HA_RESTART_MAX ? "restart-max" : "restart-period", arg);
        json_object_set_new(ha, c == CLI_HA_RESTART_MAX ? "restart_max" : "restart_period_s",
                            json_integer((json_int_t)n));
        break;
    case CLI_HA_FAILBACK:
        json_object_set_new(ha, "failback", json_string(arg));
        break;
    default:
        return cli_usage(cmd, "unhandled option");
    }
    return EXIT_OK;
}

/* POST /v1/vms/NAME/ha {"ha": ha} (NULL: null) and prints the VM's HA state. */
static int ha_call(struct cli *cli, const char *name, json_t *ha)
{
    json_t *body = json_pack("{so}", "ha", ha ? ha : json_null()), *vm;
    char *path = cmd_vm__path(name, "/ha");
    if (!body || !path) {
        json_decref(body);
        free(path);
        return cli_nomem();
    }
    int rc = cli_call(cli, "POST", path, body, &vm);
    json_decref(body);
    free(path);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, vm);
    } else {
        json_t *h = json_object_get(vm, "ha");
        printf("%s: ha %s%s%s\n", name, cli_jstr(h, "state") ? cli_jstr(h, "state") : "?",
               cli_jstr(h, "priority") ? ", priority " : "",
               cli_jstr(h, "priority") ? cli_jstr(h, "priority") : "");
    }
    json_decref(vm);
    return EXIT_OK;
}

static int ha_enable(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"priority", required_argument, NULL, CLI_HA_PRIORITY},
        CLI_HA_LONGOPTS,
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "vm ha enable", *name;
    json_t *ha = json_object();
    bool first = true;
    int c, rc = EXIT_OK;
    if (!ha)
        return cli_nomem();
    while (rc == EXIT_OK &&
           (c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry vm ha enable NAME [OPTIONS]\n\n"
                   "Makes a VM highly available: when its QEMU dies it is started again on\n"
                   "its node (--restart-max times in --restart-period), and when its node is\n"
                   "lost it is to be started on another (failover). Every disk must be on a\n"
                   "cluster shared volume (ferry vm storage-move moves one there). Given again,\n"
                   "it replaces the settings.\n\n"
                   "  --priority P             high, medium (default), low, or none (never\n"
                   "                           started by HA)\n"
                   "%s",
                   ha_options_help);
            json_decref(ha);
            return EXIT_OK;
        }
        rc = c == CLI_OPT_BAD ? EXIT_USAGE : cli_ha_option(cmd, c, optarg, ha);
    }
    if (rc == EXIT_OK)
        rc = cli_one_operand(cmd, argc, argv, "a VM NAME", &name);
    if (rc != EXIT_OK) {
        json_decref(ha);
        return rc;
    }
    return ha_call(cli, name, ha);
}

static int ha_disable(struct cli *cli, int argc, char **argv)
{
    static const char help[] = "Usage: ferry vm ha disable NAME\n\n"
                               "The VM is not highly available any more: nothing restarts it.\n";
    const char *cmd = "vm ha disable", *name;
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    if (cli_one_operand(cmd, argc, argv, "a VM NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    return ha_call(cli, name, NULL);
}

static const struct cli_cmd ha_cmds[] = {
    {"enable", ha_enable, "make a VM highly available (or change its HA settings)"},
    {"disable", ha_disable, "a VM is not highly available any more"},
};

int cmd_vm_ha(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "vm ha", ha_cmds, ARRAY_SIZE(ha_cmds), argc - 1, argv + 1);
}

/* ---- vm failovers ------------------------------------------------------------------------ */

/* "+N.Ns" of at after base, or "-" when either is unknown. */
static const char *after(uint64_t base, uint64_t at, char *buf, size_t size)
{
    if (!base || !at || at < base)
        return "-";
    snprintf(buf, size, "+%.1fs", (double)(at - base) / 1000.0);
    return buf;
}

int cmd_vm_failovers(struct cli *cli, int argc, char **argv)
{
    static const char *const headers[] = {"NAME",  "FROM",  "TO",    "DECIDED", "DOWN",
                                          "STALE", "GIVEN", "START", "NET",     "WHY"};
    static const char help[] =
        "Usage: ferry vm failovers [-o table|json]\n\n"
        "The last failover of every VM that had one: from which node to which, when the\n"
        "leader decided it, and its timeline from the dead node's last heartbeat heard: marked\n"
        "down, its last lease renewal (stale from then on), given to the new node, QEMU\n"
        "started there, and the guest's first packet there (its network up: NET). START and\n"
        "NET are blank once the VM was started again later.\n";
    int go = cli_common_options(cli, "vm failovers", argc, argv, help, false);
    if (go != CLI_GO)
        return go;
    json_t *reply;
    int rc = cli_call(cli, "GET", "/v1/vms", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    json_t *out = json_array();
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(reply, "vms"), i, vm)
    {
        json_t *fo = json_object_get(vm, "failover");
        if (fo)
            json_array_append_new(
                out, json_pack("{sO sO sI sI}", "name", json_object_get(vm, "name"), "failover", fo,
                               "started_ms", (json_int_t)cli_jnum(vm, "started_ms"), "net_ms",
                               (json_int_t)cli_jnum(vm, "net_ms")));
    }
    json_decref(reply);
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, json_pack("{so}", "failovers", out));
        return EXIT_OK;
    }
    struct output_table *t = output_table_new(10, headers);
    if (!t) {
        json_decref(out);
        return cli_nomem();
    }
    json_t *x;
    json_array_foreach(out, i, x)
    {
        json_t *fo = json_object_get(x, "failover");
        uint64_t heard = cli_jnum(fo, "heard_ms"), decided = cli_jnum(fo, "decided_ms");
        uint64_t started = cli_jnum(x, "started_ms"), net = cli_jnum(x, "net_ms");
        bool this_start = started >= decided && started - decided < 600000;
        char when[40], d[16], s[16], g[16], q[16], nq[16];
        const char *cells[] = {cli_jstr(x, "name"),
                               cli_jstr(fo, "from"),
                               cli_jstr(fo, "to"),
                               output_time(decided, when, sizeof(when)),
                               after(heard, cli_jnum(fo, "down_ms"), d, sizeof(d)),
                               after(heard, cli_jnum(fo, "stale_ms"), s, sizeof(s)),
                               after(heard, decided, g, sizeof(g)),
                               this_start ? after(heard, started, q, sizeof(q)) : "-",
                               this_start ? after(heard, net, nq, sizeof(nq)) : "-",
                               cli_jstr(fo, "why")};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            json_decref(out);
            return cli_nomem();
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    json_decref(out);
    return EXIT_OK;
}
