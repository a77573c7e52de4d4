/* SPDX-License-Identifier: MIT */
/* ferry vm: create, list, show, start, stop, kill, pause, resume, delete, console. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "common/util.h"

#define GUEST_DIR_DEFAULT "/usr/local/share/ferry/guest"
#define CONSOLE_POLL_MS 200
#define CONSOLE_CHUNK 65536

/* ---- small helpers ----------------------------------------------------------------------- */

/* "/v1/vms/NAME" + suffix, with NAME escaped. Caller frees; NULL on ENOMEM. */
static char *vm_path(const char *name, const char *suffix)
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

/* Prints "NAME: STATE" (with the reason of a failed VM); EXIT_FAIL if the VM failed. */
static int print_state(struct cli *cli, const json_t *vm)
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

/* ---- vm create --------------------------------------------------------------------------- */

static const char create_help[] =
    "Usage: ferry vm create NAME [OPTIONS]\n"
    "\n"
    "Defines a VM on this host (and starts it with --start).\n"
    "\n"
    "Options:\n"
    "  --cpus N                 N vCPUs: 1 socket with N cores\n"
    "  --sockets S --cores C --threads T\n"
    "                           CPU topology (each defaults to 1)\n"
    "  --memory MIB             memory in MiB (or 512M, 2G)\n"
    "  --machine TYPE           QEMU machine type (default: the versioned type \"pc\" stands\n"
    "                           for on the host that makes it, e.g. pc-i440fx-7.2)\n"
    "  --disk PATH[,size=MIB][,ro]\n"
    "                           a VHD disk; with size=, a fixed VHD that does not exist yet\n"
    "                           is created; ro attaches it read-only (repeatable)\n"
    "  --nic BRIDGE[,mac=MAC]   a NIC on a host bridge (repeatable)\n"
    "  --kernel PATH            boot this kernel directly (else the first disk boots)\n"
    "  --initrd PATH            with --kernel: its initrd\n"
    "  --cmdline STR            with --kernel: its command line\n"
    "  --appliance              boot ferry's guest appliance ($FERRY_GUEST_DIR, default\n"
    "                           " GUEST_DIR_DEFAULT ")\n"
    "  --guest-ip A.B.C.D/NN    the appliance's address (ferry.ip=)\n"
    "  --guest-gw IP            the appliance's gateway (ferry.gw=)\n"
    "  --workload LIST          what the appliance runs (ferry.workload=)\n"
    "  --budget-ms N            live migration blackout budget in ms\n"
    "  --priority N             failover priority, 0..1000, higher first\n"
    "  --label K=V              a label (repeatable)\n"
    "  --node NODE              in a cluster: the node that runs it (default: the up node\n"
    "                           with the most free memory)\n"
    "  --start                  start the VM once it is created\n"
    "  -f, --file SPEC.json     start from a spec file ('-' for stdin); options override it\n"
    "  -o, --output table|json  output format\n"
    "\n"
    "Relative paths are made absolute here. Limits are checked by ferryd.\n";

struct create_args {
    const char *name;
    const char *file;
    uint64_t cpus, sockets, cores, threads, memory, budget, priority;
    bool has_cpus, has_topology, has_memory, has_budget, has_priority;
    json_t *disks;  /* array or NULL */
    json_t *nics;   /* array or NULL */
    json_t *labels; /* object or NULL */
    const char *kernel, *initrd, *cmdline, *machine;
    bool appliance;
    const char *guest_ip, *guest_gw, *workload;
    const char *node;
    bool start;
};

