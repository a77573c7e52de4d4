/* SPDX-License-Identifier: MIT */
/* ferry vm create: options and a spec file become a VM spec that is sent to ferryd. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/cmd_vm.h"
#include "common/util.h"
#include "vm/spec.h" /* VM_NAME_MAX */

#define GUEST_DIR_DEFAULT FERRY_DATADIR "/guest"

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
    "  --display vga|none       a VGA screen (the dashboard shows it through VNC) or none\n"
    "                           (default)\n"
    "  --firmware bios|efi      BIOS (default) or EFI (OVMF, Debian's ovmf package on every\n"
    "                           node); an EFI VM keeps its variables in NAME-efivars.fd next\n"
    "                           to its first disk (efi_vars in a spec file says elsewhere)\n"
    "  --disk PATH[,size=MIB][,type=fixed|dynamic][,bus=BUS][,ro]\n"
    "                           a VHD disk; with size=, a VHD that does not exist yet, fixed\n"
    "                           (default) or dynamic (grows as written; on a shared volume\n"
    "                           its coordinator serves it, redirected I/O)\n"
    "                           is created; ro attaches it read-only (repeatable). PATH may\n"
    "                           be csv:VOLUME/FILE: FILE on a cluster shared volume. BUS:\n"
    "                           virtio (default), scsi, sata or ide (at most 4, pc machine)\n"
    "  --scsi-controller pvscsi|lsi\n"
    "                           the controller of the scsi disks (default pvscsi; lsi is\n"
    "                           QEMU's LSI 53C895A)\n"
    "  --nic BRIDGE[,mac=MAC][,model=MODEL]\n"
    "                           a NIC on a host bridge (repeatable); MODEL: virtio\n"
    "                           (default), e1000 or vmxnet3, for guests without virtio\n"
    "                           drivers\n"
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
    "  --ha                     highly available (every disk on a shared volume; the\n"
    "                           options of ferry vm ha enable, with --ha-priority for\n"
    "                           its --priority, imply it)\n"
    "  -f, --file SPEC.json     start from a spec file ('-' for stdin); options override it\n"
    "  -o, --output table|json  output format\n"
    "\n"
    "Relative paths are made absolute here. Limits are checked by ferryd.\n";

#define CREATE_CMD "vm create" /* for usage errors */

/* What the options and the NAME operand of vm create say; the JSON is owned
 * (create_args_free). */
struct create_args {
    const char *name;
    const char *file;
    uint64_t cpus, sockets, cores, threads, memory, budget, priority;
    bool has_cpus, has_topology, has_memory, has_budget, has_priority;
    json_t *disks;  /* array or NULL */
    json_t *nics;   /* array or NULL */
    json_t *labels; /* object or NULL */
    const char *kernel, *initrd, *cmdline, *machine, *display, *scsi_controller, *firmware;
    bool appliance;
    const char *guest_ip, *guest_gw, *workload;
    const char *node;
    bool start;
    json_t *ha; /* HA settings (--ha and the --ha-... options), or NULL */
};

static void create_args_free(struct create_args *a)
{
    json_decref(a->disks);
    json_decref(a->nics);
    json_decref(a->labels);
    json_decref(a->ha);
}

/* The options without a short form; their values are above any character's. */
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
    O_HA,
    O_DISPLAY,
    O_SCSI_CONTROLLER,
    O_FIRMWARE,
};

static const struct option create_opts[] = {
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
    {"display", required_argument, NULL, O_DISPLAY},
    {"scsi-controller", required_argument, NULL, O_SCSI_CONTROLLER},
    {"firmware", required_argument, NULL, O_FIRMWARE},
    {"ha", no_argument, NULL, O_HA},
    {"ha-priority", required_argument, NULL, CLI_HA_PRIORITY},
    CLI_HA_LONGOPTS,
    {"file", required_argument, NULL, 'f'},
    CLI_COMMON_LONGOPTS,
    {NULL, 0, NULL, 0},
};

/* Appends j to the array *arr, creating it first. Takes j. */
static int push(json_t **arr, json_t *j)
{
    if (!*arr && !(*arr = json_array())) {
        json_decref(j);
        return -ENOMEM;
    }
    return json_array_append_new(*arr, j) == 0 ? 0 : -ENOMEM;
}

