# SPDX-License-Identifier: MIT
"""ferry's lab: N simulated hosts on this one machine, for trying the cluster and for every
multi-host test and benchmark.

Layout (NAME is the lab's name, P the /24 prefix, 10.77.0 by default):

    netns NAME-seg      bridge seg0: the one L2 segment; veth h<i> per host, veth cl
    netns NAME-h<i>     bridge br0 (P.<10+i>/24) enslaving uplink veth up0 (peer of h<i>);
                        ferryd --name host<i> listening on P.<10+i>:7443; VM taps join br0
    netns NAME-client   veth eth0 (P.2/24), for probing VMs from outside any host
    DIR/                lab.json (everything made), token (0600), cluster-token (0600),
                        csv/ (shared volume), host<i>/{state,run,ferryd.sock,ferryd.log}
                        and with --watchdog host<i>/{watchdog,watchdog.log,watchdog.err}

The hosts then form one cluster (form_cluster): `ferry cluster init` on host1, `ferry cluster
join P.11:7443 --token T` on the others. Tests break it on purpose with kill_ferryd (SIGKILL,
SIGSTOP), start_ferryd, link_down/link_up, and find the leader with leader().

Every VM tap joins its host's br0, and every br0 is bridged onto the segment, so a VM keeps
its address (P.<100+k>) on whichever host runs it: what live migration needs.

With --watchdog (Lab.up(watchdog=True)) every host gets an emulated watchdog: its ferryd
runs with --watchdog DIR/host<i>/watchdog, a regular file it rewrites on every feed, and one
process per host in the root namespace (ferry-lab _watchdog, watchdog_emulate below) reads that
file every 100 ms and "powers the host off" when the feeds stop: SIGKILL to every process in the
host's namespace (its ferryd, QEMUs, storage daemons), as a reset would. watchdog_fired(h) says
whether and when it did.

lab.json is rewritten after each step (a namespace as soon as `ip netns add` made it, a
ferryd's pid as soon as it is spawned), so `down` works from that file alone, also after a
crash in the middle of `up`. Nothing outside DIR and the lab's namespaces is touched: veths
are created inside the segment namespace and die with it.

    lab = Lab.up("t1", hosts=3, subnet="10.78.0.0/24")
    try:
        lab.host(2).cli("vm", "list")
    finally:
        lab.down()
"""
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

DEFAULT_NAME = "lab"
DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_ROOT = "/run/ferry-lab"
MAX_HOSTS = 16
API_PORT = 7443
STATE_FILE = "lab.json"
STATE_VERSION = 1
SEG_BRIDGE = "seg0"
HOST_BRIDGE = "br0"
HOST_UPLINK = "up0"
CLIENT_IF = "eth0"
FERRYD_READY_S = 30  # a ferryd answers in well under a second; this is for a loaded machine
CLUSTER_CALL_S = 60  # cluster init / join: a join waits for its Raft configuration change
CLUSTER_QUERY_S = 5  # cluster status: a local read
CLUSTER_FORM_S = 60  # all hosts up voters agreeing on a leader; seconds normally
STOP_GRACE_S = 10
LINKS_READY_S = 10
DIR_MAX = 64  # DIR/host8/run/VM/qmp.sock must fit in a unix socket path (108 bytes)

WATCHDOG_POLL_S = 0.1  # the emulated watchdog looks at its host's file this often
WATCHDOG_KILL_S = 5    # and kills the host's processes until none is left, at most this long

PROBE_INTERVAL_MS = 1  # migrate_measured: a UDP probe every ms from the client namespace
PROBE_LEAD_S = 1.0     # probing before the migration and after the guest answers again
PROBE_ANSWER_S = 10    # after the migration, how long the guest may take to answer again
RECORD_WAIT_S = 10     # until the migration's record is in the database of the host asked
GAP_SOURCE = "lab-probe"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")
HOST_RE = re.compile(r"^host([1-9][0-9]*)$")

HERE = os.path.dirname(os.path.abspath(__file__))


class LabError(Exception):
    """A failure with a message that says what, where, and what to do."""


# What a guest prints when its memory or CPU state went wrong: a migration that lost writes
# shows these, often while the guest still answers for a while. The appliance kernel has
# CONFIG_PREEMPT_RCU (stalls say rcu_preempt), its memory verifier prints "memverify: BAD".
GUEST_TROUBLE = re.compile(
    r"BUG: |Oops|Kernel panic|general protection fault|kernel BUG at|invalid opcode|"
    r"is not a head!|WARNING: CPU|rcu_\w+ (?:self-)?detected stall|detected stalls on CPUs|"
    r"soft lockup|hard LOCKUP|blocked for more than|segfault at|double fault|"
    r"list_(?:add|del) corruption|Bad page|page allocation failure|stack-protector|"
    r"memverify: BAD")


def guest_trouble(console):
    """The first line of console that shows guest trouble (GUEST_TROUBLE), or None."""
    m = GUEST_TROUBLE.search(console or "")
    if not m:
        return None
    start = console.rfind("\n", 0, m.start()) + 1
    end = console.find("\n", m.end())
    return console[start:end if end >= 0 else len(console)].strip()


# ---- probing a guest from the client namespace -------------------------------------------------

class LabProbe:
    """ferry-probe udp every PROBE_INTERVAL_MS from the lab's client namespace (and, with
    tcp_port, one TCP echo connection held open), for measuring what a client of the VM sees
    of a migration (interval_ms: another rate, for a probe that runs through many steps
    beside the measured ones). Starts PROBE_LEAD_S before the caller goes on; stop() ends it
    PROBE_LEAD_S after the guest answers again (at most PROBE_ANSWER_S), so a gap longer than
    the lead is measured whole. The one probe runner of the lab, the tests and the benchmarks."""

    def __init__(self, lab, ip, tcp_port=None, interval_ms=PROBE_INTERVAL_MS):
        self.lab, self.ip = lab, ip
        argv = ["ferry-probe", "udp", ip, "--interval-ms", str(interval_ms), "--json"]
        if tcp_port:
            argv += ["--tcp-port", str(tcp_port)]
        self.p = lab.client_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(PROBE_LEAD_S)
        if self.p.poll() is not None:
            err = self.p.stderr.read().strip()[-300:]
            raise LabError(f"ferry-probe udp {ip} ended at once: {err}")

    def stop(self):
        """ferry-probe's report plus "answering" (the guest answers again, its last reply
        under 100 ms old) and "client_gap_ms" (the longest gap between replies, or the time
        since the last reply when the guest never answered again). LabError when there is no
        report."""
        time.sleep(PROBE_LEAD_S)
        w = self.lab.client_exec(["ferry-probe", "wait", self.ip, "--timeout-s",
                                  str(PROBE_ANSWER_S)], check=False, timeout=PROBE_ANSWER_S + 20)
        if w.returncode == 0:
            time.sleep(PROBE_LEAD_S)
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            out, err = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise LabError(f"ferry-probe udp {self.ip} did not stop on SIGINT") from None
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"ferry-probe udp {self.ip}: no report: {err.strip()[-300:]}") \
                from None
        res["answering"] = w.returncode == 0 and (res.get("last_reply_age_ms") or 0) < 100
        if res.get("longest_gap_ms") is not None:
            res["client_gap_ms"] = max(res["longest_gap_ms"], res.get("last_reply_age_ms") or 0)
        return res

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def memverify(lab, ip, scans=2, boot_id=None, timeout_s=60):
    """Asks the guest's memory verifier (ferry-probe memverify from the client namespace) and
    returns its report: "clean" is true only when SCANS whole scans completed, no page ever
    lost a write and the verifier is the one of boot_id (when given). LabError when
    ferry-probe gave no report."""
    argv = ["ferry-probe", "memverify", ip, "--json", "--scans", str(scans), "--timeout-s",
            str(timeout_s)]
    if boot_id:
        argv += ["--boot-id", boot_id]
    r = lab.client_exec(argv, check=False, timeout=timeout_s + 20)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LabError(f"ferry-probe memverify {ip}: no report (exit {r.returncode}): "
                       f"{r.stderr.strip()[-300:]}") from None


# ---- finding our binaries --------------------------------------------------------------------

def build_binaries(build):
    """{"ferry", "ferryd", "build"} of the ferry build directory build (its src/, or build
    itself holding both programs): what a lab host runs instead of the lab's own binaries
    (Lab.up(build=...), start_ferryd(build=...)), a previous release's say. Raises LabError
    naming what is missing."""
    for d in (os.path.join(build, "src"), build):
        ferry, ferryd = os.path.join(d, "ferry"), os.path.join(d, "ferryd")
        if os.access(ferry, os.X_OK) and os.access(ferryd, os.X_OK):
            return {"ferry": os.path.realpath(ferry), "ferryd": os.path.realpath(ferryd),
                    "build": os.path.realpath(build)}
    raise LabError(f"--build {build}: no ferry and ferryd in {build}/src or {build}; give a "
                   "ferry build directory (ninja -C DIR src/ferryd src/ferry)")


