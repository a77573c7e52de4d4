# SPDX-License-Identifier: MIT
"""The cluster end to end on labs: three hosts form a cluster (and bad joins change nothing),
`node list` from any node, the leader's ferryd killed (a new leader takes writes; the time is
printed), the killed node restarted (it catches up), a follower and then the leader cut off
the segment for 8 s (each loses quorum and refuses writes, the others mark it down and keep
working; once the link is back writes through it are taken within 3 s, and it catches up), and a five-host lab where a frozen ferryd is marked down
within threshold x interval + 1 s (and not before threshold - 1 intervals)."""
import json
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import lab_down  # noqa: E402
from ferrylab import Lab, LabError  # noqa: E402
from ferrytest import BUILD, FERRY, run, wait_for  # noqa: E402

NAME = f"c{os.getpid()}"
SUBNET = "10.81.0.0/24"
NAME5 = f"c{os.getpid()}f"
SUBNET5 = "10.82.0.0/24"
NOWHERE = "10.81.0.99:7443"  # on the segment, but no host has that address
POLL_S = 0.02
# docs/architecture.md: kill -> write median 856 ms, max 976 ms over 10 kills (bench/election,
# whose own target for every round is 2000 ms: twice the measured max, for a loaded 2-CPU host).
ELECTION_MAX_MS = 2000
CATCH_UP_S = 20
QUORUM_LOST_S = 5  # "within a few seconds"
# A node cut off the segment stays off CUT_S, then writes through it must be taken again within
# HEAL_S of its link coming back. With libraft's stock transport they were not: its connections
# retransmit on TCP's backoff (the next try 0.2 * (2^k - 1) s after the cut: 6.2, 12.6, 25.4 s),
# so a node back after 8 s heard the leader ~5 s later (5.5 and 6.2 s measured; 0.4-1.9 s with
# ferry's transport, whatever the cut's length: docs/architecture.md, "Raft transport").
CUT_S = 8
HEAL_S = 3


def missing():
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges)"
    for b in (FERRY, os.path.join(BUILD, "src", "ferryd")):
        if not os.access(b, os.X_OK):
            return f"{b} is not built"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


# ---- helpers ---------------------------------------------------------------------------------

def status(lab, h):
    st, err = lab.cluster_status(h)
    assert st is not None, f"{h.name}: cluster status: {err}"
    return st


def member(st, name):
    return next(m for m in st["members"] if m["name"] == name)


def down_limit_ms(st):
    t = st["timeouts"]
    return t["node_heartbeat_ms"] * t["node_down_after"] + 1000


def logs(lab):
    return "\n".join(f"--- {h.name} ({h.log}):\n{h.log_tail(1500)}" for h in lab.hosts)


def run_lab(*args):
    """The real `ferry lab ARGS --name NAME`; returns its stdout."""
    return run([FERRY, "lab", *args, "--name", NAME],
               env=dict(os.environ, FERRY_BUILD=BUILD)).stdout


def ms_since(t0):
    return round((time.monotonic() - t0) * 1000)


class Writes:
    """Cluster writes for the tests: VM records created through POST /v1/vms (placed on the
    host asked, so a dead node is never the owner), named PREFIX1, PREFIX2, ..."""

    def __init__(self, lab, prefix):
        self.lab, self.prefix, self.n = lab, prefix, 0

    @property
    def last(self):
        return f"{self.prefix}{self.n}"

    def try_once(self, h, timeout=5):
        """(status, body) of one write asked of h; status None when h did not answer."""
        self.n += 1
        try:
            return self.lab.write_vm(h, self.last, node=h.name, timeout=timeout)
        except LabError as e:
            return None, {"error": {"message": str(e)}}


