# SPDX-License-Identifier: MIT
"""The guest appliance end to end: boot it in QEMU (TCG) on a tap in a private network
namespace and check every guest tool through the real ferry-probe.

Binaries come from FERRY_BUILD (default /work/main/build): ferry-probe at src/ferry-probe or
ferry-probe (or FERRY_PROBE), the appliance (vmlinuz, initrd.img) from FERRY_GUEST_DIR
(default $FERRY_BUILD/guest). Needs root (netns, tap). Never uses /dev/kvm."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from ferrytest import BUILD, qmp_run, run, wait_for  # noqa: E402 (tests/lib, on the path by conftest)

GUEST_DIR = os.environ.get("FERRY_GUEST_DIR", os.path.join(BUILD, "guest"))
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
HOST_IP = "10.99.0.1"
GUEST_IP = "10.99.0.2"
BOOT_TIMEOUT = 90  # TCG on a busy 2-core machine; a quiet one boots in about 3 s


def find_probe():
    candidates = [os.environ.get("FERRY_PROBE", ""), os.path.join(BUILD, "src", "ferry-probe"),
                  os.path.join(BUILD, "ferry-probe")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


PROBE = find_probe()


def missing_prerequisites():
    if os.geteuid() != 0:
        return "needs root for network namespaces and taps"
    if not PROBE:
        return f"no ferry-probe under {BUILD} (set FERRY_BUILD or FERRY_PROBE)"
    for f in ("vmlinuz", "initrd.img"):
        if not os.path.exists(os.path.join(GUEST_DIR, f)):
            return f"no {f} in {GUEST_DIR} (build the appliance or set FERRY_GUEST_DIR)"
    if not os.access(QEMU, os.X_OK):
        return "qemu-system-x86_64 not installed"
    return None


pytestmark = pytest.mark.skipif(missing_prerequisites() is not None,
                                reason=str(missing_prerequisites()))


class Netns:
    """A network namespace of this test run with one tap (tap0, HOST_IP/24) for the guest."""

    def __init__(self):
        self.name = f"fgt{os.getpid() % 100000}"
        run(["ip", "netns", "add", self.name])
        try:
            self.ip("link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def ip(self, *args):
        return run(["ip", "-n", self.name, *args])

    def exec(self, *cmd, check=True, timeout=60):
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, timeout=timeout)

    def popen(self, *cmd, **kw):
        # `ip netns exec` execs the command, so the child's pid is the command's own.
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def probe(self, *args, check=True, timeout=120):
        return self.exec(PROBE, *args, check=check, timeout=timeout)

    def probe_json(self, *args, check=True, timeout=120):
        p = self.probe(*args, "--json", check=check, timeout=timeout)
        return json.loads(p.stdout)

    def add_tap(self):
        self.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
        self.ip("addr", "add", f"{HOST_IP}/24", "dev", "tap0")
        self.ip("link", "set", "tap0", "up")

    def del_tap(self):
        subprocess.run(["ip", "-n", self.name, "link", "del", "tap0"], capture_output=True)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Guest:
    """One appliance VM: QEMU in the namespace on tap0, serial console to a file, QMP socket."""

    def __init__(self, ns, workdir, append, disk=None):
        self.ns = ns
        self.console_path = os.path.join(workdir, "console.log")
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.stderr_path = os.path.join(workdir, "qemu.err")
        cmd = [QEMU, "-accel", "tcg", "-machine", "pc", "-cpu", "max", "-m", "256",
               "-nodefaults", "-display", "none", "-no-reboot",
               "-serial", f"file:{self.console_path}",
               "-kernel", os.path.join(GUEST_DIR, "vmlinuz"),
               "-initrd", os.path.join(GUEST_DIR, "initrd.img"),
               "-append", f"console=ttyS0 {append}",
               "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
               "-device", "virtio-net-pci,netdev=n0",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if disk:
            cmd += ["-drive", f"file={disk},format=raw,if=none,id=d0",
                    "-device", "virtio-blk-pci,drive=d0"]
        with open(self.stderr_path, "w") as err:
            self.proc = ns.popen(*cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.started = time.monotonic()

    def console(self):
        try:
            with open(self.console_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_console(self, text, timeout=BOOT_TIMEOUT):
        def seen():
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited {self.proc.returncode} before '{text}':\n"
                                     f"{self.console()[-3000:]}\n{open(self.stderr_path).read()}")
            return text in self.console()
        wait_for(seen, timeout, f"'{text}' on the console:\n{self.console()[-2000:]}")
        return time.monotonic() - self.started

    def qmp(self, command):
        reply = qmp_run(self.qmp_path, (command, None))[0]
        assert "error" not in reply, f"QMP {command}: {reply}"

    def powerdown(self, timeout=60):
        """ACPI power button, as ferry stops VMs; returns seconds until QEMU exited."""
        t0 = time.monotonic()
        self.qmp("system_powerdown")
        # A press the guest never noticed was seen twice in CI (a busy guest under a loaded
        # host; not reproduced here): the button is pressed again, as a person would, and the
        # test says so. The power-off itself must still be graceful.
        for _ in range(2):
            try:
                wait_for(lambda: "ferry-guest: powering off" in self.console(), 10,
                         "the guest to see the power button", interval=0.2)
                break
            except AssertionError:
                if self.proc.poll() is not None:
                    break
                print("test_guest: the guest did not react to the ACPI power button within "
                      "10 s; pressing it again")
                self.qmp("system_powerdown")
        try:
            self.proc.wait(max(1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            pytest.fail(f"QEMU still running {timeout} s after the ACPI power button; "
                        f"console:\n{self.console()[-3000:]}")
        return time.monotonic() - t0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def netns():
    ns = Netns()
    yield ns
    ns.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="fgt")  # short: unix socket paths are limited
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def boot(netns, workdir):
    """boot(append, disk=None) starts a guest on a fresh tap; QEMU and the tap are removed
    after the test whatever happened. One guest at a time (one tap)."""
    guests = []

    def start(append, disk=None):
        if guests:
            guests[-1].kill()
        netns.del_tap()
        netns.add_tap()
        g = Guest(netns, workdir, append, disk)
        guests.append(g)
        return g

    yield start
    for g in guests:
        g.kill()
    netns.del_tap()


def make_disk(workdir, mib):
    path = os.path.join(workdir, "disk.raw")
    with open(path, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    return path


# ---- ferry-probe without a guest ---------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["nope"], ["wait"], ["wait", "1.2.3.4", "extra"], ["wait", "1.2.3.4", "--port", "0"],
    ["wait", "1.2.3.4", "--timeout-s", "x"], ["udp", "1.2.3.4", "--interval-ms", "0"],
    ["udp", "1.2.3.4", "--duration-s", "-1"], ["udp", "1.2.3.4", "--tcp-port", "70000"],
    ["udp", "no-such-host.invalid"], ["recorder", "1.2.3.4", "--count", "abc"],
    ["verify-disk"], ["verify-disk", "/nonexistent/disk.raw"], ["udp", "1.2.3.4", "--bogus"],
])
def test_probe_rejects_bad_arguments(args):
    p = run([PROBE, *args], check=False)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert p.stderr.strip(), "a bad argument must say what is wrong"


@pytest.mark.parametrize("cmd", ["wait", "udp", "recorder", "verify-disk"])
def test_probe_help(cmd):
    p = run([PROBE, cmd, "--help"])
    assert p.stdout.startswith(f"usage: ferry-probe {cmd}")


def test_probe_wait_times_out(netns):
    p = netns.probe("wait", "127.0.0.1", "--port", "9", "--timeout-s", "1", "--json", check=False)
    assert p.returncode == 1
    assert json.loads(p.stdout)["answered"] is False


# ---- the appliance ----------------------------------------------------------------------------

def test_boot_probe_udp_and_tcp(boot, netns):
    g = boot(f"ferry.ip={GUEST_IP}/24 ferry.workload=probe")
    ready_s = g.wait_console(f"ferry-guest: ready ip={GUEST_IP}")
    print(f"boot to ready: {ready_s:.1f} s")
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    r = netns.probe_json("udp", GUEST_IP, "--interval-ms", "2", "--duration-s", "3",
                         "--tcp-port", "7001")
    assert r["sent"] > 1000 and r["received"] == r["sent"] and r["lost"] == 0, r
    assert r["gaps_over_300ms"] == 0 and r["last_reply_age_ms"] < 100, r
    assert r["tcp_connected"] and r["tcp_survived"] and r["tcp_bytes_echoed"] > 0, r


def test_udp_gap_is_measured_and_sigterm_reports(boot, netns, workdir):
    g = boot(f"ferry.ip={GUEST_IP}/24")
    g.wait_console("ferry-guest: ready")
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    out_path = os.path.join(workdir, "udp.json")
    with open(out_path, "w") as out:
        p = netns.popen(PROBE, "udp", GUEST_IP, "--tcp-port", "7001", "--json", stdout=out,
                        stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        g.qmp("stop")  # the guest pauses: a blackout of about 0.6 s
        time.sleep(0.6)
        g.qmp("cont")
        time.sleep(2.0)
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(out_path) as f:
        r = json.load(f)
    assert 500 <= r["longest_gap_ms"] < 3000, r
    assert 1.0 <= r["longest_gap_at_s"] <= 2.5, r
    assert r["gaps_over_300ms"] >= 1 and r["received"] > 1000, r
    assert r["last_reply_age_ms"] < 100, r
    assert r["tcp_survived"] and r["tcp_longest_gap_ms"] >= 500, r


def test_many_tcp_connections_stay_open(boot, netns):
    g = boot(f"ferry.ip={GUEST_IP}/24")
    g.wait_console("ferry-guest: ready")
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    script = f"""
import socket, time
conns = [socket.create_connection(("{GUEST_IP}", 7001), timeout=10) for _ in range(100)]
for rnd in range(3):
    for i, c in enumerate(conns):
        c.sendall(b"conn %d round %d;" % (i, rnd))
    for i, c in enumerate(conns):
        want = b"conn %d round %d;" % (i, rnd)
        got = b""
        while len(got) < len(want):
            got += c.recv(len(want) - len(got))
        assert got == want, (got, want)
    time.sleep(1)
