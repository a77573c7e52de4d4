# SPDX-License-Identifier: MIT
"""ferryd under systemd, without systemd: the real ferryd started standalone with NOTIFY_SOCKET
on a datagram socket of the test (what systemd gives a Type=notify service) sends READY=1 only
once its API answers, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM; under
JOURNAL_STREAM its log lines carry syslog priorities; and contrib/systemd/ferryd.service has the
settings a ferryd that must never take its VMs down with it needs (checked by
systemd-analyze verify too). Under a running systemd, in a Debian guest, the package and its
unit are checked by tests/systemd/test_deb_systemd.py (make check-systemd)."""
import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from ferrytest import FERRY, FERRYD, run, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNIT = os.path.join(REPO, "contrib", "systemd", "ferryd.service")
CONF = os.path.join(REPO, "contrib", "ferryd.conf")

needs_build = pytest.mark.skipif(not os.path.exists(FERRYD), reason=f"no ferryd at {FERRYD}")


class Notified:
    """A standalone ferryd in a scratch directory, with a NOTIFY_SOCKET the test reads."""

    def __init__(self, env=None):
        self.base = tempfile.mkdtemp(prefix="fysd")  # short: unix socket paths are limited
        self.sock = os.path.join(self.base, "ferryd.sock")
        self.log = os.path.join(self.base, "ferryd.log")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(os.path.join(self.base, "notify"))
        self.messages = []  # (monotonic time, {field: value})
        self.env = dict(os.environ, NOTIFY_SOCKET=os.path.join(self.base, "notify"), **(env or {}))
        for k in ("WATCHDOG_PID", "JOURNAL_STREAM"):
            if k not in (env or {}):
                self.env.pop(k, None)
        self.proc = None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [FERRYD, "--state-dir", os.path.join(self.base, "state"), "--run-dir",
                 os.path.join(self.base, "run"), "--socket", self.sock, "--name", "sd1"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)

    def recv(self, timeout):
        """The next notification as {field: value}, or None after timeout seconds."""
        self.notify.settimeout(timeout)
        try:
            data = self.notify.recv(4096).decode()
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def recv_until(self, field, timeout):
        """Notifications until one that has field; that one, or an AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ferryd exited {self.proc.returncode}:\n{self.log_text()}")
            m = self.recv(min(0.5, max(0.01, deadline - time.monotonic())))
            if m and field in m:
                return m
        raise AssertionError(f"no {field} within {timeout}s: {self.messages}\n{self.log_text()}")

    def api_answers(self):
        return run([FERRY, "--socket", self.sock, "-o", "json", "node", "show"], check=False,
                   timeout=10)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except FileNotFoundError:
            return ""

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def notified():
    made = []

    def make(env=None):
        n = Notified(env)
        made.append(n)
        return n
    try:
        yield make
    finally:
        for n in made:
            n.close()


@needs_build
def test_ready_once_the_api_answers_watchdog_stopping(notified):
    n = notified({"WATCHDOG_USEC": "2000000"})
    n.start()
    ready = n.recv_until("READY", 15)
    assert ready["READY"] == "1"
    # READY means the API answers now: one request, no retry.
    p = n.api_answers()
    assert p.returncode == 0, f"READY was sent but the API does not answer: {p.stderr}"
    assert json.loads(p.stdout)["name"] == "sd1"
    assert "sd1" in ready.get("STATUS", ""), ready
    # Before READY: only STATUS lines of the start, no WATCHDOG, no STOPPING.
    before = [m for _, m in n.messages[:-1]]
    assert before and all(set(m) == {"STATUS"} and m["STATUS"].startswith("starting")
                          for m in before), before

    # WATCHDOG=1 every half of WATCHDOG_USEC (1 s), from the loop.
    t_ready = n.messages[-1][0]
    while time.monotonic() < t_ready + 4.5:
        n.recv(0.5)
    feeds = [t for t, m in n.messages if m.get("WATCHDOG") == "1"]
    assert len(feeds) >= 4, n.messages
    gaps = [b - a for a, b in zip(feeds[1:], feeds[2:])]  # the first comes with READY
    assert all(0.7 < g < 1.5 for g in gaps), gaps
    assert sum("READY" in m for _, m in n.messages) == 1, n.messages

    n.proc.send_signal(signal.SIGTERM)
    stopping = n.recv_until("STOPPING", 10)
    assert stopping["STOPPING"] == "1" and "VMs keep running" in stopping["STATUS"], stopping
    assert n.proc.wait(15) == 0, n.log_text()
    # Without JOURNAL_STREAM the log keeps its plain lines.
    assert re.match(r"^\d{4}-\d\d-\d\dT", n.log_text()), n.log_text()


@needs_build
def test_no_watchdog_without_watchdog_usec_and_journal_priorities(notified):
    n = notified()
    # JOURNAL_STREAM names ferryd's stderr, as systemd sets it for StandardError=journal.
    open(n.log, "w").close()
    st = os.stat(n.log)
    n.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    n.start()
    n.recv_until("READY", 15)
    assert n.api_answers().returncode == 0
    assert n.recv(2.5) is None, n.messages  # no WATCHDOG=1 without WatchdogSec
    n.proc.send_signal(signal.SIGTERM)
    n.recv_until("STOPPING", 10)
    assert n.proc.wait(15) == 0, n.log_text()
    lines = n.log_text().splitlines()
    assert lines and all(re.match(r"^<[3467]>\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info |warn |error) ",
                                  line) for line in lines), lines
    assert any(line.startswith("<6>") and " info  ferryd " in line for line in lines), lines


def unit():
    # systemd allows a key more than once (DeviceAllow=): keep the last, check those apart.
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    assert cp.read(UNIT) == [UNIT]
    return cp


def unit_values(key):
    with open(UNIT) as f:
        return [line.split("=", 1)[1].strip() for line in f if line.startswith(key + "=")]


def test_unit_file_settings():
    cp = unit()
    s = cp["Service"]
    assert s["Type"] == "notify"
    assert s["KillMode"] == "process"  # a ferryd restart never kills the VMs' QEMUs
    assert s["Restart"] == "always"
    m = re.fullmatch(r"(\d+)s", s["WatchdogSec"])
    assert m and 5 <= int(m.group(1)) <= 120, s["WatchdogSec"]
    assert s["ExecStart"].split() == ["/usr/sbin/ferryd", "--config", "/etc/ferry/ferryd.conf"]
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    # Sandboxing that would break QEMU or the VMs' devices stays out.
    for key, bad in (("MemoryDenyWriteExecute", "yes"), ("PrivateDevices", "yes"),
                     ("PrivateNetwork", "yes"), ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                     ("ProtectSystem", "strict"), ("ProtectClock", "yes")):
        assert s.get(key) != bad, key
    assert "RuntimeDirectory" not in s  # removed at stop, with the QEMUs' QMP sockets
    assert s["DevicePolicy"] == "closed"
    assert set(unit_values("DeviceAllow")) == {"char-misc rw", "char-watchdog rw"}
    # ferryd keeps the capabilities it uses and no more: taps and bridges, files given to
    # the QEMU user, QEMU started as that user (setpriv) and signalled. Never SYS_ADMIN
    # (mounts, namespaces) or SYS_PTRACE, SYS_MODULE, SYS_RAWIO.
    caps = set(" ".join(unit_values("CapabilityBoundingSet")).split())
    assert caps == {"CAP_NET_ADMIN", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE",
                    "CAP_DAC_READ_SEARCH", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP",
                    "CAP_KILL", "CAP_NET_BIND_SERVICE"}, caps
    assert s["NoNewPrivileges"] == "yes"  # setpriv only ever lowers privileges
    denied = s["SystemCallFilter"]
    assert denied.startswith("~"), denied  # a denylist: an allowlist would bind QEMU too
    assert set(denied[1:].split()) >= {"@debug", "@module", "@mount", "@obsolete", "@raw-io",
                                       "@reboot", "@swap", "@clock", "@cpu-emulation"}
    assert s["SystemCallErrorNumber"] == "EPERM"
    assert "User" not in s  # root: taps, bridges and giving files; QEMU is the one dropped


@needs_build
def test_default_config_is_valid_and_matches_the_defaults():
    """contrib/ferryd.conf (the package's /etc/ferry/ferryd.conf) loads in ferryd, and its
    values are ferryd's defaults as --help states them."""
    p = run([FERRYD, "--config", CONF, "--version"], check=False, timeout=10)
    assert p.returncode == 0, p.stderr
    with open(CONF) as f:
        conf = json.load(f)
    help_text = run([FERRYD, "--help"]).stdout
    for key, val in conf.items():
        if key.startswith("#"):
            continue
        # The option's text: its line and the indented lines that continue it.
        opt = "--" + key.replace("_", "-")
        m = re.search(rf"^  {opt} .*\n(?:  {{4,}}\S.*\n)*", help_text, re.M)
        assert m, opt
        assert f"(default {val}" in re.sub(r"\s+", " ", m.group(0)), (opt, val, m.group(0))
    # A wrong value is refused, named, and exits 2 before anything runs.
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as bad:
        json.dump(dict(conf, accel="xen"), bad)
        bad.flush()
        p = run([FERRYD, "--config", bad.name, "--version"], check=False, timeout=10)
        assert p.returncode == 2 and "accel: expected auto, kvm or tcg" in p.stderr, p.stderr


@needs_build
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify works without systemd as PID 1. It checks that ExecStart's binary
    exists, so the unit is verified with the build's ferryd in its place (the package's test
    verifies the installed path); man pages are checked by the package's test."""
    with open(UNIT) as f:
        text = f.read().replace("/usr/sbin/ferryd", FERRYD)
    u = tmp_path / "ferryd.service"
    u.write_text(text)
    p = run(["systemd-analyze", "verify", "--man=no", str(u)], check=False)
    # Unknown or misspelt keys are only warnings: any output is a failure here.
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), p.stderr