static bool has_space(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s))
            return true;
    return false;
}

/* JSON carries UTF-8 only: a string that is not cannot be sent to ferryd. */
static bool is_utf8(const char *s)
{
    size_t n = strlen(s);
    return utf8_valid_len(s, n) == n;
}

/* Replaces the string at key of o by its absolute form. Returns 0, or a negative code with a
 * message in e (FERR_INVALID, -ENAMETOOLONG: usage errors; others: failures). */
static int absolutize(json_t *o, const char *key, const char *what, struct ferr *e)
{
    const char *p = cli_jstr(o, key);
    char abs[PATH_MAX];
    if (!p || !p[0] || p[0] == '/')
        return 0;
    if (cli_abspath(p, abs, sizeof(abs), e) < 0)
        return ferr_prefix(e, "%s", what);
    if (!is_utf8(abs)) /* the directory it was resolved in is not UTF-8 */
        return ferr_set(e, FERR_INVALID,
                        "%s '%s': made absolute, it is not valid UTF-8 (ferryd takes UTF-8 paths "
                        "only)",
                        what, p);
    if (json_object_set_new(o, key, json_string(abs)) < 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    return 0;
}

/* Finds the guest appliance; on failure prints why and returns EXIT_FAIL. */
static int appliance_find(char *kernel, char *initrd, size_t size)
{
    const char *dir = getenv("FERRY_GUEST_DIR");
    char abs[PATH_MAX];
    struct ferr e = {0};
    if (!dir || !dir[0])
        dir = GUEST_DIR_DEFAULT;
    if (cli_abspath(dir, abs, sizeof(abs), &e) < 0) {
        fprintf(stderr, "ferry: guest appliance directory: %s\n", e.msg);
        return EXIT_FAIL;
    }
    if (fmt_path(kernel, size, "%s/vmlinuz", abs) < 0 ||
        fmt_path(initrd, size, "%s/initrd.img", abs) < 0) {
        fprintf(stderr, "ferry: guest appliance directory '%s': path is too long\n", dir);
        return EXIT_FAIL;
    }
    if (!is_utf8(abs)) {
        fprintf(stderr, "ferry: guest appliance directory: not valid UTF-8 (ferryd takes UTF-8 "
                        "paths only); set FERRY_GUEST_DIR to another one\n");
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

/* ---- step 1: the options ----------------------------------------------------------------- */

/* The long name of option c, for messages. */
static const char *option_name(int c)
{
    const char *oname = "?";
    for (const struct option *o = create_opts; o->name; o++)
        if (o->val == c)
            oname = o->name;
    return oname;
}

/* Parses a --disk (c is O_DISK) or a --nic and appends it to a's disks or nics. Returns
 * EXIT_OK, or an exit code after printing why. */
static int create_device(struct create_args *a, int c, const char *arg)
{
    char why[512] = "";
    json_t *item;
    int rc = (c == O_DISK ? cli_parse_disk : cli_parse_nic)(arg, &item, why, sizeof(why));
    if (rc < 0)
        return rc == -ENOMEM ? cli_nomem() : cli_usage(CREATE_CMD, "%s", why);
    if (push(c == O_DISK ? &a->disks : &a->nics, item) < 0)
        return cli_nomem();
    return EXIT_OK;
}

/* A usage error for option c when its value arg is "" (unless empty_ok) or not UTF-8, which
 * JSON cannot carry; what says what the option takes. Returns EXIT_OK or EXIT_USAGE. */
static int check_text(int c, const char *arg, bool empty_ok, const char *what)
{
    if (!arg[0] && !empty_ok)
        return cli_usage(CREATE_CMD, "--%s: '' is not %s", option_name(c), what);
    if (!is_utf8(arg))
        return cli_usage(CREATE_CMD, "--%s: not valid UTF-8; expected %s", option_name(c), what);
    return EXIT_OK;
}

/* Takes in option c with its value arg: any option of vm create but -h and bad ones
 * (create_parse) and -o (cli_getopt). Every value that goes into the spec is refused here when
 * JSON cannot carry it (not UTF-8) or when it is "" and "" means nothing, so that nothing is
 * dropped on the way. Returns EXIT_OK, or an exit code after printing why. */
static int create_option(struct create_args *a, int c, const char *arg)
{
    uint64_t *num = NULL;
    bool *flag = NULL;
    int rc;
    switch (c) {
    case 'f':
        if (!arg[0]) /* a local file name, never sent: any bytes do, but "" names no file */
            return cli_usage(CREATE_CMD, "--file: '' is not a spec FILE ('-' for stdin)");
        a->file = arg;
        break;
    case O_MACHINE:
        /* The type itself is checked by ferryd against its QEMU. */
        if ((rc = check_text(c, arg, false, "a QEMU machine type like pc-i440fx-7.2")) != EXIT_OK)
            return rc;
        a->machine = arg;
        break;
    case O_DISPLAY:
        if (strcmp(arg, "vga") != 0 && strcmp(arg, "none") != 0)
            return cli_usage(CREATE_CMD, "--display: expected vga or none, not '%s'", arg);
        a->display = arg;
        break;
    case O_FIRMWARE:
        if (strcmp(arg, "bios") != 0 && strcmp(arg, "efi") != 0)
            return cli_usage(CREATE_CMD, "--firmware: expected bios or efi, not '%s'", arg);
        a->firmware = arg;
        break;
    case O_SCSI_CONTROLLER:
        if (strcmp(arg, "pvscsi") != 0 && strcmp(arg, "lsi") != 0)
            return cli_usage(CREATE_CMD, "--scsi-controller: expected pvscsi or lsi, not '%s'",
                             arg);
        a->scsi_controller = arg;
        break;
    case O_CPUS:
        num = &a->cpus, flag = &a->has_cpus;
        break;
    case O_SOCKETS:
        num = &a->sockets, flag = &a->has_topology;
        break;
    case O_CORES:
        num = &a->cores, flag = &a->has_topology;
        break;
    case O_THREADS:
        num = &a->threads, flag = &a->has_topology;
        break;
    case O_BUDGET:
        num = &a->budget, flag = &a->has_budget;
        break;
    case O_PRIORITY:
        num = &a->priority, flag = &a->has_priority;
        break;
    case O_MEMORY:
        if (cli_parse_size_mib(arg, &a->memory) < 0 || a->memory > INT64_MAX)
            return cli_usage(CREATE_CMD, "--memory: '%s' is not a size in MiB like 512, 512M or 2G",
                             arg);
        a->has_memory = true;
        break;
    case O_DISK:
    case O_NIC:
        return create_device(a, c, arg);
    case O_KERNEL:
        if ((rc = check_text(c, arg, false, "the PATH of a kernel")) != EXIT_OK)
            return rc;
        a->kernel = arg;
        break;
    case O_INITRD:
        if ((rc = check_text(c, arg, false, "the PATH of an initrd")) != EXIT_OK)
            return rc;
        a->initrd = arg;
        break;
    case O_CMDLINE:
        /* "" is a command line: it replaces the spec file's. */
        if ((rc = check_text(c, arg, true, "a kernel command line")) != EXIT_OK)
            return rc;
        a->cmdline = arg;
        break;
    case O_APPLIANCE:
        a->appliance = true;
        break;
    case O_GUEST_IP:
        if (!cli_ipv4_prefix_valid(arg))
            return cli_usage(CREATE_CMD, "--guest-ip: '%s' is not A.B.C.D/NN", arg);
        a->guest_ip = arg;
        break;
    case O_GUEST_GW: {
        struct in_addr ia;
        if (inet_pton(AF_INET, arg, &ia) != 1)
            return cli_usage(CREATE_CMD, "--guest-gw: '%s' is not an IPv4 address", arg);
        a->guest_gw = arg;
        break;
    }
    case O_WORKLOAD:
        if (!arg[0] || has_space(arg))
            return cli_usage(CREATE_CMD, "--workload: '%s' must be one word, e.g. probe,dirty",
                             arg);
        if ((rc = check_text(c, arg, false, "one word, e.g. probe,dirty")) != EXIT_OK)
            return rc;
        a->workload = arg;
        break;
    case O_LABEL: {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return cli_usage(CREATE_CMD, "--label: '%s' is not KEY=VALUE", arg);
        /* KEY= (an empty VALUE) is a label too; bytes JSON cannot carry are not. */
        if ((rc = check_text(c, arg, false, "KEY=VALUE")) != EXIT_OK)
            return rc;
        if ((!a->labels && !(a->labels = json_object())) ||
            json_object_setn_new(a->labels, arg, (size_t)(eq - arg), json_string(eq + 1)) < 0)
            return cli_nomem();
        break;
    }
    case O_START:
        a->start = true;
        break;
    case O_HA:
    case CLI_HA_PRIORITY:
    case CLI_HA_PREFERRED:
    case CLI_HA_POSSIBLE:
    case CLI_HA_ANTI:
    case CLI_HA_ANTI_STRICT:
    case CLI_HA_RESTART_MAX:
    case CLI_HA_PERIOD:
    case CLI_HA_FAILBACK:
        if (!a->ha && !(a->ha = json_object()))
            return cli_nomem();
        if (c != O_HA)
            return cli_ha_option(CREATE_CMD, c, arg, a->ha);
        break;
    case O_NODE:
        if (!name_valid(arg, 63))
            return cli_usage(CREATE_CMD, "--node: '%s' is not a node name", arg);
        a->node = arg;
        break;
    default:
        return cli_usage(CREATE_CMD, "unhandled option");
    }
    if (num) {
        if (cli_parse_u64(arg, 0, UINT32_MAX, num) < 0)
            return cli_usage(CREATE_CMD, "--%s: '%s' is not a number", option_name(c), arg);
        *flag = true;
    }
    return EXIT_OK;
}

/*
 * Parses the options and the NAME operand of vm create into *a, which may hold JSON
 * afterwards, also on failure (create_args_free). Returns EXIT_OK, or an exit code after
 * printing why; with --help, prints the help, sets *help and returns EXIT_OK.
 */
static int create_parse(struct cli *cli, int argc, char **argv, struct create_args *a, bool *help)
{
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, CREATE_CMD, argc, argv, CLI_COMMON_SHORTOPTS "f:", create_opts,
                           &first)) != -1) {
        if (c == 'h') {
            fputs(create_help, stdout);
            *help = true;
            return EXIT_OK;
        }
        if (c == CLI_OPT_BAD)
            return EXIT_USAGE;
        int rc = create_option(a, c, optarg);
        if (rc != EXIT_OK)
            return rc;
    }
    if (optind < argc)
        a->name = argv[optind++];
    if (optind < argc)
        return cli_usage(CREATE_CMD, "unexpected argument '%s'", argv[optind]);
    /* ferryd's rule (vm/spec.c), checked here so that "" or bytes JSON cannot carry do not turn
     * into "a VM NAME is needed" or the file's name. */
    if (a->name && !is_utf8(a->name))
        return cli_usage(CREATE_CMD,
                         "NAME: not valid UTF-8; expected a VM name: 1-%d of a-z 0-9 -, starting "
                         "with a letter and not ending with -",
                         VM_NAME_MAX);
    if (a->name && !name_valid(a->name, VM_NAME_MAX))
        return cli_usage(CREATE_CMD,
                         "NAME '%s' is not a VM name: use 1-%d of a-z 0-9 -, starting with a "
                         "letter and not ending with -",
                         a->name, VM_NAME_MAX);
    if (a->has_cpus && a->has_topology)
        return cli_usage(CREATE_CMD, "use either --cpus or --sockets/--cores/--threads");
    if (a->appliance && (a->kernel || a->initrd))
        return cli_usage(CREATE_CMD, "--appliance brings its own kernel and initrd");
    return EXIT_OK;
}

