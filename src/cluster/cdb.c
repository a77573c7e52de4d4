/* SPDX-License-Identifier: MIT */
/* The cluster database state machine: command checks, apply, snapshot, restore, queries. */
#include "cluster/cdb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonfield.h"
#include "common/jsontext.h"
#include "common/util.h"
#include "cluster/taskrec.h"
#include "fleet/timing.h"

#define NAME_MAX_LEN 63
#define REASON_MAX CDB_REASON_MAX
#define MESSAGE_MAX 1024
#define STATE_TOKEN_MAX 32
#define TYPE_TOKEN_MAX 64
#define CLUSTER_ID_MAX 64
#define TIME_MAX ((json_int_t)CDB_ID_MAX) /* ms since the epoch, JSON-safe */
#define MIB_MAX ((json_int_t)1 << 40)
#define VM_COUNT_MAX 1000000
#define CMD_VERSION_LIMIT 1000

/*
 * The state is kept as JSON, the shape the queries and snapshots show, so a record is
 * checked by one function whether it was built by a command or read from a snapshot.
 */
struct cdb {
    json_t *meta;           /* object: {} or {"id", "name", "created_ms"} */
    json_t *nodes;          /* object: decimal id -> node record */
    json_t *vms;            /* object: name -> vm record */
    json_t *csvs;           /* object: name -> cluster shared volume record */
    json_t *events;         /* array of event records, oldest first, ids increasing */
    json_t *tasks;          /* object: id -> task record (taskrec.h) */
    uint64_t next_event_id; /* id the next event gets */
    uint64_t applied_index;
    uint64_t applied_wall_ms;
};

/* ---- small helpers ---- */

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static const char *const node_roles[] = {"voter", "standby", "spare", NULL};
static const char *const node_healths[] = {"up", "down", NULL};
static const char *const node_states_v1[] = {"up", "down", "paused", "draining", NULL};
static const char *const node_admins[] = {"active", "draining", "paused", NULL};
static const char *const accels[] = {"", "kvm", "tcg", NULL};

/* ---- string forms; each returns NULL when s is fine, else what is expected ---- */

typedef const char *(*str_form)(const char *s);

static const char *form_name(const char *s)
{
    return name_valid(s, NAME_MAX_LEN) ? NULL
                                       : "use 1-63 of a-z 0-9 -, starting with a letter and not "
                                         "ending with -";
}

static const char *form_profile(const char *s)
{
    return timing_profile_check(s, NULL) == 0 ? NULL : "use default or fast";
}

static const char *form_name_or_empty(const char *s)
{
    return !*s || name_valid(s, NAME_MAX_LEN) ? NULL : "use \"\" or a name (1-63 of a-z 0-9 -)";
}

static const char *token(const char *s, size_t max, const char *hint)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return hint;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return hint;
    }
    return NULL;
}

static const char *form_state_token(const char *s)
{
    return token(s, STATE_TOKEN_MAX, "use 1-32 of a-z 0-9 _ . -");
}

static const char *form_type_token(const char *s)
{
    return token(s, TYPE_TOKEN_MAX, "use 1-64 of a-z 0-9 _ . -");
}

static const char *form_cluster_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CLUSTER_ID_MAX)
        return "use 1-64 of A-Z a-z 0-9 -";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return "use 1-64 of A-Z a-z 0-9 -";
    }
    return NULL;
}

/* "A.B.C.D:PORT" or "[V6]:PORT" with a port of 1..65535. Pure: inet_pton does no I/O. */
static const char *form_addr(const char *s)
{
    static const char *const hint = "use IP:PORT, e.g. 10.0.0.1:7000 or [fd00::1]:7000";
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return hint;
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5)
        return hint;
    unsigned long p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return hint;
        p = p * 10 + (unsigned long)(port[i] - '0');
    }
    if (p == 0 || p > 65535 || (plen > 1 && port[0] == '0'))
        return hint;
    size_t hlen = (size_t)(colon - s);
    unsigned char addr[16];
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']' || hlen - 2 >= sizeof(host))
            return hint;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
        return inet_pton(AF_INET6, host, addr) == 1 ? NULL : hint;
    }
    if (hlen >= sizeof(host))
        return hint;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    return inet_pton(AF_INET, host, addr) == 1 ? NULL : hint;
}

static const char *form_role(const char *s)
{
    return in_list(s, node_roles) ? NULL : "use voter, standby or spare";
}

static const char *form_node_state(const char *s)
{
    if (in_list(s, node_healths))
        return NULL;
    return in_list(s, node_states_v1)
               ? "use up or down: since command version 2 the state is the node's health, "
                 "and paused and draining are admin states (node_admin)"
               : "use up or down";
}

/* Version 1 had one word for health and admin state. */
static const char *form_node_state_v1(const char *s)
{
    return in_list(s, node_states_v1) ? NULL : "use up, down, paused or draining";
}

static const char *form_admin(const char *s)
{
    return in_list(s, node_admins) ? NULL : "use active, draining or paused";
}

static const char *form_accel(const char *s)
{
    return in_list(s, accels) ? NULL : "use \"\", kvm or tcg";
}

static const char *form_reason(const char *s)
{
    return strlen(s) <= REASON_MAX ? NULL : "at most 256 bytes";
}

static const char *form_source(const char *s)
{
    return token(s, STATE_TOKEN_MAX, "use 1-32 of a-z 0-9 _ . -");
}

static const char *form_uid(const char *s)
{
    return token(s, TYPE_TOKEN_MAX, "use 1-64 of a-z 0-9 _ . -");
}

/* An absolute, normalized directory path: no "." or ".." segment, no "//", no trailing "/",
 * not "/" itself, printable ASCII without quotes or backslashes. */
static const char *form_volume_path(const char *s)
{
    const char *hint = "use an absolute path like /srv/csv1 (no . or .. segments, no trailing /, "
                       "not /, at most 400 bytes)";
    size_t n = strlen(s);
    if (n < 2 || n > CDB_CSV_PATH_MAX || s[0] != '/' || s[n - 1] == '/')
        return hint;
    for (const char *p = s; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\' || *p == '\'')
            return hint;
        if (*p == '/') {
            const char *seg = p + 1;
            size_t len = strcspn(seg, "/");
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return hint;
        }
    }
    return NULL;
}

static const char *form_volume_id(const char *s)
{
    return token(s, TYPE_TOKEN_MAX, "use 1-64 of a-z 0-9 _ . -");
}

static const char *form_message(const char *s)
{
    return strlen(s) <= MESSAGE_MAX ? NULL : "at most 1024 bytes";
}

/* ---- typed field access; every one sets a message naming the field ---- */

/* Checks that obj holds only the fields in allowed (a NULL-terminated list). */
static int check_fields(const json_t *obj, const char *const *allowed, struct ferr *e)
{
    char q[80];
    const char *key = jfield_unknown(obj, allowed);
    if (key)
        return ferr_set(e, FERR_INVALID, "unknown field %s", jfield_quote(key, q, sizeof(q)));
    return 0;
}

/* A string field. *out is NULL when absent and not required. */
static int get_str(const json_t *obj, const char *key, bool required, str_form form,
                   const char **out, struct ferr *e)
{
    char q[80];
    json_t *v = json_object_get(obj, key);
    const char *s;
    *out = NULL;
    if (!v)
        return required ? ferr_set(e, FERR_INVALID, "%s: missing", key) : 0;
    int rc = jfield_str(v, key, &s, e);
    if (rc < 0)
        return rc;
    const char *hint = form ? form(s) : NULL;
    if (hint)
        return ferr_set(e, FERR_INVALID, "%s: %s is invalid: %s", key,
                        jfield_quote(s, q, sizeof(q)), hint);
    *out = s;
    return 0;
}

/* An integer field in min..max. *present says whether it was there. */
static int get_int(const json_t *obj, const char *key, bool required, json_int_t min,
                   json_int_t max, json_int_t *out, bool *present, struct ferr *e)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return required ? ferr_set(e, FERR_INVALID, "%s: missing", key) : 0;
    return jfield_int(v, key, min, max, out, e);
}

static int get_id(const json_t *obj, const char *key, uint64_t *out, struct ferr *e)
{
    json_int_t i = 0;
    int rc = get_int(obj, key, true, 1, (json_int_t)CDB_ID_MAX, &i, NULL, e);
    if (rc == 0)
        *out = (uint64_t)i;
    return rc;
}

static int check_memory(const json_t *m, struct ferr *e)
{
    static const char *const fields[] = {"total_mib", "free_mib", NULL};
    json_int_t total = 0, freem = 0;
    int rc;
    if (!json_is_object(m))
        return ferr_set(e, FERR_INVALID, "memory: expected an object, not %s", jfield_type(m));
    if ((rc = check_fields(m, fields, e)) < 0 ||
        (rc = get_int(m, "total_mib", true, 0, MIB_MAX, &total, NULL, e)) < 0 ||
        (rc = get_int(m, "free_mib", true, 0, MIB_MAX, &freem, NULL, e)) < 0)
        return ferr_prefix(e, "memory");
    if (freem > total)
        return ferr_set(e, FERR_INVALID,
                        "memory: free_mib %" JSON_INTEGER_FORMAT
                        " exceeds total_mib %" JSON_INTEGER_FORMAT,
                        freem, total);
    return 0;
}

