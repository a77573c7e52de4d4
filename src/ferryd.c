/* SPDX-License-Identifier: MIT */
/* ferryd: the per-host daemon. One libuv loop runs the API, the VMs' QMP links and timers. */
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "api/history.h"
#include "api/http.h"
#include "api/session.h"
#include "api/web.h"
#include "cluster/certs.h"
#include "cluster/cluster.h"
#include "cluster/roles.h"
#include "common/log.h"
#include "common/util.h"
#include "host/host.h"
#include "fleet/failover.h"
#include "fleet/tasks.h"
#include "fleet/fleet.h"
#include "fleet/timing.h"
#include "fleet/redirect.h"
#include "fleet/storagemove.h"
#include "fleet/volumes.h"
#include "storage/lease.h"
#include "migrate/migrate.h"
#include "qemu/machines.h"
#include "qemu/user.h"
#include "qemu/version.h"
#include "host/events.h"
#include "host/sdnotify.h"
#include "host/watchdog.h"
#include "import/ovf.h"
#include "vm/vm.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0-dev"
#endif

struct ferryd_config {
    char state_dir[1024];
    char run_dir[512];
    char socket[108];
    char listen[128];
    char token_file[1024];
    char web_dir[1024]; /* the dashboard's files; "" until the default is found */
    unsigned session_ttl_s;
    char accel[8];
    char qemu[256];
    char qemu_img[256];
    char name[64];
    unsigned console_poll_ms;
    unsigned start_timeout_ms;
    unsigned raft_port;
    unsigned heartbeat_ms;
    unsigned down_after;
    unsigned max_voters;
    unsigned failback_settle_ms;
    unsigned max_migrations;
    unsigned lease_ms;
    unsigned lease_expiry_ms;
    unsigned fence_after_ms;
    unsigned nbd_port;
    char qsd[256];
    bool migrate_prealloc;
    bool migration_tls;
    bool unsafe_tcg_migration;
    char qemu_user[QEMU_USER_NAME_MAX + 1];
    uid_t qemu_uid_first; /* qemu_uids; count 0: shared */
    uint32_t qemu_uid_count;
    bool qemu_sandbox;
    char watchdog[1024]; /* --watchdog: a watchdog device or the lab's emulated one; "" none */
    unsigned watchdog_timeout_ms;
    bool watchdog_timeout_given;
};

/* The watchdog backstop (host/watchdog.h): fed from the loop while watchdog_healthy says so. */
struct ferryd_watchdog {
    struct watchdog *dev; /* NULL when none is armed */
    uv_timer_t timer;
    uint64_t fed_ms; /* the last good feed, monotonic */
    bool unfed;      /* the log was told it is not fed */
    bool failed;     /* the log was told a feed failed */
};

struct ferryd {
    uv_loop_t *loop;
    struct ferryd_config cfg;
    struct api_ctx api;
    struct events *events;
    struct vmset *vms;
    struct qemu_machines machines;
    struct qemu_version qemu;
    char migrate_unsafe[FERR_MSG_MAX]; /* why migrating from here would corrupt guests */
    struct http_server *http;
    struct certs *certs; /* the TCP API's TLS (STATE_DIR/tls); NULL without --listen */
    struct cluster *cluster;
    struct failover *failover;
    uv_timer_t fo_tick; /* failover: fleet_tick and, on the leader, failover_tick */
    uv_signal_t sigterm, sigint;
    uv_timer_t sync; /* pushes local VM states into the cluster database */
    struct ferryd_watchdog wd;
    struct sdnotify *sd;        /* systemd's READY, STATUS, STOPPING and service watchdog */
    struct timing_state timing; /* the cluster's timing profile as this node follows it */
    int exit_code;
};

/* ---- TLS on the TCP API (cluster/certs.h) ---- */

/* The addresses this node's certificate names: the --listen address, or every address of
 * this host when it listens on all of them (0.0.0.0, ::). */
static size_t tls_addrs(const char *listen_ip, char out[][64], size_t max)
{
    if (strcmp(listen_ip, "0.0.0.0") != 0 && strcmp(listen_ip, "::") != 0) {
        snprintf(out[0], 64, "%.63s", listen_ip);
        return 1;
    }
    struct ifaddrs *ifa = NULL, *i;
    size_t n = 0;
    if (getifaddrs(&ifa) < 0)
        return 0;
    for (i = ifa; i && n < max; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        int af = i->ifa_addr->sa_family;
        const void *a = af == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                        : af == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr
                            : NULL;
        if (a && inet_ntop(af, a, out[n], 64) && !strchr(out[n], '%'))
            n++;
    }
    freeifaddrs(ifa);
    return n;
}

/* The cluster changed the CA (init, join, leave): the listener presents the new certificate. */
static void tls_changed(void *data)
{
    struct ferryd *d = data;
    struct ferr e = {0};
    if (http_server_set_tls(d->http, certs_node_cert(d->certs), certs_node_key(d->certs), &e) < 0)
        log_error("%s", e.msg);
    else
        log_info("tls: the TCP API presents certificate %s (CA %s)",
                 certs_node_fingerprint(d->certs), certs_ca_fingerprint(d->certs));
}

