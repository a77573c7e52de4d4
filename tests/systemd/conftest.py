# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from noskip import pytest_sessionfinish  # noqa: E402,F401 (make check's FERRY_NO_SKIP)
