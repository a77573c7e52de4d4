# SPDX-License-Identifier: MIT
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from ferrytest import Host  # noqa: E402


@pytest.fixture
def host():
    h = Host(1)
    try:
        h.start_ferryd()
        yield h
    finally:
        leftovers = h.close()
        assert not leftovers, f"processes left behind: {leftovers}"
