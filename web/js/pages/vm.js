// SPDX-License-Identifier: MIT
// One VM: summary, actions (start, stop, kill, pause, resume), live migration with a live
// progress bar and the measured blackout afterwards, storage move, HA settings, the serial
// console, its screen (noVNC), its migrations, events and tasks.
import { get, post, enc, ApiError } from "../api.js";
import { h, fill, badge, table, progress, errorBox, fmtMib, fmtMs, fmtBytes, fmtTime, nodeHref } from "../dom.js";
import { SerialConsole } from "../console.js";
import { Screen } from "../screen.js";
import { lines } from "../chart.js";
import { events } from "../live.js";
import { tasks } from "../data.js";
import { tasksTable, eventsTable } from "../widgets.js";
import { migrationsTable } from "./migrations.js";

// Which actions make sense in which state (ferryd refuses the others with a 409 anyway).
const ACTIONS = {
  start: ["stopped", "failed"],
  stop: ["running", "paused"],
  pause: ["running"],
  resume: ["paused"],
  kill: ["running", "paused", "starting", "stopping", "failed"],
};

export function mount(root, [name], ctx) {
  const base = `/v1/vms/${enc(name)}`;
  let vm = null;
  let nodes = [];
  let busy = null; // the action running, e.g. "migrate"
  const summary = h("dl.facts#vm-summary");
  const specText = h("pre#vm-spec.spec");
  const specBox = h("details.spec-box", h("summary", "Spec (JSON)"), specText); // kept open across refreshes
  const actionMsg = h("div#action-msg");
  const buttons = {};
  for (const a of Object.keys(ACTIONS)) {
    buttons[a] = h(`button#vm-${a}`, { type: "button", class: a === "kill" ? "danger" : null,
      onclick: () => action(a) }, a[0].toUpperCase() + a.slice(1));
  }

  // Live migration.
  const target = h("select#migrate-to", { "aria-label": "destination node" });
  const migrateBtn = h("button#migrate-button", { type: "submit" }, "Migrate");
  const migProgress = h("div#migrate-progress");
  const migResult = h("div#migrate-result");
  const bandwidth = h("input#migrate-bw", { type: "number", min: 1, max: 1048576, step: 1,
    placeholder: "MiB/s: no cap", "aria-label": "bandwidth cap in MiB/s (optional)" });
  const migCancel = h("button#migrate-cancel.ghost", { type: "button", hidden: true,
    onclick: () => cancel("migrate") }, "Cancel");
  const migForm = h("form.inline", h("label", { for: "migrate-to" }, "Live-migrate to"), target,
    bandwidth, migrateBtn, migCancel);
  migForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    migrate(target.value, bandwidth.value.trim());
  });

  // Storage move.
  const smDisk = h("select#move-disk", { "aria-label": "disk" });
  const smTo = h("input#move-to", { type: "text", placeholder: "/volume/new.vhd", "aria-label": "new file" });
  const smProgress = h("div#move-progress");
  const smCancel = h("button#move-cancel.ghost", { type: "button", hidden: true,
    onclick: () => cancel("storage-move") }, "Cancel");
  const smForm = h("form.inline", h("label", { for: "move-disk" }, "Move disk"), smDisk,
    h("label", { for: "move-to" }, "to"), smTo, h("button#move-button", { type: "submit" }, "Move"), smCancel);
  smForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    storageMove();
  });

  // HA.
  const haState = h("span#ha-state");
  const haPriority = h("select#ha-priority", { "aria-label": "HA priority" },
    ["high", "medium", "low", "none"].map((p) => h("option", { value: p }, p)));
  const haFailback = h("input#ha-failback", { type: "text", placeholder: "never | immediate | 22-06",
    "aria-label": "failback" });
  const haForm = h("form.inline", h("label", "HA: "), haState, h("label", { for: "ha-priority" }, "priority"), haPriority,
    h("label", { for: "ha-failback" }, "failback"), haFailback,
    h("button#ha-enable", { type: "submit" }, "Enable / update"),
    h("button#ha-disable.ghost", { type: "button", onclick: () => setHa(null) }, "Disable"));
  haForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const s = { priority: haPriority.value };
    if (haFailback.value.trim()) s.failback = haFailback.value.trim();
    setHa(s);
  });

  // Resource graphs from GET .../history (sampled every 10 s on the VM's node): read every
  // 10 s, not on every refresh.
  let range = "hour";
  let graphsAt = 0;
  const graphs = h("div.graphs#vm-graphs");
  const rangeBtns = ["hour", "day"].map((r) => h("button.ghost", { type: "button", "data-range": r,
    class: r === range ? "current" : null, onclick: () => {
      range = r;
      for (const b of rangeBtns) b.classList.toggle("current", b.dataset.range === r);
      graphsAt = 0;
      drawGraphs();
    } }, `last ${r}`));

  const cons = new SerialConsole(name);
  const screen = new Screen(name);
  const history = h("div#vm-migrations");
  const evBox = h("div#vm-events");
  const taskBox = h("div#vm-tasks");
  const title = h("h1", "VM ", h("span#vm-name", name), " ", h("span#vm-state-badge"));

  fill(root, title,
    h("div.grid",
      h("section.card", h("h2", "Summary"), summary, specBox),
      h("section.card", h("h2", "Actions"), h("div.buttons", Object.values(buttons)), actionMsg,
        migForm, migProgress, migResult, smForm, smProgress, haForm)),
    h("section.card", cons.el),
    h("section.card#vm-screen", screen.el),
    h("section.card", h("h2", "Resources", h("span.range", rangeBtns)), graphs),
    h("section.card", h("h2", "Tasks"), taskBox),
    h("section.card", h("h2", "Migrations"), history),
    h("section.card", h("h2", "Events"), evBox));
  cons.start();

  // Asks ferryd to end the running migration or storage move; its own request then fails
  // with "cancelled by request", which is shown where its result goes.
  async function cancel(what) {
    try {
      await post(`${base}/${what}/cancel`, {});
      ctx.toast(`${name}: cancelling the ${what}`);
    } catch (e) {
      ctx.toast(`cancel: ${e.message}`, "bad");
    }
  }

  function say(el, what, err) {
    fill(el, err ? errorBox(err, what) : h("div.ok-line", what));
  }

  async function action(a) {
    busy = a;
    updateButtons();
    say(actionMsg, `${a}…`);
    try {
      const body = a === "stop" ? { timeout_s: 30 } : {};
      vm = await post(`${base}/${a}`, body);
      say(actionMsg, `${a}: done, ${name} is ${vm.state}`);
      ctx.toast(`${name}: ${a} done`);
    } catch (e) {
      say(actionMsg, a, e);
    } finally {
      busy = null;
      ctx.refreshNow();
    }
  }

  async function migrate(to, bw) {
    if (!to) {
      say(migResult, "migrate", new ApiError(0, "invalid", "choose a destination node first"));
      return;
    }
    const body = { to };
    if (bw) {
      const n = Number(bw);
      if (!Number.isInteger(n) || n < 1 || n > 1048576) {
        say(migResult, "migrate", new ApiError(0, "invalid", `bandwidth: ${bw} is not a whole number of MiB/s in 1..1048576`));
        return;
      }
      body.max_bandwidth_mib = n;
    }
    busy = "migrate";
    updateButtons();
    fill(migResult);
    delete migProgress.dataset.percent;
    fill(migProgress, progress(0, "starting…"));
    let done = false;
    const poll = async () => {
      while (!done) {
        try {
          const m = await get(`${base}/migration`);
          if (done) break;
          const mem = m.memory || {};
          const pct = mem.total ? (100 * (mem.total - mem.remaining)) / mem.total : 0;
          migProgress.dataset.percent = String(Math.round(pct));
          fill(migProgress, progress(pct, `${m.status} · pass ${m.pass ?? "–"} · ${fmtBytes(mem.transferred)} sent, ` +
            `${fmtBytes(mem.remaining)} left · ${m.throughput_mbps ? Math.round(m.throughput_mbps) + " Mbit/s" : "–"}` +
            ` · ${fmtMs(m.elapsed_ms)}`));
          migProgress.dataset.seen = "1";
        } catch (_) {
          // 404 before it starts and after it ends
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    poll();
    try {
      const r = await post(`${base}/migrate`, body);
      done = true;
      fill(migProgress, progress(100, `${r.status} · ${r.from} → ${r.to}`));
      const rec = await findRecord(r);
      const gap = rec && rec.client_gap_ms !== null && rec.client_gap_ms !== undefined ? fmtMs(rec.client_gap_ms) : "not measured";
      fill(migResult, h("div.result", { "data-status": r.status },
        h("strong", `Migrated to ${r.to}`), ` (${r.strategy}, ${r.passes} passes, ${fmtBytes(r.bytes)})`,
        h("dl.facts",
          h("dt", "Blackout (QEMU downtime)"), h("dd#migrate-blackout", fmtMs(r.downtime_ms)),
          h("dt", "Budget"), h("dd", fmtMs(r.budget_ms)),
          h("dt", "Total time"), h("dd#migrate-total", fmtMs(r.total_ms)),
          h("dt", "Client gap"), h("dd#migrate-gap", gap))));
      ctx.toast(`${name} migrated to ${r.to}: blackout ${fmtMs(r.downtime_ms)}`);
    } catch (e) {
      done = true;
      fill(migProgress);
      say(migResult, "migrate", e);
    } finally {
      busy = null;
      ctx.refreshNow();
    }
  }

  async function findRecord(r) {
    try {
      const l = await get(`/v1/migrations?vm=${enc(name)}`);
      return (l.migrations || []).find((m) => m.to === r.to && m.from === r.from) || null;
    } catch (_) {
      return null;
    }
  }

  async function storageMove() {
    const to = smTo.value.trim();
    if (!to.startsWith("/")) {
      say(smProgress, "storage move", new ApiError(0, "invalid", "to: give the new file's absolute path, e.g. /volume/new.vhd"));
      return;
    }
    busy = "storage-move";
    updateButtons();
    let done = false;
    (async () => {
      while (!done) {
        try {
          const m = await get(`${base}/storage-move`);
          if (!done) fill(smProgress, progress(m.total_bytes ? (100 * m.done_bytes) / m.total_bytes : 0,
            `${m.phase}: ${fmtBytes(m.done_bytes)} of ${fmtBytes(m.total_bytes)}`));
        } catch (_) {
          // not started yet, or over
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    try {
      vm = await post(`${base}/storage-move`, { disk: Number(smDisk.value || 0), to });
      done = true;
      say(smProgress, `Disk ${smDisk.value} now at ${to}`);
      smTo.value = "";
    } catch (e) {
      done = true;
      say(smProgress, "storage move", e);
    } finally {
      busy = null;
      ctx.refreshNow();
    }
  }

  async function setHa(settings) {
    try {
      vm = await post(`${base}/ha`, { ha: settings });
      ctx.toast(settings ? `${name}: HA on` : `${name}: HA off`);
    } catch (e) {
      ctx.toast(`HA: ${e.message}`, "bad");
    }
    ctx.refreshNow();
  }

  function updateButtons() {
    const st = vm ? vm.state : "";
    for (const [a, states] of Object.entries(ACTIONS)) buttons[a].disabled = !!busy || !states.includes(st);
    migrateBtn.disabled = !!busy || st !== "running";
    smForm.querySelector("#move-button").disabled = !!busy;
    migCancel.hidden = busy !== "migrate";
    smCancel.hidden = busy !== "storage-move";
  }

  function drawSummary() {
    const s = vm.spec || {};
    fill(title.querySelector("#vm-state-badge"), badge(vm.state));
    const ha = vm.ha || {};
    fill(summary,
      h("dt", "State"), h("dd#vm-state", badge(vm.state), vm.reason ? ` ${vm.reason}` : "",
        vm.last_state ? ` (last: ${vm.last_state}${vm.last_reason ? ", " + vm.last_reason : ""})` : ""),
      h("dt", "Node"), h("dd#vm-node", vm.owner ? h("a", { href: nodeHref(vm.owner) }, vm.owner) : "this node"),
      h("dt", "HA"), h("dd#vm-ha", badge(ha.state || "disabled"), ha.why ? ` ${ha.why}` : "",
        ha.restarts ? ` · ${ha.restarts} restarts` : ""),
      h("dt", "CPU"), h("dd", `${vm.vcpus ?? "–"} vCPU${s.cpu ? ` (${s.cpu.sockets}×${s.cpu.cores}×${s.cpu.threads})` : ""}, ${vm.accel || "–"}`),
      h("dt", "Memory"), h("dd", fmtMib(vm.memory_mib ?? s.memory_mib)),
      h("dt", "Machine"), h("dd", s.machine || "pc"),
      h("dt", "Display"), h("dd#vm-display", s.display || "none"),
      h("dt", "Disks"), h("dd", (s.disks || []).map((d, i) => h("div", `${i}: ${d.path}${d.readonly ? " (read-only)" : ""}${d.bus && d.bus !== "virtio" ? `, ${d.bus}${d.bus === "scsi" ? ` on ${s.scsi_controller || "pvscsi"}` : ""}` : ""}`))),
      h("dt", "NICs"), h("dd", (s.nics || []).map((n) => h("div", `${n.bridge} ${n.mac || ""}${n.model && n.model !== "virtio" ? ` ${n.model}` : ""}`))),
      h("dt", "Blackout budget"), h("dd", fmtMs(s.blackout_budget_ms)),
      h("dt", "Started"), h("dd", vm.started_ms ? fmtTime(vm.started_ms) : "–"),
      h("dt", "QEMU"), h("dd", vm.pid ? `pid ${vm.pid}, ${vm.qemu_cpu_s?.toFixed?.(1) ?? "–"} s CPU` : "–"),
      vm.failover ? [h("dt", "Last failover"), h("dd", `${vm.failover.from} → ${vm.failover.to}: ${vm.failover.why || ""}`,
        vm.failover.down_ms && vm.failover.decided_ms ? ` (decided ${fmtMs(vm.failover.decided_ms - vm.failover.down_ms)} after down)` : "")] : null);
    haState.replaceChildren(badge(ha.state || "disabled"));
    screen.available(s.display === "vga", vm.state === "running" || vm.state === "paused");
    if (screen.rfb) screen.showSize();
    const json = JSON.stringify(s, null, 2);
    if (specText.textContent !== json) specText.textContent = json;
    if (document.activeElement !== smDisk && smDisk.options.length !== (s.disks || []).length) {
      fill(smDisk, (s.disks || []).map((d, i) => h("option", { value: i }, `${i}: ${d.path.split("/").pop()}`)));
    }
  }

  function drawTargets() {
    if (document.activeElement === target || busy === "migrate") return;
    const keep = target.value;
    const usable = nodes.filter((n) => n.name !== vm.owner);
    // Refilled only when a choice changes (not for every new free-memory figure), so the
    // list stays put under the user's hand.
    const sig = usable.map((n) => `${n.name}:${n.state}:${n.admin}`).join(",") + `|${vm.owner}`;
    if (sig === target.dataset.sig) return;
    target.dataset.sig = sig;
    fill(target, h("option", { value: "" }, "choose a node…"), usable.map((n) =>
      h("option", { value: n.name, disabled: n.state !== "up" || n.admin !== "active" },
        `${n.name}${n.state !== "up" ? " (down)" : n.admin !== "active" ? ` (${n.admin})` : ""} · ${fmtMib(n.memory?.free_mib)} free`)));
    if ([...target.options].some((o) => o.value === keep && !o.disabled)) target.value = keep;
  }

  async function drawGraphs() {
    if (Date.now() - graphsAt < 10000) return;
    graphsAt = Date.now();
    let r;
    try {
      r = await get(`${base}/history?range=${range}`);
    } catch (e) {
      fill(graphs, e.status === 404 && /route|no such/i.test(e.message) ? h("p.note", "This ferryd keeps no history.") : errorBox(e, "history"));
      return;
    }
    const pts = r.points || [];
    const ts = pts.map((p) => p.t);
    const col = (k, f = (v) => v) => pts.map((p) => (p[k] === null || p[k] === undefined ? null : f(p[k])));
    const rate = (v) => `${fmtBytes(v)}/s`;
    fill(graphs,
      lines(ts, [{ name: "CPU %", class: "s1", values: col("cpu", (v) => v * 100) }],
        { title: "CPU (100 % = one host CPU)", fmt: (v) => `${Math.round(v)} %` }),
      lines(ts, [{ name: "resident", class: "s1", values: col("memory_bytes") }],
        { title: "Memory", fmt: fmtBytes }),
      lines(ts, [{ name: "read", class: "s1", values: col("disk_read_bps") },
        { name: "write", class: "s2", values: col("disk_write_bps") }], { title: "Disk", fmt: rate }),
      lines(ts, [{ name: "rx", class: "s1", values: col("net_rx_bps") },
        { name: "tx", class: "s2", values: col("net_tx_bps") }], { title: "Network", fmt: rate }));
  }

  // The VM's events as every node told them (GET /v1/events?scope=cluster: its start on one
  // node, its migration on two, its failover on another), read at most every 5 s, or sooner
  // when this node saw a new event of the VM; until the first answer, this node's own.
  let clusterEvents = null;
  let eventsAt = 0;
  let eventsSeen = -1;
  async function drawEvents()
  {
      const local = events.recent(name);
      const newest = local.length ? local[0].id : 0;
      if (Date.now() - eventsAt > 5000 || newest !== eventsSeen) {
          eventsAt = Date.now();
          eventsSeen = newest;
          try {
              const r = await get(`/v1/events?scope=cluster&vm=${enc(name)}&limit=50`);
              clusterEvents = r.events.slice().reverse();
          } catch (e) {
              clusterEvents = null; // an older ferryd: this node's own below
          }
      }
      fill(evBox, eventsTable((clusterEvents || local).slice(0, 30), {id : "vm-events-table"}));
  }

  // The console follows the VM when it moves: told by this node's events (the source's
  // vm.migrated, the destination's vm.migrated_in, a failover) or by a new owner below.
  const FOLLOW = new Set(["vm.migrated", "vm.migrated_in", "vm.failover", "vm.started"]);
  const unfollow = events.subscribe((added) => {
    if (added.some((ev) => ev.vm === name && FOLLOW.has(ev.type))) cons.follow();
  });
  let owner;

  async function refresh() {
    try {
      vm = await get(base);
      if (owner !== undefined && vm.owner !== owner) cons.follow();
      owner = vm.owner;
    } catch (e) {
      if (e.status === 404) {
        fill(summary, errorBox(e, "VM"));
        return;
      }
      throw e;
    }
    const [nl, ml, tl] = await Promise.all([
      get("/v1/nodes").catch(() => ({ nodes: [] })),
      get(`/v1/migrations?vm=${enc(name)}`).catch(() => ({ migrations: [] })),
      tasks([vm]),
    ]);
    nodes = nl.nodes;
    drawSummary();
    drawTargets();
    updateButtons();
    fill(history, migrationsTable(ml.migrations.slice(0, 20), { id: "vm-migrations-table" }));
    fill(taskBox, tasksTable(tl.tasks.filter((t) => t.target === name), tl.derived, { id: "vm-tasks-table" }));
    await drawEvents();
    drawGraphs();
  }

  return { refresh, dispose: () => { unfollow(); cons.close(); screen.close(); } };
}
