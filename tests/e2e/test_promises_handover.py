# SPDX-License-Identifier: MIT
"""The owner compare-and-set at the hand-over of a live migration (docs/architecture.md, "Live
migration"), on a 4-host lab.

The moment between QEMU's `completed` and the owner write is a few milliseconds (the MIGRATION
event makes the source ask at once), too narrow to cut a link into. So the cluster loses its
quorum during the copy instead: the two hosts that take no part in the migration are frozen
(SIGSTOP), leaving source and destination as 2 of 4 voters. The copy between them goes on
(their link is fine), QEMU completes, the destination's QEMU starts the guest, and the owner
write cannot be made for want of a quorum. From then on going back would undo what the guest
did on the destination, so ferry asks again until the write is made: meanwhile the VM runs in
one QEMU only, the destination's, the source's QEMU stays stopped, a cancel is refused and
`ferry vm migrate` waits; once the quorum is back the hand-over completes, after a pre-copy
and after a post-copy alike, and the record says completed."""
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from labvm import (assert_guest_whole, assert_nothing_on, create_vm, lab_session,  # noqa: E402
                   local_vm, logs, missing, qemus_of, vm_on, wait_answering)
from ferrytest import wait_for  # noqa: E402
from promises import (assert_runs_only_on, events, finish, heal, last_event_id,  # noqa: E402
                      migrate_bg, newest_migration, progress, stop, wait_incoming)

NAME = f"ph{os.getpid()}"
SUBNET = "10.71.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET, hosts=4)


@pytest.fixture(autouse=True)
def healed(lab):
    """Every test starts from a whole lab, also after one that failed half-way."""
    yield
    heal(lab)


def quorum(lab, h):
    st, err = lab.cluster_status(h)
    return bool(st and st.get("quorum"))


class Frozen:
    """The hosts of the lab that take no part in a host1 -> host2 migration, frozen (SIGSTOP)
    while the with block runs: host1 and host2 are 2 of 4 voters, no quorum."""

    def __init__(self, lab):
        self.lab, self.hosts = lab, []

    def __enter__(self):
        for h in self.lab.hosts[2:]:
            self.lab.kill_ferryd(h, signal.SIGSTOP)
            self.hosts.append(h)
        h1, h2 = self.lab.hosts[:2]
        wait_for(lambda: not quorum(self.lab, h1) and not quorum(self.lab, h2), 15,
                 "host1 and host2 to lose the quorum")
        return self

    def __exit__(self, *exc):
        """Thaws them (once) and waits for the cluster."""
        if self.hosts:
            while self.hosts:
                self.lab.kill_ferryd(self.hosts.pop(), signal.SIGCONT)
            self.lab.wait_cluster()


WAITING = "vm.migrate_handover_waiting"
HOLD_S = 3  # "still" checks outlast several HANDOVER_RETRY_MS (500 ms) retries


def hold_while_waiting(lab, p, name, src_pid, ip):
    """While the quorum is gone and the hand-over waits: for HOLD_S seconds the migration
    CLI keeps waiting, the source's QEMU (src_pid) lives but has handed the guest over
    (QEMU says completed), the destination runs it in one QEMU, the guest answers there and
    a cancel is refused. Returns the destination's QEMU pid."""
    h1, h2 = lab.hosts[:2]
    wait_for(lambda: events(h1, WAITING, name), 120, "the hand-over to wait for the quorum")
    t_end = time.monotonic() + HOLD_S
    dst = None
    while time.monotonic() < t_end:
        assert p.poll() is None, f"the migration CLI ended while the hand-over waits: {finish(p)}"
        assert progress(h1, name).get("status") == "completed", progress(h1, name)
        v = local_vm(h2, name)
        assert v and v["state"] == "running", v
        dst = dst or v["pid"]
        assert v["pid"] == dst, v
        assert sorted(qemus_of(name)) == sorted([src_pid, dst]), (qemus_of(name), src_pid, dst)
        time.sleep(0.2)
    wait_answering(lab, ip)
    r = h1.cli("vm", "migrate", "--cancel", name, check=False)
    assert r.returncode != 0 and "cannot undo" in r.stderr, r.stderr
    return dst


