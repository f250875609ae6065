"""Benchmark: TensorFlow's CPU kernels for the recipe's fine-tuning, oneDNN against Eigen.

TensorFlow's Linux wheels enable oneDNN by default only on CPUs with AVX512_VNNI, AVX512_BF16,
AVX_VNNI or AMX; on an AVX2-only CPU they run Eigen's kernels unless TF_ENABLE_ONEDNN_OPTS=1,
which `wastesort/__init__.py` now sets. Each configuration runs in its own process (the
variables must be set before TensorFlow loads) and times, on random pixels and random weights
(speed does not depend on them):

- train: the fine-tuning step of the default recipe (the whole MobileNetV2 at 224 px with
  BatchNorm frozen, the Dense(128) head, Adam, batch 32), images per second;
- forward 224: the same network's forward pass (features, evaluate), batch 32;
- forward 512x384: a frozen MobileNetV2 on a large input (the removed native view's old
  size), batch 16.

`ONEDNN_MAX_CPU_ISA=AVX2` caps oneDNN at the kernels an AVX2-only CPU gets, so an AVX-512
machine also shows what such a CPU gains (its microarchitecture aside).

    python benchmarks/onednn.py [--batches 12] [--out benchmarks/results/onednn.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import ONEDNN_VARS, cpu_model  # noqa: E402

CONFIGS = {
    "oneDNN, every ISA the CPU has": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "oneDNN capped at AVX2 (wastesort on an AVX2-only CPU)": {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "Eigen (TensorFlow's default on an AVX2-only CPU)": {"TF_ENABLE_ONEDNN_OPTS": "0"},
}


def measure(batches: int) -> dict[str, float]:
    """In a worker process: images per second of the three workloads."""
    import numpy as np

    from wastesort import stage

    stage.load_tensorflow()  # before wastesort.model imports Keras, as the stages do
    import keras

    from wastesort.model import BackboneSpec, build_classifier, set_fine_tuning

    classifier = build_classifier(6, BackboneSpec(224, None, fine_tune_layers=153), seed=0)
    set_fine_tuning(classifier, True)
    top = classifier.top
    top.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    n = 32 * batches
    x = rng.integers(0, 256, (n, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 6, n)

    def rate(fn, images: int) -> float:
        fn()  # build and trace first
        start = time.perf_counter()
        fn()
        return images / (time.perf_counter() - start)

    out = {
        "train": rate(lambda: top.fit(x, y, batch_size=32, epochs=1, verbose=0), n),
        "forward_224": rate(lambda: top.predict(x, batch_size=32, verbose=0), n),
    }
    native = keras.applications.MobileNetV2(
        input_shape=(512, 384, 3), include_top=False, weights=None, pooling="avg"
    )
    big = rng.uniform(-1, 1, (16 * max(2, batches // 3), 512, 384, 3)).astype("float32")
    out["forward_512x384"] = rate(lambda: native.predict(big, batch_size=16, verbose=0), len(big))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12, help="timed batches of 32 per workload")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results/onednn.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(args.batches)))
        return 0
    base = {k: v for k, v in os.environ.items() if k not in ONEDNN_VARS}
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = []
    for name, extra in CONFIGS.items():
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", "--batches", str(args.batches)],
            env={**base, **extra},
            text=True,
            capture_output=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            return 1
        rows.append(
            {"config": name, "env": extra, **json.loads(proc.stdout.strip().splitlines()[-1])}
        )
        print(
            f"{name}: "
            + ", ".join(
                f"{k} {rows[-1][k]:.1f}" for k in ("train", "forward_224", "forward_512x384")
            ),
            flush=True,
        )
    cpu = cpu_model()
    eigen = rows[-1]
    lines = [
        f"CPU: {cpu}; command: `python benchmarks/onednn.py --batches {args.batches}`",
        "",
        "| kernels | train img/s | forward 224 img/s | forward 512x384 img/s | "
        "train against Eigen |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['train']:.1f} | {row['forward_224']:.1f} | "
            f"{row['forward_512x384']:.1f} | {row['train'] / eigen['train']:.2f}x |"
        )
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"cpu": cpu, "batches": args.batches, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
