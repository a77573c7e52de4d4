# SPDX-License-Identifier: MIT
"""The client-observed gap as a recorded figure of a migration, on a 3-host lab: `ferry lab
migrate` moves an appliance VM while ferry-probe in the client namespace probes it every
millisecond, prints the gap and records it on the migration; another node's `ferry vm
migrations` (JSON and table) then shows the same plausible figure, and /metrics counts it.
Bad measurements (unknown migration, negative or non-numeric gap, a second one without
--force) are refused with a clear message and change no node's records."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from ferrytest import FERRY, run, wait_for  # noqa: E402
from labvm import create_vm, lab_session, logs, metrics, missing, vm_on  # noqa: E402

NAME = f"cg{os.getpid()}"
SUBNET = "10.93.0.0/24"
BUDGET_MS = 300
# A plausible client gap on this loaded 2-CPU TCG lab: docs/architecture.md measured medians
# of 64-132 ms and maxima up to 375 ms at a 300 ms budget; a few budgets is "sane".
GAP_MAX_MS = BUDGET_MS  # the promise: the client-observed gap stays within the budget

# timing: held to the 300 ms budget as a client sees it, so make check runs this file alone
# (after the others, which run two at a time).
pytestmark = [pytest.mark.skipif(missing() is not None, reason=str(missing())),
              pytest.mark.timing]


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


def lab_cli(*args, timeout=300):
    """`ferry lab ... --name NAME`, the command a user types."""
    return run([FERRY, "lab", *args, "--name", NAME], check=False, timeout=timeout)


def records(h, vm=None):
    return h.cli_json("vm", "migrations", *([vm] if vm else []))["migrations"]



@pytest.fixture(scope="module")
def first_migration(lab):
    """VM cg1, created on host1 and moved to host2 by `ferry lab migrate -o json`: its
    parsed answer. The tests below build on it, whichever of them runs first."""
    create_vm(lab, lab.host(1), "cg1", 1)
    r = lab_cli("migrate", "cg1", "--to", "host2", "--budget-ms", str(BUDGET_MS), "-o", "json")
    assert r.returncode == 0, f"ferry lab migrate: {r.stderr}\n{r.stdout}\n{logs(lab)}"
    return json.loads(r.stdout)


def test_lab_migrate_records_client_gap(lab, first_migration):
    h1, h2, h3 = lab.hosts
    res = first_migration
    fig, rec, pr = res["figures"], res["migration"], res["probe"]
    print(f"\ncg1 host1->host2: client gap {res['client_gap_ms']} ms, QEMU downtime "
          f"{fig['downtime_ms']} ms, total {fig['total_ms']} ms; probes sent {pr['sent']}, "
          f"lost {pr['lost']}")
    assert res["ok"] and fig["status"] == "completed" and fig["to"] == "host2", res
    assert pr["interval_ms"] == 1 and pr["received"] > 1000 and pr["answering"], pr
    # The guest's memory verifier was asked on the new host: two whole scans, no lost write.
    mv = res["memverify"]
    assert mv and mv["clean"] and mv["scans_waited"] >= 2 and mv["bad"] == 0, mv
    gap = res["client_gap_ms"]
    assert 0 < gap < GAP_MAX_MS, res
    assert rec["client_gap_ms"] == pytest.approx(gap, abs=0.05), rec
    assert rec["client_gap_source"] == "lab-probe" and rec["vm"] == "cg1", rec
    assert rec["from"] == "host1" and rec["to"] == "host2" and rec["status"] == "completed", rec
    assert vm_on(h3, "cg1")["owner"] == "host2"

    # Another node reads the same figure from its copy of the cluster database.
    def on_h3():
        return next((x for x in records(h3, "cg1") if x["id"] == rec["id"] and
                     x["client_gap_ms"] is not None), None)
    r3 = wait_for(on_h3, 10, "host3 to show the client gap")
    assert r3["client_gap_ms"] == rec["client_gap_ms"] and r3["client_gap_source"] == "lab-probe"
    assert r3["downtime_ms"] == fig["downtime_ms"] and r3["total_ms"] == fig["total_ms"], r3
    table = h3.cli("vm", "migrations", "cg1").stdout
    print(table)
    head, row = table.splitlines()[0], table.splitlines()[1]
    assert "CLIENT GAP" in head and "DOWNTIME" in head and head.split()[0] == "ID", table
    assert row.split()[0] == str(rec["id"]) and f"{rec['client_gap_ms']:.1f} ms" in row, table
    # Counted where it was recorded (the migration's source, host1).
    m = metrics(h1)
    assert m["ferry_migration_client_gap_seconds_count"] == 1, m
    assert m["ferry_migration_client_gap_seconds_sum"] == pytest.approx(gap / 1000, abs=0.002)


def test_lab_migrate_prints_summary(lab, first_migration):
    """The table output a user reads: the way back, host2 -> host1."""
    h1 = lab.host(1)
    r = lab_cli("migrate", "cg1", "--budget-ms", str(BUDGET_MS), "--to", "host1")
    assert r.returncode == 0, f"ferry lab migrate: {r.stderr}\n{r.stdout}\n{logs(lab)}"
    print("\n" + r.stdout)
    assert "cg1: migrated host2 -> host1 (pre-copy)" in r.stdout, r.stdout
    assert "client-observed gap" in r.stdout and "QEMU downtime" in r.stdout, r.stdout
    newest = records(h1, "cg1")[0]
    assert newest["from"] == "host2" and newest["client_gap_source"] == "lab-probe", newest
    assert 0 < newest["client_gap_ms"] < GAP_MAX_MS, newest
    assert f"recorded    migration {newest['id']}" in r.stdout, r.stdout
    assert "memory      the guest's verifier: clean (0 bad pages" in r.stdout, r.stdout


def test_lab_migrate_refusals(lab, first_migration):
    r = lab_cli("migrate", "nosuch")
    assert r.returncode == 1 and "no VM named nosuch" in r.stderr, r.stderr
    r = lab_cli("migrate", "cg1", "--budget-ms", "-3")
    assert r.returncode == 2, r.stderr


def test_bad_measurements_change_nothing(lab, first_migration):
    h1, h2, h3 = lab.hosts
    mid, gap = first_migration["migration"]["id"], first_migration["migration"]["client_gap_ms"]
    before = {h.name: records(h) for h in lab.hosts}
    # Through the CLI.
    r = h2.cli("vm", "measure-migration", "999999", "--client-gap-ms", "5", check=False)
    assert r.returncode == 1 and "no migration 999999" in r.stderr, r.stderr
    r = h2.cli("vm", "measure-migration", str(mid), "--client-gap-ms", "-5", check=False)
    assert r.returncode == 2 and "--client-gap-ms" in r.stderr, r.stderr
    r = h3.cli("vm", "measure-migration", str(mid), "--client-gap-ms", "12", check=False)
    assert r.returncode == 1 and "already has a client gap" in r.stderr and \
        "force" in r.stderr, r.stderr
    r = h3.cli("vm", "measure-migration", "abc", "--client-gap-ms", "12", check=False)
    assert r.returncode == 2, r.stderr
    # Through the API, past the CLI's checks.
    path = f"/v1/migrations/{mid}/measurements"
    for body, status, text in (
            ({"client_gap_ms": -5}, 400, "client_gap_ms"),
            ({"client_gap_ms": "5"}, 400, "client_gap_ms"),
            ({"client_gap_ms": 1e9}, 400, "0..3600000"),
            ({}, 400, "client_gap_ms"),
            ({"client_gap_ms": 5, "extra": 1}, 400, "extra"),
            ({"client_gap_ms": 5, "source": "Not A Token", "force": True}, 400, "source"),
            ({"client_gap_ms": 5, "force": "yes"}, 400, "force"),
            ({"client_gap_ms": 5}, 409, "already has a client gap")):
        st, b = h2.api("POST", path, body)
        assert st == status and text in b["error"]["message"], (body, st, b)
    st, b = h1.api("POST", "/v1/migrations/999999/measurements", {"client_gap_ms": 5})
    assert st == 404 and "no migration 999999" in b["error"]["message"], b
    st, b = h1.api("POST", "/v1/migrations/x1/measurements", {"client_gap_ms": 5})
    assert st == 400, b
    st, b = h1.api("GET", f"/v1/migrations/{mid}")
    assert st == 200 and b["client_gap_ms"] == gap, b
    # Nothing changed anywhere (every rejected write was applied, as a refusal, everywhere).
    leader = lab.leader()
    idx = leader.cli_json("cluster", "status")["commit_index"]
    wait_for(lambda: all(h.cli_json("cluster", "status")["last_applied"] >= idx
                         for h in lab.hosts), 10, "every node to apply the refusals")
    for h in lab.hosts:
        assert records(h) == before[h.name], h.name


def test_force_replaces(lab, first_migration):
    h2, h3 = lab.host(2), lab.host(3)
    mid = first_migration["migration"]["id"]
    r = h2.cli("-o", "json", "vm", "measure-migration", str(mid), "--client-gap-ms", "77.04",
               "--source", "manual", "--force")
    rec = json.loads(r.stdout)
    assert rec["client_gap_ms"] == 77.0 and rec["client_gap_source"] == "manual", rec
    wait_for(lambda: next(x for x in records(h3) if x["id"] == mid)["client_gap_ms"] == 77.0,
             10, "host3 to show the replaced gap")
