/* SPDX-License-Identifier: MIT */
/* ferry vm: the subcommand table, list, show, start/stop/kill, pause/resume, delete, console. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/cmd_vm.h"
#include "common/util.h"

#define CONSOLE_POLL_MS 200
#define CONSOLE_CHUNK 65536

/* ---- small helpers ----------------------------------------------------------------------- */

char *cmd_vm__path(const char *name, const char *suffix)
{
    char *esc = client_escape(name);
    if (!esc)
        return NULL;
    size_t n = strlen("/v1/vms/") + strlen(esc) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "/v1/vms/%s%s", esc, suffix);
    free(esc);
    return p;
}

int cmd_vm__print_state(struct cli *cli, const json_t *vm)
{
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, vm);
    } else {
        const char *reason = cli_jstr(vm, "reason");
        const char *state = cli_jstr(vm, "state");
        if (state && strcmp(state, "failed") == 0 && reason && reason[0])
            printf("%s: %s: %s\n", cli_jstr(vm, "name"), state, reason);
        else
            printf("%s: %s\n", cli_jstr(vm, "name") ? cli_jstr(vm, "name") : "?",
                   state ? state : "?");
    }
    const char *state = cli_jstr(vm, "state");
    return state && strcmp(state, "failed") == 0 ? EXIT_FAIL : EXIT_OK;
}

/* The single NAME argument left after the options, or a usage error. */
static int one_name(const char *cmd, int argc, char **argv, const char **name)
{
    return cli_one_operand(cmd, argc, argv, "a VM NAME", name);
}

/* ---- vm list / show ---------------------------------------------------------------------- */

static uint64_t vm_vcpus(const json_t *vm)
{
    uint64_t n = cli_jnum(vm, "vcpus");
    if (n)
        return n;
    json_t *cpu = json_object_get(json_object_get(vm, "spec"), "cpu");
    uint64_t s = cli_jnum(cpu, "sockets"), c = cli_jnum(cpu, "cores"), t = cli_jnum(cpu, "threads");
    return (s ? s : 1) * (c ? c : 1) * (t ? t : 1);
}

static uint64_t vm_memory_mib(const json_t *vm)
{
    uint64_t n = cli_jnum(vm, "memory_mib");
    return n ? n : cli_jnum(json_object_get(vm, "spec"), "memory_mib");
}

static bool vm_is_up(const json_t *vm)
{
    const char *s = cli_jstr(vm, "state");
    return s &&
           (strcmp(s, "running") == 0 || strcmp(s, "paused") == 0 || strcmp(s, "stopping") == 0);
}

static char *vm_uptime(const json_t *vm, char *buf, size_t size)
{
    uint64_t started = cli_jnum(vm, "started_ms"), now = now_wall_ms();
    if (!vm_is_up(vm) || !started || started > now)
        return strcpy(buf, "-");
    return output_duration((now - started) / 1000, buf, size);
}

/* The HA state for vm list: "-" without HA. */
static const char *ha_cell(const json_t *vm)
{
    const char *s = cli_jstr(json_object_get(vm, "ha"), "state");
    return s && strcmp(s, "disabled") != 0 ? s : "-";
}

static int vm_list(struct cli *cli, int argc, char **argv)
{
    static const char *const headers[] = {"NAME",  "STATE", "NODE",   "VCPUS", "MEMORY",
                                          "ACCEL", "PID",   "UPTIME", "HA"};
    static const char help[] =
        "Usage: ferry vm list [-o table|json]\n\nLists the VMs of this host, or of the "
        "whole cluster with the node that runs each.\n";
    int go = cli_common_options(cli, "vm list", argc, argv, help, false);
    if (go != CLI_GO)
        return go;

    json_t *reply;
    int rc = cli_call(cli, "GET", "/v1/vms", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    cli_stale_note(reply);
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
        json_decref(reply);
        return EXIT_OK;
    }
    struct output_table *t = output_table_new(9, headers);
    if (!t) {
        json_decref(reply);
        return cli_nomem();
    }
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(reply, "vms"), i, vm)
    {
        char vcpus[24], mem[32], pid[24], up[32];
        snprintf(vcpus, sizeof(vcpus), "%llu", (unsigned long long)vm_vcpus(vm));
        output_bytes(vm_memory_mib(vm) << 20, mem, sizeof(mem));
        uint64_t p = cli_jnum(vm, "pid");
        snprintf(pid, sizeof(pid), p ? "%llu" : "-", (unsigned long long)p);
        const char *accel = cli_jstr(vm, "accel");
        const char *cells[] = {cli_jstr(vm, "name"),
                               cli_jstr(vm, "state"),
                               cli_jstr(vm, "owner"),
                               vcpus,
                               mem,
                               accel && accel[0] && vm_is_up(vm) ? accel : NULL,
                               pid,
                               vm_uptime(vm, up, sizeof(up)),
                               ha_cell(vm)};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            json_decref(reply);
            return cli_nomem();
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    json_decref(reply);
    return EXIT_OK;
}

