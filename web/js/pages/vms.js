// SPDX-License-Identifier: MIT
// Every VM of the cluster in one table.
import { get } from "../api.js";
import { h, fill, badge, table, fmtMib, vmHref, nodeHref } from "../dom.js";

export function mount(root) {
  const out = h("div");
  fill(root, h("h1", "Virtual machines"), h("div.card", out));
  async function refresh() {
    const vl = await get("/v1/vms");
    fill(out, table([
      { label: "Name", cell: (v) => h("a", { href: vmHref(v.name) }, v.name) },
      { label: "State", cell: (v) => badge(v.state) },
      { label: "Node", cell: (v) => v.owner ? h("a", { href: nodeHref(v.owner) }, v.owner) : "this node" },
      { label: "vCPUs", cell: (v) => String(v.vcpus ?? "–") },
      { label: "Memory", cell: (v) => fmtMib(v.memory_mib) },
      { label: "HA", cell: (v) => v.ha ? badge(v.ha.state) : "–" },
    ], vl.vms.slice().sort((a, b) => a.name.localeCompare(b.name)), { id: "vms-table", key: (v) => v.name }, "no VMs"));
  }
  return { refresh };
}
