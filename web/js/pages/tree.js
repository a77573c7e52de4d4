// SPDX-License-Identifier: MIT
// The tree: cluster → nodes → VMs, and volumes → disk files, with a search box that keeps
// what matches and the branches above it.
import { get } from "../api.js";
import { h, fill, badge, vmHref, nodeHref, csvHref, fmtBytes } from "../dom.js";
import { csvs } from "../data.js";

export function mount(root) {
  const search = h("input#tree-search", { type: "search", placeholder: "Search nodes, VMs, volumes…",
    "aria-label": "Search" });
  const out = h("div#tree");
  let last = null;
  const closed = new Set(); // the branches the user folded, kept across redraws
  const branch = (key, summary, ...children) => {
    const d = h("details", { open: !closed.has(key), "data-branch": key }, h("summary", summary), ...children);
    d.addEventListener("toggle", () => (d.open ? closed.delete(key) : closed.add(key)));
    return d;
  };
  search.addEventListener("input", () => last && draw(last));
  fill(root, h("h1", "Tree"), h("div.card", search, out));

  function draw({ status, nodes, vms, vols, details }) {
    const q = search.value.trim().toLowerCase();
    const hit = (s) => !q || String(s).toLowerCase().includes(q);
    const nodeItems = nodes.slice().sort((a, b) => a.name.localeCompare(b.name)).map((n) => {
      const own = vms.filter((v) => v.owner === n.name || (!v.owner && nodes.length === 1));
      const vmItems = own.filter((v) => hit(v.name) || hit(n.name)).map((v) =>
        h("li", { "data-vm": v.name }, h("a", { href: vmHref(v.name) }, v.name), " ", badge(v.state)));
      if (!hit(n.name) && !vmItems.length) return null;
      return h("li", { "data-node": n.name }, branch(`node:${n.name}`,
        [h("a", { href: nodeHref(n.name) }, n.name), " ", badge(n.state), " ", badge(n.admin)],
        h("ul", vmItems.length ? vmItems : h("li.muted", "no VMs"))));
    }).filter(Boolean);
    const orphans = vms.filter((v) => v.owner && !nodes.some((n) => n.name === v.owner) && hit(v.name));
    const volItems = vols.map((c) => {
      const files = (details[c.name]?.vhds || []).filter((f) => hit(f.file) || hit(c.name) || (f.vm && hit(f.vm)));
      if (!hit(c.name) && !files.length) return null;
      return h("li", { "data-csv": c.name }, branch(`csv:${c.name}`,
        [h("a", { href: csvHref(c.name) }, c.name), ` ${c.path} · coordinator ${c.coordinator}`],
        h("ul", files.length ? files.map((f) => h("li", f.file, ` ${fmtBytes(f.size_bytes)}`,
          f.vm ? [" · ", h("a", { href: vmHref(f.vm) }, f.vm)] : " · unused")) : h("li.muted", "no disks"))));
    }).filter(Boolean);
    const name = status ? `Cluster ${status.name || status.cluster_id}` : "This node";
    fill(out, h("ul.tree", h("li", branch("cluster", h("strong", name),
      h("ul",
        h("li", branch("nodes", "Nodes", h("ul", nodeItems.length ? nodeItems : h("li.muted", "nothing matches")))),
        orphans.length ? h("li", branch("orphans", "VMs of unknown nodes",
          h("ul", orphans.map((v) => h("li", h("a", { href: vmHref(v.name) }, v.name)))))) : null,
        h("li", branch("volumes", "Volumes", h("ul", volItems.length ? volItems : h("li.muted", q ? "nothing matches" : "no volumes")))))))));
  }

  async function refresh() {
    let status = null;
    try {
      status = await get("/v1/cluster/status");
    } catch (e) {
      if (e.status !== 409) throw e;
    }
    const [nl, vl, vols] = await Promise.all([get("/v1/nodes"), get("/v1/vms"), csvs()]);
    const details = {};
    await Promise.all(vols.map(async (c) => {
      try {
        details[c.name] = await get(`/v1/csvs/${encodeURIComponent(c.name)}`);
      } catch (_) {
        details[c.name] = null;
      }
    }));
    last = { status, nodes: nl.nodes, vms: vl.vms, vols, details };
    draw(last);
  }
  return { refresh };
}