/* ---- step 2: the spec -------------------------------------------------------------------- */

/* Sets the name, CPUs, memory, machine type, disks and NICs of the options on spec. Returns
 * EXIT_OK, a usage error when there is no name in the options or the file, or EXIT_FAIL when
 * out of memory. */
static int spec_set_hardware(const struct create_args *a, json_t *spec)
{
    if (a->name && json_object_set_new(spec, "name", json_string(a->name)) < 0)
        return cli_nomem();
    if (!cli_jstr(spec, "name"))
        return cli_usage(CREATE_CMD, "a VM NAME is needed");
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
    if (a->machine && json_object_set_new(spec, "machine", json_string(a->machine)) < 0)
        return cli_nomem();
    if (a->display && json_object_set_new(spec, "display", json_string(a->display)) < 0)
        return cli_nomem();
    if (a->scsi_controller &&
        json_object_set_new(spec, "scsi_controller", json_string(a->scsi_controller)) < 0)
        return cli_nomem();
    if (a->firmware && json_object_set_new(spec, "firmware", json_string(a->firmware)) < 0)
        return cli_nomem();
    if (a->firmware && strcmp(a->firmware, "bios") == 0) /* a spec file's store goes too */
        json_object_del(spec, "efi_vars");
    if (a->disks)
        json_object_set(spec, "disks", a->disks);
    if (a->nics)
        json_object_set(spec, "nics", a->nics);
    return EXIT_OK;
}

