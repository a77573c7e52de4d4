// SPDX-License-Identifier: MIT
// Cluster shared volumes: the list, and one volume's coordinator, per-node access and
// leases, free space, disk files and the writers' audit.
import { get, enc } from "../api.js";
import { h, fill, badge, table, fmtBytes, fmtMs, fmtTime, vmHref, csvHref } from "../dom.js";
import { csvs } from "../data.js";

function space(c) {
  if (!c.size_bytes) return "–";
  return `${fmtBytes(c.free_bytes)} free of ${fmtBytes(c.size_bytes)}`;
}

export function mount(root, [name]) {
  const out = h("div");
  fill(root, h("h1", name ? h("span", h("a", { href: "#/volumes" }, "Volumes"), ` / ${name}`) : "Volumes"), out);

  async function list() {
    const l = await csvs();
    fill(out, h("section.card", table([
      { label: "Volume", cell: (c) => h("a", { href: csvHref(c.name) }, c.name) },
      { label: "Path", cell: (c) => c.path, class: "wrap" },
      { label: "Coordinator", cell: (c) => `${c.coordinator} (epoch ${c.epoch})` },
      { label: "Here", cell: (c) => c.here ? badge(c.here.access) : "–" },
      { label: "Space", cell: space },
      { label: "VMs", cell: (c) => (c.vms || []).length ? (c.vms || []).map((v, i) => [i ? ", " : "", h("a", { href: vmHref(v) }, v)]) : "none" },
    ], l, { id: "volumes-table", key: (c) => c.name }, "no cluster shared volumes (ferry csv add NAME PATH)")));
  }

  async function one() {
    const [c, audit] = await Promise.all([get(`/v1/csvs/${enc(name)}`),
      get(`/v1/csvs/${enc(name)}/audit`).catch((e) => ({ error: e.message }))]);
    fill(out,
      h("section.card", h("dl.facts#volume-facts",
        h("dt", "Path"), h("dd", c.path),
        h("dt", "Coordinator"), h("dd#volume-coordinator", `${c.coordinator} (epoch ${c.epoch}, since ${fmtTime(c.coordinator_since_ms)})`),
        h("dt", "Space"), h("dd", space(c)),
        h("dt", "Id"), h("dd", c.id))),
      h("section.card", h("h2", "Nodes"), table([
        { label: "Node", cell: (n) => n.node + (n.coordinator ? " (coordinator)" : "") },
        { label: "Health", cell: (n) => badge(n.health) },
        { label: "Access", cell: (n) => [badge(n.access), n.why ? ` ${n.why}` : ""], class: "wrap" },
        { label: "Lease", cell: (n) => badge(n.lease) },
        { label: "Lease age", cell: (n) => fmtMs(n.lease_age_ms) },
        { label: "Free", cell: (n) => n.size_bytes ? fmtBytes(n.free_bytes) : "–" },
        { label: "Exports / relays", cell: (n) => `${(n.exports || []).length} / ${(n.relays || []).length}` },
      ], c.nodes || [], { id: "volume-nodes", key: (n) => n.node })),
      h("section.card", h("h2", "Disks"), table([
        { label: "File", cell: (f) => f.file },
        { label: "Size", cell: (f) => fmtBytes(f.size_bytes), class: "num" },
        { label: "VM", cell: (f) => f.vm ? h("a", { href: vmHref(f.vm) }, f.vm) : "unused" },
      ], c.vhds || [], { id: "volume-disks" }, "no VHD files")),
      h("section.card", h("h2", "Writers' audit"), audit.error ? h("p.error", audit.error) : [
        h("p", "Writers: ", badge(audit.writers_ok ? "ok" : "error", audit.writers_ok ? "(one writer per disk)" : "(a second writer was opened)"),
          audit.unreadable_lines ? ` · ${audit.unreadable_lines} unreadable lines` : ""),
        (audit.violations || []).length ? table([
          { label: "File", cell: (v) => v.file },
          { label: "When", cell: (v) => fmtTime(v.time_ms) },
          { label: "Writer", cell: (v) => `${v.writer?.vm} epoch ${v.writer?.epoch}` },
          { label: "Other", cell: (v) => `${v.other?.vm} epoch ${v.other?.epoch}` },
        ], audit.violations, { id: "audit-violations" }) : null,
        h("h3", "Open now"),
        table([
          { label: "File", cell: (o) => o.file },
          { label: "VM", cell: (o) => o.vm },
          { label: "Epoch", cell: (o) => String(o.epoch) },
          { label: "Nodes", cell: (o) => (o.nodes || []).join(", ") },
          { label: "Since", cell: (o) => fmtTime(o.since_ms) },
        ], audit.open || [], { id: "audit-open" }, "no redirected disk open"),
        h("h3", "Newest records"),
        table([
          { label: "When", cell: (r) => fmtTime(r.time_ms) },
          { label: "Op", cell: (r) => r.op },
          { label: "File", cell: (r) => r.file },
          { label: "VM", cell: (r) => `${r.vm} @${r.epoch}` },
          { label: "Node", cell: (r) => r.node || "–" },
          { label: "Why", cell: (r) => r.why || "", class: "wrap" },
        ], (audit.records || []).slice(-20).reverse(), { id: "audit-records" }, "no records"),
      ]));
  }
  return { refresh: name ? one : list };
}
