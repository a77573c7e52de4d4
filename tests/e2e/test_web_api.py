# SPDX-License-Identifier: MIT
"""The web dashboard's API on a real lab, as a browser uses it over the TCP listener (raw HTTP
and a WebSocket from the lab's client namespace, tests/lib/webclient.py): the static page with
its security headers, login sessions (cookie flags, CSRF token, Origin, logout, expiry), the
serial console over a WebSocket typed into the guest's shell on the VM's own node and relayed
from another, the screen's WebSocket speaking RFB (VNC) on both too, and the alerts the
dashboard shows."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import create_vm, lab_session, missing, vm_on  # noqa: E402
from ferrytest import wait_for  # noqa: E402

NAME = f"wa{os.getpid()}"
SUBNET = "10.105.0.0/24"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WEBCLIENT = os.path.join(ROOT, "tests", "lib", "webclient.py")
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
VM = "webvm"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture(scope="module")
def vm(lab):
    """An appliance VM on host1 with a shell on its serial console and a VGA screen."""
    create_vm(lab, lab.hosts[0], VM, 20, workload="probe,shell", memory=128,
              extra=("--display", "vga"))
    return VM


def call(lab, host, method, path, headers=(), body=None, origin=True):
    """One HTTP request to host's TCP listener from the client namespace, as a browser makes
    it (with the Origin of the page when origin): {"status", "headers" (dict, lower-case
    names; Set-Cookie's value kept whole), "body", "json", "elapsed_s"}."""
    hs = list(headers)
    if origin and method not in ("GET", "HEAD"):
        hs.append(f"Origin: {host.url}")
    cmd = ["/usr/bin/python3", WEBCLIENT, "http", method, host.url + path]
    for h in hs:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["--body", body if isinstance(body, str) else json.dumps(body)]
    r = json.loads(lab.client_exec(cmd, timeout=60).stdout)
    r["headers"] = {k.lower(): v for k, v in r["headers"]}
    try:
        r["json"] = json.loads(r["body"])
    except ValueError:
        r["json"] = None
    return r


def login(lab, host):
    """Logs in on host: (cookie header, csrf token, the answer)."""
    r = call(lab, host, "POST", "/v1/session", body={"token": lab.token()})
    assert r["status"] == 200, r
    cookie = r["headers"]["set-cookie"].split(";")[0]
    return cookie, r["json"]["csrf"], r


def console(lab, host, vm, headers, send=None, expect=None, fragment=False, timeout=30):
    cmd = ["/usr/bin/python3", WEBCLIENT, "console",
           host.url + f"/v1/vms/{vm}/console/ws",
           "--timeout", str(timeout)]
    for h in headers:
        cmd += ["-H", h]
    if send is not None:
        cmd += ["--send", send]
    if expect is not None:
        cmd += ["--expect", expect]
    if fragment:
        cmd.append("--fragment")
    return json.loads(lab.client_exec(cmd, timeout=timeout + 30).stdout)


def test_static_page_with_security_headers(lab):
    h = lab.hosts[1]
    r = call(lab, h, "GET", "/")
    assert r["status"] == 200, r
    assert r["headers"]["content-type"].startswith("text/html")
    assert "<html" in r["body"].lower()
    for name, want in (("content-security-policy", CSP), ("x-content-type-options", "nosniff"),
                       ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY"),
                       ("cache-control", "no-cache")):
        assert r["headers"].get(name) == want, (name, r["headers"])
    etag = r["headers"]["etag"]
    again = call(lab, h, "GET", "/", headers=[f"If-None-Match: {etag}"])
    assert again["status"] == 304 and again["body"] == "", again
    # No way out of web/, no listing, no other types; the API's answers carry the headers too.
    for path in ("/ui/../../etc/passwd", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/", "/ui/a%00.js",
                 "/ui/..%2fmeson.build", "/ui/index.sh"):
        bad = call(lab, h, "GET", path)
        assert bad["status"] == 404, (path, bad)
        assert "root:" not in bad["body"]
    denied = call(lab, h, "GET", "/v1/vms")
    assert denied["status"] == 401, denied
    assert denied["headers"]["content-security-policy"] == CSP


def test_login_wrong_token_then_right(lab):
    h = lab.hosts[1]
    bad = call(lab, h, "POST", "/v1/session", body={"token": "x" * 48})
    assert bad["status"] == 401, bad
    assert bad["json"]["error"]["code"] == "unauthorized"
    assert bad["elapsed_s"] >= 0.9, "a wrong token must be answered slowly"
    assert "set-cookie" not in bad["headers"]
    assert call(lab, h, "POST", "/v1/session", body={})["status"] == 400
    assert call(lab, h, "POST", "/v1/session", body="not json")["status"] == 400

    cookie, csrf, r = login(lab, h)
    flags = [f.strip() for f in r["headers"]["set-cookie"].split(";")]
    assert re.fullmatch(r"ferry_session=[0-9a-f]{64}", flags[0]), flags
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/" in flags \
        and "Secure" in flags, flags
    assert re.fullmatch(r"[0-9a-f]{64}", csrf)
    assert r["json"]["node"] == h.name
    assert abs(r["json"]["expires_at"] - (time.time() + 8 * 3600)) < 120, r["json"]
    # The cookie alone reads: the session and the API.
    again = call(lab, h, "GET", "/v1/session", headers=[f"Cookie: {cookie}"])
    assert again["status"] == 200 and again["json"]["csrf"] == csrf, again
    vms = call(lab, h, "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert vms["status"] == 200 and len(vms["json"]["nodes"]) == 3, vms
    # A session of one node means nothing to another (sessions live in each ferryd).
    other = call(lab, lab.hosts[0], "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert other["status"] == 401, other


def vm_state(lab, name):
    return lab.hosts[0].cli_json("vm", "show", name)["state"]


def test_csrf_and_origin_guard_state_changes(lab, vm):
    h = lab.hosts[1]  # not the VM's node: the request is forwarded to host1
    cookie, csrf, _ = login(lab, h)
    c = f"Cookie: {cookie}"
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c])
    assert r["status"] == 403, r
    assert r["json"]["error"]["code"] == "forbidden" and "CSRF" in r["json"]["error"]["message"]
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, "X-CSRF-Token: " + "0" * 64])
    assert r["status"] == 403, r
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, f"X-CSRF-Token: {csrf}",
                                                            "Origin: http://evil.example"],
             origin=False)
    assert r["status"] == 403 and "Origin" in r["json"]["error"]["message"], r
    time.sleep(0.5)
    assert vm_state(lab, vm) == "running"  # nothing changed
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert vm_state(lab, vm) == "paused"
    r = call(lab, h, "POST", f"/v1/vms/{vm}/resume", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert vm_state(lab, vm) == "running"
    # The CLI's bearer token needs no CSRF header.
    r = call(lab, h, "POST", f"/v1/vms/{vm}/resume",
             headers=[f"Authorization: Bearer {lab.token()}"], origin=False)
    assert r["status"] in (200, 409), r


def test_logout_ends_the_session(lab):
    h = lab.hosts[1]
    cookie, csrf, _ = login(lab, h)
    c = f"Cookie: {cookie}"
    assert call(lab, h, "DELETE", "/v1/session", headers=[c])["status"] == 403  # no CSRF
    r = call(lab, h, "DELETE", "/v1/session", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert "Max-Age=0" in r["headers"]["set-cookie"], r["headers"]
    after = call(lab, h, "GET", "/v1/nodes", headers=[c])
    assert after["status"] == 401 and "log in again" in after["json"]["error"]["message"], after


def test_console_websocket_refused_without_a_session(lab, vm):
    h = lab.hosts[0]
    r = console(lab, h, vm, [f"Origin: {h.url}"], timeout=10)
    assert r["status"] == 401 and not r["upgraded"], r
    cookie, _, _ = login(lab, h)
    r = console(lab, h, vm, [f"Cookie: {cookie}", "Origin: http://evil.example"], timeout=10)
    assert r["status"] == 403 and not r["upgraded"], r
    r = console(lab, h, "nosuchvm", [f"Cookie: {cookie}", f"Origin: {h.url}"], timeout=10)
    assert r["status"] == 404 and not r["upgraded"], r


@pytest.mark.parametrize("where", ["own node", "another node"])
def test_console_websocket_types_into_the_guest(lab, vm, where):
    """What is typed reaches the guest's shell and its answer comes back: on the VM's own node
    (QEMU's console socket and ring) and on another (relayed over the peer API)."""
    h = lab.hosts[0] if where == "own node" else lab.hosts[2]
    cookie, _, _ = login(lab, h)
    n = 6 if where == "own node" else 7
    t0 = time.monotonic()
    r = console(lab, h, vm, [f"Cookie: {cookie}", f"Origin: {h.url}"],
                send=f"echo web-$(({n}*7))\r", expect=f"web-{n * 7}", fragment=True)
    assert r["upgraded"] and r["accept_ok"], r
    assert r["found"], f"no answer from the guest's shell on {h.name}: {r['output'][-1500:]!r}"
    assert r["pong"], r  # a ping between two fragments of the typed message
    assert r["close"] == 1000, r
    # The first frames are the console's past (the guest's boot), not only what came later.
    assert "ferry-guest" in r["output"] or "~ #" in r["output"], r["output"][:500]
    print(f"console on {h.name} ({where}): answer after {time.monotonic() - t0:.1f} s")


def vnc(lab, host, vm, headers, timeout=30):
    cmd = ["/usr/bin/python3", WEBCLIENT, "vnc", host.url + f"/v1/vms/{vm}/vnc/ws",
           "--timeout", str(timeout)]
    for h in headers:
        cmd += ["-H", h]
    return json.loads(lab.client_exec(cmd, timeout=timeout + 30).stdout)


def test_screen_websocket_refused_without_a_session(lab, vm):
    h = lab.hosts[0]
    r = vnc(lab, h, vm, [f"Origin: {h.url}"], timeout=10)
    assert r["status"] == 401 and not r["upgraded"], r
    cookie, _, _ = login(lab, h)
    r = vnc(lab, h, vm, [f"Cookie: {cookie}", "Origin: http://evil.example"], timeout=10)
    assert r["status"] == 403 and not r["upgraded"], r
    r = vnc(lab, h, "nosuchvm", [f"Cookie: {cookie}", f"Origin: {h.url}"], timeout=10)
    assert r["status"] == 404 and not r["upgraded"], r
    # Relayed: the VM's node is never reached without a session here.
    r = vnc(lab, lab.hosts[1], vm, [f"Origin: {lab.hosts[1].url}"], timeout=10)
    assert r["status"] == 401 and not r["upgraded"], r


@pytest.mark.parametrize("where", ["own node", "another node"])
def test_screen_websocket_speaks_rfb(lab, vm, where):
    """noVNC's half of RFB over the screen's WebSocket reaches the VM's QEMU VNC server: on
    its own node (the unix socket) and on another (relayed byte for byte); the first full
    update has the guest's text screen, not one colour."""
    h = lab.hosts[0] if where == "own node" else lab.hosts[1]
    cookie, _, _ = login(lab, h)
    t0 = time.monotonic()
    r = vnc(lab, h, vm, [f"Cookie: {cookie}", f"Origin: {h.url}"])
    assert r["upgraded"] and r["accept_ok"], r
    assert r["version"] == "RFB 003.008\n" and r["security"] == [1], r
    assert r["width"] >= 640 and r["height"] >= 350, r  # VGA text mode is 720x400
    assert VM in r["name"], r  # "QEMU (webvm)"
    assert r["pixels"] == r["width"] * r["height"] * 4, r
    assert r["colours"] >= 2, f"the screen is one colour: {r}"
    print(f"screen on {h.name} ({where}): {r['width']}x{r['height']}, {r['colours']} colours "
          f"sampled, {time.monotonic() - t0:.1f} s")


def test_console_input_endpoint_checks_its_body(lab, vm):
    h = lab.hosts[1]
    auth = [f"Authorization: Bearer {lab.token()}"]
    for body in ({}, {"data": ""}, {"data": 5}, {"data": "x", "more": 1}, {"data": "x" * 20000}):
        r = call(lab, h, "POST", f"/v1/vms/{vm}/console/input", headers=auth, body=body,
                 origin=False)
        assert r["status"] == 400, (body, r)
    r = call(lab, h, "POST", "/v1/vms/nosuchvm/console/input", headers=auth,
             body={"data": "x"}, origin=False)
    assert r["status"] == 404, r


def open_console(lab, h, vm, cookie, timeout=20):
    """A console WebSocket held open in the background: its process prints the result when the
    server closes it (or at timeout)."""
    return lab.client_popen(["/usr/bin/python3", WEBCLIENT, "console",
                             h.url + f"/v1/vms/{vm}/console/ws", "-H", f"Cookie: {cookie}",
                             "-H", f"Origin: {h.url}", "--timeout", str(timeout)],
                            stdout=subprocess.PIPE, text=True)


def test_console_closes_when_the_session_ends(lab, vm):
    h = lab.hosts[0]
    cookie, csrf, _ = login(lab, h)
    p = open_console(lab, h, vm, cookie)
    try:
        time.sleep(1)
        r = call(lab, h, "DELETE", "/v1/session",
                 headers=[f"Cookie: {cookie}", f"X-CSRF-Token: {csrf}"])
        assert r["status"] == 200, r
        t0 = time.monotonic()
        out = json.loads(p.communicate(timeout=30)[0])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out["upgraded"] and out["close"] == 1008, out
    assert time.monotonic() - t0 < 10, "the console outlived its session"


def test_restart_logs_out_and_sessions_expire(lab, vm):
    """A ferryd restart (SIGTERM, with a console WebSocket open) ends its sessions; a session
    over its --session-ttl is refused with a message that says to log in again (host2 runs with
    a ttl of 2 s from here on)."""
    h = lab.hosts[1]
    cookie, _, _ = login(lab, h)
    p = open_console(lab, h, vm, cookie)
    try:
        time.sleep(1)
        assert p.poll() is None
        lab.kill_ferryd(h, signal.SIGTERM)  # LabError if it hangs on the open WebSocket
        out = json.loads(p.communicate(timeout=30)[0])
        assert out["upgraded"], out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lab.start_ferryd(h, args=["--session-ttl", "2"])
    r = call(lab, h, "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert r["status"] == 401 and "restarted" in r["json"]["error"]["message"], r
    cookie, _, r = login(lab, h)
    assert abs(r["json"]["expires_at"] - (time.time() + 2)) < 30, r["json"]
    assert call(lab, h, "GET", "/v1/session", headers=[f"Cookie: {cookie}"])["status"] == 200
    time.sleep(2.2)
    r = call(lab, h, "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert r["status"] == 401, r
    assert "expired" in r["json"]["error"]["message"], r
    assert "log in again" in r["json"]["error"]["message"], r


def test_vm_history_for_graphs(lab, vm):
    """The VM's node samples it every 10 s; another node forwards the question."""
    h = lab.hosts[2]  # host2 has a 2 s session ttl by now
    cookie, _, _ = login(lab, h)
    c = f"Cookie: {cookie}"

    def points():
        r = call(lab, h, "GET", f"/v1/vms/{vm}/history?range=hour", headers=[c])
        assert r["status"] == 200, r
        return r["json"]["points"]
    pts = wait_for(points, 40, f"a point in {vm}'s history")
    p = pts[-1]
    assert abs(p["t"] - time.time()) < 60, p
    assert 0 < p["cpu"] < 4, p  # a booted TCG guest with a shell and probes is not idle at 0
    assert 64 << 20 < p["memory_bytes"] < 4 << 30, p  # QEMU's RSS for a 128 MiB guest
    for k in ("disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps"):
        assert p[k] >= 0, p
    day = call(lab, h, "GET", f"/v1/vms/{vm}/history?range=day", headers=[c])
    assert day["status"] == 200 and day["json"]["step_s"] == 300, day
    bad = call(lab, h, "GET", f"/v1/vms/{vm}/history?range=week", headers=[c])
    assert bad["status"] == 400, bad


def test_vm_history_follows_a_migration_and_a_restart(lab, vm):
    """The VM's graphs keep their past: after a live migration its new node serves the old
    node's points followed by its own (it asked its peers for them), and after a ferryd
    restart the node serves them again (from STATE_DIR/vm-history.json); a file cut short is
    set aside and the graphs start afresh."""
    h1, h2 = lab.hosts[0], lab.hosts[1]

    def hist(h):
        st, body = h.api("GET", f"/v1/vms/{vm}/history?range=hour")
        assert st == 200, body
        return [p["t"] for p in body["points"]]
    before = wait_for(lambda: (lambda ts: ts if len(ts) >= 3 else None)(hist(h1)), 40,
                      f"3 points in {vm}'s history on host1", interval=1)
    t0 = time.time()
    h1.cli("vm", "migrate", vm, "--to", h2.name)
    moved = time.time()
    assert vm_on(h1, vm)["owner"] == h2.name

    def merged():
        ts = hist(h1)  # host1 forwards the question to host2, where the VM is
        return ts if set(before) <= set(ts) and ts[-1] > moved else None
    ts = wait_for(merged, 40, "host1's points and a new one of host2 in the VM's history",
                  interval=1)
    assert ts == sorted(ts) and len(ts) == len(set(ts)), ts
    assert [t for t in ts if t <= t0] and [t for t in ts if t > moved], (ts, t0, moved)
    assert re.search(rf"history: {vm}'s past \(\d+ points\) from {h1.name}",
                     h2.log_tail(20000)), h2.log_tail(3000)
    print(f"{len(before)} points before the migration, {len(ts)} after, "
          f"{len([t for t in ts if t > moved])} of host2's own")
    lab.kill_ferryd(h2, signal.SIGTERM)
    lab.start_ferryd(h2)
    after = hist(h2)  # at once: loaded, not sampled again
    assert set(ts) <= set(after), (ts, after)
    assert "VM histories loaded from" in h2.log_tail(20000), h2.log_tail(3000)
    # A file cut short (a disk that filled up, say) is set aside with a log line; the
    # graphs start afresh and ferryd runs on.
    lab.kill_ferryd(h2, signal.SIGTERM)
    path = os.path.join(h2.state_dir, "vm-history.json")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    lab.start_ferryd(h2)
    assert hist(h2) == []
    assert re.search(r"history: .*vm-history.json ignored, the graphs start afresh: not JSON",
                     h2.log_tail(20000)), h2.log_tail(3000)
    assert os.path.exists(path + ".bad")


def alerts(lab, h, cookie):
    r = call(lab, h, "GET", "/v1/alerts", headers=[f"Cookie: {cookie}"])
    assert r["status"] == 200, r
    return r["json"]["alerts"]


def test_nodes_cpu_load_and_history(lab, vm):
    """Every node's CPUs, load averages and CPU use in /v1/nodes (each measures its own and
    sends them with its heartbeats), `ferry node list|show`, /metrics, and a node's CPU/memory
    history served by that node through another."""
    h1, h3 = lab.hosts[0], lab.hosts[2]

    def all_busy():
        st, body = h1.api("GET", "/v1/nodes")
        nodes = body["nodes"] if st == 200 else []
        ok = len(nodes) == 3 and all("busy_ratio" in (n.get("cpu") or {}) for n in nodes)
        return nodes if ok else None
    nodes = wait_for(all_busy, 20, "CPU use of every node in /v1/nodes", interval=0.5)
    for n in nodes:
        c = n["cpu"]
        assert c["count"] >= 1 and 0 <= c["busy_ratio"] <= 1, n
        assert all(c[k] >= 0 for k in ("load1", "load5", "load15")), n
        assert 0 < n["host_memory"]["used_bytes"] < n["host_memory"]["total_bytes"], n
    table = h1.cli("node", "list").stdout.splitlines()
    head = table[0].split()
    assert head[6:9] == ["CPUS", "LOAD1", "CPU%"], head
    for line in table[1:]:  # (the LEADER cell is empty but for one: words do not line up)
        assert re.search(r" \d+ +\d+ +\d+\.\d\d +\d+% +\d", line), line
    assert re.search(r"load: +\d+\.\d\d \d+\.\d\d \d+\.\d\d \(1, 5, 15 min\)",
                     h3.cli("node", "show").stdout)
    auth = [f"Authorization: Bearer {lab.token()}"]
    text = call(lab, h1, "GET", "/metrics", headers=auth)["body"]
    for m in (r"ferry_node_cpus \d+", r"ferry_node_load1 \d+\.\d\d",
              r'ferry_node_cpu_seconds_total\{mode="busy"\} \d+'):
        assert re.search(m, text), m
    # host3's history, asked of host1: host3 samples itself every 10 s.
    r = wait_for(lambda: (lambda r: r if r["status"] == 200 and r["json"]["points"] else None)(
        call(lab, h1, "GET", "/v1/nodes/host3/history?range=hour", headers=auth)), 25,
        "a point of host3's history", interval=1)
    assert r["json"]["node"] == "host3" and r["json"]["step_s"] == 10, r["json"]
    p = r["json"]["points"][-1]
    assert p["cpu"] >= 0 and p["memory_bytes"] > 0, p
    assert call(lab, h1, "GET", "/v1/nodes/nosuch/history", headers=auth)["status"] == 404
    assert call(lab, h1, "GET", "/v1/nodes/host1/history?range=week",
                headers=auth)["status"] == 400


def test_alerts_show_a_node_that_went_down(lab, vm):
    h = lab.hosts[0]
    cookie, _, _ = login(lab, h)
    assert alerts(lab, h, cookie) == []  # a healthy cluster with a running VM
    h3 = lab.hosts[2]
    t0 = time.monotonic()
    lab.kill_ferryd(h3)
    down = wait_for(lambda: next((a for a in alerts(lab, h, cookie)
                                  if a["name"] == "NodeDown" and a["subject"] == h3.name), None),
                    30, f"NodeDown for {h3.name} in /v1/alerts")
    print(f"NodeDown for {h3.name} {time.monotonic() - t0:.1f} s after its ferryd was killed")
    assert down["severity"] == "critical" and down["state"] == "pending", down
    assert abs(down["since"] - time.time()) < 30, down
    assert h3.name in down["message"], down
    others = [a for a in alerts(lab, h, cookie) if a["name"] != "NodeDown"]
    assert others == [], others  # two of three still have quorum and a leader
