# SPDX-License-Identifier: MIT
"""Failover (docs/failover.md): a dead host's HA VMs answer again on the others, once.

A host is powered off (its ferryd and every process of its namespace SIGKILLed together) or cut
off the network (its uplink down). The leader restarts its HA VMs elsewhere only once the host
is both silent (heartbeats) and stale on storage (volume leases); a cut-off host fences itself
first (kills its HA QEMUs, stops its leases). Each VM runs in exactly one QEMU afterwards, with
a higher writer epoch, its failover recorded; the volume's audit never shows two writers; the
old host, back, removes its stale copy instead of starting it. The lab's hosts have emulated
watchdogs: a frozen ferryd gets its host powered off before its VMs start elsewhere."""
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

import ferrylab  # noqa: E402
from labvm import (create_vm, lab_session, local_vm, logs, metrics, missing, qemus_of,  # noqa: E402
                   qemus_under, shared_volume, vm_on, wait_answering)
from ferrytest import wait_for  # noqa: E402
from promises import events, last_event_id  # noqa: E402

NAME = f"fo{os.getpid()}"
SUBNET = "10.87.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET, watchdog=True)


@pytest.fixture
def csv1(lab):
    yield from shared_volume(lab, via=0)


def running_elsewhere(viewer, name, not_on):
    v = vm_on(viewer, name)
    return v if v and v["owner"] != not_on and v["state"] == "running" else None


def wait_elsewhere(lab, viewer, name, not_on, timeout=90):
    """VM name running on a node other than not_on, as viewer lists it; on a timeout the
    failure carries the ferryds' logs."""
    try:
        return wait_for(lambda: running_elsewhere(viewer, name, not_on), timeout,
                        f"{name} to run on a node other than {not_on}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs(lab)}") from None


def assert_once(name, viewer):
    v = vm_on(viewer, name)
    found = qemus_of(name)
    assert len(found) == 1 and found == [v["pid"]], f"{name} must run in one QEMU: {found}, {v}"


def audit_clean(h):
    r = h.cli("csv", "audit", "csv1", check=False)
    assert r.returncode == 0, f"the volume's audit shows two writers:\n{r.stdout}{r.stderr}"


