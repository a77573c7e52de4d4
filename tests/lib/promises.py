# SPDX-License-Identifier: MIT
"""Helpers of the promise tests (tests/e2e/test_promises_*.py): a migration run in the
background, what each host's ferryd says about a VM and its QEMU, which QEMUs run a guest,
event logs and migration records."""
import os
import signal
import subprocess
import time

from labvm import local_vm, qemus_of, qemus_under, wait_answering
from ferrytest import pid_alive, wait_for

# A source QEMU in one of these migration states has handed its vCPUs over (post-copy) or
# stopped them for the switchover: it does not run the guest (QEMU's MigrationStatus).
NOT_RUNNING_MIGRATION = ("postcopy-active", "postcopy-paused", "postcopy-recover",
                         "postcopy-recover-setup", "device", "pre-switchover", "completed")


def migrate_bg(lab, src, dst, name, mib=None, pc_mib=None):
    """`ferry vm migrate NAME --to DST` on src, in the background and in a process group of
    its own (the CLI runs the request in a child; stop ends both); the caller ends it with
    finish. mib caps the bandwidth (MiB/s), pc_mib post-copy's."""
    argv = [lab.bins["ferry"], "--socket", src.sock, "vm", "migrate", name, "--to", dst.name]
    if mib:
        argv += ["--bandwidth-mib", str(mib)]
    if pc_mib:
        argv += ["--postcopy-bandwidth-mib", str(pc_mib)]
    return subprocess.Popen(argv, env=lab.env(src), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _streaming(src, name):
    st, b = src.api("GET", f"/v1/vms/{name}/migration")
    return st == 200 and (b.get("memory") or {}).get("transferred", 0) > 0


def wait_incoming(p, dst, name, timeout=60, src=None):
    """Waits until dst holds name's incoming QEMU while the migration p still runs, and, with
    src, until src's QEMU is sending (its ferryd gave QEMU the `migrate`: from then on the
    QEMUs go on without the ferryds; before it, a killed source ferryd leaves the destination
    waiting, which a loaded machine made tests meet). Kills p and raises when it does not
    come to that."""
    try:
        wait_for(lambda: p.poll() is not None or
                 (lambda v: v and v["state"] == "incoming")(local_vm(dst, name)), timeout,
                 f"{name} to be incoming on {dst.name}")
        if src is not None:
            wait_for(lambda: p.poll() is not None or _streaming(src, name), timeout,
                     f"{src.name}'s QEMU to send {name}")
        assert p.poll() is None, f"the migration ended early: {p.communicate()}"
    except BaseException:
        stop(p)
        raise


def _group_members(pgid, prog):
    """Live pids of process group pgid whose program is prog."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid and argv0 == prog:
            out.append(int(d))
    return out


def stop(p):
    """Ends the background migration CLI p and its child (the ferry processes of its own
    process group)."""
    for pid in _group_members(p.pid, p.args[0]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if p.poll() is None:
        p.wait()


def finish(p, timeout=120):
    """(exit code, stdout, stderr) of the background migration p; killed after timeout."""
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        stop(p)
    return p.returncode, out, err


def progress(host, name):
    """The source's view of name's migration (GET /v1/vms/NAME/migration), {} when none runs
    or host's ferryd does not answer."""
    try:
        st, body = host.api("GET", f"/v1/vms/{name}/migration", timeout=5)
    except Exception:  # noqa: BLE001 - a ferryd that is down or starting knows nothing
        return {}
    return body if st == 200 and body else {}


def newest_migration(viewer, name):
    """The VM's newest migration record, or None."""
    recs = viewer.cli_json("vm", "migrations", name)["migrations"]
    return recs[0] if recs else None


def events(host, type=None, vm=None, since=0):
    """host's event log (GET /v1/events) after event id since, oldest first, of the given
    type and VM if given."""
    out, last = [], since
    while True:
        st, body = host.api("GET", f"/v1/events?since={last}&limit=1000")
        assert st == 200, (st, body)
        page = body["events"]
        out += [e for e in page
                if (type is None or e["type"] == type) and (vm is None or e.get("vm") == vm)]
        if len(page) < 1000:
            return out
        last = page[-1]["id"]


def last_event_id(host):
    evs = events(host)
    return evs[-1]["id"] if evs else 0


def runs_guest(host, name, pid):
    """Whether QEMU pid on host runs name's guest, as host's ferryd says: the VM is running
    there in that QEMU and, when a migration leaves from there, QEMU has not handed the vCPUs
    over (NOT_RUNNING_MIGRATION). An incoming QEMU is not running until the migration
    completed. None when host's ferryd does not answer (it cannot be decided)."""
    if not host.ferryd_alive():
        return None
    try:
        st, v = host.api("GET", f"/v1/vms/{name}", timeout=5)
    except Exception:  # noqa: BLE001 - starting or stopping: cannot be decided
        return None
    if st != 200 or not v or v.get("owner") != host.name or v.get("pid") != pid:
        return None if st != 200 else False
    if v["state"] != "running":
        return False
    return progress(host, name).get("status") not in NOT_RUNNING_MIGRATION


def sample_runners(lab, name):
    """One sample: {pid: (host name, runs_guest)} for every live QEMU of name."""
    out = {}
    for h in lab.hosts:
        for pid in qemus_under(h, name):
            out[pid] = (h.name, runs_guest(h, name, pid))
    for pid in qemus_of(name):
        out.setdefault(pid, ("?", None))
    return out


def assert_runs_only_on(lab, host, name, ip, pid=None):
    """name runs on host, in one QEMU (pid if given) and nowhere else, answering probes."""
    v = wait_for(lambda: (lambda v: v if v and v["state"] == "running" else None)(
        local_vm(host, name)), 30, f"{name} to run on {host.name}")
    if pid is not None:
        assert v["pid"] == pid, f"{name} runs in QEMU {v['pid']}, not {pid} as before"
    wait_for(lambda: qemus_of(name) == [v["pid"]], 30,
             f"{name} to run in its one QEMU {v['pid']} on {host.name} only")
    show = host.cli_json("vm", "show", name)
    assert show["state"] == "running" and show["owner"] == host.name, show
    wait_answering(lab, ip)
    return v


def sleeper():
    """A process of ours that is no QEMU (for a recycled pid): `sleep 600`."""
    p = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    wait_for(lambda: pid_alive(p.pid), 5, "sleep to run")
    return p


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z...), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def write_file(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def monotonic_ms(t0):
    return round((time.monotonic() - t0) * 1000)


def heal(lab):
    """Undoes the faults a test may have left when it failed half-way, so the next test of
    the module starts from a whole lab: frozen ferryds thawed, cut links back, dead ferryds
    started, the cluster formed."""
    for h in lab.hosts:
        if h.rec.get("stopped") and h.ferryd_alive():
            lab.kill_ferryd(h, signal.SIGCONT)
        if h.rec.get("link") == "down":
            lab.link_up(h)
        if not h.ferryd_alive():
            lab.start_ferryd(h)
    lab.wait_cluster()
