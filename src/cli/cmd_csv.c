/* SPDX-License-Identifier: MIT */
/* ferry csv: the cluster's shared volumes (add, list, show, remove, move-coordinator). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "common/util.h"

/* "/v1/csvs/NAME" + suffix, NAME percent-encoded; NULL without memory. */
static char *csv_path(const char *name, const char *suffix)
{
    char *esc = client_escape(name);
    if (!esc)
        return NULL;
    char *out = NULL;
    if (asprintf(&out, "/v1/csvs/%s%s", esc, suffix) < 0)
        out = NULL;
    free(esc);
    return out;
}

/* method on /v1/csvs/NAME + suffix with body (may be NULL): cli_call's exit code and reply. */
static int csv_call(struct cli *cli, const char *method, const char *name, const char *suffix,
                    const json_t *body, json_t **reply)
{
    char *path = csv_path(name, suffix);
    if (!path)
        return cli_nomem();
    int rc = cli_call(cli, method, path, body, reply);
    free(path);
    return rc;
}

int cli_csv_file(struct cli *cli, const char *cmd, const char *what, const char *ref,
                 const char *dflt, char *out, size_t size)
{
    const char *vol = ref + 4, *slash = strchr(vol, '/');
    const char *file = slash ? slash + 1 : dflt ? dflt : "";
    size_t vlen = slash ? (size_t)(slash - vol) : strlen(vol);
    char name[64];
    if (strncmp(ref, "csv:", 4) != 0 || vlen == 0 || vlen >= sizeof(name) || !*file ||
        strchr(file, '/') || file[0] == '.')
        return cli_usage(cmd,
                         "%s '%s': expected csv:VOLUME/FILE, FILE a plain file name like "
                         "web1.vhd (not starting with .)",
                         what, ref);
    memcpy(name, vol, vlen);
    name[vlen] = '\0';
    json_t *v;
    int rc = csv_call(cli, "GET", name, "", NULL, &v);
    if (rc != EXIT_OK)
        return rc;
    const char *dir = cli_jstr(v, "path");
    int n = snprintf(out, size, "%s/%s", dir ? dir : "", file);
    json_decref(v);
    if (n < 0 || (size_t)n >= size)
        return cli_usage(cmd, "%s '%s': the path is too long", what, ref);
    return EXIT_OK;
}

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

/* "a, b" of a JSON array of strings into buf; "-" when empty. */
static const char *names(const json_t *arr, char *buf, size_t size)
{
    size_t off = 0, i;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        if (off < size)
            off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "",
                                    json_string_value(v) ? json_string_value(v) : "?");
    }
    return buf[0] ? buf : "-";
}

/* ---- list ------------------------------------------------------------------------------- */

static int print_list(const json_t *reply)
{
    static const char *const headers[] = {"NAME", "PATH", "COORDINATOR", "EPOCH",
                                          "SIZE", "FREE", "HERE",        "VMS"};
    struct output_table *t = output_table_new(ARRAY_SIZE(headers), headers);
    if (!t)
        return EXIT_FAIL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(reply, "csvs"), i, c)
    {
        char epoch[24], size[32], freeb[32], vms[256];
        const json_t *here = json_object_get(c, "here");
        snprintf(epoch, sizeof(epoch), "%" PRIu64, cli_jnum(c, "epoch"));
        const char *cells[] = {cli_jstr(c, "name"),
                               cli_jstr(c, "path"),
                               cli_jstr(c, "coordinator"),
                               epoch,
                               output_bytes(cli_jnum(c, "size_bytes"), size, sizeof(size)),
                               output_bytes(cli_jnum(c, "free_bytes"), freeb, sizeof(freeb)),
                               or_dash(cli_jstr(here, "access")),
                               names(json_object_get(c, "vms"), vms, sizeof(vms))};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return EXIT_FAIL;
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    return EXIT_OK;
}

