/* SPDX-License-Identifier: MIT */
/* ferry disk: create fixed or dynamic VHD files, convert disk images to VHD, and show what a
 * disk file is. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "common/util.h"

static void show_disk(const json_t *d)
{
    char buf[32];
    const char *s;
    output_kv(stdout, "path", "%s", (s = cli_jstr(d, "path")) ? s : "-");
    output_kv(stdout, "format", "%s", (s = cli_jstr(d, "format")) ? s : "-");
    output_kv(stdout, "subformat", "%s", (s = cli_jstr(d, "subformat")) && s[0] ? s : "-");
    uint64_t v = cli_jnum(d, "virtual_size"), a = cli_jnum(d, "actual_size");
    output_kv(stdout, "virtual size", "%s (%" PRIu64 " bytes)", output_bytes(v, buf, sizeof(buf)),
              v);
    output_kv(stdout, "actual size", "%s (%" PRIu64 " bytes)", output_bytes(a, buf, sizeof(buf)),
              a);
}

/* path made absolute into abs (size bytes) for the operand what ("PATH", "SRC"). Returns
 * EXIT_OK, or an exit code after printing why: a usage error for "", a path too long or not
 * UTF-8 (JSON carries UTF-8 only), a failure when the current directory cannot be told. */
static int abs_operand(const char *cmd, const char *what, const char *path, char *abs, size_t size)
{
    struct ferr e = {0};
    if (cli_abspath(path, abs, size, &e) < 0) {
        if (e.code != FERR_INVALID && e.code != -ENAMETOOLONG)
            return cli_fail(&e);
        return cli_usage(cmd, "%s: %s", what, e.msg);
    }
    if (utf8_valid_len(path, strlen(path)) != strlen(path))
        return cli_usage(cmd, "%s: not valid UTF-8 (ferryd takes UTF-8 paths only)", what);
    if (utf8_valid_len(abs, strlen(abs)) != strlen(abs))
        return cli_usage(cmd,
                         "%s: made absolute, it is not valid UTF-8 (ferryd takes UTF-8 "
                         "paths only)",
                         what);
    return EXIT_OK;
}

/* The one PATH argument, made absolute into abs (see abs_operand). */
static int one_path(struct cli *cli, const char *cmd, int argc, char **argv, char *abs, size_t size)
{
    const char *path;
    int rc = cli_one_operand(cmd, argc, argv, "a PATH or csv:VOLUME/FILE", &path);
    if (rc != EXIT_OK)
        return rc;
    if (strncmp(path, "csv:", 4) == 0)
        return cli_csv_file(cli, cmd, "PATH", path, NULL, abs, size);
    return abs_operand(cmd, "PATH", path, abs, size);
}

/* --type's value into *type: "fixed" or "dynamic". */
static int parse_type(const char *cmd, const char *arg, const char **type)
{
    if (strcmp(arg, "fixed") != 0 && strcmp(arg, "dynamic") != 0)
        return cli_usage(cmd, "--type: '%s' is neither fixed nor dynamic", arg);
    *type = arg;
    return EXIT_OK;
}

/* Prints what ferryd made of a new disk (or its JSON). */
static void show_made(struct cli *cli, const json_t *reply, const char *verb)
{
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
        return;
    }
    char buf[32];
    const char *path = cli_jstr(reply, "path"), *sub = cli_jstr(reply, "subformat");
    printf("%s: %s a %s VHD of %s\n", path ? path : "-", verb, sub && sub[0] ? sub : "",
           output_bytes(cli_jnum(reply, "virtual_size"), buf, sizeof(buf)));
}

