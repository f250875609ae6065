"""A pytest plugin for benchmarks/suite.py: each test's worker, start and end (seconds since the
epoch), one JSON line per test in $WASTESORT_TIMELINE, so the suite's idle time per worker and
its long tail can be read off (set-up and teardown included in the test they belong to)."""

from __future__ import annotations

import json
import os
import time

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.time()
    yield
    path = os.environ.get("WASTESORT_TIMELINE")
    if path:
        row = {
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "test": item.nodeid,
            "start": round(start, 2),
            "end": round(time.time(), 2),
        }
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
