# SPDX-License-Identifier: MIT
"""Prometheus against a real lab (contrib/prometheus): Debian's prometheus scrapes every
node's /metrics over the TCP API with the API token, every node's exposition passes
`promtool check metrics`, the cluster's metrics say what `ferry cluster status` says, and
when a host loses power the shipped NodeDown alert fires for it."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import lab_session, metrics, missing  # noqa: E402
from ferrytest import wait_for  # noqa: E402

NAME = f"pm{os.getpid()}"
SUBNET = "10.112.0.0/24"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "contrib", "prometheus", "ferry.rules.yml")
PORT = 9391

pytestmark = pytest.mark.skipif(missing() is not None or not shutil.which("prometheus"),
                                reason=str(missing() or "no prometheus (scripts/install-deps)"))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture(scope="module")
def prom(lab):
    """Prometheus in the lab's client namespace, scraping every node every second, with the
    shipped rules evaluated every second."""
    d = tempfile.mkdtemp(prefix="ferry-prom-")
    # The shipped rules, but NodeDown fires after 3 s instead of its 30 s (the 30 s and every
    # other rule's timing are checked by `make promtool`'s fixtures): 27 s less of CI.
    with open(RULES) as f:
        rules = f.read()
    at = rules.index("- alert: NodeDown")
    head, tail = rules[:at], rules[at:]
    assert tail.count("for: 30s", 0, tail.index("- alert:", 2)) == 1, "NodeDown's for: changed"
    rules = head + tail.replace("for: 30s", "for: 3s", 1)
    with open(os.path.join(d, "ferry.rules.yml"), "w") as f:
        f.write(rules)
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{d}/ferry.rules.yml"]
scrape_configs:
  - job_name: ferry
    scheme: https
    tls_config: {{ca_file: "{lab.ca_file()}"}}
    authorization: {{type: Bearer, credentials_file: "{lab.token_file}"}}
    static_configs:
      - targets: {json.dumps([h.url.removeprefix("https://") for h in lab.hosts])}
""")
    check = subprocess.run(["promtool", "check", "config", os.path.join(d, "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(os.path.join(d, "prometheus.log"), "w")
    p = lab.client_popen(["prometheus", f"--config.file={d}/prometheus.yml",
                          f"--storage.tsdb.path={d}/data",
                          f"--web.listen-address=127.0.0.1:{PORT}"], stdout=log, stderr=log)
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def query(lab, q):
    url = f"http://127.0.0.1:{PORT}/api/v1/query?query={urllib.parse.quote(q)}"
    r = lab.client_exec(["curl", "-sf", url], check=False, timeout=20)
    if r.returncode != 0:
        return None
    body = json.loads(r.stdout)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_every_node_scraped_and_its_metrics_valid(lab, prom):
    ups = wait_for(lambda: (lambda r: r if r and len(r) == 3 and all(x["value"][1] == "1"
                                                                     for x in r) else None)(
        query(lab, 'up{job="ferry"}')), 60, "prometheus to scrape every node")
    assert len(ups) == 3
    for h in lab.hosts:
        text = subprocess.run(["curl", "-sf", "--unix-socket", h.sock, "http://x/metrics"],
                              capture_output=True, text=True, check=True).stdout
        chk = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             text=True)
        assert chk.returncode == 0, f"{h.name}: {chk.stdout}{chk.stderr}"
        m = metrics(h)
        s = h.cli_json("cluster", "status")
        assert m["ferry_cluster_quorum"] == 1 and m["ferry_cluster_has_leader"] == 1, m
        assert m["ferry_cluster_voters"] == s["voters"] == 3
        assert m["ferry_cluster_is_leader"] == (1 if s["state"] == "leader" else 0)
        for x in lab.hosts:
            assert m[f'ferry_cluster_node_up{{node="{x.name}"}}'] == 1
    leaders = query(lab, "sum(ferry_cluster_is_leader)")
    assert leaders and leaders[0]["value"][1] == "1", leaders


def test_node_down_fires_when_a_host_loses_power(lab, prom):
    h3 = lab.hosts[2]
    wait_for(lambda: len(query(lab, 'up{job="ferry"} == 1') or []) == 3, 60,
             "prometheus to scrape every node")
    t0 = lab.power_off(h3)
    try:
        firing = wait_for(lambda: query(
            lab, 'ALERTS{alertname="NodeDown",alertstate="firing",node="host3"}'), 90,
            "NodeDown to fire for host3")
        print(f"NodeDown firing {time.monotonic() - t0:.1f} s after the power loss "
              "(down after 5 s, the rule's for: 3s here)")
        assert firing[0]["metric"]["severity"] == "critical"
        unreachable = query(lab, 'up{job="ferry"} == 0')
        assert unreachable and len(unreachable) == 1, unreachable
        assert not query(lab, 'ALERTS{alertname="NodeDown",node!="host3"}')
        assert not query(lab, 'ALERTS{alertname=~"QuorumLost|NoLeader"}')
    finally:
        lab.start_ferryd(h3)
    wait_for(lambda: not query(lab, 'ALERTS{alertname="NodeDown",alertstate="firing"}'), 90,
             "NodeDown to resolve once host3 is back")