static int tls_open(struct ferryd *d, const char *state_dir, const char *node,
                    const char *listen_ip, struct ferr *e)
{
    char dir[1200], addrs[PKI_MAX_ADDRS][64];
    const char *ap[PKI_MAX_ADDRS];
    size_t n = tls_addrs(listen_ip, addrs, PKI_MAX_ADDRS);
    for (size_t i = 0; i < n; i++)
        ap[i] = addrs[i];
    if (fmt_path(dir, sizeof(dir), "%s/tls", state_dir) < 0)
        return ferr_set(e, FERR_INVALID, "tls: state dir path too long");
    int rc = certs_open(dir, node, ap, n, &d->certs, e);
    if (rc < 0)
        return rc;
    if ((rc = http_server_set_tls(d->http, certs_node_cert(d->certs), certs_node_key(d->certs),
                                  e)) < 0)
        return rc;
    char until[32];
    time_t end = certs_node_not_after(d->certs);
    struct tm tm;
    gmtime_r(&end, &tm);
    strftime(until, sizeof(until), "%Y-%m-%d", &tm);
    log_info("tls: certificate %s until %s, CA %s (%s/ca.crt)", certs_node_fingerprint(d->certs),
             until, certs_ca_fingerprint(d->certs), dir);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: ferryd [OPTIONS]\n"
        "ferryd runs this host's VMs on QEMU and serves ferry's API (systemd: ferryd.service).\n"
        "\n"
        "  --config FILE        JSON config: an object of strings, its keys the long options\n"
        "                       below with _ for - (e.g. {\"max_migrations\": \"4\"}); keys\n"
        "                       that start with # are comments; flags override it\n"
        "  --state-dir DIR      VM definitions, consoles, events (default /var/lib/ferry)\n"
        "  --run-dir DIR        per-VM runtime files: QMP sockets, pid files (default "
        "/run/ferry/vms)\n"
        "  --socket PATH        API unix socket (default /run/ferry/ferryd.sock)\n"
        "  --listen ADDR:PORT   also serve the API on TCP, HTTPS only (needs a bearer token;\n"
        "                       the CA and this node's certificate are in STATE_DIR/tls)\n"
        "  --token-file FILE    token for TCP clients (created if missing)\n"
        "  --web-dir DIR        the web dashboard's files, served on the --listen address\n"
        "                       (default " FERRY_DATADIR "/web, or web/ of the source tree\n"
        "                       when ferryd runs from its build tree)\n"
        "  --session-ttl S      a dashboard login lasts S seconds at most (default 28800;\n"
        "                       also ends after 30 min unused, and when ferryd restarts)\n"
        "  --accel auto|kvm|tcg accelerator (default auto: kvm if the CPU has vmx/svm)\n"
        "  --qemu PATH          QEMU binary (default qemu-system-x86_64)\n"
        "  --qemu-img PATH      qemu-img binary (default qemu-img)\n"
        "  --qemu-user USER     the unprivileged user every VM's QEMU runs as, given its\n"
        "                       run dir, disks and keys (default " QEMU_USER_DEFAULT "); root\n"
        "                       runs QEMU as root, for setups where disks cannot be the\n"
        "                       user's (a network volume that squashes root)\n"
        "  --qemu-uids FIRST-LAST|shared  each VM's QEMU runs as its own uid (and gid),\n"
        "                       a hash of the VM's name into FIRST..LAST, with --qemu-user's\n"
        "                       groups, so that no VM's QEMU reaches another's files or\n"
        "                       process; the same on every node (default " QEMU_UIDS_DEFAULT ");\n"
        "                       shared runs every VM's QEMU as --qemu-user itself\n"
        "  --qemu-sandbox on|off  QEMU's seccomp filter: -sandbox on with obsolete,\n"
        "                       elevateprivileges, spawn and resourcecontrol denied\n"
        "                       (default on)\n"
        "  --name NAME          node name (default: the hostname)\n"
        "  --raft-port PORT     cluster Raft port on the --listen address (default: its port + 1)\n"
        "  --heartbeat-ms MS    node heartbeat interval, 250..2000 (default 1000)\n"
        "  --down-after N       missed heartbeats before a node is down, 3..10 (default 5)\n"
        "  --max-voters N       Raft voters the cluster keeps when this node leads: odd, 1..9\n"
        "                       (default 5); the other nodes are standbys, one of which\n"
        "                       replaces a voter that is down\n"
        "  --max-migrations N   concurrent outgoing live migrations, 1..16 (default 2)\n"
        "  --lease-ms MS        renew this node's lease on each shared volume this often,\n"
        "                       100..10000 (default 1000)\n"
        "  --lease-expiry-ms MS a lease whose counter did not move this long is stale, at\n"
        "                       least 3 renewals (default 5000)\n"
        "  --fence-after-ms MS  without the cluster's quorum this long, kill this node's HA\n"
        "                       VMs and stop renewing its leases, 1000..60000 (default 3000)\n"
        "  --failback-settle-ms MS\n"
        "                       when this node leads: a VM's preferred node is up this long\n"
        "                       before the VM fails back to it, 1000..3600000 (default 30000)\n"
        "  --nbd-port PORT      the storage daemon of the first shared volume this node\n"
        "                       coordinates serves NBD on the --listen address and this\n"
        "                       port, the next on PORT+1, ... (default 10809); it runs\n"
        "                       as --qemu-user: below 1024 only with --qemu-user root\n"
        "  --qemu-storage-daemon PATH  its binary (default qemu-storage-daemon)\n"
        "  --migrate-prealloc on|off  an incoming VM's QEMU touches all its memory before\n"
        "                       the migration starts; helps where fresh host memory is\n"
        "                       slow to touch, e.g. ferry on a VM (default on)\n"
        "  --migration-tls on|off  the default stream of the live migrations this node\n"
        "                       starts (API calls without insecure_migration, drains,\n"
        "                       failbacks): QEMU's TLS with a per-migration key, or off: a\n"
        "                       plain stream, for a trusted migration network (default on)\n"
        "  --unsafe-tcg-migration on|off  allow live migration under TCG with a QEMU older\n"
        "                       than 9.0, which loses guest writes (for measuring that\n"
        "                       bug only; default off: such migrations are refused)\n"
        "  --watchdog PATH      arm this watchdog and feed it while this node is healthy, so\n"
        "                       a hung ferryd or host is reset: a watchdog device\n"
        "                       (/dev/watchdog: hardware, or modprobe softdog), or in a lab\n"
        "                       a regular file, the emulated watchdog (default: none)\n"
        "  --watchdog-timeout-ms MS  it resets the host this long after the last feed,\n"
        "                       500..60000 (default 3000); it must fire 1000 ms before\n"
        "                       other nodes may call this node's leases stale:\n"
        "                       MS + lease-ms + 1000 <= lease-expiry-ms\n"
        "  --log-level LEVEL    debug, info, warn, error (default info)\n"
        "  --version            print the version\n"
        "  --help               print this help\n"
        "\n"
        "The timing options (--heartbeat-ms, --down-after, --lease-ms, --lease-expiry-ms,\n"
        "--fence-after-ms, --watchdog-timeout-ms) are this node's default profile; while the\n"
        "cluster's profile is fast (ferry cluster set --profile fast) every node uses the\n"
        "fast numbers instead (docs/failover.md, \"Profiles\").\n");
}

static int copy_opt(char *dst, size_t size, const char *what, const char *val)
{
    if (!val || strlen(val) >= size || !val[0]) {
        fprintf(stderr, "ferryd: %s: expected a value of 1..%zu characters\n", what, size - 1);
        return -1;
    }
    memcpy(dst, val, strlen(val) + 1);
    return 0;
}

static int on_off_opt(bool *dst, const char *what, const char *val)
{
    if (!val || (strcmp(val, "on") && strcmp(val, "off"))) {
        fprintf(stderr, "ferryd: %s: expected on or off\n", what);
        return -1;
    }
    *dst = strcmp(val, "on") == 0;
    return 0;
}

