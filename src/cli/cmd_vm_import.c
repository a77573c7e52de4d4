/* SPDX-License-Identifier: MIT */
/* ferry vm import: a VMware machine (.vmx, .ovf, .ova) planned, converted onto a cluster shared
 * volume and defined by ferryd (POST /v1/vms/import). */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/cmd_vm.h"
#include "cli/watch.h"
#include "common/util.h"

static const char help[] =
    "Usage: ferry vm import PATH.vmx|PATH.ovf|PATH.ova [OPTIONS]\n"
    "\n"
    "Imports a VMware machine: a .vmx with its VMDKs (Workstation, ESXi), or an exported OVF\n"
    "package (.ovf with its files and .mf, or one .ova). Reads it, prints the plan (the VM spec,\n"
    "each disk and its conversion, each NIC and its bridge, what could not be mapped and why),\n"
    "checks memory and CPUs against the node and the disks against the volume's free room, then\n"
    "converts every disk to a VHD on the volume (qemu-img, a progress bar; an import task that\n"
    "Ctrl-C or ferry task cancel cancels, leaving nothing behind) and defines the VM. Disks and\n"
    "NICs become virtio devices (VMware's own with --keep-devices). An OVF's manifest is checked\n"
    "before anything is converted. A machine with EFI firmware becomes an EFI VM (OVMF, Debian's\n"
    "ovmf package on the node that runs it).\n"
    "\n"
    "Options:\n"
    "  --name NAME              the VM's name (default: made from the VMware name)\n"
    "  --to csv:VOLUME          the volume the disks go to, as NAME-diskN.vhd (default: the\n"
    "                           only volume)\n"
    "  --node NODE              the node that runs it (default: placed like vm create)\n"
    "  --network NET=BRIDGE     VMware network NET's NICs join host bridge BRIDGE; a plain\n"
    "                           BRIDGE takes every network not named (repeatable)\n"
    "  --disk-type fixed|dynamic  the VHDs made (default fixed: the fast path)\n"
    "  --keep-devices           keep VMware's devices where QEMU emulates them (vmxnet3,\n"
    "                           e1000; pvscsi, LSI as QEMU's lsi53c895a, SATA, IDE) so a\n"
    "                           guest without virtio drivers boots unchanged (default:\n"
    "                           virtio disks and NICs)\n"
    "  --start                  start the VM once it is imported (like ferry vm start)\n"
    "  --dry-run                print the plan and stop: nothing is converted or defined\n"
    "  -o, --output table|json  output format\n";

#define CMD "vm import"

static void print_plan(const json_t *p)
{
    const json_t *src = json_object_get(p, "source"), *spec = json_object_get(p, "spec");
    const json_t *cpu = json_object_get(spec, "cpu");
    char b1[32], b2[32];
    printf("%s: %s %s (\"%s\", %s)\n", cli_jstr(p, "name"), cli_jstr(src, "kind"),
           cli_jstr(src, "file"), cli_jstr(src, "name"),
           cli_jstr(src, "guest_os") && *cli_jstr(src, "guest_os") ? cli_jstr(src, "guest_os")
                                                                   : "guest OS not given");
    printf("  node %s, %" PRIu64 " socket(s) x %" PRIu64 " core(s), %" PRIu64 " MiB\n",
           cli_jstr(p, "node"), cli_jnum(cpu, "sockets"), cli_jnum(cpu, "cores"),
           cli_jnum(spec, "memory_mib"));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(p, "disks"), i, d)
    {
        printf("  disk %zu: %s %s (%s, %s) -> %s, %s VHD of %s\n", i, cli_jstr(d, "device"),
               cli_jstr(d, "source"), cli_jstr(d, "source_format"),
               output_bytes(cli_jnum(d, "source_bytes"), b1, sizeof b1), cli_jstr(d, "target_ref"),
               cli_jstr(d, "type"), output_bytes(cli_jnum(d, "size_bytes"), b2, sizeof b2));
    }
    printf("  volume %s: %s needed\n", cli_jstr(p, "volume"),
           output_bytes(cli_jnum(p, "need_bytes"), b1, sizeof b1));
    json_array_foreach(json_object_get(p, "notes"), i, d)
        printf("  note: %s\n", json_string_value(d));
}

