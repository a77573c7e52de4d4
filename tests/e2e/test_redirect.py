# SPDX-License-Identifier: MIT
"""Redirected I/O (src/fleet/redirect.c, docs/architecture.md "Redirected I/O") on a 3-host lab:
a dynamic VHD on a cluster shared volume is opened only by the volume's coordinator (its
qemu-storage-daemon) and reached by the VM's QEMU over NBD through a relay on the VM's host,
so the VM live-migrates (QEMU's vpc driver would block that); when the coordinator dies or
moves, or its storage daemon dies, the guests' I/O pauses and resumes with no error and no
acknowledged write lost (the recorder's acks, checked against the disk afterwards)."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import (assert_guest_whole, create_vm, lab_session, local_vm, missing,  # noqa: E402
                   shared_volume, vm_on, wait_answering)
from ferrytest import FERRYD, wait_for  # noqa: E402
from promises import events  # noqa: E402

NAME = f"rd{os.getpid()}"
SUBNET = "10.113.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def small():
    """A 40 MiB tmpfs mounted before the lab's ferryds start (each runs in a mount namespace
    of its own, copied from this one when it starts): a volume that fills up."""
    d = f"/run/ferry-small-{os.getpid()}"
    os.makedirs(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40M,mode=0700", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


@pytest.fixture(scope="module")
def lab(small):
    yield from lab_session(NAME, SUBNET)


@pytest.fixture
def csv1(lab):
    # torn down through host2, up in every test (one restarts host1)
    yield from shared_volume(lab, via=1)


def dynamic_disk(lab, h, name):
    path = os.path.join(lab.csv, f"{name}.vhd")
    h.cli("disk", "create", path, "--size", "64M", "--type", "dynamic")
    return path


def open_files(pid, suffix=".vhd"):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.endswith(suffix):
            out.add(t)
    return out


def daemon_pid(h, volume="csv1"):
    """The pid of host h's storage daemon for volume, or None."""
    try:
        with open(os.path.join(h.run_dir, ".csvd", volume, "qsd.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    return pid if argv and argv[0].endswith(b"qemu-storage-daemon") else None


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def assert_runs_as_qemu_user(pid):
    """pid, a storage daemon, runs as ferry-qemu (real, effective, saved and filesystem ids)
    with no capability and no way to gain one: it parses other hosts' NBD traffic."""
    user = pwd.getpwnam("ferry-qemu")
    st = proc_status(pid)
    print(f"storage daemon {pid}: Uid {st['Uid']} Gid {st['Gid']} CapEff {st['CapEff']} "
          f"CapPrm {st['CapPrm']} CapBnd {st['CapBnd']} NoNewPrivs {st['NoNewPrivs']}")
    assert st["Uid"].split() == [str(user.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(user.pw_gid)] * 4, st["Gid"]
    assert "0" not in st["Groups"].split(), st["Groups"]
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[k], 16) == 0, f"{k} {st[k]}"
    assert st["NoNewPrivs"] == "1"


def stale_daemon(h, volume="csv1"):
    """A storage daemon as a previous ferryd of host h would have left it (one whose
    parent-death signal was lost), in its directory, as QEMU's user: the Popen. RUN/.csvd is
    made 0711 root's, not as ferryd makes it."""
    csvd = os.path.join(h.run_dir, ".csvd")
    d = os.path.join(csvd, volume)
    os.makedirs(d, exist_ok=True)
    os.chmod(csvd, 0o711)
    shutil.chown(d, "ferry-qemu", "ferry-qemu")
    p = subprocess.Popen(["setpriv", "--reuid=ferry-qemu", "--regid=ferry-qemu", "--init-groups",
                          "qemu-storage-daemon", "--chardev",
                          f"socket,id=ferry-qmp,path={d}/qmp.sock,server=on,wait=off",
                          "--monitor", "chardev=ferry-qmp", "--pidfile", f"{d}/qsd.pid"],
                         start_new_session=True)
    wait_for(lambda: daemon_pid(h, volume) == p.pid, 10, "the stale daemon's pid file")
    return p


def owner_mode(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)


def start_recorder(lab, ip):
    return lab.client_popen(["ferry-probe", "recorder", ip, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_recorder(rec):
    assert rec.poll() is None, f"the recorder ended: {rec.communicate()}"
    rec.send_signal(signal.SIGINT)
    out, err = rec.communicate(timeout=60)
    res = json.loads(out.strip().splitlines()[-1])
    print(f"recorder: {res}")
    assert res["acked_count"] > 0 and res["out_of_order"] == 0, res
    assert not res["connection_lost"] and res["error"] is None, res
    assert res["acked_max"] == res["first_acked"] + res["acked_count"] - 1, res
    return res


def verify_acked(lab, h, name, path, res, tmp_path):
    """VM name stopped; every record the recorder saw acknowledged is in its dynamic VHD."""
    h.cli("vm", "stop", name, "--timeout", "60")
    # The coordinator closes an export no running VM uses (after 10 s unasked): the file is
    # free for qemu-img then.
    coord = next(x for x in lab.hosts
                 if x.name == h.cli_json("csv", "show", "csv1")["coordinator"])
    wait_for(lambda: path not in open_files(daemon_pid(coord) or os.getpid()), 30,
             f"{coord.name}'s storage daemon to close {path}")
    raw = str(tmp_path / f"{name}.raw")
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", path, raw], check=True)
    v = json.loads(lab.client_exec(["ferry-probe", "verify-disk", raw, "--acked",
                                    str(res["acked_max"]), "--json"], check=False).stdout)
    print(f"verify-disk: {v}")
    assert v["acked_ok"] and v["first_bad"] is None and v["max_seq"] >= res["acked_max"], v
    os.unlink(raw)


def test_a_dynamic_vhd_on_a_volume_is_redirected_and_live_migrates(lab, csv1, tmp_path):
    """The VM's QEMU does not open the VHD: the coordinator's storage daemon does; the VM
    migrates host2 -> host3 -> host1 (onto the coordinator itself) while the recorder writes,
    the guest stays whole, and every acknowledged record is in the file."""
    h1, h2, h3 = lab.hosts
    path = os.path.join(csv1, "rdv1.vhd")
    stale = stale_daemon(h1)
    try:
        # Made by `vm create` on the volume: a dynamic VHD (type=dynamic) of 64 MiB.
        ip = create_vm(lab, h2, "rdv1", 3, workload="probe,recorder", memory=128,
                       disk="csv:csv1/rdv1.vhd,type=dynamic")
        # host1's daemon started for it and ended the stale one first (its file locks)
        assert stale.wait(10) == -signal.SIGKILL
        assert f"ending the storage daemon pid {stale.pid} a previous ferryd left" in \
            h1.log_tail(100000)
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()
    info = h2.cli_json("disk", "info", path)
    assert info.get("subformat") == "dynamic" and info["virtual_size"] >= 64 << 20, info
    # made by the volume's coordinator (host1), not by the VM's owner
    assert [e for e in events(h1, type="disk.created") if e["message"].startswith(path + ":")]
    assert not [e for e in events(h2, type="disk.created") if path in e["message"]]
    pid = local_vm(h2, "rdv1")["pid"]
    assert open_files(pid) == set(), "the VM's QEMU must not open the VHD itself"
    qsd = daemon_pid(h1)
    assert qsd and open_files(qsd) == {path}, (qsd, qsd and open_files(qsd))
    assert daemon_pid(h2) is None and daemon_pid(h3) is None
    # Not as root: as QEMU's user, whose files are its directory (RUN/.csvd/VOLUME, passable
    # through RUN/.csvd like RUN) and the VHD; its log is ferryd's.
    assert_runs_as_qemu_user(qsd)
    user = pwd.getpwnam("ferry-qemu")
    csvd = os.path.join(h1.run_dir, ".csvd")
    assert owner_mode(csvd) == (0, user.pw_gid, "0o710")
    assert owner_mode(os.path.join(csvd, "csv1"))[::2] == (user.pw_uid, "0o700")
    for f in ("qmp.sock", "qsd.pid"):  # made by the daemon itself
        assert os.stat(os.path.join(csvd, "csv1", f)).st_uid == user.pw_uid, f
    assert owner_mode(os.path.join(csvd, "csv1", "qsd.log"))[::2] == (0, "0o600")
    assert owner_mode(path) == (user.pw_uid, user.pw_gid, "0o600")
    rows = {r["node"]: r for r in h3.cli_json("csv", "show", "csv1")["nodes"]}
    epoch = vm_on(h3, "rdv1")["writer_epoch"]
    assert epoch >= 1
    # exported under the VM's writer epoch: a QEMU of an older start asks for another name
    assert [(x["name"], x["pid"]) for x in rows["host1"]["exports"]] == \
        [(f"rdv1.vhd@rdv1.{epoch}", qsd)], rows
    assert [(x["vm"], x["connected"]) for x in rows["host2"]["relays"]] == [("rdv1", 1)], rows
    assert h3.cli("csv", "show", "csv1").stdout.count("1 disk (pid") == 1
    rec = start_recorder(lab, ip)
    try:
        time.sleep(2)
        for src, dst in ((h2, "host3"), (h3, "host1")):
            src.cli("vm", "migrate", "rdv1", "--to", dst)
            assert_guest_whole(lab, h1, "rdv1", ip)
            time.sleep(2)
        assert vm_on(h1, "rdv1")["owner"] == "host1"
        assert open_files(local_vm(h1, "rdv1")["pid"]) == set()
        res = stop_recorder(rec)
        assert res["longest_gap_ms"] < 2000, res
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.wait()
    verify_acked(lab, h1, "rdv1", path, res, tmp_path)


def another_coordinator(lab, writers, epoch, t0):
    """After host1, csv1's coordinator, was lost at t0 (time.monotonic()): host2 or host3
    takes the volume at the next coordinator epoch and runs its storage daemon, and 5 s later
    every recorder of writers still runs. Returns the new coordinator's host and the seconds
    from t0 to the new coordinator."""
    h2 = lab.hosts[1]
    wait_for(lambda: coordinator(h2) in ("host2", "host3"), 40, "another coordinator")
    took = time.monotonic() - t0
    show = h2.cli_json("csv", "show", "csv1")
    assert show["epoch"] == epoch + 1, show
    new = next(x for x in lab.hosts if x.name == show["coordinator"])
    wait_for(lambda: daemon_pid(new) is not None, 20, f"{new.name}'s storage daemon")
    time.sleep(5)
    for name, h, ip, path, rec in writers:
        assert rec.poll() is None, f"{name}'s recorder ended: {rec.communicate()}"
    return new, took


def every_node_up(lab):
    """Every node sees every node up again (the leader would move a volume off a node it
    still counts down), and reaches every other's API: the cluster's heartbeats may come back
    a moment before a node's own requests to a peer do (CI saw host1's `csv add` fail to
    connect to host2 right after host1's link came back)."""
    for h in lab.hosts:
        wait_for(lambda: all(n["state"] == "up" for n in h.cli_json("node", "list")["nodes"]),
                 30, f"{h.name} to see every node up")

    def reaches_all(h):
        st, b = h.api("GET", "/v1/events?scope=cluster&limit=1")
        return st == 200 and len(b.get("nodes", {})) == len(lab.hosts) and \
            all(v == "ok" for v in b["nodes"].values())
    for h in lab.hosts:
        wait_for(lambda: reaches_all(h), 30, f"{h.name} to reach every node's API")


def coordinator(h, volume="csv1"):
    return h.cli_json("csv", "show", volume)["coordinator"]


def two_writers(lab, csv1, names):
    """VMs names[0] on host2 and names[1] on host3 on dynamic VHDs of csv1, recorders
    running; returns [(name, host, ip, path, recorder)]."""
    out = []
    for k, (name, h) in enumerate(zip(names, lab.hosts[1:])):
        path = dynamic_disk(lab, h, name)
        ip = create_vm(lab, h, name, 10 + k, workload="probe,recorder", memory=128, disk=path)
        out.append((name, h, ip, path, start_recorder(lab, ip)))
    time.sleep(2)
    return out


def finish_writers(lab, writers, tmp_path):
    """Stops every recorder (none may have lost its connection or an ack) and checks every
    acknowledged record on its disk; returns each recorder's longest gap in ms."""
    gaps = {}
    try:
        results = [(name, h, path, stop_recorder(rec)) for name, h, _, path, rec in writers]
    finally:
        for *_, rec in writers:
            if rec.poll() is None:
                rec.kill()
                rec.wait()
    for name, h, path, res in results:
        gaps[name] = res["longest_gap_ms"]
        owner = next(x for x in lab.hosts if x.name == vm_on(h, name)["owner"])
        verify_acked(lab, owner, name, path, res, tmp_path)
    return gaps


def test_the_coordinators_host_dies_and_the_guests_pause_and_resume(lab, csv1, tmp_path):
    """host1 coordinates csv1 and dies (its ferryd killed; its storage daemon dies with it) while VMs on
    host2 and host3 write to redirected disks: once host1's lease on the volume is stale,
    another node takes the volume (a new epoch), its storage daemon serves the disks, and
    the guests' writes go on: no I/O error, no lost connection, every acked record on disk.
    The pause is printed (the recorders' longest gap)."""
    h1, h2, h3 = lab.hosts
    assert coordinator(h2) == "host1"
    writers = two_writers(lab, csv1, ["rdk1", "rdk2"])
    epoch = h2.cli_json("csv", "show", "csv1")["epoch"]
    qsd = daemon_pid(h1)
    assert qsd
    # Unprivileged: its parent-death signal was set after the drop (a change of uid clears it)
    assert_runs_as_qemu_user(qsd)
    try:
        t0 = lab.kill_ferryd(h1)
        # The storage daemon dies with its ferryd (no daemon of a dead coordinator may
        # hold the files when another node takes the volume).
        wait_for(lambda: daemon_pid(h1) is None, 5, "host1's storage daemon to die with ferryd")
        # Meanwhile a disk of the volume cannot be made (only its coordinator makes them):
        # refused at once, saying who does not answer and what to do, and nothing is made.
        t1 = time.monotonic()
        r = h2.cli("disk", "create", "csv:csv1/unreach.vhd", "--size", "16M", check=False)
        assert r.returncode != 0, r.stdout
        assert "volume csv1's coordinator host1 does not answer" in r.stderr, r.stderr
        assert "try again in a few seconds" in r.stderr, r.stderr
        assert time.monotonic() - t1 < 10, "a refusal that waited for a dead node"
        assert not os.path.exists(os.path.join(csv1, "unreach.vhd"))
        new, took = another_coordinator(lab, writers, epoch, t0)
        for name, h, ip, path, rec in writers:
            assert_guest_whole(lab, h, name, ip)
        gaps = finish_writers(lab, writers, tmp_path)
        print(f"coordinator host1 killed: {new.name} took csv1 after {took:.1f} s; the guests' "
              f"longest write pauses: {gaps} ms")
        for name, gap in gaps.items():
            assert gap < 60000, (name, gap)
        # The audit (on the volume, written by host1 and then by the new coordinator): each
        # disk had one writer, served first under the old coordinator epoch, then the new.
        audit = h2.cli_json("csv", "audit", "csv1")
        assert audit["writers_ok"], audit["violations"]
        for name, *_ in writers:
            opens = [(r["coordinator"], r["coord_epoch"]) for r in audit["records"]
                     if r.get("vm") == name and r["op"] == "open"]
            assert opens[0] == ("host1", epoch) and opens[-1] == (new.name, epoch + 1), opens
    finally:
        lab.start_ferryd(h1)
        every_node_up(lab)


def test_the_coordinators_host_cut_off_ends_its_storage_daemon_and_another_takes_over(
        lab, csv1, tmp_path):
    """host1 coordinates csv1 and is cut off the network (its ferryd lives on): without
    quorum it fences itself after --fence-after-ms, and its storage daemon ends with the
    fence, so its locks on the VHDs go too; once its lease is stale another node takes the
    volume and serves the disks of the VMs on host2 and host3, whose writes go on (found by
    bench/chaos: the cut-off coordinator's daemon kept the VHD's write lock, and the new
    coordinator could not open it)."""
    h1, h2, h3 = lab.hosts
    assert coordinator(h2) == "host1"
    writers = two_writers(lab, csv1, ["rdc1", "rdc2"])
    epoch = h2.cli_json("csv", "show", "csv1")["epoch"]
    assert daemon_pid(h1)
    try:
        t0 = time.monotonic()
        lab.link_down(h1)
        wait_for(lambda: daemon_pid(h1) is None, 20, "host1's storage daemon to end with its fence")
        assert lab._is_our_ferryd(h1.rec), "host1's ferryd died"
        new, took = another_coordinator(lab, writers, epoch, t0)
        gaps = finish_writers(lab, writers, tmp_path)
        print(f"coordinator host1 cut off: {new.name} took csv1 after {took:.1f} s; the guests' "
              f"longest write pauses: {gaps} ms")
        audit = h2.cli_json("csv", "audit", "csv1")
        assert audit["writers_ok"], audit["violations"]
    finally:
        lab.link_up(h1)
        t1 = time.monotonic()
        every_node_up(lab)
        # The next tests write through host1. Its own node list may be the stale one of the
        # cut, so wait for its quorum too: back within a second or two of the link (ferry's
        # raft transport gives up connections the cut left hanging; libraft's own kept them
        # waiting on TCP's backoff, 13-15 s here).
        wait_for(lambda: h1.cli_json("cluster", "status").get("quorum"), 10,
                 "host1 to have the quorum again")
        print(f"host1 back: every node up and its quorum {time.monotonic() - t1:.1f} s after its "
              "link")


def test_a_start_takes_a_new_writer_epoch_and_an_older_qemu_is_refused(lab, csv1):
    """Each start of a VM with a disk on a shared volume raises its writer epoch in the
    database, and the coordinator exports the disk under that epoch only: a client of the
    older epoch (qemu-img on host3 asking for the old export, as a QEMU left behind on a
    cut-off host would on reconnecting) is refused, the current one is served, and the
    volume's audit shows one writer after the other, never two."""
    h1, h2, h3 = lab.hosts
    ip = create_vm(lab, h2, "rde1", 20, memory=128, disk="csv:csv1/rde1.vhd,type=dynamic")

    def exports():
        rows = {r["node"]: r for r in h3.cli_json("csv", "show", "csv1")["nodes"]}
        return rows["host1"]["exports"]

    e1 = vm_on(h3, "rde1")["writer_epoch"]
    assert e1 >= 1
    assert "writer epoch" in h2.cli("vm", "show", "rde1").stdout
    port = exports()[0]["port"]
    h2.cli("vm", "stop", "rde1", "--timeout", "60")
    h2.cli("vm", "start", "rde1")
    wait_answering(lab, ip)
    e2 = vm_on(h3, "rde1")["writer_epoch"]
    assert e2 == e1 + 1
    assert [x["name"] for x in exports()] == [f"rde1.vhd@rde1.{e2}"]

    def nbd_info(epoch):
        return h3.exec(["qemu-img", "info", "--output=json", "--image-opts",
                        f"driver=nbd,server.type=inet,server.host={h1.ip},server.port={port},"
                        f"export=rde1.vhd@rde1.{epoch}"], check=False)

    old = nbd_info(e1)
    assert old.returncode != 0 and "export" in old.stderr.lower(), (old.stdout, old.stderr)
    cur = nbd_info(e2)
    assert cur.returncode == 0 and json.loads(cur.stdout)["virtual-size"] >= 64 << 20, cur.stderr
    audit = h3.cli_json("csv", "audit", "csv1")
    assert audit["writers_ok"], audit["violations"]
    mine = [(r["op"], r["epoch"], r.get("node", "")) for r in audit["records"]
            if r.get("vm") == "rde1"]
    assert [m[:2] for m in mine] == [("open", e1), ("close", e1), ("open", e2)], mine
    assert mine[0][2] == "host2" and mine[2][2] == "host2", mine
    table = h3.cli("csv", "audit", "csv1").stdout
    assert "at most one per disk at every moment" in table and "rde1" in table, table
    h2.cli("vm", "delete", "--force", "rde1")


def test_the_storage_daemon_dies_and_comes_back(lab, csv1, tmp_path):
    """The coordinator's storage daemon is killed while two guests write: the relays' clients
    reconnect, the coordinator starts a new daemon and the exports come back; the guests
    never see an error and lose no acknowledged write. Meanwhile both VHDs were made root's
    again: the new daemon (QEMU's user) gets each file before it opens it; one that cannot be
    given (a read-only mount on the coordinator) is not exported, its VM's host says why, and
    it is once the mount goes."""
    h1 = lab.hosts[0]
    coord = next(x for x in lab.hosts if x.name == coordinator(h1))
    writers = two_writers(lab, csv1, ["rds1", "rds2"])
    old = daemon_pid(coord)
    if not old:
        print(h1.cli("csv", "show", "csv1").stdout, coord.log_tail(6000), lab.hosts[1].log_tail(3000))
    assert old, f"{coord.name} runs no storage daemon"
    user = pwd.getpwnam("ferry-qemu")
    (_, _, _, p1, _), (_, h3, _, p2, _) = writers
    for p in (p1, p2):
        os.chown(p, 0, 0)
        os.chmod(p, 0o644)
    ns = ["nsenter", "-t", str(coord.pid), "-m"]
    subprocess.run(ns + ["mount", "--bind", "-o", "ro", p2, p2], check=True)

    def why():
        rows = {r["node"]: r for r in h3.cli_json("csv", "show", "csv1")["nodes"]}
        return " ".join(x["why"] for x in rows["host3"]["relays"] if x["vm"] == "rds2")
    try:
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: daemon_pid(coord) not in (None, old), 20, "a new storage daemon")
        new = daemon_pid(coord)
        assert_runs_as_qemu_user(new)
        wait_for(lambda: open_files(new) == {p1}, 20, "rds1's disk exported again")
        assert owner_mode(p1) == (user.pw_uid, user.pw_gid, "0o600")
        said = wait_for(lambda: (lambda w: w if "cannot export" in w else None)(why()), 20,
                        "rds2's relay to say why", interval=0.5)
        print(f"rds2's relay: {said}")
        assert "ferry-qemu" in said and "Read-only file system" in said, said
        assert open_files(new) == {p1} and owner_mode(p2) == (0, 0, "0o644")
    finally:
        subprocess.run(ns + ["umount", p2], check=True)
    wait_for(lambda: len(open_files(new)) == 2, 20, "both disks exported again")
    assert owner_mode(p2) == (user.pw_uid, user.pw_gid, "0o600")
    rows = {r["node"]: r for r in h1.cli_json("csv", "show", "csv1")["nodes"]}
    assert {x["pid"] for x in rows[coord.name]["exports"]} == {new}, rows[coord.name]
    assert sorted(x["name"].split("@")[0] for x in rows[coord.name]["exports"]) == \
        ["rds1.vhd", "rds2.vhd"]
    time.sleep(3)
    gaps = finish_writers(lab, writers, tmp_path)
    print(f"storage daemon killed on {coord.name}: longest write pauses {gaps} ms")


def test_moving_the_coordinator_by_hand_moves_the_daemon_under_running_guests(lab, csv1,
                                                                             tmp_path):
    """`csv move-coordinator` while two guests write: the old coordinator's daemon ends
    first (it released the volume), the new one serves the disks, the guests go on."""
    h1 = lab.hosts[0]
    writers = two_writers(lab, csv1, ["rdm1", "rdm2"])
    c = coordinator(h1)
    old = next(x for x in lab.hosts if x.name == c)
    to = next(x for x in lab.hosts if x.name != c)
    assert daemon_pid(old)
    h1.cli("csv", "move-coordinator", "csv1", "--to", to.name)
    assert daemon_pid(old) is None, "the old coordinator's daemon ends before the move"
    wait_for(lambda: daemon_pid(to) is not None and len(open_files(daemon_pid(to))) == 2, 20,
             f"{to.name}'s daemon to serve both disks")
    time.sleep(3)
    gaps = finish_writers(lab, writers, tmp_path)
    print(f"coordinator moved {old.name} -> {to.name} by hand: longest write pauses {gaps} ms")


def test_a_dynamic_vhd_outside_every_volume_is_opened_by_qemu_and_does_not_migrate(lab, csv1):
    """Off the volumes nothing is redirected: the VM's own QEMU opens the dynamic VHD (QEMU's
    vpc driver), and a live migration is refused with the reason and what to do; the VM
    keeps running where it is."""
    h2 = lab.hosts[1]
    local = os.path.join(os.path.dirname(lab.csv), "local-rd")
    os.makedirs(local, exist_ok=True)
    path = os.path.join(local, "rdl1.vhd")
    h2.cli("disk", "create", path, "--size", "64M", "--type", "dynamic")
    create_vm(lab, h2, "rdl1", 20, memory=128, disk=path)
    pid = local_vm(h2, "rdl1")["pid"]
    assert open_files(pid) == {path}
    r = h2.cli("vm", "migrate", "rdl1", "--to", "host3", check=False)
    assert r.returncode != 0 and "dynamic VHD" in r.stderr and "vpc" in r.stderr, r.stderr
    assert local_vm(h2, "rdl1")["state"] == "running"
    assert local_vm(h2, "rdl1")["pid"] == pid
    h2.cli("vm", "delete", "--force", "rdl1")
    os.unlink(path)


def test_a_full_volume_refuses_new_disks_and_moves_and_leaves_nothing(lab, csv1, small):
    """Volume small has 40 MiB: a fixed VHD of 64 MiB does not fit. `vm create` onto it is
    refused naming the shortage (a fixed VHD reserves its space when it is made, so a guest
    never meets a full volume later) and defines nothing; a running VM's storage move onto it
    fails the same way before any copy, and the VM runs on, on its old disk. No file is left
    on the volume."""
    h1, h2 = lab.hosts[:2]
    h1.cli("csv", "add", "small", small)
    try:
        r = h2.cli("vm", "create", "rdf1", "--node", "host2", "--memory", "128", "--appliance",
                   "--disk", "csv:small/big.vhd,size=64", check=False)
        assert r.returncode != 0 and "no room for a fixed VHD of 64 MiB" in r.stderr, r.stderr
        assert vm_on(h2, "rdf1") is None
        assert os.listdir(small) == [".ferry-csv"], os.listdir(small)
        ip = create_vm(lab, h2, "rdf2", 21, memory=128)
        old = os.path.join(csv1, "rdf2.vhd")
        pid = local_vm(h2, "rdf2")["pid"]
        r = h2.cli("vm", "storage-move", "rdf2", "--to", "csv:small", check=False)
        assert r.returncode != 0 and "no room for a fixed VHD of 64 MiB" in r.stderr, r.stderr
        assert os.listdir(small) == [".ferry-csv"], os.listdir(small)
        vm = local_vm(h2, "rdf2")
        assert vm["state"] == "running" and vm["pid"] == pid, vm
        assert vm["spec"]["disks"][0]["path"] == old, vm["spec"]
        assert open_files(pid) == {old}
        wait_answering(lab, ip)
        h2.cli("vm", "delete", "--force", "rdf2")
    finally:
        h1.cli("csv", "remove", "small", check=False)


def test_a_ferryd_restart_on_the_vms_host_keeps_its_redirected_disk(lab, csv1, tmp_path):
    """host2's ferryd is killed and started again while its VM writes to a redirected disk:
    the QEMU runs on (adopted), its NBD client reconnects to the relay the new ferryd opens
    at the same socket, and the writes go on with nothing lost."""
    h2 = lab.hosts[1]
    writers = two_writers(lab, csv1, ["rdr1", "rdr2"])
    pid = local_vm(h2, "rdr1")["pid"]
    lab.kill_ferryd(h2)
    time.sleep(2)
    lab.start_ferryd(h2)
    wait_for(lambda: (local_vm(h2, "rdr1") or {}).get("state") == "running", 30,
             "rdr1 adopted as running")
    assert local_vm(h2, "rdr1")["pid"] == pid

    def relays():
        # A restarted ferryd's database catches up from the leader: not at once.
        r = h2.cli("-o", "json", "csv", "show", "csv1", check=False)
        if r.returncode != 0:
            return None
        row = next(x for x in json.loads(r.stdout)["nodes"] if x["node"] == "host2")
        return [(x["vm"], x["connected"]) for x in row.get("relays", [])]
    wait_for(lambda: relays() == [("rdr1", 1)], 30, "host2's relay for rdr1 connected again")
    time.sleep(3)
    gaps = finish_writers(lab, writers, tmp_path)
    print(f"ferryd restarted on host2: longest write pauses {gaps} ms")


def test_ferryd_refuses_an_nbd_port_its_unprivileged_storage_daemon_cannot_listen_on(tmp_path):
    """The storage daemon runs as QEMU's user, without CAP_NET_BIND_SERVICE: a node that may
    coordinate (--listen) with an --nbd-port below the host's unprivileged ports is refused
    at start, saying what to choose, rather than failing each daemon's start later."""
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        low = int(f.read())
    assert low > 900, f"this host lets anyone bind port 900 (ip_unprivileged_port_start {low})"
    r = subprocess.run([FERRYD, "--state-dir", str(tmp_path / "state"), "--run-dir",
                        str(tmp_path / "run"), "--socket", str(tmp_path / "s.sock"), "--accel",
                        "tcg", "--listen", "127.0.0.1:7391", "--nbd-port", "900"],
                       capture_output=True, text=True, timeout=30)
    print(r.stderr.strip().splitlines()[-1])
    assert r.returncode != 0
    assert f"nbd_port 900: a volume coordinator's qemu-storage-daemon runs as ferry-qemu, which " \
        f"may not listen below port {low}" in r.stderr, r.stderr
    assert f"choose nbd_port {low} or above, or qemu_user root" in r.stderr, r.stderr
