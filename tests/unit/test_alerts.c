/* SPDX-License-Identifier: MIT */
/* Unit tests of the dashboard's alerts (api/alerts.c): each rule, pending then firing after
 * its hold time on a fake clock, since, forgetting, order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "api/alerts.h"

static struct alerts a;

static json_t *j(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v)
        fail_msg("bad fixture: %s", je.text);
    return v;
}

/* The alert named name for subject in out, or NULL. */
static json_t *find(json_t *out, const char *name, const char *subject)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(out, "alerts"), i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "name")), name) == 0 &&
            strcmp(json_string_value(json_object_get(x, "subject")), subject) == 0)
            return x;
    }
    return NULL;
}

static const char *state_of(json_t *x)
{
    return json_string_value(json_object_get(x, "state"));
}

static void test_healthy_cluster_has_none(void **state)
{
    alerts_init(&a);
    json_t *nodes =
        j("[{\"name\": \"n1\", \"state\": \"up\"}, {\"name\": \"n2\", \"state\": \"up\"}]");
    json_t *vms = j("[{\"name\": \"v1\", \"state\": \"running\", \"owner\": \"n1\","
                    "  \"spec\": {\"ha\": {\"priority\": \"high\"}}},"
                    " {\"name\": \"v2\", \"state\": \"stopped\", \"owner\": \"n2\","
                    "  \"spec\": {\"ha\": {\"priority\": \"high\"}}}]");
    json_t *vols = j("[{\"name\": \"csv1\", \"access\": \"direct\", \"leases\": {\"n1\": 900}}]");
    struct alert_input in = {"n1", true, true, true, false, nodes, vms, vols};
    json_t *out = alerts_eval(&a, &in, 1000);
    assert_int_equal(json_array_size(json_object_get(out, "alerts")), 0);
    assert_int_equal(a.n, 0);
    json_decref(out);
    json_decref(nodes);
    json_decref(vms);
    json_decref(vols);
}

static void test_node_down_pending_then_firing(void **state)
{
    alerts_init(&a);
    /* n2 went down at 1000 s (the cluster's record), seen at 1010 s: pending until 1030 s. */
    json_t *nodes = j("[{\"name\": \"n1\", \"state\": \"up\"},"
                      " {\"name\": \"n2\", \"state\": \"down\", \"state_changed_ms\": 1000000}]");
    json_t *vms =
        j("[{\"name\": \"v1\", \"state\": \"running\", \"owner\": \"n2\","
          "  \"spec\": {\"ha\": {\"priority\": \"medium\"}}},"
          " {\"name\": \"v3\", \"state\": \"running\", \"owner\": \"n2\", \"spec\": {}}]");
    struct alert_input in = {"n1", true, true, true, false, nodes, vms, NULL};
    json_t *out = alerts_eval(&a, &in, 1010);
    json_t *x = find(out, "NodeDown", "n2");
    assert_non_null(x);
    assert_string_equal(state_of(x), "pending");
    assert_int_equal(json_integer_value(json_object_get(x, "since")), 1000);
    assert_string_equal(json_string_value(json_object_get(x, "severity")), "critical");
    assert_non_null(strstr(json_string_value(json_object_get(x, "message")), "n2 is down"));
    /* Its HA VM does not run (its node is down); a VM without HA is no alert. */
    json_t *h = find(out, "HAVMNotRunning", "v1");
    assert_non_null(h);
    assert_string_equal(state_of(h), "pending");
    assert_int_equal(json_integer_value(json_object_get(h, "since")), 1010);
    assert_null(find(out, "HAVMNotRunning", "v3"));
    json_decref(out);
    out = alerts_eval(&a, &in, 1030);
    assert_string_equal(state_of(find(out, "NodeDown", "n2")), "firing");
    assert_string_equal(state_of(find(out, "HAVMNotRunning", "v1")), "pending");
    json_decref(out);
    out = alerts_eval(&a, &in, 1130);
    assert_string_equal(state_of(find(out, "HAVMNotRunning", "v1")), "firing");
    assert_int_equal(
        json_integer_value(json_object_get(find(out, "HAVMNotRunning", "v1"), "since")), 1010);
    json_decref(out);
    /* n2 is back and v1 runs: both forgotten; a new outage starts its own clock. */
    json_decref(nodes);
    nodes = j("[{\"name\": \"n1\", \"state\": \"up\"}, {\"name\": \"n2\", \"state\": \"up\"}]");
    in.nodes = nodes;
    out = alerts_eval(&a, &in, 1200);
    assert_int_equal(json_array_size(json_object_get(out, "alerts")), 0);
    assert_int_equal(a.n, 0);
    json_decref(out);
    json_decref(nodes);
    nodes = j("[{\"name\": \"n1\", \"state\": \"up\"}, {\"name\": \"n2\", \"state\": \"down\"}]");
    in.nodes = nodes;
    out = alerts_eval(&a, &in, 1300);
    assert_int_equal(json_integer_value(json_object_get(find(out, "NodeDown", "n2"), "since")),
                     1300);
    assert_string_equal(state_of(find(out, "NodeDown", "n2")), "pending");
    json_decref(out);
    json_decref(nodes);
    json_decref(vms);
}

