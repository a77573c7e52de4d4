# SPDX-License-Identifier: MIT
"""The guest's memory verifier and `ferry-probe memverify`: every verdict on guest integrity
rests on them, so they are tested against memory corrupted on purpose.

The verifier is a static program; here it runs on the host, in a network namespace of this
test's own (it listens on UDP 7003), and its memory is changed under it through
/proc/PID/mem: a page put back to an older generation (a write lost by a migration), a page
with one word changed (part of a write lost) and a zeroed page (a page never copied)."""
import json
import os
import struct
import subprocess
import time

import pytest

from ferrytest import BUILD, PROBE, run, wait_for

MEMVERIFY = os.path.join(BUILD, "guest", "memverify")
MAGIC = 0x31305645564D5946
PAGE = 4096


def missing():
    if os.geteuid() != 0:
        return "needs root (a network namespace)"
    for b in (MEMVERIFY, PROBE):
        if not os.access(b, os.X_OK):
            return f"{b} is not built"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture
def ns():
    name = f"fymv{os.getpid()}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run(["ip", "netns", "del", name], check=False)


class Verifier:
    def __init__(self, ns, *args):
        self.ns = ns
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, MEMVERIFY, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        try:
            out, err = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        return out, err, self.p.returncode

    def ask(self, *args, check=None):
        r = run(["ip", "netns", "exec", self.ns, PROBE, "memverify", "127.0.0.1", "--json",
                 *args], check=False, timeout=90)
        rep = json.loads(r.stdout.strip().splitlines()[-1])
        if check is not None:
            assert r.returncode == check, f"exit {r.returncode}: {rep} {r.stderr}"
        return rep, r.returncode

    def working_set(self, mb):
        """Start address of the verifier's working set (its one anonymous mapping of mb MiB)."""
        with open(f"/proc/{self.p.pid}/maps") as f:
            for line in f:
                addr, perms = line.split()[:2]
                lo, hi = (int(x, 16) for x in addr.split("-"))
                if hi - lo == mb << 20 and perms.startswith("rw"):
                    return lo
        raise AssertionError(f"no {mb} MiB mapping in /proc/{self.p.pid}/maps")

    def page(self, base, k):
        with open(f"/proc/{self.p.pid}/mem", "rb") as f:
            f.seek(base + k * PAGE)
            return f.read(PAGE)

    def put(self, base, k, data, offset=0):
        with open(f"/proc/{self.p.pid}/mem", "r+b", buffering=0) as f:
            f.seek(base + k * PAGE + offset)
            f.write(data)


def header(page):
    return struct.unpack_from("<4Q", page)  # magic, page index, generation, checksum


def test_clean_then_each_kind_of_loss_is_reported(ns):
    v = Verifier(ns, "-m", "4", "-w", "2")
    try:
        wait_for(lambda: v.ask("--scans", "0")[1] == 0, 20, "the verifier to answer")
        rep, _ = v.ask("--scans", "2", check=0)
        assert rep["clean"] and rep["bad"] == 0 and rep["scans_waited"] >= 2, rep
        assert rep["mb"] == 4 and rep["write_rate_mb"] == 2 and rep["restarted"] is False, rep
        boot = rep["boot_id"]

        base = v.working_set(4)
        assert header(v.page(base, 100))[:2] == (MAGIC, 100)
        # stale: page 200 put back to the generation it held before its next rewrite
        old = v.page(base, 200)
        wait_for(lambda: header(v.page(base, 200))[2] > header(old)[2], 10,
                 "page 200 to be rewritten")
        v.put(base, 200, old)
        # torn: one payload word of page 300 changed
        word = struct.unpack_from("<Q", v.page(base, 300), 8 * 100)[0]
        v.put(base, 300, struct.pack("<Q", word ^ 1), 8 * 100)
        # garbage: page 400 zeroed
        v.put(base, 400, bytes(PAGE))

        rep, _ = v.ask("--scans", "2", check=1)
        assert not rep["clean"] and rep["verdict"].startswith("bad pages"), rep
        assert rep["stale"] >= 1 and rep["torn"] >= 1 and rep["garbage"] >= 1, rep
        assert rep["bad"] == rep["stale"] + rep["torn"] + rep["garbage"] + rep["ahead"], rep
        assert rep["first_bad_page"] in (200, 300, 400), rep
        # each loss is counted once: two more scans find nothing new
        again, _ = v.ask("--scans", "2", check=1)
        assert again["bad"] == rep["bad"], (rep, again)
        # the same verifier, asked with its boot id, is not "restarted"; another boot id is
        assert v.ask("--scans", "0", "--boot-id", boot)[0]["restarted"] is False
        other = format(int(boot, 16) ^ 1, "016x")
        rep, code = v.ask("--scans", "0", "--boot-id", other)
        assert code == 1 and rep["restarted"] and not rep["clean"], rep
    finally:
        out, err, _ = v.stop()
    assert "memverify: BAD page 200" in out or "memverify: BAD page 300" in out, out
    assert "memverify: BAD scan" in out, out


def test_hot_pages_are_checked_before_each_rewrite(ns):
    """A hot page is rewritten every turn; a lost write must show before the rewrite hides it."""
    v = Verifier(ns, "-m", "1", "-w", "1", "-H", "8")
    try:
        wait_for(lambda: v.ask("--scans", "0")[1] == 0, 20, "the verifier to answer")
        base = v.working_set(1)
        old = v.page(base, 3)
        wait_for(lambda: header(v.page(base, 3))[2] > header(old)[2] + 5, 10,
                 "hot page 3 to be rewritten")
        v.put(base, 3, old)
        rep, _ = v.ask("--scans", "1", check=1)
        assert rep["bad"] >= 1 and rep["first_bad_page"] == 3, rep
    finally:
        v.stop()


def test_no_answer_and_bad_arguments(ns):
    r = run(["ip", "netns", "exec", ns, PROBE, "memverify", "127.0.0.1", "--json",
             "--timeout-s", "1"], check=False)
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and not rep["answered"] and not rep["clean"], rep
    for bad in (["--scans", "x"], ["--boot-id", "zz"], ["--port", "0"], []):
        r = run([PROBE, "memverify", *bad, *(["127.0.0.1"] if bad else [])], check=False)
        assert r.returncode == 2 and "memverify" in r.stderr, (bad, r.stderr)
    for bad in (["-m", "0"], ["-w", "x"], ["-q"], ["5"]):
        r = run([MEMVERIFY, *bad], check=False)
        assert r.returncode == 2 and "memverify -h" in r.stderr, (bad, r.stderr)
    t0 = time.monotonic()
    r = run([MEMVERIFY, "-h"])
    assert "usage: memverify" in r.stdout and time.monotonic() - t0 < 5