def wait_caught_up(lab, h, others, timeout=CATCH_UP_S):
    """Waits until h has applied at least what the others had committed when this started and
    names the same leader; returns the ms it took."""
    t0 = time.monotonic()
    target = max(status(lab, o)["commit_index"] for o in others)
    last = {}

    def ok():
        st, err = lab.cluster_status(h)
        if st is None:
            last["err"] = err
            return False
        last["st"] = {k: st.get(k) for k in ("state", "term", "commit_index", "last_applied",
                                              "quorum")}
        leader = (st.get("leader") or {}).get("name")
        return (st["commit_index"] >= target and st["last_applied"] >= target and leader and
                leader == (status(lab, others[0]).get("leader") or {}).get("name"))
    try:
        wait_for(ok, timeout, f"{h.name} to catch up to index {target}", interval=POLL_S)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen {last}\n{logs(lab)}") from None
    return ms_since(t0)


# ---- the 3-host lab --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    lab = None
    try:
        lab = Lab.up(NAME, hosts=3, subnet=SUBNET, cluster=False)
        yield lab
    finally:
        lab_down(lab, NAME)


@pytest.fixture
def cluster(lab):
    """The lab's three hosts as one cluster: formed by the first test below; formed (or
    completed, when that test failed half-way) here when a test runs without it."""
    if not lab.state.get("cluster"):
        lab.form_cluster()
    elif set(lab.state["cluster"]["members"]) != {h.name for h in lab.hosts}:
        for h in lab.hosts:
            if h.name not in lab.state["cluster"]["members"]:
                lab.join_cluster(h)
        lab.wait_cluster()
    return lab


