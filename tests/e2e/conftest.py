# SPDX-License-Identifier: MIT
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from ferrytest import Host  # noqa: E402
from noskip import pytest_sessionfinish  # noqa: E402,F401 (make check's FERRY_NO_SKIP)


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