static void show_vm(const json_t *vm)
{
    const json_t *spec = json_object_get(vm, "spec");
    const json_t *cpu = json_object_get(spec, "cpu");
    char buf[64], buf2[64];
    const char *s;

    output_kv(stdout, "name", "%s", cli_jstr(vm, "name") ? cli_jstr(vm, "name") : "?");
    output_kv(stdout, "state", "%s", cli_jstr(vm, "state") ? cli_jstr(vm, "state") : "?");
    if ((s = cli_jstr(vm, "reason")) && s[0])
        output_kv(stdout, "reason", "%s", s);
    if (cli_jnum(vm, "pid"))
        output_kv(stdout, "pid", "%llu", (unsigned long long)cli_jnum(vm, "pid"));
    if ((s = cli_jstr(vm, "accel")) && s[0])
        output_kv(stdout, "accel", "%s", s);
    const json_t *ha = json_object_get(vm, "ha");
    if ((s = cli_jstr(ha, "state")) && strcmp(s, "disabled") != 0) {
        const char *why = cli_jstr(ha, "why");
        output_kv(stdout, "ha", "%s (priority %s, %llu restart%s in its period)%s%s", s,
                  cli_jstr(ha, "priority") ? cli_jstr(ha, "priority") : "?",
                  (unsigned long long)cli_jnum(ha, "restarts"),
                  cli_jnum(ha, "restarts") == 1 ? "" : "s", why && why[0] ? ": " : "",
                  why ? why : "");
    }
    if (cli_jnum(vm, "writer_epoch"))
        output_kv(stdout, "writer epoch",
                  "%llu (its disks on shared volumes answer this start only)",
                  (unsigned long long)cli_jnum(vm, "writer_epoch"));
    const json_t *fo = json_object_get(vm, "failover");
    if (cli_jstr(fo, "from")) {
        uint64_t heard = cli_jnum(fo, "heard_ms"), down = cli_jnum(fo, "down_ms"),
                 stale = cli_jnum(fo, "stale_ms"), decided = cli_jnum(fo, "decided_ms"),
                 started = cli_jnum(vm, "started_ms");
        output_kv(stdout, "last failover", "from %s to %s at %s (%s)", cli_jstr(fo, "from"),
                  cli_jstr(fo, "to") ? cli_jstr(fo, "to") : "?",
                  output_time(decided, buf, sizeof(buf)),
                  cli_jstr(fo, "why") ? cli_jstr(fo, "why") : "");
        char run[96] = "";
        uint64_t net = cli_jnum(vm, "net_ms");
        if (started > decided && net >= started)
            snprintf(run, sizeof(run), ", QEMU started +%lld ms, guest network up +%lld ms",
                     (long long)(started - heard), (long long)(net - heard));
        else if (started > decided)
            snprintf(run, sizeof(run), ", QEMU started +%lld ms", (long long)(started - heard));
        if (heard && decided >= heard)
            output_kv(stdout, "  timeline",
                      "last heard +0 ms, down +%lld ms, leases stale +%lld ms, given +%lld ms%s",
                      (long long)down - (long long)heard, (long long)stale - (long long)heard,
                      (long long)(decided - heard), run);
    }
    uint64_t so = cli_jnum(cpu, "sockets"), co = cli_jnum(cpu, "cores"),
             th = cli_jnum(cpu, "threads");
    so = so ? so : 1, co = co ? co : 1, th = th ? th : 1;
    output_kv(stdout, "vcpus", "%llu (%llu socket%s x %llu core%s x %llu thread%s)",
              (unsigned long long)vm_vcpus(vm), (unsigned long long)so, so == 1 ? "" : "s",
              (unsigned long long)co, co == 1 ? "" : "s", (unsigned long long)th,
              th == 1 ? "" : "s");
    output_kv(stdout, "memory", "%s", output_bytes(vm_memory_mib(vm) << 20, buf, sizeof(buf)));
    output_kv(stdout, "machine", "%s", (s = cli_jstr(spec, "machine")) ? s : "pc (not pinned)");
    if ((s = cli_jstr(spec, "efi_vars")))
        output_kv(stdout, "firmware", "efi (OVMF; variables in %s)", s);
    else
        output_kv(stdout, "firmware", "bios");
    output_kv(stdout, "created", "%s", output_time(cli_jnum(vm, "created_ms"), buf, sizeof(buf)));
    if (vm_is_up(vm))
        output_kv(stdout, "started", "%s (up %s)",
                  output_time(cli_jnum(vm, "started_ms"), buf, sizeof(buf)),
                  vm_uptime(vm, buf2, sizeof(buf2)));
    json_t *cpu_s = json_object_get(vm, "qemu_cpu_s");
    if (json_is_number(cpu_s))
        output_kv(stdout, "cpu time", "%.2fs", json_number_value(cpu_s));

    const json_t *boot = json_object_get(spec, "boot");
    if ((s = cli_jstr(boot, "kernel")) && s[0]) {
        output_kv(stdout, "kernel", "%s", s);
        if ((s = cli_jstr(boot, "initrd")) && s[0])
            output_kv(stdout, "initrd", "%s", s);
        if ((s = cli_jstr(boot, "cmdline")) && s[0])
            output_kv(stdout, "cmdline", "%s", s);
    } else {
        output_kv(stdout, "boot", "first disk");
    }
    if (json_object_get(spec, "blackout_budget_ms"))
        output_kv(stdout, "budget", "%llu ms blackout",
                  (unsigned long long)cli_jnum(spec, "blackout_budget_ms"));
    if (json_object_get(spec, "priority"))
        output_kv(stdout, "priority", "%llu", (unsigned long long)cli_jnum(spec, "priority"));
    const json_t *labels = json_object_get(spec, "labels");
    if (json_object_size(labels) > 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        const char *k;
        json_t *v;
        if (m) {
            json_object_foreach((json_t *)labels, k, v)
                fprintf(m, "%s%s=%s", ftell(m) ? ", " : "", k,
                        json_string_value(v) ? json_string_value(v) : "");
            fclose(m);
            output_kv(stdout, "labels", "%s", text);
            free(text);
        }
    }

    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(spec, "disks"), i, d)
    {
        char key[32];
        snprintf(key, sizeof(key), "disk %zu", i);
        uint64_t size = cli_jnum(d, "size_mib");
        const char *bus = cli_jstr(d, "bus") ? cli_jstr(d, "bus") : "virtio";
        const char *ctl = cli_jstr(spec, "scsi_controller");
        output_kv(stdout, key, "%s (%s, bus %s%s%s%s%s)",
                  cli_jstr(d, "path") ? cli_jstr(d, "path") : "?",
                  json_is_true(json_object_get(d, "readonly")) ? "read-only" : "read-write", bus,
                  strcmp(bus, "scsi") == 0 ? " on " : "",
                  strcmp(bus, "scsi") == 0 ? (ctl ? ctl : "pvscsi") : "", size ? ", size " : "",
                  size ? output_bytes(size << 20, buf, sizeof(buf)) : "");
    }
    json_t *n, *taps = json_object_get(vm, "taps");
    json_array_foreach(json_object_get(spec, "nics"), i, n)
    {
        char key[32];
        const char *tap = json_string_value(json_array_get(taps, i));
        const char *mac = cli_jstr(n, "mac");
        snprintf(key, sizeof(key), "nic %zu", i);
        output_kv(stdout, key, "bridge %s, mac %s, model %s, tap %s",
                  cli_jstr(n, "bridge") ? cli_jstr(n, "bridge") : "?", mac && mac[0] ? mac : "-",
                  cli_jstr(n, "model") ? cli_jstr(n, "model") : "virtio",
                  tap && tap[0] ? tap : "-");
    }
}

