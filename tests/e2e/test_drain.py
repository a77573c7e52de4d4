# SPDX-License-Identifier: MIT
"""ferry node drain / node resume on a 3-host lab: three appliance VMs (probe workload,
128 MiB each, disks on the shared volume) on host1; draining host1 live-migrates all of them
to host2/host3, two at a time, and they answer probes from the client namespace afterwards;
host1 is up and paused (a node's health, up or down, and its admin state, active, draining or
paused, are apart): a create with --node host1 is refused, it stays paused while it
heartbeats, and resume makes it active again. Three at a time asked, two allowed by ferryd:
the third waits for a slot. A paused host whose ferryd is killed is down and still paused,
and up and still paused once it is restarted."""
import json
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from labvm import (assert_guest_whole, assert_nothing_on, assert_runs_once, create_vm, lab_session,  # noqa: E402
                   local_vm, logs, missing, vm_on, wait_answering)
from ferrytest import wait_for  # noqa: E402

NAME = f"d{os.getpid()}"
SUBNET = "10.84.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


def node_state(viewer, node):
    """(health, admin state) of node in viewer's node list."""
    nodes = viewer.cli_json("node", "list")["nodes"]
    return next((n["state"], n["admin"]) for n in nodes if n["name"] == node)


def table_row(viewer, node):
    """node's row of viewer's `ferry node list` table, as words."""
    lines = viewer.cli("node", "list").stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "HEALTH", "ADMIN"], lines
    return next(line.split() for line in lines[1:] if line.split()[0] == node)


# src/cluster/cluster.h: CLUSTER_HEARTBEAT_MS (1 s) * CLUSTER_DOWN_AFTER (5) of silence marks a
# node down.
HEALTH_DOWN_S = 5