/* POSTs body (stolen; NULL: out of memory) to path and shows the disk made ("VERB a ... VHD"). */
static int post_disk(struct cli *cli, const char *path, json_t *body, const char *verb)
{
    if (!body)
        return cli_nomem();
    json_t *reply;
    int rc = cli_call(cli, "POST", path, body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    show_made(cli, reply, verb);
    json_decref(reply);
    return EXIT_OK;
}

static int disk_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "disk create", *type = "fixed";
    uint64_t mib = 0;
    bool has_size = false, first = true;
    char abs[PATH_MAX];
    int c;
    int rc;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "s:t:", opts, &first)) !=
           -1) {
        switch (c) {
        case 'h':
            printf("Usage: ferry disk create PATH --size SIZE [--type fixed|dynamic]\n\n"
                   "Creates a VHD of SIZE (in MiB, or 512M, 2G, 1T; at most 2040G) at PATH.\n"
                   "The directory must exist and the file must not.\n\n"
                   "  -s, --size SIZE    the disk's size\n"
                   "  -t, --type TYPE    fixed (default): all of SIZE up front (sparse where the\n"
                   "                     file system allows); VMs live-migrate with it.\n"
                   "                     dynamic: grows as the guest writes; on a shared\n"
                   "                     volume its VMs live-migrate (its coordinator serves\n"
                   "                     it), elsewhere they cannot\n\n"
                   "PATH may be csv:VOLUME/FILE: the volume's coordinator creates it.\n");
            return EXIT_OK;
        case 't':
            if ((rc = parse_type(cmd, optarg, &type)) != EXIT_OK)
                return rc;
            break;
        case 's':
            if (cli_parse_size_mib(optarg, &mib) < 0 || mib > INT64_MAX)
                return cli_usage(cmd, "--size: '%s' is not a size like 1024, 512M or 2G", optarg);
            has_size = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    rc = one_path(cli, cmd, argc, argv, abs, sizeof(abs));
    if (rc != EXIT_OK)
        return rc;
    if (!has_size)
        return cli_usage(cmd, "--size SIZE is needed");

    return post_disk(
        cli, "/v1/disks",
        json_pack("{s:s,s:I,s:s}", "path", abs, "size_mib", (json_int_t)mib, "type", type),
        "created");
}

static int disk_convert(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},
        {"from", required_argument, NULL, 'f'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "disk convert", *type = NULL, *from = NULL;
    char src[PATH_MAX], dst[PATH_MAX];
    bool first = true;
    int c, rc;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "t:f:", opts, &first)) !=
           -1) {
        switch (c) {
        case 'h':
            printf("Usage: ferry disk convert SRC DST --type fixed|dynamic [--from FORMAT]\n\n"
                   "Copies the disk image SRC into a new VHD DST of the same size. SRC may be\n"
                   "raw, qcow2, vmdk, vhdx or vpc (a fixed or dynamic VHD; a differencing VHD\n"
                   "is refused). DST's directory must exist and DST must not; DST appears\n"
                   "only once it is whole and checked. SRC must not be in use by a running VM.\n"
                   "ferryd runs qemu-img convert, which may take a while for a large image.\n\n"
                   "  -t, --type TYPE    fixed: VMs live-migrate with it; dynamic: grows as\n"
                   "                     the guest writes, but QEMU cannot live-migrate it\n"
                   "  -f, --from FORMAT  SRC's format, when detecting it is not enough: an\n"
                   "                     image that names other files (a backing file, VMDK\n"
                   "                     extents) is converted only when its format is named\n");
            return EXIT_OK;
        case 't':
            if ((rc = parse_type(cmd, optarg, &type)) != EXIT_OK)
                return rc;
            break;
        case 'f':
            from = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (argc - optind < 2)
        return cli_usage(cmd, "%s is needed", optind < argc ? "a DST" : "SRC and DST are");
    if (argc - optind > 2)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 2]);
    if (!type)
        return cli_usage(cmd, "--type fixed|dynamic is needed");
    if ((rc = abs_operand(cmd, "SRC", argv[optind], src, sizeof(src))) != EXIT_OK ||
        (rc = abs_operand(cmd, "DST", argv[optind + 1], dst, sizeof(dst))) != EXIT_OK)
        return rc;

    json_t *body = json_pack("{s:s,s:s,s:s}", "src", src, "dst", dst, "type", type);
    if (body && from && json_object_set_new(body, "src_format", json_string(from)) < 0) {
        json_decref(body);
        body = NULL;
    }
    return post_disk(cli, "/v1/disks/convert", body, "converted into");
}