def find_binaries():
    """Returns {"ferry", "ferryd", "probe", "bindirs"}: $FERRY_BUILD/src (or $FERRY_BUILD), else
    the in-tree build next to this file (lab/../build/src), else an installed prefix
    (share/ferry/lab/../../../{bin,sbin}), else $PATH. Raises LabError if ferry or ferryd is
    missing."""
    cands = []
    env = os.environ.get("FERRY_BUILD")
    if env:
        cands += [(os.path.join(env, "src"),) * 2, (env,) * 2]
    cands.append((os.path.join(HERE, "..", "build", "src"),) * 2)
    prefix = os.path.join(HERE, "..", "..", "..")
    cands.append((os.path.join(prefix, "bin"), os.path.join(prefix, "sbin")))
    for bindir, sbindir in cands:
        ferry = os.path.join(bindir, "ferry")
        ferryd = os.path.join(sbindir, "ferryd")
        if os.access(ferry, os.X_OK) and os.access(ferryd, os.X_OK):
            probe = os.path.join(bindir, "ferry-probe")
            return {"ferry": os.path.realpath(ferry), "ferryd": os.path.realpath(ferryd),
                    "probe": os.path.realpath(probe) if os.access(probe, os.X_OK) else None,
                    "bindirs": sorted({os.path.realpath(bindir), os.path.realpath(sbindir)})}
    ferry, ferryd = shutil.which("ferry"), shutil.which("ferryd")
    if ferry and ferryd:
        probe = shutil.which("ferry-probe")
        return {"ferry": ferry, "ferryd": ferryd, "probe": probe,
                "bindirs": sorted({os.path.dirname(ferry), os.path.dirname(ferryd)})}
    raise LabError("cannot find the ferry and ferryd binaries: build them (ninja -C build) "
                   "or point FERRY_BUILD at the build directory")


# ---- small helpers ---------------------------------------------------------------------------

def _run(cmd, check=True, timeout=60, **kw):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(cmd)}: no answer after {timeout}s") from e
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip()
        raise LabError(f"{' '.join(cmd)}: exit {p.returncode}: {msg}")
    return p


def _cmdline(pid):
    """The argv of process pid, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (OSError, IndexError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None


def pid_alive(pid):
    return bool(pid) and _cmdline(pid) is not None


def _reap(pid):
    """Collects pid's exit status if it is our child (Lab.up in this process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        for p in pids:
            _reap(p)
        left = [p for p in pids if pid_alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _stop_pids(pids, grace):
    """SIGTERM, wait up to grace seconds, SIGKILL what is left. pids were verified by the
    caller. Returns the pids still alive at the end (should be none)."""
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    left = _wait_gone(pids, grace)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return _wait_gone(left, 5)


def _netns_exists(ns):
    return os.path.exists(f"/run/netns/{ns}")


def _netns_inode(ns):
    try:
        st = os.stat(f"/run/netns/{ns}")
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def _ancestors():
    """This process and its ancestors: never signalled, even when `ferry lab down` itself runs
    inside a lab namespace."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _pids_in_netns(ns):
    """Processes whose network namespace is ns (same check as `ip netns pids`), except this
    process and its ancestors."""
    ident = _netns_inode(ns)
    if not ident:
        return []
    found, skip = [], _ancestors()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in skip:
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == ident and pid_alive(int(d)):
            found.append(int(d))
    return found


def _mono_ms():
    """CLOCK_MONOTONIC in ms: the clock ferryd writes fed_ms with (time.monotonic() is the same
    clock on Linux; this names it)."""
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


def read_watchdog_file(path):
    """The emulated watchdog's state as ferryd last wrote it ({"pid", "timeout_ms", "fed_ms",
    "armed"}), or None when the file is missing, empty or not such a line yet. Only the first
    line counts: a rewrite may briefly leave the tail of a longer old line behind it."""
    try:
        with open(path, "rb") as f:
            line = f.read(4096).split(b"\n", 1)[0]
        st = json.loads(line)
    except (OSError, ValueError):
        return None
    if not isinstance(st, dict) or not isinstance(st.get("armed"), bool) or \
            not isinstance(st.get("fed_ms"), int) or not isinstance(st.get("timeout_ms"), int):
        return None
    return st


def kill_netns(ns, timeout_s):
    """SIGKILL to every process in network namespace ns (as `ip netns pids` finds them)
    until none is left or timeout_s passed: a host's power loss. Returns the pids killed,
    sorted."""
    killed, deadline = set(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = _pids_in_netns(ns)
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                killed.add(p)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return sorted(killed)


def watchdog_emulate(path, ns, host, log, poll_s=WATCHDOG_POLL_S):
    """The lab's emulated watchdog of one host (`ferry-lab _watchdog`, run in the root
    namespace): every poll_s it reads path; while it says armed and fed_ms is older than
    timeout_ms on CLOCK_MONOTONIC, it powers the host off: SIGKILL to every process in netns
    ns until none is left, then one JSON line {"host", "fired_ms", "late_ms", "killed": [pids],
    "fed_ms", "timeout_ms", "ferryd_pid"} appended to log, and returns 0. A file that is
    missing or not armed is waited on. Returns 0 without firing when the namespace is gone
    (the lab was removed)."""
    ident = _netns_inode(ns)
    while ident is not None and _netns_inode(ns) == ident:
        st = read_watchdog_file(path)
        now = _mono_ms()
        if st and st["armed"] and now - st["fed_ms"] > st["timeout_ms"]:
            killed = kill_netns(ns, WATCHDOG_KILL_S)
            rec = {"host": host, "fired_ms": now, "late_ms": now - st["fed_ms"] - st["timeout_ms"],
                   "killed": killed, "fed_ms": st["fed_ms"],
                   "timeout_ms": st["timeout_ms"], "ferryd_pid": st.get("pid")}
            with open(log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            return 0
        time.sleep(poll_s)
    return 0


def parse_subnet(text):
    """Validates a private IPv4 /24 ("10.78.0.0/24"); returns its first three octets "10.78.0"."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise LabError(f"--subnet {text!r}: {e}; give a network like 10.78.0.0/24") from None
    if net.prefixlen != 24:
        raise LabError(f"--subnet {text!r}: the lab needs a /24 (hosts .11-.18, client .2, "
                       "VMs .101-.254)")
    if not net.is_private or net.is_loopback or net.is_link_local:
        raise LabError(f"--subnet {text!r}: use a private range (10/8, 172.16/12, 192.168/16)")
    return str(net.network_address).rsplit(".", 1)[0]


