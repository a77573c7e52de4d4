# SPDX-License-Identifier: MIT
"""What docs/architecture.md ("A VM's QEMU", "Live migration") promises about one VM's QEMU, on a
3-host lab:

- QMP that breaks while QEMU runs gets the VM killed and marked failed with the reason (the
  test breaks the QMP connection itself: it takes a copy of QEMU's end of it with
  pidfd_getfd(2) and shuts the socket down; QEMU runs on, unmanageable);
- `ferry vm stop --timeout N` falls back to killing QEMU when the guest ignores the ACPI power
  button (the appliance's kernel started with rdinit=/bin/sleep: no init script, no acpid,
  no button driver);
- a destination whose QEMU lacks the VM's machine type refuses the prepare, naming the type
  (host2's ferryd runs a --qemu wrapper whose `-machine help` leaves pc-i440fx-9.0 out): the
  VM keeps running on the source, and migrates to a host that has the type;
- `ferryd --migrate-prealloc off`: the destination's incoming QEMU has no -mem-prealloc (and
  with the default it has); that host also runs `--qemu-user root --qemu-sandbox off`, as a
  release before the unprivileged QEMU did (root, no seccomp, the tap opened by name), and
  VMs migrate both ways between such a QEMU and an unprivileged one;
- QEMU never runs as root: a VM's QEMU runs as a uid of its own (--qemu-uids: a hash of
  the VM's name, the same on every node) with ferry-qemu's groups, no capabilities, under
  QEMU's seccomp sandbox (Seccomp 2 in /proc/PID/status), its run dir its own (0700) inside
  RUN (root's, ferry-qemu's group, 0710), its disk its own (0600); one VM's uid can neither
  open another VM's disk or run dir nor signal its QEMU; a migration keeps the uid; a name
  that would share another VM's uid is refused; ferryd refuses a QEMU user the host does not
  have, saying how to make it."""
import contextlib
import ctypes
import grp
import os
import pwd
import re
import signal
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from labvm import (assert_guest_whole, assert_nothing_on, create_vm, lab_session,  # noqa: E402
                   local_vm, missing, qemus_of, qemus_under, tap_exists, vm_on)
from ferrytest import FERRYD, pid_alive, wait_for  # noqa: E402
from promises import (assert_runs_only_on, events, finish, heal, last_event_id,  # noqa: E402
                      migrate_bg, newest_migration, stop)

NAME = f"pv{os.getpid()}"
SUBNET = "10.74.0.0/24"
MISSING_TYPE = "pc-i440fx-9.0"
SYS_pidfd_getfd = 438

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture(autouse=True)
def healed(lab):
    """Every test starts from a whole lab, also after one that failed half-way."""
    yield
    heal(lab)


# ---- QMP that breaks ----------------------------------------------------------------------

def qmp_connection_fd(pid):
    """The fd of QEMU pid that is its end of a connection on its QMP socket (qmp.sock)."""
    conns = set()
    with open(f"/proc/{pid}/net/unix") as f:  # the sockets of QEMU's network namespace
        for line in f.read().splitlines()[1:]:
            cols = line.split()
            # Num RefCount Protocol Flags Type St Inode Path; St 03 is connected
            if len(cols) >= 8 and cols[7].endswith("/qmp.sock") and cols[5] == "03":
                conns.add(cols[6])
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m and m.group(1) in conns:
            fds.append(int(fd))
    assert len(fds) == 1, f"QEMU {pid}: QMP connections {fds} (sockets {conns})"
    return fds[0]


def break_qmp(pid):
    """Shuts down QEMU pid's end of its QMP connection (a copy of the fd taken with
    pidfd_getfd; the shutdown acts on the socket both share), leaving QEMU running."""
    fd = qmp_connection_fd(pid)
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mine = libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if mine < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {fd})")
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=mine)
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


def test_qmp_that_breaks_while_qemu_runs_fails_the_vm(lab):
    h1 = lab.host(1)
    create_vm(lab, h1, "qb1", 1, memory=128)
    v = local_vm(h1, "qb1")
    pid, taps = v["pid"], v["taps"]
    since = last_event_id(h1)
    break_qmp(pid)
    assert pid_alive(pid), "QEMU must still run when its QMP connection broke"
    wait_for(lambda: local_vm(h1, "qb1")["state"] == "failed", 15, "qb1 to be failed")
    v = local_vm(h1, "qb1")
    print(f"\nqb1's QMP connection shut down: {v['reason']}")
    assert "lost QMP connection" in v["reason"] and v["pid"] == 0, v
    wait_for(lambda: not pid_alive(pid), 10, "qb1's QEMU to be killed")
    assert qemus_of("qb1") == []
    failed = events(h1, "vm.failed", "qb1", since=since)
    assert failed and "lost QMP connection" in failed[-1]["message"], failed
    wait_for(lambda: not any(tap_exists(h1, t) for t in taps), 10, "qb1's tap to be gone")
    h1.cli("vm", "delete", "qb1")