static int apply_opt(struct ferryd_config *c, const char *key, const char *val)
{
    if (strcmp(key, "state_dir") == 0)
        return copy_opt(c->state_dir, sizeof(c->state_dir), "state_dir", val);
    if (strcmp(key, "run_dir") == 0)
        return copy_opt(c->run_dir, sizeof(c->run_dir), "run_dir", val);
    if (strcmp(key, "socket") == 0)
        return copy_opt(c->socket, sizeof(c->socket), "socket (unix socket path)", val);
    if (strcmp(key, "listen") == 0)
        return copy_opt(c->listen, sizeof(c->listen), "listen", val);
    if (strcmp(key, "token_file") == 0)
        return copy_opt(c->token_file, sizeof(c->token_file), "token_file", val);
    if (strcmp(key, "web_dir") == 0)
        return copy_opt(c->web_dir, sizeof(c->web_dir), "web_dir", val);
    if (strcmp(key, "session_ttl") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < SESSION_TTL_MIN_S || v > SESSION_TTL_MAX_S) {
            fprintf(stderr, "ferryd: session_ttl: expected seconds in %d..%d\n", SESSION_TTL_MIN_S,
                    SESSION_TTL_MAX_S);
            return -1;
        }
        c->session_ttl_s = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "accel") == 0) {
        if (!val || (strcmp(val, "auto") && strcmp(val, "kvm") && strcmp(val, "tcg"))) {
            fprintf(stderr, "ferryd: accel: expected auto, kvm or tcg\n");
            return -1;
        }
        return copy_opt(c->accel, sizeof(c->accel), "accel", val);
    }
    if (strcmp(key, "qemu") == 0)
        return copy_opt(c->qemu, sizeof(c->qemu), "qemu", val);
    if (strcmp(key, "qemu_img") == 0)
        return copy_opt(c->qemu_img, sizeof(c->qemu_img), "qemu_img", val);
    if (strcmp(key, "name") == 0) {
        if (!name_valid(val, 63)) {
            fprintf(stderr, "ferryd: name: use 1-63 of a-z 0-9 -, starting with a letter\n");
            return -1;
        }
        return copy_opt(c->name, sizeof(c->name), "name", val);
    }
    if (strcmp(key, "qemu_storage_daemon") == 0)
        return copy_opt(c->qsd, sizeof(c->qsd), "qemu_storage_daemon", val);
    if (strcmp(key, "nbd_port") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < 1 || v > 65535 - 63) {
            fprintf(stderr, "ferryd: nbd_port: expected an integer in 1..%d\n", 65535 - 63);
            return -1;
        }
        c->nbd_port = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "raft_port") == 0 || strcmp(key, "heartbeat_ms") == 0 ||
        strcmp(key, "down_after") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        bool port = strcmp(key, "raft_port") == 0, hb = strcmp(key, "heartbeat_ms") == 0;
        unsigned long lo = port ? 1 : hb ? 250 : 3, hi = port ? 65535 : hb ? 2000 : 10;
        if (!val || !*val || *end || v < lo || v > hi) {
            fprintf(stderr, "ferryd: %s: expected an integer in %lu..%lu\n", key, lo, hi);
            return -1;
        }
        *(port ? &c->raft_port : hb ? &c->heartbeat_ms : &c->down_after) = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "failback_settle_ms") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < FAILBACK_SETTLE_MS_MIN || v > FAILBACK_SETTLE_MS_MAX) {
            fprintf(stderr, "ferryd: failback_settle_ms: expected an integer in %d..%d\n",
                    FAILBACK_SETTLE_MS_MIN, FAILBACK_SETTLE_MS_MAX);
            return -1;
        }
        c->failback_settle_ms = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "max_voters") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v > ROLES_MAX_VOTERS_LIMIT || !roles_max_ok((unsigned)v)) {
            fprintf(stderr, "ferryd: max_voters: expected an odd number in 1..%d\n",
                    ROLES_MAX_VOTERS_LIMIT);
            return -1;
        }
        c->max_voters = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "lease_ms") == 0 || strcmp(key, "lease_expiry_ms") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < 1 || v > LEASE_EXPIRY_MS_MAX) {
            fprintf(stderr, "ferryd: %s: expected an integer in milliseconds\n", key);
            return -1;
        }
        *(strcmp(key, "lease_ms") == 0 ? &c->lease_ms : &c->lease_expiry_ms) = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "fence_after_ms") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < FENCE_AFTER_MS_MIN || v > FENCE_AFTER_MS_MAX) {
            fprintf(stderr, "ferryd: fence_after_ms: expected an integer in %d..%d\n",
                    FENCE_AFTER_MS_MIN, FENCE_AFTER_MS_MAX);
            return -1;
        }
        c->fence_after_ms = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "watchdog") == 0)
        return copy_opt(c->watchdog, sizeof(c->watchdog), "watchdog", val);
    if (strcmp(key, "watchdog_timeout_ms") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < WATCHDOG_TIMEOUT_MS_MIN || v > WATCHDOG_TIMEOUT_MS_MAX) {
            fprintf(stderr, "ferryd: watchdog_timeout_ms: expected an integer in %d..%d\n",
                    WATCHDOG_TIMEOUT_MS_MIN, WATCHDOG_TIMEOUT_MS_MAX);
            return -1;
        }
        c->watchdog_timeout_ms = (unsigned)v;
        c->watchdog_timeout_given = true;
        return 0;
    }
    if (strcmp(key, "max_migrations") == 0) {
        char *end;
        unsigned long v = val ? strtoul(val, &end, 10) : 0;
        if (!val || !*val || *end || v < 1 || v > MIGRATE_MAX_OUT) {
            fprintf(stderr, "ferryd: max_migrations: expected an integer in 1..%d\n",
                    MIGRATE_MAX_OUT);
            return -1;
        }
        c->max_migrations = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "migrate_prealloc") == 0)
        return on_off_opt(&c->migrate_prealloc, "migrate_prealloc", val);
    if (strcmp(key, "migration_tls") == 0)
        return on_off_opt(&c->migration_tls, "migration_tls", val);
    if (strcmp(key, "qemu_user") == 0)
        return copy_opt(c->qemu_user, sizeof(c->qemu_user), "qemu_user", val);
    if (strcmp(key, "qemu_uids") == 0) {
        struct ferr e = {0};
        if (qemu_uids_parse(val, &c->qemu_uid_first, &c->qemu_uid_count, &e) < 0) {
            fprintf(stderr, "ferryd: %s\n", e.msg);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "qemu_sandbox") == 0)
        return on_off_opt(&c->qemu_sandbox, "qemu_sandbox", val);
    if (strcmp(key, "unsafe_tcg_migration") == 0)
        return on_off_opt(&c->unsafe_tcg_migration, "unsafe_tcg_migration", val);
    if (strcmp(key, "log_level") == 0) {
        enum log_level l;
        if (!val || log_level_parse(val, &l) < 0) {
            fprintf(stderr, "ferryd: log_level: expected debug, info, warn or error\n");
            return -1;
        }
        log_threshold = l;
        return 0;
    }
    fprintf(stderr, "ferryd: unknown config key \"%s\"\n", key);
    return -1;
}

static int load_config_file(struct ferryd_config *c, const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        fprintf(stderr, "ferryd: config %s: line %d: %s\n", path, je.line, je.text);
        return -1;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "ferryd: config %s: expected a JSON object\n", path);
        json_decref(j);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        if (key[0] == '#')
            continue; /* a comment: JSON has none, and /etc/ferry/ferryd.conf explains itself */
        if (!json_is_string(val)) {
            fprintf(stderr, "ferryd: config %s: %s: expected a string\n", path, key);
            json_decref(j);
            return -1;
        }
        if (apply_opt(c, key, json_string_value(val)) < 0) {
            json_decref(j);
            return -1;
        }
    }
    json_decref(j);
    return 0;
}

/* This node's own timings: the default profile (fleet/timing.h). */
static struct timing base_timing(const struct ferryd_config *c)
{
    return (struct timing){.heartbeat_ms = c->heartbeat_ms,
                           .down_after = c->down_after,
                           .lease_ms = c->lease_ms,
                           .lease_expiry_ms = c->lease_expiry_ms,
                           .fence_after_ms = c->fence_after_ms,
                           .watchdog_timeout_ms = c->watchdog_timeout_ms};
}

