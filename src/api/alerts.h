/* SPDX-License-Identifier: MIT */
/* The alerts the dashboard shows, computed by ferryd from what it knows now, with the names,
 * severities and hold times of contrib/prometheus/ferry.rules.yml. Pure: the caller gathers
 * the inputs and passes the clock; the table remembers since when each alert holds. */
#ifndef FERRY_API_ALERTS_H
#define FERRY_API_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ALERTS_MAX 256             /* alerts tracked at once; more are reported without memory */
#define ALERTS_LEASE_STALE_MS 5000 /* LeaseStale: ferry_csv_lease_age_seconds > 5 */

struct alert_input {
    const char *node;    /* this node's name */
    bool clustered;      /* the node is in a cluster (else no cluster alerts) */
    bool has_leader;     /* this node knows a leader */
    bool quorum;         /* this node hears a leader recently, or leads */
    bool fenced;         /* this node fenced itself */
    const json_t *nodes; /* cluster_nodes()'s "nodes": [{"name", "state", "state_changed_ms"}] */
    const json_t *vms;   /* fleet_list()'s "vms": [{"name", "state", "owner", "reason", "spec"}] */
    const json_t *volumes; /* volumes_local_view(): [{"name", "access", "leases": {NODE: ms}}] */
};

struct alerts {
    struct {
        char key[160]; /* name, NUL, subject */
        uint64_t since_s;
    } seen[ALERTS_MAX];
    unsigned n;
};

void alerts_init(struct alerts *a);
/*
 * Evaluates the rules at now_s (unix seconds) and returns {"alerts": [{"name", "severity",
 * "subject", "since", "message", "state": "pending"|"firing"}]} (new JSON; NULL only when out of
 * memory), sorted by severity (critical first), then name and subject. An alert is "pending"
 * until it held for its rule's "for" time (NodeDown 30 s, QuorumLost 30 s, NoLeader 30 s,
 * HAVMNotRunning 2 min, VolumeDegraded 1 min, LeaseStale 30 s; VMFailed and NodeFenced at once),
 * then "firing"; "since" is when it began: a down node's state change as the cluster recorded
 * it, else when this table first saw it. Alerts no longer seen are forgotten.
 */
json_t *alerts_eval(struct alerts *a, const struct alert_input *in, uint64_t now_s);

#endif
