"""Benchmark: the real pipeline from a cold cache on a real data set, timed per stage.

Runs as a new user would: a fresh clone of this repo's HEAD (so it measures what is
committed), whose `make setup` data step (scripts/link_data.sh) links --data to data/raw, the
default data.path; params.yaml stays as committed unless --set or --classes change it. Runs
every stage with `dvc repro -s` (what `uv run dvc repro` runs, timed per stage), then changes
one head parameter and times the re-run. Prints a Markdown table and writes JSON to
benchmarks/results/. Exit code: 1 when a stage fails; the gate is reported, and enforced with
--enforce-gate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: The variables that choose TensorFlow's CPU kernels (benchmarks/onednn.py); a result names them.
ONEDNN_VARS = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    elapsed = time.perf_counter() - start
    sys.stdout.write(proc.stdout[-4000:])
    sys.stdout.flush()
    return proc.returncode, elapsed, proc.stdout


def cpu_model() -> str:
    """The CPU as lscpu names it, with its family, model and widest vector ISA, and what
    TensorFlow was told about oneDNN (it changes training speed 3-4 times: benchmarks/onednn.py):
    timings mean little without them."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    flags = info.get("Flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        isa += ", oneDNN off"
    elif os.environ.get("ONEDNN_MAX_CPU_ISA"):
        isa += f", oneDNN capped at {os.environ['ONEDNN_MAX_CPU_ISA']}"
    name = info.get("Model name") or platform.processor() or "unknown"
    return f"{name} (family {info.get('CPU family', '?')}, model {info.get('Model', '?')}; {isa})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data/trashnet")
    ap.add_argument("--classes", help="YAML list for data.classes (default: params.yaml's)")
    ap.add_argument("--workdir", help="clone here instead of a temporary folder")
    ap.add_argument("--enforce-gate", action="store_true", help="exit 1 when the gate fails")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one parameter (YAML value), e.g. --set split.seed=0",
    )
    ap.add_argument(
        "--no-rerun",
        action="store_true",
        help="skip the head-parameter re-run after the cold pipeline",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline.json"))
    args = ap.parse_args()

    data = Path(args.data)
    data = (data if data.is_absolute() else (Path.cwd() / data)).resolve()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wastesort-bench-")) / "repo"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    # the clone's own package, not the (editable) one this venv has installed from the work tree
    env["PYTHONPATH"] = os.pathsep.join([str(work), *filter(None, [env.get("PYTHONPATH")])])
    # `make setup`'s data step, as a new user's clone gets it: data/raw -> --data
    link = subprocess.run(
        ["bash", "scripts/link_data.sh"],
        cwd=work,
        env={**env, "WASTESORT_DATA": str(data)},
        text=True,
        capture_output=True,
        check=True,
    )
    print(link.stdout.strip(), flush=True)
    params_file = work / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    changed = list(args.set)
    if args.classes is not None:
        changed.append(f"data.classes={args.classes}")
    for item in changed:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not name or section not in params or not isinstance(params[section], dict):
            ap.error(f"--set {item}: expected SECTION.KEY=VALUE with a section of params.yaml")
        params[section][name] = yaml.safe_load(value)
    if changed:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    print(f"params.yaml: {'changed: ' + ', '.join(changed) if changed else 'as committed'}")

    stages = list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"])  # in run order
    timings, failed = {}, None
    for stage in stages:
        print(f"\n=== dvc repro -s {stage}", flush=True)
        code, seconds, _ = sh(["dvc", "repro", "-s", stage], work, env)
        timings[stage] = round(seconds, 1)
        if code != 0:
            failed = stage
            break
    result = {
        "data": str(data),
        "stage_seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
        "failed_stage": failed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cpu": cpu_model(),
        "overrides": changed,  # [] = params.yaml as committed: `uv run dvc repro`, no arguments
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=work, text=True, capture_output=True
        ).stdout.strip(),
    }
    metrics = work / "metrics/evaluate.json"
    if metrics.is_file():
        ev = json.loads(metrics.read_text())
        result.update(
            accuracy=ev["accuracy"],
            macro_f1=ev["macro_f1"],
            n_test=ev["n_test"],
            gate=ev["min_accuracy"],
            gate_passed=ev["gate_passed"],
            per_class_f1={c: v["f1-score"] for c, v in ev["per_class"].items()},
        )
    tuned = work / "metrics/finetune.json"
    if tuned.is_file():
        ft = json.loads(tuned.read_text())
        result.update(
            {
                k: ft[k]
                for k in ("epoch_seconds", "train_images_per_second", "best_val_accuracy")
                if k in ft
            }
        )
    trained = work / "metrics/train.json"
    if trained.is_file():
        tr = json.loads(trained.read_text())
        result.update(
            head_best_val_accuracy=tr["best_val_accuracy"],
            kept_fine_tuned_head=tr["kept_fine_tuned_head"],
            temperature=tr["temperature"],
        )
    exported = work / "metrics/export.json"
    if exported.is_file():
        ex = json.loads(exported.read_text())
        result.update(
            {
                f"{kind}_{k}": ex[kind][k]
                for kind in ("float32", "int8")
                if isinstance(ex.get(kind), dict)
                for k in ("accuracy", "bytes")
                if k in ex[kind]
            }
        )
    if (failed is None or failed == "evaluate") and not args.no_rerun:
        params["train"]["lr"] = float(params["train"]["lr"]) * 2
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        print("\n=== head-parameter change (train.lr), dvc repro", flush=True)
        _, seconds, out = sh(["dvc", "repro"], work, env)
        result["head_param_rerun_seconds"] = round(seconds, 1)
        result["features_recomputed_on_head_change"] = "Running stage 'features'" in out

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("\n| stage | seconds |\n|---|---|")
    for stage, seconds in timings.items():
        print(f"| {stage} | {seconds} |")
    print(f"| **total** | {result['total_seconds']} |")
    if "accuracy" in result:
        print(
            f"\nTEST ACCURACY {result['accuracy']:.4f} (gate {result['gate']:.2f}: "
            f"{'passed' if result['gate_passed'] else 'FAILED'}), macro F1 "
            f"{result['macro_f1']:.4f}, n_test {result['n_test']}"
        )
    if "head_param_rerun_seconds" in result:
        print(
            f"head-parameter re-run: {result['head_param_rerun_seconds']} s "
            f"(features recomputed: {result['features_recomputed_on_head_change']})"
        )
    if failed and failed != "evaluate":
        return 1
    return 1 if args.enforce_gate and not result.get("gate_passed") else 0


if __name__ == "__main__":
    sys.exit(main())