static int csv_list(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv list [-o table|json]\n\n"
        "Lists the cluster's shared volumes: path, coordinator and its epoch, size and\n"
        "free space, how this node reaches each (HERE: direct or none) and the VMs\n"
        "whose disks are on it.\n";
    int go = cli_common_options(cli, "csv list", argc, argv, help, false);
    if (go != CLI_GO)
        return go;
    json_t *reply;
    int rc = cli_call(cli, "GET", "/v1/csvs", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else if (print_list(reply) != EXIT_OK)
        rc = cli_nomem();
    json_decref(reply);
    return rc;
}

/* ---- show ------------------------------------------------------------------------------- */

static int print_show(const json_t *c)
{
    char a[32], b[32], when[32], vms[256];
    output_kv(stdout, "name", "%s", or_dash(cli_jstr(c, "name")));
    output_kv(stdout, "path", "%s", or_dash(cli_jstr(c, "path")));
    output_kv(stdout, "id", "%s", or_dash(cli_jstr(c, "id")));
    output_kv(stdout, "coordinator", "%s (epoch %" PRIu64 ", since %s)",
              or_dash(cli_jstr(c, "coordinator")), cli_jnum(c, "epoch"),
              output_time(cli_jnum(c, "coordinator_since_ms"), when, sizeof(when)));
    output_kv(stdout, "size", "%s, %s free", output_bytes(cli_jnum(c, "size_bytes"), a, sizeof(a)),
              output_bytes(cli_jnum(c, "free_bytes"), b, sizeof(b)));
    output_kv(stdout, "vms", "%s", names(json_object_get(c, "vms"), vms, sizeof(vms)));
    printf("\n");
    static const char *const headers[] = {"NODE",  "HEALTH",     "ACCESS", "SINCE",
                                          "LEASE", "NBD SERVES", "RELAYS", "WHY"};
    struct output_table *t = output_table_new(ARRAY_SIZE(headers), headers);
    if (!t)
        return EXIT_FAIL;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(c, "nodes"), i, n)
    {
        char node[80], since[32], ago[48], lease[80], serves[64] = "-", relays[64] = "-";
        json_t *exps = json_object_get(n, "exports"), *rel = json_object_get(n, "relays");
        if (json_array_size(exps) > 0)
            snprintf(serves, sizeof(serves), "%zu disk%s (pid %" PRIu64 ")", json_array_size(exps),
                     json_array_size(exps) == 1 ? "" : "s",
                     cli_jnum(json_array_get(exps, 0), "pid"));
        if (json_array_size(rel) > 0) {
            size_t k, up = 0;
            json_t *x;
            json_array_foreach(rel, k, x)
            {
                up += cli_jnum(x, "connected") > 0;
            }
            snprintf(relays, sizeof(relays), "%zu, %zu connected", json_array_size(rel), up);
        }
        snprintf(node, sizeof(node), "%s%s", or_dash(cli_jstr(n, "node")),
                 json_is_true(json_object_get(n, "coordinator")) ? " *" : "");
        json_t *s = json_object_get(n, "since_ms");
        const char *ls = cli_jstr(n, "lease");
        if (ls && strcmp(ls, "none") != 0)
            snprintf(lease, sizeof(lease), "%s (%s)", ls,
                     cli_ago(json_object_get(n, "lease_age_ms"), ago, sizeof(ago)));
        else
            snprintf(lease, sizeof(lease), "-");
        const char *cells[] = {
            node,
            or_dash(cli_jstr(n, "health")),
            or_dash(cli_jstr(n, "access")),
            json_is_integer(s) ? output_time((uint64_t)json_integer_value(s), since, sizeof(since))
                               : "-",
            lease,
            serves,
            relays,
            or_dash(cli_jstr(n, "why"))};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return EXIT_FAIL;
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    printf("\n");
    static const char *const vh[] = {"VHD", "SIZE", "VM"};
    t = output_table_new(ARRAY_SIZE(vh), vh);
    if (!t)
        return EXIT_FAIL;
    json_t *v;
    json_array_foreach(json_object_get(c, "vhds"), i, v)
    {
        char size[32];
        const char *cells[] = {or_dash(cli_jstr(v, "file")),
                               output_bytes(cli_jnum(v, "size_bytes"), size, sizeof(size)),
                               or_dash(cli_jstr(v, "vm"))};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return EXIT_FAIL;
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
    return EXIT_OK;
}

static int csv_show(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv show NAME [-o table|json]\n\n"
        "Shows a shared volume: path, id, coordinator (*) and epoch, size, the VMs\n"
        "using it, how every node reaches it now (asked as you run this: direct,\n"
        "redirected through the coordinator for a node without its own path whose VMs'\n"
        "redirected disks are connected, none with why, unknown for a node that is\n"
        "down) and since when, each node's lease\n"
        "as this node reads it (fresh, or stale when its counter did not move for\n"
        "ferryd's --lease-expiry-ms, with how long ago it last moved), and its VHD files.\n";
    const char *cmd = "csv show", *name;
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    if (cli_one_operand(cmd, argc, argv, "a volume NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    json_t *reply;
    int rc = csv_call(cli, "GET", name, "", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else if (print_show(reply) != EXIT_OK)
        rc = cli_nomem();
    json_decref(reply);
    return rc;
}

#define AUDIT_SHOWN 50 /* the newest records a table shows (-o json has every one read) */

static int print_audit(const json_t *a)
{
    json_t *recs = json_object_get(a, "records");
    size_t n = json_array_size(recs), from = n > AUDIT_SHOWN ? n - AUDIT_SHOWN : 0;
    static const char *const headers[] = {"TIME",  "OP",   "FILE",        "VM",
                                          "EPOCH", "NODE", "COORDINATOR", "WHY"};
    struct output_table *t = output_table_new(ARRAY_SIZE(headers), headers);
    if (!t)
        return EXIT_FAIL;
    for (size_t i = from; i < n; i++) {
        json_t *r = json_array_get(recs, i);
        char when[32], epoch[24], coord[96];
        snprintf(epoch, sizeof(epoch), "%" PRIu64, cli_jnum(r, "epoch"));
        snprintf(coord, sizeof(coord), "%s (%" PRIu64 ")", or_dash(cli_jstr(r, "coordinator")),
                 cli_jnum(r, "coord_epoch"));
        const char *cells[] = {output_time(cli_jnum(r, "time_ms"), when, sizeof(when)),
                               or_dash(cli_jstr(r, "op")),
                               or_dash(cli_jstr(r, "file")),
                               or_dash(cli_jstr(r, "vm")),
                               epoch,
                               or_dash(cli_jstr(r, "node")),
                               coord,
                               or_dash(cli_jstr(r, "why"))};
        if (output_table_add(t, cells) < 0) {
            output_table_free(t);
            return EXIT_FAIL;
        }
    }
    if (from > 0)
        printf("(the newest %d of %zu records; -o json shows them all)\n", AUDIT_SHOWN, n);
    output_table_print(t, stdout);
    output_table_free(t);
    if (cli_jnum(a, "unreadable_lines") > 0)
        printf("\n%" PRIu64 " line(s) of the audit are not records (torn or foreign)\n",
               cli_jnum(a, "unreadable_lines"));
    json_t *viol = json_object_get(a, "violations");
    if (json_array_size(viol) == 0) {
        printf("\nwriters: at most one per disk at every moment (%zu records)\n", n);
        return EXIT_OK;
    }
    size_t i;
    json_t *v;
    json_array_foreach(viol, i, v)
    {
        char when[32];
        json_t *w = json_object_get(v, "writer"), *o = json_object_get(v, "other");
        printf("TWO WRITERS on %s at %s: %s (epoch %" PRIu64 ") opened while %s (epoch %" PRIu64
               ") could still write\n",
               or_dash(cli_jstr(v, "file")),
               output_time(cli_jnum(v, "time_ms"), when, sizeof(when)), or_dash(cli_jstr(w, "vm")),
               cli_jnum(w, "epoch"), or_dash(cli_jstr(o, "vm")), cli_jnum(o, "epoch"));
    }
    return EXIT_FAIL;
}

static int csv_audit(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv audit NAME [-o table|json]\n\n"
        "Shows the writers' audit of a shared volume: every time its coordinator opened a\n"
        "redirected disk to a writer (a VM at a writer epoch, on a node) and closed it, from\n"
        "the audit file on the volume itself (the newest 4 MiB of it), and checks that at\n"
        "most one writer could write each disk at every moment. Exits 1 when it finds two.\n";
    const char *cmd = "csv audit", *name;
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    if (cli_one_operand(cmd, argc, argv, "a volume NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    json_t *reply;
    int rc = csv_call(cli, "GET", name, "/audit", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON) {
        output_json(stdout, reply);
        rc = json_is_true(json_object_get(reply, "writers_ok")) ? EXIT_OK : EXIT_FAIL;
    } else {
        rc = print_audit(reply);
    }
    json_decref(reply);
    return rc;
}

/* ---- add, remove, move-coordinator ------------------------------------------------------ */

static int csv_add(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv add NAME PATH [-o table|json]\n\n"
        "Adds the directory PATH as the cluster shared volume NAME. PATH must be the\n"
        "same shared directory (NFS, CephFS, GFS2, OCFS2, ...) mounted at the same\n"
        "absolute path on every node: ferry writes an id file into it on this node and\n"
        "every up node must read it back, or nothing is added. This node becomes the\n"
        "volume's coordinator.\n";
    const char *cmd = "csv add";
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    if (argc - optind != 2)
        return cli_usage(cmd, "expected a volume NAME and a PATH");
    const char *name = argv[optind], *dir = argv[optind + 1];
    if (dir[0] != '/')
        return cli_usage(cmd,
                         "PATH '%s' is relative: give the absolute path the volume is mounted "
                         "at on every node",
                         dir);
    json_t *body = json_pack("{ss ss}", "name", name, "path", dir), *reply;
    if (!body)
        return cli_nomem();
    int rc = cli_call(cli, "POST", "/v1/csvs", body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("csv %s: added at %s, coordinator %s\n", or_dash(cli_jstr(reply, "name")),
               or_dash(cli_jstr(reply, "path")), or_dash(cli_jstr(reply, "coordinator")));
    json_decref(reply);
    return EXIT_OK;
}

static int csv_remove(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv remove NAME [-o table|json]\n\n"
        "Removes the shared volume NAME from the cluster (its files stay where they\n"
        "are; only ferry's id file goes). Refused while a VM's disk is on it.\n";
    const char *cmd = "csv remove", *name;
    int go = cli_common_options(cli, cmd, argc, argv, help, true);
    if (go != CLI_GO)
        return go;
    if (cli_one_operand(cmd, argc, argv, "a volume NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    json_t *reply;
    int rc = csv_call(cli, "DELETE", name, "", NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("csv %s: removed\n", name);
    json_decref(reply);
    return EXIT_OK;
}

static int csv_move(struct cli *cli, int argc, char **argv)
{
    static const char help[] =
        "Usage: ferry csv move-coordinator NAME --to NODE [-o table|json]\n\n"
        "Makes NODE the coordinator of the shared volume NAME (a new epoch). NODE must\n"
        "be up and active and see the volume. The leader also moves a coordinator by\n"
        "itself when its node is down, draining or paused.\n";
    enum { O_TO = 256 };
    static const struct option opts[] = {
        {"to", required_argument, NULL, O_TO}, CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const char *cmd = "csv move-coordinator", *to = NULL, *name;
    bool first = true;
    int c;
    while ((c = cli_getopt(cli, cmd, argc, argv, CLI_COMMON_SHORTOPTS, opts, &first)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return EXIT_OK;
        case O_TO:
            to = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (cli_one_operand(cmd, argc, argv, "a volume NAME", &name) != EXIT_OK)
        return EXIT_USAGE;
    if (!to)
        return cli_usage(cmd, "--to NODE is required");
    json_t *body = json_pack("{ss}", "to", to), *reply;
    if (!body)
        return cli_nomem();
    int rc = csv_call(cli, "POST", name, "/move-coordinator", body, &reply);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (cli->fmt == OUTPUT_JSON)
        output_json(stdout, reply);
    else
        printf("csv %s: coordinator %s (epoch %" PRIu64 ")\n", name,
               or_dash(cli_jstr(reply, "coordinator")), cli_jnum(reply, "epoch"));
    json_decref(reply);
    return EXIT_OK;
}

static const struct cli_cmd csv_cmds[] = {
    {"add", csv_add, "add a shared directory every node mounts as a volume"},
    {"list", csv_list, "list the volumes: path, coordinator, space, VMs"},
    {"show", csv_show, "show a volume and how every node reaches it"},
    {"audit", csv_audit, "show who could write each redirected disk, and check it was one"},
    {"remove", csv_remove, "remove a volume no VM uses"},
    {"move-coordinator", csv_move, "make another node the volume's coordinator"},
};

int cmd_csv(struct cli *cli, int argc, char **argv)
{
    return cli_dispatch(cli, "csv", csv_cmds, ARRAY_SIZE(csv_cmds), argc - 1, argv + 1);
}
