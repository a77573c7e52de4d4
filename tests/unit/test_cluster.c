/* SPDX-License-Identifier: MIT */
/* A one-node cluster in this process (cluster.h): init, writes, waits woken by applies, events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/http.h"
#include "cluster/cdb.h"
#include "cluster/certs.h"
#include "cluster/cluster.h"
#include "common/util.h"
#include "host/events.h"

static uv_loop_t loop;
static char dir[64];
static struct events *events;
static struct cluster *cl; /* NULL once closed */

/* ---- the loop ---- */

/* Runs the loop until *done or ms passed; returns *done. Raft's and the cluster's timers wake
 * the loop every 100 ms at the latest. */
static bool run_until(const bool *done, unsigned ms)
{
    uint64_t end = now_mono_ms() + ms;
    while (!*done && now_mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    return *done;
}

/* A loopback port nobody listens on. */
static int unused_port(void)
{
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    int len = sizeof(sa);
    uv_tcp_init(&loop, &tcp);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&sa, &len), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ntohs(sa.sin_port);
}

/* An answer of the cluster (cluster_reply_cb). */
struct answer {
    bool done;
    int status; /* the HTTP-like status, or the error's code */
    json_t *body;
};

static void answered(int status, json_t *body, const struct ferr *e, void *data)
{
    struct answer *a = data;
    a->done = true;
    a->status = e ? e->code : status;
    a->body = body;
    if (e)
        print_message("cluster answered %d: %s\n", e->code, e->msg);
}

/* A wait (cluster_wait_until) for a VM record or an event type to show up. */
struct wait {
    const char *vm;    /* a VM's name, or */
    const char *event; /* an event's type */
    int asked;         /* times the predicate ran */
    bool done;
    int status;
    uint64_t at; /* monotonic ms when cb ran */
};

static bool shows(const struct cdb *db, void *data)
{
    struct wait *w = data;
    json_t *rec = NULL;
    bool found = false;
    w->asked++;
    if (db && w->vm) {
        found = cdb_vm_get(db, w->vm, &rec, NULL) == 0;
    } else if (db) {
        size_t i;
        json_t *ev;
        rec = cdb_events(db, 0, 0);
        json_array_foreach(rec, i, ev)
        {
            found = found || strcmp(json_string_value(json_object_get(ev, "type")), w->event) == 0;
        }
    }
    json_decref(rec);
    return found;
}

static void waited(int status, void *data)
{
    struct wait *w = data;
    w->done = true;
    w->status = status;
    w->at = now_mono_ms();
}

/* The event of that type, new JSON; NULL if none. */
static json_t *event_of(const char *type)
{
    json_t *evs = cdb_events(cluster_db(cl), 0, 0), *found = NULL, *ev;
    size_t i;
    json_array_foreach(evs, i, ev)
    {
        if (!found && strcmp(json_string_value(json_object_get(ev, "type")), type) == 0)
            found = json_incref(ev);
    }
    json_decref(evs);
    return found;
}

/* ---- fixture: "ferry cluster init" on a fresh state dir ---- */

/* Opens node n1 on state_dir (a member if it holds cluster.json, else not). */
static struct cluster *open_node(const char *state_dir)
{
    struct ferr e;
    struct cluster *c = NULL;
    struct cluster_config cfg = {.heartbeat_ms = CLUSTER_HEARTBEAT_MS,
                                 .down_after = CLUSTER_DOWN_AFTER};
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", state_dir);
    snprintf(cfg.node_name, sizeof(cfg.node_name), "n1");
    snprintf(cfg.api_addr, sizeof(cfg.api_addr), "127.0.0.1:%d", unused_port());
    snprintf(cfg.raft_addr, sizeof(cfg.raft_addr), "127.0.0.1:%d", unused_port());
    if (cluster_open(&loop, &cfg, events, &c, &e) < 0)
        fail_msg("cluster_open: %s", e.msg);
    return c;
}

static void closed(void *data)
{
    *(bool *)data = true;
}