def test_power_loss_brings_ha_vms_back_elsewhere_once(lab, csv1):
    h1, h2, h3 = lab.hosts
    ip1 = create_vm(lab, h2, "fop1", 40, memory=128, disk="csv:csv1/fop1.vhd",
                    extra=("--ha", "--ha-priority", "high", "--preferred", "host2,host1",
                           "--failback", "immediate"))
    ip2 = create_vm(lab, h2, "fop2", 41, memory=128, disk="csv:csv1/fop2.vhd,type=dynamic",
                    extra=("--ha", "--ha-priority", "low", "--preferred", "host3"))
    create_vm(lab, h2, "fop3", 42, memory=128, disk="csv:csv1/fop3.vhd")  # no HA
    ip4 = create_vm(lab, h2, "fop4", 47, memory=128, disk="csv:csv1/fop4.vhd",
                    extra=("--ha", "--possible", "host2"))  # may run nowhere else
    epochs = {n: local_vm(h2, n)["writer_epoch"] for n in ("fop1", "fop2")}

    t0 = lab.power_off(h2)
    v1 = wait_elsewhere(lab, h1, "fop1", "host2", 90)
    wait_answering(lab, ip1)
    t1 = time.monotonic() - t0
    v2 = wait_elsewhere(lab, h1, "fop2", "host2", 60)
    wait_answering(lab, ip2)
    print(f"power loss -> fop1 answering: {t1:.1f} s")
    assert v1["owner"] == "host1", f"fop1 prefers host2, then host1: {v1['owner']}"
    assert v2["owner"] == "host3", f"fop2 prefers host3: {v2['owner']}"
    for v in (v1, v2):
        fo = v.get("failover") or {}
        assert fo.get("from") == "host2" and fo.get("to") == v["owner"], v
        assert fo["down_ms"] <= fo["decided_ms"] and fo["stale_ms"] <= fo["decided_ms"], fo
        assert v["writer_epoch"] > epochs[v["name"]], v
        assert_once(v["name"], h1)
    assert events(h1, type="vm.failover", vm="fop1")
    shown = h3.cli("vm", "show", "fop1").stdout
    assert "last failover" in shown and "from host2 to" in shown, shown
    rows = {line.split()[0]: line.split() for line in h3.cli("vm", "failovers").stdout.splitlines()}
    assert rows["fop1"][1:3] == ["host2", "host1"] and rows["fop2"][1:3] == ["host2", "host3"], rows
    fj = {x["name"]: x for x in h3.cli_json("vm", "failovers")["failovers"]}
    assert set(fj) >= {"fop1", "fop2"} and "fop3" not in fj, fj
    own = next(line.split() for line in h1.cli("vm", "list").stdout.splitlines()
               if line.split()[:1] == ["fop1"])
    assert own[-1] == "started", own  # the HA column, on its owner
    m = metrics(h1)
    assert m["ferry_failovers_adopted_total"] >= 1 and m["ferry_failover_seconds_count"] >= 1, m
    assert m["ferry_node_fenced"] == 0
    # without HA nothing moves it: its state is unknown while its host is dead
    v3 = vm_on(h1, "fop3")
    assert v3["owner"] == "host2" and v3["state"] == "unknown", v3
    # what fits nowhere waits and says why (its node is dead, so the view says "unknown")
    v4 = vm_on(h1, "fop4")
    assert v4["owner"] == "host2" and v4["last_state"] == "recovering", v4
    assert "failover from host2 waits: none of ha.possible (host2)" in v4["last_reason"], v4
    assert events(h1, type="vm.failover_waiting", vm="fop4")
    audit_clean(h1)

    # host2 comes back: its copies of fop1 and fop2 are removed, not started; fop3 stays its own
    lab.start_ferryd(h2)
    for n in ("fop1", "fop2"):
        wait_for(lambda: not os.path.exists(os.path.join(h2.state_dir, "vms", n)), 60,
                 f"host2 to remove its stale copy of {n}")
        assert not qemus_under(h2, n)
        assert events(h2, type="vm.failover_removed", vm=n)
    time.sleep(3)
    for n in ("fop1", "fop2"):
        assert_once(n, h1)
    wait_answering(lab, ip1)
    assert local_vm(h2, "fop3") is not None
    # fop4 waited for host2, its one possible node: back there, HA starts it again
    wait_for(lambda: (local_vm(h2, "fop4") or {}).get("state") == "running", 60,
             "host2 to start fop4 again")
    wait_answering(lab, ip4)
    assert_once("fop4", h1)
    audit_clean(h1)

    # failback: fop1 prefers host2; once host2 has been up for the settle time (30 s) it
    # migrates back there live (a migration, not a restart: the guest does not reboot)
    boot = ferrylab.memverify(lab, ip1, scans=0)["boot_id"]
    v = wait_for(lambda: (lambda x: x if x and x["owner"] == "host2" and x["state"] == "running"
                          else None)(vm_on(h1, "fop1")), 120, "fop1 to fail back to host2")
    assert events(h1, type="vm.failback", vm="fop1") or events(h3, type="vm.failback", vm="fop1")
    wait_answering(lab, ip1)
    assert ferrylab.memverify(lab, ip1, scans=0)["boot_id"] == boot, "fop1 rebooted"
    assert_once("fop1", h1)
    time.sleep(3)
    assert vm_on(h1, "fop1")["owner"] == "host2", "fop1 moved again after its failback"


def test_cut_off_host_fences_itself_before_its_vm_runs_elsewhere(lab, csv1):
    h1, h2, h3 = lab.hosts
    ip = create_vm(lab, h3, "foi1", 43, memory=128, disk="csv:csv1/foi1.vhd",
                   extra=("--ha", "--possible", "host1,host3"))
    pid = local_vm(h3, "foi1")["pid"]
    lab.link_down(h3)
    try:
        # host3 still runs ferryd: without the quorum it kills the HA QEMU itself
        wait_for(lambda: not qemus_under(h3, "foi1"), 30, "host3 to fence foi1")
        fenced = events(h3, type="vm.fenced", vm="foi1")
        assert fenced, "no vm.fenced event on host3"
        v = wait_elsewhere(lab, h1, "foi1", "host3", 90)
        assert v["owner"] == "host1", f"ha.possible is host1,host3: {v['owner']}"
        assert v["started_ms"] > fenced[-1]["time_ms"], (v, fenced[-1])
        assert pid not in qemus_of("foi1")
        wait_answering(lab, ip)
        assert_once("foi1", h1)
        ha = local_vm(h3, "foi1")["ha"]
        assert ha["state"] == "fence", ha
        assert metrics(h3)["ferry_node_fenced"] == 1
    finally:
        lab.link_up(h3)
    wait_for(lambda: not os.path.exists(os.path.join(h3.state_dir, "vms", "foi1")), 60,
             "host3 to remove its stale copy of foi1")
    assert events(h3, type="node.unfenced")
    time.sleep(3)
    assert_once("foi1", h1)
    audit_clean(h1)