static int disk_info(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "disk info";
    char abs[PATH_MAX];
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        if (c == 'h') {
            printf("Usage: ferry disk info PATH [-o table|json]\n\n"
                   "Shows a disk file's format and sizes, as ferryd sees it.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    int rc = one_path(cli, cmd, argc, argv, abs, sizeof(abs));
    if (rc != EXIT_OK)
        return rc;
    char *esc = client_escape(abs);
    char *path = esc ? malloc(strlen(esc) + 32) : NULL;
    if (!path) {
        free(esc);
        struct ferr e;
        ferr_set(&e, -ENOMEM, "out of memory");
        return cli_fail(&e);
    }
    sprintf(path, "/v1/disks/info?path=%s", esc);
    free(esc);
    json_t *reply;
    rc = cli_call(cli, "GET", path, NULL, &reply);
    free(path);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        show_disk(reply);
    json_decref(reply);
    return EXIT_OK;
}

static int disk_grow(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "disk grow";
    uint64_t mib = 0;
    bool has_size = false, first = true;
    char abs[PATH_MAX];
    int c, rc;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "s:", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            printf("Usage: ferry disk grow PATH|csv:VOLUME/FILE --size SIZE\n\n"
                   "Grows a VHD to SIZE (in MiB, or 512M, 2G, 1T; at most 2040G), keeping its\n"
                   "type and every byte the guest wrote. No running VM may use it: stop it\n"
                   "first (it sees the new size when it starts; grow the partition and file\n"
                   "system inside the guest then). A fixed VHD grows in place; a dynamic one\n"
                   "is copied into a bigger one that replaces it. On a shared volume the\n"
                   "volume's coordinator does it.\n\n"
                   "  -s, --size SIZE    the new size, more than the current one\n");
            return EXIT_OK;
        case 's':
            if (cli_parse_size_mib(optarg, &mib) < 0 || mib > INT64_MAX)
                return cli_usage(cmd, "--size: '%s' is not a size like 1024, 512M or 2G", optarg);
            has_size = true;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if ((rc = one_path(cli, cmd, argc, argv, abs, sizeof(abs))) != EXIT_OK)
        return rc;
    if (!has_size)
        return cli_usage(cmd, "--size SIZE is needed (the new size)");
    return post_disk(cli, "/v1/disks/grow",
                     json_pack("{s:s,s:I}", "path", abs, "size_mib", (json_int_t)mib),
                     "grown into");
}

static int disk_delete(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry disk delete PATH|csv:VOLUME/FILE\n\n"
        "Deletes a VHD file that no VM names as a disk (ferry checks the cluster's VMs, and\n"
        "that no QEMU holds the file). It must be a valid VHD: ferry deletes nothing else.\n"
        "On a shared volume the volume's coordinator does it.\n";
    const char *cmd = "disk delete";
    char abs[PATH_MAX];
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    int rc = one_path(cli, cmd, argc, argv, abs, sizeof(abs));
    if (rc != EXIT_OK)
        return rc;
    json_t *body = json_pack("{s:s}", "path", abs), *reply;
    if (!body)
        return cli_nomem();
    rc = cli_call(cli, "POST", "/v1/disks/delete", body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("%s: deleted\n", abs);
    json_decref(reply);
    return EXIT_OK;
}

static const struct cli_cmd disk_cmds[] = {
    {"create", disk_create, "create a fixed or dynamic VHD file"},
    {"convert", disk_convert, "convert a disk image (raw, qcow2, vmdk, vhdx, VHD) into a VHD"},
    {"info", disk_info, "show a disk file's format and sizes"},
    {"grow", disk_grow, "grow a VHD no running VM uses"},
    {"delete", disk_delete, "delete a VHD no VM uses"},
};

int cmd_disk(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "disk", disk_cmds, ARRAY_SIZE(disk_cmds), argc - 1, argv + 1);
}
