# SPDX-License-Identifier: MIT
"""The watchdog backstop end to end: a one-host lab made with `ferry lab up --watchdog`, whose
ferryd feeds its emulated watchdog (ferryd --watchdog FILE); a frozen ferryd (SIGSTOP) gets its
host powered off (every process of its namespace killed, its VM's QEMU too) within the timeout;
a clean stop disarms it; bad watchdog options are refused at start. No test opens a real
/dev/watchdog: that would reset this machine."""
import json
import os
import signal
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

import ferrylab  # noqa: E402
from ferrylab import Lab  # noqa: E402
from ferrytest import BUILD, FERRY, FERRYD, GUEST, pid_alive, run, wait_for  # noqa: E402
from labvm import lab_down, missing  # noqa: E402

NAME = f"wd{os.getpid()}"
SUBNET = "10.94.0.0/24"
TIMEOUT_MS = 3000  # ferryd's default --watchdog-timeout-ms

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def ferry_lab(*args, check=True, timeout=120):
    """The real `ferry lab` (the C CLI exec'ing lab/ferry-lab)."""
    return run([FERRY, "lab", *args], check=check, timeout=timeout,
               env=dict(os.environ, FERRY_BUILD=BUILD))


def watchdog_file(h):
    return ferrylab.read_watchdog_file(h.rec["watchdog"]["file"])


@pytest.fixture(scope="module")
def lab():
    lab = None
    try:
        ferry_lab("up", "--name", NAME, "--hosts", "1", "--subnet", SUBNET, "--watchdog")
        lab = Lab.load(Lab.default_dir(NAME))
        yield lab
    finally:
        lab_down(lab, NAME)  # also when up failed half-way; checks nothing is left


def test_ferryd_feeds_its_watchdog(lab):
    h = lab.host(1)
    assert lab.state["watchdog"] is True
    wd = h.rec["watchdog"]
    assert wd["file"] == os.path.join(h.dir, "watchdog") and os.path.isfile(wd["file"])
    assert pid_alive(wd["pid"])
    argv = ferrylab._cmdline(h.pid)
    assert argv[argv.index("--watchdog") + 1] == wd["file"]
    # Its emulator runs in the root namespace, not in the host's it powers off.
    assert wd["pid"] not in ferrylab._pids_in_netns(h.ns)

    st = wait_for(lambda: watchdog_file(h), 5, "ferryd to arm its watchdog")
    assert st["armed"] is True and st["pid"] == h.pid and st["timeout_ms"] == TIMEOUT_MS
    first = st["fed_ms"]
    # Fed every quarter of the timeout, on CLOCK_MONOTONIC as the emulator reads it.
    later = wait_for(lambda: (s := watchdog_file(h)) and s["fed_ms"] > first and s, 3,
                     "the next feed")
    assert later["fed_ms"] - first <= TIMEOUT_MS / 2
    assert abs(ferrylab._mono_ms() - later["fed_ms"]) < TIMEOUT_MS
    assert "watchdog: armed emulated " + wd["file"] in h.log_tail(20000)

    st = json.loads(ferry_lab("status", "--name", NAME, "-o", "json").stdout)
    w = st["hosts"][0]["watchdog"]
    assert st["healthy"] and st["watchdog"]
    assert w["alive"] and w["state"] == "armed" and w["fired"] is None
    assert "armed " in ferry_lab("status", "--name", NAME).stdout
    assert lab.watchdog_fired(h) is None