def test_three_hosts_form_a_cluster_and_bad_joins_change_nothing(lab):
    h1, h2, h3 = lab.host(1), lab.host(2), lab.host(3)

    # Outside a cluster: the 409 is printed as the daemon says it; node list shows this node.
    r = h3.cli("cluster", "status", check=False)
    assert r.returncode == 1 and r.stderr.startswith("ferry: not in a cluster"), r.stderr
    code, body = h3.api("GET", "/v1/cluster/status")
    assert code == 409, (code, body)
    alone = h3.cli_json("node", "list")["nodes"]
    assert [n["name"] for n in alone] == ["host3"]

    # host1 + host2 form a cluster the way `ferry lab up` does it (init, join, wait).
    lab.form_cluster(hosts=[h1, h2])
    cl = lab.state["cluster"]
    before = status(lab, h1)
    names_before = sorted((m["name"], m["role"]) for m in before["members"])
    assert names_before == [("host1", "voter"), ("host2", "voter")]

    # The token pins the cluster's CA: "SECRET.SHA256", the fingerprint every member shows.
    token = open(cl["token_file"]).read().strip()
    secret, _, pin = token.partition(".")
    fp = before["tls"]["ca_fingerprint"]
    assert pin == fp.replace(":", "").lower() and len(pin) == 64, (token, fp)
    assert status(lab, h2)["tls"]["ca_fingerprint"] == fp
    alone_ca = h3.cli_json("node", "show")["tls"]["ca_fingerprint"]
    assert alone_ca != fp  # host3 has a CA of its own until it joins
    # A wrong secret with the right pin: 401, from the CLI exit 1 with the daemon's message.
    body = {"address": cl["api_addr"], "token": "0" * 32 + "." + pin}
    code, reply = h3.api("POST", "/v1/cluster/join", body)
    assert code == 401, (code, reply)
    r = h3.cli("cluster", "join", cl["api_addr"], "--token", "0" * 32 + "." + pin, check=False)
    assert r.returncode == 1 and r.stderr.startswith("ferry: ") and r.stdout == "", r
    print(f"\nwrong token: {r.stderr.strip()}")
    # The right secret with another CA's pin (a man in the middle, a wrong address): refused
    # before the secret goes out, saying which fingerprint it found.
    wrong_pin = ("f" if pin[0] != "f" else "e") + pin[1:]
    r = h3.cli("cluster", "join", cl["api_addr"], "--token", f"{secret}.{wrong_pin}",
               check=False)
    assert r.returncode == 1 and "not the one the token pins" in r.stderr and fp in r.stderr, r
    print(f"wrong pin: {r.stderr.strip()}")
    # A token without a pin (as before TLS): refused with what to use instead.
    code, reply = h3.api("POST", "/v1/cluster/join", {"address": cl["api_addr"],
                                                       "token": secret})
    assert code == 400 and "no CA fingerprint" in reply["error"]["message"], (code, reply)
    assert h3.cli_json("node", "show")["tls"]["ca_fingerprint"] == alone_ca
    # No such address: a clear error in bounded time; nothing changes.
    t0 = time.monotonic()
    nopin = "0" * 32 + "." + "0" * 64
    r = h3.cli("cluster", "join", NOWHERE, "--token", nopin, check=False, timeout=60)
    took = ms_since(t0)
    assert r.returncode == 1 and NOWHERE in r.stderr, r.stderr
    print(f"join to {NOWHERE}: exit {r.returncode} after {took} ms: {r.stderr.strip()}")
    code, reply = h3.api("POST", "/v1/cluster/join", {"address": NOWHERE, "token": nopin},
                         timeout=60)
    assert code == 503, (code, reply)
    # Usage errors never reach the daemon.
    for args in (["cluster", "join", "10.81.0.11"], ["cluster", "join", NOWHERE],
                 ["cluster", "join", "nohost:7443", "--token", "x"]):
        r = h3.cli(*args, check=False)
        assert r.returncode == 2 and "Try 'ferry cluster join --help'" in r.stderr, (args, r)
    # A second init on a member: 409, exit 1.
    for h in (h1, h2):
        code, reply = h.api("POST", "/v1/cluster/init", {})
        assert code == 409, (h.name, code, reply)
        r = h.cli("cluster", "init", check=False)
        assert r.returncode == 1 and r.stderr.startswith("ferry: "), r.stderr
    # A member joining again: 409.
    code, reply = h2.api("POST", "/v1/cluster/join",
                         {"address": cl["api_addr"], "token": open(cl["token_file"]).read().strip()})
    assert code == 409, (code, reply)

    assert h3.cli("cluster", "status", check=False).returncode == 1
    after = status(lab, h1)
    assert sorted((m["name"], m["role"]) for m in after["members"]) == names_before
    assert sorted(n["name"] for n in h1.cli_json("node", "list")["nodes"]) == ["host1", "host2"]
    assert after["cluster_id"] == before["cluster_id"]
    assert h3.cli_json("node", "show")["tls"]["ca_fingerprint"] == alone_ca

    # host3 joins for real: three up voters that agree on the leader, on every node.
    lab.join_cluster(h3)
    leader = lab.wait_cluster()
    ids = set()
    for h in lab.hosts:
        st = status(lab, h)
        ids.add(st["cluster_id"])
        assert st["voters"] == 3 and st["quorum"] is True, (h.name, st)
        assert st["leader"]["name"] == leader.name, (h.name, st["leader"])
        assert sorted(m["name"] for m in st["members"]) == ["host1", "host2", "host3"]
        assert all(m["role"] == "voter" for m in st["members"]), st["members"]
        assert all(m["state"] == "up" and m["admin"] == "active" for m in st["members"]), st
        assert [m["name"] for m in st["members"] if m["leader"]] == [leader.name]
        assert st["timeouts"]["election_ms"] > st["timeouts"]["heartbeat_ms"] > 0
    assert ids == {lab.state["cluster"]["id"]}
    # host3 now has the cluster's CA and a certificate of its own from it.
    show3 = h3.cli_json("node", "show")["tls"]
    assert show3["ca_fingerprint"] == fp, show3
    assert show3["node_fingerprint"] != status(lab, h1)["tls"]["node_fingerprint"]
    with open(lab.path) as f:
        assert json.load(f)["cluster"]["id"] == lab.state["cluster"]["id"]
    # The human table of cluster status.
    out = h2.cli("cluster", "status").stdout
    for word in ("quorum:", "yes (3 voters)", "term:", "commit index:", "timeouts:",
                 f"tls ca:       {fp} (SHA-256",
                 "HEALTH", "ADMIN", "LAST-CONTACT", f"leader:       {leader.name}"):
        assert word in out, (word, out)
    # ferry lab status shows the cluster.
    lst = json.loads(run_lab("status", "-o", "json"))
    assert lst["healthy"] and lst["cluster"]["id"] == lab.state["cluster"]["id"], lst
    assert lst["cluster"]["leader"] == leader.name and lst["cluster"]["agreed"]