static int parse_args(struct ferryd_config *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},
        {"state-dir", required_argument, 0, 's'},
        {"run-dir", required_argument, 0, 'r'},
        {"socket", required_argument, 0, 'S'},
        {"listen", required_argument, 0, 'l'},
        {"token-file", required_argument, 0, 't'},
        {"accel", required_argument, 0, 'a'},
        {"qemu", required_argument, 0, 'q'},
        {"qemu-img", required_argument, 0, 'i'},
        {"name", required_argument, 0, 'n'},
        {"log-level", required_argument, 0, 'L'},
        {"help", no_argument, 0, 'h'},
        {"raft-port", required_argument, 0, 'R'},
        {"heartbeat-ms", required_argument, 0, 'H'},
        {"down-after", required_argument, 0, 'D'},
        {"max-migrations", required_argument, 0, 'M'},
        {"lease-ms", required_argument, 0, 'e'},
        {"lease-expiry-ms", required_argument, 0, 'E'},
        {"fence-after-ms", required_argument, 0, 'F'},
        {"migrate-prealloc", required_argument, 0, 'P'},
        {"migration-tls", required_argument, 0, 'm'},
        {"unsafe-tcg-migration", required_argument, 0, 'U'},
        {"nbd-port", required_argument, 0, 'N'},
        {"qemu-storage-daemon", required_argument, 0, 'Q'},
        {"watchdog", required_argument, 0, 'W'},
        {"watchdog-timeout-ms", required_argument, 0, 'T'},
        {"max-voters", required_argument, 0, 'X'},
        {"failback-settle-ms", required_argument, 0, 'B'},
        {"version", no_argument, 0, 'V'},
        {"web-dir", required_argument, 0, 'w'},
        {"session-ttl", required_argument, 0, 'x'},
        {"qemu-user", required_argument, 0, 'u'},
        {"qemu-sandbox", required_argument, 0, 'O'},
        {"qemu-uids", required_argument, 0, 'g'},
        {0, 0, 0, 0},
    };
    static const char *keys[128] = {
        ['s'] = "state_dir",      ['r'] = "run_dir",
        ['S'] = "socket",         ['l'] = "listen",
        ['t'] = "token_file",     ['a'] = "accel",
        ['q'] = "qemu",           ['i'] = "qemu_img",
        ['n'] = "name",           ['L'] = "log_level",
        ['R'] = "raft_port",      ['H'] = "heartbeat_ms",
        ['D'] = "down_after",     ['M'] = "max_migrations",
        ['e'] = "lease_ms",       ['E'] = "lease_expiry_ms",
        ['F'] = "fence_after_ms", ['P'] = "migrate_prealloc",
        ['m'] = "migration_tls",  ['U'] = "unsafe_tcg_migration",
        ['N'] = "nbd_port",       ['Q'] = "qemu_storage_daemon",
        ['W'] = "watchdog",       ['T'] = "watchdog_timeout_ms",
        ['X'] = "max_voters",     ['B'] = "failback_settle_ms",
        ['w'] = "web_dir",        ['x'] = "session_ttl",
        ['u'] = "qemu_user",      ['O'] = "qemu_sandbox",
        ['g'] = "qemu_uids",
    };
    /* The config file first, so flags override it. */
    for (int i = 1; i < argc - 1; i++)
        if (strcmp(argv[i], "--config") == 0 && load_config_file(c, argv[i + 1]) < 0)
            return -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("ferryd %s\n", FERRY_VERSION);
            exit(0);
        case '?':
            usage(stderr);
            return -1;
        default:
            if (apply_opt(c, keys[ch], optarg) < 0)
                return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ferryd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    /* The timeline (fleet/timing.h), a watchdog's with it, is checked before anything runs;
     * the watchdog is opened (armed) only once the API is up. */
    struct ferr le;
    struct timing base = base_timing(c);
    if (timing_check(&base, c->watchdog[0] || c->watchdog_timeout_given, &le) < 0) {
        fprintf(stderr, "ferryd: %s\n", le.msg);
        return -1;
    }
    if (c->watchdog[0] && watchdog_check_path(c->watchdog, &le) < 0) {
        fprintf(stderr, "ferryd: %s\n", le.msg);
        return -1;
    }
    return 0;
}

static int read_or_make_token(const char *path, char *out, size_t size, struct ferr *e)
{
    char *text = NULL;
    if (file_read_all(path, 4096, &text, NULL, NULL) == 0) {
        size_t n = strcspn(text, "\r\n");
        text[n] = '\0';
        if (n < 16 || n >= size) {
            free(text);
            return ferr_set(e, FERR_INVALID, "token file %s: token must be 16..%zu characters",
                            path, size - 1);
        }
        memcpy(out, text, n + 1);
        free(text);
        return 0;
    }
    unsigned char raw[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
        if (fd >= 0)
            close(fd);
        return ferr_set(e, -EIO, "token: cannot read /dev/urandom");
    }
    close(fd);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    char line[2 * sizeof(raw) + 2];
    memcpy(line, out, 2 * sizeof(raw));
    line[2 * sizeof(raw)] = '\n';
    line[2 * sizeof(raw) + 1] = '\0';
    return file_write_atomic(path, line, strlen(line), e);
}

/* Where the dashboard's files are when --web-dir does not say: web/ of the source tree when
 * this ferryd runs from its build tree (BUILD/src/ferryd next to the tree's meson.build),
 * else the installed ones. */
static void default_web_dir(char *out, size_t size)
{
    char exe[PATH_MAX], probe[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 3; up++) { /* ferryd, src, BUILD: the tree is above BUILD */
            char *slash = strrchr(exe, '/');
            if (!slash)
                break;
            *slash = '\0';
            if (up < 2)
                continue;
            snprintf(probe, sizeof(probe), "%s/meson.build", exe);
            struct stat st;
            if (access(probe, R_OK) == 0 &&
                snprintf(probe, sizeof(probe), "%s/web", exe) < (int)sizeof(probe) &&
                stat(probe, &st) == 0 && S_ISDIR(st.st_mode) && strlen(probe) < size) {
                strcpy(out, probe);
                return;
            }
        }
    }
    snprintf(out, size, "%s/web", FERRY_DATADIR);
}

/* ---- the watchdog backstop (host/watchdog.h) ---- */

/* Whether this node may feed its watchdog now; when not, why gets the reason for the log.
 * failover's fence state decides (fleet): a node that must fence itself stops feeding, and the
 * watchdog resets it before other nodes may start its VMs. Called on every feed, also while a
 * clean shutdown closes things (d->cluster may be NULL then). */
static bool watchdog_healthy(struct ferryd *d, char *why, size_t size)
{
    /* The loop runs (this is called from it); a node that fenced itself must have killed its
     * HA QEMUs in time, or the host is reset before the cluster starts them elsewhere. */
    return !d->api.fleet || fleet_fence_ok(d->api.fleet, why, size);
}

static void feed_watchdog(uv_timer_t *t)
{
    struct ferryd *d = t->data;
    struct ferryd_watchdog *wd = &d->wd;
    uint64_t now = now_mono_ms(), fires = wd->fed_ms + watchdog_timeout_ms(wd->dev);
    unsigned long long left = fires > now ? fires - now : 0;
    char why[256] = "";
    if (!watchdog_healthy(d, why, sizeof(why))) {
        if (!wd->unfed)
            log_warn("the watchdog is not fed: %s; the host will be reset in %llu ms", why, left);
        wd->unfed = true;
        return;
    }
    struct ferr e = {0};
    if (watchdog_feed(wd->dev, &e) < 0) {
        if (!wd->failed)
            log_error("%s; the host will be reset in %llu ms unless a feed works", e.msg, left);
        wd->failed = true;
        return;
    }
    if (wd->unfed || wd->failed)
        log_info("watchdog: fed again");
    wd->unfed = wd->failed = false;
    wd->fed_ms = now;
}

/* Feeds the armed watchdog every quarter of its timeout from now on; returns that interval. */
static unsigned feed_every(struct ferryd *d)
{
    unsigned ms = watchdog_timeout_ms(d->wd.dev), every = ms / 4 ? ms / 4 : 1;
    uv_timer_start(&d->wd.timer, feed_watchdog, every, every);
    return every;
}

/* Opens (arms) the watchdog of --watchdog and feeds it from the loop every quarter of its
 * timeout: a loop that hangs stops feeding, which is the point. */
static int arm_watchdog(struct ferryd *d, struct ferr *e)
{
    struct ferryd_config *c = &d->cfg;
    struct watchdog *w;
    if (watchdog_open(c->watchdog, c->watchdog_timeout_ms, &w, e) < 0)
        return e->code;
    /* A device counts in whole seconds: check the timeline with what it took. */
    unsigned ms = watchdog_timeout_ms(w);
    if (watchdog_timing_check(ms, c->lease_ms, c->lease_expiry_ms, e) < 0) {
        watchdog_disarm_close(w);
        return ferr_prefix(e, "watchdog %s took %u ms", c->watchdog, ms);
    }
    d->wd = (struct ferryd_watchdog){.dev = w, .fed_ms = now_mono_ms()};
    uv_timer_init(d->loop, &d->wd.timer);
    d->wd.timer.data = d;
    unsigned every = feed_every(d);
    log_info("watchdog: armed %s: resets this host %u ms after the last feed; fed every %u ms "
             "while this node is healthy",
             watchdog_describe(w), ms, every);
    if (watchdog_caveat(w))
        log_warn("watchdog %s: %s", c->watchdog, watchdog_caveat(w));
    return 0;
}

