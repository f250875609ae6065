"""Benchmark: `bentoml serve` from start to /readyz, with the champion index and without it.

With ``registry/champion.json`` valid (the registry unchanged since `register` or the last
start), the service finds its champion without importing MLflow; without it (removed before
each such start, as after any write to the registry) MLflow's client resolves the alias.
Alternates the two, ``--rounds`` each, in a repo whose pipeline registered a champion.

    python benchmarks/startup.py --repo PATH [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402
from serving import free_port, start, stop  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", default=".", help="repo with a registered champion")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/startup.json")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    index = repo / "registry/champion.json"
    seconds: dict[str, list[float]] = {"mlflow_client": [], "index": []}
    for _ in range(args.rounds):
        for way in seconds:
            if way == "mlflow_client":
                index.unlink(missing_ok=True)
            elif not index.is_file():
                raise SystemExit(f"{index}: missing after a start through MLflow's client")
            port = free_port()
            cmd = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
            proc, ready = start(cmd, repo, f"http://127.0.0.1:{port}/readyz")
            stop(proc)
            seconds[way].append(round(ready, 2))
            print(f"{way}: ready in {ready:.2f} s", flush=True)
    result = {
        "cpu": cpu_model(),
        "repo": str(repo),
        "start_to_ready_s": seconds,
        "median_s": {k: statistics.median(v) for k, v in seconds.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
