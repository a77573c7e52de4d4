# SPDX-License-Identifier: MIT
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from ferrytest import Host  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timing: asserts client-observed gaps against the blackout budget; make check "
        "runs these files alone, after the others (which run two at a time)")


@pytest.fixture
def host():
    h = Host(1)
    try:
        h.start_ferryd()
        yield h
    finally:
        leftovers = h.close()
        assert not leftovers, f"processes left behind: {leftovers}"


def pytest_sessionfinish(session, exitstatus):
    """Under `make check` (FERRY_NO_SKIP=1) a skipped test is a failure: a missing prerequisite
    (not root, no build, no appliance) must not pass as green."""
    if os.environ.get("FERRY_NO_SKIP") != "1":
        return
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = rep.stats.get("skipped", []) if rep else []
    if skipped:
        rep.write_line(f"FERRY_NO_SKIP: {len(skipped)} test(s) skipped; make check fails: "
                       f"{skipped[0].longrepr}", red=True)
        session.exitstatus = 1