def test_tcp_api_speaks_only_verified_https(cluster):
    """The TCP API as a remote user meets it: the CLI and curl with the cluster's CA work;
    without it, or over plain HTTP, a clear refusal; the CA itself is public."""
    lab = cluster
    h1, h2 = lab.host(1), lab.host(2)
    ca = lab.ca_file()
    tok = ["-H", f"Authorization: Bearer {lab.token()}"]
    r = lab.client_exec(["ferry", "--url", h1.url, "--ca", ca, "-o", "json", "node", "show"])
    assert json.loads(r.stdout)["name"] == "host1"
    # Without the CA: the system's CAs do not know it.
    env = lab.env()
    env.pop("FERRY_CA")
    r = lab._ns_run(lab.client_ns, ["ferry", "--url", h2.url, "node", "show"], env, False, 30)
    assert r.returncode == 1 and "certificate is not trusted" in r.stderr \
        and "--ca FILE" in r.stderr, r.stderr
    print(f"\nwithout the CA: {r.stderr.strip()}")
    # Another CA (host's own CAs are gone: a CA of another cluster is just as foreign).
    other = os.path.join(os.path.dirname(lab.path), "other-ca.crt")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", other + ".key", "-out", other, "-subj", "/CN=other", "-days", "1"])
    r = lab._ns_run(lab.client_ns, ["ferry", "--url", h2.url, "--ca", other, "node", "show"],
                    env, False, 30)
    assert r.returncode == 1 and "certificate is not trusted" in r.stderr, r.stderr
    # Plain HTTP: the CLI refuses the URL, the port answers no HTTP.
    r = lab.client_exec(["ferry", "--url", h1.url.replace("https://", "http://"), "node", "show"],
                        check=False)
    assert r.returncode == 2 and "speaks HTTPS only" in r.stderr, r.stderr
    r = lab.client_exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *tok,
                         h1.url.replace("https://", "http://") + "/v1/node"], check=False)
    assert r.returncode != 0 and r.stdout == "000", r
    # curl verifying against the CA; the CA without a token, with its fingerprint.
    r = lab.client_exec(["curl", "-sf", "--cacert", ca, *tok, h2.url + "/v1/node"])
    assert json.loads(r.stdout)["name"] == "host2"
    r = lab.client_exec(["curl", "-sf", "--cacert", ca, h2.url + "/v1/cluster/ca"])
    got = json.loads(r.stdout)
    with open(ca) as f:
        assert got["ca"] == f.read()
    assert got["ca_fingerprint"] == status(lab, h1)["tls"]["ca_fingerprint"]
    r = lab.client_exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca,
                         h2.url + "/v1/node"], check=False)
    assert r.stdout == "401", r  # everything else still needs the token
    # The files: 0600 in the state dir.
    for f in ("ca.crt", "ca.key", "node.crt", "node.key"):
        st = os.stat(os.path.join(h2.state_dir, "tls", f))
        assert st.st_mode & 0o777 == 0o600, (f, oct(st.st_mode))


