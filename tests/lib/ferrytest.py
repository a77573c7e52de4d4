# SPDX-License-Identifier: MIT
"""Shared fixtures for ferry's end-to-end tests: a host in its own network namespace with a
bridge for VM taps, a real ferryd in it, the real ferry CLI, ferry-probe, and cleanup of
everything that was made, also when a test fails."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

BUILD = os.environ.get("FERRY_BUILD", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "build")))
GUEST = os.environ.get("FERRY_GUEST_DIR", os.path.join(BUILD, "guest"))
FERRY = os.path.join(BUILD, "src", "ferry")
FERRYD = os.path.join(BUILD, "src", "ferryd")
PROBE = os.path.join(BUILD, "src", "ferry-probe")


def run(cmd, check=True, timeout=60, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_for(cond, timeout, what, interval=0.05):
    """Polls cond() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def qmp_run(path, *cmds, timeout=10):
    """Runs QMP commands, each (name, arguments or None), on the monitor socket at path after
    qmp_capabilities; returns their answers (events in between are skipped)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        f = s.makefile("rw")
        f.readline()  # the greeting
        answers = []
        for cmd, args in (("qmp_capabilities", None),) + cmds:
            f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n")
            f.flush()
            while True:
                ans = json.loads(f.readline())
                if "return" in ans or "error" in ans:
                    break
            answers.append(ans)
        return answers[1:]
    finally:
        s.close()


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def processes_naming(text):
    """Live processes whose command line contains text: [(pid, command line)]."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and pid_alive(int(d)):
            found.append((int(d), cmd))
    return found


class Host:
    """One simulated host: network namespace + bridge br0 (10.88.N.1/24) + ferryd."""

    def __init__(self, index=1):
        self.index = index
        self.base = tempfile.mkdtemp(prefix="fy")  # short: unix socket paths are limited
        os.chmod(self.base, 0o711)  # QEMU runs as ferry-qemu: it must pass on to RUN and disks
        self.ns = f"fye{os.getpid() % 100000}h{index}"
        self.subnet = f"10.88.{index}"
        self.state = os.path.join(self.base, "state")
        self.rundir = os.path.join(self.base, "run")
        self.sock = os.path.join(self.base, "ferryd.sock")
        self.disks = os.path.join(self.base, "disks")
        os.makedirs(self.disks)
        self.ferryd = None
        self.ferryd_log = os.path.join(self.base, "ferryd.log")
        self.children = []
        run(["ip", "netns", "add", self.ns])
        try:
            self.ip("link", "set", "lo", "up")
            self.ip("link", "add", "br0", "type", "bridge")
            self.ip("addr", "add", f"{self.subnet}.1/24", "dev", "br0")
            self.ip("link", "set", "br0", "up")
        except Exception:
            self.close()
            raise

    def ip(self, *args):
        return run(["ip", "-n", self.ns, *args])

    def guest_ip(self, n):
        return f"{self.subnet}.{10 + n}"

    # ---- ferryd ----
    def start_ferryd(self, *extra):
        log = open(self.ferryd_log, "a")
        self.ferryd = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, FERRYD, "--state-dir", self.state, "--run-dir",
             self.rundir, "--socket", self.sock, "--name", f"host{self.index}", *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(lambda: self.ferryd.poll() is not None or
                 (os.path.exists(self.sock) and self.cli("node", "show", check=False).returncode == 0),
                 15, "ferryd to answer")
        if self.ferryd.poll() is not None:
            raise AssertionError(f"ferryd exited {self.ferryd.returncode}:\n{self.log_text()}")

    def kill_ferryd(self, sig=signal.SIGKILL):
        if self.ferryd and self.ferryd.poll() is None:
            self.ferryd.send_signal(sig)
            try:
                self.ferryd.wait(10)
            except subprocess.TimeoutExpired:
                self.ferryd.kill()
                self.ferryd.wait(5)

    def log_text(self):
        try:
            with open(self.ferryd_log) as f:
                return f.read()[-4000:]
        except FileNotFoundError:
            return ""

    # ---- CLI ----
    def cli(self, *args, check=True, timeout=120):
        return run([FERRY, "--socket", self.sock, *args], check=check, timeout=timeout)

    def cli_json(self, *args, check=True):
        p = self.cli("-o", "json", *args, check=check)
        return json.loads(p.stdout) if p.returncode == 0 else p

    def vm(self, name):
        return self.cli_json("vm", "show", name)

    def vm_state(self, name):
        return self.vm(name)["state"]

    def create_appliance_vm(self, name, n, workload="probe", memory=256, disk_mib=64,
                            extra=(), start=True):
        args = ["vm", "create", name, "--memory", str(memory), "--appliance",
                "--guest-ip", f"{self.guest_ip(n)}/24", "--workload", workload,
                "--nic", "br0", "--disk", f"{self.disks}/{name}.vhd,size={disk_mib}", *extra]
        self.cli(*args)
        if start:
            self.cli("vm", "start", name)
        return self.guest_ip(n)

    # ---- probes inside the namespace ----
    def probe(self, *args, check=True, timeout=120):
        return run(["ip", "netns", "exec", self.ns, PROBE, *args], check=check, timeout=timeout)

    def probe_bg(self, *args):
        out = tempfile.NamedTemporaryFile(dir=self.base, suffix=".json", delete=False)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, PROBE, *args], stdout=out,
                             stderr=subprocess.PIPE, text=True)
        p.out_path = out.name
        out.close()
        self.children.append(p)
        return p

    @staticmethod
    def probe_result(p, timeout=30):
        """Stops a background ferry-probe with SIGINT and returns its --json report."""
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        p.wait(timeout)
        with open(p.out_path) as f:
            text = f.read()
        return json.loads(text)

    def wait_guest(self, ip, timeout=90):
        self.probe("wait", ip, "--timeout-s", str(timeout), timeout=timeout + 10)

    def console(self, name):
        return self.cli("vm", "console", name).stdout

    def api_get(self, path, timeout=10):
        """GET path from ferryd's API on its unix socket: (status, parsed JSON body)."""
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.sock.settimeout(timeout)
                conn.sock.connect(self.sock)
        c = Conn("localhost", timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    # ---- cleanup ----
    def qemu_pids(self):
        pids = []
        if not os.path.isdir(self.rundir):
            return pids
        for vm in os.listdir(self.rundir):
            try:
                with open(os.path.join(self.rundir, vm, "qemu.pid")) as f:
                    pids.append(int(f.read().strip()))
            except (FileNotFoundError, ValueError):
                pass
        return [p for p in pids if pid_alive(p) and self.rundir in open(f"/proc/{p}/cmdline").read()]

    def our_processes(self):
        """Live processes whose command line names this host's base dir."""
        return processes_naming(self.base)

    def close(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self.kill_ferryd(signal.SIGTERM)
        for pid in self.qemu_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not self.qemu_pids(), 10, "QEMUs to exit")
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        leftovers = self.our_processes()
        for pid, _ in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["rm", "-rf", self.base])
        return leftovers