static int group_setup(void **state)
{
    (void)state;
    struct ferr e;
    char path[128];
    signal(SIGPIPE, SIG_IGN); /* as ferryd does; raftnode insists */
    assert_int_equal(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/ferry-cluster-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/events.log", dir);
    assert_int_equal(events_open(path, 100, &events, &e), 0);
    cl = open_node(dir);
    struct answer a = {0};
    if (cluster_init(cl, "lab", answered, &a, &e) < 0)
        fail_msg("cluster_init: %s", e.msg);
    assert_true(run_until(&a.done, 10000));
    assert_int_equal(a.status, 201);
    assert_string_equal(json_string_value(json_object_get(a.body, "name")), "lab");
    json_decref(a.body);
    assert_true(cluster_active(cl));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bool done = false;
    if (cl)
        cluster_close(cl, closed, &done);
    run_until(&done, 5000);
    events_close(events);
    uv_run(&loop, UV_RUN_NOWAIT);
    rm_rf(dir);
    return uv_loop_close(&loop) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* A wait is asked after the call returns, and again when this node applies the write that
 * makes it true: well before its deadline, without polling. */
static void test_apply_wakes_wait(void **state)
{
    (void)state;
    struct ferr e;
    struct wait w = {.vm = "web1"};
    assert_int_equal(cluster_wait_until(cl, shows, 3000, waited, &w, &e), 0);
    assert_int_equal(w.asked, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(w.asked, 1);
    assert_false(w.done);

    uint64_t start = now_mono_ms();
    struct answer a = {0};
    json_t *cmd = cdb_cmd_vm_put("web1", json_pack("{s:s}", "name", "web1"), "n1", "running");
    assert_int_equal(cluster_write(cl, cmd, answered, &a, &e), 0);
    json_decref(cmd);
    assert_true(run_until(&w.done, 5000));
    assert_int_equal(w.status, 0);
    assert_true(w.at - start < 1000);
    assert_true(run_until(&a.done, 5000));
    assert_int_equal(a.status, 200);
    assert_true(json_integer_value(json_object_get(a.body, "index")) > 0);
    json_decref(a.body);
}

/* A wait that never holds ends at its deadline, not before. */
static void test_wait_times_out(void **state)
{
    (void)state;
    struct ferr e;
    struct wait w = {.vm = "never"};
    uint64_t start = now_mono_ms();
    assert_int_equal(cluster_wait_until(cl, shows, 300, waited, &w, &e), 0);
    assert_true(run_until(&w.done, 5000));
    assert_int_equal(w.status, FERR_TIMEOUT);
    assert_true(w.at - start >= 300);
    assert_true(w.at - start < 2000);
}

/* cluster_event_add writes an event of this node with the formatted message; a message over
 * cdb's limit is refused whole (logged), never cut. */
static void test_event_add(void **state)
{
    (void)state;
    struct ferr e;
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cluster_event_add(cl, "test.big", NULL, "%s", big);
    cluster_event_add(cl, "test.note", "web1", "hello %d", 42);
    struct wait w = {.event = "test.note"};
    assert_int_equal(cluster_wait_until(cl, shows, 3000, waited, &w, &e), 0);
    assert_true(run_until(&w.done, 5000));
    assert_int_equal(w.status, 0);
    json_t *ev = event_of("test.note");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "message")), "hello 42");
    assert_string_equal(json_string_value(json_object_get(ev, "node")), "n1");
    assert_string_equal(json_string_value(json_object_get(ev, "vm")), "web1");
    json_decref(ev);
    assert_null(event_of("test.big"));
}

/* The secret (which every member holds) makes a peer anywhere, the join token a joiner on the
 * join path only; both are whole-string matches. Both are in cluster.json. */
static void test_authorize(void **state)
{
    (void)state;
    char path[128], *text = NULL;
    struct ferr e;
    snprintf(path, sizeof(path), "%s/cluster.json", dir);
    assert_int_equal(file_read_all(path, 65536, &text, NULL, &e), 0);
    json_t *saved = json_loads(text, 0, NULL);
    free(text);
    const char *secret = json_string_value(json_object_get(saved, "secret"));
    const char *token = json_string_value(json_object_get(saved, "token"));
    assert_non_null(secret);
    assert_non_null(token);
    assert_true(cluster_secret_matches(cl, secret));
    assert_false(cluster_secret_matches(cl, token));
    assert_true(cluster_join_token_matches(cl, token));
    assert_false(cluster_join_token_matches(cl, secret));
    char longer[128];
    snprintf(longer, sizeof(longer), "%sx", secret);
    assert_false(cluster_secret_matches(cl, longer));
    longer[strlen(secret) - 1] = '\0'; /* one short */
    assert_false(cluster_secret_matches(cl, longer));
    assert_false(cluster_secret_matches(cl, ""));
    assert_false(cluster_secret_matches(cl, NULL));

    assert_int_equal(api_authorize("/v1/vms", secret, cl), HTTP_PRINCIPAL_PEER);
    assert_int_equal(api_authorize("/v1/internal/join", secret, cl), HTTP_PRINCIPAL_PEER);
    assert_int_equal(api_authorize("/v1/internal/join", token, cl), HTTP_PRINCIPAL_JOINER);
    assert_int_equal(api_authorize("/v1/internal/apply", token, cl), HTTP_PRINCIPAL_NONE);
    assert_int_equal(api_authorize("/v1/internal/join", "nope", cl), HTTP_PRINCIPAL_NONE);
    json_decref(saved);

    /* Outside a cluster nothing matches, not even an empty secret. */
    snprintf(path, sizeof(path), "%s/outside", dir);
    assert_int_equal(mkdir_p(path, 0700, &e), 0);
    struct cluster *outside = open_node(path);
    bool done = false;
    assert_false(cluster_active(outside));
    assert_false(cluster_secret_matches(outside, ""));
    assert_false(cluster_join_token_matches(outside, ""));
    assert_int_equal(api_authorize("/v1/internal/join", "", outside), HTTP_PRINCIPAL_NONE);
    cluster_close(outside, closed, &done);
    assert_true(run_until(&done, 5000));
}