/* GET /v1/tasks?kind=import&target=NAME&state=running: the import's task, for the bar. */
static void describe(const json_t *p, unsigned *pct, uint64_t *mark, char *text, size_t size)
{
    const json_t *t = json_array_get(json_object_get(p, "tasks"), 0);
    const json_t *detail = json_object_get(t, "detail");
    *pct = (unsigned)cli_jnum(t, "percent");
    *mark = cli_jnum(detail, "disk");
    snprintf(text, size, "disk %" PRIu64 " of %" PRIu64 " %s", cli_jnum(detail, "disk") + 1,
             cli_jnum(detail, "disks"),
             cli_jstr(detail, "target") ? cli_jstr(detail, "target") : "");
}

static int add_network(json_t *nets, const char *arg)
{
    const char *eq = strrchr(arg, '=');
    char net[256];
    const char *br = eq ? eq + 1 : arg;
    if (eq && (size_t)(eq - arg) >= sizeof net)
        return cli_usage(CMD, "--network '%s': the network name is too long", arg);
    snprintf(net, sizeof net, "%.*s", eq ? (int)(eq - arg) : 1, eq ? arg : "*");
    if (!*br || (eq && eq == arg))
        return cli_usage(CMD, "--network '%s': expected NET=BRIDGE or BRIDGE", arg);
    if (json_object_get(nets, net))
        return cli_usage(CMD, "--network '%s': network %s is mapped twice", arg,
                         strcmp(net, "*") ? net : "(every other)");
    json_object_set_new(nets, net, json_string(br));
    return EXIT_OK;
}

/* --start: POST /v1/vms/NAME/start once the import succeeded; -o json prints the import's
 * answer with "vm" the started VM. The VM stays imported when its start fails (exit 1). */
static int start_imported(struct cli *cli, const char *vm, json_t *reply)
{
    char *path = cmd_vm__path(vm, "/start");
    if (!path)
        return cli_nomem();
    json_t *started = NULL;
    int rc = cli_call(cli, "POST", path, NULL, &started);
    free(path);
    if (rc != EXIT_OK) {
        fprintf(stderr,
                "ferry: %s is imported but did not start; start it with ferry vm start %s\n", vm,
                vm);
        return rc;
    }
    const char *state = cli_jstr(started, "state");
    if (state && strcmp(state, "failed") == 0)
        rc = EXIT_FAIL;
    if (cli->fmt == OUTPUT_JSON) {
        json_object_set(reply, "vm", started);
        output_json(stdout, reply);
    } else {
        cmd_vm__print_state(cli, started);
    }
    json_decref(started);
    return rc;
}

