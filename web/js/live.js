// SPDX-License-Identifier: MIT
// The live event feed: Server-Sent Events from GET /v1/events?follow=1 when ferryd has them
// (resuming with Last-Event-ID, which EventSource sends by itself), else polling
// GET /v1/events?since=ID every 2 s. Keeps the newest 300 events for the pages.
import { get } from "./api.js";

// SSE delivers a named event only to listeners of that name, so the known types are listed
// (ferryd's event types); a stream's unnamed "message" events are taken too.
const TYPES = ("cluster.init cluster.joined cluster.leader cluster.left cluster.profile csv.access " +
  "csv.added csv.coordinator_moved csv.evacuate csv.removed csv.storage_daemon_lost daemon.started " +
  "disk.created disk.deleted disk.grown node.down node.drain_failed node.drain_vm node.drained " +
  "node.draining node.fenced node.isolated node.joined node.quarantined node.resumed node.timing " +
  "node.unfenced node.up vm.attached vm.created vm.deleted vm.evacuate vm.failback vm.failed " +
  "vm.failover vm.failover_error vm.failover_removed vm.failover_started vm.failover_waiting " +
  "vm.fenced vm.ha_disabled vm.ha_enabled vm.ha_error vm.ha_restart vm.incoming vm.killed " +
  "vm.migrate_aborted vm.migrate_cancelled vm.migrate_failed vm.migrate_handover_waiting " +
  "vm.migrate_unknown vm.migrated vm.migrated_in vm.migrating vm.migration vm.paused vm.resumed " +
  "vm.started vm.stopped task.created task.progress task.ended alert.firing alert.resolved").split(" ");

const KEEP = 300;

class EventFeed {
  constructor() {
    this.list = [];
    this.lastId = 0;
    this.subs = new Set();
    this.mode = "off"; // "stream", "poll" or "off"
    this.es = null;
    this.timer = null;
  }

  subscribe(fn) {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  /** The kept events, newest first, optionally only those of VM vm. */
  recent(vm) {
    const l = vm ? this.list.filter((e) => e.vm === vm) : this.list;
    return l.slice().reverse();
  }

  add(ev) {
    if (!ev || typeof ev.id !== "number" || ev.id <= this.lastId) return false;
    this.lastId = ev.id;
    this.list.push(ev);
    if (this.list.length > KEEP) this.list.splice(0, this.list.length - KEEP);
    return true;
  }

  notify(added) {
    if (added.length) for (const fn of this.subs) fn(added);
  }

  async start() {
    this.stop();
    this.mode = "poll";
    try {
      // The history first (also tells whether ferryd answers at all).
      const r = await get(`/v1/events?since=${this.lastId}&limit=200`);
      const added = (r.events || []).filter((e) => this.add(e));
      this.notify(added);
    } catch (_) {
      // the poll below retries
    }
    if (typeof EventSource === "function") this.openStream();
    else this.poll();
  }

  openStream() {
    const es = new EventSource(`/v1/events?follow=1&since=${this.lastId}`);
    this.es = es;
    let opened = false;
    const onEvent = (msg) => {
      try {
        const ev = JSON.parse(msg.data);
        if (typeof ev.id !== "number" && msg.lastEventId) ev.id = Number(msg.lastEventId);
        if (this.add(ev)) this.notify([ev]);
      } catch (_) {
        // not an event object (a comment or keep-alive): nothing to show
      }
    };
    es.addEventListener("open", () => {
      opened = true;
      this.mode = "stream";
    });
    es.addEventListener("message", onEvent);
    for (const t of TYPES) es.addEventListener(t, onEvent);
    es.addEventListener("error", () => {
      // A ferryd without the stream answers 400/404: EventSource gives up (CLOSED). Poll then;
      // a stream that was open and broke reconnects by itself.
      if (es.readyState === EventSource.CLOSED || !opened) {
        es.close();
        if (this.es === es) this.es = null;
        this.poll();
      }
    });
  }

  poll() {
    this.mode = "poll";
    clearTimeout(this.timer);
    const once = async () => {
      try {
        const r = await get(`/v1/events?since=${this.lastId}&limit=200`);
        this.notify((r.events || []).filter((e) => this.add(e)));
      } catch (_) {
        // shown by the page's own refresh; try again
      }
      if (this.mode === "poll") this.timer = setTimeout(once, 2000);
    };
    this.timer = setTimeout(once, 2000);
  }

  stop() {
    this.mode = "off";
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
  }
}

export const events = new EventFeed();
