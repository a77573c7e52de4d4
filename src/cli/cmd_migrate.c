/* SPDX-License-Identifier: MIT */
/* ferry vm migrate: live-migrate a VM to another node of the cluster, or cancel that;
 * ferry vm migrations: the history of migrations from the cluster database;
 * ferry vm measure-migration: add a client-observed gap to a migration's record. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/watch.h"
#include "common/util.h"

static const char migrate_help[] =
    "Usage: ferry vm migrate NAME [--to NODE] [--budget-ms N] [--bandwidth-mib N]\n"
    "                             [--postcopy-bandwidth-mib N] [--insecure-migration]\n"
    "       ferry vm migrate --cancel NAME\n"
    "\n"
    "Live-migrates a running VM to another node (pre-copy; post-copy when the guest dirties\n"
    "memory faster than the link sends it) and answers when it is done:\n"
    "total time, QEMU's downtime (the blackout), bytes sent, passes and strategy.\n"
    "On any failure the VM keeps running where it was. Meanwhile it shows the progress\n"
    "(a bar on a terminal, a line per second otherwise; nothing with -o json); Ctrl-C asks\n"
    "whether to cancel the migration.\n"
    "\n"
    "  --to NODE       destination (default: the up node with the most free memory)\n"
    "  --budget-ms N   blackout budget (default: the VM's spec); QEMU's downtime-limit is\n"
    "                  a third of it, at least 100 ms (or the budget if smaller)\n"
    "  --bandwidth-mib N  cap the migration at N MiB/s (default: unlimited)\n"
    "  --postcopy-bandwidth-mib N\n"
    "                  cap post-copy's background copy at N MiB/s (default: unlimited;\n"
    "                  pages the guest waits for are slowed by it too)\n"
    "  --insecure-migration\n"
    "                  send the VM's memory as a plain stream: unencrypted, and whoever\n"
    "                  reaches the destination's port first can feed it (default: QEMU's\n"
    "                  TLS with a key made for this one migration)\n"
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
    output_kv(stdout, "stream", "%s",
              json_is_true(json_object_get(r, "encrypted"))
                  ? "TLS (per-migration key)"
                  : "plain (unencrypted, unauthenticated)");
    if (cli_jnum(r, "postcopy_recoveries"))
        output_kv(stdout, "recoveries", "%llu (the post-copy stream broke and was resumed)",
                  (unsigned long long)cli_jnum(r, "postcopy_recoveries"));
    return EXIT_OK;
}

/* A progress object of GET /v1/vms/NAME/migration, for cli_watched_call. */
static void describe(const json_t *p, unsigned *pct, uint64_t *pass, char *text, size_t size)
{
    const json_t *mem = json_object_get(p, "memory");
    uint64_t sent = cli_jnum(mem, "transferred"), left = cli_jnum(mem, "remaining"),
             total = cli_jnum(mem, "total");
    *pass = cli_jnum(p, "pass");
    *pct = total ? (unsigned)((total - (left < total ? left : total)) * 100 / total) : 0;
    char s_sent[32], s_left[32], s_dirty[32], s_exp[32] = "-";
    output_bytes(sent, s_sent, sizeof(s_sent));
    output_bytes(left, s_left, sizeof(s_left));
    output_bytes(cli_jnum(p, "dirty_rate_bytes_per_s"), s_dirty, sizeof(s_dirty));
    json_t *exp = json_object_get(p, "expected_downtime_ms");
    if (json_is_integer(exp))
        snprintf(s_exp, sizeof(s_exp), "%lld ms", (long long)json_integer_value(exp));
    snprintf(text, size,
             "%s pass %llu, sent %s, left %s, dirty %s/s, %.0f Mbps, expected blackout %s, %.1fs",
             cli_jstr(p, "status") ? cli_jstr(p, "status") : "?", (unsigned long long)*pass, s_sent,
             s_left, s_dirty, json_number_value(json_object_get(p, "throughput_mbps")), s_exp,
             cli_jnum(p, "elapsed_ms") / 1000.0);
}

static int migrate_watched(struct cli *cli, const char *name, const char *path, const json_t *body)
{
    char *esc = client_escape(name), ppath[512], cpath[512], note[512];
    snprintf(ppath, sizeof(ppath), "/v1/vms/%s/migration", esc ? esc : name);
    snprintf(cpath, sizeof(cpath), "/v1/vms/%s/migrate/cancel", esc ? esc : name);
    free(esc);
    snprintf(note, sizeof(note),
             "%s may still be migrating: QEMU goes on without ferryd, and ferryd takes the "
             "migration over when it is back (ferry vm migrations %s)",
             name, name);
    struct cli_watch w = {.name = name,
                          .what = "migration",
                          .path = path,
                          .body = body,
                          .progress_path = ppath,
                          .cancel_path = cpath,
                          .describe = describe,
                          .lost_note = note};
    json_t *r = NULL;
    int rc = cli_watched_call(cli, &w, &r);
    if (rc == EXIT_OK)
        rc = print_figures(cli, r);
    json_decref(r);
    return rc;
}

