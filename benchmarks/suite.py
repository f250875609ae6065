"""Benchmark: the test suite as the README runs it, timed as a whole, with its slowest tests.

Runs `pytest` (extra arguments are passed on: `-n 0` for one process, `-m "not slow" tests/code
tests/data tests/model` for `make test-fast`) under CI=true, so nothing is skipped for a missing
PostgreSQL or Chromium, and records the wall and CPU seconds of it and every process it
started, the pass/fail line and the 20 slowest test phases, with the CPU named; and, from
`benchmarks/sitecustomize.py`, the CPU seconds of the Python processes the tests started, by
kind (a stage script, the pooler's conversion child, `dvc`, `bentoml`, a pytest worker), and
how many imported TensorFlow.

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


def kind(argv: list[str]) -> str:
    """A process's kind from its argv: the stage script, the module or the tool and verb."""
    first = argv[0] if argv else ""
    if first.startswith("stages/") or first.endswith("pooling.py"):
        return first if first.startswith("stages/") else "pooler conversion"
    if first == "-c":  # a pytest-xdist worker, or an inline check a test runs
        return "python -c"
    tool = Path(first).name
    if tool == "__main__.py":  # python -m PACKAGE
        tool = f"python -m {Path(first).parent.name}"
    verb = argv[1] if len(argv) > 1 and argv[1].isidentifier() else ""
    return f"{tool} {verb}".strip()


def processes(log: Path) -> dict:
    """CPU seconds and counts per kind of process, from sitecustomize's log."""
    if not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    kinds: dict[str, dict] = {}
    for r in rows:
        k = kinds.setdefault(kind(r["argv"]), {"processes": 0, "cpu_seconds": 0.0})
        k["processes"] += 1
        k["cpu_seconds"] = round(k["cpu_seconds"] + r["cpu_seconds"], 2)
    return {
        "logged_cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 1),
        "tensorflow_processes": sum(r["tensorflow"] for r in rows),
        "by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["cpu_seconds"])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/suite.json"))
    ap.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = ap.parse_args()
    timeline = Path(args.out).with_suffix(".timeline.jsonl")
    timeline.unlink(missing_ok=True)
    process_log = Path(args.out).with_suffix(".processes.jsonl")
    process_log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-p", "timeline", *args.pytest_args]
    env = {
        **os.environ,
        "CI": "true",
        "WASTESORT_TIMELINE": str(timeline),
        "WASTESORT_PROCESS_LOG": str(process_log),
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
        "processes": processes(process_log),
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
