/* SPDX-License-Identifier: MIT */
/* ferry vm storage-move: a VM's disk onto another file, a cluster shared volume above all,
 * while it runs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/cmd_vm.h"
#include "cli/watch.h"
#include "common/util.h"

static const char help[] =
    "Usage: ferry vm storage-move NAME --to PATH|csv:VOLUME[/FILE] [--disk N] [--speed-mib N]\n"
    "       ferry vm storage-move NAME --status | --cancel\n"
    "\n"
    "Moves disk N (default 0) of VM NAME to a new fixed VHD: PATH, or FILE on the cluster\n"
    "shared volume VOLUME (default FILE: the disk's current file name). A running (or\n"
    "paused) VM keeps running: QEMU mirrors the disk in write-blocking mode, which always\n"
    "converges, then switches the VM to the new file; the spec and the cluster record change\n"
    "only after that. A stopped VM's disk is copied with qemu-img. Any failure, or --cancel\n"
    "before the switch, leaves the VM on its old disk and removes the new file. The old file\n"
    "is kept. This waits until the move is done, showing its progress (a bar on a terminal,\n"
    "a line per second otherwise; nothing with -o json); Ctrl-C asks whether to cancel it.\n"
    "--status (from another shell) shows how far it is.\n"
    "\n"
    "Options:\n"
    "  --to PATH|csv:VOLUME[/FILE]  the new file (it must not exist)\n"
    "  --disk N          which disk (default 0)\n"
    "  --speed-mib N     cap the copy at N MiB/s\n"
    "  --status          show the move under way\n"
    "  --cancel          cancel the move under way\n";

/* The new file's path: PATH as given, or csv:VOLUME[/FILE] (FILE by default the disk's current
 * file name, asked of ferryd). */
static int target_path(struct cli *cli, const char *vm, unsigned disk, const char *to, char *out,
                       size_t size)
{
    const char *cmd = "vm storage-move";
    if (strncmp(to, "csv:", 4) != 0) {
        if (to[0] != '/')
            return cli_usage(cmd, "--to '%s': give an absolute path or csv:VOLUME[/FILE]", to);
        snprintf(out, size, "%s", to);
        return EXIT_OK;
    }
    char file[256] = "";
    if (!strchr(to + 4, '/')) { /* the disk's current file name */
        char *path = cmd_vm__path(vm, "");
        json_t *v;
        if (!path)
            return cli_nomem();
        int rc = cli_call(cli, "GET", path, NULL, &v);
        free(path);
        if (rc != EXIT_OK)
            return rc;
        const char *cur = json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(v, "spec"), "disks"), disk), "path"));
        const char *base = cur ? strrchr(cur, '/') : NULL;
        if (base)
            snprintf(file, sizeof(file), "%s", base + 1);
        json_decref(v);
        if (!base)
            return cli_usage(cmd, "%s has no disk %u", vm, disk);
    }
    return cli_csv_file(cli, cmd, "--to", to, file, out, size);
}

/* A progress object of GET /v1/vms/NAME/storage-move, for cli_watched_call. */
static void describe(const json_t *p, unsigned *pct, uint64_t *mark, char *text, size_t size)
{
    uint64_t done = cli_jnum(p, "done_bytes"), total = cli_jnum(p, "total_bytes");
    const char *phase = cli_jstr(p, "phase") ? cli_jstr(p, "phase") : "?";
    *mark = (unsigned char)phase[0];
    *pct = total ? (unsigned)((done < total ? done : total) * 100 / total) : 0;
    char s_done[32], s_total[32];
    snprintf(text, size, "%s, %s of %s", phase, output_bytes(done, s_done, sizeof(s_done)),
             output_bytes(total, s_total, sizeof(s_total)));
}

int cmd_vm_storage_move(struct cli *cli, int argc, char **argv)
{
    enum { O_TO = 256, O_DISK, O_SPEED, O_STATUS, O_CANCEL };
    static const struct option opts[] = {
        {"to", required_argument, NULL, O_TO},
        {"disk", required_argument, NULL, O_DISK},
        {"speed-mib", required_argument, NULL, O_SPEED},
        {"status", no_argument, NULL, O_STATUS},
        {"cancel", no_argument, NULL, O_CANCEL},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "vm storage-move", *to = NULL, *name;
    uint64_t disk = 0, speed = 0;
    bool status = false, cancel = false, first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return EXIT_OK;
        case O_TO:
            to = optarg;
            break;
        case O_DISK:
            if (cli_parse_u64(optarg, 0, 63, &disk) < 0)
                return cli_usage(cmd, "--disk: '%s' is not a disk number", optarg);
            break;
        case O_SPEED:
            if (cli_parse_u64(optarg, 1, 100000, &speed) < 0)
                return cli_usage(cmd, "--speed-mib: '%s' is not a number in 1..100000", optarg);
            break;
        case O_STATUS:
            status = true;
            break;
        case O_CANCEL:
            cancel = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (cli_one_operand(cmd, argc, argv, "a VM NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    if ((status || cancel) && (to || status == cancel))
        return cli_usage(cmd, "--status and --cancel go alone");
    json_t *reply = NULL;
    int rc;
    if (status || cancel) {
        char *path = cmd_vm__path(name, cancel ? "/storage-move/cancel" : "/storage-move");
        if (!path)
            return cli_nomem();
        rc = cli_call(cli, cancel ? "POST" : "GET", path, NULL, &reply);
        free(path);
        if (rc != EXIT_OK)
            return rc;
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, reply);
        else if (cancel)
            printf("%s: cancelling the storage move\n", name);
        else
            printf("%s: disks[%" PRIu64 "] %s -> %s: %s, %" PRIu64 " of %" PRIu64 " MiB\n", name,
                   cli_jnum(reply, "disk"), cli_jstr(reply, "from"), cli_jstr(reply, "to"),
                   cli_jstr(reply, "phase"), cli_jnum(reply, "done_bytes") >> 20,
                   cli_jnum(reply, "total_bytes") >> 20);
        json_decref(reply);
        return EXIT_OK;
    }
    if (!to)
        return cli_usage(cmd, "--to PATH|csv:VOLUME[/FILE] is required");
    char target[1200];
    if ((rc = target_path(cli, name, (unsigned)disk, to, target, sizeof(target))) != EXIT_OK)
        return rc;
    json_t *body = json_pack("{sI ss}", "disk", (json_int_t)disk, "to", target);
    if (!body)
        return cli_nomem();
    if (speed)
        json_object_set_new(body, "speed_mib", json_integer((json_int_t)speed));
    if (cli->fmt != OUTPUT_JSON) {
        printf("%s: moving disks[%" PRIu64 "] to %s\n", name, disk, target);
        fflush(stdout);
    }
    char *path = cmd_vm__path(name, "/storage-move");
    char *cpath = cmd_vm__path(name, "/storage-move/cancel");
    if (!path || !cpath) {
        free(path);
        free(cpath);
        json_decref(body);
        return cli_nomem();
    }
    struct cli_watch w = {.name = name,
                          .what = "storage move",
                          .path = path,
                          .body = body,
                          .progress_path = path,
                          .cancel_path = cpath,
                          .describe = describe,
                          .lost_note = ""};
    rc = cli_watched_call(cli, &w, &reply);
    free(path);
    free(cpath);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("%s: disks[%" PRIu64 "] is %s now\n", name, disk, target);
    json_decref(reply);
    return EXIT_OK;
}