static int parse_disk(const char *arg, json_t **out, char *why, size_t whylen)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return -ENOMEM;
    int rc = -1;
    char *path = strtok_r(copy, ",", &save);
    json_t *d = json_object();
    if (!d)
        goto out;
    if (!path || !*path || arg[0] == ',') {
        snprintf(why, whylen, "--disk '%s': a PATH is needed", arg);
        goto out;
    }
    json_object_set_new(d, "path", json_string(path));
    for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
        uint64_t mib;
        if (strncmp(opt, "size=", 5) == 0) {
            if (cli_parse_size_mib(opt + 5, &mib) < 0 || mib > INT64_MAX) {
                snprintf(why, whylen, "--disk: size '%s' is not a size like 1024, 512M or 2G",
                         opt + 5);
                goto out;
            }
            json_object_set_new(d, "size_mib", json_integer((json_int_t)mib));
        } else if (strcmp(opt, "ro") == 0 || strcmp(opt, "readonly") == 0) {
            json_object_set_new(d, "readonly", json_true());
        } else {
            snprintf(why, whylen, "--disk: unknown option '%s' (size=MIB or ro)", opt);
            goto out;
        }
    }
    *out = d;
    d = NULL;
    rc = 0;
out:
    json_decref(d);
    free(copy);
    return rc;
}

static int parse_nic(const char *arg, json_t **out, char *why, size_t whylen)
{
    const char *comma = strchr(arg, ',');
    size_t blen = comma ? (size_t)(comma - arg) : strlen(arg);
    if (blen == 0) {
        snprintf(why, whylen, "--nic '%s': a BRIDGE is needed", arg);
        return -1;
    }
    json_t *n = json_object();
    if (!n)
        return -ENOMEM;
    json_object_set_new(n, "bridge", json_stringn(arg, blen));
    if (comma) {
        if (strncmp(comma + 1, "mac=", 4) != 0 || !comma[5] || strchr(comma + 5, ',')) {
            snprintf(why, whylen, "--nic '%s': expected BRIDGE[,mac=MAC]", arg);
            json_decref(n);
            return -1;
        }
        json_object_set_new(n, "mac", json_string(comma + 5));
    }
    *out = n;
    return 0;
}

/* Appends j to the array *arr, creating it first. Takes j. */
static int push(json_t **arr, json_t *j)
{
    if (!*arr && !(*arr = json_array())) {
        json_decref(j);
        return -ENOMEM;
    }
    return json_array_append_new(*arr, j) == 0 ? 0 : -ENOMEM;
}

static bool ipv4_prefix_valid(const char *s)
{
    char addr[INET_ADDRSTRLEN];
    struct in_addr a;
    uint64_t bits;
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof(addr))
        return false;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    return inet_pton(AF_INET, addr, &a) == 1 && cli_parse_u64(slash + 1, 0, 32, &bits) == 0;
}

static bool has_space(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s))
            return true;
    return false;
}

/* Replaces the string at key of o by its absolute form. Returns 0 or a usage message. */
static int absolutize(json_t *o, const char *key, const char *what, char *why, size_t whylen)
{
    const char *p = cli_jstr(o, key);
    char abs[PATH_MAX];
    if (!p || !p[0] || p[0] == '/')
        return 0;
    if (cli_abspath(p, abs, sizeof(abs)) < 0) {
        snprintf(why, whylen, "%s '%s': path is too long", what, p);
        return -1;
    }
    json_object_set_new(o, key, json_string(abs));
    return 0;
}

/* Finds the guest appliance; on failure prints why and returns EXIT_FAIL. */
static int appliance_find(char *kernel, char *initrd, size_t size)
{
    const char *dir = getenv("FERRY_GUEST_DIR");
    char abs[PATH_MAX];
    if (!dir || !dir[0])
        dir = GUEST_DIR_DEFAULT;
    if (cli_abspath(dir, abs, sizeof(abs)) < 0 || fmt_path(kernel, size, "%s/vmlinuz", abs) < 0 ||
        fmt_path(initrd, size, "%s/initrd.img", abs) < 0) {
        fprintf(stderr, "ferry: guest appliance directory '%s': path is too long\n", dir);
        return EXIT_FAIL;
    }
    const char *paths[] = {kernel, initrd};
    for (size_t i = 0; i < 2; i++) {
        if (access(paths[i], R_OK) < 0) {
            fprintf(stderr,
                    "ferry: guest appliance: %s: %s\n"
                    "Build it with guest/build-appliance --out DIR (and install it "
                    "in " GUEST_DIR_DEFAULT "),\nor point FERRY_GUEST_DIR at the directory that "
                    "holds vmlinuz and initrd.img.\n",
                    paths[i], strerror(errno));
            return EXIT_FAIL;
        }
    }
    return EXIT_OK;
}

