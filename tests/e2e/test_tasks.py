# SPDX-License-Identifier: MIT
"""Tasks and live events (issue #13) on a 3-host lab: a live migration, a cancelled one and a
node drain are tasks that every node lists (phases, progress, result); `ferry task show -f`
follows one to its end; GET /v1/events?follow=1, read with a raw HTTP client, brings a
migration's events live and resumes with Last-Event-ID without duplicates or gaps; bad
filters, unknown ids and cancels of ended tasks are refused with clear errors."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

import ferrylab  # noqa: E402
from labvm import create_vm, lab_session, local_vm, logs, missing, vm_on  # noqa: E402
from ferrytest import wait_for  # noqa: E402

NAME = f"tk{os.getpid()}"
SUBNET = "10.101.0.0/24"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


class EventStream:
    """GET /v1/events?follow=1 on a host's unix socket, read line by line in a thread: the
    raw text/event-stream, parsed into (id, type, data) events."""

    def __init__(self, host, last_id=None):
        self.conn = ferrylab._UnixHTTPConnection(host.sock, 30)
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        self.conn.request("GET", "/v1/events?follow=1", headers=headers)
        self.resp = self.conn.getresponse()
        self.events, self.comments, self.error = [], [], None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        ev = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line == "":
                    if ev:
                        self.events.append((int(ev["id"]), ev.get("event"),
                                            json.loads(ev["data"])))
                    ev = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    k, _, v = line.partition(": ")
                    ev[k] = v
        except Exception as e:  # a closed connection ends the reader
            self.error = e

    def close(self):
        # The reader thread holds the response's buffer while it waits: shutting the socket
        # down wakes it (end of stream) and tells ferryd the client left.
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        self.conn.close()


def task_events(stream, tid):
    return [(i, t, d) for i, t, d in stream.events
            if t and t.startswith("task.") and d.get("task", {}).get("id") == tid]


def running_task(viewer, kind, target):
    st, body = viewer.api("GET", f"/v1/tasks?kind={kind}&target={target}&state=running")
    assert st == 200, body
    return body["tasks"][0] if body["tasks"] else None


def wait_running_task(viewer, kind, target, timeout=30):
    return wait_for(lambda: running_task(viewer, kind, target), timeout,
                    f"{viewer.name} to list a running {kind} task of {target}")


def test_migration_task_everywhere_follow_and_event_stream(lab):
    h1, h2, h3 = lab.hosts
    create_vm(lab, h1, "tv1", 1, memory=128)
    stream = EventStream(h3)
    assert stream.resp.status == 200
    assert stream.resp.getheader("Content-Type") == "text/event-stream"
    # The CLI's follow, on host2 (it reads the same stream).
    cli_follow = subprocess.Popen([lab.bins["ferry"], "--socket", h2.sock, "-o", "json",
                                   "events", "-f"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    try:
        mig = h1.popen([lab.bins["ferry"], "--socket", h1.sock, "-o", "json", "vm", "migrate",
                        "tv1", "--to", "host2", "--bandwidth-mib", "32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
        t = wait_running_task(h3, "migrate", "tv1")
        tid = t["id"]
        assert t["node"] == "host1" and t["user"] == "local" and t["kind"] == "migrate", t
        follow = h2.cli("task", "show", "-f", tid, timeout=120, check=False)
        out, err = mig.communicate(timeout=120)
        assert mig.returncode == 0, f"{out}\n{err}\n{logs(lab)}"
        assert json.loads(out).get("task") == tid, out
        assert follow.returncode == 0, follow.stdout + follow.stderr
        lines = follow.stdout.splitlines()
        assert lines[-1].startswith(f"{tid} done: migrated to host2"), lines
        assert any(" data-transfer " in ln or ln.startswith("running switchover") for ln in lines), \
            lines

        # Every node lists it, ended, with the figures.
        for viewer in (h1, h2, h3):
            def ended():
                st, body = viewer.api("GET", f"/v1/tasks/{tid}")
                return body if st == 200 and body["state"] == "done" else None
            wait_for(ended, 10, f"{viewer.name} to list {tid} done")
            rec = ended()
            assert rec["phase"] == "done" and rec["percent"] == 100, rec
            assert rec["end_ms"] >= rec["start_ms"] > 0, rec
            assert "blackout (downtime)" in rec["result"], rec
            assert rec["detail"]["to"] == "host2" and rec["detail"]["downtime_ms"] >= 0, rec
        table = h3.cli("task", "list", "--kind", "migrate").stdout
        assert tid in table and "done" in table, table

        # The stream on host3 (a node that takes no part) saw the task live, in order.
        wait_for(lambda: any(t == "task.ended" for _, t, _ in task_events(stream, tid)), 10,
                 "the task.ended event on host3's stream")
        evs = task_events(stream, tid)
        types = [t for _, t, _ in evs]
        took = (evs[-1][2]["task"]["end_ms"] - evs[0][2]["task"]["start_ms"]) / 1000
        print(f"\nmigration task {tid}: {took:.1f} s, {len(evs)} task_put writes: {types}; "
              f"record {len(json.dumps(evs[-1][2]['task']))} bytes")
        assert types[0] == "task.created" and types[-1] == "task.ended", types
        assert "task.progress" in types, types
        phases = [d["task"]["phase"] for _, _, d in evs]
        assert "data-transfer" in phases or "switchover" in phases, phases
        ids = [i for i, _, _ in stream.events]
        assert ids == sorted(set(ids)), ids
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # no gap while connected

        # Resume after the task.created event: the rest comes again, no duplicate, no gap.
        first = evs[0][0]
        again = EventStream(h3, last_id=first)
        try:
            wait_for(lambda: any(i >= ids[-1] for i, _, _ in again.events), 10,
                     "the resumed stream to reach the last event")
            rids = [i for i, _, _ in again.events]
            assert rids[0] == first + 1, (first, rids[:5])
            assert rids == list(range(first + 1, first + 1 + len(rids))), rids
            assert [e for e in again.events if e[0] <= ids[-1]] == \
                [e for e in stream.events if e[0] > first], "the replay differs from the live"
        finally:
            again.close()
        cli_follow.send_signal(signal.SIGINT)
        out, err = cli_follow.communicate(timeout=10)
        assert cli_follow.returncode == 0, err
        seen = [json.loads(ln) for ln in out.splitlines()]
        mine = [e["type"] for e in seen if e.get("task", {}).get("id") == tid]
        assert mine[0] == "task.created" and mine[-1] == "task.ended", mine
        ids = [e["id"] for e in seen]
        assert ids == sorted(set(ids)), ids
    finally:
        stream.close()
        if cli_follow.poll() is None:
            cli_follow.kill()
            cli_follow.wait()
    assert vm_on(h1, "tv1")["owner"] == "host2"

    # The VM's events as the cluster tells them, asked of host3 (which took no part): the
    # source's and the destination's, merged by time, each naming its node.
    st, body = h3.api("GET", "/v1/events?scope=cluster&vm=tv1&limit=200")
    assert st == 200 and body["nodes"] == {"host1": "ok", "host2": "ok", "host3": "ok"}, body
    evs = body["events"]
    assert {e["node"] for e in evs} >= {"host1", "host2"}, evs
    assert all(e["vm"] == "tv1" for e in evs), evs
    assert [e["time_ms"] for e in evs] == sorted(e["time_ms"] for e in evs), evs
    st, few = h3.api("GET", "/v1/events?scope=cluster&vm=tv1&limit=2")
    assert st == 200 and few["events"] == evs[-2:], (few, evs[-2:])

    # Without vm: the newest N of the whole cluster (each node gives its newest N, not its
    # oldest), the same as merging every node's whole log by hand.
    seen = []

    def newest_three():
        full = []
        for h in (h1, h2, h3):
            st, b = h.api("GET", "/v1/events?limit=1000")
            assert st == 200, b
            full += [dict(e, node=h.name) for e in b["events"]]
        full.sort(key=lambda e: (e["time_ms"], e["node"], e["id"]))
        st, b = h3.api("GET", "/v1/events?scope=cluster&limit=3")
        assert st == 200, b
        seen[:] = [b["events"], full[-3:]]
        return b["events"] == full[-3:]
    try:
        wait_for(newest_three, 10, "the cluster's newest three events", interval=0.5)
    except AssertionError:
        raise AssertionError(f"cluster list {seen[0]} != merged {seen[1]}")
    out = h3.cli("events", "--cluster", "--vm", "tv1").stdout.splitlines()
    assert out[0].split() == ["TIME", "NODE", "VM", "TYPE", "MESSAGE"], out[0]
    assert {ln.split()[2] for ln in out[1:]} >= {"host1", "host2"}, out
    for q, says in (("scope=cluster&follow=1", "neither follows nor resumes"),
                    ("scope=cluster&since=3", "neither follows nor resumes"),
                    ("scope=all", "expected node or cluster"),
                    ("vm=Not_A_Name", "is not a VM name"),
                    ("vm=tv1&follow=1", "the event stream is every event of the node")):
        st, err = h3.api("GET", f"/v1/events?{q}")
        assert st == 400 and says in err["error"]["message"], (q, st, err)
    r = h3.cli("events", "--cluster", "-f", check=False)
    assert r.returncode != 0 and "do not go with --since or -f" in r.stderr, r.stderr


def test_cancel_migration_task(lab):
    h1, h2, h3 = lab.hosts
    wait_for(lambda: (vm_on(h1, "tv1") or {}).get("state") == "running", 30, "tv1 running")
    # 2 MiB/s: the pre-copy of 128 MiB takes a minute, long enough to cancel in it.
    mig = h2.popen([lab.bins["ferry"], "--socket", h2.sock, "vm", "migrate", "tv1", "--to",
                    "host3", "--bandwidth-mib", "2"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    try:
        tid = wait_running_task(h1, "migrate", "tv1")["id"]
        wait_for(lambda: h1.api("GET", f"/v1/tasks/{tid}")[1]["phase"] == "data-transfer", 30,
                 "the data transfer to begin")
        # Asked of host1: it runs on host2, which cancels it.
        r = h1.cli("task", "cancel", tid)
        assert f"cancelling {tid} (migrate tv1)" in r.stdout, r.stdout
        mig.communicate(timeout=60)
        assert mig.returncode != 0
    finally:
        if mig.poll() is None:
            mig.kill()
            mig.wait()
    for viewer in (h1, h3):
        wait_for(lambda: viewer.api("GET", f"/v1/tasks/{tid}")[1]["state"] == "cancelled", 10,
                 f"{viewer.name} to list {tid} cancelled")
    # The VM keeps running where it was.
    v = local_vm(h2, "tv1")
    assert v and v["state"] == "running", v
    assert vm_on(h3, "tv1")["owner"] == "host2"
    st, body = h3.api("POST", f"/v1/tasks/{tid}/cancel")
    assert st == 409 and "has ended (cancelled)" in body["error"]["message"], body
    r = h3.cli("task", "show", "-f", tid, check=False)
    assert r.returncode == 1 and f"{tid} cancelled" in r.stdout, r.stdout


def test_drain_task_and_errors(lab):
    h1, h2, h3 = lab.hosts
    r = h2.cli("-o", "json", "node", "drain", "host2", timeout=300, check=False)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{logs(lab)}"
    res = json.loads(r.stdout)
    tid = res["task"]
    try:
        for viewer in (h1, h2, h3):
            wait_for(lambda: viewer.api("GET", f"/v1/tasks/{tid}")[1]["state"] == "done", 10,
                     f"{viewer.name} to list the drain done")
            rec = viewer.api("GET", f"/v1/tasks/{tid}")[1]
            assert rec["kind"] == "drain" and rec["target"] == "host2", rec
            assert rec["detail"]["moved"] == 1 and rec["detail"]["total"] == 1, rec
            assert "1 of 1 VMs moved" in rec["result"], rec
        # Its migration is a task too, newest first in the list.
        st, body = h3.api("GET", "/v1/tasks?kind=migrate&target=tv1&limit=1")
        assert st == 200 and body["tasks"][0]["state"] == "done", body
        assert body["tasks"][0]["node"] == "host2", body
        st, body = h1.api("POST", f"/v1/tasks/{tid}/cancel")
        assert st == 409 and "has ended (done)" in body["error"]["message"], body
    finally:
        h1.cli("node", "resume", "host2")

    st, body = h1.api("GET", "/v1/tasks?state=bogus")
    assert st == 400 and "running, done, failed or cancelled" in body["error"]["message"], body
    st, body = h1.api("GET", "/v1/tasks?limit=0")
    assert st == 400 and "limit" in body["error"]["message"], body
    st, body = h1.api("GET", "/v1/tasks?colour=red")
    assert st == 400, body
    st, body = h1.api("GET", "/v1/tasks/nosuch-1")
    assert st == 404 and "no task nosuch-1" in body["error"]["message"], body
    r = h2.cli("task", "list", "--state", "bogus", check=False)
    assert r.returncode == 1 and "not a task state" in r.stderr, r.stderr
    r = h2.cli("task", "cancel", "nosuch-1", check=False)
    assert r.returncode == 1 and "no task nosuch-1" in r.stderr, r.stderr
    st, body = h1.api("GET", "/v1/events?follow=2")
    assert st == 400, body


def test_restart_closes_the_task_it_left(lab):
    """A ferryd killed in the middle of a migration leaves its task running in the database;
    the ferryd started again closes it as failed, with the reason, on every node."""
    h1 = lab.hosts[0]
    wait_for(lambda: (vm_on(h1, "tv1") or {}).get("state") == "running", 30, "tv1 running")
    src = lab.host(vm_on(h1, "tv1")["owner"])
    dst = next(h for h in lab.hosts if h.name != src.name)
    viewer = next(h for h in lab.hosts if h.name not in (src.name, dst.name))
    # the migration an earlier test cancelled may still be ending
    wait_for(lambda: src.api("GET", "/v1/vms/tv1/migration")[0] == 404, 60,
             "no migration of tv1 under way")
    mig = src.popen([lab.bins["ferry"], "--socket", src.sock, "vm", "migrate", "tv1", "--to",
                     dst.name, "--bandwidth-mib", "2"], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    try:
        tid = wait_running_task(viewer, "migrate", "tv1")["id"]
        lab.kill_ferryd(src)
        lab.start_ferryd(src)
        mig.communicate(timeout=30)
        assert mig.returncode != 0  # its connection went with the old ferryd

        def closed():
            st, body = viewer.api("GET", f"/v1/tasks/{tid}")
            return body if st == 200 and body["state"] != "running" else None
        rec = wait_for(closed, 20, f"{viewer.name} to list {tid} closed")
        assert rec["state"] == "failed", rec
        assert rec["result"] == f"ferryd on {src.name} restarted while the task ran", rec
        # The restarted node catches up with the log a moment later.
        wait_for(lambda: src.api("GET", f"/v1/tasks/{tid}")[1]["state"] == "failed", 20,
                 f"{src.name} to list {tid} failed")
    finally:
        if mig.poll() is None:
            mig.kill()
            mig.wait()
    # The migration itself was taken over from its journal (restart.c); cancel it if it still
    # runs. The VM runs, once, wherever it ended up.
    src.cli("vm", "migrate", "--cancel", "tv1", check=False)
    wait_for(lambda: src.api("GET", "/v1/vms/tv1/migration")[0] == 404, 60,
             "the migration to end")
    wait_for(lambda: (vm_on(viewer, "tv1") or {}).get("state") == "running", 30,
             "tv1 running")


def test_event_stream_on_tcp_and_its_limit(lab):
    """The stream on the TCP listener takes the token like any request; a ferryd serves 64
    streams at once, and a client that went away frees its place."""
    h1, h2, _ = lab.hosts
    curl = ["curl", "-sN", "--max-time", "2", "--cacert", h1.ca,
            f"{h1.url}/v1/events?follow=1&since=1"]
    r = h1.exec(curl + ["-H", f"Authorization: Bearer {lab.token()}"], check=False)
    assert r.returncode == 28, r  # still open when curl gave up
    assert r.stdout.startswith("id: 2\nevent: "), r.stdout[:200]
    r = h1.exec(curl + ["-o", "/dev/null", "-w", "%{http_code}"], check=False)
    assert r.stdout == "401", r.stdout

    streams = []
    try:
        for _ in range(64):
            streams.append(EventStream(h2))
            assert streams[-1].resp.status == 200
        st, body = h2.api("GET", "/v1/events?follow=1")
        assert st == 503 and "64 event streams are open" in body["error"]["message"], body
        for s in streams:
            s.close()
        streams = []
        # A closed client is noticed when the next event is written to it.
        h2.cli("vm", "create", "tkev", "--node", "host2", "--memory", "32", "--appliance")
        h2.cli("vm", "delete", "tkev")

        def opens():
            s = EventStream(h2)
            if s.resp.status == 200:
                streams.append(s)
                return True
            s.close()
            return False
        wait_for(opens, 20, "a stream to be served again", interval=0.5)
    finally:
        for s in streams:
            s.close()


def test_leader_closes_the_tasks_of_a_node_that_went_down(lab):
    """A node that goes silent (its ferryd frozen) is marked down; the leader closes its
    running tasks as failed with the reason. Back again, the node cannot reopen them."""
    h1 = lab.hosts[0]
    wait_for(lambda: (vm_on(h1, "tv1") or {}).get("state") == "running", 30, "tv1 running")
    src = lab.host(vm_on(h1, "tv1")["owner"])
    dst = next(h for h in lab.hosts if h.name != src.name)
    viewer = next(h for h in lab.hosts if h.name not in (src.name, dst.name))
    mig = src.popen([lab.bins["ferry"], "--socket", src.sock, "vm", "migrate", "tv1", "--to",
                     dst.name, "--bandwidth-mib", "2"], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    frozen = False
    try:
        try:
            tid = wait_running_task(viewer, "migrate", "tv1")["id"]
        except AssertionError as e:
            out = mig.communicate(timeout=5) if mig.poll() is not None else ("", "(still running)")
            raise AssertionError(f"{e}; ferry vm migrate: {out}; tasks on {viewer.name}: "
                                 f"{viewer.api('GET', '/v1/tasks')[1]}") from None
        lab.kill_ferryd(src, signal.SIGSTOP)
        frozen = True

        def closed():
            st, body = viewer.api("GET", f"/v1/tasks/{tid}")
            return body if st == 200 and body["state"] != "running" else None
        rec = wait_for(closed, 40, f"{viewer.name} to close {tid}")
        assert rec["state"] == "failed", rec
        assert rec["result"].startswith(f"node {src.name} went down while the task ran"), rec
        lab.kill_ferryd(src, signal.SIGCONT)
        frozen = False
        # Back, the node ends its migration (cancelled here); its task stays as the leader
        # closed it.
        wait_for(lambda: src.cli("vm", "migrate", "--cancel", "tv1", check=False).returncode == 0
                 or src.api("GET", "/v1/vms/tv1/migration")[0] == 404, 30,
                 "the migration to be cancelled")
        mig.communicate(timeout=60)
        wait_for(lambda: src.api("GET", "/v1/vms/tv1/migration")[0] == 404, 60,
                 "the migration to end")
        time.sleep(1.5)  # a write the node would make after its migration ended
        for h in (viewer, src):
            assert h.api("GET", f"/v1/tasks/{tid}")[1] == rec, h.name
    finally:
        if frozen:
            lab.kill_ferryd(src, signal.SIGCONT)
        if mig.poll() is None:
            mig.kill()
            mig.wait()
    wait_for(lambda: (vm_on(viewer, "tv1") or {}).get("state") == "running", 60, "tv1 running")
