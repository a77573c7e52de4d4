# SPDX-License-Identifier: MIT
"""The web dashboard's API on a real lab, as a browser uses it over the TCP listener (raw HTTP
and a WebSocket from the lab's client namespace, tests/lib/webclient.py): the static page with
its security headers, login sessions (cookie flags, CSRF token, Origin, logout, expiry), the
serial console over a WebSocket typed into the guest's shell on the VM's own node and relayed
from another, and the alerts the dashboard shows."""
import json
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))

from labvm import create_vm, lab_session, missing  # noqa: E402
from ferrytest import wait_for  # noqa: E402,F401

NAME = f"wa{os.getpid()}"
SUBNET = "10.105.0.0/24"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WEBCLIENT = os.path.join(ROOT, "tests", "lib", "webclient.py")
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
VM = "webvm"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab():
    yield from lab_session(NAME, SUBNET)


@pytest.fixture(scope="module")
def vm(lab):
    """An appliance VM on host1 with a shell on its serial console."""
    create_vm(lab, lab.hosts[0], VM, 20, workload="probe,shell", memory=128)
    return VM


def call(lab, host, method, path, headers=(), body=None, origin=True):
    """One HTTP request to host's TCP listener from the client namespace, as a browser makes
    it (with the Origin of the page when origin): {"status", "headers" (dict, lower-case
    names; Set-Cookie's value kept whole), "body", "json", "elapsed_s"}."""
    hs = list(headers)
    if origin and method not in ("GET", "HEAD"):
        hs.append(f"Origin: {host.url}")
    cmd = ["/usr/bin/python3", WEBCLIENT, "http", method, host.url + path]
    for h in hs:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["--body", body if isinstance(body, str) else json.dumps(body)]
    r = json.loads(lab.client_exec(cmd, timeout=60).stdout)
    r["headers"] = {k.lower(): v for k, v in r["headers"]}
    try:
        r["json"] = json.loads(r["body"])
    except ValueError:
        r["json"] = None
    return r


def login(lab, host):
    """Logs in on host: (cookie header, csrf token, the answer)."""
    r = call(lab, host, "POST", "/v1/session", body={"token": lab.token()})
    assert r["status"] == 200, r
    cookie = r["headers"]["set-cookie"].split(";")[0]
    return cookie, r["json"]["csrf"], r


def console(lab, host, vm, headers, send=None, expect=None, fragment=False, timeout=30):
    cmd = ["/usr/bin/python3", WEBCLIENT, "console",
           host.url.replace("http://", "http://") + f"/v1/vms/{vm}/console/ws",
           "--timeout", str(timeout)]
    for h in headers:
        cmd += ["-H", h]
    if send is not None:
        cmd += ["--send", send]
    if expect is not None:
        cmd += ["--expect", expect]
    if fragment:
        cmd.append("--fragment")
    return json.loads(lab.client_exec(cmd, timeout=timeout + 30).stdout)


def test_static_page_with_security_headers(lab):
    h = lab.hosts[1]
    r = call(lab, h, "GET", "/")
    assert r["status"] == 200, r
    assert r["headers"]["content-type"].startswith("text/html")
    assert "<html" in r["body"].lower()
    for name, want in (("content-security-policy", CSP), ("x-content-type-options", "nosniff"),
                       ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY"),
                       ("cache-control", "no-cache")):
        assert r["headers"].get(name) == want, (name, r["headers"])
    etag = r["headers"]["etag"]
    again = call(lab, h, "GET", "/", headers=[f"If-None-Match: {etag}"])
    assert again["status"] == 304 and again["body"] == "", again
    # No way out of web/, no listing, no other types; the API's answers carry the headers too.
    for path in ("/ui/../../etc/passwd", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/", "/ui/a%00.js",
                 "/ui/..%2fmeson.build", "/ui/index.sh"):
        bad = call(lab, h, "GET", path)
        assert bad["status"] == 404, (path, bad)
        assert "root:" not in bad["body"]
    denied = call(lab, h, "GET", "/v1/vms")
    assert denied["status"] == 401, denied
    assert denied["headers"]["content-security-policy"] == CSP