/* Writes base (may be NULL) and the ferry.ip=, ferry.gw=, ferry.workload= parameters of the
 * options into *out (caller frees; may be NULL if the stream ran out of memory). Returns 0 or
 * -ENOMEM when no stream could be opened. */
static int boot_cmdline(const struct create_args *a, const char *base, char **out)
{
    char *cl = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&cl, &len);
    if (!m)
        return -ENOMEM;
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
    *out = cl;
    return 0;
}

/* Sets spec's boot: the options override the fields of the file's boot (the appliance's
 * kernel and initrd first, then --kernel, --initrd, --cmdline); the ferry.* parameters are
 * appended to the command line. Returns EXIT_OK, or an exit code after printing why. */
static int spec_set_boot(const struct create_args *a, json_t *spec)
{
    json_t *boot = json_object_get(spec, "boot");
    boot = json_is_object(boot) ? json_deep_copy(boot) : json_object();
    char kernel[PATH_MAX], initrd[PATH_MAX];
    if (a->appliance) {
        int rc = appliance_find(kernel, initrd, sizeof(kernel));
        if (rc != EXIT_OK) {
            json_decref(boot);
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
        char *cl = NULL;
        if (boot_cmdline(a, a->cmdline ? a->cmdline : cli_jstr(boot, "cmdline"), &cl) < 0) {
            json_decref(boot);
            return cli_nomem();
        }
        json_object_set_new(boot, "cmdline", json_string(cl));
        free(cl);
    }
    if (json_object_size(boot) > 0)
        json_object_set(spec, "boot", boot);
    json_decref(boot);
    return EXIT_OK;
}

/* Sets the blackout budget, the failover priority and the labels of the options on spec (the
 * labels are merged into the file's). */
static void spec_set_policy(const struct create_args *a, json_t *spec)
{
    if (a->has_budget)
        json_object_set_new(spec, "blackout_budget_ms", json_integer((json_int_t)a->budget));
    if (a->has_priority)
        json_object_set_new(spec, "priority", json_integer((json_int_t)a->priority));
    if (a->ha)
        json_object_set(spec, "ha", a->ha);
    if (a->labels) {
        json_t *labels = json_object_get(spec, "labels");
        if (json_is_object(labels))
            json_object_update(labels, a->labels);
        else
            json_object_set(spec, "labels", a->labels);
    }
}

/* Relative paths mean "from here", wherever they came from: makes the disks' paths and the
 * boot kernel and initrd of spec absolute. Returns EXIT_OK or a usage error. */
static int spec_absolutize(json_t *spec)
{
    struct ferr e = {0};
    json_t *disks = json_object_get(spec, "disks"), *d;
    size_t i;
    json_array_foreach(disks, i, d)
    {
        if (absolutize(d, "path", "--disk", &e) < 0)
            goto err;
    }
    json_t *boot = json_object_get(spec, "boot");
    if (json_is_object(boot) && (absolutize(boot, "kernel", "--kernel", &e) < 0 ||
                                 absolutize(boot, "initrd", "--initrd", &e) < 0))
        goto err;
    return EXIT_OK;
err:
    if (e.code == FERR_INVALID || e.code == -ENAMETOOLONG)
        return cli_usage(CREATE_CMD, "%s", e.msg);
    return cli_fail(&e);
}

/* A disk at csv:VOLUME/FILE is FILE in the volume's directory (asked of ferryd): the VM's
 * disk is then on a cluster shared volume, which every node reaches at the same path. */
static int spec_resolve_csv(struct cli *cli, json_t *spec)
{
    json_t *disks = json_object_get(spec, "disks"), *d;
    size_t i;
    json_array_foreach(disks, i, d)
    {
        const char *p = json_string_value(json_object_get(d, "path"));
        if (!p || strncmp(p, "csv:", 4) != 0)
            continue;
        char full[VM_PATH_MAX];
        int rc = cli_csv_file(cli, CREATE_CMD, "--disk", p, NULL, full, sizeof(full));
        if (rc != EXIT_OK)
            return rc;
        json_object_set_new(d, "path", json_string(full));
    }
    return EXIT_OK;
}

/* Builds the spec from the file and the options. Returns EXIT_OK with *out (caller owns), or
 * an exit code after printing why. */
static int spec_build(struct cli *cli, const struct create_args *a, json_t **out)
{
    char why[PATH_MAX + 256] = "";
    json_t *spec = a->file ? spec_load(a->file, why, sizeof(why)) : json_object();
    if (!spec) {
        if (!why[0])
            return cli_nomem();
        fprintf(stderr, "ferry: %s\n", why);
        return EXIT_FAIL;
    }
    int rc = spec_set_hardware(a, spec);
    if (rc == EXIT_OK)
        rc = spec_set_boot(a, spec);
    if (rc == EXIT_OK) {
        spec_set_policy(a, spec);
        rc = spec_resolve_csv(cli, spec);
    }
    if (rc == EXIT_OK)
        rc = spec_absolutize(spec);
    if (rc != EXIT_OK) {
        json_decref(spec);
        return rc;
    }
    *out = spec;
    return EXIT_OK;
}

/* ---- steps 3 and 4: ferryd creates it, and starts it with --start ------------------------- */

/* POSTs spec to /v1/vms (?node= with --node). Returns EXIT_OK with ferryd's answer in *vm
 * (caller owns), or EXIT_FAIL after printing why. */
static int create_call(struct cli *cli, const struct create_args *a, const json_t *spec,
                       json_t **vm)
{
    char path[128];
    if (a->node)
        snprintf(path, sizeof(path), "/v1/vms?node=%.64s", a->node);
    else
        snprintf(path, sizeof(path), "/v1/vms");
    return cli_call(cli, "POST", path, spec, vm);
}

/* Starts VM name and prints its state. Returns EXIT_OK, or EXIT_FAIL when it could not be
 * started or failed. */
static int create_start(struct cli *cli, const char *name)
{
    char *path = cmd_vm__path(name, "/start");
    if (!path)
        return cli_nomem();
    json_t *vm;
    int rc = cli_call(cli, "POST", path, NULL, &vm);
    free(path);
    if (rc == EXIT_OK)
        rc = cmd_vm__print_state(cli, vm);
    json_decref(vm);
    return rc;
}

/* Prints the VM that ferryd created (vm, its answer; borrowed), then starts it with --start.
 * Returns an exit code. */
static int create_report(struct cli *cli, const struct create_args *a, const json_t *spec,
                         const json_t *vm)
{
    const char *owner = cli_jstr(vm, "owner");
    const char *name = cli_jstr(vm, "name") ? cli_jstr(vm, "name") : cli_jstr(spec, "name");
    if (!a->start) {
        if (cli->fmt == OUTPUT_JSON)
            output_json(stdout, vm);
        else
            printf("%s: created on %s\n", name, owner ? owner : "this node");
        return EXIT_OK;
    }
    if (cli->fmt != OUTPUT_JSON) /* -o json prints the started VM only */
        printf("%s: created on %s\n", name, owner ? owner : "this node");
    return create_start(cli, name);
}

int cmd_vm_create(struct cli *cli, int argc, char **argv)
{
    struct create_args a = {0};
    json_t *spec = NULL, *vm = NULL;
    bool help = false;

    int rc = create_parse(cli, argc, argv, &a, &help);
    if (rc != EXIT_OK || help)
        goto after_parse;
    rc = spec_build(cli, &a, &spec);
    if (rc != EXIT_OK)
        goto after_parse;
    rc = create_call(cli, &a, spec, &vm);
    if (rc != EXIT_OK)
        goto after_spec;
    rc = create_report(cli, &a, spec, vm);
    json_decref(vm);
after_spec:
    json_decref(spec);
after_parse:
    create_args_free(&a);
    return rc;
}
