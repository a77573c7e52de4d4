# SPDX-License-Identifier: MIT
"""Helpers for end-to-end tests of VMs on a lab (lab/ferrylab.py): a module-scoped lab that
cleans up after itself, appliance VMs, where a VM lives (state dir, tap, QEMU), probes."""
import json
import os

import ferrylab
from ferrylab import Lab
from ferrytest import BUILD, FERRY, GUEST, processes_naming, run, wait_for


def missing():
    """Why the lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges)"
    for b in (FERRY, os.path.join(BUILD, "src", "ferryd"), os.path.join(BUILD, "src", "ferry-probe")):
        if not os.access(b, os.X_OK):
            return f"{b} is not built"
    for f in ("vmlinuz", "initrd.img"):
        if not os.path.exists(os.path.join(GUEST, f)):
            return f"no {f} in {GUEST} (build the appliance or set FERRY_GUEST_DIR)"
    return None


def leftovers(name, dir):
    """Everything of lab name that could outlive it: namespaces, live processes naming its dir,
    the dir."""
    found = [f"netns {n}" for n in ferrylab.stray_namespaces(name)]
    found += [f"pid {pid}: {cmd}" for pid, cmd in processes_naming(dir + "/")]
    if os.path.exists(dir):
        found.append(f"dir {dir}")
    return found


def assert_lab_gone(name, dir):
    """Nothing of lab name is left (processes of a torn-down netns take a moment to go)."""
    left = []
    try:
        wait_for(lambda: not (left.clear() or left.extend(leftovers(name, dir)) or left), 10,
                 "the lab to be gone")
    except AssertionError:
        raise AssertionError(f"lab {name} left behind: {left}") from None


def lab_down(lab, name, delete_vms=False):
    """Removes lab (or, when it never came up, whatever lab.json of name records), first its
    VMs when delete_vms, then checks nothing is left, also when the removal failed."""
    dir = Lab.default_dir(name)
    try:
        if lab is not None:
            for h in lab.hosts if delete_vms else ():
                try:
                    if lab._is_our_ferryd(h.rec):
                        for vm in h.cli_json("vm", "list").get("vms", []):
                            if vm.get("owner") == h.name:
                                h.cli("vm", "delete", "--force", vm["name"], check=False)
                except Exception as e:  # noqa: BLE001 - cleanup goes on; down() kills QEMUs
                    print(f"cleanup on {h.name}: {e}")
            lab.down()
        elif os.path.exists(os.path.join(dir, ferrylab.STATE_FILE)):
            Lab.load(dir).down()
    finally:
        assert_lab_gone(name, dir)


_labs = set()  # names of the labs lab_session brought up in this process


def lab_session(name, subnet, hosts=3, **up):
    """Generator for a module fixture: a formed lab, torn down (VMs deleted, then `down`)
    and checked for leftovers afterwards, also when the test failed. up: more Lab.up
    arguments (watchdog=True)."""
    os.environ.setdefault("FERRY_GUEST_DIR", GUEST)
    lab = None
    _labs.add(name)
    try:
        lab = Lab.up(name, hosts=hosts, subnet=subnet, **up)
        yield lab
    finally:
        try:
            lab_down(lab, name, delete_vms=True)
        finally:
            _labs.discard(name)


def logs(lab):
    return "\n".join(f"--- {h.name} ({h.log}):\n{h.log_tail(2500)}" for h in lab.hosts)


# The memory verifier every test guest runs beside its workload: 16 MB rewritten at 4 MB/s and
# checked once a second, so a migration that loses a write is seen (assert_guest_whole).
VERIFY = "ferry.verify_mb=16 ferry.verify_rate=4"
_boot_ids = {}  # (lab dir, ip) -> the verifier's boot id when the VM was created


def create_vm(lab, host, name, k, workload="probe", memory=256, disk=None, extra=(), cmdline="",
              nic="br0", disk_opts=""):
    """An appliance VM on host with guest IP number k, started, answering probes, its memory
    verifier answering too (it is added to workload); cmdline: more kernel parameters; extra:
    more `vm create` arguments; nic: its --nic; disk_opts: more --disk options (",bus=scsi")."""
    ip = lab.guest_ip(k)
    disk = disk or f"{lab.csv}/{name}.vhd"
    host.cli("vm", "create", name, "--node", host.name, "--memory", str(memory), "--appliance",
             "--workload", f"{workload},memverify", "--cmdline", f"{cmdline} {VERIFY}".strip(),
             "--guest-ip", f"{ip}/24", "--nic", nic, "--disk", f"{disk},size=64{disk_opts}", *extra,
             "--start")
    lab.client_exec(["ferry-probe", "wait", ip], timeout=90)
    rep = ferrylab.memverify(lab, ip, scans=0, timeout_s=60)
    assert rep["answered"], f"{name}'s memory verifier does not answer: {rep}"
    _boot_ids[(lab.dir, ip)] = rep["boot_id"]
    return ip


def vm_on(viewer, name):
    """The VM as viewer's `ferry vm list` shows it."""
    return next((v for v in viewer.cli_json("vm", "list")["vms"] if v["name"] == name), None)


def local_vm(host, name):
    """The VM as host's own ferryd has it, or None (not forwarded to another owner)."""
    if not os.path.exists(os.path.join(host.state_dir, "vms", name)):
        return None
    st, body = host.api("GET", f"/v1/vms/{name}")
    return body if st == 200 and body.get("owner") == host.name else None