static int vm_show(struct cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    static const char help[] = "Usage: ferry vm show NAME [-o table|json]\n\n"
                               "Shows a VM: its state, its spec, disks and NICs.\n";
    int go = cli_common_options(cli, "vm show", argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    int rc = one_name("vm show", argc, argv, &name);
    if (rc != EXIT_OK)
        return rc;
    char *path = cmd_vm__path(name, "");
    json_t *vm;
    if (!path)
        return cli_nomem();
    rc = cli_call(cli, "GET", path, NULL, &vm);
    free(path);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, vm);
    else
        show_vm(vm);
    json_decref(vm);
    return EXIT_OK;
}

/* ---- vm start / stop / kill / pause / resume / delete ------------------------------------ */

static int vm_action(struct cli *cli, int argc, char **argv, const char *action, const char *help)
{
    enum { O_TIMEOUT = 256, O_FORCE };
    static const struct option stop_opts[] = {
        {"timeout", required_argument, NULL, O_TIMEOUT}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    static const struct option delete_opts[] = {
        {"force", no_argument, NULL, O_FORCE}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    bool is_stop = strcmp(action, "stop") == 0, is_delete = strcmp(action, "delete") == 0;
    char cmd[32];
    const char *name = NULL;
    uint64_t timeout = 0;
    bool has_timeout = false, force = false, first = true;
    int c;

    snprintf(cmd, sizeof(cmd), "vm %s", action);
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS,
                           is_stop     ? stop_opts
                           : is_delete ? delete_opts
                                       : opts,
                           &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return EXIT_OK;
        case O_TIMEOUT:
            if (cli_parse_u64(optarg, 0, UINT32_MAX, &timeout) < 0)
                return cli_usage(cmd, "--timeout: '%s' is not a number of seconds", optarg);
            has_timeout = true;
            break;
        case O_FORCE:
            force = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    int rc = one_name(cmd, argc, argv, &name);
    if (rc != EXIT_OK)
        return rc;

    char suffix[32];
    if (is_delete)
        snprintf(suffix, sizeof(suffix), "%s", force ? "?force=1" : "");
    else
        snprintf(suffix, sizeof(suffix), "/%s", action);
    char *path = cmd_vm__path(name, suffix);
    json_t *body = has_timeout ? json_pack("{s:I}", "timeout_s", (json_int_t)timeout) : NULL;
    json_t *reply = NULL;
    if (!path || (has_timeout && !body)) {
        free(path);
        json_decref(body);
        return cli_nomem();
    }
    rc = cli_call(cli, is_delete ? "DELETE" : "POST", path, body, &reply);
    free(path);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (is_delete) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, reply);
        else
            printf("%s: deleted\n", cli_jstr(reply, "deleted") ? cli_jstr(reply, "deleted") : name);
    } else {
        rc = cmd_vm__print_state(cli, reply);
    }
    json_decref(reply);
    return rc;
}

