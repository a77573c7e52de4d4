/* SPDX-License-Identifier: MIT */
/* ferry node show, node list and ferry events: this host, the cluster's nodes, what happened. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/sse.h"
#include "cli/cmd.h"
#include "common/util.h"

#define EVENTS_POLL_MS 500

/* ---- node show --------------------------------------------------------------------------- */

static void show_node(const json_t *n)
{
    const json_t *mem = json_object_get(n, "memory");
    char a[32], b[32], c[32];
    const char *s;

    output_kv(stdout, "name", "%s", (s = cli_jstr(n, "name")) ? s : "-");
    output_kv(stdout, "hostname", "%s", (s = cli_jstr(n, "hostname")) ? s : "-");
    output_kv(stdout, "version", "%s", (s = cli_jstr(n, "version")) ? s : "-");
    output_kv(stdout, "health", "%s", (s = cli_jstr(n, "state")) ? s : "-");
    s = cli_jstr(n, "admin");
    output_kv(stdout, "admin", "%s%s", s ? s : "-",
              s && strcmp(s, "active") != 0 ? " (takes no new VMs; ferry node resume)" : "");
    const char *reason = cli_jstr(n, "accel_reason");
    bool forced = json_is_true(json_object_get(n, "accel_forced"));
    output_kv(stdout, "accelerator", "%s (%s%s%s)", (s = cli_jstr(n, "accel")) ? s : "-",
              forced ? "forced" : "auto", reason && reason[0] ? ": " : "", reason ? reason : "");
    output_kv(stdout, "qemu", "%s", (s = cli_jstr(n, "qemu")) ? s : "unknown");
    const json_t *tls = json_object_get(n, "tls");
    if (json_is_object(tls)) {
        output_kv(stdout, "tls ca", "%s", (s = cli_jstr(tls, "ca_fingerprint")) ? s : "-");
        output_kv(stdout, "tls certificate", "%s until %s",
                  (s = cli_jstr(tls, "node_fingerprint")) ? s : "-",
                  cli_jstr(tls, "node_not_after") ? cli_jstr(tls, "node_not_after") : "?");
    }
    if ((s = cli_jstr(n, "migration_refused")))
        output_kv(stdout, "live migration", "refused: %s", s);
    output_kv(stdout, "hw virt", "%s",
              json_is_true(json_object_get(n, "hw_virt")) ? "yes (cpu has vmx or svm)" : "no");
    output_kv(stdout, "kvm usable", "%s",
              json_is_true(json_object_get(n, "kvm_usable")) ? "yes (/dev/kvm opens)" : "no");
    uint64_t sockets = cli_jnum(n, "sockets");
    output_kv(stdout, "cpus", "%" PRIu64 " in %" PRIu64 " socket%s", cli_jnum(n, "cpus"), sockets,
              sockets == 1 ? "" : "s");
    output_kv(stdout, "cpu model", "%s", (s = cli_jstr(n, "cpu_model")) ? s : "-");
    const json_t *cpu = json_object_get(n, "cpu");
    if (json_is_object(cpu)) {
        json_t *busy = json_object_get(cpu, "busy_ratio");
        char use[48] = "";
        if (json_is_number(busy))
            snprintf(use, sizeof(use), "; cpu use %.0f%% over the last 10 s",
                     100 * json_number_value(busy));
        output_kv(stdout, "load", "%.2f %.2f %.2f (1, 5, 15 min)%s",
                  json_number_value(json_object_get(cpu, "load1")),
                  json_number_value(json_object_get(cpu, "load5")),
                  json_number_value(json_object_get(cpu, "load15")), use);
    }
    output_kv(stdout, "memory", "%s total, %s available, %s allocated to VMs",
              output_bytes(cli_jnum(mem, "total_mib") << 20, a, sizeof(a)),
              output_bytes(cli_jnum(mem, "available_mib") << 20, b, sizeof(b)),
              output_bytes(cli_jnum(mem, "allocated_mib") << 20, c, sizeof(c)));
    output_kv(stdout, "vms", "%" PRIu64 " (%" PRIu64 " running)", cli_jnum(n, "vms"),
              cli_jnum(n, "running"));
    output_kv(stdout, "state dir", "%s", (s = cli_jstr(n, "state_dir")) ? s : "-");
    output_kv(stdout, "api socket", "%s", (s = cli_jstr(n, "api_socket")) ? s : "-");
    output_kv(stdout, "uptime", "%s", output_duration(cli_jnum(n, "uptime_s"), a, sizeof(a)));
}

