# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))


def pytest_sessionfinish(session, exitstatus):
    """Under `make check` (FERRY_NO_SKIP=1) a skipped test is a failure, as in tests/e2e: a
    missing prerequisite (not root, no package, no guest) must not pass as green."""
    if os.environ.get("FERRY_NO_SKIP") != "1":
        return
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = rep.stats.get("skipped", []) if rep else []
    if skipped:
        rep.write_line(f"FERRY_NO_SKIP: {len(skipped)} test(s) skipped; make check fails: "
                       f"{skipped[0].longrepr}", red=True)
        session.exitstatus = 1
