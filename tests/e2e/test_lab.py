# SPDX-License-Identifier: MIT
"""ferry lab end to end: three simulated hosts with real ferryds on one L2 segment, a real TCG
guest on host2 reached from the client namespace and from the other hosts, `ferry lab exec`,
`status`, and a `down` that leaves nothing behind (also after a failed `up`)."""
import json
import os
import shutil
import stat
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

import ferrylab  # noqa: E402
from labvm import assert_lab_gone, lab_down  # noqa: E402
from ferrylab import Lab, LabError  # noqa: E402
from ferrytest import BUILD, FERRY, PROBE, pid_alive, run  # noqa: E402

GUEST_DIR = os.environ.get("FERRY_GUEST_DIR", os.path.join(BUILD, "guest"))
NAME = f"t{os.getpid()}"
SUBNET = "10.78.0.0/24"
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


def missing():
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, taps)"
    for b in (FERRY, PROBE, os.path.join(BUILD, "src", "ferryd")):
        if not os.access(b, os.X_OK):
            return f"{b} is not built"
    for f in ("vmlinuz", "initrd.img"):
        if not os.path.exists(os.path.join(GUEST_DIR, f)):
            return f"no {f} in {GUEST_DIR} (build the appliance or set FERRY_GUEST_DIR)"
    if not os.access(QEMU, os.X_OK):
        return "qemu-system-x86_64 is not installed"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def ferry_lab(*args, check=True, timeout=120, env=None):
    """The real `ferry lab` (C CLI exec'ing lab/ferry-lab)."""
    e = {**os.environ, "FERRY_BUILD": BUILD, **(env or {})}
    return run([FERRY, "lab", *args], check=check, timeout=timeout, env=e)


@pytest.fixture(scope="module")
def lab():
    lab = None
    try:
        lab = Lab.up(NAME, hosts=3, subnet=SUBNET)
        yield lab
    finally:
        lab_down(lab, NAME)


def test_layout_and_every_ferryd_answers(lab):
    assert [h.name for h in lab.hosts] == ["host1", "host2", "host3"]
    for i, h in enumerate(lab.hosts, 1):
        assert h.ns == f"{NAME}-h{i}" and h.ip == f"10.78.0.{10 + i}"
        node = h.cli_json("node", "show")
        assert node["name"] == f"host{i}"
        assert node["api_socket"] == h.sock
        assert h.ferryd_alive()
        addrs = h.exec(["ip", "-o", "-4", "addr", "show", "br0"]).stdout
        assert f"{h.ip}/24" in addrs
        links = h.exec(["ip", "-o", "link", "show", "master", "br0"]).stdout
        assert "up0" in links
    assert lab.guest_ip(1) == "10.78.0.101"
    st = os.stat(lab.token_file)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert os.path.isdir(lab.csv)
    # Host1 reaches host3's API over the segment with the lab token.
    r = lab.host(1).exec([FERRY, "--url", lab.host(3).url, "-o", "json", "node", "show"])
    assert json.loads(r.stdout)["name"] == "host3"
    # The client reaches every host's API (FERRY_TOKEN comes from the lab's environment).
    for h in lab.hosts:
        r = lab.client_exec([FERRY, "--url", h.url, "-o", "json", "node", "show"])
        assert json.loads(r.stdout)["name"] == h.name
    # The hosts formed a cluster: every ferryd agrees on it.
    cluster = lab.state["cluster"]
    assert cluster and cluster["id"]
    for h in lab.hosts:
        st = h.cli_json("cluster", "status")
        assert st["cluster_id"] == cluster["id"] and st["quorum"] and st["voters"] == 3


def test_up_refuses_an_existing_lab(lab):
    with pytest.raises(LabError, match="ferry lab down"):
        Lab.up(NAME, hosts=1, subnet=SUBNET)
    r = ferry_lab("up", "--name", NAME, "--hosts", "1", "--subnet", SUBNET, check=False)
    assert r.returncode == 1 and "ferry lab down --name " + NAME in r.stderr
    assert lab.status()["healthy"], "a refused up must not touch the running lab"


def test_bad_arguments_are_refused():
    for args, what in ((["--hosts", "0"], "out of range 1..16"), (["--hosts", "17"], "1..16"),
                       (["--hosts", "x"], "not a number"),
                       (["--subnet", "10.78.0.0/16"], "/24"),
                       (["--subnet", "8.8.8.0/24"], "private"),
                       (["--subnet", "10.78.0.5/24"], "host bits"),
                       (["--name", "bad name"], "letters"),
                       (["--accel", "xen"], "invalid choice"),
                       (["--build", "/nonexistent"], "no ferry and ferryd in /nonexistent/src")):
        r = ferry_lab("up", "--name", f"{NAME}x", *args, check=False)
        assert r.returncode in (1, 2) and what in r.stderr, (args, r.stderr)
    r = ferry_lab("restart", "host1", "--name", f"{NAME}x", check=False)
    assert r.returncode == 1 and "no lab" in r.stderr, r.stderr
    assert not os.path.exists(Lab.default_dir(f"{NAME}x"))
    assert not ferrylab.stray_namespaces(f"{NAME}x")


