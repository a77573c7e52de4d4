# SPDX-License-Identifier: MIT
"""End to end on one host: the real ferry CLI against a real ferryd running real TCG guests."""
import json
import os
import re
import signal
import socket
import subprocess
import http.client
import time

from ferrytest import FERRYD, GUEST, Host, pid_alive, run, wait_for


def test_node_show_reports_accelerator(host):
    node = host.cli_json("node", "show")
    with open("/proc/cpuinfo") as f:
        hw = any(w in ("vmx", "svm") for line in f if line.startswith("flags") for w in line.split())
    assert node["accel"] == ("kvm" if hw and os.access("/dev/kvm", os.W_OK) else "tcg")
    assert node["accel_reason"]
    assert node["accel_forced"] is False
    assert node["memory"]["total_mib"] > 0
    text = host.cli("node", "show").stdout
    assert node["accel"] in text


def test_forced_tcg_is_shown(host):
    host.kill_ferryd(signal.SIGTERM)
    host.start_ferryd("--accel", "tcg")
    node = host.cli_json("node", "show")
    assert node["accel"] == "tcg" and node["accel_forced"] is True


def test_qemu_version_shown_and_tcg_migration_with_old_qemu_refused(host, tmp_path):
    """ferryd reads its QEMU's version at start and shows it. Under TCG a QEMU older than 9.0
    loses guest writes in a live migration (src/qemu/version.h): such a host refuses to
    migrate any VM away, says why in `node show` and in the refusal, unless told
    --unsafe-tcg-migration on (for measuring that bug)."""
    node = host.cli_json("node", "show")
    real = run(["qemu-system-x86_64", "--version"]).stdout.splitlines()[0]
    assert real.startswith("QEMU emulator version ") and node["qemu"] in real, (node, real)
    assert "qemu:" in host.cli("node", "show").stdout
    if node["accel"] != "tcg":
        return  # the refusal is about TCG; KVM tracks dirty pages in the kernel
    assert node["migration_refused"] is None, node  # install-deps pins QEMU 10.0
    # A QEMU that says it is Debian 12's 7.2 (and is the real one otherwise).
    old = tmp_path / "qemu-7.2"
    old.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = --version ]; then\n"
                   "  echo 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'\n"
                   "  exit 0\nfi\n"
                   "exec qemu-system-x86_64 \"$@\"\n")
    old.chmod(0o755)
    host.kill_ferryd(signal.SIGTERM)
    host.start_ferryd("--accel", "tcg", "--qemu", str(old))
    node = host.cli_json("node", "show")
    assert node["qemu"] == "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", node
    why = node["migration_refused"]
    assert why and "QEMU 7.2.22 under TCG" in why and "loses guest writes" in why and \
        "install-deps" in why, node
    assert "live migration:" in host.cli("node", "show").stdout
    host.cli("vm", "create", "old1", "--memory", "64", "--appliance")
    r = host.cli("vm", "migrate", "old1", "--to", "host9", check=False)
    assert r.returncode != 0 and "cannot be live-migrated from host1" in r.stderr and \
        "QEMU 7.2.22" in r.stderr, r.stderr
    assert "outgoing live migrations are refused" in host.log_text()
    host.kill_ferryd(signal.SIGTERM)
    host.start_ferryd("--accel", "tcg", "--qemu", str(old), "--unsafe-tcg-migration", "on")
    assert host.cli_json("node", "show")["migration_refused"] is None
    assert "migrating anyway (--unsafe-tcg-migration on)" in host.log_text()
    r = host.cli("vm", "migrate", "old1", "--to", "host9", check=False)
    assert r.returncode != 0 and "QEMU 7.2.22" not in r.stderr, r.stderr  # refused for
    host.cli("vm", "delete", "old1")                                       # other reasons


