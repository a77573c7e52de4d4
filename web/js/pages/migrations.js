// SPDX-License-Identifier: MIT
// Migrations and failovers: the cluster's migration records (blackout, total time, bytes,
// client gap), a chart of blackouts over time, and the failovers with their timelines.
import { get } from "../api.js";
import { h, fill, badge, table, fmtMs, fmtBytes, fmtTime, vmHref } from "../dom.js";
import { scatter } from "../chart.js";
import { events } from "../live.js";

export function migrationsTable(list, attrs = { id: "migrations-table" }) {
  return table([
    { label: "When", cell: (m) => fmtTime(m.time_ms) },
    { label: "VM", cell: (m) => h("a", { href: vmHref(m.vm) }, m.vm) },
    { label: "From → to", cell: (m) => `${m.from} → ${m.to}` },
    { label: "Status", cell: (m) => badge(m.status) },
    { label: "Strategy", cell: (m) => m.strategy || "–" },
    { label: "Blackout", cell: (m) => fmtMs(m.downtime_ms), class: "num" },
    { label: "Client gap", cell: (m) => fmtMs(m.client_gap_ms), class: "num" },
    { label: "Total", cell: (m) => fmtMs(m.total_ms), class: "num" },
    { label: "Bytes", cell: (m) => fmtBytes(m.bytes), class: "num" },
    { label: "Passes", cell: (m) => String(m.passes ?? "–"), class: "num" },
    { label: "Error", cell: (m) => m.error || "", class: "wrap" },
  ], list, { ...attrs, key: (m) => m.id }, "no migrations recorded");
}

export function mount(root) {
  const chart = h("div#blackout-chart");
  const mig = h("div#migrations");
  const fo = h("div#failovers");
  fill(root, h("h1", "Migrations and failovers"),
    h("section.card", h("h2", "Blackouts over time"), h("p.note",
      "QEMU's downtime of each completed migration, and the longest gap a client of the VM saw when measured."), chart),
    h("section.card", h("h2", "Migrations"), mig),
    h("section.card", h("h2", "Failovers"), fo));

  async function refresh() {
    const [ml, vl] = await Promise.all([get("/v1/migrations"), get("/v1/vms")]);
    const list = ml.migrations || [];
    const done = list.filter((m) => m.status === "completed");
    fill(chart, scatter([
      { name: "blackout (QEMU)", class: "s1", points: done.filter((m) => m.downtime_ms !== null)
        .map((m) => ({ t: m.time_ms, v: m.downtime_ms, label: `${m.vm} ${m.from}→${m.to}: ${fmtMs(m.downtime_ms)}` })) },
      { name: "client gap", class: "s2", points: list.filter((m) => m.client_gap_ms !== null && m.client_gap_ms !== undefined)
        .map((m) => ({ t: m.time_ms, v: m.client_gap_ms, label: `${m.vm} client gap ${fmtMs(m.client_gap_ms)}` })) },
    ]));
    fill(mig, migrationsTable(list));
    // Failovers: the VMs' last failover records, and the failover events this node saw.
    const rows = vl.vms.filter((v) => v.failover).map((v) => ({ vm: v.name, ...v.failover, started_ms: v.started_ms, net_ms: v.net_ms }));
    const evs = events.recent().filter((e) => e.type.startsWith("vm.failover") || e.type === "node.down" || e.type === "node.fenced");
    fill(fo, table([
      { label: "VM", cell: (f) => h("a", { href: vmHref(f.vm) }, f.vm) },
      { label: "From → to", cell: (f) => `${f.from} → ${f.to}` },
      { label: "Why", cell: (f) => f.why || "–", class: "wrap" },
      { label: "Marked down", cell: (f) => fmtTime(f.down_ms) },
      { label: "Leases stale", cell: (f) => f.stale_ms && f.down_ms ? `+${fmtMs(f.stale_ms - f.down_ms)}` : "–" },
      { label: "Decided", cell: (f) => f.decided_ms && f.down_ms ? `+${fmtMs(f.decided_ms - f.down_ms)}` : "–" },
      { label: "QEMU started", cell: (f) => f.started_ms && f.down_ms && f.started_ms >= f.down_ms ? `+${fmtMs(f.started_ms - f.down_ms)}` : "–" },
      { label: "Guest network", cell: (f) => f.net_ms && f.down_ms && f.net_ms >= f.down_ms ? `+${fmtMs(f.net_ms - f.down_ms)}` : "–" },
    ], rows, { id: "failovers-table", key: (f) => f.vm }, "no failovers"),
    evs.length ? [h("h3", "Failover events"), table([
      { label: "Time", cell: (e) => fmtTime(e.time_ms) },
      { label: "Type", cell: (e) => e.type },
      { label: "VM", cell: (e) => e.vm || "–" },
      { label: "Message", cell: (e) => e.message, class: "wrap" },
    ], evs.slice(0, 30), { id: "failover-events" })] : null);
  }
  return { refresh };
}