static unsigned tls_changes;

static void count_tls_change(void *data)
{
    (void)data;
    tls_changes++;
}

/* TLS through a node's life: its own CA before, a new cluster CA at init (the token pins it),
 * its own again after it left; a join token without a pin is refused and changes nothing. */
static void test_init_and_leave_change_the_ca(void **state)
{
    (void)state;
    char path[160], fp0[PKI_FINGERPRINT_SIZE], fp1[PKI_FINGERPRINT_SIZE];
    struct ferr e = {0};
    snprintf(path, sizeof(path), "%s/tlsnode", dir);
    assert_int_equal(mkdir_p(path, 0700, &e), 0);
    char tlsdir[200];
    snprintf(tlsdir, sizeof(tlsdir), "%s/tls", path);
    const char *addrs[] = {"127.0.0.1"};
    struct certs *certs;
    assert_int_equal(certs_open(tlsdir, "n1", addrs, 1, &certs, &e), 0);
    snprintf(fp0, sizeof(fp0), "%s", certs_ca_fingerprint(certs));

    struct cluster *c = NULL;
    struct cluster_config cfg = {.heartbeat_ms = CLUSTER_HEARTBEAT_MS,
                                 .down_after = CLUSTER_DOWN_AFTER,
                                 .certs = certs,
                                 .tls_changed = count_tls_change};
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", path);
    snprintf(cfg.node_name, sizeof(cfg.node_name), "n1");
    snprintf(cfg.api_addr, sizeof(cfg.api_addr), "127.0.0.1:%d", unused_port());
    snprintf(cfg.raft_addr, sizeof(cfg.raft_addr), "127.0.0.1:%d", unused_port());
    assert_int_equal(cluster_open(&loop, &cfg, events, &c, &e), 0);
    assert_string_equal(cluster_ca(c), certs_ca(certs));

    /* a token without the CA's pin: refused at once, nothing changes */
    assert_int_equal(cluster_join(c, "127.0.0.1:1", "00112233", answered, NULL, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "no CA fingerprint"));
    assert_string_equal(certs_ca_fingerprint(certs), fp0);
    assert_int_equal(tls_changes, 0);

    struct answer a = {0};
    assert_int_equal(cluster_init(c, "tlslab", answered, &a, &e), 0);
    assert_true(run_until(&a.done, 10000));
    assert_int_equal(a.status, 201);
    snprintf(fp1, sizeof(fp1), "%s", certs_ca_fingerprint(certs));
    assert_string_not_equal(fp1, fp0);
    assert_int_equal(tls_changes, 1);
    const char *token = json_string_value(json_object_get(a.body, "token"));
    char secret[100], pin[CERTS_PIN_HEX + 1];
    assert_int_equal(certs_token_split(token, secret, sizeof(secret), pin, &e), 0);
    assert_true(certs_pin_matches(pin, fp1));
    assert_true(cluster_join_token_matches(c, secret));
    assert_false(cluster_join_token_matches(c, token)); /* the bearer is the secret alone */
    assert_string_equal(json_string_value(json_object_get(a.body, "ca_fingerprint")), fp1);
    json_decref(a.body);
    json_t *tls = cluster_tls_info(c);
    assert_string_equal(json_string_value(json_object_get(tls, "ca_fingerprint")), fp1);
    json_decref(tls);

    struct answer l = {0};
    assert_int_equal(cluster_leave(c, answered, &l, &e), 0);
    assert_true(run_until(&l.done, 10000));
    assert_int_equal(l.status, 200);
    json_decref(l.body);
    assert_int_equal(tls_changes, 2);
    assert_string_not_equal(certs_ca_fingerprint(certs), fp1);
    assert_string_not_equal(certs_ca_fingerprint(certs), fp0);
    assert_int_equal(pki_verify(certs_ca(certs), certs_node_cert(certs), "127.0.0.1", &e), 0);

    bool done = false;
    cluster_close(c, closed, &done);
    assert_true(run_until(&done, 5000));
    certs_free(certs);
}

/* Closing answers every wait at once with -ECANCELED; no new wait is taken. */
static void test_close_cancels_waits(void **state)
{
    (void)state;
    struct ferr e;
    struct wait w = {.vm = "never"};
    bool done = false;
    assert_int_equal(cluster_wait_until(cl, shows, 60000, waited, &w, &e), 0);
    cluster_close(cl, closed, &done);
    assert_true(w.done);
    assert_int_equal(w.status, -ECANCELED);
    struct wait late = {.vm = "never"};
    assert_int_equal(cluster_wait_until(cl, shows, 100, waited, &late, &e), -ECANCELED);
    assert_true(run_until(&done, 5000));
    cl = NULL;
    assert_false(late.done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_wakes_wait),
        cmocka_unit_test(test_wait_times_out),
        cmocka_unit_test(test_event_add),
        cmocka_unit_test(test_authorize),
        cmocka_unit_test(test_close_cancels_waits),
        cmocka_unit_test(test_init_and_leave_change_the_ca),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