static json_t *spec_load(const char *file, char *why, size_t whylen)
{
    json_error_t je;
    bool in = strcmp(file, "-") == 0;
    json_t *j = in ? json_loadf(stdin, 0, &je) : json_load_file(file, 0, &je);
    if (!j) {
        if (je.line > 0)
            snprintf(why, whylen, "%s:%d: %s", in ? "<stdin>" : file, je.line, je.text);
        else
            snprintf(why, whylen, "%s", je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(why, whylen, "%s: a spec is a JSON object", in ? "<stdin>" : file);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Builds the spec from the file and the options. Returns EXIT_OK with *out, or an exit code
 * after printing why. */
static int spec_build(const struct create_args *a, json_t **out)
{
    char why[PATH_MAX + 256] = "";
    json_t *spec = a->file ? spec_load(a->file, why, sizeof(why)) : json_object();
    if (!spec) {
        if (!why[0])
            return cli_nomem();
        fprintf(stderr, "ferry: %s\n", why);
        return EXIT_FAIL;
    }
    if (a->name)
        json_object_set_new(spec, "name", json_string(a->name));
    if (!cli_jstr(spec, "name")) {
        json_decref(spec);
        return cli_usage("vm create", "a VM NAME is needed");
    }
    if (a->has_cpus)
        json_object_set_new(spec, "cpu",
                            json_pack("{s:I,s:I,s:I}", "sockets", (json_int_t)1, "cores",
                                      (json_int_t)a->cpus, "threads", (json_int_t)1));
    else if (a->has_topology)
        json_object_set_new(spec, "cpu",
                            json_pack("{s:I,s:I,s:I}", "sockets",
                                      (json_int_t)(a->sockets ? a->sockets : 1), "cores",
                                      (json_int_t)(a->cores ? a->cores : 1), "threads",
                                      (json_int_t)(a->threads ? a->threads : 1)));
    if (a->has_memory)
        json_object_set_new(spec, "memory_mib", json_integer((json_int_t)a->memory));
    if (a->machine && json_object_set_new(spec, "machine", json_string(a->machine)) < 0) {
        json_decref(spec);
        return cli_usage("vm create", "--machine: a QEMU machine type like pc-i440fx-7.2");
    }
    if (a->disks)
        json_object_set(spec, "disks", a->disks);
    if (a->nics)
        json_object_set(spec, "nics", a->nics);

    /* Boot: options override the file's fields; ferry.* parameters are appended. */
    json_t *boot = json_object_get(spec, "boot");
    boot = json_is_object(boot) ? json_deep_copy(boot) : json_object();
    char kernel[PATH_MAX], initrd[PATH_MAX];
    if (a->appliance) {
        int rc = appliance_find(kernel, initrd, sizeof(kernel));
        if (rc != EXIT_OK) {
            json_decref(boot);
            json_decref(spec);
            return rc;
        }
        json_object_set_new(boot, "kernel", json_string(kernel));
        json_object_set_new(boot, "initrd", json_string(initrd));
    }
    if (a->kernel)
        json_object_set_new(boot, "kernel", json_string(a->kernel));
    if (a->initrd)
        json_object_set_new(boot, "initrd", json_string(a->initrd));
    if (a->cmdline || a->guest_ip || a->guest_gw || a->workload) {
        const char *base = a->cmdline ? a->cmdline : cli_jstr(boot, "cmdline");
        char *cl = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&cl, &len);
        if (!m) {
            json_decref(boot);
            json_decref(spec);
            return cli_nomem();
        }
        fputs(base ? base : "", m);
        const char *keys[] = {"ferry.ip", "ferry.gw", "ferry.workload"};
        const char *vals[] = {a->guest_ip, a->guest_gw, a->workload};
        for (size_t i = 0; i < 3; i++) {
            if (!vals[i])
                continue;
            if (ftell(m) > 0)
                fputc(' ', m);
            fprintf(m, "%s=%s", keys[i], vals[i]);
        }
        fclose(m);
        json_object_set_new(boot, "cmdline", json_string(cl));
        free(cl);
    }
    if (json_object_size(boot) > 0)
        json_object_set(spec, "boot", boot);
    json_decref(boot);

    if (a->has_budget)
        json_object_set_new(spec, "blackout_budget_ms", json_integer((json_int_t)a->budget));
    if (a->has_priority)
        json_object_set_new(spec, "priority", json_integer((json_int_t)a->priority));
    if (a->labels) {
        json_t *labels = json_object_get(spec, "labels");
        if (json_is_object(labels))
            json_object_update(labels, a->labels);
        else
            json_object_set(spec, "labels", a->labels);
    }

    /* Relative paths mean "from here", wherever they came from. */
    int bad = 0;
    json_t *disks = json_object_get(spec, "disks"), *d;
    size_t i;
    json_array_foreach(disks, i, d)
    {
        bad |= absolutize(d, "path", "--disk", why, sizeof(why));
    }
    boot = json_object_get(spec, "boot");
    if (json_is_object(boot)) {
        bad |= absolutize(boot, "kernel", "--kernel", why, sizeof(why));
        bad |= absolutize(boot, "initrd", "--initrd", why, sizeof(why));
    }
    if (bad) {
        json_decref(spec);
        return cli_usage("vm create", "%s", why);
    }
    *out = spec;
    return EXIT_OK;
}

static int vm_create(struct cli *cli, int argc, char **argv)
{
    enum {
        O_CPUS = 256,
        O_SOCKETS,
        O_CORES,
        O_THREADS,
        O_MEMORY,
        O_DISK,
        O_NIC,
        O_KERNEL,
        O_INITRD,
        O_CMDLINE,
        O_APPLIANCE,
        O_GUEST_IP,
        O_GUEST_GW,
        O_WORKLOAD,
        O_BUDGET,
        O_PRIORITY,
        O_LABEL,
        O_START,
        O_NODE,
        O_MACHINE,
    };
    static const struct option opts[] = {
        {"cpus", required_argument, NULL, O_CPUS},
        {"sockets", required_argument, NULL, O_SOCKETS},
        {"cores", required_argument, NULL, O_CORES},
        {"threads", required_argument, NULL, O_THREADS},
        {"memory", required_argument, NULL, O_MEMORY},
        {"disk", required_argument, NULL, O_DISK},
        {"nic", required_argument, NULL, O_NIC},
        {"kernel", required_argument, NULL, O_KERNEL},
        {"initrd", required_argument, NULL, O_INITRD},
        {"cmdline", required_argument, NULL, O_CMDLINE},
        {"appliance", no_argument, NULL, O_APPLIANCE},
        {"guest-ip", required_argument, NULL, O_GUEST_IP},
        {"guest-gw", required_argument, NULL, O_GUEST_GW},
        {"workload", required_argument, NULL, O_WORKLOAD},
        {"budget-ms", required_argument, NULL, O_BUDGET},
        {"priority", required_argument, NULL, O_PRIORITY},
        {"label", required_argument, NULL, O_LABEL},
        {"start", no_argument, NULL, O_START},
        {"node", required_argument, NULL, O_NODE},
        {"machine", required_argument, NULL, O_MACHINE},
        {"file", required_argument, NULL, 'f'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "vm create";
    struct create_args a = {0};
    char why[512];
    json_t *spec = NULL, *vm = NULL, *item = NULL;
    char *path = NULL;
    bool first = true;
    int c, rc = EXIT_USAGE;

    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "f:", opts, &first)) != -1) {
        uint64_t *num = NULL, max = UINT32_MAX;
        bool *flag = NULL;
        switch (c) {
        case 'h':
            fputs(create_help, stdout);
            rc = EXIT_OK;
            goto out;
        case CLI_OPT_BAD:
            goto out;
        case 'f':
            a.file = optarg;
            break;
        case O_MACHINE:
            a.machine = optarg; /* checked by ferryd against its QEMU */
            break;
        case O_CPUS:
            num = &a.cpus, flag = &a.has_cpus;
            break;
        case O_SOCKETS:
            num = &a.sockets, flag = &a.has_topology;
            break;
        case O_CORES:
            num = &a.cores, flag = &a.has_topology;
            break;
        case O_THREADS:
            num = &a.threads, flag = &a.has_topology;
            break;
        case O_BUDGET:
            num = &a.budget, flag = &a.has_budget;
            break;
        case O_PRIORITY:
            num = &a.priority, flag = &a.has_priority;
            break;
        case O_MEMORY:
            if (cli_parse_size_mib(optarg, &a.memory) < 0 || a.memory > INT64_MAX) {
                cli_usage(cmd, "--memory: '%s' is not a size in MiB like 512, 512M or 2G", optarg);
                goto out;
            }
            a.has_memory = true;
            break;
        case O_DISK:
        case O_NIC:
            why[0] = '\0';
            if ((c == O_DISK ? parse_disk : parse_nic)(optarg, &item, why, sizeof(why)) < 0) {
                if (!why[0])
                    rc = cli_nomem();
                else
                    cli_usage(cmd, "%s", why);
                goto out;
            }
            if (push(c == O_DISK ? &a.disks : &a.nics, item) < 0) {
                rc = cli_nomem();
                goto out;
            }
            break;
        case O_KERNEL:
            a.kernel = optarg;
            break;
        case O_INITRD:
            a.initrd = optarg;
            break;
        case O_CMDLINE:
            a.cmdline = optarg;
            break;
        case O_APPLIANCE:
            a.appliance = true;
            break;
        case O_GUEST_IP:
            if (!ipv4_prefix_valid(optarg)) {
                cli_usage(cmd, "--guest-ip: '%s' is not A.B.C.D/NN", optarg);
                goto out;
            }
            a.guest_ip = optarg;
            break;
        case O_GUEST_GW: {
            struct in_addr ia;
            if (inet_pton(AF_INET, optarg, &ia) != 1) {
                cli_usage(cmd, "--guest-gw: '%s' is not an IPv4 address", optarg);
                goto out;
            }
            a.guest_gw = optarg;
            break;
        }
        case O_WORKLOAD:
            if (!optarg[0] || has_space(optarg)) {
                cli_usage(cmd, "--workload: '%s' must be one word, e.g. probe,dirty", optarg);
                goto out;
            }
            a.workload = optarg;
            break;
        case O_LABEL: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                cli_usage(cmd, "--label: '%s' is not KEY=VALUE", optarg);
                goto out;
            }
            if ((!a.labels && !(a.labels = json_object())) ||
                json_object_setn_new(a.labels, optarg, (size_t)(eq - optarg), json_string(eq + 1)) <
                    0) {
                rc = cli_nomem();
                goto out;
            }
            break;
        }
        case O_START:
            a.start = true;
            break;
        case O_NODE:
            if (!name_valid(optarg, 63)) {
                cli_usage(cmd, "--node: '%s' is not a node name", optarg);
                goto out;
            }
            a.node = optarg;
            break;
        default:
            cli_usage(cmd, "unhandled option");
            goto out;
        }
        if (num) {
            const char *oname = "?";
            for (const struct option *o = opts; o->name; o++)
                if (o->val == c)
                    oname = o->name;
            if (cli_parse_u64(optarg, 0, max, num) < 0) {
                cli_usage(cmd, "--%s: '%s' is not a number", oname, optarg);
                goto out;
            }
            *flag = true;
        }
    }
    if (optind < argc)
        a.name = argv[optind++];
    if (optind < argc) {
        cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (a.has_cpus && a.has_topology) {
        cli_usage(cmd, "use either --cpus or --sockets/--cores/--threads");
        goto out;
    }
    if (a.appliance && (a.kernel || a.initrd)) {
        cli_usage(cmd, "--appliance brings its own kernel and initrd");
        goto out;
    }

    rc = spec_build(&a, &spec);
    if (rc != EXIT_OK)
        goto out;
    char create_path[128];
    if (a.node)
        snprintf(create_path, sizeof(create_path), "/v1/vms?node=%.64s", a.node);
    else
        snprintf(create_path, sizeof(create_path), "/v1/vms");
    rc = cli_call(cli, "POST", create_path, spec, &vm);
    if (rc != EXIT_OK)
        goto out;
    const char *owner = cli_jstr(vm, "owner");
    const char *name = cli_jstr(vm, "name") ? cli_jstr(vm, "name") : cli_jstr(spec, "name");
    if (!a.start) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, vm);
        else
            printf("%s: created on %s\n", name, owner ? owner : "this node");
        goto out;
    }
    if (cli->fmt != OUTPUT_JSON)
        printf("%s: created on %s\n", name, owner ? owner : "this node");
    path = vm_path(name, "/start");
    if (!path) {
        rc = cli_nomem();
        goto out;
    }
    json_decref(vm);
    rc = cli_call(cli, "POST", path, NULL, &vm);
    if (rc == EXIT_OK)
        rc = print_state(cli, vm);

