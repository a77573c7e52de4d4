# SPDX-License-Identifier: MIT
"""ferry's Debian package under a running systemd: the .deb that `make deb` built
(FERRY_DEB_DIR, default build-deb/) installed offline in a real Debian 12 guest whose PID 1 is
systemd (scripts/make-debian-guest --variant ferry-host: the default guest with the package's
dependencies, Debian 12's QEMU 7.2 among them), booted in plain QEMU (TCG) in a network
namespace of this test and driven over SSH as an administrator would:

  install -> ferryd.service enabled and active, `systemctl enable --now` after a disable, the
  API answers as soon as `systemctl restart` returns (Type=notify: READY once it answers),
  ferryd's lines in the journal with their priorities; a VM (the packaged appliance) started
  under it, its QEMU in the unit's cgroup; SIGKILL to ferryd -> Restart=always starts another
  one, which adopts the VM; SIGSTOP -> systemd's watchdog kills and restarts it; `systemctl
  restart` keeps the VM's QEMU (KillMode=process); purge removes the unit, the configuration
  and the state but not the VM's disk, and does not kill the VM.

The tests run in file order on one guest (each step needs the one before). tests/e2e's
test_systemd.py checks the same without systemd (the unit's settings, a NOTIFY_SOCKET of its
own); this file is what that cannot see. make check runs it after `make deb`
(`make check-systemd` alone)."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import realguest
from ferrytest import run, wait_for

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEB_DIR = os.environ.get("FERRY_DEB_DIR", os.path.join(REPO, "build-deb"))
DEBS = sorted(glob.glob(os.path.join(DEB_DIR, "ferry_*.deb")))
VARIANT = "ferry-host"
NS = f"fsd{os.getpid() % 100000}"
NET = "10.117.0"
MAC = "52:54:00:11:70:02"
VM = "sd1"
DISK = "/srv/vms/sd1.vhd"
# The range of per-VM uids (ferryd --qemu-uids, contrib/ferryd.conf): QEMU never runs as root.
QEMU_UIDS = (1879048192, 2013265919)
# The guest runs ferryd and, nested, a VM's QEMU under TCG: 2 vCPUs, room for both.
CPUS = 2
# Without SVM: ferryd in the guest finds no vmx/svm and picks TCG (auto), as on a host without
# virtualization. With TCG's "max" (SVM offered) it picked KVM nested on QEMU's emulated SVM,
# and in CI the guest then stopped answering SSH for over 60 s while the nested VM ran, and the
# VM's QEMU died.
CPU = "max,-svm"
MEMORY_MIB = 1536
WATCHDOG_TEST_SEC = 10  # the drop-in's WatchdogSec (the shipped unit's 30 s, checked first)
SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10"]


def why_not():
    if len(DEBS) != 1:
        return f"no single ferry_*.deb in {DEB_DIR}: run make deb"
    return realguest.missing(VARIANT)


pytestmark = pytest.mark.skipif(bool(why_not()), reason=str(why_not()))


class Guest:
    """The ferry-host guest in QEMU, reached over SSH from the namespace."""

    def __init__(self, ip, key, qemu):
        self.ip, self.key, self.qemu = ip, key, qemu
        self.vm_pid = None  # the VM's QEMU inside the guest, once started

    def ssh(self, cmd, check=True, timeout=180):
        p = subprocess.run(["ip", "netns", "exec", NS, "ssh", *SSH_OPTS, "-i", self.key,
                            f"root@{self.ip}", cmd], capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"in the guest: {cmd!r} exited {p.returncode}:\n{p.stdout}\n"
                                 f"{p.stderr}\n{self.diag()}")
        return p

    def scp(self, src, dst):
        run(["ip", "netns", "exec", NS, "scp", *SSH_OPTS, "-i", self.key, src,
             f"root@{self.ip}:{dst}"], timeout=180)

    def unit(self):
        """systemctl show ferryd: the properties a user looks at."""
        props = ("ActiveState", "SubState", "MainPID", "NRestarts", "Type", "KillMode",
                 "Restart", "WatchdogUSec", "StatusText", "UnitFileState", "LoadState",
                 "FragmentPath", "ControlGroup")
        out = self.ssh("systemctl show ferryd " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def running_again(self, old_pid):
        """ferryd's unit once it is active with another MainPID than old_pid, else None."""
        u = self.unit()
        if u["ActiveState"] == "active" and u["MainPID"] not in ("0", str(old_pid)):
            return u
        return None

    def alive(self, pid):
        return self.ssh(f"kill -0 {pid}", check=False, timeout=60).returncode == 0

    def vm(self):
        return json.loads(self.ssh(f"ferry -o json vm show {VM}").stdout)

    def diag(self):
        """ferryd's journal and the unit's state, for a failure's message."""
        try:
            p = subprocess.run(["ip", "netns", "exec", NS, "ssh", *SSH_OPTS, "-i", self.key,
                                f"root@{self.ip}",
                                "systemctl status ferryd --no-pager -n 0; "
                                "journalctl -u ferryd --no-pager -n 40"],
                               capture_output=True, text=True, timeout=60)
            return f"--- the guest's ferryd:\n{p.stdout[-4000:]}{p.stderr[-1000:]}"
        except subprocess.TimeoutExpired:
            return f"--- the guest does not answer SSH; console:\n{self.qemu.console()[-3000:]}"