def test_owner_change_without_quorum_waits_then_completes(lab):
    h1, h2, h3, h4 = lab.hosts
    lab.wait_cluster()
    ip = create_vm(lab, h1, "ho1", 1, memory=128)
    v = local_vm(h1, "ho1")
    pid, taps = v["pid"], v["taps"]
    since = last_event_id(h1)
    # At 24 MiB/s the copy takes some seconds, losing the quorum about one.
    p = migrate_bg(lab, h1, h2, "ho1", mib=24)
    try:
        wait_incoming(p, h2, "ho1")
        with Frozen(lab):
            assert p.poll() is None and progress(h1, "ho1").get("status") == "active", (
                "the copy must still run when the quorum is gone")
            dst = hold_while_waiting(lab, p, "ho1", pid, ip)
        rc, out, err = finish(p, timeout=60)
        print(f"\nho1: migrate exit {rc}: {out.strip()} {err.strip()}")
        assert rc == 0, (rc, out, err, logs(lab))
    finally:
        stop(p)
    waited = events(h1, WAITING, "ho1", since=since)
    assert len(waited) == 1 and "runs on host2" in waited[0]["message"], waited
    # The one QEMU is the destination's, owned by host2 in everyone's view; nothing on host1.
    assert_runs_only_on(lab, h2, "ho1", ip, pid=dst)
    assert_nothing_on(h1, "ho1", taps, timeout=30)
    for h in lab.hosts:
        wait_for(lambda: (vm_on(h, "ho1") or {}).get("owner") == "host2", 10,
                 f"{h.name} to name host2 as ho1's owner")
    rec = wait_for(lambda: (lambda r: r if r and r["to"] == "host2" else None)(
        newest_migration(h3, "ho1")), 30, "the migration's record")
    assert rec["status"] == "completed" and rec["from"] == "host1", rec
    assert_guest_whole(lab, h3, "ho1", ip)
    h3.cli("vm", "delete", "--force", "ho1")


def test_record_made_without_quorum_is_written_once_the_quorum_is_back(lab):
    """A migration's record is a cluster event: one made while there is no quorum (here a
    migration cancelled then) waits on its node and is written when the quorum is back, once,
    although every try while the quorum was gone failed (docs/architecture.md, "Cluster
    events")."""
    h1, h2, h3, h4 = lab.hosts
    lab.wait_cluster()
    ip = create_vm(lab, h1, "ho2", 2, memory=128)
    pid = local_vm(h1, "ho2")["pid"]
    p = migrate_bg(lab, h1, h2, "ho2", mib=4)  # 128 MiB at 4 MiB/s: half a minute of copy
    try:
        wait_incoming(p, h2, "ho2")
        with Frozen(lab):
            assert progress(h1, "ho2").get("status") == "active", progress(h1, "ho2")
            h1.cli("vm", "migrate", "--cancel", "ho2")
            rc, out, err = finish(p, timeout=60)
            assert rc != 0 and "cancel" in (out + err), (rc, out, err)
            # The VM goes on where it was; the record waits, on host1, for the quorum.
            wait_for(lambda: not local_vm(h2, "ho2"), 30, "the destination's copy to go")
            assert (local_vm(h1, "ho2") or {}).get("pid") == pid, local_vm(h1, "ho2")
            time.sleep(HOLD_S)  # several failed tries (one per heartbeat, 1000 ms)
            assert newest_migration(h1, "ho2") is None, newest_migration(h1, "ho2")
    finally:
        stop(p)
    rec = wait_for(lambda: newest_migration(h3, "ho2"), 30, "the record after the quorum is back")
    assert rec["status"] == "cancelled" and rec["from"] == "host1" and rec["to"] == "host2", rec
    time.sleep(3)  # a try that was applied but never answered would show up as a second record
    for h in lab.hosts:
        recs = h.cli_json("vm", "migrations", "ho2")["migrations"]
        assert [r["id"] for r in recs] == [rec["id"]], (h.name, recs)
    assert_runs_only_on(lab, h1, "ho2", ip, pid=pid)
    h3.cli("vm", "delete", "--force", "ho2")


def test_owner_change_without_quorum_after_postcopy_keeps_the_whole_copy(lab):
    """The same after a post-copy: the source's memory is no whole copy any more (the guest
    ran on the destination), the destination's is. The VM goes on running there, in one
    QEMU, with its memory whole."""
    h1, h2, h3, h4 = lab.hosts
    lab.wait_cluster()
    ip = create_vm(lab, h1, "ho3", 3, workload="probe,dirtier", memory=256,
                   cmdline="ferry.dirty_mb=64 ferry.dirty_rate=0")
    pid = local_vm(h1, "ho3")["pid"]
    p = migrate_bg(lab, h1, h2, "ho3", mib=16, pc_mib=4)
    try:
        wait_for(lambda: p.poll() is not None or
                 progress(h1, "ho3").get("strategy") == "post-copy", 90, "post-copy to start")
        assert p.poll() is None, f"the migration ended before post-copy: {p.communicate()}"
        with Frozen(lab):
            assert p.poll() is None, "post-copy completed before the quorum was gone"
            dst = hold_while_waiting(lab, p, "ho3", pid, ip)
        rc, out, err = finish(p, timeout=60)
        print(f"\nho3: migrate exit {rc}: {out.strip()} {err.strip()}")
        assert rc == 0, (rc, out, err, logs(lab))
    finally:
        stop(p)
    assert_runs_only_on(lab, h2, "ho3", ip, pid=dst)
    rec = newest_migration(h3, "ho3")
    assert rec["status"] == "completed" and rec["strategy"] == "post-copy", rec
    assert_guest_whole(lab, h3, "ho3", ip)
    h3.cli("vm", "delete", "--force", "ho3")