def test_a_vm_that_keeps_failing_on_its_node_moves_to_another(lab, csv1):
    """--restart-max 1: the first crash is restarted on its node, the second sends it to
    another node (a failover from its own, healthy node), where it runs once."""
    h1, h2, h3 = lab.hosts
    ip = create_vm(lab, h2, "fom1", 44, memory=128, disk="csv:csv1/fom1.vhd",
                   extra=("--ha", "--restart-max", "1", "--restart-period", "600",
                          "--preferred", "host3"))
    pid = local_vm(h2, "fom1")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (lambda x: x and x["state"] == "running" and x["pid"] not in (0, pid))(
        local_vm(h2, "fom1")), 60, "HA to start fom1 again on host2")
    os.kill(local_vm(h2, "fom1")["pid"], signal.SIGKILL)
    v = wait_elsewhere(lab, h1, "fom1", "host2", 90)
    assert v["owner"] == "host3", v
    fo = v["failover"]
    assert fo["from"] == "host2" and "its QEMU failed 1 times on host2" in fo["why"], fo
    wait_answering(lab, ip)
    wait_for(lambda: not os.path.exists(os.path.join(h2.state_dir, "vms", "fom1")), 30,
             "host2 to remove its copy of fom1")
    assert_once("fom1", h1)


def test_frozen_ferryd_is_powered_off_by_its_watchdog_before_its_vm_runs_elsewhere(lab, csv1):
    """SIGSTOP of host3's ferryd: its QEMU runs on, unfed, the lab's watchdog powers the host
    off (kills every process of it) within its timeout, and only then, once host3's leases
    are stale, does the VM start elsewhere. A cut-off host that fenced itself, by contrast,
    keeps feeding it (the isolation test above ran in this lab without a reset)."""
    h1, h2, h3 = lab.hosts
    assert lab.watchdog_fired(h3) is None, "host3 was reset by its watchdog in an earlier test"
    ip = create_vm(lab, h3, "fow1", 45, memory=128, disk="csv:csv1/fow1.vhd,type=dynamic",
                   extra=("--ha",))
    pid = local_vm(h3, "fow1")["pid"]
    t0 = lab.kill_ferryd(h3, signal.SIGSTOP)
    fired = wait_for(lambda: lab.watchdog_fired(h3), 15, "host3's watchdog to fire")
    assert pid in fired["killed"], fired
    assert time.monotonic() - t0 < 10
    v = wait_elsewhere(lab, h1, "fow1", "host3", 90)
    assert pid not in qemus_of("fow1")
    wait_answering(lab, ip)
    assert_once("fow1", h1)
    lab.start_ferryd(h3)
    wait_for(lambda: not os.path.exists(os.path.join(h3.state_dir, "vms", "fow1")), 60,
             "host3 to remove its stale copy of fow1")
    assert_once("fow1", h1)
    assert v["failover"]["from"] == "host3"
    audit_clean(h1)


def test_a_silent_host_that_still_renews_its_leases_is_left_alone(lab, csv1):
    """The storage heartbeat: host2 cut off the network but not from the volume, with a
    fence delay longer than the test (--fence-after-ms 60000), keeps renewing its leases; the
    leader calls it isolated and moves nothing, however long its heartbeats are missing.
    Back on the network, its VM has run on there all along, in the same QEMU. Its ferryd was
    restarted just before the cut: a node whose database may lack the newest volumes (nothing
    after its last snapshot is applied until a leader says it is committed) still renews its
    leases on every volume it leased before."""
    h1, h2, h3 = lab.hosts
    create_vm(lab, h2, "fos1", 46, memory=128, disk="csv:csv1/fos1.vhd", extra=("--ha",))
    lab.kill_ferryd(h2, signal.SIGTERM)
    lab.start_ferryd(h2, args=["--fence-after-ms", "60000"])
    pid = local_vm(h2, "fos1")["pid"]
    since = {h.name: last_event_id(h) for h in (h1, h3)}
    lab.link_down(h2)
    try:
        wait_for(lambda: vm_on(h1, "fos1")["state"] == "unknown", 30, "host2 to be down")
        said = wait_for(lambda: [e for h in (h1, h3)
                                 for e in events(h, type="node.isolated", since=since[h.name])
                                 if e["message"].startswith("host2 ")], 30,
                        "the leader to call host2 isolated")
        assert "host2 is silent on the network but not stale on storage" in said[-1]["message"]
        time.sleep(10)  # twice the lease expiry after it went down
        v = vm_on(h1, "fos1")
        assert v["owner"] == "host2" and "failover" not in v, f"{v}\n{logs(lab)}"
        assert qemus_of("fos1") == [pid]
    finally:
        lab.link_up(h2)
        lab.kill_ferryd(h2, signal.SIGTERM)
        lab.start_ferryd(h2, args=[])
    wait_for(lambda: (local_vm(h2, "fos1") or {}).get("state") == "running", 30,
             "host2 to run fos1 still")
    assert local_vm(h2, "fos1")["pid"] == pid
    assert_once("fos1", h1)