def timed(what, t0):
    took = time.monotonic() - t0
    print(f"{what}: {took:.1f} s")
    return took


@pytest.fixture(scope="module")
def guest():
    t0 = time.monotonic()
    d, info = realguest.build(VARIANT)
    print(f"ferry-host guest {d}: {info['took_s']} s (built in {info['build_seconds']} s)")
    wd = tempfile.mkdtemp(prefix="fsd", dir="/tmp")
    dhcpd = qemu = None
    run(["ip", "netns", "add", NS])
    try:
        for cmd in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", "tap0", "mode", "tap"],
                    ["addr", "add", f"{NET}.1/24", "dev", "tap0"], ["link", "set", "tap0", "up"]):
            run(["ip", "-n", NS, *cmd])
        # A copy-on-write overlay: the cached disk stays as built.
        disk = os.path.join(wd, "disk.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
             os.path.join(d, "debian12.raw"), disk])
        ip = f"{NET}.2"
        conf = realguest.dhcpd_conf(os.path.join(wd, "udhcpd.conf"), "tap0", f"{NET}.1",
                                    {MAC: ip}, (f"{NET}.200", f"{NET}.220"))
        dhcpd = realguest.start_dhcpd(NS, conf)
        qemu = realguest.Qemu(NS, wd, disk, MAC, memory=MEMORY_MIB, cpus=CPUS,
                              disk_format="qcow2", cpu=CPU)
        g = Guest(ip, os.path.join(d, "id_ed25519"), qemu)
        try:
            wait_for(lambda: qemu.alive() and g.ssh("true", check=False, timeout=30)
                     .returncode == 0, realguest.BOOT_TIMEOUT, "SSH into the guest", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; console:\n{qemu.console()[-3000:]}") from None
        pid1 = g.ssh("ps -o comm= -p 1").stdout.strip()
        assert pid1 == "systemd", f"the guest's PID 1 is {pid1!r}"
        timed("guest up (SSH answers)", t0)
        yield g
    finally:
        if qemu:
            qemu.kill()
        realguest.stop(dhcpd)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(wd, ignore_errors=True)


def test_install_offline_enables_and_starts_ferryd(guest):
    g = guest
    deb = os.path.basename(DEBS[0])
    g.scp(DEBS[0], "/root/")
    t0 = time.monotonic()
    # Offline: every dependency must already be there (the guest has no route out).
    p = g.ssh(f"cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y "
              f"--no-install-recommends ./{deb}", timeout=600)
    timed("apt-get install", t0)
    # The package enables and starts ferryd (debhelper's postinst).
    u = g.unit()
    assert u["UnitFileState"] == "enabled" and u["ActiveState"] == "active", (u, p.stdout)
    assert u["FragmentPath"] == "/lib/systemd/system/ferryd.service", u
    assert (u["Type"], u["KillMode"], u["Restart"], u["WatchdogUSec"]) == \
        ("notify", "process", "always", "30s"), u
    # What the issue promises: disabled and stopped, `systemctl enable --now` brings it back.
    g.ssh("systemctl disable --now ferryd")
    u = g.unit()
    assert (u["UnitFileState"], u["ActiveState"]) == ("disabled", "inactive"), u
    t0 = time.monotonic()
    g.ssh("systemctl enable --now ferryd")
    timed("systemctl enable --now ferryd", t0)
    u = g.unit()
    assert (u["UnitFileState"], u["ActiveState"], u["SubState"]) == \
        ("enabled", "active", "running"), u
    # ferryd's STATUS= reaches systemd (sd_notify through the unit's NOTIFY_SOCKET).
    assert u["StatusText"], u
    node = json.loads(g.ssh("ferry -o json node show").stdout)
    assert node["name"] == "debian12", node
    # QEMU's user, made by the postinst.
    pw = g.ssh("getent passwd ferry-qemu").stdout.strip().split(":")
    assert pw[6] == "/usr/sbin/nologin" and int(pw[2]) < 1000, pw


def test_ready_means_the_api_answers(guest):
    """Type=notify: `systemctl restart` returns once ferryd sent READY=1, which it sends once
    its API answers, so the first request right after it is served (no retry)."""
    g = guest
    old = g.unit()["MainPID"]
    t0 = time.monotonic()
    p = g.ssh("systemctl restart ferryd && ferry -o json node show")
    timed("systemctl restart ferryd (READY) + ferry node show", t0)
    assert json.loads(p.stdout)["name"] == "debian12"
    u = g.unit()
    assert u["ActiveState"] == "active" and u["MainPID"] != old, u


def test_journal_has_ferryds_lines_with_priorities(guest):
    g = guest
    out = g.ssh("journalctl _SYSTEMD_UNIT=ferryd.service -o json --no-pager").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    mine = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "ferryd"]
    assert mine, entries[-5:]
    by_prio = {}
    for e in mine:
        by_prio.setdefault(e["PRIORITY"], []).append(e["MESSAGE"])
    # Each line's priority is the level it states: info 6, warn 4 (a warning for Debian 12's
    # QEMU 7.2, whose console takes no input), error 3, debug 7.
    levels = {"3": "error", "4": "warn", "6": "info", "7": "debug"}
    wrong = [e for e in mine if e["PRIORITY"] not in levels or
             str(e["MESSAGE"]).split()[1:2] != [levels[e["PRIORITY"]]]]
    assert not wrong, wrong[:5]
    assert "6" in by_prio and "4" in by_prio, by_prio
    assert any("VM consoles show output but take no input" in m for m in by_prio["4"]), by_prio
    # journald took the priority from the <N> prefix: no message keeps it.
    assert not [e for e in mine if str(e["MESSAGE"]).startswith("<")], mine[:3]
    # As a user filters them.
    warn = g.ssh("journalctl -u ferryd -p warning --no-pager -o cat").stdout
    assert "VM consoles show output but take no input" in warn, warn
    assert "daemon.started" not in warn and " info " not in warn, warn
    print(f"journal: {len(mine)} ferryd lines, priorities "
          f"{ {k: len(v) for k, v in sorted(by_prio.items())} }")


