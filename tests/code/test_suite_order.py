"""The suite's own module order (tests/conftest.py), as pytest-xdist hands modules out."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import HEAVY_FIRST, REPO


def test_the_repo_build_starts_first_and_the_heavy_modules_run_last_heaviest_first():
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    order: list[str] = []
    for line in listed:
        if "::" in line and (module := line.split("::")[0]) not in order[-1:]:
            order.append(module)
    assert len(order) == len(set(order))  # each module's tests together, for --dist loadscope
    assert order[0] == HEAVY_FIRST[0]  # it needs the shared repo: the build starts at once
    rest = [m for m in HEAVY_FIRST[1:] if m in order]
    assert len(rest) == len(HEAVY_FIRST) - 1  # every listed module exists
    assert [m for m in order if m in rest] == rest  # heaviest first
    # the modules that need no repo run before any other that needs it
    first_heavy = order.index(rest[0])
    for light in ("tests/code/test_config.py", "tests/model/test_model.py"):
        assert order.index(light) < first_heavy, light
