/* SPDX-License-Identifier: MIT */
/* ferry disk: create fixed VHD files and show what a disk file is. */
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

/* The one PATH argument, made absolute into abs. Returns EXIT_OK, or an exit code after
 * printing why: a usage error for "", a path too long or not UTF-8 (JSON carries UTF-8 only),
 * a failure when the current directory cannot be told. */
static int one_path(const char *cmd, int argc, char **argv, char *abs, size_t size)
{
    const char *path;
    int rc = cli_one_operand(cmd, argc, argv, "a PATH", &path);
    if (rc != EXIT_OK)
        return rc;
    struct ferr e = {0};
    if (cli_abspath(path, abs, size, &e) < 0) {
        if (e.code != FERR_INVALID && e.code != -ENAMETOOLONG)
            return cli_fail(&e);
        return cli_usage(cmd, "PATH: %s", e.msg);
    }
    if (utf8_valid_len(path, strlen(path)) != strlen(path))
        return cli_usage(cmd, "PATH: not valid UTF-8 (ferryd takes UTF-8 paths only)");
    if (utf8_valid_len(abs, strlen(abs)) != strlen(abs))
        return cli_usage(cmd, "PATH: made absolute, it is not valid UTF-8 (ferryd takes UTF-8 "
                              "paths only)");
    return EXIT_OK;
}

static int disk_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "disk create";
    uint64_t mib = 0;
    bool has_size = false, first = true;
    char abs[PATH_MAX];
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS "s:", opts, &first)) != -1) {
        switch (c) {
        case 'h':
            printf("Usage: ferry disk create PATH --size SIZE\n\n"
                   "Creates a fixed VHD of SIZE (in MiB, or 512M, 2G, 1T) at PATH. The\n"
                   "directory must exist and the file must not.\n");
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
    int rc = one_path(cmd, argc, argv, abs, sizeof(abs));
    if (rc != EXIT_OK)
        return rc;
    if (!has_size)
        return cli_usage(cmd, "--size SIZE is needed");

    json_t *body =
        json_pack("{s:s,s:I,s:s}", "path", abs, "size_mib", (json_int_t)mib, "type", "fixed");
    json_t *reply;
    if (!body) {
        struct ferr e;
        ferr_set(&e, -ENOMEM, "out of memory");
        return cli_fail(&e);
    }
    rc = cli_call(cli, "POST", "/v1/disks", body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
    } else {
        char buf[32];
        printf("%s: created a fixed VHD of %s\n", abs, output_bytes(mib << 20, buf, sizeof(buf)));
    }
    json_decref(reply);
    return EXIT_OK;
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
    int rc = one_path(cmd, argc, argv, abs, sizeof(abs));
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

static const struct cli_cmd disk_cmds[] = {
    {"create", disk_create, "create a fixed VHD file"},
    {"info", disk_info, "show a disk file's format and sizes"},
};

int cmd_disk(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "disk", disk_cmds, ARRAY_SIZE(disk_cmds), argc - 1, argv + 1);
}
