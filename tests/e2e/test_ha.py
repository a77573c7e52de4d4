# SPDX-License-Identifier: MIT
"""High availability on one node (src/fleet/fleet.c, docs/architecture.md "High
availability"): the settings are checked (every disk on a shared volume, known nodes, valid
values) and published; an HA VM whose QEMU dies is started again on its node, with a new writer
epoch, up to --restart-max times in --restart-period, then left failed with the reason; a start
by hand begins the count again; a VM without HA is not restarted. Failover to other nodes:
test_failover.py."""
import json
import os
import re
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import (create_vm, lab_session, local_vm, missing, shared_volume,  # noqa: E402
                   vm_on, wait_answering)
from ferrytest import wait_for  # noqa: E402
from promises import events  # noqa: E402

NAME = f"ha{os.getpid()}"
SUBNET = "10.86.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture
def csv1(lab):
    yield from shared_volume(lab, via=1)


def test_ha_settings_are_checked_published_and_shown(lab, csv1):
    h1, h2, h3 = lab.hosts
    local = os.path.join(os.path.dirname(lab.csv), "hal")
    os.makedirs(local, exist_ok=True)
    create_vm(lab, h2, "hal1", 30, memory=128, disk=os.path.join(local, "hal1.vhd"))
    r = h3.cli("vm", "ha", "enable", "hal1", check=False)
    assert r.returncode != 0 and "is on no cluster shared volume" in r.stderr and \
        "ferry vm storage-move hal1 --disk 0 --to csv:VOLUME" in r.stderr, r.stderr
    r = h2.cli("vm", "create", "hal2", "--memory", "64", "--disk", os.path.join(local, "x.vhd") +
               ",size=8", "--ha", check=False)
    assert r.returncode != 0 and "is on no cluster shared volume" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(local, "x.vhd"))
    # an EFI VM's variable store counts like a disk: another node must find its boot entries
    spec = os.path.join(local, "hal3.json")
    with open(spec, "w") as f:
        json.dump({"name": "hal3", "memory_mib": 256, "firmware": "efi",
                   "efi_vars": os.path.join(local, "hal3-efivars.fd")}, f)
    r = h2.cli("vm", "create", "hal3", "-f", spec, "--disk", f"{lab.csv}/hal3.vhd,size=8",
               "--ha", check=False)
    assert r.returncode != 0 and "ha: efi_vars (" in r.stderr and \
        "is on no cluster shared volume" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(lab.csv, "hal3.vhd"))
    h2.cli("vm", "delete", "--force", "hal1")

    create_vm(lab, h2, "hav1", 31, memory=128, disk="csv:csv1/hav1.vhd,type=dynamic")
    for args, says in ((("--priority", "urgent"), "ha.priority: expected high, medium, low"),
                       (("--failback", "25-3"), "ha.failback: expected never, immediate or"),
                       (("--preferred", "host9"), "ha.preferred: no node named host9"),
                       (("--preferred", "host2", "--possible", "host3"),
                        "ha.preferred: host2 is not one of ha.possible"),
                       (("--restart-max", "101"), "ha.restart_max"),
                       (("--preferred", "host2,,host3"), "is not a list of node names")):
        r = h3.cli("vm", "ha", "enable", "hav1", *args, check=False)
        assert r.returncode != 0 and says in r.stderr, (args, r.stderr)
    assert local_vm(h2, "hav1")["ha"]["state"] == "disabled"
    assert "ha" not in local_vm(h2, "hav1")["spec"]
    out = h3.cli("vm", "ha", "enable", "hav1", "--priority", "high", "--preferred",
                 "host2,host3", "--restart-max", "2", "--restart-period", "600", "--failback",
                 "22-06").stdout
    assert "hav1: ha started, priority high" in out, out
    v = local_vm(h2, "hav1")
    assert v["ha"]["state"] == "started" and v["ha"]["priority"] == "high", v["ha"]
    assert v["spec"]["ha"]["preferred"] == ["host2", "host3"], v["spec"]["ha"]
    wait_for(lambda: vm_on(h1, "hav1")["spec"].get("ha", {}).get("restart_max") == 2, 10,
             "the cluster's record to carry the HA settings")
    assert re.search(r"ha: +started \(priority high", h2.cli("vm", "show", "hav1").stdout)
    assert [e for e in events(h2, type="vm.ha_enabled", vm="hav1")]
    h2.cli("vm", "ha", "disable", "hav1")
    assert local_vm(h2, "hav1")["ha"]["state"] == "disabled"
    h2.cli("vm", "delete", "--force", "hav1")


