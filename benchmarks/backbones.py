"""Benchmark: the backbones side by side, in one process, as ratios to MobileNetV2.

For each ``backbone.name`` at its own input size, on random pixels and random weights (speed
does not depend on them): the fine-tuning step of the default recipe (the whole backbone,
BatchNorm frozen, the Dense(128) head, Adam, batch 32) and the forward pass (features,
evaluate), images per second; then the float32 and int8 TFLite files of the classifier, one
image at a time on one LiteRT thread (what one service worker does), milliseconds per image,
and their sizes.

    python benchmarks/backbones.py [--batches 6] [--out benchmarks/results/backbones.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402

SIZES = {
    "mobilenet_v2": 224,
    "efficientnet_lite0": 224,
    "efficientnet_lite1": 240,
    "efficientnet_lite2": 260,
}


def measure(name: str, size: int, batches: int) -> dict[str, float]:
    import keras
    import numpy as np

    from wastesort import export
    from wastesort.litert import LiteModel
    from wastesort.model import BackboneSpec, build_classifier, set_fine_tuning

    clf = build_classifier(6, BackboneSpec(size, None, -1, name), seed=0)
    set_fine_tuning(clf, True)
    clf.top.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    n = 32 * batches
    x = rng.integers(0, 256, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 6, n)

    def rate(fn, images: int) -> float:
        fn()  # build and trace first
        start = time.perf_counter()
        fn()
        return images / (time.perf_counter() - start)

    out = {
        "train": rate(lambda: clf.top.fit(x, y, batch_size=32, epochs=1, verbose=0), n),
        "forward": rate(lambda: clf.top.predict(x, batch_size=32, verbose=0), n),
    }
    set_fine_tuning(clf, False)
    for kind, content in (
        ("float32", export.to_float32(clf.model)),
        ("int8", export.to_int8(clf.model, x[:8])),
    ):
        lite = LiteModel(content, num_threads=1)
        lite.predict(x[:1])
        start = time.perf_counter()
        for i in range(32):
            lite.predict(x[i : i + 1])
        out[f"{kind}_ms"] = (time.perf_counter() - start) / 32 * 1000
        out[f"{kind}_bytes"] = len(content)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6, help="timed batches of 32 per workload")
    ap.add_argument("--names", default=",".join(SIZES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results/backbones.json"))
    args = ap.parse_args()
    from wastesort import stage

    stage.load_tensorflow()
    rows = []
    for name in args.names.split(","):
        rows.append(
            {"backbone": name, "size": SIZES[name], **measure(name, SIZES[name], args.batches)}
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    cpu = cpu_model()
    lines = [
        f"CPU: {cpu}; command: `python benchmarks/backbones.py --batches {args.batches}`",
        "",
        "| backbone | px | train img/s | forward img/s | train cost vs first | "
        "float32 ms | int8 ms | int8 MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['size']} | {r['train']:.1f} | {r['forward']:.1f} "
            f"| {base['train'] / r['train']:.2f}x | {r['float32_ms']:.1f} | "
            f"{r['int8_ms']:.1f} | {r['int8_bytes'] / 1e6:.2f} |"
        )
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"cpu": cpu, "batches": args.batches, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