static int vm_start(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "start",
                     "Usage: ferry vm start NAME\n\n"
                     "Starts a VM and waits until it runs (or failed).\n");
}

static int vm_stop(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "stop",
                     "Usage: ferry vm stop NAME [--timeout S]\n\n"
                     "Presses the VM's ACPI power button and waits until it is stopped; after\n"
                     "the timeout (ferryd's default, or S seconds, 1..3600) it is killed.\n");
}

static int vm_kill(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "kill",
                     "Usage: ferry vm kill NAME\n\n"
                     "Ends the VM's QEMU process at once, like pulling the power cord.\n");
}

static int vm_pause(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "pause",
                     "Usage: ferry vm pause NAME\n\nStops the VM's vCPUs; memory stays.\n");
}

static int vm_resume(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "resume",
                     "Usage: ferry vm resume NAME\n\nRuns the vCPUs of a paused VM again.\n");
}

static int vm_delete(struct cli *cli, int argc, char **argv)
{
    return vm_action(cli, argc, argv, "delete",
                     "Usage: ferry vm delete NAME [--force]\n\n"
                     "Removes a stopped VM; --force kills a running one first.\n"
                     "Its disk files are kept.\n");
}

/* ---- vm console -------------------------------------------------------------------------- */

static const char console_help[] =
    "Usage: ferry vm console NAME [-f] [--bytes N]\n"
    "\n"
    "Prints the VM's serial console output.\n"
    "\n"
    "Options:\n"
    "  --bytes N      print the last N bytes (default 65536, at most 1048576)\n"
    "  -f, --follow   keep printing new output until Ctrl-C\n";