/* The clean shutdown's last step: the magic close. Not while this node is unhealthy: it stopped
 * feeding to be reset (its VMs keep running after ferryd), so it stays armed until it fires. */
static void disarm_watchdog(struct ferryd *d)
{
    struct ferryd_watchdog *wd = &d->wd;
    if (!wd->dev)
        return;
    uv_close((uv_handle_t *)&wd->timer, NULL);
    char why[256] = "";
    if (wd->unfed || !watchdog_healthy(d, why, sizeof(why))) {
        uint64_t now = now_mono_ms(), fires = wd->fed_ms + watchdog_timeout_ms(wd->dev);
        log_warn("watchdog: left armed at shutdown: this node is not healthy%s%s; the host will "
                 "be reset in %llu ms",
                 why[0] ? ": " : "", why, fires > now ? (unsigned long long)(fires - now) : 0);
        return; /* the kernel closes it at exit without the magic 'V' */
    }
    log_info("watchdog: disarmed (%s): a clean shutdown", watchdog_describe(wd->dev));
    watchdog_disarm_close(wd->dev);
    wd->dev = NULL;
}

static void on_closed_all(void *data)
{
    struct ferryd *d = data;
    disarm_watchdog(d);
    sdnotify_close(d->sd);
    d->sd = NULL;
    uv_close((uv_handle_t *)&d->sync, NULL);
    uv_close((uv_handle_t *)&d->fo_tick, NULL);
    failover_free(d->failover);
    d->failover = NULL;
    migrator_free(d->api.migrator);
    tasks_free(d->api.tasks);
    d->api.tasks = NULL;
    d->api.migrator = NULL;
    fleet_free(d->api.fleet);
    d->api.fleet = NULL;
    volumes_free(d->api.volumes);
    d->api.volumes = NULL;
    redirect_free(d->api.redirect);
    d->api.redirect = NULL;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void cluster_closed(void *data)
{
    struct ferryd *d = data;
    d->cluster = NULL;
    uv_timer_stop(&d->sync);
    uv_timer_stop(&d->fo_tick);
    vmset_close(d->vms, on_closed_all, d);
}

static void http_closed(void *data)
{
    struct ferryd *d = data;
    d->http = NULL;
    web_free(d->api.web);
    d->api.web = NULL;
    free(d->api.alerts);
    d->api.alerts = NULL;
    history_close(d->api.history);
    d->api.history = NULL;
    cluster_close(d->cluster, cluster_closed, d);
}

/* ---- the cluster's copy of our VMs' states (src/fleet/), migrations left behind ---- */

static void recover_one(struct vm *vm, void *data)
{
    struct ferryd *d = data;
    migrate_recover(d->api.migrator, vm);
}

/* A storage move this node's previous ferryd left in a QEMU (fleet/storagemove.h). */
static void recover_move(struct vm *vm, void *data)
{
    struct ferryd *d = data;
    struct storage_move_env env = {d->api.loop, d->api.fleet, d->api.qemu_img};
    storage_move_recover(&env, vm);
}

static void sync_tick(uv_timer_t *t)
{
    struct ferryd *d = t->data;
    if (d->cluster && cluster_active(d->cluster) && d->vms && d->api.fleet) {
        fleet_reconcile(d->api.fleet);
        failover_failback_tick(d->failover);
        volumes_tick(d->api.volumes);
        redirect_tick(d->api.redirect);
        /* A migration this node's previous ferryd left under way (migrate.c's journal). */
        vmset_foreach(d->vms, recover_one, d);
    }
    /* in a cluster once it is up: a finished move writes the VM's record */
    if (d->vms && d->api.fleet &&
        (!d->cluster || !cluster_active(d->cluster) || cluster_quorum(d->cluster)))
        vmset_foreach(d->vms, recover_move, d);
}

/* ---- failover (fleet/fleet.h, fleet/failover.h) ---- */

/* The timings of the cluster's profile (fleet/timing.h), given to everything that uses them. */
static void apply_timing(struct ferryd *d)
{
    const struct timing_state *ts = &d->timing;
    const struct timing_now *n = &ts->now;
    cluster_set_timing(d->cluster, n->heartbeat_send_ms, n->heartbeat_ms, n->down_after);
    volumes_set_timing(d->api.volumes, n->lease_ms, n->lease_expiry_ms);
    fleet_set_fence_after(d->api.fleet, n->fence_after_ms);
    char wd[80] = "";
    char why[256] = "";
    if (d->wd.dev && !watchdog_healthy(d, why, sizeof(why))) {
        /* Setting a timeout feeds the watchdog: not while this node must be reset. Safe to
         * leave: the judges are patient while the change settles, and the reset comes first. */
        log_warn("timing: the watchdog keeps %u ms: %s", watchdog_timeout_ms(d->wd.dev), why);
    } else if (d->wd.dev) {
        struct ferr e = {0};
        if (watchdog_set_timeout(d->wd.dev, n->watchdog_timeout_ms, &e) < 0)
            log_error("timing: %s", e.msg);
        feed_every(d);
        snprintf(wd, sizeof(wd), ", watchdog %u ms", watchdog_timeout_ms(d->wd.dev));
    }
    char text[300];
    snprintf(text, sizeof(text),
             "heartbeats every %u ms, down after %u ms; leases every %u ms, stale after %u ms; "
             "fence after %u ms%s",
             n->heartbeat_send_ms, n->heartbeat_ms * n->down_after, n->lease_ms, n->lease_expiry_ms,
             n->fence_after_ms, wd);
    log_info("timing: profile %s%s: %s", ts->profile,
             ts->settling ? " (settling: the faster senders, the patient judges)" : "", text);
    if (!ts->settling)
        events_add(d->events, NULL, "node.timing", "%s follows the %s profile: %s", d->cfg.name,
                   ts->profile, text);
}

static void net_poll(struct vm *vm, void *data)
{
    (void)data;
    vm_net_poll(vm);
}

static void fo_tick(uv_timer_t *t)
{
    struct ferryd *d = t->data;
    if (!d->cluster || !cluster_active(d->cluster) || !d->api.fleet) {
        if (d->vms) /* in a cluster fleet_tick does it */
            vmset_foreach(d->vms, net_poll, NULL);
        return;
    }
    if (timing_follow(&d->timing, cdb_profile(cluster_db(d->cluster)), now_mono_ms()))
        apply_timing(d);
    fleet_tick(d->api.fleet);
    failover_tick(d->failover);
}

/* The fence (fleet.h): this node's leases stop while it is fenced. */
static void fence(void *data, bool on)
{
    struct ferryd *d = data;
    if (d->api.volumes)
        volumes_set_fenced(d->api.volumes, on);
    if (on && d->api.redirect)
        redirect_fence(d->api.redirect);
}

/* ---- a volume lost on this node (fleet/volumes.c): its direct-I/O VMs move away ---- */

struct evac_scan {
    struct ferryd *d;
    const char *volume, *path, *to;
    unsigned n;
};

/* vm runs here, is not migrating, and opens a file under path itself (not redirected). */
static bool uses_directly(struct vm *vm, const char *path)
{
    if (vm_state(vm) != VM_RUNNING || vm_migrating(vm))
        return false;
    const struct vm_spec *s = vm_spec(vm);
    for (unsigned i = 0; i < s->ndisks; i++)
        if (path_under(s->disks[i].path, path) && !vm_disk_redirected(vm, i))
            return true;
    return false;
}

static void count_direct(struct vm *vm, void *data)
{
    struct evac_scan *s = data;
    s->n += uses_directly(vm, s->path);
}

static unsigned direct_users(void *data, const char *path)
{
    struct ferryd *d = data;
    struct evac_scan s = {.d = d, .path = path};
    vmset_foreach(d->vms, count_direct, &s);
    return s.n;
}

static void evacuated(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    char *name = data;
    if (e)
        log_warn("vm %s: not moved off its lost volume: %s (tried again on the next look)", name,
                 e->msg);
    else
        log_info("vm %s: moved off its lost volume", name);
    json_decref(body);
    free(name);
}

static void evacuate_one(struct vm *vm, void *data)
{
    struct evac_scan *s = data;
    if (!uses_directly(vm, s->path))
        return;
    char *name = strdup(vm_name(vm));
    struct ferr e = {0};
    if (!name)
        return;
    events_add(s->d->events, vm_name(vm), "vm.evacuate",
               "volume %s is lost on this node: moving live to %s", s->volume, s->to);
    if (migrate_start(s->d->api.migrator, vm, &(struct migrate_opts){.to = s->to}, evacuated, name,
                      &e) < 0) {
        log_warn("vm %s: not moved off its lost volume: %s", name, e.msg);
        free(name);
    }
}

static void evacuate(void *data, const char *volume, const char *path, const char *to)
{
    struct ferryd *d = data;
    if (!d->api.migrator)
        return;
    struct evac_scan s = {.d = d, .volume = volume, .path = path, .to = to};
    vmset_foreach(d->vms, evacuate_one, &s);
}

static void vm_changed(void *data)
{
    struct ferryd *d = data;
    /* Soon, not now: the VM is still finishing its transition (reason, cleanup). */
    uv_timer_start(&d->sync, sync_tick, 10, 2000);
}

/* What heartbeats and node lists say about this node. */
static void self_info(json_t *info, void *data)
{
    struct ferryd *d = data;
    struct host_info h;
    if (host_info_read(&h, NULL) < 0)
        h = d->api.host;
    uint64_t used = vmset_allocated_mib(d->vms);
    json_object_set_new(
        info, "memory",
        json_pack("{s:I, s:I}", "total_mib", (json_int_t)h.mem_total_mib, "free_mib",
                  (json_int_t)(h.mem_total_mib > used ? h.mem_total_mib - used : 0)));
    json_object_set_new(info, "vms", json_integer(vmset_count(d->vms)));
    json_object_set_new(info, "accel", json_string(d->api.accel));
    history_node_info(d->api.history, info);
    if (d->qemu.text[0])
        json_object_set_new(info, "qemu", json_string(d->qemu.text));
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct ferryd *d = s->data;
    log_info("signal %d: shutting down; VMs keep running", signum);
    sdnotify_stopping(d->sd, "stopping (signal %d): closing the API; VMs keep running", signum);
    uv_signal_stop(&d->sigterm);
    uv_signal_stop(&d->sigint);
    volumes_stop(d->api.volumes); /* before the cluster closes: it must not be touched after */
    redirect_stop(d->api.redirect);
    if (d->http)
        http_server_close(d->http, http_closed, d);
}

/* The lowest port a process without CAP_NET_BIND_SERVICE may bind in this network namespace
 * (net.ipv4.ip_unprivileged_port_start; 1024 if it cannot be read). */
static unsigned unprivileged_port_start(void)
{
    char *text = NULL;
    unsigned low = 1024;
    if (file_read_all("/proc/sys/net/ipv4/ip_unprivileged_port_start", 64, &text, NULL, NULL) == 0)
        low = (unsigned)strtoul(text, NULL, 10);
    free(text);
    return low;
}

int main(int argc, char **argv)
{
    struct ferryd d = {0};
    struct ferryd_config *c = &d.cfg;
    log_detect_journal();
    strcpy(c->state_dir, "/var/lib/ferry");
    strcpy(c->run_dir, "/run/ferry/vms");
    strcpy(c->socket, "/run/ferry/ferryd.sock");
    strcpy(c->accel, "auto");
    strcpy(c->qemu, "qemu-system-x86_64");
    strcpy(c->qemu_img, "qemu-img");
    c->console_poll_ms = 200;
    c->start_timeout_ms = 30000;
    c->heartbeat_ms = CLUSTER_HEARTBEAT_MS;
    c->down_after = CLUSTER_DOWN_AFTER;
    c->max_voters = ROLES_MAX_VOTERS_DEFAULT;
    c->failback_settle_ms = FAILBACK_SETTLE_MS_DEFAULT;
    c->max_migrations = MIGRATE_DEFAULT_OUT;
    c->lease_ms = LEASE_MS_DEFAULT;
    c->lease_expiry_ms = LEASE_EXPIRY_MS_DEFAULT;
    c->fence_after_ms = FENCE_AFTER_MS_DEFAULT;
    c->nbd_port = 10809; /* NBD's registered port */
    strcpy(c->qsd, "qemu-storage-daemon");
    c->migrate_prealloc = true;
    c->migration_tls = true;
    strcpy(c->qemu_user, QEMU_USER_DEFAULT);
    {
        struct ferr ue = {0};
        qemu_uids_parse(QEMU_UIDS_DEFAULT, &c->qemu_uid_first, &c->qemu_uid_count, &ue);
    }
    c->qemu_sandbox = true;
    c->watchdog_timeout_ms = WATCHDOG_TIMEOUT_MS_DEFAULT;
    c->session_ttl_s = SESSION_TTL_DEFAULT_S;
    if (parse_args(c, argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    ovf_init(); /* libxml2, before imports parse OVFs on the thread pool */
    /* Heartbeats and peer calls block pool threads for up to a heartbeat; keep room for
     * qemu-img work. Must be set before the loop's first queued work. */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    umask(0077); /* the API socket and state files are root's alone */

    struct ferr e = {0};
    struct host_info *h = &d.api.host;
    if (host_info_read(h, &e) < 0) {
        log_error("%s", e.msg);
        return 1;
    }
    if (!c->name[0]) {
        /* Node names follow VM naming rules; derive one from the hostname. */
        size_t j = 0;
        for (size_t i = 0; h->hostname[i] && j < 63; i++) {
            char ch = h->hostname[i];
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            if (ch == '.')
                break;
            if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
                c->name[j++] = ch;
        }
        if (j == 0 || !name_valid(c->name, 63))
            strcpy(c->name, "node");
    }
    const char *accel, *why;
    const char *forced = strcmp(c->accel, "auto") == 0 ? NULL : c->accel;
    if (host_accel_pick(h, forced, &accel, &why, &e) < 0) {
        log_error("accel: %s", e.msg);
        return 2;
    }

    d.loop = uv_default_loop();
    if (sdnotify_new(d.loop, &d.sd, &e) < 0) {
        log_error("%s", e.msg);
        return 1;
    }
    sdnotify_status(d.sd, "starting: reading this node's VMs");
    if (mkdir_p(c->state_dir, 0700, &e) < 0) {
        log_error("state dir: %s", e.msg);
        return 1;
    }
    char evpath[1100];
    snprintf(evpath, sizeof(evpath), "%s/events.jsonl", c->state_dir);
    if (events_open(evpath, 1000, &d.events, &e) < 0) {
        log_error("%s", e.msg);
        return 1;
    }
    struct vm_config vc = {0};
    snprintf(vc.state_dir, sizeof(vc.state_dir), "%s", c->state_dir);
    snprintf(vc.run_dir, sizeof(vc.run_dir), "%s", c->run_dir);
    snprintf(vc.qemu_binary, sizeof(vc.qemu_binary), "%s", c->qemu);
    snprintf(vc.qemu_img, sizeof(vc.qemu_img), "%s", c->qemu_img);
    snprintf(vc.accel, sizeof(vc.accel), "%s", accel);
    vc.console_poll_ms = c->console_poll_ms;
    vc.start_timeout_ms = c->start_timeout_ms;
    vc.incoming_prealloc = c->migrate_prealloc;
    if (qemu_machines_probe(c->qemu, &d.machines, &e) < 0)
        log_warn("%s; machine types are not checked or pinned", e.msg);
    else
        vc.machines = &d.machines;
    if (qemu_version_probe(c->qemu, &d.qemu, &e) < 0) {
        log_warn("%s; the QEMU version is not known", e.msg);
        if (strcmp(accel, "tcg") == 0 && !c->unsafe_tcg_migration)
            snprintf(d.migrate_unsafe, sizeof(d.migrate_unsafe),
                     "this host's QEMU version is unknown (%s --version failed), and QEMU "
                     "before %u.%u loses guest writes in a TCG live migration",
                     c->qemu, QEMU_TCG_MIGRATION_MAJOR, QEMU_TCG_MIGRATION_MINOR);
    } else {
        log_info("qemu: %s %s", c->qemu, d.qemu.text);
        if (strcmp(accel, "tcg") == 0 && !qemu_version_tcg_migration_safe(&d.qemu)) {
            if (c->unsafe_tcg_migration)
                log_warn("qemu: QEMU %s loses guest writes in a TCG live migration (fixed in "
                         "%u.%u); migrating anyway (--unsafe-tcg-migration on): guests may "
                         "be corrupted",
                         d.qemu.text, QEMU_TCG_MIGRATION_MAJOR, QEMU_TCG_MIGRATION_MINOR);
            else
                snprintf(d.migrate_unsafe, sizeof(d.migrate_unsafe),
                         "this host runs QEMU %u.%u.%u under TCG, whose live migration loses "
                         "guest writes (fixed in QEMU %u.%u); install QEMU %u.%u or newer "
                         "(scripts/install-deps takes it from bookworm-backports)",
                         d.qemu.major, d.qemu.minor, d.qemu.micro, QEMU_TCG_MIGRATION_MAJOR,
                         QEMU_TCG_MIGRATION_MINOR, QEMU_TCG_MIGRATION_MAJOR,
                         QEMU_TCG_MIGRATION_MINOR);
        }
    }
    if (d.migrate_unsafe[0])
        log_warn("migrate: outgoing live migrations are refused: %s", d.migrate_unsafe);
    /* The web console types into the guest through QEMU 10.0's hub chardev. */
    vc.console_input = d.qemu.major > 0 && qemu_version_at_least(&d.qemu, 10, 0);
    if (!vc.console_input)
        log_warn("console: QEMU before 10.0 (no hub chardev): VM consoles show output but take "
                 "no input");
    /* QEMU never runs as root unless told (docs/architecture.md, "A VM's QEMU"). */
    if (qemu_user_lookup(c->qemu_user, &vc.qemu_user, &e) < 0 ||
        qemu_user_set_vm_uids(&vc.qemu_user, c->qemu_uid_first, c->qemu_uid_count, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_events;
    }
    vc.qemu_sandbox = c->qemu_sandbox;
    /* QEMU opens these itself, as its user (scripts/setup-qemu-user grants both). */
    if (strcmp(accel, "kvm") == 0 && !qemu_user_may_rw(&vc.qemu_user, "/dev/kvm"))
        log_warn("qemu: %s cannot open /dev/kvm: VMs will fail to start (put it in the "
                 "device's group: adduser %s kvm)",
                 vc.qemu_user.name, vc.qemu_user.name);
    if (access("/dev/userfaultfd", F_OK) == 0 &&
        !qemu_user_may_rw(&vc.qemu_user, "/dev/userfaultfd"))
        log_warn("qemu: %s cannot open /dev/userfaultfd: post-copy migrations to this node "
                 "fail unless vm.unprivileged_userfaultfd is 1 (/usr/share/ferry/"
                 "setup-qemu-user, or scripts/setup-qemu-user, gives it the device)",
                 vc.qemu_user.name);
    char uids[96] = "";
    if (vc.qemu_user.drop && vc.qemu_user.vm_count)
        snprintf(uids, sizeof(uids), " with a uid of their own in %u-%u (qemu_uids)",
                 (unsigned)vc.qemu_user.vm_first,
                 (unsigned)(vc.qemu_user.vm_first + vc.qemu_user.vm_count - 1));
    log_info("qemu: VMs run as %s%s%s, %s", vc.qemu_user.name, uids,
             vc.qemu_user.drop ? "" : " (not dropped: qemu_user is root)",
             c->qemu_sandbox ? "sandboxed (seccomp)" : "without QEMU's sandbox (qemu_sandbox off)");
    vc.on_change = vm_changed;
    vc.change_data = &d;
    /* Redirected disks (fleet/redirect.c) are served again for adopted VMs before the
     * cluster is open: the relays ask it only when QEMU reconnects. */
    char nbd_host[128] = "";
    if (c->listen[0]) {
        snprintf(nbd_host, sizeof(nbd_host), "%s", c->listen);
        char *colon = strrchr(nbd_host, ':');
        if (colon)
            *colon = '\0';
    }
    /* The coordinator's storage daemons run as QEMU's user too: they parse other nodes' NBD
     * traffic. Without CAP_NET_BIND_SERVICE they cannot listen on a privileged port. */
    unsigned low = unprivileged_port_start();
    if (nbd_host[0] && vc.qemu_user.drop && c->nbd_port < low) {
        log_error("nbd_port %u: a volume coordinator's qemu-storage-daemon runs as %s, which "
                  "may not listen below port %u (net.ipv4.ip_unprivileged_port_start): choose "
                  "nbd_port %u or above, or qemu_user root",
                  c->nbd_port, vc.qemu_user.name, low, low);
        goto err_after_events;
    }
    struct redirect_env renv = {.loop = d.loop,
                                .node_name = c->name,
                                .run_dir = c->run_dir,
                                .qsd_binary = c->qsd,
                                .nbd_host = nbd_host,
                                .nbd_port = c->nbd_port,
                                .qemu_user = &vc.qemu_user};
    struct redirect *redirect = NULL;
    if (redirect_new(&renv, &redirect, &e) < 0) {
        log_error("%s", e.msg);
        return 1;
    }
    vc.disk_redirect = redirect_disk;
    vc.disk_unredirect = redirect_undisk;
    vc.redirect_data = redirect;
    uv_timer_init(d.loop, &d.sync);
    d.sync.data = &d;
    uv_timer_init(d.loop, &d.fo_tick);
    d.fo_tick.data = &d;
    if (vmset_open(d.loop, &vc, d.events, &d.vms, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_events;
    }
    vmset_set_host_memory(d.vms, h->mem_total_mib);
    struct history *history = NULL;
    if (history_new(d.loop, d.vms, c->state_dir, &history, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_vms;
    }

    d.api = (struct api_ctx){
        .vms = d.vms,
        .events = d.events,
        .host = *h,
        .node_name = c->name,
        .accel = accel,
        .accel_reason = why,
        .accel_forced = forced != NULL,
        .qemu_version = d.qemu.text[0] ? d.qemu.text : NULL,
        .migrate_unsafe = d.migrate_unsafe[0] ? d.migrate_unsafe : NULL,
        .state_dir = c->state_dir,
        .api_socket = c->socket,
        .qemu_img = c->qemu_img,
        .version = FERRY_VERSION,
        .start_mono_ms = now_mono_ms(),
        .loop = d.loop,
        .history = history,
    };
    if (http_server_new(d.loop, api_handle, &d.api, &d.http, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_vms;
    }
    char sockdir[108];
    snprintf(sockdir, sizeof(sockdir), "%s", c->socket);
    char *slash = strrchr(sockdir, '/');
    if (slash && slash != sockdir) {
        *slash = '\0';
        if (mkdir_p(sockdir, 0755, &e) < 0) {
            log_error("socket dir: %s", e.msg);
            goto err_after_http;
        }
    }
    if (http_server_listen_unix(d.http, c->socket, 0600, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_http;
    }
    struct cluster_config cc = {0};
    snprintf(cc.state_dir, sizeof(cc.state_dir), "%s", c->state_dir);
    snprintf(cc.node_name, sizeof(cc.node_name), "%s", c->name);
    cc.heartbeat_ms = c->heartbeat_ms;
    cc.down_after = c->down_after;
    cc.max_voters = c->max_voters;
    cc.self_info = self_info;
    cc.self_data = &d;
    cc.certs = d.certs; /* NULL for now: set below with --listen */
    if (c->listen[0]) {
        char addr[128], token[128];
        snprintf(addr, sizeof(addr), "%s", c->listen);
        char *colon = strrchr(addr, ':');
        int port = colon ? atoi(colon + 1) : 0;
        if (!colon || port <= 0 || port > 65535) {
            log_error("listen: expected ADDR:PORT, got %s", c->listen);
            goto err_after_http;
        }
        *colon = '\0';
        if (!c->token_file[0] &&
            fmt_path(c->token_file, sizeof(c->token_file), "%s/api.token", c->state_dir) < 0) {
            log_error("token_file: path too long; give --token-file");
            goto err_after_http;
        }
        if (!c->web_dir[0])
            default_web_dir(c->web_dir, sizeof(c->web_dir));
        struct web_config wc = {d.loop, token, c->web_dir, c->name, c->session_ttl_s};
        if (read_or_make_token(c->token_file, token, sizeof(token), &e) < 0 ||
            tls_open(&d, c->state_dir, c->name, addr, &e) < 0 || web_new(&wc, &d.api.web, &e) < 0 ||
            http_server_listen_tcp(d.http, addr, port, token, &e) < 0) {
            log_error("%s", e.msg);
            goto err_after_http;
        }
        http_server_set_gate(d.http, web_gate, d.api.web);
        memset(token, 0, sizeof(token));
        log_info("web: dashboard files from %s, sessions last %u s", c->web_dir, c->session_ttl_s);
        unsigned rport = c->raft_port ? c->raft_port : (unsigned)port + 1;
        if (rport > 65535 || rport == (unsigned)port) {
            log_error("raft_port: %u is not usable next to the API port %d; give --raft-port",
                      rport, port);
            goto err_after_http;
        }
        cc.certs = d.certs;
        cc.tls_changed = tls_changed;
        cc.tls_data = &d;
        if (fmt_path(cc.api_addr, sizeof(cc.api_addr), "%s:%d", addr, port) < 0 ||
            fmt_path(cc.raft_addr, sizeof(cc.raft_addr), "%s:%u", addr, rport) < 0) {
            log_error("listen: address too long: %s", c->listen);
            goto err_after_http;
        }
    }
    sdnotify_status(d.sd, "starting: opening the cluster database");
    if (cluster_open(d.loop, &cc, d.events, &d.cluster, &e) < 0) {
        log_error("%s", e.msg);
        goto err_after_http;
    }
    d.api.cluster = d.cluster;
    history_set_cluster(d.api.history, d.cluster, c->name);
    d.api.redirect = redirect;
    struct timing base = base_timing(c);
    timing_state_init(&d.timing, &base);
    d.api.timing = &d.timing;
    redirect_set_cluster(redirect, d.cluster);
    struct fleet_env fenv = {d.loop,   d.vms, d.cluster, d.events, c->name,
                             accel,    c->fence_after_ms, fence, &d};
    if (fleet_new(&fenv, &d.api.fleet, &e) < 0) {
        log_error("%s", e.msg); /* only out of memory: exit without a tidy close */
        return 1;
    }
    char lease_file[1100];
    snprintf(lease_file, sizeof(lease_file), "%s/lease-volumes.json", c->state_dir);
    struct volumes_env venv = {.loop = d.loop,
                               .cluster = d.cluster,
                               .events = d.events,
                               .node_name = c->name,
                               .lease_ms = c->lease_ms,
                               .lease_expiry_ms = c->lease_expiry_ms,
                               .redirect = redirect,
                               .lease_volumes_file = lease_file,
                               .direct_users = direct_users,
                               .evacuate = evacuate,
                               .evacuate_data = &d};
    if (volumes_new(&venv, &d.api.volumes, &e) < 0) {
        log_error("%s", e.msg); /* only out of memory: exit without a tidy close */
        return 1;
    }
    struct tasks_env tenv = {d.loop, d.cluster, d.events, c->name};
    if (tasks_new(&tenv, &d.api.tasks, &e) < 0) {
        log_error("%s", e.msg); /* only out of memory: exit without a tidy close */
        return 1;
    }
    struct migrator_env menv = {d.loop,
                                d.vms,
                                d.events,
                                d.cluster,
                                d.api.fleet,
                                c->name,
                                c->max_migrations,
                                d.migrate_unsafe[0] ? d.migrate_unsafe : NULL,
                                d.api.tasks,
                                !c->migration_tls};
    if (migrator_new(&menv, &d.api.migrator, &e) < 0) {
        log_error("%s", e.msg); /* only out of memory: exit without a tidy close */
        return 1;
    }
    struct failover_env foenv = {d.cluster, d.api.volumes, d.events,
                                 c->name,   d.api.tasks,   c->failback_settle_ms};
    if (failover_new(&foenv, &d.failover, &e) < 0) {
        log_error("%s", e.msg); /* only out of memory: exit without a tidy close */
        return 1;
    }
    uv_timer_start(&d.sync, sync_tick, 2000, 2000);
    uv_timer_start(&d.fo_tick, fo_tick, FLEET_TICK_MS, FLEET_TICK_MS);
    http_server_set_authorizer(d.http, api_authorize, d.cluster);
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    log_info("ferryd %s node %s: accel %s (%s), %u VMs, api %s%s%s", FERRY_VERSION, c->name, accel,
             why, vmset_count(d.vms), c->socket, c->listen[0] ? " and tcp " : "", c->listen);
    events_add(d.events, NULL, "daemon.started", "ferryd %s, accel %s", FERRY_VERSION, accel);
    if (c->watchdog[0] && arm_watchdog(&d, &e) < 0) {
        log_error("%s; shutting down", e.msg);
        d.exit_code = 1;
        on_signal(&d.sigterm, SIGTERM); /* the tidy close of all that runs by now */
    } else {
        sdnotify_ready(d.sd, "node %s: accel %s, %u VMs, api %s%s%s", c->name, accel,
                       vmset_count(d.vms), c->socket, c->listen[0] ? " and tcp " : "", c->listen);
    }
    uv_run(d.loop, UV_RUN_DEFAULT);
    events_close(d.events);
    certs_free(d.certs);
    uv_loop_close(d.loop);
    log_info("ferryd stopped");
    return d.exit_code;

err_after_http:
    http_server_close(d.http, NULL, NULL);
err_after_vms:
    history_close(d.api.history);
    vmset_close(d.vms, NULL, NULL);
    sdnotify_close(d.sd);
    uv_run(d.loop, UV_RUN_DEFAULT);
    certs_free(d.certs);
err_after_events:
    events_close(d.events);
    return 1;
}