def test_a_vm_runs_under_the_unit(guest):
    """The packaged appliance (/usr/share/ferry/guest) as a VM: its QEMU runs as a per-VM uid,
    in ferryd.service's cgroup (which is why KillMode=process matters). The guest's CPU has no
    vmx/svm, so ferryd there runs it under TCG (auto), and says so."""
    g = guest
    assert json.loads(g.ssh("ferry -o json node show").stdout)["accel"] == "tcg"
    t0 = time.monotonic()
    g.ssh(f"mkdir -p {os.path.dirname(DISK)} && ferry vm create {VM} --appliance --memory 128 "
          f"--disk {DISK},size=16 --start", timeout=300)
    timed("ferry vm create --start", t0)
    v = g.vm()
    assert v["state"] == "running" and v["pid"], v
    g.vm_pid = v["pid"]
    uid = int(g.ssh(f"ps -o uid= -p {g.vm_pid}").stdout)
    assert QEMU_UIDS[0] <= uid <= QEMU_UIDS[1], uid
    cg = g.ssh(f"cat /proc/{g.vm_pid}/cgroup").stdout
    assert "/system.slice/ferryd.service" in cg, cg
    assert g.ssh(f"test -f {DISK}", check=False).returncode == 0


def test_sigkill_restart_always_adopts_the_vm(guest):
    g = guest
    assert g.vm_pid, "no VM from the test before"
    u0 = g.unit()
    g.ssh(f"kill -KILL {u0['MainPID']}")
    t0 = time.monotonic()
    u = wait_for(lambda: g.running_again(u0["MainPID"]), 60, "ferryd restarted after SIGKILL",
                 interval=0.5)
    timed("SIGKILL -> active again (RestartSec=2s)", t0)
    assert int(u["NRestarts"]) == int(u0["NRestarts"]) + 1, (u0, u)
    assert g.alive(g.vm_pid), "the VM's QEMU died with ferryd"
    v = g.vm()
    assert v["state"] == "running" and v["pid"] == g.vm_pid, v


