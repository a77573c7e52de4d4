// SPDX-License-Identifier: MIT
// Pieces several pages show: the task list, alerts, events.
import { h, table, badge, progress, fmtTime, fmtAgo, fmtMs, vmHref } from "./dom.js";
import { post, enc } from "./api.js";

// POST /v1/tasks/ID/cancel from the task list; the button says how it went.
async function cancelTask(btn, id) {
  btn.disabled = true;
  try {
    await post(`/v1/tasks/${enc(id)}/cancel`, {});
    btn.textContent = "cancelling…";
  } catch (e) {
    btn.replaceWith(h("span.error", `cancel: ${e.message}`));
  }
}

export function tasksTable(list, derived, attrs = { id: "tasks" }, limit = 25) {
  const note = derived
    ? h("p.note", "This ferryd has no task list (GET /v1/tasks); running migrations are shown.")
    : null;
  // ferryd's records name the times start_ms / end_ms (0 while running).
  const rows = list.map((t) => ({ ...t, started: t.started ?? t.start_ms, ended: t.ended ?? (t.end_ms || null) }))
    .sort((a, b) => (b.started || 0) - (a.started || 0)).slice(0, limit);
  return h("div", note, table([
    { label: "Task", cell: (t) => `${t.kind || "task"} ${t.id ?? ""}`.trim() },
    { label: "Target", cell: (t) => t.target && /^(migrate|storage|failover|vm|import)/.test(t.kind || "") ? h("a", { href: vmHref(t.target) }, t.target) : (t.target || "–") },
    { label: "Node", cell: (t) => t.node || "–" },
    { label: "State", cell: (t) => badge(t.state) },
    { label: "Progress", cell: (t) => t.state === "running"
      ? progress(t.percent, `${t.phase ? t.phase + " " : ""}${t.percent ?? 0} %`)
      : (t.phase || "–") },
    { label: "Started", cell: (t) => fmtTime(t.started) },
    { label: "Took", cell: (t) => t.ended && t.started ? fmtMs(t.ended - t.started) : "–" },
    { label: "Result", cell: (t) => {
      if (derived || t.state !== "running" || !/^(migrate|storage-move|import)$/.test(t.kind || "")) return resultText(t.result);
      const b = h("button.ghost.task-cancel", { type: "button", "data-task": t.id }, "Cancel");
      b.addEventListener("click", () => cancelTask(b, t.id));
      return b;
    } },
  ], rows, { ...attrs, key: (t) => t.id }, "no tasks"));
}

function resultText(r) {
  if (r === null || r === undefined) return "–";
  if (typeof r === "string") return r;
  if (r.error) return `error: ${r.error}`;
  if (r.downtime_ms !== undefined) return `blackout ${fmtMs(r.downtime_ms)}, total ${fmtMs(r.total_ms)}`;
  return JSON.stringify(r).slice(0, 120);
}

// ferryd's alerts say since in unix seconds; the ones derived here in ms.
const sinceMs = (t) => (t && t < 1e11 ? t * 1000 : t);

export function alertsList(list, derived) {
  const note = derived ? h("p.note", "Derived in the browser (this ferryd has no GET /v1/alerts).") : null;
  if (!list.length) return h("div#alerts", note, h("p.ok-line", "No alerts."));
  return h("div#alerts", note, h("ul.alerts", list.map((a) => {
    const state = a.state || "firing";
    return h(`li.alert.${a.severity === "critical" ? "bad" : "warn"}.${state}`,
      { "data-alert": a.name, "data-subject": a.subject, "data-alert-state": state },
      badge(a.severity), " ", h("strong", a.name), " ", a.subject ? h("span.subject", a.subject) : null,
      " ", h("span.alert-state", state === "pending" ? "(pending: not yet held long enough to fire)" : ""),
      h("div.alert-msg", a.message || ""), a.since ? h("div.muted", `since ${fmtTime(sinceMs(a.since))}`) : null);
  })));
}

export function eventsTable(list, attrs = { id: "events" }) {
  list = list.filter((e) => e.type !== "task.progress"); // the task list shows those
  const nodes = list.some((e) => e.node); // a cluster-wide list names each event's node
  return table(
      [
          {label : "Time", cell : (e) => fmtTime(e.time_ms)},
          ...(nodes ? [ {label : "Node", cell : (e) => e.node || "–"} ] : []),
          {label : "Type", cell : (e) => e.type},
          {label : "VM", cell : (e) => e.vm ? h("a", {href : vmHref(e.vm)}, e.vm) : "–"},
          {label : "Message", cell : (e) => e.message, class : "wrap"},
      ],
      list, attrs, "no events yet");
}

export { fmtAgo };