static int node_show(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry node show [-o table|json]\n\n"
        "Shows this host: its health (up, down) and admin state (active, draining,\n"
        "paused) in the cluster, CPUs, memory, VMs, and the accelerator VMs get (KVM\n"
        "or TCG), why, and whether it was forced.\n";
    int go = cli_common_options(cli, "node show", argc, argv, help, false);
    if (go != CLI_GO)
        return go;
    json_t *node;
    int rc = cli_call(cli, "GET", "/v1/node", NULL, &node);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, node);
    else
        show_node(node);
    json_decref(node);
    return EXIT_OK;
}

/* ---- node list --------------------------------------------------------------------------- */

/* A node's CPUs, 1-minute load and CPU use (the share of all its CPUs busy over the last 10 s)
 * as table cells; "" where the node did not say (an older ferryd, its first 10 s). */
static void node_cpu_cells(const json_t *cpu, char cpus[16], char load[24], char busy[16])
{
    cpus[0] = load[0] = busy[0] = '\0';
    if (!json_is_object(cpu))
        return;
    snprintf(cpus, 16, "%" PRIu64, cli_jnum(cpu, "count"));
    json_t *l = json_object_get(cpu, "load1"), *b = json_object_get(cpu, "busy_ratio");
    if (json_is_number(l))
        snprintf(load, 24, "%.2f", json_number_value(l));
    if (json_is_number(b))
        snprintf(busy, 16, "%.0f%%", 100 * json_number_value(b));
}

static int print_nodes(const json_t *reply)
{
    static const char *const headers[] = {
        "NAME",  "HEALTH", "ADMIN",     "LEADER",   "ROLE",     "VMS",   "CPUS",
        "LOAD1", "CPU%",   "MEM-TOTAL", "MEM-USED", "MEM-FREE", "ACCEL", "LAST-HEARTBEAT"};
    struct output_table *t = output_table_new(ARRAY_SIZE(headers), headers);
    if (!t)
        return EXIT_FAIL;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(reply, "nodes"), i, n)
    {
        const json_t *mem = json_object_get(n, "memory");
        char vms[24], total[32], used[32], freem[32], hb[48], cpus[16], load[24], busy[16];
        snprintf(vms, sizeof(vms), "%" PRIu64, cli_jnum(n, "vms"));
        node_cpu_cells(json_object_get(n, "cpu"), cpus, load, busy);
        const char *accel = cli_jstr(n, "accel");
        const char *cells[] = {cli_jstr(n, "name"),
                               cli_jstr(n, "state"),
                               cli_jstr(n, "admin"),
                               json_is_true(json_object_get(n, "leader")) ? "*" : "",
                               cli_jstr(n, "role"),
                               vms,
                               cpus[0] ? cpus : NULL,
                               load[0] ? load : NULL,
                               busy[0] ? busy : NULL,
                               output_bytes(cli_jnum(mem, "total_mib") << 20, total, sizeof(total)),
                               output_bytes(cli_jnum(mem, "used_mib") << 20, used, sizeof(used)),
                               output_bytes(cli_jnum(mem, "free_mib") << 20, freem, sizeof(freem)),
                               accel && accel[0] ? accel : NULL,
                               cli_ago(json_object_get(n, "last_heartbeat_ms"), hb, sizeof(hb))};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return EXIT_FAIL;
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    return EXIT_OK;
}

static int node_list(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry node list [-o table|json]\n\n"
        "Lists the nodes of the cluster as this node's copy of the cluster database\n"
        "has them: health (up, down), admin state (active, draining, paused: only\n"
        "an up, active node takes new VMs), the leader (*), Raft role, VM count,\n"
        "memory, accelerator and the last heartbeat. Outside a cluster: this node\n"
        "alone. Any node answers; a note on stderr says when its copy may be old.\n";
    int go = cli_common_options(cli, "node list", argc, argv, help, false);
    if (go != CLI_GO)
        return go;
    json_t *reply;
    int rc = cli_call(cli, "GET", "/v1/nodes", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
    } else if (print_nodes(reply) != EXIT_OK) {
        fprintf(stderr, "ferry: out of memory\n");
        rc = EXIT_FAIL;
    }
    cli_stale_note(reply);
    json_decref(reply);
    return rc;
}

static const struct cli_cmd node_cmds[] = {
    {"show", node_show, "show this host: CPUs, memory, accelerator"},
    {"list", node_list, "list the cluster's nodes: state, leader, VMs, memory"},
    {"drain", cmd_node_drain, "live-migrate every VM off a node, then pause it"},
    {"resume", cmd_node_resume, "let a paused or draining node take new VMs again"},
};

int cmd_node(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "node", node_cmds, ARRAY_SIZE(node_cmds), argc - 1, argv + 1);
}

/* ---- events ------------------------------------------------------------------------------ */