def tap_exists(host, tap):
    return run(["ip", "-n", host.ns, "link", "show", tap], check=False).returncode == 0


def qemus_of(name):
    """Live QEMUs of VM name, on any host of the labs this process brought up (under
    `make check`'s parallel workers another file's lab may run a VM of the same name)."""
    mine = [Lab.default_dir(n) + "/" for n in _labs]
    return [pid for pid, cmd in processes_naming(f"guest={name},")
            if not mine or any(d in cmd for d in mine)]


def assert_runs_once(name, pid):
    """VM name runs in exactly one QEMU, the one with pid (a live, known pid: an empty list or
    a pid of 0 never passes)."""
    assert pid and pid > 0, f"{name} has no QEMU pid to compare: {pid!r}"
    found = qemus_of(name)
    assert found == [pid], f"{name} must run in exactly one QEMU, pid {pid}: {found}"


def qemus_under(host, name):
    """QEMUs of VM name whose command line points into host's directories."""
    return [pid for pid, cmd in processes_naming(f"guest={name},")
            if host.run_dir in cmd or host.state_dir in cmd]


def assert_nothing_on(host, name, taps, timeout=10):
    """No VM dir, no tap, no QEMU of name on host."""
    wait_for(lambda: not os.path.exists(os.path.join(host.state_dir, "vms", name)), timeout,
             f"{name}'s VM dir to be gone from {host.name}")
    for t in taps:
        wait_for(lambda: not tap_exists(host, t), 5, f"tap {t} to be gone from {host.name}")
    wait_for(lambda: not qemus_under(host, name), 5, f"{name}'s QEMU to be gone from {host.name}")


def wait_answering(lab, ip, seconds=3):
    """The VM answers UDP probes from the client namespace: once it answers at all (within
    20 s), `seconds` of probes every 5 ms lose under 1 % and it still answers at the end."""
    w = lab.client_exec(["ferry-probe", "wait", ip, "--timeout-s", "20"], check=False, timeout=40)
    assert w.returncode == 0, f"{ip} does not answer at all: {w.stdout}"
    r = lab.client_exec(["ferry-probe", "udp", ip, "--interval-ms", "5", "--duration-s",
                         str(seconds), "--json"], timeout=30)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["received"] >= 0.99 * res["sent"] and res["last_reply_age_ms"] < 100, \
        f"{ip} does not answer steadily: {res}"
    return res


def assert_guest_sane(viewer, name, allow=None):
    """The VM's console (as its owner has it, read through viewer) shows no guest trouble
    (ferrylab.GUEST_TROUBLE: kernel BUGs, oopses, stalls, the memory verifier's bad pages).
    allow: a compiled regex of lines a test expects (the stall reports of a guest it froze on
    purpose); they are left out of the check and printed."""
    con = viewer.cli("vm", "console", name).stdout
    if allow is not None:
        lines = con.splitlines()
        for line in (l for l in lines if allow.search(l)):
            print(f"{name}'s console, expected: {line.strip()}")
        con = "\n".join(l for l in lines if not allow.search(l))
    bad = ferrylab.guest_trouble(con)
    assert not bad, f"{name}'s guest is in trouble ({bad!r}):\n{con[-2000:]}"


def assert_guest_whole(lab, viewer, name, ip, allow=None):
    """After a migration: the memory verifier of the guest at ip (made by create_vm) finished
    two whole scans on the new host without finding a lost write, and it is the same verifier
    (the guest did not reboot); and the console shows no trouble (but what allow matches, see
    assert_guest_sane)."""
    boot = _boot_ids.get((lab.dir, ip))
    assert boot, f"{ip} was not made by create_vm: no boot id of its verifier"
    rep = ferrylab.memverify(lab, ip, scans=2, boot_id=boot, timeout_s=60)
    assert rep["clean"], f"{name}'s memory is not whole after the migration: {rep}"
    assert_guest_sane(viewer, name, allow)


def shared_volume(lab, name="csv1", via=1):
    """Generator for a test fixture: volume name on the lab's shared directory, added on host1
    (its coordinator). Afterwards, through host number via (one the test leaves up): every node
    resumed, the VMs left deleted, the volume removed (a removal that keeps failing fails
    the test: something still uses the volume)."""
    lab.hosts[0].cli("csv", "add", name, lab.csv)
    yield lab.csv
    h = lab.hosts[via]
    for x in lab.hosts:
        x.cli("node", "resume", x.name, check=False)
    for v in h.cli_json("vm", "list")["vms"]:
        wait_for(lambda: h.cli("vm", "delete", "--force", v["name"], check=False).returncode
                 == 0 or vm_on(h, v["name"]) is None, 60, f"vm delete {v['name']}")
    last = []

    def removed():
        r = h.cli("csv", "remove", name, check=False)
        last[:] = [r.stderr.strip()]
        return r.returncode == 0 or "no cluster shared volume" in r.stderr
    try:
        wait_for(removed, 60, f"csv remove {name}")
    except AssertionError:
        raise AssertionError(f"csv remove {name}: {last}") from None


def metrics(host):
    """host's /metrics as {series (name and labels as printed): value}."""
    conn = ferrylab._UnixHTTPConnection(host.sock, 10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out