def test_login_wrong_token_then_right(lab):
    h = lab.hosts[1]
    bad = call(lab, h, "POST", "/v1/session", body={"token": "x" * 48})
    assert bad["status"] == 401, bad
    assert bad["json"]["error"]["code"] == "unauthorized"
    assert bad["elapsed_s"] >= 0.9, "a wrong token must be answered slowly"
    assert "set-cookie" not in bad["headers"]
    assert call(lab, h, "POST", "/v1/session", body={})["status"] == 400
    assert call(lab, h, "POST", "/v1/session", body="not json")["status"] == 400

    cookie, csrf, r = login(lab, h)
    flags = [f.strip() for f in r["headers"]["set-cookie"].split(";")]
    assert re.fullmatch(r"ferry_session=[0-9a-f]{64}", flags[0]), flags
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/" in flags, flags
    assert re.fullmatch(r"[0-9a-f]{64}", csrf)
    assert r["json"]["node"] == h.name
    assert abs(r["json"]["expires_at"] - (time.time() + 8 * 3600)) < 120, r["json"]
    # The cookie alone reads: the session and the API.
    again = call(lab, h, "GET", "/v1/session", headers=[f"Cookie: {cookie}"])
    assert again["status"] == 200 and again["json"]["csrf"] == csrf, again
    vms = call(lab, h, "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert vms["status"] == 200 and len(vms["json"]["nodes"]) == 3, vms
    # A session of one node means nothing to another (sessions live in each ferryd).
    other = call(lab, lab.hosts[0], "GET", "/v1/nodes", headers=[f"Cookie: {cookie}"])
    assert other["status"] == 401, other


def vm_state(lab, name):
    return lab.hosts[0].cli_json("vm", "show", name)["state"]


def test_csrf_and_origin_guard_state_changes(lab, vm):
    h = lab.hosts[1]  # not the VM's node: the request is forwarded to host1
    cookie, csrf, _ = login(lab, h)
    c = f"Cookie: {cookie}"
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c])
    assert r["status"] == 403, r
    assert r["json"]["error"]["code"] == "forbidden" and "CSRF" in r["json"]["error"]["message"]
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, "X-CSRF-Token: " + "0" * 64])
    assert r["status"] == 403, r
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, f"X-CSRF-Token: {csrf}",
                                                            "Origin: http://evil.example"],
             origin=False)
    assert r["status"] == 403 and "Origin" in r["json"]["error"]["message"], r
    time.sleep(0.5)
    assert vm_state(lab, vm) == "running"  # nothing changed
    r = call(lab, h, "POST", f"/v1/vms/{vm}/pause", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert vm_state(lab, vm) == "paused"
    r = call(lab, h, "POST", f"/v1/vms/{vm}/resume", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert vm_state(lab, vm) == "running"
    # The CLI's bearer token needs no CSRF header.
    r = call(lab, h, "POST", f"/v1/vms/{vm}/resume",
             headers=[f"Authorization: Bearer {lab.token()}"], origin=False)
    assert r["status"] in (200, 409), r


def test_logout_ends_the_session(lab):
    h = lab.hosts[1]
    cookie, csrf, _ = login(lab, h)
    c = f"Cookie: {cookie}"
    assert call(lab, h, "DELETE", "/v1/session", headers=[c])["status"] == 403  # no CSRF
    r = call(lab, h, "DELETE", "/v1/session", headers=[c, f"X-CSRF-Token: {csrf}"])
    assert r["status"] == 200, r
    assert "Max-Age=0" in r["headers"]["set-cookie"], r["headers"]
    after = call(lab, h, "GET", "/v1/nodes", headers=[c])
    assert after["status"] == 401 and "log in again" in after["json"]["error"]["message"], after