/* Fetches console bytes; offset < 0 asks for the last max bytes. */
static int console_get(struct cli *cli, const char *name, int64_t offset, uint64_t max,
                       json_t **reply)
{
    char suffix[96];
    if (offset < 0)
        snprintf(suffix, sizeof(suffix), "/console?max=%llu", (unsigned long long)max);
    else
        snprintf(suffix, sizeof(suffix), "/console?offset=%lld&max=%llu", (long long)offset,
                 (unsigned long long)max);
    char *path = cmd_vm__path(name, suffix);
    if (!path)
        return cli_nomem();
    int rc = cli_call(cli, "GET", path, NULL, reply);
    free(path);
    return rc;
}

static size_t console_print(struct cli *cli, const json_t *reply)
{
    json_t *data = json_object_get(reply, "data");
    size_t len = json_string_length(data);
    if (cli->fmt == OUTPUT_JSON) {
        if (len > 0) {
            json_dumpf(reply, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
        }
    } else if (len > 0) {
        fwrite(json_string_value(data), 1, len, stdout);
    }
    fflush(stdout);
    return len;
}

static int vm_console(struct cli *cli, int argc, char **argv)
{
    enum { O_BYTES = 256 };
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"bytes", required_argument, NULL, O_BYTES},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "vm console", *name = NULL;
    uint64_t bytes = CONSOLE_CHUNK;
    bool follow = false, first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "f", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(console_help, stdout);
            return EXIT_OK;
        case 'f':
            follow = true;
            break;
        case O_BYTES:
            if (cli_parse_u64(optarg, 0, INT64_MAX, &bytes) < 0)
                return cli_usage(cmd, "--bytes: '%s' is not a number", optarg);
            break;
        default:
            return EXIT_USAGE;
        }
    }
    int rc = one_name(cmd, argc, argv, &name);
    if (rc != EXIT_OK)
        return rc;

    json_t *reply;
    rc = console_get(cli, name, -1, bytes, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (!follow) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, reply);
        else
            console_print(cli, reply);
        json_decref(reply);
        return EXIT_OK;
    }
    console_print(cli, reply);
    uint64_t offset = cli_jnum(reply, "offset");
    json_decref(reply);
    cli_follow_begin();
    bool more = false; /* the last answer was full: ask again at once */
    while (!cli_interrupted()) {
        if (!more && !cli_follow_sleep(CONSOLE_POLL_MS))
            break;
        rc = console_get(cli, name, (int64_t)offset, CONSOLE_CHUNK, &reply);
        if (rc != EXIT_OK)
            return cli_interrupted() ? EXIT_OK : rc;
        uint64_t start = cli_jnum(reply, "start");
        if (start > offset)
            fprintf(stderr,
                    "\nferry: [%llu bytes of console output were lost: overwritten in the "
                    "console ring before they were read]\n",
                    (unsigned long long)(start - offset));
        more = console_print(cli, reply) >= CONSOLE_CHUNK;
        uint64_t next = cli_jnum(reply, "offset");
        if (next < offset) /* the VM restarted with a fresh console */
            more = false;
        offset = next;
        json_decref(reply);
    }
    return EXIT_OK;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const struct cli_cmd vm_cmds[] = {
    {"create", cmd_vm_create, "define a VM (and start it with --start)"},
    {"import", cmd_vm_import, "import a VMware machine (.vmx, .ovf, .ova) onto a volume"},
    {"list", vm_list, "list the VMs of this host"},
    {"show", vm_show, "show a VM: state, spec, disks, NICs"},
    {"start", vm_start, "start a VM"},
    {"stop", vm_stop, "shut a VM down (ACPI), kill it after a timeout"},
    {"kill", vm_kill, "end a VM's QEMU at once"},
    {"pause", vm_pause, "pause a VM's vCPUs"},
    {"resume", vm_resume, "resume a paused VM"},
    {"delete", vm_delete, "remove a stopped VM (--force kills it first)"},
    {"console", vm_console, "print (and follow) a VM's serial console"},
    {"migrate", cmd_vm_migrate, "live-migrate a running VM to another node"},
    {"migrations", cmd_vm_migrations, "history of live migrations (cluster database)"},
    {"storage-move", cmd_vm_storage_move, "move a VM's disk (onto a shared volume) as it runs"},
    {"ha", cmd_vm_ha, "high availability: ha enable|disable NAME"},
    {"failovers", cmd_vm_failovers, "the last failover of each VM and its timeline"},
    {"measure-migration", cmd_vm_measure_migration, "record a client-observed gap on a migration"},
};

int cmd_vm(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "vm", vm_cmds, ARRAY_SIZE(vm_cmds), argc - 1, argv + 1);
}
