// SPDX-License-Identifier: MIT
// The dashboard's shell: login, the hash router (#/, #/tree, #/vm/NAME, ...), the refresh
// loop that re-reads what is on screen every 1.5 s, and the live event feed.
import { loadSession, login, logout, whenUnauthorized, sessionInfo } from "./api.js";
import { h, fill, errorBox } from "./dom.js";
import { events } from "./live.js";
import * as overview from "./pages/overview.js";
import * as tree from "./pages/tree.js";
import * as vms from "./pages/vms.js";
import * as vm from "./pages/vm.js";
import * as volumes from "./pages/volumes.js";
import * as migrations from "./pages/migrations.js";
import * as nodes from "./pages/nodes.js";

const REFRESH_MS = 1500;

// route name → [page module, nav entry]; a page exports mount(root, params, ctx) → {refresh,
// dispose}: mount builds what stays (forms keep what the user typed), refresh re-reads the
// API and fills the parts that change.
const ROUTES = [
  [/^\/?$/, "overview", overview],
  [/^\/tree$/, "tree", tree],
  [/^\/vms$/, "vms", vms],
  [/^\/vm\/([^/]+)$/, "vms", vm],
  [/^\/volumes(?:\/([^/]+))?$/, "volumes", volumes],
  [/^\/migrations$/, "migrations", migrations],
  [/^\/nodes(?:\/([^/]+))?$/, "nodes", nodes],
];

const $ = (id) => document.getElementById(id);
let current = null; // {page, timer, busy, seq}
let loggedIn = false;

/** A short message at the bottom of the screen; kind: "ok" or "bad". */
export function toast(message, kind = "ok") {
  const t = h(`div.toast.${kind}`, { role: kind === "bad" ? "alert" : "status" }, message);
  $("toasts").append(t);
  setTimeout(() => t.remove(), kind === "bad" ? 9000 : 4000);
}

function showLogin(message) {
  loggedIn = false;
  stopPage();
  events.stop();
  $("top").hidden = true;
  $("app").hidden = true;
  $("login").hidden = false;
  const err = $("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("token").focus();
}

function showApp() {
  loggedIn = true;
  $("login").hidden = true;
  $("top").hidden = false;
  $("app").hidden = false;
  $("session-node").textContent = sessionInfo().node ? `via ${sessionInfo().node}` : "";
  events.start();
  route();
}

function stopPage() {
  if (!current) return;
  clearTimeout(current.timer);
  current.stopped = true;
  if (current.page && current.page.dispose) current.page.dispose();
  current = null;
}

async function tick(cur) {
  if (cur.stopped) return;
  cur.busy = true;
  try {
    await cur.page.refresh();
    cur.error.hidden = true;
  } catch (e) {
    if (e && e.status !== 401 && e.name !== "AbortError") {
      fill(cur.error, errorBox(e, "refresh"));
      cur.error.hidden = false;
    }
  } finally {
    cur.busy = false;
  }
  if (!cur.stopped) cur.timer = setTimeout(() => tick(cur), REFRESH_MS);
}

/** Re-reads the page now (after an action, or when an event says something changed). */
export function refreshNow() {
  const cur = current;
  if (!cur || cur.busy || cur.stopped) return;
  clearTimeout(cur.timer);
  tick(cur);
}

function route() {
  if (!loggedIn) return;
  const path = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  stopPage();
  const root = $("app");
  let match = null;
  for (const [re, nav, mod] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      match = { nav, mod, params: m.slice(1) };
      break;
    }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", !!match && a.dataset.route === match.nav);
  }
  $("nav").classList.remove("open");
  $("menu-toggle").setAttribute("aria-expanded", "false");
  if (!match) {
    fill(root, h("div.card", h("h1", "Not found"), h("p", `No page ${path}. `, h("a", { href: "#/" }, "Overview"))));
    return;
  }
  const error = h("div.page-error", { hidden: true });
  const body = h("div.page");
  fill(root, error, body);
  const page = match.mod.mount(body, match.params, { toast, refreshNow });
  current = { page, error, stopped: false, busy: false, timer: null };
  tick(current);
}

async function start() {
  whenUnauthorized((message) =>
    showLogin(`Your session ended (${message}). Log in again.`));
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("login-button");
    btn.disabled = true;
    try {
      await login($("token").value.trim());
      $("token").value = "";
      showApp();
    } catch (e) {
      showLogin(e.status === 401 ? `Wrong token: ${e.message}` : `Login failed: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  });
  $("logout").addEventListener("click", async () => {
    try {
      await logout();
    } catch (_) {
      // logged out here anyway
    }
    showLogin("Logged out.");
  });
  $("menu-toggle").addEventListener("click", () => {
    const open = $("nav").classList.toggle("open");
    $("menu-toggle").setAttribute("aria-expanded", String(open));
  });
  window.addEventListener("hashchange", route);
  // Something changed: re-read the page soon (events can come in bursts: one re-read).
  let soon = null;
  events.subscribe(() => {
    if (!soon) soon = setTimeout(() => { soon = null; refreshNow(); }, 300);
  });
  try {
    if (await loadSession()) showApp();
    else showLogin("");
  } catch (e) {
    showLogin(`ferryd does not answer: ${e.message}`);
  }
}

start();