def test_drain_and_resume(lab):
    h1, h2, h3 = lab.hosts
    names = ["dv1", "dv2", "dv3"]
    ips = {n: create_vm(lab, h1, n, k + 1, memory=128) for k, n in enumerate(names)}
    taps = {n: local_vm(h1, n)["taps"] for n in names}
    # A stopped VM stays on the node (its definition lives with its owner).
    h1.cli("vm", "create", "dstop", "--node", "host1", "--memory", "64", "--appliance")

    # Asked of host3, forwarded to host1, which drains itself. Three at a time is more than
    # ferryd's limit of outgoing migrations (2): the third waits for a slot.
    t0 = time.monotonic()
    r = h3.cli("-o", "json", "node", "drain", "host1", "--parallel", "3", timeout=300,
               check=False)
    took = time.monotonic() - t0
    assert r.returncode == 0, f"drain failed: {r.stdout}\n{r.stderr}\n{logs(lab)}"
    res = json.loads(r.stdout)
    print(f"\ndrain host1: {took:.1f} s; " + "; ".join(
        f"{v['name']} {v['outcome']} {v.get('to', '')} downtime {v.get('downtime_ms', '-')} ms"
        for v in res["vms"]))
    assert res["node"] == "host1" and res["admin"] == "paused" and res["parallel"] == 3, res
    assert res["migrated"] == 3 and res["failed"] == 0 and res["stayed"] == 1, res
    outcome = {v["name"]: v for v in res["vms"]}
    assert outcome["dstop"]["outcome"] == "stayed", outcome
    for n in names:
        assert outcome[n]["outcome"] == "migrated" and outcome[n]["to"] in ("host2", "host3"), \
            outcome[n]
    # Placement counts what the drain already sent: the VMs spread over both nodes.
    assert {outcome[n]["to"] for n in names} == {"host2", "host3"}, outcome

    # Every VM runs (once) on its new owner and answers from the client namespace.
    for n in names:
        dst = lab.host(outcome[n]["to"])
        wait_for(lambda: (lambda v: v and v["owner"] == dst.name and v["state"] == "running")(
            vm_on(h1, n)), 10, f"{n} to be listed running on {dst.name}")
        v = local_vm(dst, n)
        assert v and v["state"] == "running", v
        assert_runs_once(n, v["pid"])
        wait_answering(lab, ips[n], 1)
        assert_guest_whole(lab, h1, n, ips[n])
        assert_nothing_on(h1, n, taps[n])
    assert vm_on(h2, "dstop")["owner"] == "host1"

    # host1 is up and paused, in everyone's view, and takes no new VMs.
    for viewer in (h1, h2, h3):
        wait_for(lambda: node_state(viewer, "host1") == ("up", "paused"), 10,
                 f"{viewer.name} to list host1 up and paused")
    assert table_row(h2, "host1")[1:3] == ["up", "paused"]
    me = h1.cli_json("node", "show")
    assert me["state"] == "up" and me["admin"] == "paused", me
    assert "paused (takes no new VMs" in h1.cli("node", "show").stdout
    st, body = lab.write_vm(h2, "dnew", node="host1")
    assert st >= 400 and "paused" in json.dumps(body), (st, body)
    r = h1.cli("vm", "create", "dnew2", "--node", "host1", "--memory", "32", "--appliance",
               check=False)
    assert r.returncode != 0 and "host1 is paused" in r.stderr, r.stderr
    # Health leaves the administrative state alone while host1 heartbeats: held longer than
    # health takes to mark a silent node down, so a paused node that stopped heartbeating
    # would show here too.
    time.sleep(HEALTH_DOWN_S + 1)
    assert node_state(h2, "host1") == ("up", "paused")
    # Without --node, nothing lands on host1 either; migrating to it is refused.
    r = h2.cli("vm", "migrate", names[0], "--to", "host1", check=False)
    assert r.returncode != 0 and "paused" in r.stderr, r.stderr

    # Draining again finds nothing to move.
    r = h1.cli("-o", "json", "node", "drain", "host1", check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["migrated"] == 0, r

    # Resume, asked of host2.
    r = h2.cli("node", "resume", "host1")
    assert "host1 is active" in r.stdout, r.stdout
    for viewer in (h1, h2, h3):
        wait_for(lambda: node_state(viewer, "host1") == ("up", "active"), 10,
                 f"{viewer.name}: host1 up and active")
    st, body = lab.write_vm(h3, "dnew", node="host1")
    assert st == 201, (st, body)
    h3.cli("vm", "delete", "dnew")

    # Bad requests.
    r = h1.cli("node", "drain", "nosuch", check=False)
    assert r.returncode != 0 and "nosuch" in r.stderr, r.stderr
    r = h1.cli("node", "drain", "host1", "--parallel", "0", check=False)
    assert r.returncode == 2, r.stderr

    for n in names:
        h1.cli("vm", "delete", "--force", n)
    h1.cli("vm", "delete", "dstop")


def test_drain_with_a_vm_that_cannot_move(lab):
    """A VM that cannot be migrated (paused) keeps running where it is; the drain says so
    (exit 1) and the node stays draining; once the VM runs again a second drain finishes."""
    h1, h2, h3 = lab.hosts
    ip1 = create_vm(lab, h2, "dp1", 5, memory=128)
    ip2 = create_vm(lab, h2, "dp2", 6, memory=128)
    h2.cli("vm", "pause", "dp2")
    r = h1.cli("-o", "json", "node", "drain", "host2", timeout=300, check=False)
    assert r.returncode == 1 and "stays draining" in r.stderr, (r.stdout, r.stderr)
    res = json.loads(r.stdout)
    outcome = {v["name"]: v for v in res["vms"]}
    assert res["admin"] == "draining" and res["failed"] == 1, res
    assert outcome["dp1"]["outcome"] == "migrated", outcome
    assert outcome["dp2"]["outcome"] == "failed" and "paused" in outcome["dp2"]["message"], outcome
    v = local_vm(h2, "dp2")
    assert v and v["state"] == "paused", v
    assert node_state(h3, "host2") == ("up", "draining")
    wait_answering(lab, ip1, 1)
    assert_guest_whole(lab, h3, "dp1", ip1)
    r = h3.cli("vm", "create", "dp3", "--node", "host2", "--memory", "32", "--appliance",
               check=False)
    assert r.returncode != 0 and "draining" in r.stderr, r.stderr

    h2.cli("vm", "resume", "dp2")
    r = h2.cli("-o", "json", "node", "drain", "host2", "--parallel", "1", timeout=300,
               check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    res = json.loads(r.stdout)
    assert res["admin"] == "paused" and res["migrated"] == 1, res
    assert_guest_whole(lab, h3, "dp2", ip2)
    wait_for(lambda: node_state(h1, "host2") == ("up", "paused"), 10, "host2 paused")
    h2.cli("node", "resume", "host2")
    wait_for(lambda: node_state(h1, "host2") == ("up", "active"), 10, "host2 active")
    for n in ("dp1", "dp2"):
        h1.cli("vm", "delete", "--force", n)


def test_paused_node_stays_paused_across_a_ferryd_restart(lab):
    """Health and admin state are apart: a drained (paused) node whose ferryd is killed is
    down and still paused; restarted, it is up and still paused, takes no new VMs, and only
    resume makes it active."""
    h1, h2, h3 = lab.hosts
    r = h1.cli("-o", "json", "node", "drain", "host3", check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["admin"] == "paused", (r.stdout, r.stderr)
    wait_for(lambda: node_state(h1, "host3") == ("up", "paused"), 10, "host3 up and paused")
    lab.kill_ferryd(h3, signal.SIGKILL)
    for viewer in (h1, h2):
        wait_for(lambda: node_state(viewer, "host3") == ("down", "paused"), 30,
                 f"{viewer.name} to list host3 down and paused")
    assert table_row(h1, "host3")[1:3] == ["down", "paused"]
    r = h2.cli("vm", "create", "dx1", "--node", "host3", "--memory", "32", "--appliance",
               check=False)
    assert r.returncode != 0 and "host3 is down and paused" in r.stderr, r.stderr
    r = h1.cli("node", "resume", "host3", check=False)
    assert r.returncode != 0 and "host3" in r.stderr, r.stderr

    lab.start_ferryd(h3)
    for viewer in (h1, h2, h3):
        wait_for(lambda: node_state(viewer, "host3") == ("up", "paused"), 30,
                 f"{viewer.name} to list host3 up and still paused")
    assert h3.cli_json("node", "show")["admin"] == "paused"
    # Heartbeats go on; health leaves the admin state alone (held past the down time).
    time.sleep(HEALTH_DOWN_S + 1)
    assert node_state(h2, "host3") == ("up", "paused")
    r = h2.cli("vm", "create", "dx2", "--node", "host3", "--memory", "32", "--appliance",
               check=False)
    assert r.returncode != 0 and "host3 is paused" in r.stderr, r.stderr

    r = h1.cli("node", "resume", "host3")
    assert "host3 is active" in r.stdout, r.stdout
    for viewer in (h1, h2, h3):
        wait_for(lambda: node_state(viewer, "host3") == ("up", "active"), 10,
                 f"{viewer.name} to list host3 up and active")
    assert table_row(h2, "host3")[1:3] == ["up", "active"]
