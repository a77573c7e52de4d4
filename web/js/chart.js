// SPDX-License-Identifier: MIT
// A small SVG scatter chart of blackouts over time (no library: a few dozen points, two
// series). Drawn with createElementNS; colours come from CSS classes.
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * series: [{name, class, points: [{t (ms, wall clock), v (ms), label}]}]. Returns an <svg>
 * whose y axis is the value in ms (0 at the bottom), x the time.
 */
export function scatter(series, { width = 720, height = 220, yLabel = "ms" } = {}) {
  const pad = { l: 52, r: 12, t: 12, b: 36 };
  const all = series.flatMap((s) => s.points);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `${series.map((s) => s.name).join(" and ")} over time` });
  if (!all.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "no migrations yet"));
    return svg;
  }
  let t0 = Math.min(...all.map((p) => p.t));
  let t1 = Math.max(...all.map((p) => p.t));
  if (t1 - t0 < 60000) {
    t0 -= 30000;
    t1 += 30000;
  }
  const vmax = niceMax(Math.max(...all.map((p) => p.v), 1));
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / vmax) * (height - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.append(el("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid-line" }));
    svg.append(el("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, `${Math.round(v * 10) / 10}`));
  }
  svg.append(el("text", { x: 4, y: pad.t + 4, class: "axis" }, yLabel));
  for (const frac of [0, 0.5, 1]) {
    const t = t0 + frac * (t1 - t0);
    const d = new Date(t);
    const label = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}:${String(d.getSeconds()).padStart(2, "0")}`;
    svg.append(el("text", { x: x(t), y: height - pad.b + 16, "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle", class: "axis" }, label));
  }
  series.forEach((s, i) => {
    for (const p of s.points) {
      const c = el("circle", { cx: x(p.t), cy: y(p.v), r: 4, class: `pt ${s.class}` });
      c.append(el("title", {}, p.label));
      svg.append(c);
    }
    const lx = pad.l + 8 + i * 150;
    svg.append(el("circle", { cx: lx, cy: height - 8, r: 4, class: `pt ${s.class}` }));
    svg.append(el("text", { x: lx + 8, y: height - 4, class: "axis" }, s.name));
  });
  return svg;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * A line chart: series [{name, class, values: [v|null, ...]}] over times ts (unix s, oldest
 * first); fmt(v) labels the y axis. A null value breaks the line.
 */
export function lines(ts, series, { width = 360, height = 150, fmt = String, title = "" } = {}) {
  const pad = { l: 58, r: 8, t: 26, b: 30 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart small", role: "img",
    "aria-label": title });
  svg.append(el("text", { x: 4, y: 12, class: "chart-title" }, title));
  const vals = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  if (ts.length < 2 || !vals.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" },
      "no samples yet (every 10 s)"));
    return svg;
  }
  const t0 = ts[0];
  const t1 = ts[ts.length - 1];
  const vmax = niceMax(Math.max(...vals) || 1); // all zero: an axis up to 1
  const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / vmax) * (height - pad.t - pad.b);
  for (const frac of [0, 0.5, 1]) {
    const v = vmax * frac;
    svg.append(el("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid-line" }));
    svg.append(el("text", { x: pad.l - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmt(v)));
  }
  for (const frac of [0, 1]) {
    const d = new Date((t0 + frac * (t1 - t0)) * 1000);
    svg.append(el("text", { x: frac ? width - pad.r : pad.l, y: height - pad.b + 14,
      "text-anchor": frac ? "end" : "start", class: "axis" },
      `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`));
  }
  series.forEach((s, i) => {
    let d = "";
    let pen = "M";
    s.values.forEach((v, k) => {
      if (v === null || v === undefined) {
        pen = "M";
        return;
      }
      d += `${pen}${x(ts[k]).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    });
    if (d) svg.append(el("path", { d, class: `line ${s.class}` }));
    const lx = pad.l + i * 110;
    svg.append(el("line", { x1: lx, x2: lx + 14, y1: height - 6, y2: height - 6, class: `line ${s.class}` }));
    svg.append(el("text", { x: lx + 18, y: height - 2, class: "axis" }, s.name));
  });
  return svg;
}
