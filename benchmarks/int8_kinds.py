"""Benchmark: which int8 file to serve: full-integer against int8 weights with dynamic ranges.

In a pipeline run's workspace (its `export` stage ran), three files from the evaluated Keras
model:

- ``float32``: what `export` writes and the service serves by default;
- ``int8``: full-integer post-training quantization, as `export` writes it (uint8 in and out,
  calibrated on `export.representative_images` train photos drawn with `export.seed`);
- ``int8_dynamic``: LiteRT's dynamic-range quantization (``Optimize.DEFAULT`` with no
  calibration set): int8 weights, activations quantized per batch at run time, float32 in
  and out.

Each is scored on val (which chooses) and test, and timed under LiteRT the way the service
runs it: one thread, one photo at a time (median of ``--repeats`` calls), and two threads on
batches of 16 (images/s), with the CPU named.

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/int8_kinds.py --out int8_kinds.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def dynamic_range(graph) -> bytes:
    """``graph`` (export's frozen trace) with int8 weights and dynamically quantized
    activations: LiteRT's dynamic-range quantization."""
    import tensorflow as tf

    from wastesort import export

    def converter():
        made = tf.lite.TFLiteConverter.from_concrete_functions([graph])
        made.optimizations = [tf.lite.Optimize.DEFAULT]
        return made

    return export._convert(converter)


def timings(blob: bytes, images: np.ndarray, repeats: int) -> dict[str, float]:
    """One thread, one photo per call: the median ms; two threads, batches of 16: images/s."""
    from wastesort.litert import LiteModel

    one = LiteModel(blob, num_threads=1)
    for i in range(5):
        one.predict(images[i : i + 1])
    ms = []
    for i in range(repeats):
        start = time.perf_counter()
        one.predict(images[i % len(images) : i % len(images) + 1])
        ms.append(1000 * (time.perf_counter() - start))
    two = LiteModel(blob, num_threads=2)
    batch = images[:16]
    two.predict(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 10:
        two.predict(batch)
        n += len(batch)
    return {
        "one_thread_batch1_ms_p50": round(float(np.median(ms)), 2),
        "two_threads_batch16_images_per_s": round(n / (time.perf_counter() - start), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="int8_kinds.json")
    ap.add_argument("--repeats", type=int, default=200, help="one-photo calls timed per file")
    args = ap.parse_args()

    from int8_selective import Workspace
    from pipeline import cpu_model

    from wastesort import export

    ws = Workspace()
    files = {  # as `export` writes them (one trace), and the third from a trace of its own
        **export.to_tflite(ws.scorer.model, ws.calibration_photos()),
        "int8_dynamic": dynamic_range(export.frozen_graph(ws.scorer.model)),
    }
    result: dict = {
        "repo": str(Path.cwd()),
        "split_seed": int(ws.params["split"]["seed"]),
        "cpu": cpu_model(),
        "bytes": {k: len(v) for k, v in files.items()},
        **ws.scores(files),
    }
    test_images = ws.split("test")[0]  # decoded once, by the scoring above
    result["speed"] = {k: timings(v, test_images, args.repeats) for k, v in files.items()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("bytes", "val", "test", "speed")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