def test_watchdog_restarts_a_hung_ferryd(guest):
    """A drop-in shortens the shipped 30 s WatchdogSec to 10 s (the test's time only). ferryd
    feeds it from its loop: it runs on past it; stopped (SIGSTOP), systemd kills it and starts
    another; the VM lives on."""
    g = guest
    assert g.vm_pid, "no VM from the test before"
    g.ssh("mkdir -p /etc/systemd/system/ferryd.service.d && printf '[Service]\\nWatchdogSec="
          f"{WATCHDOG_TEST_SEC}s\\n' >/etc/systemd/system/ferryd.service.d/test-watchdog.conf "
          "&& systemctl daemon-reload && systemctl restart ferryd")
    try:
        u0 = g.unit()
        assert u0["WatchdogUSec"] == f"{WATCHDOG_TEST_SEC}s" and u0["ActiveState"] == "active", u0
        time.sleep(WATCHDOG_TEST_SEC * 1.5)
        u = g.unit()
        assert (u["MainPID"], u["NRestarts"]) == (u0["MainPID"], u0["NRestarts"]), \
            f"ferryd was restarted though it runs (not fed?): {u0} -> {u}\n{g.diag()}"
        g.ssh(f"kill -STOP {u0['MainPID']}")
        t0 = time.monotonic()
        u = wait_for(lambda: g.running_again(u0["MainPID"]), WATCHDOG_TEST_SEC + 90,
                     "ferryd restarted by the watchdog", interval=0.5)
        took = timed(f"SIGSTOP -> active again (WatchdogSec={WATCHDOG_TEST_SEC}s)", t0)
        # Fed every WatchdogSec/2: it expires WatchdogSec/2 to WatchdogSec after the stop.
        assert took > WATCHDOG_TEST_SEC / 2, "restarted before the watchdog could expire"
        assert int(u["NRestarts"]) == int(u0["NRestarts"]) + 1, (u0, u)
        log = g.ssh("journalctl -u ferryd --no-pager -o cat").stdout
        assert "Watchdog timeout" in log, log[-3000:]
        assert g.alive(g.vm_pid), "the VM's QEMU died with the hung ferryd"
        v = g.vm()
        assert v["state"] == "running" and v["pid"] == g.vm_pid, v
    finally:
        g.ssh("rm -rf /etc/systemd/system/ferryd.service.d && systemctl daemon-reload && "
              "systemctl restart ferryd", check=False)
    assert g.unit()["WatchdogUSec"] == "30s"


def test_systemctl_restart_keeps_the_vm(guest):
    g = guest
    assert g.vm_pid, "no VM from the test before"
    old = g.unit()["MainPID"]
    t0 = time.monotonic()
    g.ssh("systemctl restart ferryd")
    timed("systemctl restart ferryd with a VM", t0)
    u = g.unit()
    assert u["ActiveState"] == "active" and u["MainPID"] != old, u
    assert g.alive(g.vm_pid), "systemctl restart killed the VM's QEMU"
    listing = g.ssh("ferry vm list").stdout
    assert any(line.split()[:1] == [VM] and "running" in line.split()
               for line in listing.splitlines()), listing
    assert g.vm()["pid"] == g.vm_pid


def test_purge_removes_all_but_the_vms_disk(guest):
    """Purge with the VM still running: ferryd stops, its QEMU does not (the prerm says so);
    the unit, /etc/ferry, /var/lib/ferry and /run/ferry go; the VM's disk stays, and so does
    the ferry-qemu user (the postinst says why)."""
    g = guest
    assert g.vm_pid, "no VM from the test before"
    size = g.ssh(f"stat -c %s {DISK}").stdout.strip()
    t0 = time.monotonic()
    p = g.ssh("DEBIAN_FRONTEND=noninteractive apt-get purge -y ferry", timeout=300)
    timed("apt-get purge ferry", t0)
    assert "1 VM(s) keep running without ferryd" in p.stdout + p.stderr, p
    assert g.alive(g.vm_pid), "removing the package killed the VM"
    state = g.ssh("dpkg-query -W -f='${db:Status-Abbrev}' ferry", check=False).stdout.strip()
    assert state in ("", "un"), f"ferry is still known to dpkg: {state!r}"
    u = g.unit()
    assert u["LoadState"] == "not-found" and u["ActiveState"] == "inactive", u
    left = g.ssh("ls -d /lib/systemd/system/ferryd.service /etc/systemd/system/*/ferryd.service "
                 "/etc/ferry /var/lib/ferry /run/ferry /usr/sbin/ferryd /usr/share/ferry "
                 "2>/dev/null", check=False).stdout.split()
    assert not left, f"left after purge: {left}"
    assert g.ssh(f"stat -c %s {DISK}").stdout.strip() == size, "the VM's disk changed or went"
    assert g.ssh("getent passwd ferry-qemu", check=False).returncode == 0
    g.ssh(f"kill -KILL {g.vm_pid}")