def _write_json_atomic(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# ---- one host --------------------------------------------------------------------------------

class LabHost:
    """One simulated host of a lab: its namespace, bridge br0, mgmt address and ferryd."""

    def __init__(self, lab, rec):
        self.lab = lab
        self.index = rec["index"]
        self.name = rec["name"]          # "host2", also ferryd's --name
        self.ns = rec["ns"]
        self.ip = rec["ip"]              # management address on br0
        self.dir = rec["dir"]
        self.state_dir = rec["state_dir"]
        self.run_dir = rec["run_dir"]
        self.sock = rec["sock"]
        self.log = rec["log"]
        self.rec = rec

    @property
    def pid(self):
        return self.rec.get("pid")

    @property
    def bins(self):
        """The ferry and ferryd this host runs: another build's when it was given one
        (Lab.up(build=...), start_ferryd(build=...)), else the lab's. Like a real host, its CLI
        is the one of its ferryd's version."""
        return self.rec.get("binaries") or self.lab.bins

    @property
    def url(self):
        return f"https://{self.ip}:{API_PORT}"

    @property
    def ca(self):
        """The CA this host's ferryd trusts and whose certificate it presents on its TCP API
        (its own before it is in a cluster, the cluster's after): what clients verify with."""
        return os.path.join(self.state_dir, "tls", "ca.crt")

    def ferryd_alive(self):
        """True if the recorded ferryd pid is alive and still our ferryd."""
        return self.lab._is_our_ferryd(self.rec)

    def cli(self, *args, check=True, timeout=120):
        """Runs this host's ferry (bins) --socket SOCK ARGS (from the root namespace: the unix
        socket needs no network). Returns the CompletedProcess; check raises LabError on
        non-zero."""
        return _run([self.bins["ferry"], "--socket", self.sock, *args], check=check,
                    timeout=timeout, env=self.lab.env(self))

    def cli_json(self, *args, timeout=120):
        return json.loads(self.cli("-o", "json", *args, timeout=timeout).stdout)

    def api(self, method, path, body=None, timeout=30):
        """One HTTP request to this host's ferryd on its unix socket, bypassing the CLI (for
        tests that check status codes). Returns (status, parsed JSON body or None). Raises
        LabError when the ferryd cannot be reached or does not answer in time."""
        conn = _UnixHTTPConnection(self.sock, timeout)
        try:
            data = json.dumps(body) if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise LabError(f"{self.name}: {method} {path} on {self.sock}: {e}") from None
        finally:
            conn.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, None

    def exec(self, cmd, check=True, timeout=120, **kw):
        """Runs cmd (a list) inside this host's namespace with FERRY_SOCKET set to its ferryd."""
        return self.lab._ns_run(self.ns, cmd, self.lab.env(self), check, timeout, **kw)

    def popen(self, cmd, **kw):
        """Starts cmd in this host's namespace; the caller owns (and must end) the process."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], env=self.lab.env(self),
                                **kw)

    def log_tail(self, n=4000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


# ---- the lab ---------------------------------------------------------------------------------

class Lab:
    """A lab made by Lab.up or read back by Lab.load; lab.down() removes all of it."""

    def __init__(self, state, path):
        self.state = state
        self.path = path  # DIR/lab.json
        self.dir = state["dir"]
        self.name = state["name"]
        self.prefix = state.get("prefix", "")
        self._bins = state.get("binaries")
        self._children = {}  # pid -> Popen, only in the process that ran up()
        self._watchdogs = {}  # pid -> Popen of emulated watchdogs this process started

    # -- reading --------------------------------------------------------------------------

    @staticmethod
    def default_dir(name):
        return os.path.join(DEFAULT_ROOT, name)

    @classmethod
    def load(cls, dir):
        """Reads DIR/lab.json. Raises LabError if there is none or it is unreadable."""
        path = os.path.join(dir, STATE_FILE)
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            raise LabError(f"no lab at {dir} (no {STATE_FILE}); start one with "
                           "`ferry lab up`") from None
        except (OSError, ValueError) as e:
            raise LabError(f"{path}: unreadable: {e}") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or \
                not isinstance(state.get("name"), str) or not isinstance(state.get("dir"), str):
            raise LabError(f"{path}: not a ferry lab state file of version {STATE_VERSION}")
        return cls(state, path)

    def reload(self):
        """Reads lab.json again, after another process (a `ferry lab` command) changed it. The
        host records are updated in place, so LabHost objects taken before see the change."""
        fresh = Lab.load(self.dir).state
        recs = {r["name"]: r for r in self.state.get("hosts", [])}
        for i, r in enumerate(fresh.get("hosts", [])):
            if r["name"] in recs:
                recs[r["name"]].clear()
                recs[r["name"]].update(r)
                fresh["hosts"][i] = recs[r["name"]]
        self.state = fresh

    @property
    def bins(self):
        if not self._bins:
            self._bins = find_binaries()
        return self._bins

    @property
    def hosts(self):
        return [LabHost(self, rec) for rec in self.state.get("hosts", [])]

    def host(self, which):
        """host(2), host("2") or host("host2") → LabHost; raises LabError if there is none."""
        text = str(which)
        m = HOST_RE.match(text)
        idx = int(m.group(1)) if m else (int(text) if text.isdigit() else None)
        for h in self.hosts:
            if h.index == idx:
                return h
        n = len(self.state.get("hosts", []))
        raise LabError(f"lab {self.name}: no host {which!r}; hosts are host1..host{n}, or client")

    @property
    def client_ns(self):
        return self.state["client"]["ns"]

    @property
    def client_ip(self):
        return self.state["client"]["ip"]

    @property
    def csv(self):
        return self.state["csv"]

    @property
    def token_file(self):
        return self.state["token_file"]

    def token(self):
        with open(self.token_file) as f:
            return f.read().strip()

    def guest_ip(self, k):
        """The address of the lab's k-th VM (k in 1..154): P.<100+k>. Every host's VMs share
        the segment, so the address stays valid wherever the VM runs."""
        if not 1 <= int(k) <= 154:
            raise LabError(f"guest_ip: {k} is out of range 1..154")
        return f"{self.prefix}.{100 + int(k)}"

    def env(self, host=None):
        """The environment for commands in the lab: our binaries first on PATH (host's ferry
        before them when it runs another build), the lab token
        in FERRY_TOKEN (for --url https://MGMT:7443), FERRY_SOCKET of host if given, and in
        FERRY_CA the CA to verify ferryd's certificate with (host's, or the cluster's)."""
        env = dict(os.environ)
        dirs = list(self.bins["bindirs"])
        if host is not None and host.rec.get("binaries"):  # its ferry first; the lab's probe
            dirs.insert(0, os.path.dirname(host.rec["binaries"]["ferry"]))
        env["PATH"] = os.pathsep.join(dirs + [env.get("PATH", "/usr/bin:/bin")])
        env["FERRY_LAB_NAME"] = self.name
        env["FERRY_LAB_DIR"] = self.dir
        try:
            env["FERRY_TOKEN"] = self.token()
        except OSError:
            pass
        env.pop("FERRY_URL", None)
        env.pop("FERRY_SOCKET", None)
        env["FERRY_CA"] = self.ca_file(host)
        if host is not None:
            env["FERRY_SOCKET"] = host.sock
        return env

    def ca_file(self, host=None):
        """The CA file to verify ferryds with: host's, or once there is a cluster its first
        member's (every member has the cluster's), else the first host's."""
        if host is not None:
            return host.ca
        members = (self.state.get("cluster") or {}).get("members") or []
        try:
            return self.host(members[0]).ca if members else self.hosts[0].ca
        except (LabError, IndexError):
            return ""

    def exec_target(self, which):
        """(namespace, env) for `ferry lab exec WHICH`: a host or "client"."""
        if which == "client":
            return self.client_ns, self.env()
        h = self.host(which)
        return h.ns, self.env(h)

    def client_exec(self, cmd, check=True, timeout=120, **kw):
        """Runs cmd (a list) in the client namespace."""
        return self._ns_run(self.client_ns, cmd, self.env(), check, timeout, **kw)

    def client_popen(self, cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.client_ns, *cmd], env=self.env(),
                                **kw)

    def _ns_run(self, ns, cmd, env, check, timeout, **kw):
        if isinstance(cmd, str):
            raise TypeError("cmd must be a list of arguments, not a shell string")
        return _run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout, env=env, **kw)

    def _is_our_ferryd(self, rec):
        pid = rec.get("pid")
        argv = _cmdline(pid) if pid else None
        return bool(argv) and os.path.basename(argv[0]) == "ferryd" and rec["sock"] in argv

    # -- status ---------------------------------------------------------------------------

    def status(self):
        """A dict for `status -o json`: the lab, each host (ferryd alive, accel, VMs, its view
        of the cluster), the client namespace, the shared directory and the cluster. Asks each
        live ferryd over its unix socket."""
        hosts = []
        cl = self.state.get("cluster")
        for h in self.hosts:
            alive = h.ferryd_alive()
            entry = {"name": h.name, "ns": h.ns, "ns_exists": _netns_exists(h.ns), "ip": h.ip,
                     "url": h.url, "socket": h.sock, "state_dir": h.state_dir, "log": h.log,
                     "ferryd_pid": h.pid, "ferryd_alive": alive,
                     "ferryd_stopped": bool(h.rec.get("stopped")),
                     "link": h.rec.get("link", "up"), "accel": None, "version": None,
                     "build": (h.rec.get("binaries") or {}).get("build"), "vms": None,
                     "cluster": None, "error": None, "watchdog": self.watchdog_status(h)}
            if alive and not h.rec.get("stopped"):
                try:
                    me = h.cli_json("node", "show", timeout=10)
                    entry["accel"], entry["version"] = me.get("accel"), me.get("version")
                    # In a cluster every node lists every VM: keep the ones this host runs.
                    entry["vms"] = [{"name": v.get("name"), "state": v.get("state"),
                                     "pid": v.get("pid")}
                                    for v in h.cli_json("vm", "list", timeout=10).get("vms", [])
                                    if v.get("owner", h.name) == h.name]
                except (LabError, ValueError) as e:
                    entry["error"] = str(e)
                if cl and h.name in cl.get("members", []):
                    st, err = self.cluster_status(h)
                    if st is None:
                        entry["error"] = entry["error"] or f"cluster status: {err}"
                    else:
                        entry["cluster"] = {
                            "state": st.get("state"), "term": st.get("term"),
                            "commit_index": st.get("commit_index"),
                            "leader": (st.get("leader") or {}).get("name"),
                            "quorum": st.get("quorum")}
            hosts.append(entry)
        healthy = self.state.get("phase") == "up" and all(
            h["ferryd_alive"] and not h["ferryd_stopped"] and h["ns_exists"] and
            h["link"] == "up" and not h["error"] and
            (h["watchdog"] is None or h["watchdog"]["alive"]) for h in hosts)
        cluster = None
        if cl:
            views = [h["cluster"] for h in hosts if h["cluster"]]
            leaders = {v["leader"] for v in views}
            leader = max(views, key=lambda v: v["term"] or 0)["leader"] if views else None
            cluster = {"id": cl.get("id"), "name": cl.get("name"), "api_addr": cl.get("api_addr"),
                       "members": cl.get("members"), "token_file": cl.get("token_file"),
                       "formed_s": cl.get("formed_s"), "leader": leader,
                       "agreed": len(views) == len(cl.get("members", [])) and len(leaders) == 1
                       and None not in leaders and all(v["quorum"] for v in views)}
            healthy = healthy and cluster["agreed"]
        return {"name": self.name, "dir": self.dir, "phase": self.state.get("phase"),
                "healthy": healthy, "created": self.state.get("created"),
                "subnet": self.state.get("subnet"), "accel": self.state.get("accel"),
                "watchdog": bool(self.state.get("watchdog")),
                "segment": {"ns": self.state["seg"]["ns"], "bridge": SEG_BRIDGE,
                            "ns_exists": _netns_exists(self.state["seg"]["ns"])},
                "client": {"ns": self.client_ns, "ip": self.client_ip,
                           "ns_exists": _netns_exists(self.client_ns)},
                "csv": self.csv, "token_file": self.token_file,
                "cluster": cluster, "hosts": hosts}

    # -- up -------------------------------------------------------------------------------

    @classmethod
    def up(cls, name=DEFAULT_NAME, hosts=3, dir=None, subnet=DEFAULT_SUBNET, accel="auto",
           progress=None, cluster=True, qemu=None, ferryd_args=(), watchdog=False, build=None):
        """Builds a lab of hosts simulated hosts and returns it, ferryds answering and, with
        cluster, formed into one cluster (form_cluster). qemu: the QEMU binary every ferryd
        runs (ferryd --qemu; default ferryd's own); ferryd_args: more ferryd options for
        every host (benchmarks use them to measure settings ferryd refuses by default);
        watchdog: every host gets an emulated watchdog that its ferryd feeds and that powers
        the host off when the feeds stop (watchdog_emulate); build: a ferry build directory
        whose ferryd and ferry every host runs instead of the lab's (a previous release, for a
        rolling upgrade: start_ferryd(h, build=...) moves one host to another build; the lab's
        own tools, ferry-probe and this script, stay). On any failure (also Ctrl-C)
        everything made so far is removed and LabError raised. progress(msg) is called with
        a line per step if given."""
        say = progress or (lambda msg: None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise LabError(f"--name {name!r}: use 1-24 letters, digits, '-' or '_', starting "
                           "with a letter or digit")
        try:
            hosts = int(hosts)
        except (TypeError, ValueError):
            raise LabError(f"--hosts {hosts!r}: not a number") from None
        if not 1 <= hosts <= MAX_HOSTS:
            raise LabError(f"--hosts {hosts}: a lab has 1..{MAX_HOSTS} hosts")
        if accel not in ("auto", "kvm", "tcg"):
            raise LabError(f"--accel {accel!r}: expected auto, kvm or tcg")
        if qemu is not None:
            found = shutil.which(qemu)
            if not found:
                raise LabError(f"--qemu {qemu}: no such program (give a QEMU binary's path)")
            qemu = os.path.abspath(found)
        prefix = parse_subnet(subnet)
        dir = os.path.abspath(dir or cls.default_dir(name)).rstrip("/")
        if len(dir) > DIR_MAX:
            raise LabError(f"--dir {dir}: longer than {DIR_MAX} characters; unix socket paths "
                           "under it would not fit (pick a shorter one)")
        bins = find_binaries()
        host_bins = build_binaries(build) if build else None
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, bridges, taps)")
        if shutil.which("ip") is None:
            raise LabError("the 'ip' command (iproute2) is not installed")

        if os.path.exists(os.path.join(dir, STATE_FILE)):
            raise LabError(f"a lab named {name} exists ({dir}/{STATE_FILE}); run "
                           f"`ferry lab down{cls._name_args(name, dir)}` first")
        if os.path.isdir(dir) and os.listdir(dir):
            raise LabError(f"{dir} exists and is not empty; remove it or pick another --dir")
        nss = [f"{name}-seg", f"{name}-client"] + [f"{name}-h{i}" for i in range(1, hosts + 1)]
        taken = [ns for ns in nss if _netns_exists(ns)]
        if taken:
            raise LabError(f"network namespace {', '.join(taken)} already exists (left by "
                           f"another lab of this name?); remove it with `ip netns del {taken[0]}` "
                           "or pick another --name")

        made_root = not os.path.isdir(os.path.dirname(dir))
        made_dir = not os.path.isdir(dir)
        os.makedirs(os.path.dirname(dir), mode=0o755, exist_ok=True)
        os.makedirs(dir, mode=0o755, exist_ok=True)
        state = {
            "version": STATE_VERSION, "name": name, "dir": dir, "phase": "building",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "subnet": subnet, "prefix": prefix,
            "accel": accel, "qemu": qemu, "ferryd_args": list(ferryd_args), "binaries": bins,
            "watchdog": bool(watchdog),
            "made_dir": made_dir, "made_root": made_root,
            "token_file": os.path.join(dir, "token"), "csv": os.path.join(dir, "csv"),
            "namespaces": [], "veths": [],
            "seg": {"ns": f"{name}-seg"},
            "client": {"ns": f"{name}-client", "ip": f"{prefix}.2"},
            "hosts": [], "cluster": None,
        }
        lab = cls(state, os.path.join(dir, STATE_FILE))
        try:  # claim the name: of two `up`s racing for it, one gets lab.json, the other stops
            os.close(os.open(lab.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise LabError(f"a lab named {name} is being built or exists ({lab.path}); run "
                           f"`ferry lab down{cls._name_args(name, dir)}` first") from None
        try:
            lab._save()
            lab._build(hosts, say)
            if host_bins:
                for rec in lab.state["hosts"]:
                    rec["binaries"] = dict(host_bins)
                lab._save()
                say(f"every host runs {host_bins['ferryd']} and {host_bins['ferry']}")
            lab._start_ferryds(say)
            lab._wait_links()
            if cluster:
                lab.form_cluster(say)
            else:
                lab._check_segment(lab.hosts, say)
            lab.state["phase"] = "up"
            lab._save()
        except BaseException as e:
            say(f"failed: {e or type(e).__name__}; removing what was made")
            try:
                lab.down()
            except Exception as e2:  # report both; the first failure is the one that matters
                raise LabError(f"{e}\n(and cleaning up failed too: {e2})") from e
            if isinstance(e, LabError):
                raise
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise LabError(f"lab up: {e}") from e
        return lab

    @staticmethod
    def _name_args(name, dir):
        args = "" if name == DEFAULT_NAME else f" --name {name}"
        if dir != Lab.default_dir(name):
            args += f" --dir {dir}"
        return args

    def _save(self):
        _write_json_atomic(self.path, self.state)

    def _ip(self, ns, *args):
        _run(["ip", "-n", ns, *args])

    def _add_netns(self, ns):
        # `ip netns add` fails if ns exists, so a recorded namespace is always one we made
        # (down deletes what is recorded).
        _run(["ip", "netns", "add", ns])
        self.state["namespaces"].append(ns)
        self._save()
        self._ip(ns, "link", "set", "lo", "up")

    def _add_veth(self, seg_if, ns, ns_if):
        """A veth pair made inside the segment namespace, its peer moved straight into ns:
        nothing appears in the root namespace, and the pair dies with either namespace."""
        seg = self.state["seg"]["ns"]
        self.state["veths"].append({"ns": seg, "name": seg_if, "peer_ns": ns, "peer": ns_if})
        self._save()
        self._ip(seg, "link", "add", seg_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        self._ip(seg, "link", "set", seg_if, "master", SEG_BRIDGE, "up")

    def _build(self, nhosts, say):
        d = self.dir
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(24).hex() + "\n")
        os.makedirs(self.csv, mode=0o755)

        seg = self.state["seg"]["ns"]
        say(f"segment: netns {seg}, bridge {SEG_BRIDGE}, {self.state['subnet']}")
        self._add_netns(seg)
        # Fixed bridge MACs (02: locally administered): a bridge that takes its ports' lowest
        # MAC would change address as VM taps come and go, and stale ARP entries on the other
        # hosts would cut management traffic for a while.
        lab_byte = sum(self.name.encode()) % 256
        self._ip(seg, "link", "add", SEG_BRIDGE, "address", f"02:fe:{lab_byte:02x}:00:00:01",
                 "type", "bridge")
        self._ip(seg, "link", "set", SEG_BRIDGE, "up")

        for i in range(1, nhosts + 1):
            ns = f"{self.name}-h{i}"
            hd = os.path.join(d, f"host{i}")
            rec = {"index": i, "name": f"host{i}", "ns": ns, "ip": f"{self.prefix}.{10 + i}",
                   "dir": hd, "state_dir": os.path.join(hd, "state"),
                   "run_dir": os.path.join(hd, "run"), "sock": os.path.join(hd, "ferryd.sock"),
                   "log": os.path.join(hd, "ferryd.log"), "pid": None}
            if self.state.get("watchdog"):
                rec["watchdog"] = {"file": os.path.join(hd, "watchdog"),
                                   "log": os.path.join(hd, "watchdog.log"),
                                   "err": os.path.join(hd, "watchdog.err"), "pid": None}
            self.state["hosts"].append(rec)
            say(f"host{i}: netns {ns}, bridge {HOST_BRIDGE} {rec['ip']}/24, uplink to "
                f"{SEG_BRIDGE}")
            os.makedirs(hd, mode=0o755)
            self._add_netns(ns)
            self._ip(ns, "link", "add", HOST_BRIDGE, "address",
                     f"02:fe:{lab_byte:02x}:00:01:{i:02x}", "type", "bridge")
            self._add_veth(f"h{i}", ns, HOST_UPLINK)
            self._ip(ns, "link", "set", HOST_UPLINK, "master", HOST_BRIDGE, "up")
            self._ip(ns, "addr", "add", f"{rec['ip']}/24", "dev", HOST_BRIDGE)
            self._ip(ns, "link", "set", HOST_BRIDGE, "up")

        cns = self.client_ns
        say(f"client: netns {cns}, {self.client_ip}/24")
        self._add_netns(cns)
        self._add_veth("cl", cns, CLIENT_IF)
        self._ip(cns, "addr", "add", f"{self.client_ip}/24", "dev", CLIENT_IF)
        self._ip(cns, "link", "set", CLIENT_IF, "up")
        self._save()

    def _ferryd_argv(self, h):
        """The command line of host h's ferryd: the same at `up` and at every restart."""
        argv = ["ip", "netns", "exec", h.ns, h.bins["ferryd"], "--name", h.name,
                "--state-dir", h.state_dir, "--run-dir", h.run_dir, "--socket", h.sock,
                "--listen", f"{h.ip}:{API_PORT}", "--token-file", self.token_file]
        if self.state["accel"] != "auto":
            argv += ["--accel", self.state["accel"]]
        if self.state.get("qemu"):
            argv += ["--qemu", self.state["qemu"]]
        if h.rec.get("watchdog"):
            argv += ["--watchdog", h.rec["watchdog"]["file"]]
        # The dashboard's files: web/ of this tree (or of the installed package's share dir).
        web = os.path.join(HERE, "..", "web")
        if os.path.isdir(web):
            argv += ["--web-dir", os.path.abspath(web)]
        return argv + list(self.state.get("ferryd_args") or []) + list(h.rec.get("args") or [])

    def _spawn_ferryd(self, h, say, env=None):
        """Starts h's ferryd detached in its namespace and records its pid. env: extra
        environment variables (tests use it to give ferryd a wall clock of its own)."""
        if h.rec.get("watchdog"):
            self._start_watchdog(h, say)
        with open(h.log, "ab") as log:
            # `ip netns exec` execs ferryd in place, so this pid is ferryd's. Its own
            # session: Ctrl-C on `ferry lab up` or the caller's exit does not reach it.
            p = subprocess.Popen(self._ferryd_argv(h), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=log, start_new_session=True, close_fds=True,
                                 env=dict(os.environ, **env) if env else None)
        self._children[p.pid] = p
        h.rec["pid"] = p.pid
        h.rec.pop("stopped", None)
        self._save()
        say(f"{h.name}: ferryd pid {p.pid}, api {h.sock} and {h.url}, log {h.log}")

    # -- the emulated watchdog (watchdog_emulate) ------------------------------------------

    def _is_our_watchdog(self, h):
        wd = h.rec.get("watchdog") or {}
        argv = _cmdline(wd["pid"]) if wd.get("pid") else None
        return bool(argv) and "_watchdog" in argv and wd["file"] in argv

    def _start_watchdog(self, h, say):
        """Makes sure host h's emulated watchdog watches: one that still runs is kept (a
        ferryd started again within its timeout feeds it in time, as it would a device); one
        that fired or is gone is replaced, after its file is emptied: the host was powered off,
        and comes back with a watchdog nobody armed yet."""
        if self._is_our_watchdog(h):
            return
        wd = h.rec["watchdog"]
        open(wd["file"], "w").close()
        argv = [sys.executable or "/usr/bin/python3", os.path.join(HERE, "ferry-lab"),
                "_watchdog", "--file", wd["file"], "--netns", h.ns, "--host", h.name,
                "--log", wd["log"]]
        with open(wd["err"], "ab") as err:
            # In the root namespace, in a session of its own like ferryd.
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                 start_new_session=True, close_fds=True)
        self._watchdogs[p.pid] = p
        wd["pid"] = p.pid
        self._save()
        say(f"{h.name}: emulated watchdog pid {p.pid} watches {wd['file']}")

    def watchdog_fired(self, h):
        """The last time host h's emulated watchdog powered it off: {"host", "fired_ms",
        "late_ms", "killed": [pids], ...} (fired_ms on CLOCK_MONOTONIC), or None if it never
        did (or the lab has no watchdogs)."""
        wd = h.rec.get("watchdog")
        if not wd:
            return None
        try:
            with open(wd["log"]) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
            return json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            return None

    def watchdog_status(self, h):
        """Host h's emulated watchdog for status: None without one, else {"file", "pid",
        "alive" (its process watches), "state": armed, disarmed, waiting (ferryd has not armed
        it), fired or gone (no process, never fired), "fed_age_ms", "timeout_ms", "fired" (the
        last fired record or None)}."""
        wd = h.rec.get("watchdog")
        if not wd:
            return None
        alive = self._is_our_watchdog(h)
        st = read_watchdog_file(wd["file"])
        fired = self.watchdog_fired(h)
        if not alive:
            state = "fired" if fired else "gone"
        elif st is None:
            state = "waiting"
        else:
            state = "armed" if st["armed"] else "disarmed"
        return {"file": wd["file"], "pid": wd.get("pid"), "alive": alive, "state": state,
                "fed_age_ms": _mono_ms() - st["fed_ms"] if st else None,
                "timeout_ms": st["timeout_ms"] if st else None, "fired": fired}

    def _wait_ferryd(self, h, deadline):
        """Waits until h's ferryd answers `node show` on its unix socket."""
        while True:
            p = self._children.get(h.pid)
            if p is not None and p.poll() is not None:
                raise LabError(f"{h.name}: ferryd exited with {p.returncode} at start; "
                               f"its log {h.log} ends with:\n{h.log_tail(2000)}")
            if os.path.exists(h.sock) and h.cli("node", "show", check=False,
                                                timeout=10).returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"{h.name}: ferryd does not answer on {h.sock} after "
                               f"{FERRYD_READY_S}s; its log {h.log} ends with:\n"
                               f"{h.log_tail(2000)}")
            time.sleep(0.05)

    def _start_ferryds(self, say):
        """Starts every host's ferryd detached in its namespace, then waits until each answers
        `node show` on its unix socket."""
        for h in self.hosts:
            self._spawn_ferryd(h, say)
        deadline = time.monotonic() + FERRYD_READY_S
        for h in self.hosts:
            self._wait_ferryd(h, deadline)

    def _wait_links(self):
        """Waits until every link of the lab is up. The kernel applies carrier changes of
        bridges (and of veths whose ifindex equals their peer's) through linkwatch, at most
        once a second; until then the device drops what it sends, so a probe started right
        after `up` would lose its first packets."""
        deadline = time.monotonic() + LINKS_READY_S
        while True:
            down = []
            for ns in self.state["namespaces"]:
                p = _run(["ip", "-n", ns, "-j", "link", "show"], check=False)
                try:
                    links = json.loads(p.stdout) if p.returncode == 0 else []
                except ValueError:
                    links = []
                down += [f"{ns}/{l.get('ifname')}" for l in links
                         if l.get("ifname") != "lo" and l.get("operstate") != "UP"]
            if not down:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"links still down after {LINKS_READY_S}s: {', '.join(down)}")
            time.sleep(0.05)

    def _check_segment(self, hosts, say):
        """Checks that every ferryd of hosts answers `node show` under its own name over the
        segment: over TCP with the lab token, asked from the next host's namespace (so host
        i's mgmt address, the segment and the token work, which joining needs)."""
        for k, h in enumerate(hosts):
            asker = hosts[(k + 1) % len(hosts)]
            p = self._ns_run(asker.ns, [asker.bins["ferry"], "--url", h.url, "--ca", h.ca,
                                        "-o", "json", "node", "show"], self.env(), False, 15)
            if p.returncode != 0:
                raise LabError(f"{h.name}: ferryd does not answer on {h.url} from "
                               f"{asker.name}: {(p.stderr or p.stdout).strip()}")
            try:
                got = json.loads(p.stdout).get("name")
            except ValueError:
                got = None
            if got != h.name:
                raise LabError(f"{h.name}: {h.url} answers as node {got!r}")
        say(f"hosts answer over the segment: {', '.join(h.name for h in hosts)}")

    # -- the cluster ----------------------------------------------------------------------

    def cluster_name(self):
        """The name the lab gives its cluster: the lab's name in [a-z0-9-], starting with a
        letter (what the cluster database accepts as a name)."""
        n = re.sub(r"[^a-z0-9-]", "-", self.name.lower())
        return n if n[0].isalpha() else f"lab-{n}"

    def form_cluster(self, say=lambda msg: None, hosts=None):
        """Makes hosts (default: all) one cluster: `ferry cluster init` on the first (through
        its unix socket), `ferry cluster join FIRST-API-ADDR --token T` on each other one in
        turn (each waited for until it is a voter or standby, so one membership change runs at
        a time), then waits until the first host sees every one of them up with a leader
        and every host agrees on that leader. Records the cluster in lab.json (the join token
        goes to DIR/cluster-token, 0600). Raises LabError saying which step failed and what
        the ferryds said; Lab.up then removes everything."""
        hosts = list(hosts) if hosts is not None else self.hosts
        if not hosts:
            raise LabError("form_cluster: no hosts")
        if self.state.get("cluster"):
            raise LabError(f"lab {self.name} has a cluster already "
                           f"({self.state['cluster'].get('id')})")
        t0 = time.monotonic()
        self._check_segment(hosts, say)
        first = hosts[0]
        p = first.cli("-o", "json", "cluster", "init", "--name", self.cluster_name(),
                      check=False, timeout=CLUSTER_CALL_S)
        if p.returncode != 0:
            raise LabError(f"{first.name}: ferry cluster init: exit {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()}; its log {first.log} ends with:\n"
                           f"{first.log_tail(1500)}")
        try:
            init = json.loads(p.stdout)
            cid, token, addr = init["cluster_id"], init["token"], init["api_addr"]
        except (ValueError, KeyError, TypeError) as e:
            raise LabError(f"{first.name}: ferry cluster init answered without "
                           f"cluster_id/token/api_addr ({e}): {p.stdout.strip()}") from None
        token_file = os.path.join(self.dir, "cluster-token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        self.state["cluster"] = {"id": cid, "name": init.get("name"), "api_addr": addr,
                                 "token_file": token_file, "members": [first.name],
                                 "leader": None, "formed_s": None}
        self._save()
        say(f"{first.name}: cluster {cid} initialized, joins go to {addr}")
        self.wait_cluster([first], say=None)
        for h in hosts[1:]:
            self.join_cluster(h, say)
            self.wait_cluster([first] + [self.host(n) for n in
                                         self.state["cluster"]["members"][1:]], say=None)
        leader = self.wait_cluster(hosts, say=None)
        self.state["cluster"]["formed_s"] = round(time.monotonic() - t0, 3)
        self._save()
        say(f"cluster {cid}: {len(hosts)} member(s) up, leader {leader.name}, formed in "
            f"{self.state['cluster']['formed_s']:.1f} s")

    def join_cluster(self, h, say=lambda msg: None):
        """`ferry cluster join` on host h (not yet a member) with the lab cluster's address
        and token; records h as a member. Does not wait for h to become a voter
        (wait_cluster does)."""
        cl = self.state.get("cluster")
        if not cl:
            raise LabError(f"lab {self.name} has no cluster to join; form_cluster first")
        if h.name in cl["members"]:
            raise LabError(f"{h.name} is a member of cluster {cl['id']} already")
        with open(cl["token_file"]) as f:
            token = f.read().strip()
        p = h.cli("-o", "json", "cluster", "join", cl["api_addr"], "--token", token,
                  check=False, timeout=CLUSTER_CALL_S)
        if p.returncode != 0:
            raise LabError(f"{h.name}: ferry cluster join {cl['api_addr']}: exit "
                           f"{p.returncode}: {(p.stderr or p.stdout).strip()}; its log {h.log} "
                           f"ends with:\n{h.log_tail(1500)}")
        cl["members"].append(h.name)
        self._save()
        say(f"{h.name}: joined cluster {cl['id']}")

    def cluster_status(self, h, timeout=CLUSTER_QUERY_S):
        """`ferry cluster status` of host h: (status dict, None), or (None, what went wrong)
        when h's ferryd does not answer or refuses (not in a cluster). Never raises."""
        try:
            p = h.cli("-o", "json", "cluster", "status", check=False, timeout=timeout)
        except LabError as e:
            return None, str(e)
        if p.returncode != 0:
            return None, (p.stderr or p.stdout).strip()
        try:
            return json.loads(p.stdout), None
        except ValueError as e:
            return None, f"not JSON: {e}"

    def _converged(self, hosts):
        """(leader name, None) when hosts[0] sees exactly hosts as up members (voters, and
        standbys past the cluster's --max-voters) with a leader among them and a quorum, and
        every host of hosts names the same leader; else (None, why)."""
        names = sorted(h.name for h in hosts)
        st, err = self.cluster_status(hosts[0])
        if st is None:
            return None, f"{hosts[0].name}: {err}"
        members = st.get("members") or []
        got = sorted(m.get("name") for m in members)
        if got != names:
            return None, f"{hosts[0].name} sees members {got}, expected {names}"
        bad = [f"{m.get('name')} ({m.get('role')}, {m.get('state')})" for m in members
               if m.get("role") not in ("voter", "standby") or m.get("state") != "up"]
        if bad:
            return None, f"{hosts[0].name}: not yet up voters or standbys: {', '.join(bad)}"
        leader = (st.get("leader") or {}).get("name")
        if not leader or not st.get("quorum"):
            return None, f"{hosts[0].name}: leader {leader}, quorum {st.get('quorum')}"
        for h in hosts[1:]:
            o, err = self.cluster_status(h)
            if o is None:
                return None, f"{h.name}: {err}"
            ol = (o.get("leader") or {}).get("name")
            if ol != leader:
                return None, f"{h.name} names leader {ol}, {hosts[0].name} names {leader}"
            if o.get("cluster_id") != st.get("cluster_id"):
                return None, (f"{h.name} is in cluster {o.get('cluster_id')}, "
                              f"{hosts[0].name} in {st.get('cluster_id')}")
        return leader, None

    def wait_cluster(self, hosts=None, timeout=CLUSTER_FORM_S, say=lambda msg: None):
        """Polls until hosts (default: the recorded members) form one cluster as _converged
        says; records and returns the leader's LabHost. LabError after timeout seconds with
        the last reason."""
        if hosts is None:
            hosts = [self.host(n) for n in (self.state.get("cluster") or {}).get("members", [])]
        if not hosts:
            raise LabError(f"lab {self.name} has no cluster")
        deadline = time.monotonic() + timeout
        while True:
            leader, why = self._converged(hosts)
            if leader:
                cl = self.state.get("cluster")
                if cl is not None and cl.get("leader") != leader:
                    cl["leader"] = leader
                    self._save()
                if say:
                    say(f"cluster: {len(hosts)} up member(s), leader {leader}")
                return self.host(leader)
            if time.monotonic() >= deadline:
                raise LabError(f"the cluster of {', '.join(h.name for h in hosts)} did not "
                               f"form within {timeout}s: {why}")
            time.sleep(0.1)

    def leader(self, timeout=CLUSTER_QUERY_S):
        """The LabHost of the current leader as the reachable ferryds see it: of all answers
        naming a leader, the one of the highest term (a node that calls itself leader wins a
        tie). None when no reachable node knows a leader. Stopped (SIGSTOP) and dead ferryds
        are not asked."""
        best = None
        for h in self.hosts:
            if h.rec.get("stopped") or not h.ferryd_alive():
                continue
            st, _ = self.cluster_status(h, timeout=timeout)
            name = ((st or {}).get("leader") or {}).get("name")
            if not name:
                continue
            key = (st.get("term") or 0, st.get("state") == "leader")
            if best is None or key > best[0]:
                best = (key, name)
        return self.host(best[1]) if best else None

    def write_vm(self, h, name, node=None, timeout=10):
        """One write through the cluster database, asked of host h: POST /v1/vms[?node=NODE]
        with a stopped 32 MiB VM called name (never started; its "kernel" is an empty file
        on the shared volume). Returns (HTTP status, body): 201 when the cluster took it,
        with body["owner"] set when VMs are cluster objects. Raises LabError only when h
        does not answer within timeout."""
        kernel = os.path.join(self.csv, "probe.kernel")
        if not os.path.exists(kernel):
            open(kernel, "a").close()
        path = "/v1/vms" + (f"?node={node}" if node else "")
        return h.api("POST", path, {"name": name, "memory_mib": 32, "boot": {"kernel": kernel}},
                     timeout=timeout)

    # -- migrating under probes -----------------------------------------------------------

    def find_vm(self, name):
        """(record as `ferry vm list` shows it, a live host to ask) for VM name; the host is
        the VM's owner when its ferryd lives. Raises LabError when no host knows the VM."""
        asked = []
        for h in self.hosts:
            if not h.ferryd_alive():
                continue
            asked.append(h.name)
            p = h.cli("-o", "json", "vm", "list", check=False, timeout=30)
            if p.returncode != 0:
                continue
            for v in json.loads(p.stdout).get("vms", []):
                if v.get("name") == name:
                    owner = v.get("owner")
                    if owner and owner != h.name:
                        try:
                            o = self.host(owner)
                            if o.ferryd_alive():
                                h = o
                        except LabError:
                            pass
                    return v, h
        if not asked:
            raise LabError(f"lab {self.name}: no ferryd is alive")
        raise LabError(f"lab {self.name}: no VM named {name} (asked {', '.join(asked)})")

    @staticmethod
    def vm_guest_ip(vm):
        """The appliance's address from its kernel command line (ferry.ip=A.B.C.D/NN), or
        None."""
        cmdline = ((vm.get("spec") or {}).get("boot") or {}).get("cmdline") or ""
        m = re.search(r"(?:^|\s)ferry\.ip=([0-9.]+)(?:/\d+)?(?:\s|$)", cmdline)
        return m.group(1) if m else None

    def migrate_measured(self, name, to=None, budget_ms=None, ip=None, say=lambda msg: None,
                         verify=True):
        """Live-migrates VM name (`ferry vm migrate` on its owner) while ferry-probe udp in the
        client namespace probes its guest every PROBE_INTERVAL_MS, then records the
        client-observed gap on the migration (`ferry vm measure-migration`, source
        lab-probe). The gap is the longest gap between replies, or the time since the last
        reply when the guest never answered again. Returns {"vm", "ip", "ok" (the migration
        completed), "error" (migrate's message or None), "figures" (migrate's answer or None),
        "probe" (ferry-probe's report), "client_gap_ms", "migration" (the record after the
        measurement, or None when none was found), "memverify" (when the guest runs the memory
        verifier and verify is true: its report after two whole scans on the new host, else
        None; a caller that checks the guest later anyway saves the scans)}. Raises
        LabError when nothing could be measured (the guest does not answer probes, ferry-probe
        failed)."""
        say = say or (lambda msg: None)
        vm, h = self.find_vm(name)
        ip = ip or self.vm_guest_ip(vm)
        if not ip:
            raise LabError(f"{name} has no ferry.ip= on its kernel command line (an appliance "
                           "made with --guest-ip); give its address with --ip")
        w = self.client_exec(["ferry-probe", "wait", ip, "--timeout-s", "5"], check=False,
                             timeout=30)
        if w.returncode != 0:
            raise LabError(f"{name} ({ip}) does not answer probes from the client namespace: "
                           "measuring the client gap needs the guest's probe responder (an "
                           "appliance VM); `ferry vm migrate` migrates without measuring")
        before = [r["id"] for r in h.cli_json("vm", "migrations", name)["migrations"]]
        say(f"probing {ip} every {PROBE_INTERVAL_MS} ms from the client namespace")
        probe = LabProbe(self, ip)
        try:
            say(f"migrating {name} from {vm.get('owner') or h.name}"
                f"{' to ' + to if to else ''}")
            argv = ["-o", "json", "vm", "migrate", name]
            if to:
                argv += ["--to", to]
            if budget_ms:
                argv += ["--budget-ms", str(budget_ms)]
            m = h.cli(*argv, check=False, timeout=3600)
            figures = json.loads(m.stdout) if m.returncode == 0 and m.stdout.strip() else None
            error = None if figures else ((m.stderr or m.stdout).strip() or
                                          f"ferry vm migrate: exit {m.returncode}")
            res = probe.stop()
        finally:
            probe.kill()
        if not res.get("received"):
            raise LabError(f"ferry-probe got no reply from {ip} at all: {res}"
                           + (f"; the migration: {error}" if error else ""))
        gap = res["client_gap_ms"]
        rec = self._measure(h, name, before, gap)
        mv = None
        if verify and self.vm_runs_memverify(vm):
            say(f"asking {ip}'s memory verifier for two whole scans")
            mv = memverify(self, ip)
        return {"vm": name, "ip": ip, "ok": figures is not None, "error": error,
                "figures": figures, "probe": res, "client_gap_ms": gap, "migration": rec,
                "memverify": mv}

    @staticmethod
    def vm_runs_memverify(vm):
        """The appliance runs the memory verifier (ferry.workload= names memverify)."""
        cmdline = ((vm.get("spec") or {}).get("boot") or {}).get("cmdline") or ""
        m = re.search(r"(?:^|\s)ferry\.workload=(\S+)", cmdline)
        return bool(m) and "memverify" in m.group(1).split(",")

    def _measure(self, h, name, before, gap):
        """Records gap on the migration of name that h's database gained since `before` (ids
        seen then); the record afterwards, or None if none appeared in RECORD_WAIT_S."""
        deadline = time.monotonic() + RECORD_WAIT_S
        while True:
            recs = [r for r in h.cli_json("vm", "migrations", name)["migrations"]
                    if r["id"] not in before]
            if recs:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)
        rid = max(r["id"] for r in recs)
        return h.cli_json("vm", "measure-migration", str(rid), "--client-gap-ms", f"{gap:.1f}",
                          "--source", GAP_SOURCE)


    # -- faults ---------------------------------------------------------------------------

    def kill_ferryd(self, h, sig=signal.SIGKILL):
        """Sends sig to host h's ferryd (after checking the pid is still our ferryd) and
        returns time.monotonic() taken just before. SIGSTOP/SIGCONT freeze and thaw it (the
        lab remembers, so `down` thaws it first); any other signal is expected to end it and
        is waited for (LabError if it lives on after STOP_GRACE_S)."""
        if not self._is_our_ferryd(h.rec):
            raise LabError(f"{h.name}: no ferryd of this lab runs (pid {h.pid}); "
                           "start it with start_ferryd")
        pid = h.pid
        t = time.monotonic()
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            h.rec["stopped"] = True
            self._save()
            return t
        if sig == signal.SIGCONT:
            h.rec.pop("stopped", None)
            self._save()
            return t
        child = self._children.pop(pid, None)
        if child is not None:
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        if _wait_gone([pid], STOP_GRACE_S if child is None else 1):
            raise LabError(f"{h.name}: ferryd pid {pid} lives on after signal {sig}")
        h.rec.pop("stopped", None)
        self._save()
        return t

    def start_ferryd(self, h, timeout=FERRYD_READY_S, say=lambda msg: None, env=None,
                     args=None, build=None):
        """Starts host h's ferryd again, with the arguments `up` gave it, and waits until it
        answers on its unix socket. args: more ferryd options for this host alone (tests give
        one host another --qemu, say); they stay for later restarts until args=[] is given.
        build: a ferry build directory whose ferryd and ferry h runs from now on, on the same
        state (the package upgrade of a rolling upgrade); the lab's own build directory puts
        it back on the lab's binaries. LabError if one still runs, build has no binaries, or
        it does not come up."""
        if self._is_our_ferryd(h.rec):
            raise LabError(f"{h.name}: ferryd pid {h.pid} still runs")
        if build is not None:
            b = build_binaries(build)
            if b["ferryd"] == self.bins["ferryd"] and b["ferry"] == self.bins["ferry"]:
                h.rec.pop("binaries", None)
            else:
                h.rec["binaries"] = b
            self._save()
        if args is not None:
            h.rec["args"] = [str(a) for a in args]
            if not h.rec["args"]:
                del h.rec["args"]
        self._spawn_ferryd(h, say, env)
        self._wait_ferryd(h, time.monotonic() + timeout)

    def restart_ferryd(self, h, build=None, timeout=FERRYD_READY_S, say=lambda msg: None):
        """Stops host h's ferryd as its service manager would (SIGTERM: it closes its API and
        leaves its VMs running) and starts it again, from build's binaries when given (see
        start_ferryd). Returns the new pid."""
        if self._is_our_ferryd(h.rec):
            self.kill_ferryd(h, signal.SIGTERM)
        self.start_ferryd(h, timeout=timeout, say=say, build=build)
        return h.pid

    def power_off(self, h):
        """Host h loses power: its ferryd (if one of this lab runs) and then at once every
        other process of its namespace (QEMUs, storage daemons) SIGKILLed. Returns
        time.monotonic() taken just before. start_ferryd powers it on again."""
        t = time.monotonic()
        if self._is_our_ferryd(h.rec):
            self.kill_ferryd(h, signal.SIGKILL)
        left = kill_netns(h.ns, 10) and _pids_in_netns(h.ns)
        if left:
            raise LabError(f"{h.name}: pids {left} live on after SIGKILL")
        return t

    def _uplink(self, h):
        return self.state["seg"]["ns"], f"h{h.index}"

    def link_down(self, h):
        """Cuts host h off the segment: its uplink veth (the end in the segment namespace)
        goes down. Its ferryd keeps running and answers on its unix socket."""
        seg, ifname = self._uplink(h)
        self._ip(seg, "link", "set", ifname, "down")
        h.rec["link"] = "down"
        self._save()

    def link_up(self, h, timeout=LINKS_READY_S):
        """Puts host h back on the segment and waits until both ends of its uplink are up."""
        seg, ifname = self._uplink(h)
        self._ip(seg, "link", "set", ifname, "up")
        deadline = time.monotonic() + timeout
        for ns, dev in ((seg, ifname), (h.ns, HOST_UPLINK)):
            while True:
                p = _run(["ip", "-n", ns, "-j", "link", "show", "dev", dev], check=False)
                try:
                    state = json.loads(p.stdout)[0].get("operstate") if p.returncode == 0 \
                        else None
                except (ValueError, IndexError):
                    state = None
                if state == "UP":
                    break
                if time.monotonic() >= deadline:
                    raise LabError(f"{ns}/{dev} is {state} {timeout}s after link up")
                time.sleep(0.05)
        h.rec.pop("link", None)
        self._save()

    def partition(self, side):
        """Splits the hosts in two: the hosts of side (LabHosts or names) still reach each
        other and the client, the others likewise, but no host reaches a host of the other
        side. In each host's namespace a blackhole route per management address of the other
        side (its packets are dropped: a new connection fails at once, an open one stalls
        until TCP gives up). The VMs' bridged traffic is not touched. heal_partition() takes
        it back. Returns time.monotonic() taken just before."""
        names = {x if isinstance(x, str) else x.name for x in side}
        hosts = self.hosts
        unknown = names - {h.name for h in hosts}
        if unknown:
            raise LabError(f"lab {self.name}: no host {', '.join(sorted(unknown))}")
        if not names or len(names) == len(hosts):
            raise LabError("a partition needs hosts on both sides")
        if any(h.rec.get("partition") for h in hosts):
            raise LabError("the lab is partitioned already; heal_partition() first")
        t = time.monotonic()
        for h in hosts:
            mine = h.name in names
            h.rec["partition"] = [x.ip for x in hosts if (x.name in names) != mine]
            self._save()
            for ip in h.rec["partition"]:
                self._ip(h.ns, "route", "add", "blackhole", f"{ip}/32")
        return t

    def heal_partition(self):
        """Removes the routes of partition(): every host reaches every other again."""
        for h in self.hosts:
            for ip in h.rec.get("partition", []):
                _run(["ip", "-n", h.ns, "route", "del", "blackhole", f"{ip}/32"], check=False)
            h.rec.pop("partition", None)
        self._save()

    # -- down -----------------------------------------------------------------------------

    def down(self, progress=None):
        """Removes everything the lab made: ferryds (SIGTERM, then SIGKILL), QEMUs whose pid
        files are under the lab's run dirs, anything else still running in the lab's
        namespaces, the namespaces (with their bridges, veths and taps), and DIR. Idempotent:
        parts already gone are skipped. Raises LabError naming what could not be removed
        (lab.json is then kept, so `down` can be run again)."""
        say = progress or (lambda msg: None)
        problems = []
        lab_dir = self.dir

        # 1. ferryds: first, so none reacts to its QEMUs going away.
        ferryds = []
        for h in self.hosts:
            if h.pid and self._is_our_ferryd(h.rec):
                ferryds.append(h.pid)
            elif h.pid and pid_alive(h.pid):
                say(f"{h.name}: pid {h.pid} is no longer our ferryd; not touching it")
        if ferryds:
            say(f"stopping ferryd {' '.join(map(str, ferryds))}")
        for p in ferryds:  # a ferryd frozen by kill_ferryd(SIGSTOP) must run to see SIGTERM
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        left = _stop_pids(ferryds, STOP_GRACE_S)
        for p in list(self._children.values()):
            if p.poll() is None:
                try:
                    p.wait(1)
                except subprocess.TimeoutExpired:
                    pass
        problems += [f"ferryd pid {p} does not die" for p in left]

        # 1b. Emulated watchdogs: after the ferryds, which disarm theirs as they stop.
        wds = [h.rec["watchdog"]["pid"] for h in self.hosts if self._is_our_watchdog(h)]
        if wds:
            say(f"stopping emulated watchdog {' '.join(map(str, wds))}")
        problems += [f"watchdog pid {p} does not die" for p in _stop_pids(wds, 5)]
        for p in self._watchdogs.values():
            p.poll()

        # 2. QEMUs, found by their pid files and checked by their command line.
        qemus = []
        for h in self.hosts:
            try:
                vms = os.listdir(h.run_dir)
            except OSError:
                continue
            for vm in vms:
                try:
                    with open(os.path.join(h.run_dir, vm, "qemu.pid")) as f:
                        pid = int(f.read().strip())
                except (OSError, ValueError):
                    continue
                argv = _cmdline(pid)
                if argv and any(lab_dir + "/" in a for a in argv):
                    qemus.append(pid)
        if qemus:
            say(f"stopping QEMU {' '.join(map(str, qemus))}")
        problems += [f"QEMU pid {p} does not die" for p in _stop_pids(qemus, 5)]

        # 3. Whatever else still runs inside the lab's namespaces (`ferry lab exec` leftovers,
        # probes): it would keep a namespace, and a veth into the segment, alive.
        for ns in self.state.get("namespaces", []):
            pids = _pids_in_netns(ns)
            if pids:
                say(f"{ns}: stopping leftover processes {' '.join(map(str, pids))}")
                problems += [f"pid {p} in {ns} does not die" for p in _stop_pids(pids, 5)]

        # 4. Namespaces: deleting one removes its bridges, veths (and their peers) and taps.
        for ns in reversed(self.state.get("namespaces", [])):
            if not _netns_exists(ns):
                continue
            p = _run(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0 and _netns_exists(ns):
                problems.append(f"ip netns del {ns}: {p.stderr.strip()}")
            else:
                say(f"removed netns {ns}")

        if problems:
            self.state["phase"] = "down-failed"
            try:
                self._save()
            except OSError:
                pass
            raise LabError("lab down: could not remove everything: " + "; ".join(problems) +
                           f"; fix that and run `ferry lab down{self._name_args(self.name, lab_dir)}`"
                           " again")

        # 5. The lab directory (state, run dirs, logs, token, csv) and lab.json with it.
        if os.path.isdir(lab_dir):
            if self.state.get("made_dir", True):
                shutil.rmtree(lab_dir, ignore_errors=True)
            else:
                for entry in os.listdir(lab_dir):
                    p = os.path.join(lab_dir, entry)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        os.unlink(p)
            if os.path.exists(self.path):
                raise LabError(f"lab down: could not remove {lab_dir}")
            say(f"removed {lab_dir}")
        if self.state.get("made_root"):
            try:
                os.rmdir(os.path.dirname(lab_dir))  # only if no other lab lives there
            except OSError:
                pass


def stray_namespaces(name):
    """Namespaces named like lab name's (for a hint when its lab.json is gone)."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return []
    pat = re.compile(rf"^{re.escape(name)}-(seg|client|h[1-9][0-9]*)$")
    return sorted(n for n in names if pat.match(n))


if __name__ == "__main__":
    sys.exit("ferrylab.py is a module; run lab/ferry-lab (or `ferry lab`)")