# ---- a guest that ignores the power button ------------------------------------------------

def test_stop_falls_back_to_kill_when_the_guest_ignores_the_power_button(lab):
    h2 = lab.host(2)
    h2.cli("vm", "create", "sb1", "--node", "host2", "--memory", "128", "--appliance",
           "--cmdline", "rdinit=/bin/sleep 100000", "--start")
    pid = local_vm(h2, "sb1")["pid"]
    wait_for(lambda: "Run /bin/sleep as init process" in h2.cli("vm", "console", "sb1").stdout,
             60, "the guest's kernel to start /bin/sleep as init")
    since = last_event_id(h2)
    timeout_s = 3
    t0 = time.monotonic()
    r = h2.cli("vm", "stop", "sb1", "--timeout", str(timeout_s), check=False, timeout=60)
    took = time.monotonic() - t0
    v = local_vm(h2, "sb1")
    print(f"\nsb1 stopped after {took:.1f} s: exit {r.returncode}: {v['state']}: {v['reason']}")
    assert r.returncode == 0, r.stderr
    assert took >= timeout_s, f"stopped after {took:.1f} s, before its {timeout_s} s timeout"
    assert v["state"] == "stopped", v
    assert v["reason"] == "killed: the guest did not power off in time", v
    assert not pid_alive(pid) and qemus_of("sb1") == []
    killed = events(h2, "vm.killed", "sb1", since=since)
    assert killed and "did not power off in time" in killed[-1]["message"], killed
    h2.cli("vm", "delete", "sb1")


# ---- a destination without the machine type -----------------------------------------------

def qemu_without(lab, machine):
    """A --qemu wrapper (in the lab's directory) whose `-machine help` leaves machine out; it
    runs the real QEMU otherwise."""
    path = os.path.join(lab.dir, f"qemu-without-{machine}")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "if [ \"$1\" = -machine ] && [ \"$2\" = help ]; then\n"
                "  qemu-system-x86_64 -machine help | grep -v '^" + re.escape(machine) + " '\n"
                "  exit 0\n"
                "fi\n"
                "exec qemu-system-x86_64 \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def test_destination_without_the_machine_type_refuses_the_prepare(lab):
    h1, h2, h3 = lab.hosts
    wrapper = qemu_without(lab, MISSING_TYPE)
    lab.kill_ferryd(h2, signal.SIGTERM)
    lab.start_ferryd(h2, args=["--qemu", wrapper])
    try:
        lab.wait_cluster()
        ip = create_vm(lab, h1, "mt1", 2, memory=128, extra=("--machine", MISSING_TYPE))
        v = local_vm(h1, "mt1")
        pid, taps = v["pid"], v["taps"]
        assert v["spec"]["machine"] == MISSING_TYPE, v["spec"]
        r = h1.cli("vm", "migrate", "mt1", "--to", "host2", check=False, timeout=120)
        print(f"\nmt1 ({MISSING_TYPE}) to host2: exit {r.returncode}: {r.stderr.strip()}")
        assert r.returncode != 0 and MISSING_TYPE in r.stderr and "host2" in r.stderr, r
        assert "mt1 keeps running on host1" in r.stderr, r.stderr
        assert_runs_only_on(lab, h1, "mt1", ip, pid=pid)
        assert_nothing_on(h2, "mt1", taps)
        rec = wait_for(lambda: newest_migration(h3, "mt1"), 30, "mt1's migration record")
        assert rec["status"] == "failed" and MISSING_TYPE in (rec["error"] or ""), rec
        # A host that has the type takes it, the same machine.
        h1.cli("vm", "migrate", "mt1", "--to", "host3", timeout=120)
        v3 = wait_for(lambda: local_vm(h3, "mt1"), 30, "mt1 on host3")
        with open(f"/proc/{v3['pid']}/cmdline", "rb") as f:
            assert f"{MISSING_TYPE},".encode() in f.read(), "host3 runs another machine type"
        assert_guest_whole(lab, h3, "mt1", ip)
        h3.cli("vm", "delete", "--force", "mt1")
    finally:
        lab.kill_ferryd(h2, signal.SIGTERM)
        lab.start_ferryd(h2, args=[])
        lab.wait_cluster()


