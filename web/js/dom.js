// SPDX-License-Identifier: MIT
// Small DOM and formatting helpers. Everything is built with createElement and textContent:
// no innerHTML of API data (a VM name is never markup), and no inline styles (the CSP
// forbids them): looks come from classes in css/ferry.css.

/**
 * h("div.card#id", {attrs}, children...): an element. attrs: "class", "on<event>" (a
 * function), "data-*", boolean/string attributes; children: nodes, strings, arrays, null.
 */
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement(m ? m[1] : "div");
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") for (const c of String(v).split(/\s+/).filter(Boolean)) el.classList.add(c);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces el's children with children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed((i || !Number.isInteger(v)) && Math.abs(v) < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtMib(n) {
  return n === null || n === undefined ? "–" : fmtBytes(Number(n) * 1048576);
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  const v = Number(ms);
  if (v < 1000) return `${Math.round(v * 10) / 10} ms`;
  if (v < 120000) return `${(v / 1000).toFixed(1)} s`;
  return `${Math.round(v / 60000)} min`;
}

/** How long ago a wall-clock time in ms was, e.g. "3.2 s ago". */
export function fmtAgo(timeMs) {
  if (!timeMs) return "–";
  return fmtMs(Math.max(0, Date.now() - Number(timeMs))) + " ago";
}

export function fmtTime(timeMs) {
  if (!timeMs) return "–";
  const d = new Date(Number(timeMs));
  const pad = (x, n = 2) => String(x).padStart(n, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const GOOD = new Set(["running", "up", "active", "leader", "completed", "started", "direct",
  "fresh", "true", "ok", "done", "enabled"]);
const WARN = new Set(["paused", "draining", "starting", "stopping", "incoming", "migrating",
  "recovering", "recovery", "redirected", "candidate", "warning", "setup", "active-migration",
  "running-task", "postcopy-active", "stale", "cancelled"]);
const BAD = new Set(["failed", "down", "unknown", "error", "fence", "none", "false", "critical",
  "unavailable"]);

/** A coloured state label: green for good states, amber for in-between, red for bad. */
export function badge(state, extra) {
  const s = state === true ? "true" : state === false ? "false" : String(state ?? "–");
  const cls = GOOD.has(s) ? "good" : WARN.has(s) ? "warn" : BAD.has(s) ? "bad" : "plain";
  return h(`span.badge.${cls}`, { "data-state": s }, extra ? `${s} ${extra}` : s);
}

/**
 * A table: cols [{label, cell(row) → node|string, class}], rows. attrs go on the table
 * (e.g. {id}). An empty list shows `empty` in one row.
 */
export function table(cols, rows, attrs = {}, empty = "none") {
  const head = h("thead", h("tr", cols.map((c) => h("th", { class: c.class }, c.label))));
  const body = h("tbody");
  if (!rows.length) body.append(h("tr", h("td.empty", { colspan: cols.length }, empty)));
  for (const r of rows) {
    const tr = h("tr", { "data-key": attrs.key ? attrs.key(r) : null },
      cols.map((c) => h("td", { class: c.class, "data-label": c.label }, c.cell(r))));
    body.append(tr);
  }
  const a = { ...attrs };
  delete a.key;
  return h("div.table-wrap", h("table", a, head, body));
}

/** A node's CPUs, 1-minute load and CPU use (the share of all its CPUs busy over the last
 * 10 s) as its ferryd reports them; "–" from a node that reports none (an older ferryd). */
export function fmtCpu(n) {
  const c = n && n.cpu;
  if (!c) return "–";
  const busy = c.busy_ratio === undefined || c.busy_ratio === null ? "" : ` · ${Math.round(c.busy_ratio * 100)} % busy`;
  return `${c.count} CPU${c.count === 1 ? "" : "s"} · load ${Number(c.load1).toFixed(2)}${busy}`;
}

/** A progress bar 0..100 (the width is set through the CSSOM, which the CSP allows). */
export function progress(percent, label) {
  const bar = h("div.bar");
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.style.width = `${p}%`;
  return h("div.progress", { role: "progressbar", "aria-valuenow": Math.round(p),
    "aria-valuemin": 0, "aria-valuemax": 100 }, bar, h("span.progress-label", label ?? `${Math.round(p)} %`));
}

/** The API error box: what failed and the API's own message. */
export function errorBox(err, what) {
  const msg = err && err.message ? err.message : String(err);
  return h("div.error", { role: "alert" }, what ? `${what}: ${msg}` : msg);
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

export const vmHref = (name) => `#/vm/${encodeURIComponent(name)}`;
export const nodeHref = (name) => `#/nodes/${encodeURIComponent(name)}`;
export const csvHref = (name) => `#/volumes/${encodeURIComponent(name)}`;