def test_vm_on_host2_is_reached_across_the_segment(lab):
    h2, h3 = lab.host(2), lab.host("host3")
    ip1 = lab.guest_ip(1)
    create_vm(lab, h2, "vm1", ip1, f"{lab.csv}/vm.vhd")
    h2.cli("vm", "start", "vm1")
    # From the client namespace, across the segment into host2's bridge and tap.
    lab.client_exec([PROBE, "wait", ip1, "--timeout-s", "90"], timeout=100)
    # From host3's namespace (its br0 -> segment -> host2's br0).
    h3.exec([PROBE, "wait", ip1, "--timeout-s", "30"], timeout=40)

    # A second VM on host3 is reached from host2 and from the client: both directions work.
    ip2 = lab.guest_ip(2)
    create_vm(lab, h3, "vm2", ip2, f"{lab.csv}/vm2.vhd")
    h3.cli("vm", "start", "vm2")
    h2.exec([PROBE, "wait", ip2, "--timeout-s", "90"], timeout=100)
    lab.client_exec([PROBE, "wait", ip2, "--timeout-s", "30"], timeout=40)

    # `ferry lab exec host2 -- ferry vm list` talks to host2's ferryd, which lists the whole
    # cluster's VMs with the node that runs each.
    r = ferry_lab("exec", "--name", NAME, "host2", "--", "ferry", "-o", "json", "vm", "list")
    assert {v["name"]: v["owner"] for v in json.loads(r.stdout)["vms"]} == {"vm1": "host2",
                                                                           "vm2": "host3"}
    r = ferry_lab("exec", "--name", NAME, "host1", "--", "ferry", "vm", "list")
    assert "vm1" in r.stdout and "vm2" in r.stdout and "running" in r.stdout
    # exec passes the command's exit status through.
    r = ferry_lab("exec", "--name", NAME, "client", "--", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7

    # status (JSON and table) shows both VMs on their hosts.
    st = json.loads(ferry_lab("status", "--name", NAME, "-o", "json").stdout)
    assert st["healthy"] and st["client"]["ip"] == "10.78.0.2" and st["csv"] == lab.csv
    by = {h["name"]: h for h in st["hosts"]}
    assert [v["name"] for v in by["host2"]["vms"]] == ["vm1"]
    assert by["host2"]["vms"][0]["state"] == "running"
    assert [v["name"] for v in by["host3"]["vms"]] == ["vm2"]
    assert by["host1"]["vms"] == []
    assert all(h["ferryd_alive"] for h in st["hosts"])
    table = ferry_lab("-o", "table", "status", "--name", NAME).stdout
    assert "vm1 (running)" in table and "vm2 (running)" in table
    # The global -o json of ferry is passed on to the script.
    r = run([FERRY, "-o", "json", "lab", "status", "--name", NAME],
            env=dict(os.environ, FERRY_BUILD=BUILD))
    assert json.loads(r.stdout)["healthy"]


def create_vm(lab, host, name, ip, disk):
    """Creates (not starts) an appliance VM on host; its disk goes to the shared volume."""
    env = dict(lab.env(host), FERRY_GUEST_DIR=GUEST_DIR)
    run([FERRY, "--socket", host.sock, "vm", "create", name, "--memory", "256", "--appliance",
         "--guest-ip", f"{ip}/24", "--workload", "probe", "--nic", "br0",
         "--disk", f"{disk},size=64", "--node", host.name], env=env)


def test_down_removes_everything_and_is_idempotent(lab):
    """Runs last in this module: `ferry lab down` with two VMs running and a stray process in a
    lab namespace; the fixture's own down afterwards must find nothing left."""
    pids = [h.pid for h in lab.hosts]
    qemus = [h.cli_json("vm", "show", n)["pid"] for h, n in ((lab.host(2), "vm1"),
                                                             (lab.host(3), "vm2"))
             if h.cli("vm", "show", n, check=False).returncode == 0]
    stray = lab.host(1).popen(["sleep", "300"])
    try:
        ferry_lab("down", "--name", NAME)
        assert_lab_gone(NAME, lab.dir)
        for p in pids + qemus:
            assert not pid_alive(p)
        stray.wait(10)
        r = ferry_lab("down", "--name", NAME)
        assert "nothing to remove" in r.stdout
        lab.down()  # the Lab object of a removed lab: a no-op, not an error
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_failed_up_removes_what_it_made():
    """A ferryd that dies at start: up fails with its log and leaves nothing behind."""
    name, tmp = f"{NAME}f", tempfile.mkdtemp(prefix="fylab")
    try:
        os.makedirs(os.path.join(tmp, "src"))
        os.symlink(FERRY, os.path.join(tmp, "src", "ferry"))
        fake = os.path.join(tmp, "src", "ferryd")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'fake ferryd: cannot start' >&2\nexit 3\n")
        os.chmod(fake, 0o755)
        r = ferry_lab("up", "--name", name, "--hosts", "2", "--subnet", "10.79.0.0/24",
                      check=False, env={"FERRY_BUILD": tmp})
        assert r.returncode == 1
        assert "exited with 3" in r.stderr and "fake ferryd: cannot start" in r.stderr
        assert_lab_gone(name, Lab.default_dir(name))
    finally:
        d = Lab.default_dir(name)
        if os.path.exists(os.path.join(d, ferrylab.STATE_FILE)):
            Lab.load(d).down()
        shutil.rmtree(tmp, ignore_errors=True)