# ---- --migrate-prealloc off -----------------------------------------------------------------

def incoming_cmdline(lab, src, dst, name):
    """Migrates name from src to dst and returns the argv of dst's incoming QEMU, read from
    /proc while it waits for the stream."""
    p = migrate_bg(lab, src, dst, name, mib=32)
    try:
        pid = wait_for(lambda: p.poll() is not None or qemus_under(dst, name), 60,
                       f"{dst.name}'s incoming QEMU")
        assert p.poll() is None, f"the migration ended early: {p.communicate()}"
        with open(f"/proc/{pid[0]}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        rc, out, err = finish(p)
        assert rc == 0, (out, err)
    finally:
        stop(p)
    assert "-incoming" in argv, argv
    return argv


def test_migrate_prealloc_off_gives_the_incoming_qemu_no_prealloc(lab):
    h1, h2, h3 = lab.hosts
    with host3_with(lab, ["--migrate-prealloc", "off", "--qemu-user", "root",
                          "--qemu-sandbox", "off"]):
        ip = create_vm(lab, h1, "pa1", 3, memory=128)
        argv = incoming_cmdline(lab, h1, h3, "pa1")
        print(f"\nincoming QEMU on host3 (--migrate-prealloc off): -mem-prealloc "
              f"{'present' if '-mem-prealloc' in argv else 'absent'}")
        assert "-mem-prealloc" not in argv, argv
        assert_guest_whole(lab, h3, "pa1", ip)
        # host3's QEMU as before the hardening: root, no seccomp, its tap opened by name.
        assert argv[0] != "setpriv" and "-sandbox" not in argv, argv
        assert any(a.startswith("tap,id=net0,ifname=") for a in argv), argv
        [pid] = qemus_under(h3, "pa1")
        st = proc_status(pid)
        assert st["Uid"].split()[0] == "0" and st["Seccomp"] == "0", st
        # The default (on), host1 taking it back: preallocated, unprivileged, sandboxed.
        argv = incoming_cmdline(lab, h3, h1, "pa1")
        assert "-mem-prealloc" in argv, argv
        assert_guest_whole(lab, h1, "pa1", ip)
        assert "-sandbox" in argv and any(a.startswith("tap,id=net0,fd=") for a in argv), argv
        [pid] = qemus_under(h1, "pa1")
        assert proc_status(pid)["Uid"].split()[0] == str(vm_uid("pa1"))
        assert vm_on(h2, "pa1")["owner"] == "host1"
        h1.cli("vm", "delete", "--force", "pa1")


@contextlib.contextmanager
def host3_with(lab, args):
    """host3's ferryd restarted with args for the block, and with the defaults after it."""
    h3 = lab.hosts[2]
    lab.kill_ferryd(h3, signal.SIGTERM)
    lab.start_ferryd(h3, args=args)
    try:
        lab.wait_cluster()
        yield h3
    finally:
        lab.kill_ferryd(h3, signal.SIGTERM)
        lab.start_ferryd(h3, args=[])
        lab.wait_cluster()


# ---- QEMU never runs as root ---------------------------------------------------------------

def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


UIDS_FIRST, UIDS_LAST = 1879048192, 2013265919  # ferryd's default --qemu-uids


def vm_uid(name):
    """The uid ferryd's default --qemu-uids gives name's QEMU: FNV-1a 64 of the name, mod the
    range (docs/architecture.md): written out here so that a change of it fails a test, as it
    would change every VM's uid across a rolling upgrade."""
    h = 14695981039346656037
    for c in name.encode():
        h = ((h ^ c) * 1099511628211) % 2**64
    return UIDS_FIRST + h % (UIDS_LAST - UIDS_FIRST + 1)


def as_uid(uid, groups, *argv):
    """argv run as uid (and gid uid) with groups (a /proc status Groups value), as an escaped
    QEMU of that uid would be."""
    import subprocess
    g = ",".join(groups.split())
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                           f"--groups={g}" if g else "--clear-groups", "--", *argv],
                          capture_output=True, text=True, timeout=30)


