# SPDX-License-Identifier: MIT
"""The cluster's VMs (src/fleet/) on a 3-host lab: what any node lists about a VM another node
runs (its accelerator, QEMU pid and uptime, published by the owner), and a VM whose node is
down: listed as unknown with the reason and since when, shown from the database's record,
every action on it refused at once with that reason, and running again once its node is
back."""
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import create_vm, lab_session, missing, vm_on  # noqa: E402
from ferrytest import wait_for  # noqa: E402

NAME = f"fl{os.getpid()}"
SUBNET = "10.76.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


def down_limit_s(h):
    t = h.cli_json("cluster", "status")["timeouts"]
    return (t["node_heartbeat_ms"] * t["node_down_after"] + 1000) / 1000


def test_any_node_lists_what_runs_where(lab):
    h1, h2, h3 = lab.hosts
    create_vm(lab, h1, "fv1", 1, memory=128)
    own = h1.cli_json("vm", "show", "fv1")
    assert own["pid"] > 0 and own["accel"] in ("kvm", "tcg") and own["started_ms"] > 0, own

    def published():
        v = vm_on(h3, "fv1")
        return v if v and v["pid"] == own["pid"] else None
    # The owner publishes what runs with its state (reconciled within 2 s of the start).
    v = wait_for(published, 10, "host3 to list fv1's QEMU pid")
    assert v["owner"] == "host1" and v["state"] == "running", v
    assert v["accel"] == own["accel"] and v["started_ms"] == own["started_ms"], (v, own)
    row = next(line.split() for line in h3.cli("vm", "list").stdout.splitlines()
               if line.split()[:1] == ["fv1"])
    # NAME STATE NODE VCPUS MEMORY("128 MiB") ACCEL PID UPTIME
    assert row[1:3] == ["running", "host1"] and row[4:6] == ["128", "MiB"], row
    assert row[6] == own["accel"] and row[7] == str(own["pid"]) and row[8] != "-", row
    h1.cli("vm", "delete", "--force", "fv1")
    for h in lab.hosts:  # another node's copy of the database applies it a moment later
        wait_for(lambda: vm_on(h, "fv1") is None, 5, f"{h.name} to forget fv1")


def test_a_vm_on_a_down_node_is_unknown_until_it_is_back(lab):
    h1, h2, h3 = lab.hosts
    leader = lab.leader()
    victim = next(h for h in (h2, h3) if h.name != leader.name)
    viewer = next(h for h in lab.hosts if h.name not in (victim.name,))
    create_vm(lab, victim, "fv2", 2, memory=128)
    wait_for(lambda: (vm_on(viewer, "fv2") or {}).get("state") == "running", 10,
             f"{viewer.name} to list fv2 running")
    t0 = lab.kill_ferryd(victim, signal.SIGSTOP)  # its QEMU runs on; nobody can tell
    try:
        def unknown():
            v = vm_on(viewer, "fv2")
            return v if v and v["state"] == "unknown" else None
        v = wait_for(unknown, down_limit_s(viewer) + 5, "fv2 to be listed unknown")
        took = time.monotonic() - t0
        print(f"\nfv2 unknown on {viewer.name} {took:.1f} s after {victim.name}'s ferryd froze: "
              f"{v['reason']}")
        assert v["owner"] == victim.name and v["last_state"] == "running", v
        assert f"{victim.name} is down since 20" in v["reason"], v  # ... since YYYY-MM-DD ...
        assert "no heartbeat" in v["reason"], v
        assert "unknown" in viewer.cli("vm", "list").stdout
        shown = viewer.cli_json("vm", "show", "fv2")
        assert shown["state"] == "unknown" and shown["reason"] == v["reason"], shown
        # An action needs the owner: refused at once, saying why, instead of hanging.
        t1 = time.monotonic()
        r = viewer.cli("vm", "stop", "fv2", check=False, timeout=30)
        assert r.returncode != 0 and "is down since" in r.stderr, (r.stdout, r.stderr)
        assert time.monotonic() - t1 < 5, "the refusal waited for the dead node"
    finally:
        lab.kill_ferryd(victim, signal.SIGCONT)
    wait_for(lambda: (vm_on(viewer, "fv2") or {}).get("state") == "running", 20,
             "fv2 to be listed running again", interval=0.2)
    viewer.cli("vm", "delete", "--force", "fv2")
    # Another node's copy of the database applies the removal a moment later.
    for h in lab.hosts:
        wait_for(lambda: vm_on(h, "fv2") is None, 5, f"{h.name} to forget fv2")
