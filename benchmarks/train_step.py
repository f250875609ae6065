"""Benchmark: what makes one fine-tuning step cheaper on this CPU, as ratios to the default.

The default step: EfficientNet-Lite1 at 240 px, the whole backbone trainable (BatchNorm
frozen), float32, Adam, batch 32 (random pixels and weights: speed does not depend on them).
Against it, each in a process of its own (the dtype policy is global), alternating rounds:

- ``bf16``: Keras' ``mixed_bfloat16`` policy (what `distribute.mixed_precision` sets on GPUs),
  the lever issue 35 names for CPUs with ``avx512_bf16`` or ``amx_bf16``;
- ``xla``: the same step compiled by XLA (``jit_compile=True``);
- ``cut:K``: the backbone frozen below its top K layers (``finetune.layers: K``); the frozen
  part still runs forward on every batch, as it does on fresh variants (177: stem and block 0
  frozen, 169: up to block 1, 151: up to block 3, the 60 px stage).

    python benchmarks/train_step.py [--batches 8] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402

VARIANTS = ["default", "bf16", "xla", "cut:177", "cut:169", "cut:151"]
SIZE, BATCH = 240, 32


def measure(variant: str, batches: int) -> float:
    """Images per second of ``variant``'s step, after three untimed steps (tracing)."""
    import keras
    import numpy as np

    from wastesort import stage
    from wastesort.model import BackboneSpec, build_classifier, set_fine_tuning

    stage.load_tensorflow()  # op determinism on, as the stages train
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant == "bf16" else "float32")
    cut = int(variant.split(":")[1]) if variant.startswith("cut:") else -1
    clf = build_classifier(6, BackboneSpec(SIZE, None, cut, "efficientnet_lite1"), seed=0)
    set_fine_tuning(clf, True)
    clf.top.compile(
        keras.optimizers.Adam(1e-4),
        "sparse_categorical_crossentropy",
        jit_compile=variant == "xla",
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3)).astype(np.uint8)
    y = rng.integers(0, 6, BATCH)

    def step():
        clf.top.train_on_batch(np.asarray(clf.trunk(x, training=False)), y)

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return BATCH * batches / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=8, help="timed steps of 32 images")
    ap.add_argument("--rounds", type=int, default=2, help="times each variant is measured")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one in this process
    ap.add_argument("--out", default=str(Path(__file__).parent / "results/train_step.json"))
    args = ap.parse_args()
    if args.one:
        print(json.dumps({"images_per_second": measure(args.one, args.batches)}))
        return 0
    variants = args.variants.split(",")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--batches", str(args.batches)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rates[variant].append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
            print(f"{variant}: {rates[variant][-1]:.2f} images/s", flush=True)
    base = statistics.median(rates[variants[0]])
    rows = [
        {
            "variant": v,
            "images_per_second": [round(r, 2) for r in rs],
            "median": round(statistics.median(rs), 2),
            "vs_default": round(statistics.median(rs) / base, 2),
        }
        for v, rs in rates.items()
    ]
    cpu = cpu_model()
    print(f"CPU: {cpu}")
    for r in rows:
        print(f"{r['variant']:>8}: {r['median']:6.2f} images/s, {r['vs_default']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "cpu": cpu,
                "command": "python benchmarks/train_step.py "
                + f"--batches {args.batches} --rounds {args.rounds}",
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
