/* SPDX-License-Identifier: MIT */
/* ferry task list|show|cancel: the cluster's long operations (GET /v1/tasks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "common/util.h"

#define FOLLOW_POLL_MS 500

/* Every long operation of the cluster (live migration, node drain, storage move, failover) is
 * a task that every node lists: its kind, target, node, user, state, phase, progress and
 * result (docs/api.md, "Tasks"). */
static const char list_help[] =
    "Usage: ferry task list [--state S] [--kind K] [--target NAME] [--limit N]\n"
    "\n"
    "Lists the cluster's tasks, newest first: every long operation (live migration, node\n"
    "drain, storage move, failover) on any node, running or ended (ended ones are kept for\n"
    "7 days, the last 500).\n"
    "\n"
    "  --state S       running, done, failed or cancelled\n"
    "  --kind K        migrate, drain, storage-move, failover or import\n"
    "  --target NAME   the tasks of one VM (or of one node, for drains)\n"
    "  --limit N       at most N tasks, 1..500 (default 100)\n"
    "  -o json         print the API's JSON\n";

static const char show_help[] =
    "Usage: ferry task show ID [-f]\n"
    "\n"
    "Shows a task: kind, target, node, user, state, phase, percent, start, end, its\n"
    "details (a migration's bytes sent and left, dirty rate, Mbit/s; a drain's VMs moved)\n"
    "and its result (a migration's blackout).\n"
    "\n"
    "  -f, --follow    print its progress until it ends (a bar on a terminal, a line per\n"
    "                  change otherwise); exits 1 unless it ended done; Ctrl-C stops\n"
    "                  following (the task goes on)\n"
    "  -o json         print the API's JSON (with -f: each change)\n";

static const char cancel_help[] =
    "Usage: ferry task cancel ID\n"
    "\n"
    "Cancels a running task on whichever node it runs: a live migration or a storage move\n"
    "(the VM keeps running where it was), a drain (no further VM is moved, those migrating\n"
    "finish, the node stays draining: ferry node resume NODE). A migration in post-copy and\n"
    "a failover cannot be cancelled.\n"
    "\n"
    "  -o json         print the API's JSON\n";

#define TASK_FMT "%-28s %-12s %-16s %-10s %-9s %-13s %4s  %s\n"

static void print_row(const json_t *t)
{
    char pct[8], start[32];
    snprintf(pct, sizeof(pct), "%llu%%", (unsigned long long)cli_jnum(t, "percent"));
    output_time(cli_jnum(t, "start_ms"), start, sizeof(start));
    printf(TASK_FMT, cli_jstr(t, "id") ?: "?", cli_jstr(t, "kind") ?: "?",
           cli_jstr(t, "target") ?: "?", cli_jstr(t, "node") ?: "?", cli_jstr(t, "state") ?: "?",
           cli_jstr(t, "phase") ?: "", pct, cli_jstr(t, "result") ?: "");
}

static int task_list(struct cli *cli, int argc, char **argv)
{
    enum { O_STATE = 256, O_KIND, O_TARGET, O_LIMIT };
    static const struct option opts[] = {{"state", required_argument, NULL, O_STATE},
                                         {"kind", required_argument, NULL, O_KIND},
                                         {"target", required_argument, NULL, O_TARGET},
                                         {"limit", required_argument, NULL, O_LIMIT},
                                         CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "task list", *state = NULL, *kind = NULL, *target = NULL;
    uint64_t limit = 0;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(list_help, stdout);
            return EXIT_OK;
        case O_STATE:
            state = optarg;
            break;
        case O_KIND:
            kind = optarg;
            break;
        case O_TARGET:
            target = optarg;
            break;
        case O_LIMIT:
            if (cli_parse_u64(optarg, 1, 500, &limit) < 0)
                return cli_usage(cmd, "--limit: '%s' is not a number in 1..500", optarg);
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    char path[512];
    int n = snprintf(path, sizeof(path), "/v1/tasks");
    char sep = '?';
    const char *keys[] = {"state", "kind", "target"}, *vals[] = {state, kind, target};
    for (size_t i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        char *esc = client_escape(vals[i]);
        if (!esc)
            return cli_nomem();
        n += snprintf(path + n, sizeof(path) - (size_t)n, "%c%s=%.100s", sep, keys[i], esc);
        sep = '&';
        free(esc);
    }
    if (limit)
        snprintf(path + n, sizeof(path) - (size_t)n, "%climit=%llu", sep,
                 (unsigned long long)limit);
    json_t *r;
    int rc = cli_call(cli, "GET", path, NULL, &r);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, r);
    } else {
        printf(TASK_FMT, "ID", "KIND", "TARGET", "NODE", "STATE", "PHASE", "%", "RESULT");
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(r, "tasks"), i, t) print_row(t);
    }
    json_decref(r);
    return EXIT_OK;
}

static void print_task(const json_t *t)
{
    char start[32], end[32];
    output_kv(stdout, "id", "%s", cli_jstr(t, "id") ?: "?");
    output_kv(stdout, "kind", "%s", cli_jstr(t, "kind") ?: "?");
    output_kv(stdout, "target", "%s", cli_jstr(t, "target") ?: "?");
    output_kv(stdout, "node", "%s", cli_jstr(t, "node") ?: "?");
    output_kv(stdout, "user", "%s", cli_jstr(t, "user") ?: "?");
    output_kv(stdout, "state", "%s", cli_jstr(t, "state") ?: "?");
    output_kv(stdout, "phase", "%s", cli_jstr(t, "phase") ?: "");
    output_kv(stdout, "percent", "%llu", (unsigned long long)cli_jnum(t, "percent"));
    output_kv(stdout, "start", "%s", output_time(cli_jnum(t, "start_ms"), start, sizeof(start)));
    if (cli_jnum(t, "end_ms"))
        output_kv(stdout, "end", "%s", output_time(cli_jnum(t, "end_ms"), end, sizeof(end)));
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(t, "detail"), key, v)
    {
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        output_kv(stdout, key, "%s", text ? text : "?");
        free(text);
    }
    output_kv(stdout, "result", "%s", cli_jstr(t, "result") ?: "");
}