print("ok", len(conns))
"""
    p = netns.exec("python3", "-c", script, timeout=120)
    assert p.stdout.strip() == "ok 100"


def test_gateway_route(boot, netns):
    # Replies to an address outside the guest's subnet only come back through ferry.gw.
    g = boot(f"ferry.ip={GUEST_IP}/24 ferry.gw={HOST_IP}")
    g.wait_console("ferry-guest: ready")
    netns.ip("addr", "add", "10.98.0.1/32", "dev", "lo")
    try:
        netns.ip("route", "replace", f"{GUEST_IP}/32", "dev", "tap0", "src", "10.98.0.1")
        netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    finally:
        netns.ip("addr", "del", "10.98.0.1/32", "dev", "lo")


def test_dirtier_runs_and_probe_still_answers(boot, netns):
    g = boot(f"ferry.ip={GUEST_IP}/24 ferry.workload=probe,dirtier ferry.dirty_mb=32 "
             "ferry.dirty_rate=0")
    g.wait_console("ferry-guest: ready")
    g.wait_console("ferry-guest: dirtier 32 MB rate 0", timeout=30)
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    r = netns.probe_json("udp", GUEST_IP, "--interval-ms", "5", "--duration-s", "2")
    assert r["received"] >= 0.95 * r["sent"], r
    assert g.console().count("ferry-guest: dirtier") == 1


def test_recorder_acks_survive_poweroff_and_reboot(boot, netns, workdir):
    disk = make_disk(workdir, 16)
    append = f"ferry.ip={GUEST_IP}/24 ferry.workload=recorder"
    g = boot(append, disk)
    g.wait_console("ferry-guest: ready")
    r = netns.probe_json("recorder", GUEST_IP, "--count", "200", "--duration-s", "60")
    assert r["acked_count"] == 200 and r["out_of_order"] == 0, r
    assert r["acked_max"] == r["first_acked"] + 199, r
    first_max = r["acked_max"]

    secs = g.powerdown()
    console = g.console()
    assert "ferry-guest: powering off" in console and g.proc.returncode == 0, console[-2000:]
    print(f"power off took {secs:.1f} s")

    v = netns.probe_json("verify-disk", disk, "--acked", str(first_max))
    assert v["acked_ok"] and v["first_bad"] is None and v["max_seq"] >= first_max, v
    assert v["records_valid"] == v["max_seq"] and v["boots"] == 1, v

    # A second boot continues after the last record and never rewrites an acked one.
    g = boot(append, disk)
    g.wait_console("ferry-guest: ready")
    g.wait_console(f"{v['max_seq']} records found, next seq {v['max_seq'] + 1}", timeout=30)
    r2 = netns.probe_json("recorder", GUEST_IP, "--count", "20", "--duration-s", "60")
    assert r2["first_acked"] > v["max_seq"], (r2, v)
    g.powerdown()
    v2 = netns.probe_json("verify-disk", disk, "--acked", str(r2["acked_max"]))
    assert v2["acked_ok"] and v2["first_bad"] is None and v2["boots"] == 2, v2

    # verify-disk notices a lost acknowledged record.
    bad = os.path.join(workdir, "bad.raw")
    shutil.copyfile(disk, bad)
    with open(bad, "r+b") as f:
        f.seek(10 * 4096)
        f.write(b"\0" * 4096)
    p = netns.probe("verify-disk", bad, "--acked", str(r2["acked_max"]), "--json", check=False)
    assert p.returncode == 1
    assert json.loads(p.stdout)["first_bad"] == 11


def test_recorder_stops_at_end_of_device(boot, netns, workdir):
    disk = make_disk(workdir, 1)  # 256 records
    g = boot(f"ferry.ip={GUEST_IP}/24 ferry.workload=recorder ferry.recorder_interval_ms=1", disk)
    g.wait_console("ferry-guest: ready")
    g.wait_console("ferry-guest: recorder: end of /dev/vda reached after seq 256", timeout=60)
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")  # the guest lives on
    g.powerdown()
    v = netns.probe_json("verify-disk", disk, "--acked", "256")
    assert v["acked_ok"] and v["max_seq"] == 256, v


def test_powerdown_is_graceful_with_all_workloads(boot, netns, workdir):
    disk = make_disk(workdir, 16)
    g = boot(f"ferry.ip={GUEST_IP}/24 ferry.workload=probe,dirtier,recorder ferry.dirty_mb=16",
             disk)
    g.wait_console("ferry-guest: ready")
    netns.probe("wait", GUEST_IP, "--timeout-s", "30")
    secs = g.powerdown(timeout=30)
    assert g.proc.returncode == 0
    console = g.console()
    assert "ferry-guest: powering off" in console, console[-2000:]
    assert "reboot: Power down" in console, console[-2000:]
    assert secs < 20, f"power off took {secs:.1f} s"