int cmd_vm_migrate(struct cli *cli, int argc, char **argv)
{
    enum { O_TO = 256, O_BUDGET, O_CANCEL, O_BW, O_PCBW, O_INSECURE };
    static const struct option opts[] = {
        {"to", required_argument, NULL, O_TO},
        {"budget-ms", required_argument, NULL, O_BUDGET},
        {"cancel", no_argument, NULL, O_CANCEL},
        {"bandwidth-mib", required_argument, NULL, O_BW},
        {"postcopy-bandwidth-mib", required_argument, NULL, O_PCBW},
        {"insecure-migration", no_argument, NULL, O_INSECURE},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    const char *cmd = "vm migrate", *to = NULL;
    uint64_t budget = 0, bw = 0, pcbw = 0;
    bool cancel = false, insecure = false, first = true;
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
        case O_PCBW:
            if (cli_parse_u64(optarg, 1, 1048576, &pcbw) < 0)
                return cli_usage(
                    cmd, "--postcopy-bandwidth-mib: '%s' is not a number in 1..1048576", optarg);
            break;
        case O_CANCEL:
            cancel = true;
            break;
        case O_INSECURE:
            insecure = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    const char *name;
    int urc = cli_one_operand(cmd, argc, argv, "a VM NAME", &name);
    if (urc != EXIT_OK)
        return urc;
    if (cancel && (to || budget || bw || pcbw || insecure))
        return cli_usage(cmd, "--cancel takes no --to, --budget-ms, bandwidth or "
                              "--insecure-migration options");
    char *esc = client_escape(name);
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
    if (pcbw)
        json_object_set_new(body, "max_postcopy_bandwidth_mib", json_integer((json_int_t)pcbw));
    if (insecure)
        json_object_set_new(body, "insecure_migration", json_true());
    if (!cancel) {
        int rc = migrate_watched(cli, name, path, body);
        json_decref(body);
        return rc;
    }
    json_t *reply = NULL;
    int rc = cli_call(cli, "POST", path, body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("%s: cancelling the migration\n", name);
    json_decref(reply);
    return rc;
}

static const char migrations_help[] =
    "Usage: ferry vm migrations [NAME] [-o table|json]\n"
    "\n"
    "Lists finished live migrations (completed, failed, cancelled), newest first, from the\n"
    "cluster database (its last 1000 events), of every VM or of NAME. DOWNTIME is QEMU's\n"
    "blackout; CLIENT GAP the longest gap a client of the VM saw, where it was measured\n"
    "(ferry lab migrate; ferry vm measure-migration). STREAM: tls (encrypted and\n"
    "authenticated, the default) or plain (--insecure-migration).\n";

/* "12 ms", "64.1 ms" or "-" for a null/missing figure. */
static const char *ms_cell(const json_t *r, const char *key, char *buf, size_t size)
{
    json_t *v = json_object_get(r, key);
    if (json_is_integer(v))
        snprintf(buf, size, "%lld ms", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.1f ms", json_real_value(v));
    else
        return "-";
    return buf;
}

/* "tls", "plain", or "-" for a record of a ferryd that did not say. */
static const char *stream_cell(const json_t *r)
{
    json_t *v = json_object_get(r, "encrypted");
    return json_is_boolean(v) ? (json_is_true(v) ? "tls" : "plain") : "-";
}

int cmd_vm_migrations(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    static const char *const headers[] = {"ID",     "WHEN",     "VM",    "FROM",     "TO",
                                          "STATUS", "STRATEGY", "TOTAL", "DOWNTIME", "CLIENT GAP",
                                          "BYTES",  "PASSES",   "STREAM"};
    const char *cmd = "vm migrations";
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            fputs(migrations_help, stdout);
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (optind + 1 < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    char path[512] = "/v1/migrations";
    if (optind < argc) {
        char *esc = client_escape(argv[optind]);
        if (!esc ||
            snprintf(path, sizeof(path), "/v1/migrations?vm=%s", esc) >= (int)sizeof(path)) {
            free(esc);
            return cli_usage(cmd, "NAME is too long");
        }
        free(esc);
    }
    json_t *reply = NULL;
    int rc = cli_call(cli, "GET", path, NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
        json_decref(reply);
        return EXIT_OK;
    }
    struct output_table *t = output_table_new(13, headers);
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(reply, "migrations"), i, r)
    {
        char id[24], when[40], total[32], down[32], gap[32], bytes[32], passes[24];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)cli_jnum(r, "id"));
        output_time(cli_jnum(r, "time_ms"), when, sizeof(when));
        output_bytes(cli_jnum(r, "bytes"), bytes, sizeof(bytes));
        snprintf(passes, sizeof(passes), "%llu", (unsigned long long)cli_jnum(r, "passes"));
        const char *cells[] = {id,
                               when,
                               cli_jstr(r, "vm"),
                               cli_jstr(r, "from"),
                               cli_jstr(r, "to"),
                               cli_jstr(r, "status"),
                               cli_jstr(r, "strategy"),
                               ms_cell(r, "total_ms", total, sizeof(total)),
                               ms_cell(r, "downtime_ms", down, sizeof(down)),
                               ms_cell(r, "client_gap_ms", gap, sizeof(gap)),
                               bytes,
                               passes,
                               stream_cell(r)};
        if (!t || output_table_add(t, cells) < 0) {
            output_table_free(t);
            json_decref(reply);
            fputs("ferry: out of memory\n", stderr);
            return EXIT_FAIL;
        }
    }
    if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    json_decref(reply);
    return EXIT_OK;
}

static const char measure_help[] =
    "Usage: ferry vm measure-migration ID --client-gap-ms MS [--source SRC] [--force]\n"
    "\n"
    "Records on migration ID (the ID column of ferry vm migrations) the longest gap a client\n"
    "of the VM saw during it, as measured outside ferry (ferry lab migrate measures and\n"
    "records it by itself). Written to the cluster database: every node shows it.\n"
    "\n"
    "  --client-gap-ms MS  the gap in milliseconds, 0..3600000 (e.g. 64.1)\n"
    "  --source SRC        how it was measured, 1-32 of a-z 0-9 _ . - (default: manual)\n"
    "  --force             replace a client gap the record has already\n"
    "  -o json             print the record as JSON\n";

int cmd_vm_measure_migration(struct cli *cli, int argc, char **argv)
{
    enum { O_GAP = 256, O_SOURCE, O_FORCE };
    static const struct option opts[] = {{"client-gap-ms", required_argument, NULL, O_GAP},
                                         {"source", required_argument, NULL, O_SOURCE},
                                         {"force", no_argument, NULL, O_FORCE},
                                         CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "vm measure-migration", *source = NULL;
    double gap = -1;
    bool force = false, first = true;
    uint64_t id = 0;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(measure_help, stdout);
            return EXIT_OK;
        case O_GAP: {
            char *end;
            errno = 0;
            gap = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || errno || !isfinite(gap) || gap < 0 ||
                gap > 3600000)
                return cli_usage(cmd, "--client-gap-ms: '%s' is not a number of ms in 0..3600000",
                                 optarg);
            break;
        }
        case O_SOURCE:
            source = optarg;
            break;
        case O_FORCE:
            force = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    const char *arg;
    int urc = cli_one_operand(cmd, argc, argv, "a migration ID (see ferry vm migrations)", &arg);
    if (urc != EXIT_OK)
        return urc;
    if (cli_parse_u64(arg, 1, (1ULL << 53) - 1, &id) < 0)
        return cli_usage(cmd, "ID: '%s' is not a migration id (ferry vm migrations shows them)",
                         arg);
    if (gap < 0)
        return cli_usage(cmd, "--client-gap-ms MS is needed");
    char path[64];
    snprintf(path, sizeof(path), "/v1/migrations/%llu/measurements", (unsigned long long)id);
    json_t *body = json_pack("{s:f, s:b}", "client_gap_ms", gap, "force", force);
    if (body && source)
        json_object_set_new(body, "source", json_string(source));
    json_t *r = NULL;
    int rc = body ? cli_call(cli, "POST", path, body, &r) : EXIT_FAIL;
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
    } else {
        char down[32];
        printf("migration %llu (%s %s -> %s, %s): client gap %.1f ms (%s), QEMU downtime %s\n",
               (unsigned long long)id, cli_jstr(r, "vm") ? cli_jstr(r, "vm") : "?",
               cli_jstr(r, "from") ? cli_jstr(r, "from") : "?",
               cli_jstr(r, "to") ? cli_jstr(r, "to") : "?",
               cli_jstr(r, "status") ? cli_jstr(r, "status") : "?",
               json_number_value(json_object_get(r, "client_gap_ms")),
               cli_jstr(r, "client_gap_source") ? cli_jstr(r, "client_gap_source") : "?",
               ms_cell(r, "downtime_ms", down, sizeof(down)));
    }
    json_decref(r);
    return EXIT_OK;
}