/* One progress line: a bar on a terminal (redrawn in place), a plain line otherwise. */
static void progress_line(const json_t *t, bool tty)
{
    unsigned pct = (unsigned)cli_jnum(t, "percent");
    const json_t *d = json_object_get(t, "detail");
    char extra[160] = "";
    if (json_object_get(d, "remaining_bytes")) {
        char a[32], b[32];
        snprintf(extra, sizeof(extra), " sent %s, left %s, %.0f Mbit/s",
                 output_bytes(cli_jnum(d, "transferred_bytes"), a, sizeof(a)),
                 output_bytes(cli_jnum(d, "remaining_bytes"), b, sizeof(b)),
                 json_number_value(json_object_get(d, "throughput_mbps")));
    } else if (json_object_get(d, "moved")) {
        snprintf(extra, sizeof(extra), " %llu of %llu moved",
                 (unsigned long long)cli_jnum(d, "moved"),
                 (unsigned long long)cli_jnum(d, "total"));
    }
    if (tty) {
        char bar[31];
        unsigned fill = pct > 100 ? 30 : pct * 30 / 100;
        memset(bar, '#', fill);
        memset(bar + fill, '-', 30 - fill);
        bar[30] = '\0';
        printf("\r\033[K%s [%s] %3u%% %s%s", cli_jstr(t, "phase") ?: "", bar, pct,
               cli_jstr(t, "state") ?: "", extra);
    } else {
        printf("%s %s %u%%%s\n", cli_jstr(t, "state") ?: "?", cli_jstr(t, "phase") ?: "", pct,
               extra);
    }
    fflush(stdout);
}

/* "/v1/tasks/ID" + suffix with ID escaped; -1 when out of memory. */
static int task_path(const char *id, const char *suffix, char *path, size_t size)
{
    char *esc = client_escape(id);
    if (!esc)
        return -1;
    snprintf(path, size, "/v1/tasks/%.200s%s", esc, suffix);
    free(esc);
    return 0;
}

static int task_show(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "task show", *id;
    bool follow = false, first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "f", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(show_help, stdout);
            return EXIT_OK;
        case 'f':
            follow = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    int urc = cli_one_operand(cmd, argc, argv, "a task ID", &id);
    if (urc != EXIT_OK)
        return urc;
    char path[256];
    if (task_path(id, "", path, sizeof(path)) < 0)
        return cli_nomem();
    json_t *t;
    int rc = cli_call(cli, "GET", path, NULL, &t);
    if (rc != EXIT_OK)
        return rc;
    if (!follow) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, t);
        else
            print_task(t);
        json_decref(t);
        return EXIT_OK;
    }
    bool tty = cli->fmt != OUTPUT_JSON && isatty(STDOUT_FILENO);
    json_t *last = NULL;
    cli_follow_begin();
    for (;;) {
        const char *state = cli_jstr(t, "state");
        if (!last || !json_equal(last, t)) {
            if (cli->fmt == OUTPUT_JSON)
                output_json(stdout, t);
            else
                progress_line(t, tty);
        }
        json_decref(last);
        last = t;
        if (state && strcmp(state, "running") != 0)
            break;
        if (!cli_follow_sleep(FOLLOW_POLL_MS)) {
            json_decref(last);
            if (tty)
                printf("\n");
            return EXIT_OK; /* Ctrl-C: the task goes on */
        }
        rc = cli_call(cli, "GET", path, NULL, &t);
        if (rc != EXIT_OK) {
            json_decref(last);
            return rc;
        }
    }
    if (tty)
        printf("\n");
    const char *state = cli_jstr(last, "state");
    bool done = state && strcmp(state, "done") == 0;
    if (cli->fmt != OUTPUT_JSON)
        printf("%s %s: %s\n", cli_jstr(last, "id") ?: "?", state ?: "?",
               cli_jstr(last, "result") ?: "");
    json_decref(last);
    return done ? EXIT_OK : EXIT_FAIL;
}

static int task_cancel(struct cli *cli, int argc, char **argv)
{
    const char *cmd = "task cancel", *id;
    int urc = cli_common_options(cli, cmd, argc, argv, cancel_help, true);
    if (urc != CLI_GO)
        return urc;
    urc = cli_one_operand(cmd, argc, argv, "a task ID", &id);
    if (urc != EXIT_OK)
        return urc;
    char path[256];
    if (task_path(id, "/cancel", path, sizeof(path)) < 0)
        return cli_nomem();
    json_t *r;
    int rc = cli_call(cli, "POST", path, NULL, &r);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, r);
    else
        printf("cancelling %s (%s %s); ferry task show -f %s follows it to its end\n", id,
               cli_jstr(r, "kind") ?: "?", cli_jstr(r, "target") ?: "?", id);
    json_decref(r);
    return EXIT_OK;
}

int cmd_task(struct cli *cli, int argc, char **argv)
{
    static const struct cli_cmd table[] = {
        {"list", task_list, "list the cluster's tasks"},
        {"show", task_show, "show a task, or follow it (-f) to its end"},
        {"cancel", task_cancel, "cancel a running migration, storage move or drain"},
    };
    return cli_dispatch(cli, "task", table, ARRAY_SIZE(table), argc - 1, argv + 1);
}