def test_a_frozen_ferryd_gets_its_host_powered_off(lab):
    h = lab.host(1)
    env = dict(lab.env(h), FERRY_GUEST_DIR=GUEST)
    run([FERRY, "--socket", h.sock, "vm", "create", "w1", "--memory", "128", "--appliance",
         "--node", h.name, "--start"], env=env, timeout=60)
    qemu = h.cli_json("vm", "show", "w1")["pid"]
    assert pid_alive(qemu)
    stray = h.popen(["sleep", "300"])  # anything else of the host goes too
    ferryd = h.pid
    # `ip netns exec` enters the namespace, then execs sleep in place
    wait_for(lambda: {ferryd, qemu, stray.pid} <= set(ferrylab._pids_in_netns(h.ns)), 5,
             "the stray process to be in the host's namespace")

    t = lab.kill_ferryd(h, signal.SIGSTOP)
    rec = wait_for(lambda: lab.watchdog_fired(h), TIMEOUT_MS / 1000 + 2,
                   "the watchdog to power the host off")
    took = time.monotonic() - t
    wait_for(lambda: not ferrylab._pids_in_netns(h.ns), 2, "the host's processes to be gone")
    stray.wait(5)
    assert took <= TIMEOUT_MS / 1000 + 2
    assert rec["host"] == h.name and rec["ferryd_pid"] == ferryd
    assert 0 < rec["late_ms"] < 1000, rec  # it looks every 100 ms
    assert rec["fired_ms"] - rec["fed_ms"] > TIMEOUT_MS
    # fed at most just before the stop, fired at most one margin (ferryd's 1000 ms) after
    assert rec["fired_ms"] <= t * 1000 + TIMEOUT_MS + 1000
    assert {ferryd, qemu, stray.pid} <= set(rec["killed"])
    # A process that left its namespace may take a moment more to end (QEMU's threads).
    wait_for(lambda: not any(pid_alive(p) for p in (ferryd, qemu, stray.pid)), 5,
             "the killed processes to end")
    wait_for(lambda: not pid_alive(h.rec["watchdog"]["pid"]), 5,
             "the watchdog to end: it fires once")

    st = json.loads(ferry_lab("status", "--name", NAME, "-o", "json", check=False).stdout)
    w = st["hosts"][0]["watchdog"]
    assert not st["healthy"] and not st["hosts"][0]["ferryd_alive"]
    assert w["state"] == "fired" and w["fired"] == rec
    assert "FIRED" in ferry_lab("status", "--name", NAME, check=False).stdout


def test_a_clean_stop_disarms_it(lab):
    h = lab.host(1)
    fired = lab.watchdog_fired(h)
    old = h.rec["watchdog"]["pid"]
    lab.start_ferryd(h)  # the host "powered on" again: a new watchdog on an emptied file
    new = h.rec["watchdog"]["pid"]
    assert new != old and pid_alive(new)
    st = wait_for(lambda: watchdog_file(h), 5, "the new ferryd to arm its watchdog")
    assert st["armed"] and st["pid"] == h.pid

    ferryd = h.pid
    lab.kill_ferryd(h, signal.SIGTERM)
    st = watchdog_file(h)
    assert st["armed"] is False and st["pid"] == ferryd
    assert "watchdog: disarmed" in h.log_tail(20000)
    # Longer than the timeout: the watchdog still watches and does not fire.
    time.sleep(TIMEOUT_MS / 1000 + 1)
    assert pid_alive(new)
    assert lab.watchdog_fired(h) == fired
    assert lab.watchdog_status(h)["state"] == "disarmed"

    # Started again with it still watching: the same watchdog, armed again.
    lab.start_ferryd(h)
    assert h.rec["watchdog"]["pid"] == new
    wait_for(lambda: (s := watchdog_file(h)) and s["armed"] and s["pid"] == h.pid, 5,
             "the ferryd to arm it again")


def test_bad_watchdog_options_are_refused():
    tmp = tempfile.mkdtemp(prefix="fywd")
    try:
        base = [FERRYD, "--state-dir", f"{tmp}/state", "--run-dir", f"{tmp}/run", "--socket",
                f"{tmp}/ferryd.sock"]
        wdfile = os.path.join(tmp, "watchdog")
        open(wdfile, "w").close()
        config = os.path.join(tmp, "ferryd.json")
        with open(config, "w") as f:
            json.dump({"watchdog": wdfile, "watchdog_timeout_ms": "4500"}, f)
        for args, what in (
                (["--watchdog", "/nonexistent"], ["watchdog /nonexistent: no such file",
                                                  "/dev/watchdog", "regular file"]),
                (["--watchdog", tmp], ["is a directory", "/dev/watchdog"]),
                (["--watchdog", wdfile, "--watchdog-timeout-ms", "4500"],
                 ["watchdog_timeout_ms 4500 is too long for lease_ms 1000 and lease_expiry_ms "
                  "5000", "--watchdog-timeout-ms 3000 or less", "--lease-expiry-ms to 6500"]),
                (["--watchdog-timeout-ms", "4500"], ["4500 is too long"]),
                (["--watchdog", wdfile, "--lease-expiry-ms", "4000"],
                 ["watchdog_timeout_ms 3000 is too long", "lease_expiry_ms 4000"]),
                (["--watchdog", wdfile, "--watchdog-timeout-ms", "499"], ["500..60000"]),
                (["--watchdog", wdfile, "--watchdog-timeout-ms", "60001"], ["500..60000"]),
                (["--config", config], ["4500 is too long"])):
            r = run(base + args, check=False, timeout=20)
            assert r.returncode == 2, (args, r.returncode, r.stderr)
            for w in what:
                assert w in r.stderr, (args, w, r.stderr)
        # Nothing was started or armed.
        assert os.path.getsize(wdfile) == 0
        assert not os.path.exists(f"{tmp}/ferryd.sock")
    finally:
        run(["rm", "-rf", tmp])