def test_qemu_runs_unprivileged_and_sandboxed(lab):
    h1, h2 = lab.hosts[0], lab.hosts[1]
    tmpl = pwd.getpwnam("ferry-qemu")
    create_vm(lab, h1, "sb1", 5, memory=128)
    create_vm(lab, h1, "sb2", 6, memory=128)
    [pid] = qemus_under(h1, "sb1")
    [pid2] = qemus_under(h1, "sb2")
    st = proc_status(pid)
    uid, uid2 = vm_uid("sb1"), vm_uid("sb2")
    print(f"\nQEMU {pid}: Uid {st['Uid']} Gid {st['Gid']} Groups {st['Groups']!r} "
          f"CapEff {st['CapEff']} CapBnd {st['CapBnd']} NoNewPrivs {st['NoNewPrivs']} "
          f"Seccomp {st['Seccomp']}; sb2's QEMU {pid2}: Uid {proc_status(pid2)['Uid']}")
    assert uid != uid2 and UIDS_FIRST <= min(uid, uid2) and max(uid, uid2) <= UIDS_LAST
    # real, effective, saved and filesystem ids, each VM its own: no way back to root
    assert st["Uid"].split() == [str(uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(uid)] * 4, st["Gid"]
    assert proc_status(pid2)["Uid"].split() == [str(uid2)] * 4
    # ferry-qemu's groups (its own passes RUN), never root's
    assert str(tmpl.pw_gid) in st["Groups"].split() and "0" not in st["Groups"].split(), st
    # No capability at all: no CAP_DAC_OVERRIDE to open root's files, none to regain.
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[k], 16) == 0, f"{k} {st[k]}"
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2", "QEMU's -sandbox filter is not in force"
    with open(f"/proc/{pid}/cmdline") as f:
        argv = f.read().split("\0")
    assert argv[argv.index("-sandbox") + 1] == \
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    assert any(a.startswith("tap,id=net0,fd=") for a in argv), argv  # handed over by ferryd

    run = os.stat(h1.run_dir)
    assert (run.st_uid, grp.getgrgid(run.st_gid).gr_name, oct(run.st_mode & 0o7777)) == \
        (0, "ferry-qemu", "0o710")
    for name, u in (("sb1", uid), ("sb2", uid2)):
        vmrun = os.stat(os.path.join(h1.run_dir, name))
        assert (vmrun.st_uid, oct(vmrun.st_mode & 0o7777)) == (u, "0o700")
        for f in ("qmp.sock", "qemu.pid"):  # made by QEMU itself, as its user
            assert os.stat(os.path.join(h1.run_dir, name, f)).st_uid == u, f
        disk = os.stat(f"{lab.csv}/{name}.vhd")
        assert (disk.st_uid, disk.st_gid, oct(disk.st_mode & 0o777)) == (u, u, "0o600")
    log = os.stat(os.path.join(h1.run_dir, "sb1", "qemu.log"))  # ferryd's
    assert (log.st_uid, oct(log.st_mode & 0o777)) == (0, "0o600")

    # What an escaped sb1 QEMU (its uid) can do to sb2: nothing. Its own files it can open.
    own = as_uid(uid, st["Groups"], "head", "-c", "512", f"{lab.csv}/sb1.vhd")
    assert own.returncode == 0, own.stderr
    for argv in (["head", "-c", "512", f"{lab.csv}/sb2.vhd"],
                 ["ls", os.path.join(h1.run_dir, "sb2")],
                 ["kill", "-0", str(pid2)]):
        r = as_uid(uid, st["Groups"], *argv)
        print(f"as sb1's uid: {' '.join(argv)}: rc {r.returncode} {r.stderr.strip()}")
        assert r.returncode != 0 and ("denied" in r.stderr or "not permitted" in r.stderr), r
    # ptrace-family access to sb2's memory, as process_vm_readv would need
    r = as_uid(uid, st["Groups"], "head", "-c", "1", f"/proc/{pid2}/mem")
    assert r.returncode != 0, r

    # It works as before: the console (QEMU's socket, ferryd's ring).
    wait_for(lambda: "Linux version" in h1.cli("vm", "console", "sb1").stdout, 30, "console output")
    # A migration keeps the uid: host2's QEMU is sb1's uid, the disk's owner does not change.
    h1.cli("vm", "migrate", "sb1", "--to", h2.name)
    [pid] = qemus_under(h2, "sb1")
    assert proc_status(pid)["Uid"].split() == [str(uid)] * 4
    assert os.stat(f"{lab.csv}/sb1.vhd").st_uid == uid
    assert_guest_whole(lab, h2, "sb1", lab.guest_ip(5))
    for name in ("sb1", "sb2"):
        h1.cli("vm", "delete", "--force", name)