static json_int_t int_of(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* ---- records: the one check for records built by commands and read from snapshots ---- */

static int node_record_check(const json_t *n, struct ferr *e)
{
    static const char *const fields[] = {
        "id",       "name",         "api_addr",          "raft_addr",
        "role",     "state",        "state_reason",      "state_changed_ms",
        "admin",    "admin_reason", "admin_changed_ms",  "memory",
        "vm_count", "accel",        "last_heartbeat_ms", "cmd_version",
        NULL};
    const char *s;
    json_int_t i;
    uint64_t id;
    int rc;
    if (!json_is_object(n))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(n));
    if ((rc = check_fields(n, fields, e)) < 0 || (rc = get_id(n, "id", &id, e)) < 0 ||
        (rc = get_str(n, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(n, "api_addr", true, form_addr, &s, e)) < 0 ||
        (rc = get_str(n, "raft_addr", true, form_addr, &s, e)) < 0 ||
        (rc = get_str(n, "role", true, form_role, &s, e)) < 0 ||
        (rc = get_str(n, "state", true, form_node_state, &s, e)) < 0 ||
        (rc = get_str(n, "state_reason", true, form_reason, &s, e)) < 0 ||
        (rc = get_int(n, "state_changed_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(n, "admin", true, form_admin, &s, e)) < 0 ||
        (rc = get_str(n, "admin_reason", true, form_reason, &s, e)) < 0 ||
        (rc = get_int(n, "admin_changed_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(n, "vm_count", true, 0, VM_COUNT_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(n, "accel", true, form_accel, &s, e)) < 0 ||
        (rc = get_int(n, "last_heartbeat_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(n, "cmd_version", true, 1, CMD_VERSION_LIMIT, &i, NULL, e)) < 0)
        return rc;
    json_t *m = json_object_get(n, "memory");
    if (!m)
        return ferr_set(e, FERR_INVALID, "memory: missing");
    return check_memory(m, e);
}

/*
 * Version 1 (commands and snapshot format 1) had one node state for health and admin state:
 * "up" (healthy, active), "paused" and "draining" (healthy, in that admin state) and "down",
 * which hid the admin state. Version 1's health check kept that in the reason of the down
 * state ("no heartbeat for 5012 ms (was paused)") to restore it when the node came back, so
 * the marker is read here, and only here. *health is "up" or "down"; *admin is "active",
 * "draining", "paused", or NULL when a down state does not say (keep what is known).
 */
static void v1_state_split(const char *state, const char *reason, const char **health,
                           const char **admin)
{
    bool down = strcmp(state, "down") == 0;
    *health = down ? "down" : "up";
    if (!down)
        *admin = strcmp(state, "up") == 0       ? "active"
                 : strcmp(state, "paused") == 0 ? "paused"
                                                : "draining";
    else if (reason && strstr(reason, "(was paused)"))
        *admin = "paused";
    else if (reason && strstr(reason, "(was draining)"))
        *admin = "draining";
    else
        *admin = NULL;
}

/*
 * A node record of snapshot format 1 as format 2 has it: on 0, *out is a new record the
 * caller owns and checks (node_record_check). The admin state comes from the old state
 * (v1_state_split; a down node that does not say is taken as active) and, for a paused or
 * draining node, its reason and time too.
 */
static int node_record_from_v1(const json_t *n, json_t **out, struct ferr *e)
{
    static const char *const added[] = {"admin", "admin_reason", "admin_changed_ms", NULL};
    const char *state, *reason, *health, *admin;
    int rc;
    if (!json_is_object(n))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(n));
    for (size_t i = 0; added[i]; i++)
        if (json_object_get(n, added[i]))
            return ferr_set(e, FERR_INVALID, "unknown field \"%s\" (format 1 has none)", added[i]);
    if ((rc = get_str(n, "state", true, form_node_state_v1, &state, e)) < 0 ||
        (rc = get_str(n, "state_reason", true, form_reason, &reason, e)) < 0)
        return rc;
    v1_state_split(state, reason, &health, &admin);
    bool took = admin && strcmp(state, "down") != 0 && strcmp(state, "up") != 0;
    json_t *rec = json_deep_copy(n);
    if (!rec || json_object_set_new(rec, "state", json_string(health)) < 0 ||
        json_object_set_new(rec, "admin", json_string(admin ? admin : "active")) < 0 ||
        json_object_set_new(rec, "admin_reason", json_string(took ? reason : "")) < 0 ||
        json_object_set_new(rec, "admin_changed_ms",
                            json_integer(took ? int_of(n, "state_changed_ms") : 0)) < 0) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    *out = rec;
    return 0;
}

/* A VM's runtime facts (version 3): what its owner runs it with. Every field optional; net_ms
 * (the guest's first packet) from version 7 (v7). */
static int runtime_check(const json_t *rt, bool v7, struct ferr *e)
{
    static const char *const fields[] = {"accel", "pid", "started_ms", "net_ms", NULL};
    static const char *const fields_v3[] = {"accel", "pid", "started_ms", NULL};
    const char *s;
    json_int_t i;
    int rc;
    if (!json_is_object(rt))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(rt));
    if ((rc = check_fields(rt, v7 ? fields : fields_v3, e)) < 0 ||
        (rc = get_str(rt, "accel", false, form_accel, &s, e)) < 0 ||
        (rc = get_int(rt, "pid", false, 1, CDB_PID_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(rt, "started_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(rt, "net_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

/* A VM's last failover (version 6): from which node to which, why, and its timeline (wall
 * clock ms; 0 where unknown). */
static int failover_check(const json_t *fo, struct ferr *e)
{
    static const char *const fields[] = {"from",    "to",       "why",        "heard_ms",
                                         "down_ms", "stale_ms", "decided_ms", NULL};
    const char *s;
    json_int_t i;
    int rc;
    if (!json_is_object(fo))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(fo));
    if ((rc = check_fields(fo, fields, e)) < 0 ||
        (rc = get_str(fo, "from", true, form_name, &s, e)) < 0 ||
        (rc = get_str(fo, "to", true, form_name, &s, e)) < 0 ||
        (rc = get_str(fo, "why", false, form_reason, &s, e)) < 0 ||
        (rc = get_int(fo, "heard_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(fo, "down_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(fo, "stale_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(fo, "decided_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int vm_record_check(const json_t *v, struct ferr *e)
{
    static const char *const fields[] = {"name",       "spec",    "owner", "state",    "reason",
                                         "generation", "runtime", "epoch", "failover", NULL};
    const char *name, *s;
    json_int_t i;
    int rc;
    if (!json_is_object(v))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(v));
    if ((rc = check_fields(v, fields, e)) < 0 ||
        (rc = get_str(v, "name", true, form_name, &name, e)) < 0 ||
        (rc = get_str(v, "owner", true, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(v, "state", true, form_state_token, &s, e)) < 0 ||
        (rc = get_str(v, "reason", true, form_reason, &s, e)) < 0 ||
        (rc = get_int(v, "generation", true, 1, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(v, "epoch", false, 1, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    json_t *rt = json_object_get(v, "runtime");
    if (rt && (rc = runtime_check(rt, true, e)) < 0)
        return ferr_prefix(e, "runtime");
    json_t *fo = json_object_get(v, "failover");
    if (fo && (rc = failover_check(fo, e)) < 0)
        return ferr_prefix(e, "failover");
    json_t *spec = json_object_get(v, "spec");
    if (!spec)
        return ferr_set(e, FERR_INVALID, "spec: missing");
    if (!json_is_object(spec))
        return ferr_set(e, FERR_INVALID, "spec: expected an object, not %s", jfield_type(spec));
    json_t *sn = json_object_get(spec, "name");
    if (sn && !(json_is_string(sn) && strcmp(json_string_value(sn), name) == 0))
        return ferr_set(e, FERR_INVALID, "spec: name must be the VM's name \"%s\"", name);
    return 0;
}

static int event_record_check(const json_t *ev, struct ferr *e)
{
    static const char *const fields[] = {"id", "time_ms", "type", "node",
                                         "vm", "message", "uid",  NULL};
    const char *s;
    json_int_t i;
    uint64_t id;
    int rc;
    if (!json_is_object(ev))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(ev));
    if ((rc = check_fields(ev, fields, e)) < 0 || (rc = get_id(ev, "id", &id, e)) < 0 ||
        (rc = get_int(ev, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(ev, "type", true, form_type_token, &s, e)) < 0 ||
        (rc = get_str(ev, "node", true, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(ev, "vm", true, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(ev, "message", true, form_message, &s, e)) < 0 ||
        (rc = get_str(ev, "uid", false, form_uid, &s, e)) < 0)
        return rc;
    return 0;
}

static int csv_record_check(const json_t *v, struct ferr *e)
{
    static const char *const fields[] = {
        "name", "path", "id", "coordinator", "epoch", "created_ms", "coordinator_since_ms", NULL};
    const char *s;
    json_int_t i;
    int rc;
    if (!json_is_object(v))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(v));
    if ((rc = check_fields(v, fields, e)) < 0 ||
        (rc = get_str(v, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(v, "path", true, form_volume_path, &s, e)) < 0 ||
        (rc = get_str(v, "id", true, form_volume_id, &s, e)) < 0 ||
        (rc = get_str(v, "coordinator", true, form_name, &s, e)) < 0 ||
        (rc = get_int(v, "epoch", true, 1, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(v, "created_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(v, "coordinator_since_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int meta_record_check(const json_t *m, struct ferr *e)
{
    static const char *const fields[] = {"id", "name", "created_ms", "profile", "profile_ms", NULL};
    const char *s;
    json_int_t i;
    int rc;
    if (!json_is_object(m))
        return ferr_set(e, FERR_INVALID, "expected an object, not %s", jfield_type(m));
    if (json_object_size(m) == 0)
        return 0;
    if ((rc = check_fields(m, fields, e)) < 0 ||
        (rc = get_str(m, "id", true, form_cluster_id, &s, e)) < 0 ||
        (rc = get_str(m, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_int(m, "created_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(m, "profile", false, form_profile, &s, e)) < 0 ||
        (rc = get_int(m, "profile_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

/* ---- lookups ---- */

static void id_key(uint64_t id, char key[24])
{
    snprintf(key, 24, "%" PRIu64, id);
}

static json_t *node_by_id(const struct cdb *db, uint64_t id)
{
    char key[24];
    id_key(id, key);
    return json_object_get(db->nodes, key);
}

static json_t *node_by_name(const struct cdb *db, const char *name)
{
    const char *key;
    json_t *n;
    json_object_foreach(db->nodes, key, n)
    {
        if (strcmp(jfield_text(n, "name"), name) == 0)
            return n;
    }
    return NULL;
}

static size_t vms_owned_by(const struct cdb *db, const char *node)
{
    const char *key;
    json_t *v;
    size_t count = 0;
    json_object_foreach(db->vms, key, v)
    {
        if (strcmp(jfield_text(v, "owner"), node) == 0)
            count++;
    }
    return count;
}

/* ---- ops: a syntax check (no state) and an apply (state checks, then one change) ---- */

struct op {
    const char *name;
    int since, until;          /* the command versions it has this form in */
    const char *const *fields; /* besides "v" and "op" */
    int (*check)(const json_t *cmd, struct ferr *e);
    int (*apply)(struct cdb *db, const json_t *cmd, struct ferr *e);
};

static const char *const node_upsert_fields[] = {
    "id",     "name",     "api_addr", "raft_addr",         "role",        "state",
    "memory", "vm_count", "accel",    "last_heartbeat_ms", "cmd_version", NULL};

static int upsert_check(const json_t *c, str_form state_form, struct ferr *e)
{
    const char *s;
    json_int_t i;
    uint64_t id;
    int rc;
    if ((rc = get_id(c, "id", &id, e)) < 0 ||
        (rc = get_str(c, "name", false, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "api_addr", false, form_addr, &s, e)) < 0 ||
        (rc = get_str(c, "raft_addr", false, form_addr, &s, e)) < 0 ||
        (rc = get_str(c, "role", false, form_role, &s, e)) < 0 ||
        (rc = get_str(c, "state", false, state_form, &s, e)) < 0 ||
        (rc = get_int(c, "vm_count", false, 0, VM_COUNT_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(c, "accel", false, form_accel, &s, e)) < 0 ||
        (rc = get_int(c, "last_heartbeat_ms", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(c, "cmd_version", false, 1, CMD_VERSION_LIMIT, &i, NULL, e)) < 0)
        return rc;
    json_t *m = json_object_get(c, "memory");
    return m ? check_memory(m, e) : 0;
}

static int node_upsert_check(const json_t *c, struct ferr *e)
{
    return upsert_check(c, form_node_state, e);
}

static int node_upsert_check_v1(const json_t *c, struct ferr *e)
{
    return upsert_check(c, form_node_state_v1, e);
}

/* Sets the health ("up"|"down") of node record rec; reason NULL keeps its reason, time_ms < 0
 * its time. -ENOMEM. */
static int set_health(json_t *rec, const char *health, const char *reason, json_int_t time_ms)
{
    if (json_object_set_new(rec, "state", json_string(health)) < 0 ||
        (reason && json_object_set_new(rec, "state_reason", json_string(reason)) < 0) ||
        (time_ms >= 0 && json_object_set_new(rec, "state_changed_ms", json_integer(time_ms)) < 0))
        return -ENOMEM;
    return 0;
}

/* Sets the admin state of node record rec, with its reason and time. -ENOMEM. */
static int set_admin(json_t *rec, const char *admin, const char *reason, json_int_t time_ms)
{
    if (json_object_set_new(rec, "admin", json_string(admin)) < 0 ||
        json_object_set_new(rec, "admin_reason", json_string(reason)) < 0 ||
        json_object_set_new(rec, "admin_changed_ms", json_integer(time_ms)) < 0)
        return -ENOMEM;
    return 0;
}

/* Whether admin is a change of rec's admin state (NULL: none). */
static bool admin_changes(const json_t *rec, const char *admin)
{
    return admin && strcmp(admin, jfield_text(rec, "admin")) != 0;
}

/* Sets key of rec to a copy of the command's field, if the command has it. */
static int copy_field(json_t *rec, const json_t *cmd, const char *key)
{
    json_t *v = json_object_get(cmd, key);
    if (!v)
        return 0;
    json_t *c = json_deep_copy(v);
    if (!c || json_object_set_new(rec, key, c) < 0)
        return -ENOMEM;
    return 0;
}

/* Stores rec (stolen) under key in obj, after a last check of the finished record. */
static int store(json_t *obj, const char *key, json_t *rec,
                 int (*check)(const json_t *, struct ferr *), struct ferr *e)
{
    struct ferr le;
    if (check(rec, &le) < 0) {
        json_decref(rec);
        return ferr_set(e, FERR_INTERNAL, "built a bad record: %s", le.msg);
    }
    if (json_object_set_new(obj, key, rec) < 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    return 0;
}

/* v1: the command's state is version 1's (v1_state_split). */
static int upsert_apply(struct cdb *db, const json_t *c, bool v1, struct ferr *e)
{
    static const char *const copied[] = {
        "name",     "api_addr", "raft_addr",         "role",        "memory",
        "vm_count", "accel",    "last_heartbeat_ms", "cmd_version", NULL};
    char key[24];
    uint64_t id = (uint64_t)int_of(c, "id");
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *old = node_by_id(db, id);
    json_t *rec;

    if (old) {
        if (name && strcmp(name, jfield_text(old, "name")) != 0)
            return ferr_set(e, FERR_INVALID,
                            "node %" PRIu64 " is named \"%s\": a node's name "
                            "never changes",
                            id, jfield_text(old, "name"));
        rec = json_deep_copy(old);
    } else {
        if (!name)
            return ferr_set(e, FERR_INVALID, "name: missing (required for a new node)");
        if (!json_object_get(c, "api_addr"))
            return ferr_set(e, FERR_INVALID, "api_addr: missing (required for a new node)");
        if (!json_object_get(c, "raft_addr"))
            return ferr_set(e, FERR_INVALID, "raft_addr: missing (required for a new node)");
        json_t *other = node_by_name(db, name);
        if (other)
            return ferr_set(e, FERR_EXISTS, "name \"%s\" is taken by node %" JSON_INTEGER_FORMAT,
                            name, int_of(other, "id"));
        json_int_t hb = json_integer_value(json_object_get(c, "last_heartbeat_ms"));
        rec = json_pack("{sI s{sIsI} sI ss ss ss sI sI ss sI}", "id", (json_int_t)id, "memory",
                        "total_mib", (json_int_t)0, "free_mib", (json_int_t)0, "vm_count",
                        (json_int_t)0, "accel", "", "role", "spare", "state", "up",
                        "state_changed_ms", hb, "last_heartbeat_ms", hb, "admin", "active",
                        "admin_changed_ms", hb);
        if (rec && (json_object_set_new(rec, "state_reason", json_string("")) < 0 ||
                    json_object_set_new(rec, "admin_reason", json_string("")) < 0 ||
                    json_object_set_new(rec, "cmd_version", json_integer(1)) < 0)) {
            json_decref(rec);
            rec = NULL;
        }
    }
    if (!rec)
        return ferr_set(e, -ENOMEM, "out of memory");
    for (size_t i = 0; copied[i]; i++) {
        if (copy_field(rec, c, copied[i]) < 0) {
            json_decref(rec);
            return ferr_set(e, -ENOMEM, "out of memory");
        }
    }
    const char *state = json_string_value(json_object_get(c, "state")), *health = state;
    const char *admin = NULL;
    if (state && v1)
        v1_state_split(state, NULL, &health, &admin);
    /* An upsert has no time and no reason: the admin state's are cleared when it changes. */
    if (state && (set_health(rec, health, NULL, -1) < 0 ||
                  (admin_changes(rec, admin) && set_admin(rec, admin, "", 0) < 0))) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    id_key(id, key);
    return store(db->nodes, key, rec, node_record_check, e);
}

static int node_upsert_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    return upsert_apply(db, c, false, e);
}

static int node_upsert_apply_v1(struct cdb *db, const json_t *c, struct ferr *e)
{
    return upsert_apply(db, c, true, e);
}

static const char *const id_fields[] = {"id", NULL};

static int id_check(const json_t *c, struct ferr *e)
{
    uint64_t id;
    return get_id(c, "id", &id, e);
}

static int node_remove_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    char key[24];
    uint64_t id = (uint64_t)int_of(c, "id");
    json_t *n = node_by_id(db, id);
    if (!n)
        return ferr_set(e, FERR_NOTFOUND, "no node %" PRIu64, id);
    size_t owned = vms_owned_by(db, jfield_text(n, "name"));
    if (owned)
        return ferr_set(e, FERR_STATE,
                        "node %" PRIu64 " (%s) still owns %zu VM(s): move or "
                        "remove them first",
                        id, jfield_text(n, "name"), owned);
    const char *vol;
    json_t *v;
    json_object_foreach(db->csvs, vol, v)
    {
        if (strcmp(jfield_text(v, "coordinator"), jfield_text(n, "name")) == 0)
            return ferr_set(e, FERR_STATE,
                            "node %" PRIu64 " (%s) coordinates volume \"%s\": move it first "
                            "(ferry csv move-coordinator %s --to NODE)",
                            id, jfield_text(n, "name"), vol, vol);
    }
    id_key(id, key);
    json_object_del(db->nodes, key);
    return 0;
}

static const char *const node_state_fields[] = {"id", "state", "reason", "time_ms", NULL};

static int state_check(const json_t *c, const char *key, str_form form, struct ferr *e)
{
    const char *s;
    json_int_t i;
    uint64_t id;
    int rc;
    if ((rc = get_id(c, "id", &id, e)) < 0 || (rc = get_str(c, key, true, form, &s, e)) < 0 ||
        (rc = get_str(c, "reason", false, form_reason, &s, e)) < 0 ||
        (rc = get_int(c, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int node_state_check(const json_t *c, struct ferr *e)
{
    return state_check(c, "state", form_node_state, e);
}

static int node_state_check_v1(const json_t *c, struct ferr *e)
{
    return state_check(c, "state", form_node_state_v1, e);
}

static int node_admin_check(const json_t *c, struct ferr *e)
{
    return state_check(c, "admin", form_admin, e);
}

/* Sets the health (state) or the admin state (admin) of the command's node; v1: the state is
 * version 1's, health and maybe admin state in one (v1_state_split). */
static int state_apply(struct cdb *db, const json_t *c, bool v1, struct ferr *e)
{
    char key[24];
    uint64_t id = (uint64_t)int_of(c, "id");
    json_t *n = node_by_id(db, id);
    if (!n)
        return ferr_set(e, FERR_NOTFOUND, "no node %" PRIu64, id);
    const char *reason = json_string_value(json_object_get(c, "reason"));
    const char *health = json_string_value(json_object_get(c, "state"));
    const char *admin = json_string_value(json_object_get(c, "admin"));
    if (!reason)
        reason = "";
    if (v1)
        v1_state_split(health, reason, &health, &admin);
    json_int_t t = int_of(c, "time_ms");
    json_t *rec = json_deep_copy(n);
    /* node_admin records its reason and time even when the admin state stays; a version 1
     * state touches the admin fields only when it changes the admin state. */
    if (!rec || (health && set_health(rec, health, reason, t) < 0) ||
        ((health ? admin_changes(rec, admin) : true) && set_admin(rec, admin, reason, t) < 0)) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    id_key(id, key);
    return store(db->nodes, key, rec, node_record_check, e);
}

static int node_state_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    return state_apply(db, c, false, e);
}

static int node_state_apply_v1(struct cdb *db, const json_t *c, struct ferr *e)
{
    return state_apply(db, c, true, e);
}

static const char *const node_admin_fields[] = {"id", "admin", "reason", "time_ms", NULL};

/* A copy of a VM record with its generation one higher; NULL when out of memory. */
static json_t *next_generation(const json_t *old)
{
    json_t *rec = json_deep_copy(old);
    if (rec &&
        json_object_set_new(rec, "generation", json_integer(int_of(old, "generation") + 1)) < 0) {
        json_decref(rec);
        rec = NULL;
    }
    return rec;
}

static const char *const vm_put_fields[] = {"name", "spec", "owner", "state", "reason", NULL};

static int vm_put_check(const json_t *c, struct ferr *e)
{
    const char *name, *s;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &name, e)) < 0 ||
        (rc = get_str(c, "owner", false, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(c, "state", false, form_state_token, &s, e)) < 0 ||
        (rc = get_str(c, "reason", false, form_reason, &s, e)) < 0)
        return rc;
    json_t *spec = json_object_get(c, "spec");
    if (!spec)
        return ferr_set(e, FERR_INVALID, "spec: missing");
    if (!json_is_object(spec))
        return ferr_set(e, FERR_INVALID, "spec: expected an object, not %s", jfield_type(spec));
    json_t *sn = json_object_get(spec, "name");
    if (sn && !(json_is_string(sn) && strcmp(json_string_value(sn), name) == 0))
        return ferr_set(e, FERR_INVALID, "spec: name must be the VM's name \"%s\"", name);
    return 0;
}

static int owner_exists(const struct cdb *db, const char *owner, struct ferr *e)
{
    if (owner && *owner && !node_by_name(db, owner))
        return ferr_set(e, FERR_NOTFOUND, "owner: no node named \"%s\"", owner);
    return 0;
}

static int vm_put_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    json_t *old = json_object_get(db->vms, name);
    int rc = owner_exists(db, json_string_value(json_object_get(c, "owner")), e);
    if (rc < 0)
        return rc;
    json_t *rec;
    if (old) {
        rec = next_generation(old);
    } else {
        rec = json_pack("{ss ss ss ss sI}", "name", name, "owner", "", "state", "stopped", "reason",
                        "", "generation", (json_int_t)1);
    }
    if (!rec || copy_field(rec, c, "spec") < 0 || copy_field(rec, c, "owner") < 0 ||
        copy_field(rec, c, "state") < 0 || copy_field(rec, c, "reason") < 0) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->vms, name, rec, vm_record_check, e);
}

static const char *const vm_owner_fields[] = {"name", "owner", "expect_owner", NULL};

static int vm_owner_check(const json_t *c, struct ferr *e)
{
    const char *s;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "owner", true, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(c, "expect_owner", false, form_name_or_empty, &s, e)) < 0)
        return rc;
    return 0;
}

/* Copies the VM record named by the command, bumps its generation; FERR_NOTFOUND. */
static int vm_edit(struct cdb *db, const json_t *c, json_t **out, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    json_t *old = json_object_get(db->vms, name);
    if (!old)
        return ferr_set(e, FERR_NOTFOUND, "no VM named \"%s\"", name);
    if (!(*out = next_generation(old)))
        return ferr_set(e, -ENOMEM, "out of memory");
    return 0;
}

static int vm_owner_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    const char *expect = json_string_value(json_object_get(c, "expect_owner"));
    json_t *old = json_object_get(db->vms, name);
    json_t *rec;
    int rc;
    if (!old)
        return ferr_set(e, FERR_NOTFOUND, "no VM named \"%s\"", name);
    if (expect && strcmp(expect, jfield_text(old, "owner")) != 0)
        return ferr_set(e, FERR_STATE, "VM \"%s\" is owned by \"%s\", not \"%s\"", name,
                        jfield_text(old, "owner"), expect);
    if ((rc = owner_exists(db, jfield_text(c, "owner"), e)) < 0 ||
        (rc = vm_edit(db, c, &rec, e)) < 0)
        return rc;
    if (copy_field(rec, c, "owner") < 0) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->vms, name, rec, vm_record_check, e);
}

static const char *const vm_state_fields[] = {"name", "state", "reason", NULL};
static const char *const vm_state_fields_v3[] = {"name", "state", "reason", "runtime", NULL};

static int vm_state_check(const json_t *c, struct ferr *e)
{
    const char *s;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "state", true, form_state_token, &s, e)) < 0 ||
        (rc = get_str(c, "reason", false, form_reason, &s, e)) < 0)
        return rc;
    return 0;
}

static int vm_state_check_v3(const json_t *c, struct ferr *e)
{
    int rc = vm_state_check(c, e);
    json_t *rt = json_object_get(c, "runtime");
    if (rc == 0 && rt &&
        (rc = runtime_check(rt, json_integer_value(json_object_get(c, "v")) >= 7, e)) < 0)
        ferr_prefix(e, "runtime");
    return rc;
}

static int vm_state_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    json_t *rec;
    const char *reason = json_string_value(json_object_get(c, "reason"));
    json_t *rt = json_object_get(c, "runtime");
    bool v3 = int_of(c, "v") >= 3;
    int rc = vm_edit(db, c, &rec, e);
    if (rc < 0)
        return rc;
    /* From version 3 the owner says what runs (runtime) with every state; without it nothing
     * runs. Older versions never carry it and leave it as it was. */
    if (copy_field(rec, c, "state") < 0 ||
        json_object_set_new(rec, "reason", json_string(reason ? reason : "")) < 0 ||
        (rt && json_object_set_new(rec, "runtime", json_deep_copy(rt)) < 0) ||
        (!rt && v3 && json_object_get(rec, "runtime") && json_object_del(rec, "runtime") < 0)) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->vms, jfield_text(c, "name"), rec, vm_record_check, e);
}

/*
 * vm_failover (version 6): the leader gives a VM of a dead node to another, in one step: the
 * owner (compare-and-set on expect_owner, which is required), the state and reason the new
 * owner finds it in ("recovering"), and the failover's record. Nothing runs there yet, so the
 * runtime goes; the epoch stays (the new owner raises it when it starts the VM).
 */
static const char *const vm_failover_fields[] = {
    "name", "owner", "expect_owner", "state", "reason", "failover", NULL};

static int vm_failover_check(const json_t *c, struct ferr *e)
{
    const char *s;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "owner", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "expect_owner", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "state", true, form_state_token, &s, e)) < 0 ||
        (rc = get_str(c, "reason", false, form_reason, &s, e)) < 0)
        return rc;
    json_t *fo = json_object_get(c, "failover");
    if (!fo)
        return ferr_set(e, FERR_INVALID, "failover: missing");
    if ((rc = failover_check(fo, e)) < 0)
        return ferr_prefix(e, "failover");
    return 0;
}

static int vm_failover_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name"), *expect = jfield_text(c, "expect_owner");
    json_t *old = json_object_get(db->vms, name);
    json_t *rec;
    int rc;
    if (!old)
        return ferr_set(e, FERR_NOTFOUND, "no VM named \"%s\"", name);
    if (strcmp(expect, jfield_text(old, "owner")) != 0)
        return ferr_set(e, FERR_STATE, "VM \"%s\" is owned by \"%s\", not \"%s\"", name,
                        jfield_text(old, "owner"), expect);
    if ((rc = owner_exists(db, jfield_text(c, "owner"), e)) < 0 ||
        (rc = vm_edit(db, c, &rec, e)) < 0)
        return rc;
    if (copy_field(rec, c, "owner") < 0 || copy_field(rec, c, "state") < 0 ||
        json_object_set_new(rec, "reason", json_string(jfield_text(c, "reason"))) < 0 ||
        copy_field(rec, c, "failover") < 0 ||
        (json_object_get(rec, "runtime") && json_object_del(rec, "runtime") < 0)) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->vms, name, rec, vm_record_check, e);
}

/*
 * vm_epoch (version 5): the VM's writer epoch, a fencing token for its disks. It only rises;
 * expect_epoch makes it compare-and-set. A record has "epoch" only once it is above 0, so
 * the records of clusters that never used it stay as version 4 wrote them.
 */
static const char *const vm_epoch_fields[] = {"name", "epoch", "expect_epoch", NULL};
static const char *const vm_epoch_fields_v6[] = {"name", "epoch", "expect_epoch", "owner", NULL};

static int vm_epoch_check(const json_t *c, struct ferr *e)
{
    const char *s;
    json_int_t i;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_int(c, "epoch", true, 1, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(c, "expect_epoch", false, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(c, "owner", false, form_name, &s, e)) < 0)
        return rc;
    return 0;
}

static int vm_epoch_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    json_int_t epoch = int_of(c, "epoch");
    json_t *expect = json_object_get(c, "expect_epoch");
    json_t *old = json_object_get(db->vms, name);
    json_t *rec;
    if (!old)
        return ferr_set(e, FERR_NOTFOUND, "no VM named \"%s\"", name);
    json_int_t cur = int_of(old, "epoch"); /* 0 when the record has none */
    const char *owner = json_string_value(json_object_get(c, "owner"));
    if (owner && strcmp(owner, jfield_text(old, "owner")) != 0)
        return ferr_set(e, FERR_STATE,
                        "VM \"%s\" is owned by \"%s\", not \"%s\": only its owner raises its "
                        "writer epoch",
                        name, jfield_text(old, "owner"), owner);
    if (expect && json_integer_value(expect) != cur)
        return ferr_set(e, FERR_STATE,
                        "VM \"%s\" is at epoch %" JSON_INTEGER_FORMAT ", not %" JSON_INTEGER_FORMAT,
                        name, cur, json_integer_value(expect));
    if (epoch <= cur)
        return ferr_set(
            e, FERR_STATE,
            "a VM's writer epoch only rises: VM \"%s\" is at epoch %" JSON_INTEGER_FORMAT
            ", and %" JSON_INTEGER_FORMAT " is not above it",
            name, cur, epoch);
    int rc = vm_edit(db, c, &rec, e);
    if (rc < 0)
        return rc;
    if (json_object_set_new(rec, "epoch", json_integer(epoch)) < 0) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->vms, name, rec, vm_record_check, e);
}

static const char *const name_fields[] = {"name", NULL};

static int name_check(const json_t *c, struct ferr *e)
{
    const char *s;
    return get_str(c, "name", true, form_name, &s, e);
}

static int vm_remove_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    if (json_object_del(db->vms, name) < 0)
        return ferr_set(e, FERR_NOTFOUND, "no VM named \"%s\"", name);
    return 0;
}

static const char *const event_add_fields[] = {"time_ms", "type", "node", "vm", "message", NULL};
static const char *const event_add_fields_v4[] = {"time_ms", "type", "node", "vm",
                                                  "message", "uid",  NULL};

static int event_add_check(const json_t *c, struct ferr *e)
{
    const char *s;
    json_int_t i;
    int rc;
    if ((rc = get_int(c, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_str(c, "type", true, form_type_token, &s, e)) < 0 ||
        (rc = get_str(c, "node", false, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(c, "vm", false, form_name_or_empty, &s, e)) < 0 ||
        (rc = get_str(c, "message", false, form_message, &s, e)) < 0 ||
        (rc = get_str(c, "uid", false, form_uid, &s, e)) < 0)
        return rc;
    return 0;
}

/* True if a kept event has this uid: the writer sent the same event again (its first try
 * was applied, but the answer was lost). */
static bool event_uid_kept(const struct cdb *db, const char *uid)
{
    size_t i;
    json_t *ev;
    json_array_foreach(db->events, i, ev)
    {
        const char *u = json_string_value(json_object_get(ev, "uid"));
        if (u && strcmp(u, uid) == 0)
            return true;
    }
    return false;
}

static int event_add_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *uid = json_string_value(json_object_get(c, "uid"));
    if (uid && event_uid_kept(db, uid))
        return 0; /* applied as nothing: the same event again */
    if (db->next_event_id > CDB_ID_MAX)
        return ferr_set(e, FERR_LIMIT, "event ids are exhausted");
    json_t *ev = json_pack("{sI sI ss ss ss ss}", "id", (json_int_t)db->next_event_id, "time_ms",
                           int_of(c, "time_ms"), "type", jfield_text(c, "type"), "node",
                           jfield_text(c, "node"), "vm", jfield_text(c, "vm"), "message",
                           jfield_text(c, "message"));
    if (!ev || (uid && json_object_set_new(ev, "uid", json_string(uid)) < 0)) {
        json_decref(ev);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    if (json_array_append_new(db->events, ev) < 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    while (json_array_size(db->events) > CDB_EVENTS_MAX)
        json_array_remove(db->events, 0);
    db->next_event_id++;
    return 0;
}

int cdb_csv_path_free(const struct cdb *db, const char *path, struct ferr *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(db->csvs, k, v)
    {
        if (path_under(path, jfield_text(v, "path")) || path_under(jfield_text(v, "path"), path))
            return ferr_set(e, FERR_EXISTS, "path %s overlaps volume \"%s\" (%s)", path, k,
                            jfield_text(v, "path"));
    }
    return 0;
}

/*
 * Cluster shared volumes. csv_put adds one (epoch 1) or moves its coordinator (a higher
 * epoch; path and id never change); expect_epoch makes it compare-and-set. csv_remove is
 * refused while a VM's spec names a file on the volume.
 */
static const char *const csv_put_fields[] = {"name",  "path",    "id",           "coordinator",
                                             "epoch", "time_ms", "expect_epoch", NULL};

static int csv_put_check(const json_t *c, struct ferr *e)
{
    const char *s;
    json_int_t i;
    int rc;
    if ((rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_str(c, "path", true, form_volume_path, &s, e)) < 0 ||
        (rc = get_str(c, "id", true, form_volume_id, &s, e)) < 0 ||
        (rc = get_str(c, "coordinator", true, form_name, &s, e)) < 0 ||
        (rc = get_int(c, "epoch", true, 1, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(c, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0 ||
        (rc = get_int(c, "expect_epoch", false, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int csv_put_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name"), *path = jfield_text(c, "path"),
               *id = jfield_text(c, "id");
    const char *coord = jfield_text(c, "coordinator");
    json_int_t epoch = int_of(c, "epoch");
    json_t *expect = json_object_get(c, "expect_epoch");
    json_t *old = json_object_get(db->csvs, name);
    if (!node_by_name(db, coord))
        return ferr_set(e, FERR_NOTFOUND, "coordinator: no node named \"%s\"", coord);
    json_int_t cur = old ? int_of(old, "epoch") : 0;
    if (expect && json_integer_value(expect) != cur)
        return ferr_set(e, FERR_STATE,
                        "volume \"%s\" is at epoch %" JSON_INTEGER_FORMAT
                        ", not %" JSON_INTEGER_FORMAT,
                        name, cur, json_integer_value(expect));
    json_t *rec;
    if (old) {
        if (strcmp(path, jfield_text(old, "path")) != 0 || strcmp(id, jfield_text(old, "id")) != 0)
            return ferr_set(e, FERR_INVALID,
                            "volume \"%s\" is %s (id %s): its path and id never change", name,
                            jfield_text(old, "path"), jfield_text(old, "id"));
        if (epoch <= cur)
            return ferr_set(e, FERR_STATE,
                            "volume \"%s\": epoch %" JSON_INTEGER_FORMAT
                            " is not above %" JSON_INTEGER_FORMAT,
                            name, epoch, cur);
        rec = json_deep_copy(old);
    } else {
        if (epoch != 1)
            return ferr_set(e, FERR_INVALID, "a new volume starts at epoch 1");
        int rc = cdb_csv_path_free(db, path, e);
        if (rc < 0)
            return rc;
        const char *k;
        json_t *v;
        json_object_foreach(db->csvs, k, v)
        {
            if (strcmp(id, jfield_text(v, "id")) == 0)
                return ferr_set(e, FERR_EXISTS, "volume id %s is volume \"%s\"'s", id, k);
        }
        rec = json_pack("{ss ss ss sI}", "name", name, "path", path, "id", id, "created_ms",
                        int_of(c, "time_ms"));
    }
    if (!rec || json_object_set_new(rec, "coordinator", json_string(coord)) < 0 ||
        json_object_set_new(rec, "epoch", json_integer(epoch)) < 0 ||
        json_object_set_new(rec, "coordinator_since_ms", json_integer(int_of(c, "time_ms"))) < 0) {
        json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    return store(db->csvs, name, rec, csv_record_check, e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the VMs whose spec names a file under dir (disks, kernel, initrd), sorted;
 * new JSON (NULL without memory). */
static json_t *vms_using(const struct cdb *db, const char *dir)
{
    size_t n = 0, cap = json_object_size(db->vms);
    const char **found = calloc(cap ? cap : 1, sizeof(*found));
    if (!found)
        return NULL;
    const char *name;
    json_t *vm;
    json_object_foreach(db->vms, name, vm)
    {
        json_t *spec = json_object_get(vm, "spec"), *boot = json_object_get(spec, "boot");
        bool uses = path_under(jfield_text(boot, "kernel"), dir) ||
                    path_under(jfield_text(boot, "initrd"), dir);
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(spec, "disks"), i, d)
        {
            uses = uses || path_under(jfield_text(d, "path"), dir);
        }
        if (uses && n < cap)
            found[n++] = name;
    }
    qsort(found, n, sizeof(*found), cmp_str);
    json_t *names = json_array();
    for (size_t i = 0; names && i < n; i++)
        if (json_array_append_new(names, json_string(found[i])) < 0) {
            json_decref(names);
            names = NULL;
        }
    free(found);
    return names;
}

static int csv_remove_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const char *name = jfield_text(c, "name");
    json_t *old = json_object_get(db->csvs, name);
    if (!old)
        return ferr_set(e, FERR_NOTFOUND, "no volume named \"%s\"", name);
    json_t *users = vms_using(db, jfield_text(old, "path"));
    if (!users)
        return ferr_set(e, -ENOMEM, "out of memory");
    size_t n = json_array_size(users);
    char list[200] = "";
    for (size_t i = 0, off = 0; i < n && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                                json_string_value(json_array_get(users, i)));
    json_decref(users);
    if (n)
        return ferr_set(e, FERR_STATE,
                        "volume \"%s\" is in use by %zu VM%s (%s): delete them or move their "
                        "disks first",
                        name, n, n == 1 ? "" : "s", list);
    json_object_del(db->csvs, name);
    return 0;
}

/*
 * migration_measure: a figure measured outside ferryd (by a client of the VM) joins the
 * migration's record, the "vm.migration" event of GET /v1/migrations. The record stays an
 * event (same id, same time), its message gains "client_gap_ms" and "client_gap_source".
 */
static const char *const migration_measure_fields[] = {"id", "client_gap_ms", "source", "replace",
                                                       NULL};
static const char *const migration_statuses[] = {"completed", "failed", "cancelled", NULL};

static int migration_measure_check(const json_t *c, struct ferr *e)
{
    const char *s;
    uint64_t id;
    int rc;
    if ((rc = get_id(c, "id", &id, e)) < 0 ||
        (rc = get_str(c, "source", true, form_source, &s, e)) < 0)
        return rc;
    json_t *gap = json_object_get(c, "client_gap_ms");
    if (!gap)
        return ferr_set(e, FERR_INVALID, "client_gap_ms: missing");
    if (!json_is_number(gap))
        return ferr_set(e, FERR_INVALID, "client_gap_ms: expected a number, not %s",
                        jfield_type(gap));
    double ms = json_number_value(gap);
    if (!(ms >= 0 && ms <= CDB_CLIENT_GAP_MAX_MS))
        return ferr_set(e, FERR_INVALID, "client_gap_ms: %g is out of range 0..%d", ms,
                        CDB_CLIENT_GAP_MAX_MS);
    json_t *r = json_object_get(c, "replace");
    if (r && !json_is_boolean(r))
        return ferr_set(e, FERR_INVALID, "replace: expected a boolean, not %s", jfield_type(r));
    return 0;
}

/* The event with this id, or NULL; ids increase along the array. */
static json_t *event_by_id(const struct cdb *db, json_int_t id)
{
    size_t lo = 0, hi = json_array_size(db->events);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        json_t *ev = json_array_get(db->events, mid);
        json_int_t x = int_of(ev, "id");
        if (x == id)
            return ev;
        if (x < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool parse_oom(const json_error_t *jerr, const void *text, size_t len);

static int migration_measure_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    json_int_t id = int_of(c, "id");
    json_t *ev = event_by_id(db, id);
    if (!ev || strcmp(jfield_text(ev, "type"), "vm.migration") != 0)
        return ferr_set(e, FERR_NOTFOUND,
                        "no migration %" JSON_INTEGER_FORMAT
                        " (ferry vm migrations lists them; only the last %d events are kept)",
                        id, CDB_EVENTS_MAX);
    const char *msg = jfield_text(ev, "message");
    json_error_t jerr;
    json_t *rec = json_loads(msg, 0, &jerr);
    /* Out of memory must not pass for an unreadable record: this node alone would refuse. */
    if (!rec && parse_oom(&jerr, msg, strlen(msg)))
        return ferr_set(e, -ENOMEM, "out of memory");
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (!json_is_object(rec) || !status || !in_list(status, migration_statuses)) {
        json_decref(rec);
        return ferr_set(e, FERR_STATE,
                        "migration %" JSON_INTEGER_FORMAT " has no readable record to add to", id);
    }
    json_t *old = json_object_get(rec, "client_gap_ms");
    if (json_is_number(old) && !json_is_true(json_object_get(c, "replace"))) {
        const char *src = json_string_value(json_object_get(rec, "client_gap_source"));
        int rc = ferr_set(e, FERR_EXISTS,
                          "migration %" JSON_INTEGER_FORMAT
                          " already has a client gap of %g ms (source %s); replacing it needs "
                          "force",
                          id, json_number_value(old), src ? src : "unknown");
        json_decref(rec);
        return rc;
    }
    /* A tenth of a millisecond is finer than a 1 ms probe interval can tell. The check kept
     * the value in 0..CDB_CLIENT_GAP_MAX_MS, so the cast cannot overflow. */
    double raw = json_number_value(json_object_get(c, "client_gap_ms"));
    double ms = (double)(int64_t)(raw * 10.0 + 0.5) / 10.0;
    char *text = NULL;
    if (json_object_set_new(rec, "client_gap_ms", json_real(ms)) == 0 &&
        json_object_set_new(rec, "client_gap_source", json_string(jfield_text(c, "source"))) == 0)
        text = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(rec);
    if (!text)
        return ferr_set(e, -ENOMEM, "out of memory");
    if (strlen(text) > MESSAGE_MAX) {
        free(text);
        return ferr_set(e, FERR_LIMIT,
                        "migration %" JSON_INTEGER_FORMAT
                        "'s record would be over %d bytes with the measurement",
                        id, MESSAGE_MAX);
    }
    int rc = json_object_set_new(ev, "message", json_string(text));
    free(text);
    if (rc < 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    return 0;
}

static const char *const meta_fields[] = {"id", "name", "created_ms", NULL};

static int meta_check(const json_t *c, struct ferr *e)
{
    const char *s;
    json_int_t i;
    int rc;
    if ((rc = get_str(c, "id", true, form_cluster_id, &s, e)) < 0 ||
        (rc = get_str(c, "name", true, form_name, &s, e)) < 0 ||
        (rc = get_int(c, "created_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int meta_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    if (json_object_size(db->meta) > 0) {
        if (strcmp(jfield_text(db->meta, "id"), jfield_text(c, "id")) != 0)
            return ferr_set(e, FERR_STATE, "this cluster's id is \"%s\"; it never changes",
                            jfield_text(db->meta, "id"));
        if (int_of(db->meta, "created_ms") != int_of(c, "created_ms"))
            return ferr_set(e, FERR_STATE,
                            "created_ms is %" JSON_INTEGER_FORMAT "; it never changes",
                            int_of(db->meta, "created_ms"));
    }
    json_t *m = json_pack("{ss ss sI}", "id", jfield_text(c, "id"), "name", jfield_text(c, "name"),
                          "created_ms", int_of(c, "created_ms"));
    if (!m)
        return ferr_set(e, -ENOMEM, "out of memory");
    json_t *p = json_object_get(db->meta, "profile"), *pm = json_object_get(db->meta, "profile_ms");
    if ((p && json_object_set(m, "profile", p) < 0) ||
        (pm && json_object_set(m, "profile_ms", pm) < 0)) {
        json_decref(m);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    json_decref(db->meta);
    db->meta = m;
    return 0;
}

/*
 * cluster_profile (version 7): the cluster's timing profile (fleet/timing.h), with the wall
 * time it was set. Only in a cluster that has its meta (it formed).
 */
static const char *const profile_fields[] = {"profile", "time_ms", NULL};

static int profile_check(const json_t *c, struct ferr *e)
{
    const char *s;
    json_int_t i;
    int rc;
    if ((rc = get_str(c, "profile", true, form_profile, &s, e)) < 0 ||
        (rc = get_int(c, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    return 0;
}

static int profile_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    if (json_object_size(db->meta) == 0)
        return ferr_set(e, FERR_STATE, "the cluster has no meta record yet");
    if (json_object_set_new(db->meta, "profile", json_string(jfield_text(c, "profile"))) < 0 ||
        json_object_set_new(db->meta, "profile_ms", json_integer(int_of(c, "time_ms"))) < 0)
        return ferr_set(e, -ENOMEM, "out of memory");
    return 0;
}

/*
 * task_put (version 8): a task's record (taskrec.h) as its node writes it: when it starts,
 * its progress (at most about once a second, only when it changed), and when it ends. An
 * ended task never changes again (FERR_STATE), so a node that comes back after the leader
 * closed its tasks cannot reopen them. time_ms (the writer's wall clock) prunes: ended tasks
 * older than CDB_TASKS_KEEP_MS go, and of the rest only the CDB_TASKS_MAX newest ended stay.
 */
static const char *const task_put_fields[] = {"task", "time_ms", NULL};

static int task_put_check(const json_t *c, struct ferr *e)
{
    json_int_t i;
    int rc;
    if ((rc = get_int(c, "time_ms", true, 0, TIME_MAX, &i, NULL, e)) < 0)
        return rc;
    json_t *t = json_object_get(c, "task");
    if (!t)
        return ferr_set(e, FERR_INVALID, "task is missing");
    if ((rc = taskrec_check(t, false, e)) < 0)
        return ferr_prefix(e, "task");
    return 0;
}

/* Drops ended tasks: older than CDB_TASKS_KEEP_MS at now_ms, then the oldest ended ones over
 * CDB_TASKS_MAX. */
static void tasks_prune(struct cdb *db, json_int_t now_ms)
{
    const char *id;
    json_t *t, *tmp;
    size_t ended = 0;
    json_object_foreach_safe(db->tasks, tmp, id, t)
    {
        if (!taskrec_final(jfield_text(t, "state")))
            continue;
        if (int_of(t, "end_ms") + CDB_TASKS_KEEP_MS < now_ms)
            json_object_del(db->tasks, id);
        else
            ended++;
    }
    while (ended > CDB_TASKS_MAX) {
        const char *oldest = NULL;
        json_int_t oldest_ms = 0;
        json_object_foreach(db->tasks, id, t)
        {
            if (!taskrec_final(jfield_text(t, "state")))
                continue;
            json_int_t end = int_of(t, "end_ms");
            if (!oldest || end < oldest_ms || (end == oldest_ms && strcmp(id, oldest) < 0)) {
                oldest = id;
                oldest_ms = end;
            }
        }
        if (!oldest)
            break;
        json_object_del(db->tasks, oldest);
        ended--;
    }
}

static int task_put_apply(struct cdb *db, const json_t *c, struct ferr *e)
{
    const json_t *t = json_object_get(c, "task");
    const char *id = jfield_text(t, "id");
    json_t *old = json_object_get(db->tasks, id);
    json_int_t gen = 1;
    if (old) {
        if (taskrec_final(jfield_text(old, "state")))
            return ferr_set(e, FERR_STATE, "task %s has ended (%s); it does not change any more",
                            id, jfield_text(old, "state"));
        static const char *const fixed[] = {"kind", "target", "node", "user", NULL};
        for (size_t i = 0; fixed[i]; i++)
            if (strcmp(jfield_text(old, fixed[i]), jfield_text(t, fixed[i])) != 0)
                return ferr_set(e, FERR_STATE, "task %s: its %s is \"%s\"; it never changes", id,
                                fixed[i], jfield_text(old, fixed[i]));
        if (int_of(old, "start_ms") != int_of(t, "start_ms"))
            return ferr_set(e, FERR_STATE, "task %s: its start_ms never changes", id);
        gen = int_of(old, "generation") + 1;
    }
    json_t *rec = json_deep_copy(t);
    if (!rec || json_object_set_new(rec, "generation", json_integer(gen)) < 0 ||
        json_object_set_new(db->tasks, id, rec) < 0) {
        if (rec && !json_object_get(db->tasks, id))
            json_decref(rec);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    tasks_prune(db, int_of(c, "time_ms"));
    return 0;
}

/* An op whose form changed has one entry per range of versions. */
static const struct op ops[] = {
    {"node_upsert", 1, 1, node_upsert_fields, node_upsert_check_v1, node_upsert_apply_v1},
    {"node_upsert", 2, 8, node_upsert_fields, node_upsert_check, node_upsert_apply},
    {"node_remove", 1, 8, id_fields, id_check, node_remove_apply},
    {"node_state", 1, 1, node_state_fields, node_state_check_v1, node_state_apply_v1},
    {"node_state", 2, 8, node_state_fields, node_state_check, node_state_apply},
    {"node_admin", 2, 8, node_admin_fields, node_admin_check, node_state_apply},
    {"vm_put", 1, 8, vm_put_fields, vm_put_check, vm_put_apply},
    {"vm_owner", 1, 8, vm_owner_fields, vm_owner_check, vm_owner_apply},
    {"vm_state", 1, 2, vm_state_fields, vm_state_check, vm_state_apply},
    {"vm_state", 3, 8, vm_state_fields_v3, vm_state_check_v3, vm_state_apply},
    {"vm_epoch", 5, 5, vm_epoch_fields, vm_epoch_check, vm_epoch_apply},
    {"vm_epoch", 6, 8, vm_epoch_fields_v6, vm_epoch_check, vm_epoch_apply},
    {"vm_failover", 6, 8, vm_failover_fields, vm_failover_check, vm_failover_apply},
    {"vm_remove", 1, 8, name_fields, name_check, vm_remove_apply},
    {"event_add", 1, 3, event_add_fields, event_add_check, event_add_apply},
    {"event_add", 4, 8, event_add_fields_v4, event_add_check, event_add_apply},
    {"cluster_meta", 1, 8, meta_fields, meta_check, meta_apply},
    {"cluster_profile", 7, 8, profile_fields, profile_check, profile_apply},
    {"csv_put", 4, 8, csv_put_fields, csv_put_check, csv_put_apply},
    {"csv_remove", 4, 8, name_fields, name_check, csv_remove_apply},
    {"task_put", 8, 8, task_put_fields, task_put_check, task_put_apply},
    {"migration_measure", 1, 8, migration_measure_fields, migration_measure_check,
     migration_measure_apply},
};

/* Checks the envelope and the fields; on 0 *out is the op. Messages lack the "cdb: " part. */
static int cmd_check(const json_t *cmd, const struct op **out, struct ferr *e)
{
    char q[80];
    if (!json_is_object(cmd))
        return ferr_set(e, FERR_INVALID, "command: expected an object, not %s",
                        cmd ? jfield_type(cmd) : "nothing");
    json_t *v = json_object_get(cmd, "v");
    if (!v)
        return ferr_set(e, FERR_INVALID, "command: v (the command version) is missing");
    if (!json_is_integer(v))
        return ferr_set(e, FERR_INVALID, "command: v: expected an integer, not %s", jfield_type(v));
    json_int_t ver = json_integer_value(v);
    if (ver < CDB_CMD_VERSION_OLDEST || ver > CDB_CMD_VERSION)
        return ferr_set(e, FERR_INVALID,
                        "command version %" JSON_INTEGER_FORMAT
                        " is not supported (this node applies versions %d to %d)%s",
                        ver, CDB_CMD_VERSION_OLDEST, CDB_CMD_VERSION,
                        ver > CDB_CMD_VERSION ? ": upgrade ferry on this node" : "");
    json_t *o = json_object_get(cmd, "op");
    if (!o)
        return ferr_set(e, FERR_INVALID, "command: op is missing");
    if (!json_is_string(o))
        return ferr_set(e, FERR_INVALID, "command: op: expected a string, not %s", jfield_type(o));
    const struct op *op = NULL, *named = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
        if (strcmp(ops[i].name, json_string_value(o)) != 0 ||
            strlen(json_string_value(o)) != json_string_length(o))
            continue;
        if (!named)
            named = &ops[i]; /* the first entry: the version the op is new in */
        if (ver >= ops[i].since && ver <= ops[i].until)
            op = &ops[i];
    }
    if (!named)
        return ferr_set(e, FERR_INVALID, "command: unknown op %s",
                        jfield_quote(json_string_value(o), q, sizeof(q)));
    if (!op)
        return ferr_set(e, FERR_INVALID,
                        "command: op %s is not in command version %" JSON_INTEGER_FORMAT
                        " (it is new in version %d)",
                        named->name, ver, named->since);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)cmd, key, val)
    {
        if (strcmp(key, "v") != 0 && strcmp(key, "op") != 0 && !in_list(key, op->fields)) {
            ferr_set(e, FERR_INVALID, "unknown field %s", jfield_quote(key, q, sizeof(q)));
            return ferr_prefix(e, "%s", op->name);
        }
    }
    int rc = op->check(cmd, e);
    if (rc < 0)
        return ferr_prefix(e, "%s", op->name);
    *out = op;
    return 0;
}

int cdb_cmd_check(const json_t *cmd, struct ferr *e)
{
    struct ferr le;
    const struct op *op;
    int rc = cmd_check(cmd, &op, &le);
    if (rc < 0) {
        ferr_prefix(&le, "cdb");
        ferr_set(e, rc, "%s", le.msg);
    }
    return rc;
}

int cdb_cmd_encode(const json_t *cmd, char **out, size_t *len, struct ferr *e)
{
    int rc = cdb_cmd_check(cmd, e);
    if (rc < 0)
        return rc;
    size_t n = json_dumpb(cmd, NULL, 0, JSON_COMPACT);
    if (n == 0)
        return ferr_set(e, -ENOMEM, "cdb: encode: out of memory");
    size_t padded = (n + 7) & ~(size_t)7;
    if (padded > CDB_CMD_MAX)
        return ferr_set(e, FERR_TOOBIG, "cdb: command of %zu bytes is over the limit of %d", n,
                        CDB_CMD_MAX);
    char *buf = calloc(1, padded);
    if (!buf)
        return ferr_set(e, -ENOMEM, "cdb: encode: out of memory");
    if (json_dumpb(cmd, buf, n, JSON_COMPACT) != n) {
        free(buf);
        return ferr_set(e, -ENOMEM, "cdb: encode: out of memory");
    }
    *out = buf;
    *len = padded;
    return 0;
}

/* Length of buf without its padding: trailing NULs and JSON whitespace. */
static size_t unpadded(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0 && (p[len - 1] == '\0' || p[len - 1] == ' ' || p[len - 1] == '\n' ||
                       p[len - 1] == '\t' || p[len - 1] == '\r'))
        len--;
    return len;
}

/* Why jansson failed on text: FERR_INVALID (the text) or -ENOMEM. */
static bool parse_oom(const json_error_t *jerr, const void *text, size_t len)
{
    return json_error_code(jerr) == json_error_out_of_memory || jsontext_valid(text, len);
}

/* buf (borrowed) without its padding, parsed as JSON: what ("command", "snapshot") of at most
 * max bytes; verb names the operation in an out-of-memory message. On 0, *out is a new
 * reference. FERR_TOOBIG, FERR_INVALID, or -ENOMEM only when jansson ran out of memory. */
static int load_padded(const void *buf, size_t len, size_t max, const char *what, const char *verb,
                       json_t **out, struct ferr *e)
{
    if (len > max)
        return ferr_set(e, FERR_TOOBIG, "cdb: %s of %zu bytes is over the limit of %zu", what, len,
                        max);
    size_t n = buf ? unpadded(buf, len) : 0;
    if (n == 0)
        return ferr_set(e, FERR_INVALID, "cdb: %s is empty", what);
    json_error_t jerr;
    json_t *j = json_loadb(buf, n, 0, &jerr);
    if (!j && parse_oom(&jerr, buf, n))
        return ferr_set(e, -ENOMEM, "cdb: %s: out of memory", verb);
    if (!j)
        return ferr_set(e, FERR_INVALID, "cdb: %s is not JSON: %s at byte %d", what, jerr.text,
                        jerr.position);
    *out = j;
    return 0;
}

int cdb_cmd_decode(const void *buf, size_t len, json_t **out, struct ferr *e)
{
    json_t *j = NULL;
    int rc = load_padded(buf, len, CDB_CMD_MAX, "command", "decode", &j, e);
    if (rc < 0)
        return rc;
    if (!json_is_object(j)) {
        json_decref(j);
        return ferr_set(e, FERR_INVALID, "cdb: command is not a JSON object");
    }
    *out = j;
    return 0;
}

int cdb_apply_cmd(struct cdb *db, uint64_t index, const json_t *cmd, uint64_t now_ms,
                  struct ferr *e)
{
    struct ferr le;
    const struct op *op = NULL;
    if (index <= db->applied_index)
        return ferr_set(e, FERR_STATE,
                        "cdb: entry %" PRIu64 " is not after the applied one (%" PRIu64 ")", index,
                        db->applied_index);
    ferr_clear(&le);
    int rc = cmd_check(cmd, &op, &le);
    if (rc == 0) {
        rc = op->apply(db, cmd, &le);
        if (rc < 0)
            ferr_prefix(&le, "%s", op->name);
    }
    if (rc == -ENOMEM) {
        ferr_set(e, rc, "cdb: out of memory applying entry %" PRIu64, index);
        return rc;
    }
    db->applied_index = index;
    db->applied_wall_ms = now_ms;
    if (rc < 0) {
        ferr_prefix(&le, "cdb");
        ferr_set(e, rc, "%s", le.msg);
    }
    return rc;
}

int cdb_apply(struct cdb *db, uint64_t index, const void *buf, size_t len, uint64_t now_ms,
              struct ferr *e)
{
    struct ferr le;
    json_t *cmd;
    if (index <= db->applied_index)
        return ferr_set(e, FERR_STATE,
                        "cdb: entry %" PRIu64 " is not after the applied one (%" PRIu64 ")", index,
                        db->applied_index);
    int rc = cdb_cmd_decode(buf, len, &cmd, &le);
    if (rc == -ENOMEM)
        return ferr_set(e, rc, "cdb: out of memory applying entry %" PRIu64, index);
    if (rc < 0) {
        /* Undecodable bytes are a rejected command like any other: every node sees them. */
        db->applied_index = index;
        db->applied_wall_ms = now_ms;
        ferr_set(e, rc, "%s", le.msg);
        return rc;
    }
    rc = cdb_apply_cmd(db, index, cmd, now_ms, e);
    json_decref(cmd);
    return rc;
}

/* ---- lifecycle ---- */

struct cdb *cdb_new(void)
{
    struct cdb *db = calloc(1, sizeof(*db));
    if (!db)
        return NULL;
    db->meta = json_object();
    db->nodes = json_object();
    db->vms = json_object();
    db->csvs = json_object();
    db->events = json_array();
    db->tasks = json_object();
    db->next_event_id = 1;
    if (!db->meta || !db->nodes || !db->vms || !db->csvs || !db->events || !db->tasks) {
        cdb_free(db);
        return NULL;
    }
    return db;
}

void cdb_free(struct cdb *db)
{
    if (!db)
        return;
    json_decref(db->meta);
    json_decref(db->nodes);
    json_decref(db->vms);
    json_decref(db->csvs);
    json_decref(db->events);
    json_decref(db->tasks);
    free(db);
}

void cdb_clear(struct cdb *db)
{
    json_object_clear(db->meta);
    json_object_clear(db->nodes);
    json_object_clear(db->vms);
    json_object_clear(db->csvs);
    json_array_clear(db->events);
    json_object_clear(db->tasks);
    db->next_event_id = 1;
    db->applied_index = 0;
    db->applied_wall_ms = 0;
}

uint64_t cdb_applied_index(const struct cdb *db)
{
    return db->applied_index;
}

uint64_t cdb_applied_wall_ms(const struct cdb *db)
{
    return db->applied_wall_ms;
}

int cdb_cmd_version_min(const struct cdb *db)
{
    int min = CDB_CMD_VERSION;
    bool any = false;
    const char *key;
    json_t *n;
    json_object_foreach(db->nodes, key, n)
    {
        int v = (int)int_of(n, "cmd_version");
        if (!any || v < min)
            min = v;
        any = true;
    }
    return min;
}

/* ---- queries ---- */

static int cmp_id(const void *a, const void *b)
{
    json_int_t x = int_of(*(json_t *const *)a, "id"), y = int_of(*(json_t *const *)b, "id");
    return x < y ? -1 : x > y;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(jfield_text(*(json_t *const *)a, "name"),
                  jfield_text(*(json_t *const *)b, "name"));
}

/* Deep copies of the values of obj passing keep (NULL: all), sorted by cmp, as an array. */
static json_t *sorted_copy(const json_t *obj, int (*cmp)(const void *, const void *),
                           bool (*keep)(const json_t *, const void *), const void *arg)
{
    size_t n = json_object_size(obj), k = 0;
    json_t **items = calloc(n ? n : 1, sizeof(*items));
    json_t *arr = json_array();
    const char *key;
    json_t *v;
    if (!items || !arr)
        goto fail;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!keep || keep(v, arg))
            items[k++] = v;
    }
    qsort(items, k, sizeof(*items), cmp);
    for (size_t i = 0; i < k; i++)
        if (json_array_append_new(arr, json_deep_copy(items[i])) < 0)
            goto fail;
    free(items);
    return arr;
fail:
    free(items);
    json_decref(arr);
    return NULL;
}

json_t *cdb_nodes(const struct cdb *db)
{
    return sorted_copy(db->nodes, cmp_id, NULL, NULL);
}

json_t *cdb_nodes_by_name(const struct cdb *db)
{
    return sorted_copy(db->nodes, cmp_name, NULL, NULL);
}

int cdb_node_get(const struct cdb *db, uint64_t id, json_t **out, struct ferr *e)
{
    json_t *n = node_by_id(db, id);
    if (!n)
        return ferr_set(e, FERR_NOTFOUND, "cdb: no node %" PRIu64, id);
    json_t *c = json_deep_copy(n);
    if (!c)
        return ferr_set(e, -ENOMEM, "cdb: out of memory");
    *out = c;
    return 0;
}

int cdb_node_find(const struct cdb *db, const char *name, json_t **out, struct ferr *e)
{
    char q[80];
    json_t *n = name ? node_by_name(db, name) : NULL;
    if (!n)
        return ferr_set(e, FERR_NOTFOUND, "cdb: no node named %s",
                        jfield_quote(name ? name : "", q, sizeof(q)));
    json_t *c = json_deep_copy(n);
    if (!c)
        return ferr_set(e, -ENOMEM, "cdb: out of memory");
    *out = c;
    return 0;
}

static bool owned_by(const json_t *vm, const void *owner)
{
    return strcmp(jfield_text(vm, "owner"), owner) == 0;
}

json_t *cdb_vms(const struct cdb *db, const char *owner)
{
    return sorted_copy(db->vms, cmp_name, owner ? owned_by : NULL, owner);
}

int cdb_vm_get(const struct cdb *db, const char *name, json_t **out, struct ferr *e)
{
    char q[80];
    json_t *v = name ? json_object_get(db->vms, name) : NULL;
    if (!v)
        return ferr_set(e, FERR_NOTFOUND, "cdb: no VM named %s",
                        jfield_quote(name ? name : "", q, sizeof(q)));
    json_t *c = json_deep_copy(v);
    if (!c)
        return ferr_set(e, -ENOMEM, "cdb: out of memory");
    *out = c;
    return 0;
}

uint64_t cdb_vm_epoch(const struct cdb *db, const char *name)
{
    json_t *v = name ? json_object_get(db->vms, name) : NULL;
    return (uint64_t)int_of(v, "epoch"); /* 0 without the VM or its epoch */
}

json_t *cdb_tasks(const struct cdb *db)
{
    json_t *arr = json_array();
    const char *id;
    json_t *t;
    json_object_foreach(db->tasks, id, t)
    {
        if (!arr || json_array_append_new(arr, json_deep_copy(t)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int cdb_task_get(const struct cdb *db, const char *id, json_t **out, struct ferr *e)
{
    json_t *t = id ? json_object_get(db->tasks, id) : NULL;
    if (!t)
        return ferr_set(e, FERR_NOTFOUND, "no task %s", id ? id : "");
    json_t *c = json_deep_copy(t);
    if (!c)
        return ferr_set(e, -ENOMEM, "out of memory");
    *out = c;
    return 0;
}

json_t *cdb_csvs(const struct cdb *db)
{
    return sorted_copy(db->csvs, cmp_name, NULL, NULL);
}

json_t *cdb_csv_holding(const struct cdb *db, const char *path)
{
    const char *name;
    json_t *v;
    json_object_foreach(db->csvs, name, v)
    {
        const char *dir = jfield_text(v, "path");
        if (*dir && strcmp(path, dir) != 0 && path_under(path, dir))
            return json_deep_copy(v);
    }
    return NULL;
}

json_t *cdb_csv_vms(const struct cdb *db, const char *name)
{
    json_t *v = json_object_get(db->csvs, name);
    return v ? vms_using(db, jfield_text(v, "path")) : json_array();
}

int cdb_csv_get(const struct cdb *db, const char *name, json_t **out, struct ferr *e)
{
    char q[80];
    json_t *v = name ? json_object_get(db->csvs, name) : NULL;
    if (!v)
        return ferr_set(e, FERR_NOTFOUND, "no cluster shared volume named %s (ferry csv list)",
                        jfield_quote(name ? name : "", q, sizeof(q)));
    if (!(*out = json_deep_copy(v)))
        return ferr_set(e, -ENOMEM, "cdb: out of memory");
    return 0;
}

json_t *cdb_events(const struct cdb *db, uint64_t since, size_t limit)
{
    json_t *arr = json_array();
    size_t i;
    json_t *ev;
    if (!arr)
        return NULL;
    json_array_foreach(db->events, i, ev)
    {
        if ((uint64_t)int_of(ev, "id") <= since)
            continue;
        if (limit && json_array_size(arr) >= limit)
            break;
        if (json_array_append_new(arr, json_deep_copy(ev)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *cdb_meta(const struct cdb *db)
{
    return json_deep_copy(db->meta);
}

const char *cdb_profile(const struct cdb *db)
{
    const char *p = json_string_value(json_object_get(db->meta, "profile"));
    return p ? p : TIMING_PROFILE_DEFAULT;
}

/* ---- snapshots ---- */

int cdb_snapshot(const struct cdb *db, char **out, size_t *len, struct ferr *e)
{
    json_t *nodes = cdb_nodes(db);
    json_t *vms = cdb_vms(db, NULL);
    json_t *csvs = cdb_csvs(db);
    json_t *snap = NULL;
    if (nodes && vms && csvs)
        snap =
            json_pack("{si sI sI sO so so sO}", "format", CDB_SNAPSHOT_FORMAT, "index",
                      (json_int_t)db->applied_index, "next_event_id", (json_int_t)db->next_event_id,
                      "meta", db->meta, "nodes", nodes, "vms", vms, "events", db->events);
    else {
        json_decref(nodes);
        json_decref(vms);
    }
    /* Volumes only when there are some: a reader of command version 3 knows no "csvs", and
     * there are none until every node applies version 4. */
    if (snap && json_array_size(csvs) > 0 && json_object_set(snap, "csvs", csvs) < 0) {
        json_decref(snap);
        snap = NULL;
    }
    json_decref(csvs);
    /* Tasks likewise: there are none until every node applies version 8. */
    json_t *tasks = snap ? cdb_tasks(db) : NULL;
    if (snap &&
        (!tasks || (json_array_size(tasks) > 0 && json_object_set(snap, "tasks", tasks) < 0))) {
        json_decref(snap);
        snap = NULL;
    }
    json_decref(tasks);
    char *text = snap ? json_dumps(snap, JSON_COMPACT) : NULL;
    json_decref(snap);
    if (!text)
        return ferr_set(e, -ENOMEM, "cdb: snapshot: out of memory");
    *out = text;
    *len = strlen(text);
    return 0;
}

/* Fills db (new, empty) from the parsed snapshot s of the given format, checking every
 * record; node records of format 1 are converted first (node_record_from_v1). */
static int restore_into(struct cdb *db, const json_t *s, json_int_t format, struct ferr *e)
{
    static const char *const fields[] = {"format", "index",  "next_event_id", "meta",  "nodes",
                                         "vms",    "events", "csvs",          "tasks", NULL};
    json_int_t index = 0, next = 0;
    size_t i;
    json_t *v;
    char key[24];
    int rc;
    if ((rc = check_fields(s, fields, e)) < 0 ||
        (rc = get_int(s, "index", true, 0, INT64_MAX, &index, NULL, e)) < 0 ||
        (rc = get_int(s, "next_event_id", true, 1, (json_int_t)CDB_ID_MAX + 1, &next, NULL, e)) < 0)
        return rc;
    json_t *meta = json_object_get(s, "meta");
    json_t *nodes = json_object_get(s, "nodes");
    json_t *vms = json_object_get(s, "vms");
    json_t *events = json_object_get(s, "events");
    if (!meta || !nodes || !vms || !events)
        return ferr_set(e, FERR_INVALID, "meta, nodes, vms and events are all required");
    if (!json_is_array(nodes) || !json_is_array(vms) || !json_is_array(events))
        return ferr_set(e, FERR_INVALID, "nodes, vms and events must be arrays");
    if ((rc = meta_record_check(meta, e)) < 0)
        return ferr_prefix(e, "meta");
    json_t *m = json_deep_copy(meta);
    if (!m)
        return ferr_set(e, -ENOMEM, "out of memory");
    json_decref(db->meta);
    db->meta = m;

    json_array_foreach(nodes, i, v)
    {
        json_t *rec = NULL;
        if (format == 1 && (rc = node_record_from_v1(v, &rec, e)) < 0)
            return ferr_prefix(e, "nodes[%zu]", i);
        if (!rec && !(rec = json_deep_copy(v)))
            return ferr_set(e, -ENOMEM, "out of memory");
        if ((rc = node_record_check(rec, e)) < 0) {
            json_decref(rec);
            return ferr_prefix(e, "nodes[%zu]", i);
        }
        const char *name = jfield_text(rec, "name");
        id_key((uint64_t)int_of(rec, "id"), key);
        if (json_object_get(db->nodes, key))
            rc = ferr_set(e, FERR_INVALID, "nodes[%zu]: id %s appears twice", i, key);
        else if (node_by_name(db, name))
            rc = ferr_set(e, FERR_INVALID, "nodes[%zu]: name \"%s\" appears twice", i, name);
        if (rc < 0) {
            json_decref(rec);
            return rc;
        }
        if (json_object_set_new(db->nodes, key, rec) < 0)
            return ferr_set(e, -ENOMEM, "out of memory");
    }
    json_array_foreach(vms, i, v)
    {
        if ((rc = vm_record_check(v, e)) < 0)
            return ferr_prefix(e, "vms[%zu]", i);
        const char *name = jfield_text(v, "name"), *owner = jfield_text(v, "owner");
        if (json_object_get(db->vms, name))
            return ferr_set(e, FERR_INVALID, "vms[%zu]: name \"%s\" appears twice", i, name);
        if (*owner && !node_by_name(db, owner))
            return ferr_set(e, FERR_INVALID, "vms[%zu]: owner \"%s\" is not a node", i, owner);
        if (json_object_set_new(db->vms, name, json_deep_copy(v)) < 0)
            return ferr_set(e, -ENOMEM, "out of memory");
    }
    json_t *csvs = json_object_get(s, "csvs");
    if (csvs && !json_is_array(csvs))
        return ferr_set(e, FERR_INVALID, "csvs must be an array");
    json_array_foreach(csvs, i, v)
    {
        if ((rc = csv_record_check(v, e)) < 0)
            return ferr_prefix(e, "csvs[%zu]", i);
        const char *name = jfield_text(v, "name"), *coord = jfield_text(v, "coordinator");
        if (json_object_get(db->csvs, name))
            return ferr_set(e, FERR_INVALID, "csvs[%zu]: name \"%s\" appears twice", i, name);
        if (!node_by_name(db, coord))
            return ferr_set(e, FERR_INVALID, "csvs[%zu]: coordinator \"%s\" is not a node", i,
                            coord);
        if (json_object_set_new(db->csvs, name, json_deep_copy(v)) < 0)
            return ferr_set(e, -ENOMEM, "out of memory");
    }
    json_t *tasks = json_object_get(s, "tasks");
    if (tasks && !json_is_array(tasks))
        return ferr_set(e, FERR_INVALID, "tasks must be an array");
    json_array_foreach(tasks, i, v)
    {
        if ((rc = taskrec_check(v, true, e)) < 0)
            return ferr_prefix(e, "tasks[%zu]", i);
        const char *id = jfield_text(v, "id");
        if (json_object_get(db->tasks, id))
            return ferr_set(e, FERR_INVALID, "tasks[%zu]: id \"%s\" appears twice", i, id);
        if (json_object_set_new(db->tasks, id, json_deep_copy(v)) < 0)
            return ferr_set(e, -ENOMEM, "out of memory");
    }
    if (json_array_size(events) > CDB_EVENTS_MAX)
        return ferr_set(e, FERR_INVALID, "events: %zu is more than %d", json_array_size(events),
                        CDB_EVENTS_MAX);
    json_int_t last = 0;
    json_array_foreach(events, i, v)
    {
        if ((rc = event_record_check(v, e)) < 0)
            return ferr_prefix(e, "events[%zu]", i);
        json_int_t id = int_of(v, "id");
        if (id <= last || id >= next)
            return ferr_set(e, FERR_INVALID,
                            "events[%zu]: id %" JSON_INTEGER_FORMAT " is out of order", i, id);
        last = id;
        if (json_array_append_new(db->events, json_deep_copy(v)) < 0)
            return ferr_set(e, -ENOMEM, "out of memory");
    }
    db->next_event_id = (uint64_t)next;
    db->applied_index = (uint64_t)index;
    return 0;
}

int cdb_restore(struct cdb *db, const void *buf, size_t len, uint64_t now_ms, struct ferr *e)
{
    struct ferr le;
    json_t *s = NULL;
    int lrc = load_padded(buf, len, CDB_SNAPSHOT_MAX, "snapshot", "restore", &s, e);
    if (lrc < 0)
        return lrc;
    json_t *f = json_is_object(s) ? json_object_get(s, "format") : NULL;
    if (!json_is_integer(f)) {
        json_decref(s);
        return ferr_set(e, FERR_INVALID, "cdb: not a cluster database snapshot (no format)");
    }
    json_int_t format = json_integer_value(f);
    if (format < CDB_SNAPSHOT_FORMAT_OLDEST || format > CDB_SNAPSHOT_FORMAT) {
        ferr_set(e, FERR_INVALID,
                 "cdb: snapshot format %" JSON_INTEGER_FORMAT " is not "
                 "supported (this node reads formats %d to %d)%s",
                 format, CDB_SNAPSHOT_FORMAT_OLDEST, CDB_SNAPSHOT_FORMAT,
                 format > CDB_SNAPSHOT_FORMAT ? ": upgrade ferry on this node" : "");
        json_decref(s);
        return FERR_INVALID;
    }
    struct cdb *fresh = cdb_new();
    if (!fresh) {
        json_decref(s);
        return ferr_set(e, -ENOMEM, "cdb: restore: out of memory");
    }
    int rc = restore_into(fresh, s, format, &le);
    json_decref(s);
    if (rc < 0) {
        cdb_free(fresh);
        ferr_prefix(&le, "cdb: snapshot");
        ferr_set(e, rc, "%s", le.msg);
        return rc;
    }
    /* Swap the contents so the caller's pointer stays valid. */
    struct cdb old = *db;
    *db = *fresh;
    *fresh = old;
    cdb_free(fresh);
    db->applied_wall_ms = now_ms;
    return 0;
}
