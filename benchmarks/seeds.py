"""Benchmark: the whole pipeline on several split seeds, for the accuracy's mean and spread.

One cold run of `benchmarks/pipeline.py` per seed (a fresh clone of HEAD each time, with
`split.seed` set), then per-seed and mean/std test accuracy, macro F1, trash F1, per-stage
seconds and fine-tuning images/s, with the CPU model. Writes benchmarks/results/seeds.json and
a Markdown table, which `--update-benchmarks` puts into BENCHMARKS.md between the
`<!-- seeds:start -->` and `<!-- seeds:end -->` markers.

    uv run python benchmarks/seeds.py --data ../shared/data/trashnet --seeds 42 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from pipeline import ONEDNN_VARS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/results"
START, END = "<!-- seeds:start -->", "<!-- seeds:end -->"


def run_seed(seed: int, data: str, extra: list[str], results: Path = RESULTS) -> dict:
    out = results / "seeds" / f"seed_{seed}.json"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/pipeline.py"),
        "--data",
        data,
        "--no-rerun",
        "--set",
        f"split.seed={seed}",
        "--out",
        str(out),
        *extra,
    ]
    print(f"\n##### seed {seed}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=False)
    if not out.is_file():
        return {"seed": seed, "failed_stage": "benchmark"}
    return {"seed": seed, **json.loads(out.read_text())}


def summarise(runs: list[dict]) -> dict:
    done = [r for r in runs if "accuracy" in r]

    def stats(key):
        values = [r[key] for r in done if r.get(key) is not None]
        if not values:
            return None
        return {
            "mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4),
            "max": round(max(values), 4),
        }

    for r in done:
        r["trash_f1"] = r.get("per_class_f1", {}).get("trash")
    return {
        key: stats(key)
        for key in ("accuracy", "macro_f1", "trash_f1", "total_seconds", "train_images_per_second")
    }


def markdown(runs: list[dict], summary: dict, command: str) -> str:
    stages = list(next((r["stage_seconds"] for r in runs if "stage_seconds" in r), {}))
    lines = [
        f"`{command}`",
        "",
        f"CPU: {runs[0].get('cpu', 'unknown')}, {runs[0].get('machine', '')}; "
        f"commit {runs[0].get('commit', '?')}",
        "",
        "| seed | test accuracy | macro F1 | trash F1 | val (finetune) | gate | "
        + " | ".join(stages)
        + " | total s | fine-tune images/s |",
        "|---" * (7 + len(stages)) + "|---|",
    ]
    for r in runs:
        if "accuracy" not in r:
            lines.append(f"| {r['seed']} | failed at {r.get('failed_stage')} |")
            continue
        cells = [
            str(r["seed"]),
            f"{r['accuracy']:.4f}",
            f"{r['macro_f1']:.4f}",
            f"{r['trash_f1']:.3f}" if r.get("trash_f1") is not None else "-",
            f"{r.get('best_val_accuracy', float('nan')):.4f}",
            "passed" if r["gate_passed"] else "FAILED",
            *[str(r["stage_seconds"].get(s, "-")) for s in stages],
            str(r["total_seconds"]),
            str(r.get("train_images_per_second", "-")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    acc, f1, trash = summary["accuracy"], summary["macro_f1"], summary["trash_f1"]
    if acc:
        lines += [
            "",
            f"Mean test accuracy **{acc['mean']:.4f}** (std {acc['std']:.4f}, "
            f"min {acc['min']:.4f}, max {acc['max']:.4f}); macro F1 {f1['mean']:.4f} "
            f"(std {f1['std']:.4f})"
            + (f"; trash F1 {trash['mean']:.3f} (std {trash['std']:.3f})" if trash else "")
            + ".",
        ]
    return "\n".join(lines) + "\n"


def update_benchmarks(table: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + table + END + rest.split(END, 1)[1]
    else:
        text += f"\n## Split seeds (`benchmarks/seeds.py`)\n\n{START}\n{table}{END}\n"
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/trashnet")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1])
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="passed on to benchmarks/pipeline.py for every seed",
    )
    ap.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="SEED=RESULT.json",
        help="take that seed's result from an earlier `benchmarks/pipeline.py` run "
        "of the same commit (for example the one `.ci/run` writes) instead of "
        "running it again",
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="folder for seeds.json and seeds/seed_N.json (default: %(default)s)",
    )
    ap.add_argument(
        "--update-benchmarks", action="store_true", help="write the table into BENCHMARKS.md"
    )
    args = ap.parse_args()
    extra = [x for item in args.set for x in ("--set", item)]
    reused = {int(k): Path(v) for k, _, v in (item.partition("=") for item in args.reuse)}
    runs = [
        {"seed": seed, "reused": str(reused[seed]), **json.loads(reused[seed].read_text())}
        if seed in reused
        else run_seed(seed, args.data, extra, args.results)
        for seed in args.seeds
    ]
    summary = summarise(runs)
    env = "".join(f"{k}={os.environ[k]} " for k in ONEDNN_VARS if k in os.environ)
    command = (
        env
        + "uv run python benchmarks/seeds.py --data "
        + args.data
        + " --seeds "
        + " ".join(map(str, args.seeds))
        + "".join(f" --set {s}" for s in args.set)
        + "".join(f" --reuse {r}" for r in args.reuse)
        + (f" --results {args.results}" if args.results != RESULTS else "")
    )
    table = markdown(runs, summary, command)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "seeds.json").write_text(
        json.dumps({"command": command, "runs": runs, "summary": summary}, indent=2) + "\n"
    )
    print("\n" + table)
    if args.update_benchmarks:
        update_benchmarks(table)
    return 0 if runs and all(r.get("gate_passed") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