static const char events_help[] =
    "Usage: ferry events [--since ID] [-f] [--vm NAME] [--cluster [--limit N]]\n"
    "\n"
    "Prints the event log of this host, oldest first: VM lifecycle, migrations, the\n"
    "cluster's tasks (task.created, task.progress, task.ended), ...\n"
    "\n"
    "Options:\n"
    "  --since ID     only events after event ID\n"
    "  --vm NAME      only the events of VM NAME (the newest --limit of them)\n"
    "  --cluster      the events of every up node merged by time, with a NODE column (a\n"
    "                 VM's start, migration and failover are told by the nodes involved);\n"
    "                 the nodes that did not answer are named on stderr. Not with --since\n"
    "                 or -f: event IDs are each node's own\n"
    "  --limit N      at most N events, the newest (1..1000; default 100)\n"
    "  -f, --follow   keep printing new events as they happen (ferryd's event stream)\n"
    "                 until Ctrl-C; a dropped connection is made again, resuming after\n"
    "                 the last event printed\n"
    "  -o, --output table|json (json: one event per line)\n";

#define EVENT_FMT "%-6s  %-19s  %-14s  %-16s  %s\n"
#define CLUSTER_EVENT_FMT "%-19s  %-10s  %-14s  %-16s  %s\n"

/* Prints the events of reply newer than *last and moves *last on. */
static void events_print(struct cli *cli, const json_t *reply, uint64_t *last, bool follow,
                         bool cluster)
{
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(reply, "events"), i, ev)
    {
        uint64_t id = cli_jnum(ev, "id");
        if (!cluster && id <= *last && *last)
            continue;
        *last = id;
        if (cli->fmt == OUTPUT_JSON) {
            json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER); /* one per line */
            fputc('\n', stdout);
            continue;
        }
        char ids[24], when[32];
        const char *vm = cli_jstr(ev, "vm"), *type = cli_jstr(ev, "type"),
                   *msg = cli_jstr(ev, "message"), *node = cli_jstr(ev, "node");
        snprintf(ids, sizeof(ids), "%" PRIu64, id);
        output_time(cli_jnum(ev, "time_ms"), when, sizeof(when));
        if (cluster)
            printf(CLUSTER_EVENT_FMT, when, node ? node : "-", vm && vm[0] ? vm : "-",
                   type ? type : "-", msg ? msg : "");
        else
            printf(EVENT_FMT, ids, when, vm && vm[0] ? vm : "-", type ? type : "-", msg ? msg : "");
    }
    if (follow)
        fflush(stdout);
}

static int events_get(struct cli *cli, uint64_t since, bool has_since, json_t **reply)
{
    char path[64];
    if (has_since)
        snprintf(path, sizeof(path), "/v1/events?since=%" PRIu64, since);
    else
        snprintf(path, sizeof(path), "/v1/events");
    return cli_call(cli, "GET", path, NULL, reply);
}

/* --vm / --cluster: GET /v1/events?vm=NAME&scope=cluster&limit=N (vm NULL: every VM's). */
static int events_get_filtered(struct cli *cli, const char *vm, bool cluster, unsigned limit,
                               json_t **reply)
{
    char path[200];
    snprintf(path, sizeof(path), "/v1/events?limit=%u%s%s%s", limit, vm ? "&vm=" : "", vm ? vm : "",
             cluster ? "&scope=cluster" : "");
    int rc = cli_call(cli, "GET", path, NULL, reply);
    if (rc != EXIT_OK || !cluster)
        return rc;
    const char *node;
    json_t *why;
    json_object_foreach(json_object_get(*reply, "nodes"), node, why)
    {
        if (strcmp(json_string_value(why) ? json_string_value(why) : "", "ok") != 0)
            fprintf(stderr, "ferry: events: %s's are missing: %s\n", node,
                    json_string_value(why) ? json_string_value(why) : "?");
    }
    return rc;
}

struct follow {
    struct cli *cli;
    struct sse_reader r;
    uint64_t *last;
    int bad; /* the stream broke the format: reconnect */
};

static void on_stream_event(uint64_t id, const char *type, const char *data, void *arg)
{
    struct follow *f = arg;
    json_t *ev = json_loads(data, 0, NULL);
    json_t *wrap = ev ? json_pack("{s:[o]}", "events", ev) : NULL;
    if (wrap)
        events_print(f->cli, wrap, f->last, true, false);
    json_decref(wrap);
}

static void on_stream_bytes(const char *p, size_t n, void *arg)
{
    struct follow *f = arg;
    if (!f->bad && sse_reader_feed(&f->r, p, n, on_stream_event, f) < 0)
        f->bad = 1;
}

/* Follows GET /v1/events?follow=1 until Ctrl-C, reconnecting with the last id it printed when
 * the connection drops. EXIT_USAGE when this ferryd has no event stream (an older one). */
