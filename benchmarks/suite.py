"""Benchmark: the test suite as the README runs it, timed as a whole, with its slowest tests.

Runs `pytest` (extra arguments are passed on: `-n 0` for one process, `-m "not slow" tests/code
tests/data tests/model` for `make test-fast`) under CI=true, so nothing is skipped for a missing
PostgreSQL or Chromium, and records the wall and CPU seconds of it and every process it
started, the pass/fail line and the 20 slowest test phases, with the CPU named.

    uv run python benchmarks/suite.py --out benchmarks/results/suite.json [-- PYTEST_ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def workers(timeline: Path) -> dict:
    """Per worker: seconds busy in tests, from its first test's start to its last test's end,
    and the modules in the order it ran them (from benchmarks/timeline.py's lines)."""
    if not timeline.exists():
        return {}
    rows = [json.loads(line) for line in timeline.read_text().splitlines()]
    t0 = min(r["start"] for r in rows)
    out = {}
    for w in sorted({r["worker"] for r in rows}):
        mine = sorted((r for r in rows if r["worker"] == w), key=lambda r: r["start"])
        modules: list[dict] = []
        for r in mine:
            module = r["test"].split("::")[0]
            if not modules or modules[-1]["module"] != module:
                modules.append({"module": module, "from": round(r["start"] - t0, 1)})
            modules[-1]["to"] = round(r["end"] - t0, 1)
        out[w] = {
            "busy_seconds": round(sum(r["end"] - r["start"] for r in mine), 1),
            "first_start": round(mine[0]["start"] - t0, 1),
            "last_end": round(mine[-1]["end"] - t0, 1),
            "modules": modules,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/suite.json"))
    ap.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = ap.parse_args()
    timeline = Path(args.out).with_suffix(".timeline.jsonl")
    timeline.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-p", "timeline", *args.pytest_args]
    env = {
        **os.environ,
        "CI": "true",
        "WASTESORT_TIMELINE": str(timeline),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")])
        ),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout
    sys.stdout.write(out[-3000:])
    summary = re.findall(r"^=+ (.*(?:passed|failed|error).*) in [\d.]+s.* =+$", out, re.M)
    slowest = [
        {"seconds": float(s), "phase": phase, "test": test}
        for s, phase, test in re.findall(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$", out, re.M)
    ]
    result = {
        "command": " ".join(["pytest", *args.pytest_args]),
        "exit_code": proc.returncode,
        "summary": summary[-1] if summary else None,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True, capture_output=True
        ).stdout.strip(),
        "slowest": slowest[:20],
        "workers": workers(timeline),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\n{result['summary']}: {result['wall_seconds']} s wall, {result['cpu_seconds']} CPU-s "
        f"({result['cpu']}, {result['cores']} cores)"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