def test_a_qemu_of_another_uid_is_adopted_as_it_runs(lab):
    """A QEMU started under --qemu-uids shared (as every VM's QEMU ran before per-VM uids) is
    adopted by a ferryd with per-VM uids: it keeps running as it is, stays managed (console,
    migration: its outgoing key is given to the uid it runs as), and the next QEMU of the VM
    (the migration's destination) runs as the VM's own uid."""
    h1, h2, h3 = lab.hosts
    tmpl = pwd.getpwnam("ferry-qemu").pw_uid
    with host3_with(lab, ["--qemu-uids", "shared"]):
        ip = create_vm(lab, h3, "ad1", 7, memory=128)
        [pid] = qemus_under(h3, "ad1")
        assert proc_status(pid)["Uid"].split()[0] == str(tmpl)
        lab.kill_ferryd(h3, signal.SIGTERM)
        lab.start_ferryd(h3, args=[])
        lab.wait_cluster()
        wait_for(lambda: (vm_on(h3, "ad1") or {}).get("state") == "running", 60,
                 "ad1 running again after host3's ferryd restart")
        assert qemus_under(h3, "ad1") == [pid]
        wait_for(lambda: "Linux version" in h3.cli("vm", "console", "ad1").stdout, 30,
                 "ad1's console")
        h3.cli("vm", "migrate", "ad1", "--to", h1.name)
        [pid] = qemus_under(h1, "ad1")
        assert proc_status(pid)["Uid"].split()[0] == str(vm_uid("ad1"))
        assert_guest_whole(lab, h1, "ad1", ip)
        h1.cli("vm", "delete", "--force", "ad1")


def test_two_qemus_of_one_uid_never_run_on_a_node(lab):
    """Two VMs made under --qemu-uids shared (no clash to refuse then), and host3's ferryd
    restarted with a range of one uid, to which every name maps: the first VM runs (its QEMU
    adopted as it runs), the second's start is refused, naming the first, and nothing of it
    runs. The start check is what stands when two clashing names were made at once on two
    nodes."""
    h3 = lab.hosts[2]
    with host3_with(lab, ["--qemu-uids", "shared"]):
        for name in ("cl1", "cl2"):
            h3.cli("vm", "create", name, "--node", h3.name, "--memory", "64", "--appliance",
                   "--disk", f"{lab.csv}/{name}.vhd,size=8")
    with host3_with(lab, ["--qemu-uids", "70000-70000"]):
        try:
            h3.cli("vm", "start", "cl1")
            [pid] = qemus_under(h3, "cl1")
            assert proc_status(pid)["Uid"].split()[0] == "70000"
            r = h3.cli("vm", "start", "cl2", check=False)
            print(f"\n{r.stderr.strip()}")
            assert r.returncode != 0 and \
                "cl2 would run its QEMU as uid 70000, as VM cl1 does" in r.stderr, r.stderr
            assert qemus_under(h3, "cl2") == [] and local_vm(h3, "cl2")["state"] == "stopped"
        finally:
            for name in ("cl1", "cl2"):
                h3.cli("vm", "delete", "--force", name, check=False)


def test_a_name_that_shares_another_vms_uid_is_refused(lab):
    """uc95189 and uc135472 hash to one uid (1998277213) in the default range. The second is
    refused wherever it is asked for, before anything is made."""
    h1, h2 = lab.hosts[0], lab.hosts[1]
    assert vm_uid("uc95189") == vm_uid("uc135472") == 1998277213
    h1.cli("vm", "create", "uc95189", "--node", h1.name, "--memory", "64", "--appliance",
           "--disk", f"{lab.csv}/uc95189.vhd,size=8")
    try:
        r = h2.cli("vm", "create", "uc135472", "--node", h2.name, "--memory", "64",
                   "--appliance", "--disk", f"{lab.csv}/uc135472.vhd,size=8", check=False)
        print(f"\n{r.stderr.strip()}")
        assert r.returncode != 0
        assert "uc135472 would run its QEMU as uid 1998277213, as VM uc95189 does" in r.stderr
        assert "choose another name" in r.stderr
        assert vm_on(h1, "uc135472") is None and not os.path.exists(f"{lab.csv}/uc135472.vhd")
    finally:
        h1.cli("vm", "delete", "--force", "uc95189")


def test_ferryd_refuses_a_qemu_user_the_host_lacks(tmp_path):
    import subprocess
    r = subprocess.run([FERRYD, "--state-dir", str(tmp_path / "state"), "--run-dir",
                        str(tmp_path / "run"), "--socket", str(tmp_path / "s.sock"),
                        "--accel", "tcg", "--qemu-user", "no-such-user-ferry"],
                       capture_output=True, text=True, timeout=30)
    print(r.stderr.strip().splitlines()[-1])
    assert r.returncode != 0
    assert 'no user "no-such-user-ferry"' in r.stderr and "adduser --system" in r.stderr
    r = subprocess.run([FERRYD, "--qemu-sandbox", "maybe"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "qemu_sandbox: expected on or off" in r.stderr
