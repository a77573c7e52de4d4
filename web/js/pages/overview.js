// SPDX-License-Identifier: MIT
// Overview: the cluster (quorum, leader, term), a row per node, firing alerts, the task list
// and the newest events.
import { get } from "../api.js";
import { h, fill, badge, table, fmtMib, fmtMs, nodeHref, fmtCpu } from "../dom.js";
import { alerts, tasks, leaseAges, csvs } from "../data.js";
import { tasksTable, alertsList, eventsTable } from "../widgets.js";
import { events } from "../live.js";

export function mount(root) {
  const cluster = h("section.card#cluster", h("p", "Loading…"));
  const nodes = h("section.card", h("h2", "Nodes"), h("div#overview-nodes"));
  const al = h("section.card", h("h2", "Alerts"), h("div#alerts-box"));
  const ts = h("section.card", h("h2", "Tasks"), h("div#tasks-box"));
  const ev = h("section.card", h("h2", "Events"), h("div#events-box"));
  fill(root, h("h1", "Overview"), h("div.grid", cluster, al), nodes, ts, ev);

  async function refresh() {
    let status = null;
    try {
      status = await get("/v1/cluster/status");
    } catch (e) {
      if (e.status !== 409) throw e; // 409: not in a cluster
    }
    const [nl, vl, cl] = await Promise.all([get("/v1/nodes"), get("/v1/vms"), csvs()]);
    const [al2, ts2, ages] = await Promise.all([alerts(status, nl.nodes, vl.vms), tasks(vl.vms), leaseAges(cl)]);

    if (status) {
      fill(cluster, h("h2", `Cluster ${status.name || status.cluster_id}`), h("dl.facts",
        h("dt", "Quorum"), h("dd#quorum", badge(status.quorum ? "ok" : "false", status.quorum ? "" : "(no quorum)")),
        h("dt", "Leader"), h("dd#leader", status.leader ? status.leader.name : "none"),
        h("dt", "Term"), h("dd#term", String(status.term)),
        h("dt", "Voters"), h("dd", String(status.voters)),
        h("dt", "Profile"), h("dd", status.profile || "–"),
        h("dt", "Answering node"), h("dd", `${status.node_name} (${status.state}, data ${fmtMs(status.stale_ms)} old)`)));
    } else {
      fill(cluster, h("h2", "Single node"), h("p", "This ferryd is not in a cluster."));
    }
    const running = {};
    for (const v of vl.vms) if (v.state === "running") running[v.owner] = (running[v.owner] || 0) + 1;
    fill(nodes.querySelector("#overview-nodes"), table([
      { label: "Node", cell: (n) => h("a", { href: nodeHref(n.name) }, n.name, n.leader ? " ★" : "") },
      { label: "State", cell: (n) => badge(n.state) },
      { label: "Admin", cell: (n) => badge(n.admin) },
      { label: "Accel", cell: (n) => n.accel || "–" },
      { label: "CPU", cell: (n) => fmtCpu(n), class: "node-cpu" },
      { label: "Memory", cell: (n) => n.memory ? `${fmtMib(n.memory.used_mib)} / ${fmtMib(n.memory.total_mib)}` : "–" },
      { label: "VMs", cell: (n) => `${n.vms ?? 0} (${running[n.name] || 0} running)` },
      { label: "Heartbeat", cell: (n) => n.state === "down" ? "missing" : `${fmtMs(n.last_heartbeat_ms)} ago` },
      { label: "Late", cell: (n) => fmtMs(n.heartbeat_late_ms) },
      { label: "Lease age", cell: (n) => ages[n.name] === undefined ? "–" : fmtMs(ages[n.name]) },
    ], nl.nodes.slice().sort((a, b) => a.name.localeCompare(b.name)), { id: "nodes-table", key: (n) => n.name }));
    fill(al.querySelector("#alerts-box"), alertsList(al2.alerts, al2.derived));
    fill(ts.querySelector("#tasks-box"), tasksTable(ts2.tasks, ts2.derived));
    fill(ev.querySelector("#events-box"), eventsTable(events.recent().slice(0, 15)));
  }
  return { refresh };
}