int cmd_vm_import(struct cli *cli, int argc, char **argv)
{
    enum { O_NAME = 256, O_TO, O_NODE, O_NET, O_TYPE, O_DRY, O_KEEP, O_START };
    static const struct option opts[] = {
        {"name", required_argument, NULL, O_NAME},
        {"to", required_argument, NULL, O_TO},
        {"node", required_argument, NULL, O_NODE},
        {"network", required_argument, NULL, O_NET},
        {"disk-type", required_argument, NULL, O_TYPE},
        {"dry-run", no_argument, NULL, O_DRY},
        {"keep-devices", no_argument, NULL, O_KEEP},
        {"start", no_argument, NULL, O_START},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL, *to = NULL, *node = NULL, *type = NULL, *operand;
    bool dry = false, keep = false, start = false, first = true;
    json_t *nets = json_object();
    if (!nets)
        return cli_nomem();
    int c, rc = EXIT_OK;
    while ((c = cli_getopt(cli, CMD, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            json_decref(nets);
            return EXIT_OK;
        case O_NAME:
            name = optarg;
            break;
        case O_TO:
            to = optarg;
            break;
        case O_NODE:
            node = optarg;
            break;
        case O_NET:
            if ((rc = add_network(nets, optarg)) != EXIT_OK) {
                json_decref(nets);
                return rc;
            }
            break;
        case O_TYPE:
            if (strcmp(optarg, "fixed") && strcmp(optarg, "dynamic")) {
                json_decref(nets);
                return cli_usage(CMD, "--disk-type: '%s' is neither fixed nor dynamic", optarg);
            }
            type = optarg;
            break;
        case O_DRY:
            dry = true;
            break;
        case O_KEEP:
            keep = true;
            break;
        case O_START:
            start = true;
            break;
        default:
            json_decref(nets);
            return EXIT_USAGE;
        }
    }
    if (cli_one_operand(CMD, argc, argv, "a PATH.vmx, PATH.ovf or PATH.ova", &operand) != EXIT_OK) {
        json_decref(nets);
        return EXIT_USAGE;
    }
    if (dry && start) {
        json_decref(nets);
        return cli_usage(CMD, "--start: a dry run defines nothing to start (drop one of "
                              "--start and --dry-run)");
    }
    char volume[64] = "";
    if (to) {
        if (strncmp(to, "csv:", 4) != 0 || !to[4] || strchr(to + 4, '/') ||
            strlen(to + 4) >= sizeof volume) {
            json_decref(nets);
            return cli_usage(CMD, "--to '%s': expected csv:VOLUME", to);
        }
        snprintf(volume, sizeof volume, "%s", to + 4);
    }
    char path[PATH_MAX];
    struct ferr e = {0};
    if (cli_abspath(operand, path, sizeof path, &e) < 0) {
        json_decref(nets);
        return cli_usage(CMD, "%s", e.msg);
    }
    json_t *body = json_pack("{s:s, s:b, s:o}", "path", path, "dry_run", 1, "networks", nets);
    if (!body)
        return cli_nomem();
    if (name)
        json_object_set_new(body, "name", json_string(name));
    if (volume[0])
        json_object_set_new(body, "volume", json_string(volume));
    if (type)
        json_object_set_new(body, "disk_type", json_string(type));
    if (keep)
        json_object_set_new(body, "keep_devices", json_true());
    char api[200];
    if (node)
        snprintf(api, sizeof api, "/v1/vms/import?node=%.64s", node);
    else
        snprintf(api, sizeof api, "/v1/vms/import");
    /* the plan first, always: it is printed before anything is converted; an import's own
     * request checks the manifest's digests, so its preview does not read the files twice */
    if (!dry)
        json_object_set_new(body, "check_manifest", json_false());
    json_t *plan = NULL, *reply = NULL;
    if ((rc = cli_call(cli, "POST", api, body, &plan)) != EXIT_OK)
        goto out;
    if (dry) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, plan);
        else
            print_plan(plan);
        goto out;
    }
    if (cli->fmt != OUTPUT_JSON) {
        print_plan(plan);
        fflush(stdout);
    }
    const char *vm = cli_jstr(plan, "name");
    json_object_set_new(body, "dry_run", json_false());
    json_object_del(body, "check_manifest");
    json_object_set_new(body, "name", json_string(vm));
    if (!node) { /* where the plan placed it */
        snprintf(api, sizeof api, "/v1/vms/import?node=%.64s", cli_jstr(plan, "node"));
    }
    char progress[200], cancel[200];
    snprintf(progress, sizeof progress, "/v1/tasks?kind=import&state=running&limit=1&target=%s",
             vm);
    snprintf(cancel, sizeof cancel, "/v1/vms/import/cancel?name=%s", vm);
    struct cli_watch w = {.name = vm,
                          .what = "import",
                          .path = api,
                          .body = body,
                          .progress_path = progress,
                          .cancel_path = cancel,
                          .describe = describe,
                          .lost_note = ""};
    if ((rc = cli_watched_call(cli, &w, &reply)) != EXIT_OK)
        goto out;
    if (cli->fmt != OUTPUT_JSON)
        printf("%s: imported and defined on %s (task %s)\n", vm, cli_jstr(plan, "node"),
               cli_jstr(reply, "task"));
    if (start)
        rc = start_imported(cli, vm, reply);
    else if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
out:
    json_decref(plan);
    json_decref(reply);
    json_decref(body);
    return rc;
}
