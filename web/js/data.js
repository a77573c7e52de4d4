// SPDX-License-Identifier: MIT
// Reads that several pages share: the cluster's alerts and tasks, with what the dashboard
// can tell by itself when this ferryd has no /v1/alerts or /v1/tasks (404).
import { get, getOptional, enc } from "./api.js";
import { events } from "./live.js";

/**
 * The firing alerts: ferryd's GET /v1/alerts, or (without that route) the ones the
 * dashboard derives from the cluster status, the nodes and the VMs it already read.
 * Resolves to {alerts: [{name, severity, subject, since, message}], derived: bool}.
 */
export async function alerts(status, nodes, vms) {
  const r = await getOptional("/v1/alerts");
  if (r) return { alerts: r.alerts || [], derived: false };
  const out = [];
  if (status && !status.quorum) {
    out.push({ name: "QuorumLost", severity: "critical", subject: status.name || "cluster",
      since: null, message: `${status.node_name} sees no quorum (state ${status.state})` });
  }
  for (const n of nodes || []) {
    if (n.state === "down") {
      out.push({ name: "NodeDown", severity: "critical", subject: n.name,
        since: n.state_changed_ms || null, message: `${n.name} misses its heartbeats` });
    }
  }
  for (const v of vms || []) {
    if (v.state === "failed") {
      out.push({ name: "VMFailed", severity: "warning", subject: v.name, since: null,
        message: v.reason || `${v.name} failed` });
    }
  }
  return { alerts: out, derived: true };
}

// VMs whose migration the events say started and did not end.
function migratingFromEvents() {
  const open = new Map();
  for (const e of events.recent().slice().reverse()) {
    if (!e.vm) continue;
    if (e.type === "vm.migrating") open.set(e.vm, e);
    else if (/^vm\.(migrated|migrate_failed|migrate_cancelled|migration|migrated_in|migrate_aborted)$/.test(e.type)) open.delete(e.vm);
  }
  return [...open.keys()];
}

/**
 * The task list: ferryd's GET /v1/tasks, or (without it) the running migrations, read from
 * the VMs' migration endpoints. Resolves to {tasks: [...], derived: bool}.
 */
export async function tasks(vms) {
  const r = await getOptional("/v1/tasks");
  if (r) return { tasks: r.tasks || [], derived: false };
  const names = new Set(migratingFromEvents());
  for (const v of vms || []) if (v.state === "migrating" || v.migrating) names.add(v.name);
  const out = [];
  await Promise.all([...names].map(async (name) => {
    try {
      const m = await get(`/v1/vms/${enc(name)}/migration`);
      const mem = m.memory || {};
      const pct = mem.total ? (100 * (mem.total - mem.remaining)) / mem.total : 0;
      out.push({ id: `migration:${name}`, kind: "migrate", target: name, node: m.from,
        state: "running", phase: m.status, percent: Math.round(pct), started: Date.now() - (m.elapsed_ms || 0),
        ended: null, result: null });
    } catch (_) {
      // not migrating (any more)
    }
  }));
  return { tasks: out, derived: true };
}

/** Lease ages per node, the oldest over all volumes: {node: ms}. */
export async function leaseAges(csvs) {
  const ages = {};
  await Promise.all((csvs || []).map(async (c) => {
    try {
      const d = await get(`/v1/csvs/${enc(c.name)}`);
      for (const n of d.nodes || []) {
        if (n.lease_age_ms === null || n.lease_age_ms === undefined) continue;
        ages[n.node] = Math.max(ages[n.node] ?? 0, n.lease_age_ms);
      }
    } catch (_) {
      // a volume that does not answer has no ages to show
    }
  }));
  return ages;
}

/** The optional list, or an empty one outside a cluster (409) or without the route. */
export async function csvs() {
  try {
    return (await get("/v1/csvs")).csvs || [];
  } catch (e) {
    if (e.status === 409 || e.status === 404) return [];
    throw e;
  }
}
