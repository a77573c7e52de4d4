# SPDX-License-Identifier: MIT
"""A long partition in post-copy (docs/architecture.md, "Live migration": "While the destination
does not answer at all the source waits (a cancel is refused in post-copy): booting a second
copy while the other one may still run on a cut-off host would risk two guests on one disk"),
on a 3-host lab.

The destination's link is cut 0.5 s into post-copy and stays cut for 20 s (the fault test of
test_migrate_faults.py cuts it for about 2 s). Every 200 ms meanwhile: no new QEMU of the VM
appears anywhere (the source never boots a second copy), and at most one QEMU runs the guest
(the source's, in post-copy, has handed its vCPUs over; the destination's runs it). When the
link is back the post-copy resumes and completes: the VM runs on the destination only, its
memory whole.

The guest's only vCPU waits all that time for a page the source holds, so its kernel reports
the freeze when it runs again ("watchdog: BUG: soft lockup - CPU#0 stuck for 23s!", an RCU
stall): what a 20 s post-copy partition means for any guest, not a lost write. Those reports
are expected (and printed); anything else on the console fails the test, and the memory
verifier must find every page whole.

The post-copy must resume even when the destination's QEMU is stuck: its vCPU may fault on
a missing page while delivering an interrupt, which TCG does holding QEMU's big lock, so the
main loop runs no in-band QMP command (gdb: main thread in bql_lock, "CPU 0/TCG" in
handle_userfault under do_interrupt_all). That happened in about half the runs while ferry
resumed with in-band QMP (query-migrate, migrate-pause, migrate-recover): the recovery hung
for ever. ferry now sends migrate-recover and migrate-pause out of band (QEMU marks them
allow-oob for this) and asks nothing in band first."""
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from labvm import (assert_guest_whole, assert_nothing_on, create_vm,  # noqa: E402
                   lab_session, local_vm, logs, missing, qemus_of, vm_on, wait_answering)
from ferrytest import wait_for  # noqa: E402
from promises import (finish, heal, migrate_bg, newest_migration, progress,  # noqa: E402
                      sample_runners, stop)

NAME = f"pp{os.getpid()}"
SUBNET = "10.72.0.0/24"
CUT_S = 20
# The guest's own reports of its vCPU frozen for the cut (see above).
FREEZE_REPORTS = re.compile(r"soft lockup - CPU#\d+ stuck for \d+s|rcu_\w+ (?:self-)?detected "
                            r"stall|detected stalls on CPUs")

RESUME_S = 90  # after the link is back; the source asks the destination every second

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


class PostcopyNotResumed(AssertionError):
    """The link is back but the broken post-copy is not resumed (see the module's comment)."""


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture(autouse=True)
def healed(lab):
    """Every test starts from a whole lab, also after one that failed half-way."""
    yield
    heal(lab)


def qemu_threads(pid):
    """{thread name: kernel wait channel} of QEMU pid (a vCPU in handle_userfault waits for
    a page of the post-copy)."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f, \
                    open(f"/proc/{pid}/task/{t}/wchan") as w:
                out[f.read().strip()] = w.read().strip()
        except OSError:
            pass
    return out


def test_long_postcopy_partition_boots_no_second_copy_and_resumes(lab):
    h1, h2, h3 = lab.hosts
    ip = create_vm(lab, h1, "pc1", 1, workload="probe,dirtier", memory=256,
                   cmdline="ferry.dirty_mb=64 ferry.dirty_rate=0")
    v1 = local_vm(h1, "pc1")
    src_pid, taps = v1["pid"], v1["taps"]
    wait_answering(lab, ip, 3)
    p = migrate_bg(lab, h1, h2, "pc1", mib=16, pc_mib=4)
    samples = []
    try:
        wait_for(lambda: p.poll() is not None or
                 progress(h1, "pc1").get("strategy") == "post-copy", 90, "post-copy to start")
        assert p.poll() is None, f"the migration ended before post-copy: {p.communicate()}"
        time.sleep(0.5)
        dst_pid = local_vm(h2, "pc1")["pid"]
        lab.link_down(h2)
        t0 = time.monotonic()
        statuses = set()
        try:
            while time.monotonic() - t0 < CUT_S:
                samples.append(sample_runners(lab, "pc1"))
                statuses.add(progress(h1, "pc1").get("status"))
                time.sleep(0.2)
        finally:
            lab.link_up(h2)
        print(f"\npc1: link cut for {time.monotonic() - t0:.1f} s, {len(samples)} samples, "
              f"source's migration status meanwhile: {sorted(map(str, statuses))}")
        # Never a second copy: only the two QEMUs of the migration, at most one running it.
        new = sorted({pid for s in samples for pid in s} - {src_pid, dst_pid})
        assert not new, f"a second copy of pc1 was started: {new} {samples[-1]}\n{logs(lab)}"
        two = [s for s in samples if sum(r is True for _, r in s.values()) > 1]
        assert not two, f"pc1 ran in two QEMUs at once: {two[:3]}"
        assert all(src_pid in s for s in samples), "the source's QEMU went during the cut"
        assert "postcopy-paused" in statuses, statuses
        t1 = time.monotonic()
        while p.poll() is None and time.monotonic() - t1 < RESUME_S:
            if progress(h1, "pc1").get("status") == "postcopy-active":
                break
            time.sleep(0.5)
        if p.poll() is None and progress(h1, "pc1").get("status") == "postcopy-paused":
            raise PostcopyNotResumed(
                f"pc1: still postcopy-paused {RESUME_S} s after the link came back; "
                f"QEMU threads of the destination: {qemu_threads(dst_pid)}\n{logs(lab)}")
        rc, out, err = finish(p, timeout=300)
    finally:
        stop(p)
    print(f"pc1 post-copy after a {CUT_S} s cut: rc {rc}: {out.strip()[-400:]} "
          f"{err.strip()[-300:]}")
    # Resumed and completed.
    assert rc == 0, (out, err, logs(lab))
    assert re.search(r"^recoveries:\s+[1-9]", out, re.M), out
    rec = wait_for(lambda: newest_migration(h3, "pc1"), 30, "the migration's record")
    assert (rec["status"], rec["strategy"]) == ("completed", "post-copy"), rec
    assert rec["postcopy_recoveries"] >= 1, rec
    wait_for(lambda: (lambda v: v and v["owner"] == "host2" and v["state"] == "running")(
        vm_on(h3, "pc1")), 30, "host3 to list pc1 running on host2")
    assert_nothing_on(h1, "pc1", taps, timeout=30)
    assert qemus_of("pc1") == [dst_pid]
    w = lab.client_exec(["ferry-probe", "wait", ip, "--timeout-s", "30"], check=False, timeout=60)
    assert w.returncode == 0, \
        f"pc1 does not answer: {h3.cli('vm', 'console', 'pc1').stdout[-1500:]}"
    wait_answering(lab, ip)
    assert_guest_whole(lab, h3, "pc1", ip, allow=FREEZE_REPORTS)
    h3.cli("vm", "delete", "--force", "pc1")