def test_a_dead_qemu_is_started_again_then_left_failed(lab, csv1):
    """An HA VM's QEMU killed (a crash): HA starts it again on its node after a second or two,
    with a new writer epoch, twice (--restart-max 2); the third time it stays failed and says
    why (ha.possible names only its node, so no other node may take it). A start by hand begins
the count again; a kill by the user is a stop; with HA disabled
    nothing restarts it."""
    h2 = lab.hosts[1]
    ip = create_vm(lab, h2, "hak1", 32, memory=128, disk="csv:csv1/hak1.vhd,type=dynamic",
                   extra=("--ha", "--ha-priority", "high", "--restart-max", "2",
                          "--restart-period", "600", "--possible", "host2"))
    v = local_vm(h2, "hak1")
    assert v["ha"]["state"] == "started" and v["ha"]["restarts"] == 0, v["ha"]
    epoch = v["writer_epoch"]
    for n in (1, 2):
        pid = local_vm(h2, "hak1")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (lambda x: x["state"] == "running" and x["pid"] not in (0, pid))(
            local_vm(h2, "hak1")), 60, f"HA to start hak1 again ({n})")
        wait_answering(lab, ip)
        v = local_vm(h2, "hak1")
        assert v["ha"]["restarts"] == n and v["writer_epoch"] == epoch + n, v
        assert f"({n} of 2 in 600 s)" in v["ha"]["why"], v["ha"]
    assert len(events(h2, type="vm.ha_restart", vm="hak1")) == 2
    os.kill(local_vm(h2, "hak1")["pid"], signal.SIGKILL)
    wait_for(lambda: local_vm(h2, "hak1")["ha"]["state"] == "error", 30, "HA to give up")
    time.sleep(4)
    v = local_vm(h2, "hak1")
    assert v["state"] == "failed" and v["ha"]["state"] == "error", v
    assert "HA restarted it 2 times in 600 s (ha.restart_max 2); left failed" in v["ha"]["why"]
    # ha.possible is host2 alone: no other node may take it
    assert "no other node takes it: none of ha.possible (host2)" in v["ha"]["why"], v["ha"]
    assert re.search(r"ha: +error \(priority high", h2.cli("vm", "show", "hak1").stdout)
    assert events(h2, type="vm.ha_error", vm="hak1")

    h2.cli("vm", "start", "hak1")
    wait_answering(lab, ip)
    v = local_vm(h2, "hak1")
    assert v["ha"]["state"] == "started" and v["ha"]["restarts"] == 0, v["ha"]

    # a kill by the user is a stop, not a crash: HA leaves it stopped
    h2.cli("vm", "kill", "hak1")
    time.sleep(4)
    v = local_vm(h2, "hak1")
    assert v["state"] == "stopped" and v["ha"]["state"] == "stopped", v
    h2.cli("vm", "start", "hak1")
    wait_answering(lab, ip)

    h2.cli("vm", "ha", "disable", "hak1")
    os.kill(local_vm(h2, "hak1")["pid"], signal.SIGKILL)
    wait_for(lambda: local_vm(h2, "hak1")["state"] == "failed", 20, "hak1 to fail")
    time.sleep(4)
    assert local_vm(h2, "hak1")["state"] == "failed", "a VM without HA was started again"
    h2.cli("vm", "delete", "--force", "hak1")
