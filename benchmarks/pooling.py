"""Benchmark: pooling cached rows with Keras (what `train` and `review` do) against the same
pooler converted to a float32 LiteRT file (XNNPACK), and how far the features move.

In a pipeline run's workspace (finetune.layers: all, so the cache holds resized images): the
ImageNet pooler of the configured backbone, ``--rows`` cached train rows, ``--rounds``
alternating passes each; images/s, the conversion's seconds, the largest difference and the
share of features equal after the float16 rounding `train` stores them with.

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/pooling.py --out pooling.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="pooling.json")
    args = ap.parse_args()

    from wastesort import config, export, features, paths, stage

    stage.load_tensorflow()  # as the stages start it (op determinism on)
    from wastesort.litert import LiteModel
    from wastesort.model import BackboneSpec, build_classifier

    params = config.load_params()
    spec = BackboneSpec.from_params(
        config.section(params, "backbone"), config.section(params, "finetune")
    )
    pooler = build_classifier(2, spec).pooler
    x = np.asarray(features.load(paths.FEATURES, "train")["features"][: args.rows])
    start = time.perf_counter()
    lite = LiteModel(export.float32_file(pooler), args.threads)  # the export stage's trace
    convert_s = time.perf_counter() - start
    speed: dict[str, list[float]] = {"keras": [], "litert": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        keras_out = features.predict(pooler, x)
        speed["keras"].append(round(len(x) / (time.perf_counter() - start), 1))
        start = time.perf_counter()
        lite_out = lite.predict_in_chunks(x.astype(np.float32), 64)
        speed["litert"].append(round(len(x) / (time.perf_counter() - start), 1))
    result = {
        "cpu": cpu_model(),
        "backbone": spec.name,
        "rows": len(x),
        "threads": args.threads,
        "images_per_second": speed,
        "median_ratio": round(float(np.median(speed["litert"]) / np.median(speed["keras"])), 2),
        "convert_seconds": round(convert_s, 1),
        "max_abs_difference": float(np.abs(keras_out - lite_out).max()),
        "float16_equal_share": float(
            np.mean(keras_out.astype(np.float16) == lite_out.astype(np.float16))
        ),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