out:
    free(path);
    json_decref(vm);
    json_decref(spec);
    json_decref(a.disks);
    json_decref(a.nics);
    json_decref(a.labels);
    return rc;
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

static int vm_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    static const char *const headers[] = {"NAME",   "STATE", "NODE", "VCPUS",
                                          "MEMORY", "ACCEL", "PID",  "UPTIME"};
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, "vm list", argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry vm list [-o table|json]\n\nLists the VMs of this host, or of the "
                   "whole cluster with the node that runs each.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage("vm list", "unexpected argument '%s'", argv[optind]);

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
    struct output_table *t = output_table_new(8, headers);
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
                               vm_uptime(vm, up, sizeof(up))};
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
    uint64_t so = cli_jnum(cpu, "sockets"), co = cli_jnum(cpu, "cores"),
             th = cli_jnum(cpu, "threads");
    so = so ? so : 1, co = co ? co : 1, th = th ? th : 1;
    output_kv(stdout, "vcpus", "%llu (%llu socket%s x %llu core%s x %llu thread%s)",
              (unsigned long long)vm_vcpus(vm), (unsigned long long)so, so == 1 ? "" : "s",
              (unsigned long long)co, co == 1 ? "" : "s", (unsigned long long)th,
              th == 1 ? "" : "s");
    output_kv(stdout, "memory", "%s", output_bytes(vm_memory_mib(vm) << 20, buf, sizeof(buf)));
    output_kv(stdout, "machine", "%s", (s = cli_jstr(spec, "machine")) ? s : "pc (not pinned)");
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
        output_kv(stdout, key, "%s (%s%s%s)", cli_jstr(d, "path") ? cli_jstr(d, "path") : "?",
                  json_is_true(json_object_get(d, "readonly")) ? "read-only" : "read-write",
                  size ? ", size " : "", size ? output_bytes(size << 20, buf, sizeof(buf)) : "");
    }
    json_t *n, *taps = json_object_get(vm, "taps");
    json_array_foreach(json_object_get(spec, "nics"), i, n)
    {
        char key[32];
        const char *tap = json_string_value(json_array_get(taps, i));
        const char *mac = cli_jstr(n, "mac");
        snprintf(key, sizeof(key), "nic %zu", i);
        output_kv(stdout, key, "bridge %s, mac %s, tap %s",
                  cli_jstr(n, "bridge") ? cli_jstr(n, "bridge") : "?", mac && mac[0] ? mac : "-",
                  tap && tap[0] ? tap : "-");
    }
}

static int vm_show(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    bool first = true;
    int c;
    const char *name = NULL;
    while ((c = cli_getopt(cli, "vm show", argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry vm show NAME [-o table|json]\n\n"
                   "Shows a VM: its state, its spec, disks and NICs.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    int rc = one_name("vm show", argc, argv, &name);
    if (rc != EXIT_OK)
        return rc;
    char *path = vm_path(name, "");
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
    char *path = vm_path(name, suffix);
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
        rc = print_state(cli, reply);
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
    char *path = vm_path(name, suffix);
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
    {"create", vm_create, "define a VM (and start it with --start)"},
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
    {"measure-migration", cmd_vm_measure_migration, "record a client-observed gap on a migration"},
};

int cmd_vm(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "vm", vm_cmds, ARRAY_SIZE(vm_cmds), argc - 1, argv + 1);
}
