# SPDX-License-Identifier: MIT
"""The FERRY_NO_SKIP rule of make check, shared by the test directories' conftest.py: under
`make check` (FERRY_NO_SKIP=1) a skipped test is a failure, so that a missing prerequisite
(not root, no build, no appliance, no package, no guest) never passes as green."""
import os


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("FERRY_NO_SKIP") != "1":
        return
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = rep.stats.get("skipped", []) if rep else []
    if skipped:
        rep.write_line(f"FERRY_NO_SKIP: {len(skipped)} test(s) skipped; make check fails: "
                       f"{skipped[0].longrepr}", red=True)
        session.exitstatus = 1
