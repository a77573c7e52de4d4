// SPDX-License-Identifier: MIT
// Nodes: each node's state and load (CPUs, load average, CPU use, memory), drain (live-migrates
// its VMs away, then pauses it) and resume, with the drain's progress (VMs left on the node)
// while it runs. One node's page (#/nodes/NAME) adds graphs of its CPU use and memory over the
// last hour or day (GET /v1/nodes/NAME/history, sampled every 10 s by the node itself).
import { get, post, enc } from "../api.js";
import { h, fill, badge, table, progress, errorBox, fmtMib, fmtMs, fmtTime, fmtBytes, fmtCpu, vmHref } from "../dom.js";
import { tasks } from "../data.js";
import { lines } from "../chart.js";

const drains = new Map(); // node → {start, total, result, error}: survives page switches

export function mount(root, [only], ctx) {
  const out = h("div#nodes");
  const msg = h("div#node-msg");
  const graphs = h("div.graphs#node-graphs");
  let range = "hour";
  let graphsAt = 0;
  const rangeBtns = ["hour", "day"].map((r) => h("button.ghost", { type: "button", "data-range": r,
    class: r === range ? "current" : "", onclick: () => {
      range = r;
      graphsAt = 0;
      for (const b of rangeBtns) b.classList.toggle("current", b.dataset.range === r);
      drawGraphs();
    } }, `last ${r}`));
  fill(root, h("h1", only ? `Node ${only}` : "Nodes"), msg, out,
    only ? h("section.card", h("h2", "Resources", h("span.range", rangeBtns)), graphs) : null);

  async function drawGraphs() {
    if (!only || Date.now() - graphsAt < 10000) return;
    graphsAt = Date.now();
    let r;
    try {
      r = await get(`/v1/nodes/${enc(only)}/history?range=${range}`);
    } catch (e) {
      fill(graphs, e.status === 404 && /route|no such path/i.test(e.message) ? h("p.note", "This node's ferryd keeps no history.") : errorBox(e, "history"));
      return;
    }
    const pts = r.points || [];
    const ts = pts.map((p) => p.t);
    const col = (k, f = (v) => v) => pts.map((p) => (p[k] === null || p[k] === undefined ? null : f(p[k])));
    fill(graphs,
      lines(ts, [{ name: "CPU %", class: "s1", values: col("cpu", (v) => v * 100) }],
        { title: "CPU (100 % = one CPU busy)", fmt: (v) => `${Math.round(v)} %` }),
      lines(ts, [{ name: "used", class: "s1", values: col("memory_bytes") }],
        { title: "Memory in use", fmt: fmtBytes }));
  }

  async function drain(n, running) {
    if (drains.get(n)?.running) return;
    drains.set(n, { running: true, total: running, start: Date.now() });
    ctx.refreshNow();
    try {
      const r = await post(`/v1/nodes/${enc(n)}/drain`, {});
      drains.set(n, { running: false, result: r });
      ctx.toast(`${n}: ${r.admin}, ${r.migrated} migrated, ${r.failed} failed, ${r.stayed} stayed`, r.failed ? "bad" : "ok");
    } catch (e) {
      drains.set(n, { running: false, error: e });
    }
    ctx.refreshNow();
  }

  async function resume(n) {
    try {
      await post(`/v1/nodes/${enc(n)}/resume`, {});
      drains.delete(n);
      ctx.toast(`${n}: active`);
    } catch (e) {
      fill(msg, errorBox(e, `resume ${n}`));
    }
    ctx.refreshNow();
  }

  function drainCell(n, running, task) {
    const d = drains.get(n.name);
    if (task) {
      // ferryd's drain task (also one started elsewhere: the CLI, another browser).
      const x = task.detail || {};
      const moved = x.total !== undefined ? ` · ${x.moved ?? 0} of ${x.total} moved${x.failed ? `, ${x.failed} failed` : ""}` : "";
      return progress(task.percent, `${task.phase || "draining"}${moved}`);
    }
    if (d?.running) {
      const left = running;
      const pct = d.total ? (100 * (d.total - left)) / d.total : 50;
      return progress(pct, `draining: ${left} of ${d.total} VM(s) left · ${fmtMs(Date.now() - d.start)}`);
    }
    if (d?.error) return errorBox(d.error, "drain");
    if (!d && n.admin === "draining") return h("div.muted", "a drain runs (started elsewhere), or one failed: drain again to retry");
    if (d?.result) {
      const r = d.result;
      return h("div.drain-result", `${r.admin}: ${r.migrated} migrated, ${r.failed} failed, ${r.stayed} stayed in ${fmtMs(r.total_ms)}`,
        (r.vms || []).filter((v) => v.outcome !== "stayed").map((v) =>
          h("div.muted", `${v.name}: ${v.outcome}${v.to ? " → " + v.to : ""}${v.downtime_ms !== undefined ? `, blackout ${fmtMs(v.downtime_ms)}` : ""}${v.message ? " " + v.message : ""}`)));
    }
    return "";
  }

  async function refresh() {
    const [nl, vl] = await Promise.all([get("/v1/nodes"), get("/v1/vms")]);
    const tl = await tasks(vl.vms);
    const drainTask = {};
    for (const t of tl.tasks) if (t.kind === "drain" && t.state === "running") drainTask[t.target] = t;
    const run = {};
    const list = {};
    for (const v of vl.vms) {
      if (v.state === "running" || v.state === "paused") run[v.owner] = (run[v.owner] || 0) + 1;
      (list[v.owner] ||= []).push(v);
    }
    const rows = nl.nodes.filter((n) => !only || n.name === only).sort((a, b) => a.name.localeCompare(b.name));
    fill(out, h("section.card", table([
      { label: "Node", cell: (n) => [n.name, n.leader ? " ★ leader" : ""] },
      { label: "State", cell: (n) => [badge(n.state), n.state_changed_ms ? h("div.muted", `since ${fmtTime(n.state_changed_ms)}`) : null] },
      { label: "Admin", cell: (n) => badge(n.admin) },
      { label: "CPU", cell: (n) => fmtCpu(n), class: "node-cpu" },
      { label: "Memory", cell: (n) => n.memory ? `${fmtMib(n.memory.free_mib)} free of ${fmtMib(n.memory.total_mib)}` : "–" },
      { label: "VMs", cell: (n) => (list[n.name] || []).length ? (list[n.name] || []).map((v, i) =>
        [i ? ", " : "", h("a", { href: vmHref(v.name) }, v.name)]) : "none" },
      { label: "Heartbeat", cell: (n) => n.state === "down" ? "missing" : `${fmtMs(n.last_heartbeat_ms)} ago, late ≤ ${fmtMs(n.heartbeat_late_ms)}` },
      { label: "Actions", cell: (n) => h("div.buttons",
        h("button", { type: "button", class: "drain", "data-node": n.name,
          disabled: n.state !== "up" || drains.get(n.name)?.running || n.admin === "paused",
          onclick: () => drain(n.name, run[n.name] || 0) }, "Drain"),
        h("button.ghost", { type: "button", class: "resume", "data-node": n.name,
          disabled: n.state !== "up" || n.admin === "active" || drains.get(n.name)?.running,
          onclick: () => resume(n.name) }, "Resume")) },
      { label: "Drain", cell: (n) => drainCell(n, run[n.name] || 0, drainTask[n.name]), class: "wrap" },
    ], rows, { id: "nodes-admin", key: (n) => n.name })));
    drawGraphs();
  }
  return { refresh };
}