def test_node_list_from_any_node(cluster):
    lab = cluster
    h3 = lab.host(3)
    leader = lab.leader()
    # Nodes heartbeat each other every node_heartbeat_ms; a node that joined a moment ago may
    # not have been heard from yet.
    hb = status(lab, h3)["timeouts"]["node_heartbeat_ms"]
    wait_for(lambda: all(n["last_heartbeat_ms"] is not None
                         for n in h3.cli_json("node", "list")["nodes"]),
             3 * hb / 1000, "host3 to have heard from every node", interval=POLL_S)
    # A node joins as a spare and is promoted to voter once it caught up with the log: right
    # after the lab formed (this test alone) that may still be under way.
    wait_for(lambda: all(n["role"] == "voter" for n in h3.cli_json("node", "list")["nodes"]),
             10, "every node to be a voter", interval=POLL_S)
    reply = h3.cli_json("node", "list")
    nodes = {n["name"]: n for n in reply["nodes"]}
    assert sorted(nodes) == ["host1", "host2", "host3"]
    for n in nodes.values():
        assert n["state"] == "up" and n["admin"] == "active" and n["role"] == "voter", n
        assert n["memory"]["total_mib"] > 0 and n["memory"]["free_mib"] > 0, n
        assert n["memory"]["used_mib"] + n["memory"]["free_mib"] == n["memory"]["total_mib"]
        assert n["accel"] in ("kvm", "tcg"), n
        assert n["last_heartbeat_ms"] is not None and n["last_heartbeat_ms"] < 2 * hb, n
    assert [n for n in nodes if nodes[n]["leader"]] == [leader.name]
    table = h3.cli("node", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "HEALTH", "ADMIN", "LEADER", "ROLE", "VMS",
                                "CPUS", "LOAD1", "CPU%", "MEM-TOTAL", "MEM-USED", "MEM-FREE", "ACCEL", "LAST-HEARTBEAT"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert sorted(rows) == ["host1", "host2", "host3"]
    assert all(cells[1:3] == ["up", "active"] for cells in rows.values()), table
    assert [n for n, cells in rows.items() if "*" in cells] == [leader.name], table


def test_leader_killed_a_new_one_takes_writes_and_the_old_catches_up(cluster):
    lab = cluster
    writes = Writes(lab, "k")
    old = lab.leader()
    assert old is not None, logs(lab)
    survivors = [h for h in lab.hosts if h.name != old.name]
    code, body = writes.try_once(survivors[0])
    assert code == 201 and body.get("owner") == survivors[0].name, (code, body)
    term = status(lab, survivors[0])["term"]

    t0 = lab.kill_ferryd(old, signal.SIGKILL)
    accepted, last = None, None
    while accepted is None and time.monotonic() - t0 < 30:
        for h in survivors:
            code, body = writes.try_once(h, timeout=5)
            last = (h.name, code, body)
            if code == 201:
                accepted = (ms_since(t0), h)
                break
        else:
            time.sleep(POLL_S)
    assert accepted, f"no write accepted 30 s after the leader died; last: {last}\n{logs(lab)}"
    ms, h = accepted
    new = lab.leader()
    print(f"\nleader {old.name} killed: write accepted on {h.name} after {ms} ms "
          f"(new leader {new.name if new else None}, {writes.n} write attempts)")
    assert new is not None and new.name != old.name
    assert status(lab, new)["term"] > term
    assert ms < ELECTION_MAX_MS, f"kill -> write took {ms} ms"

    # The old leader restarts with the same arguments and catches up from its log + the leader.
    lab.start_ferryd(old)
    took = wait_caught_up(lab, old, survivors)
    print(f"{old.name} restarted: caught up in {took} ms")
    # Its status agrees with the others', and it is marked up again.
    lab.wait_cluster(timeout=CATCH_UP_S)
    vms = {v["name"] for v in old.cli_json("vm", "list")["vms"]}
    assert writes.last in vms, sorted(vms)


def cut_off(lab, victim, tag):
    """Cuts victim off the segment for CUT_S and checks: it reports no quorum within
    QUORUM_LOST_S and refuses a write; the other two mark it down within threshold x interval
    + 1 s and keep taking writes; once the link is back writes through it are taken within
    HEAL_S, it catches up and is marked up again."""
    writes = Writes(lab, tag)
    others = [h for h in lab.hosts if h.name != victim.name]
    limit = down_limit_ms(status(lab, others[0]))
    role = "leader" if lab.leader().name == victim.name else "follower"

    t0 = time.monotonic()
    lab.link_down(victim)
    try:
        wait_for(lambda: status(lab, victim)["quorum"] is False, QUORUM_LOST_S,
                 f"{victim.name} to report no quorum", interval=POLL_S)
        lost = ms_since(t0)
        code, body = writes.try_once(victim, timeout=15)
        assert code == 503, (code, body)
        print(f"\n{victim.name} ({role}) cut off: no quorum after {lost} ms; a write there: "
              f"{code} {(body.get('error') or {}).get('message')}")

        def marked_down():
            return all(member(status(lab, o), victim.name)["state"] == "down" for o in others)
        wait_for(marked_down, (limit + 3000) / 1000,
                 f"{others[0].name} and {others[1].name} to mark {victim.name} down",
                 interval=POLL_S)
        down = ms_since(t0)
        print(f"{victim.name} marked down by the others after {down} ms (limit {limit} ms)")
        # Health is not the admin state: a node that is down is still active.
        assert member(status(lab, others[0]), victim.name)["admin"] == "active"
        # The other two keep working: a leader among them with quorum, and writes.
        for o in others:
            st = status(lab, o)
            assert st["quorum"] and st["leader"]["name"] in [h.name for h in others], st
        code, body = writes.try_once(others[0])
        assert code == 201, (code, body)
        assert down <= limit, f"marked down after {down} ms, over {limit} ms"

        # It stays without quorum for as long as it is cut off.
        def cut_long_enough():
            assert status(lab, victim)["quorum"] is False, f"{victim.name} has quorum while cut off"
            return time.monotonic() - t0 >= CUT_S
        wait_for(cut_long_enough, CUT_S + 5, f"{CUT_S} s of cut", interval=0.25)
    finally:
        lab.link_up(victim)
    t1 = time.monotonic()
    # Back on the segment, it hears the leader again at once: writes through it are taken.
    last = {}

    def write_taken():
        last["answer"] = writes.try_once(victim)
        return last["answer"][0] == 201
    try:
        wait_for(write_taken, HEAL_S, f"a write through {victim.name} to be taken")
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer {last.get('answer')}\n{logs(lab)}") from None
    print(f"{victim.name} back after {ms_since(t0)} ms cut off: a write through it taken "
          f"{ms_since(t1)} ms after its link came up")
    took = wait_caught_up(lab, victim, others)
    wait_for(lambda: member(status(lab, others[0]), victim.name)["state"] == "up", 10,
             f"{victim.name} to be marked up again", interval=POLL_S)
    assert member(status(lab, others[0]), victim.name)["admin"] == "active"
    print(f"{victim.name} back: caught up in {took} ms, marked up after {ms_since(t1)} ms")
    assert writes.last in {v["name"] for v in victim.cli_json("vm", "list")["vms"]}
    lab.wait_cluster(timeout=CATCH_UP_S)


def test_follower_cut_off_loses_quorum_and_catches_up(cluster):
    lab = cluster
    lab.wait_cluster(timeout=CATCH_UP_S)
    leader = lab.leader()
    victim = lab.host(3) if leader.name != "host3" else lab.host(2)
    cut_off(lab, victim, "f")


def test_leader_cut_off_steps_down_and_catches_up(cluster):
    lab = cluster
    lab.wait_cluster(timeout=CATCH_UP_S)
    cut_off(lab, lab.leader(), "l")


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_restart_keeps_vms_running_and_a_wall_clock_jump_changes_nothing(cluster, tmp_path):
    """A follower's ferryd is killed while its VM runs: the VM never stops answering, and the
    restarted ferryd catches up and manages it again. That ferryd then sees its wall clock jump
    two hours ahead and one hour back (libfaketime; the monotonic clock is left alone): nobody
    marks it down, no election happens, writes through it still work."""
    lab = cluster
    from ferrytest import GUEST, PROBE
    lab.wait_cluster(timeout=CATCH_UP_S)
    leader = lab.leader()
    f = next(h for h in lab.hosts if h.name != leader.name)
    ip = lab.guest_ip(9)
    env = dict(os.environ, FERRY_GUEST_DIR=GUEST)
    run([FERRY, "--socket", f.sock, "vm", "create", "clk1", "--node", f.name, "--memory", "128",
         "--appliance", "--guest-ip", f"{ip}/24", "--workload", "probe", "--nic", "br0",
         "--disk", f"{lab.csv}/clk1.vhd,size=32", "--start"], env=env)
    lab.client_exec([PROBE, "wait", ip, "--timeout-s", "90"], timeout=100)
    pid = f.cli_json("vm", "show", "clk1")["pid"]
    jitter = json.loads(lab.client_exec([PROBE, "udp", ip, "--interval-ms", "2", "--duration-s",
                                         "2", "--json"]).stdout.strip().splitlines()[-1])
    out = tmp_path / "probe.json"
    with open(out, "w") as o:
        prober = lab.client_popen([PROBE, "udp", ip, "--interval-ms", "2", "--json"], stdout=o)
    try:
        lab.kill_ferryd(f, signal.SIGKILL)
        clock = tmp_path / "faketime"
        clock.write_text("+0\n")
        lab.start_ferryd(f, env={"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_NO_CACHE": "1",
                                 "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                                 "FAKETIME_TIMESTAMP_FILE": str(clock)})
        wait_caught_up(lab, f, [leader])
        wait_for(lambda: f.cli_json("vm", "show", "clk1")["state"] == "running", 20, "re-attach")
        assert f.cli_json("vm", "show", "clk1")["pid"] == pid, "the VM's QEMU must be the same"
        time.sleep(1)
    finally:
        prober.send_signal(signal.SIGINT)
        prober.wait(30)
    res = json.loads(out.read_text())
    print(f"\n{f.name} ferryd killed and restarted: VM longest gap {res['longest_gap_ms']} ms "
          f"(its own before: {jitter['longest_gap_ms']} ms), {res['lost']} of {res['sent']} probes "
          "lost")
    # ferryd is not in the VM's data path (test_host.py: restart_gap_limit_ms): loss under 1 %,
    # answering at the end, no gap over twice the guest's own jitter (at least 150 ms).
    assert res["received"] >= 0.99 * res["sent"] and res["last_reply_age_ms"] < 100, res
    assert res["longest_gap_ms"] < max(150, 2 * jitter["longest_gap_ms"]), (res, jitter)

    term = status(lab, leader)["term"]
    limit_s = down_limit_ms(status(lab, leader)) / 1000
    writes = Writes(lab, "jump")
    for jump in ("+7200", "-3600"):
        clock.write_text(jump + "\n")
        # The preload works: an event the node records now carries its jumped wall clock
        # (without this, the test would pass without testing anything).
        f.cli("vm", "pause", "clk1")
        f.cli("vm", "resume", "clk1")
        code, body = f.api("GET", "/v1/events?limit=1000")
        assert code == 200, body
        stamp = body["events"][-1]["time_ms"] / 1000
        assert abs(stamp - time.time() - int(jump)) < 120, (jump, body["events"][-1])
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s + 1:
            st = status(lab, leader)
            assert member(st, f.name)["state"] == "up", (jump, st, logs(lab))
            assert st["term"] == term, f"an election happened after the jump {jump}"
            time.sleep(0.2)
        code, body = writes.try_once(f)
        assert code == 201, (jump, code, body)
        fst = status(lab, f)
        assert fst["quorum"] and fst["term"] == term, fst
    run([FERRY, "--socket", f.sock, "vm", "delete", "clk1", "--force"])


# ---- the 7-host lab ---------------------------------------------------------------------------

def to_hb(st):
    return st["timeouts"]["node_heartbeat_ms"]


def roles(st):
    return {m["name"]: m["role"] for m in st["members"]}


def test_seven_hosts_five_voters_a_frozen_voter_is_marked_down_in_time_and_replaced():
    """Seven hosts: the cluster keeps five Raft voters (ferryd --max-voters, default 5), so
    the 6th and 7th join as standbys. A voter's ferryd frozen (SIGSTOP) is marked down in
    time; the leader then makes it a standby and an up standby a voter, so the cluster has
    five up voters again; thawed, it stays a standby. Removed for good, the others go on."""
    lab = None
    try:
        lab = Lab.up(NAME5, hosts=7, subnet=SUBNET5)  # formed by `up` itself
        leader = lab.wait_cluster()
        st = status(lab, leader)
        assert len(st["members"]) == 7 and st["voters"] == 5, st["members"]
        assert roles(st)["host6"] == "standby" and roles(st)["host7"] == "standby", roles(st)
        # Heartbeats go to the leader only; its answers tell every node of every other one.
        follower = next(h for h in reversed(lab.hosts) if h.name != leader.name)

        def everyone_heard():
            nodes = follower.cli_json("node", "list")["nodes"]
            return len(nodes) == 7 and all(
                n["last_heartbeat_ms"] is not None and n["last_heartbeat_ms"] < 3 * to_hb(st)
                and n["memory"]["total_mib"] > 0 for n in nodes)
        wait_for(everyone_heard, 3 * to_hb(st) / 1000,
                 f"{follower.name} to know of every node through the leader",
                 interval=POLL_S)
        victim = next(h for h in reversed(lab.hosts)
                      if h.name != leader.name and roles(st)[h.name] == "voter")
        to = st["timeouts"]
        limit = down_limit_ms(st)
        # Sooner than threshold - 1 missed heartbeats would be a false alarm.
        floor = to["node_heartbeat_ms"] * (to["node_down_after"] - 1)
        t0 = lab.kill_ferryd(victim, signal.SIGSTOP)
        wait_for(lambda: member(status(lab, leader), victim.name)["state"] == "down",
                 (limit + 3000) / 1000, f"{victim.name} to be marked down", interval=POLL_S)
        took = ms_since(t0)
        print(f"\n7 hosts: {victim.name} stopped (SIGSTOP), marked down after {took} ms "
              f"(expected {floor}..{limit} ms)")
        assert took <= limit, f"marked down after {took} ms, over {limit} ms"
        assert took >= floor, f"marked down after {took} ms: before {floor} ms, too soon"
        # Every other node applies that within a moment (followers apply what the leader
        # committed with its next Raft heartbeat).
        others = [h for h in lab.hosts if h.name != victim.name]
        wait_for(lambda: all(member(status(lab, h), victim.name)["state"] == "down"
                             for h in others), 2, "every node to see it down", interval=POLL_S)
        assert all(status(lab, h)["quorum"] for h in others)
        down = {n["name"]: n for n in leader.cli_json("node", "list")["nodes"]}[victim.name]
        assert down["state"] == "down" and down["admin"] == "active", down

        def five_up_voters():
            s2 = status(lab, leader)
            voters = [m for m in s2["members"] if m["role"] == "voter"]
            return (len(voters) == 5 and all(m["state"] == "up" for m in voters)
                    and roles(s2)[victim.name] == "standby" and s2)
        s2 = wait_for(five_up_voters, 10, "the leader to replace the dead voter with a standby",
                      interval=POLL_S)
        promoted = sorted(n for n, r in roles(s2).items() if r == "voter" and roles(st)[n] != "voter")
        print(f"7 hosts: {victim.name} made a standby, {promoted} made a voter, "
              f"{ms_since(t0)} ms after the freeze")
        assert len(promoted) == 1 and promoted[0] in ("host6", "host7"), roles(s2)
        said = [e["message"] for e in leader.cli_json("events")["events"]
                if e["type"] == "node.role"]
        assert any(m.startswith(f"{victim.name} is a standby now") for m in said), said
        assert any(m.startswith(f"{promoted[0]} is a voter now") for m in said), said
        lab.kill_ferryd(victim, signal.SIGCONT)
        wait_for(lambda: member(status(lab, leader), victim.name)["state"] == "up", 15,
                 f"{victim.name} to be marked up again", interval=POLL_S)
        lab.wait_cluster()
        assert roles(status(lab, leader))[victim.name] == "standby"

        # A host that died for good is removed by an operator from any other node.
        lab.kill_ferryd(victim, signal.SIGKILL)
        asker = next(h for h in others if h.name != leader.name)
        bad = asker.cli("cluster", "remove", "nosuchnode", check=False)
        assert bad.returncode == 1 and "nosuchnode" in bad.stderr, bad.stderr
        asker.cli("cluster", "remove", victim.name)
        wait_for(lambda: all(victim.name not in [m["name"] for m in status(lab, h)["members"]]
                             for h in others), 10, f"{victim.name} gone from every member")
        st = status(lab, asker)
        assert st["voters"] == 5 and st["quorum"] and len(st["members"]) == 6, st
        # Reads are local and may lag the leader by a moment (stale_ms says how much).
        wait_for(lambda: victim.name not in [n["name"] for n in
                                             asker.cli_json("node", "list")["nodes"]],
                 5, f"{victim.name} gone from node list")
    finally:
        lab_down(lab, NAME5)