def test_ferryd_refuses_bad_options(tmp_path):
    """A bad option value stops ferryd at once (exit 2) with a message naming the option and
    what it takes; it creates neither its socket nor its state."""
    for args, says in ((["--migrate-prealloc", "maybe"], "migrate_prealloc: expected on or off"),
                       (["--max-migrations", "0"], "max_migrations: expected an integer"),
                       (["--accel", "xen"], "accel: expected auto, kvm or tcg"),
                       (["--migration-tls", "yes"], "migration_tls: expected on or off"),
                       (["--unsafe-tcg-migration", "yes"],
                        "unsafe_tcg_migration: expected on or off")):
        state, sock = tmp_path / "state", tmp_path / "ferryd.sock"
        p = subprocess.run([FERRYD, "--state-dir", str(state), "--socket", str(sock), *args],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and says in p.stderr, (args, p.returncode, p.stderr)
        assert not state.exists() and not sock.exists(), args


def test_lifecycle_probe_console_pause_stop_delete(host):
    ip = host.create_appliance_vm("web1", 1)
    vm = host.vm("web1")
    assert vm["state"] == "running"
    assert vm["pid"] > 0 and pid_alive(vm["pid"])
    host.wait_guest(ip)
    # The machine type is pinned at create: the versioned type "pc" stands for on this host,
    # so a later QEMU upgrade or a migration builds the same machine.
    helptext = run(["qemu-system-x86_64", "-machine", "help"]).stdout
    pc = re.search(r"^pc\s.*\(alias of (\S+)\)", helptext, re.M).group(1)
    assert vm["spec"]["machine"] == pc, vm["spec"]
    with open(f"/proc/{vm['pid']}/cmdline", "rb") as f:
        assert f"{pc},accel=".encode() in f.read(), "QEMU runs another machine type"
    assert re.search(rf"^machine:\s+{re.escape(pc)}$", host.cli("vm", "show", "web1").stdout, re.M)

    listing = host.cli_json("vm", "list")
    assert [v["name"] for v in listing["vms"]] == ["web1"]
    assert "web1" in host.cli("vm", "list").stdout

    wait_for(lambda: "ferry-guest: ready" in host.console("web1"), 30, "guest ready on console")
    console = host.console("web1")
    assert "Linux version" in console
    # The console's byte offsets through the API: a small read from 0, the rest from where it
    # ended, and together they are the start of the whole console (which only grows).
    st, a = host.api_get("/v1/vms/web1/console?offset=0&max=100")
    assert st == 200 and a["start"] == 0 and a["from"] == 0, a
    n = len(a["data"].encode())
    assert 0 < n <= 100 and a["offset"] == n, a
    st, b = host.api_get(f"/v1/vms/web1/console?offset={n}&max=1048576")
    assert st == 200 and b["from"] == n and b["offset"] == n + len(b["data"].encode()), b
    st, whole = host.api_get("/v1/vms/web1/console?offset=0&max=1048576")
    assert st == 200 and whole["data"].startswith(a["data"] + b["data"]), (a, b)
    # Past the end: nothing, and where the end is; the default is the tail.
    st, c = host.api_get(f"/v1/vms/web1/console?offset={whole['offset'] + 10**6}")
    assert st == 200 and c["data"] == "" and c["from"] == c["offset"], c
    assert whole["offset"] <= c["offset"] < whole["offset"] + 10**6, (whole["offset"], c)
    st, tail = host.api_get("/v1/vms/web1/console?max=64")
    assert st == 200 and 0 < len(tail["data"].encode()) <= 64, tail
    for bad in ("offset=-1", "max=0x10", "max=2000000", "offset=abc", "ofset=0", "max=1&max=2"):
        st, err = host.api_get(f"/v1/vms/web1/console?{bad}")
        assert st == 400 and err["error"]["message"], (bad, st, err)
    assert "it takes: offset, max" in err["error"]["message"], err  # a typo names the right ones

    # Pause: the guest stops answering; resume: it answers again.
    host.cli("vm", "pause", "web1")
    assert host.vm_state("web1") == "paused"
    r = host.probe("udp", ip, "--interval-ms", "10", "--duration-s", "1", "--json")
    assert json.loads(r.stdout)["received"] == 0
    host.cli("vm", "resume", "web1")
    assert host.vm_state("web1") == "running"
    host.wait_guest(ip, timeout=10)

    # A graceful stop: ACPI power button, the guest powers itself off.
    qemu_pid = host.vm("web1")["pid"]
    host.cli("vm", "stop", "web1", "--timeout", "60")
    vm = host.vm("web1")
    assert vm["state"] == "stopped"
    assert "request" in vm["reason"]
    assert "ferry-guest: powering off" in host.console("web1")
    assert vm["pid"] == 0 and not pid_alive(qemu_pid)
    assert not any(e["type"] == "vm.killed" for e in host.cli_json("events")["events"]), \
        "the guest must power off by itself, not be killed after the timeout"
    # The tap is gone with the VM.
    links = host.ip("-o", "link", "show").stdout
    assert all(t not in links for t in vm["taps"])

    host.cli("vm", "delete", "web1")
    assert host.cli_json("vm", "list")["vms"] == []
    assert os.path.exists(f"{host.disks}/web1.vhd"), "delete must keep the disk file"
    events = [e["type"] for e in host.cli_json("events")["events"] if e["vm"] == "web1"]
    for t in ("vm.created", "vm.started", "vm.paused", "vm.resumed", "vm.stopped", "vm.deleted"):
        assert t in events


def test_recorder_acknowledged_writes_are_on_disk(host):
    ip = host.create_appliance_vm("rec1", 2, workload="probe,recorder")
    host.wait_guest(ip)
    r = host.probe("recorder", ip, "--duration-s", "4", "--json", timeout=60)
    acks = json.loads(r.stdout)
    assert acks["acked_count"] > 10, acks
    host.cli("vm", "stop", "rec1")
    out = host.probe("verify-disk", f"{host.disks}/rec1.vhd", "--acked", str(acks["acked_max"]),
                     "--json")
    report = json.loads(out.stdout)
    assert report["max_seq"] >= acks["acked_max"]
    # The fixed VHD footer is intact: qemu-img still reads it as a fixed VHD.
    info = host.cli_json("disk", "info", f"{host.disks}/rec1.vhd")
    assert info["format"] == "vpc" and info["subformat"] == "fixed"


# ferryd is not in a VM's data path: its restart must not widen the guest's gaps beyond the
# guest's own jitter, measured in the same test just before (twice that as margin), and never
# a limit below RESTART_GAP_FLOOR_MS (a TCG guest on 2 busy CPUs).
RESTART_GAP_FLOOR_MS = 150


def restart_gap_limit_ms(jitter):
    """The limit for the longest gap while ferryd restarts, from a baseline probe report."""
    return max(RESTART_GAP_FLOOR_MS, 2 * jitter["longest_gap_ms"])


def test_ferryd_restart_keeps_vm_running(host):
    ip = host.create_appliance_vm("keep1", 3)
    host.wait_guest(ip)
    pid = host.vm("keep1")["pid"]
    jitter = json.loads(host.probe("udp", ip, "--interval-ms", "1", "--duration-s", "2",
                                   "--json").stdout)
    prober = host.probe_bg("udp", ip, "--interval-ms", "1", "--json")
    time.sleep(1)
    host.kill_ferryd(signal.SIGKILL)
    time.sleep(1)
    assert pid_alive(pid), "QEMU must survive ferryd's death"
    host.start_ferryd()
    wait_for(lambda: host.vm_state("keep1") == "running", 20, "re-attach")
    assert host.vm("keep1")["pid"] == pid
    time.sleep(1)
    res = host.probe_result(prober)
    print(f"\nferryd restart: longest gap {res['longest_gap_ms']} ms, the guest's own before: "
          f"{jitter['longest_gap_ms']} ms")
    assert res["received"] >= 0.99 * res["sent"] and res["last_reply_age_ms"] < 100, res
    assert res["longest_gap_ms"] < restart_gap_limit_ms(jitter), (res, jitter)
    # Managed again: pause/resume and console work through the new ferryd.
    host.cli("vm", "pause", "keep1")
    host.cli("vm", "resume", "keep1")
    host.wait_guest(ip, timeout=10)
    assert "ferry-guest: ready" in host.console("keep1")
    events = [e["type"] for e in host.cli_json("events")["events"]]
    assert "vm.attached" in events


def test_dead_qemu_marks_vm_failed_and_others_keep_running(host):
    ip1 = host.create_appliance_vm("a1", 4)
    ip2 = host.create_appliance_vm("a2", 5)
    host.wait_guest(ip1)
    host.wait_guest(ip2)
    os.kill(host.vm("a1")["pid"], signal.SIGKILL)
    wait_for(lambda: host.vm_state("a1") == "failed", 10, "a1 failed")
    assert "signal 9" in host.vm("a1")["reason"]
    assert host.vm_state("a2") == "running"
    host.wait_guest(ip2, timeout=10)
    # A failed VM can be started again.
    host.cli("vm", "start", "a1")
    host.wait_guest(ip1)


def test_kill_and_metrics(host):
    ip = host.create_appliance_vm("m1", 6)
    host.wait_guest(ip)
    c = UnixHTTP(host.sock)
    status, text = c.request("GET", "/metrics")
    assert status == 200
    assert 'ferry_vm_state{vm="m1",state="running"} 1' in text
    assert 'ferry_vm_memory_bytes{vm="m1"} 268435456' in text
    assert "ferry_vm_cpu_seconds_total" in text
    assert 'ferry_vm_disk_read_bytes_total{vm="m1",disk="disk0"}' in text
    assert 'ferry_vm_net_tx_bytes_total{vm="m1"' in text
    host.cli("vm", "kill", "m1")
    assert host.vm_state("m1") == "stopped"


class UnixHTTP:
    """A raw HTTP client on ferryd's unix socket, for inputs the CLI would never send."""

    def __init__(self, path):
        self.path = path

    def request(self, method, url, body=None, headers=None):
        conn = http.client.HTTPConnection("localhost")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        conn.sock = s
        conn.request(method, url, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode()
        conn.close()
        return r.status, data


def error_of(text):
    return json.loads(text)["error"]


def test_bad_input_changes_nothing(host):
    c = UnixHTTP(host.sock)
    kernel = os.path.join(GUEST, "vmlinuz")
    good = {"name": "ok1", "memory_mib": 128, "boot": {"kernel": kernel}}

    def bad(spec, status, words):
        st, text = c.request("POST", "/v1/vms", json.dumps(spec) if not isinstance(spec, str) else spec)
        assert st == status, (spec, st, text)
        msg = error_of(text)["message"]
        for w in words:
            assert w in msg, (spec, msg)

    bad({**good, "name": "Bad_Name"}, 400, ["name"])
    bad({**good, "name": ""}, 400, ["name"])
    bad({**good, "memory_mib": 0}, 400, ["memory_mib"])
    bad({**good, "memory_mib": 1 << 30}, 400, ["memory_mib"])
    bad({**good, "cpu": {"sockets": 9}}, 400, ["cpu.sockets", "8"])
    bad({**good, "disks": [{"path": "/nonexistent-dir/x.vhd", "size_mib": 10}]}, 400, ["disks[0].path"])
    bad({**good, "nics": [{"bridge": "nosuchbr"}]}, 400, ["nics[0].bridge", "nosuchbr"])
    bad({**good, "frobnicate": 1}, 400, ["frobnicate"])
    bad({**good, "machine": "pc-i440fx-1.0x"}, 400, ["machine", "no machine type", "-machine help"])
    bad({**good, "machine": "pc,accel=kvm"}, 400, ["machine: expected a QEMU machine type"])
    bad({**good, "memory_mib": "128"}, 400, ["memory_mib"])
    bad("{not json", 400, ["JSON"])
    bad("[1,2]", 400, ["object"])
    st, text = c.request("POST", "/v1/vms", "x" * (2 * 1024 * 1024))
    assert st == 413, st

    # Unknown VM, unknown route, wrong method.
    st, text = c.request("GET", "/v1/vms/ghost")
    assert st == 404 and "ghost" in error_of(text)["message"]
    st, _ = c.request("GET", "/v1/nothing")
    assert st == 404
    st, _ = c.request("DELETE", "/v1/node")
    assert st == 405
    st, text = c.request("POST", "/v1/vms/ghost/start")
    assert st == 404

    # Bodies of other calls: unknown fields and bad values are refused with what is accepted.
    for method, path, body, words in (
            ("POST", "/v1/disks", {"path": f"{host.disks}/d.vhd", "size_mib": 8, "x": 1},
             ["unknown field \"x\"", "size_mib"]),
            ("POST", "/v1/disks", {"path": f"{host.disks}/d.vhd", "size_mib": 0}, ["size_mib"]),
            ("POST", "/v1/cluster/init", {"name": 5}, ["name"]),
            ("POST", "/v1/cluster/init", {"nom": "x"}, ["unknown field \"nom\""]),
            ("POST", "/v1/cluster/join", {"address": "10.0.0.1:7443", "token": 1}, ["token"]),
            ("POST", "/v1/cluster/remove", {}, ["node"])):
        st, text = c.request(method, path, json.dumps(body))
        msg = error_of(text)["message"]
        assert st == 400 and all(w in msg for w in words), (path, body, st, msg)

    # Nothing was created by any of that.
    assert host.cli_json("vm", "list")["vms"] == []
    assert os.listdir(host.disks) == []
    assert not os.path.exists("/nonexistent-dir")

    # A good spec works, then a duplicate is refused and the first VM is unchanged.
    st, text = c.request("POST", "/v1/vms", json.dumps({**good, "disks": [{"path": f"{host.disks}/ok1.vhd", "size_mib": 16}]}))
    assert st == 201, text
    st, text = c.request("POST", "/v1/vms", json.dumps({**good, "memory_mib": 64}))
    assert st == 409 and "exists" in error_of(text)["message"]
    assert host.vm("ok1")["memory_mib"] == 128
    for body, word in (({"timeout_s": 0}, "1..3600"), ({"timeout": 5}, "unknown field")):
        st, text = c.request("POST", "/v1/vms/ok1/stop", json.dumps(body))
        assert st == 400 and word in error_of(text)["message"], (body, st, text)

    # The CLI: clear message and non-zero exit, nothing created.
    p = host.cli("vm", "create", "Bad_Name", "--memory", "64", check=False)
    assert p.returncode != 0 and "name" in p.stderr
    p = host.cli("vm", "create", "x2", "--memory", "64", "--nic", "nosuchbr", "--kernel", kernel, check=False)
    assert p.returncode != 0 and "nosuchbr" in p.stderr
    p = host.cli("vm", "create", "x3", "--memory", "64", "--sockets", "9", "--kernel", kernel, check=False)
    assert p.returncode != 0 and "sockets" in p.stderr
    p = host.cli("vm", "show", "ghost", check=False)
    assert p.returncode != 0 and "ghost" in p.stderr
    p = host.cli("vm", "stop", "ok1", check=False)
    assert p.returncode != 0 and "not running" in p.stderr
    p = host.cli("vm", "frobnicate", check=False)
    assert p.returncode != 0
    # Operands: one expected, none or two is a usage error (exit 2) naming what is wrong.
    for args, word in ((["vm", "show"], "a VM NAME is needed"),
                       (["vm", "migrate", "a", "b"], "unexpected argument 'b'"),
                       (["node", "drain"], "a NODE is needed"),
                       (["cluster", "remove", "Bad_x"], "not a node name"),
                       (["vm", "create", "x4", "--node", "Bad_x"], "not a node name"),
                       (["vm", "measure-migration", "--client-gap-ms", "1"], "migration ID")):
        p = host.cli(*args, check=False)
        assert p.returncode == 2 and word in p.stderr and "Try 'ferry" in p.stderr, (args, p)
    assert [v["name"] for v in host.cli_json("vm", "list")["vms"]] == ["ok1"]

    # A disk the VM needs vanished: start fails with a clear reason, no QEMU, no tap left.
    os.unlink(f"{host.disks}/ok1.vhd")
    p = host.cli("vm", "start", "ok1", check=False)
    assert p.returncode != 0 and "ok1.vhd" in p.stderr
    assert host.qemu_pids() == []


def test_standalone_refuses_a_name_that_shares_a_uid():
    """A standalone node (no cluster) with --qemu-uids of one uid: every name maps to it, so a
    second VM is refused at create, naming the first, and nothing of it is made."""
    h = Host(2)
    try:
        h.start_ferryd("--qemu-uids", "70000-70000")
        h.cli("vm", "create", "u1", "--memory", "64", "--appliance", "--disk",
              f"{h.disks}/u1.vhd,size=8")
        r = h.cli("vm", "create", "u2", "--memory", "64", "--appliance", "--disk",
                  f"{h.disks}/u2.vhd,size=8", check=False)
        print(f"\n{r.stderr.strip()}")
        assert r.returncode != 0 and "u2 would run its QEMU as uid 70000, as VM u1 does" in \
            r.stderr, r.stderr
        assert not os.path.exists(f"{h.disks}/u2.vhd")
        assert [v["name"] for v in h.cli_json("vm", "list")["vms"]] == ["u1"]
    finally:
        leftovers = h.close()
        assert not leftovers, f"processes left behind: {leftovers}"