static int events_stream(struct cli *cli, uint64_t *last)
{
    bool said = false;
    while (!cli_interrupted()) {
        struct follow f = {.cli = cli, .last = last};
        struct ferr e = {0};
        char id[24];
        snprintf(id, sizeof(id), "%" PRIu64, *last);
        int rc = client_stream(cli->client, "/v1/events?follow=1", id, on_stream_bytes,
                               cli_interrupted, &f, &e);
        sse_reader_free(&f.r);
        if (cli_interrupted())
            break;
        if (rc == FERR_INVALID && strstr(e.msg, "follow"))
            return EXIT_USAGE;
        if (rc < 0 && rc != FERR_UNAVAIL)
            return cli_fail(&e);
        if (!said) /* once per outage: ferryd may be restarting */
            fprintf(stderr,
                    "ferry: the event stream ended%s%s; reconnecting after event %" PRIu64 "\n",
                    rc ? ": " : "", rc ? e.msg : "", *last);
        said = rc != 0;
        cli_follow_sleep(1000);
    }
    return EXIT_OK;
}

int cmd_events(struct cli *cli, int argc, char **argv)
{
    enum { O_SINCE = 256, O_VM, O_CLUSTER, O_LIMIT };
    static const struct option opts[] = {
        {"since", required_argument, NULL, O_SINCE},
        {"vm", required_argument, NULL, O_VM},
        {"cluster", no_argument, NULL, O_CLUSTER},
        {"limit", required_argument, NULL, O_LIMIT},
        {"follow", no_argument, NULL, 'f'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    uint64_t since = 0, limit = 100;
    bool has_since = false, follow = false, first = true, cluster = false, has_limit = false;
    const char *vm = NULL;
    int c;
    while ((c = cli_getopt(cli, "events", argc, argv, CLI_COMMON_SHORTOPTS "f", opts, &first)) !=
           -1) {
        switch (c) {
        case 'h':
            fputs(events_help, stdout);
            return EXIT_OK;
        case 'f':
            follow = true;
            break;
        case O_SINCE:
            if (cli_parse_u64(optarg, 0, INT64_MAX, &since) < 0)
                return cli_usage("events", "--since: '%s' is not an event ID", optarg);
            has_since = true;
            break;
        case O_VM:
            if (!name_valid(optarg, 63))
                return cli_usage("events", "--vm: '%s' is not a VM name", optarg);
            vm = optarg;
            break;
        case O_CLUSTER:
            cluster = true;
            break;
        case O_LIMIT:
            if (cli_parse_u64(optarg, 1, 1000, &limit) < 0)
                return cli_usage("events", "--limit: '%s' is not a number in 1..1000", optarg);
            has_limit = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("events", "unexpected argument '%s'", argv[optind]);
    if ((vm || cluster || has_limit) && (follow || has_since))
        return cli_usage("events", "--vm, --cluster and --limit list the newest events; they "
                                   "do not go with --since or -f");

    json_t *reply;
    if (vm || cluster || has_limit) {
        int rc = events_get_filtered(cli, vm, cluster, (unsigned)limit, &reply);
        if (rc != EXIT_OK)
            return rc;
        if (cli->fmt == OUTPUT_JSON) {
            output_json(stdout, reply);
        } else {
            uint64_t last = 0;
            if (cluster)
                printf(CLUSTER_EVENT_FMT, "TIME", "NODE", "VM", "TYPE", "MESSAGE");
            else
                printf(EVENT_FMT, "ID", "TIME", "VM", "TYPE", "MESSAGE");
            events_print(cli, reply, &last, false, cluster);
        }
        json_decref(reply);
        return EXIT_OK;
    }
    int rc = events_get(cli, since, has_since, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (!follow && cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
        json_decref(reply);
        return EXIT_OK;
    }
    uint64_t last = since;
    if (cli->fmt != OUTPUT_JSON)
        printf(EVENT_FMT, "ID", "TIME", "VM", "TYPE", "MESSAGE");
    events_print(cli, reply, &last, follow, false);
    json_decref(reply);
    if (!follow)
        return EXIT_OK;
    cli_follow_begin();
    rc = events_stream(cli, &last);
    if (rc != EXIT_USAGE)
        return rc;
    /* A ferryd without the event stream: ask every EVENTS_POLL_MS. */
    while (cli_follow_sleep(EVENTS_POLL_MS)) {
        rc = events_get(cli, last, last > 0 || has_since, &reply);
        if (rc != EXIT_OK)
            return cli_interrupted() ? EXIT_OK : rc;
        events_print(cli, reply, &last, true, false);
        json_decref(reply);
    }
    return EXIT_OK;
}