static void test_quorum_leader_fenced_failed_volumes(void **state)
{
    alerts_init(&a);
    json_t *nodes = j("[{\"name\": \"n1\", \"state\": \"up\"}]");
    json_t *vms = j("[{\"name\": \"bad\", \"state\": \"failed\", \"owner\": \"n1\","
                    "  \"reason\": \"QEMU exited with 1\", \"spec\": {}}]");
    json_t *vols = j("[{\"name\": \"csv1\", \"access\": \"none\","
                     "  \"leases\": {\"n1\": 1000, \"n2\": 7000}}]");
    struct alert_input in = {"n1", true, false, false, true, nodes, vms, vols};
    json_t *out = alerts_eval(&a, &in, 500);
    json_t *alerts = json_object_get(out, "alerts");
    assert_string_equal(state_of(find(out, "QuorumLost", "n1")), "pending");
    assert_string_equal(state_of(find(out, "NoLeader", "cluster")), "pending");
    assert_string_equal(state_of(find(out, "NodeFenced", "n1")), "firing");
    json_t *f = find(out, "VMFailed", "bad");
    assert_string_equal(state_of(f), "firing");
    assert_string_equal(json_string_value(json_object_get(f, "severity")), "warning");
    assert_non_null(strstr(json_string_value(json_object_get(f, "message")), "QEMU exited"));
    assert_string_equal(state_of(find(out, "VolumeDegraded", "csv1 on n1")), "pending");
    assert_string_equal(state_of(find(out, "LeaseStale", "n2 on csv1")), "pending");
    assert_null(find(out, "LeaseStale", "n1 on csv1"));
    /* Critical first, then by name. */
    const char *want[] = {"NoLeader",       "NodeFenced", "QuorumLost",
                          "VolumeDegraded", "LeaseStale", "VMFailed"};
    assert_int_equal(json_array_size(alerts), 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(alerts, i), "name")),
                            want[i]);
    json_decref(out);
    out = alerts_eval(&a, &in, 560);
    assert_string_equal(state_of(find(out, "VolumeDegraded", "csv1 on n1")), "firing");
    assert_string_equal(state_of(find(out, "QuorumLost", "n1")), "firing");
    json_decref(out);
    /* Alone (no cluster): no cluster alerts, a failed VM still is one. */
    in.clustered = false;
    in.fenced = false;
    out = alerts_eval(&a, &in, 600);
    assert_null(find(out, "QuorumLost", "n1"));
    assert_null(find(out, "NoLeader", "cluster"));
    assert_non_null(find(out, "VMFailed", "bad"));
    json_decref(out);
    json_decref(nodes);
    json_decref(vms);
    json_decref(vols);
}

static void test_table_is_bounded(void **state)
{
    alerts_init(&a);
    char buf[64];
    json_t *vms = json_array();
    for (int i = 0; i < ALERTS_MAX + 10; i++) {
        snprintf(buf, sizeof(buf), "vm%03d", i);
        json_array_append_new(vms, json_pack("{s:s, s:s}", "name", buf, "state", "failed"));
    }
    struct alert_input in = {"n1", false, false, false, false, NULL, vms, NULL};
    json_t *out = alerts_eval(&a, &in, 10);
    assert_int_equal(json_array_size(json_object_get(out, "alerts")), ALERTS_MAX + 10);
    assert_int_equal(a.n, ALERTS_MAX);
    json_decref(out);
    json_decref(vms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_cluster_has_none),
        cmocka_unit_test(test_node_down_pending_then_firing),
        cmocka_unit_test(test_quorum_leader_fenced_failed_volumes),
        cmocka_unit_test(test_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
