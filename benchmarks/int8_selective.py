"""Benchmark: int8 with its worst-quantized layers left in float (selective quantization).

In a pipeline run's workspace (its `export` stage ran): LiteRT's quantization debugger
(`tf.lite.experimental.QuantizationDebugger`) measures each layer's quantization error on the
export stage's own calibration photos (`export.representative_images` train photos drawn with
`export.seed`); the layers whose error is over ``--threshold`` quantization steps (RMSE /
scale, the threshold TensorFlow's debugger guide uses) are kept in float, and the file is
scored on val (which chooses) and test, against the float32 file and the full-integer int8
file `export` writes.

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/int8_selective.py --out int8_selective.json
"""

from __future__ import annotations

import argparse
import functools
import io
import json
from pathlib import Path

import numpy as np


class Workspace:
    """A finished run's workspace (the current folder), as its `export` stage reads it: the
    params, the evaluated Keras model, the train manifest sorted by path (the order export's
    calibration draw indexes) and its export settings."""

    def __init__(self):
        from wastesort import artifacts, config, paths
        from wastesort.keras_scoring import KerasScorer

        self.params = config.load_params()
        self.export = config.section(self.params, "export")
        self.root = config.data_root(self.params)
        self.max_pixels = int(self.params["validate"]["max_pixels"])
        self.scorer = KerasScorer.from_files(paths.MODEL, paths.LABELS, self.max_pixels)
        train = artifacts.read_manifest(paths.split_manifest("train"))
        self.train = train.sort_values("path").reset_index(drop=True)

    def images(self, rows) -> np.ndarray:
        """``rows``' photos resized as the model takes them."""
        from wastesort.features import load_resized

        paths = rows["path"].tolist()
        return load_resized(self.root, paths, self.scorer.input_size, self.max_pixels)

    @functools.cache  # noqa: B019 (one Workspace a run: its splits are decoded once)
    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A split's images and class indices, decoded once."""
        from wastesort import artifacts, paths

        rows = artifacts.read_manifest(paths.split_manifest(name))
        truth = np.array([self.scorer.labels.index(label) for label in rows["label"]])
        return self.images(rows), truth

    def calibration_photos(self) -> np.ndarray:
        """The export stage's own draw of calibration photos (`export.representative_images`
        train photos with `export.seed`)."""
        n = min(int(self.export["representative_images"]), len(self.train))
        rng = np.random.default_rng(int(self.export["seed"]))
        return self.images(self.train.iloc[np.sort(rng.choice(len(self.train), n, replace=False))])

    def scores(self, files: dict[str, bytes]) -> dict[str, dict]:
        """Each TFLite file (one named ``float32``) on val and test: accuracy, its drop from
        the float32 file's and top-1 agreement with it."""
        from wastesort.litert import LiteModel

        out = {}
        for split in ("val", "test"):
            x, truth = self.split(split)
            answers = {k: LiteModel(v).predict_in_chunks(x).argmax(1) for k, v in files.items()}
            reference = float(np.mean(answers["float32"] == truth))
            out[split] = {
                k: {
                    "accuracy": round(float(np.mean(a == truth)), 4),
                    "drop": round(reference - float(np.mean(a == truth)), 4),
                    "agreement_with_float32": round(float(np.mean(a == answers["float32"])), 4),
                }
                for k, a in answers.items()
            }
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--threshold", type=float, default=0.7, help="RMSE / scale over which a layer stays float"
    )
    ap.add_argument("--out", default="int8_selective.json")
    args = ap.parse_args()

    import pandas as pd
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from wastesort import export

    ws = Workspace()
    representative = ws.calibration_photos()

    def dataset():
        for i in range(len(representative)):
            yield [representative[i : i + 1]]

    graph = export.frozen_graph(ws.scorer.model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    stats = pd.read_csv(dump)
    stats["steps"] = np.sqrt(stats["mean_squared_error"]) / stats["scale"]
    worst = stats[stats["steps"] > args.threshold].sort_values("steps", ascending=False)
    files = {
        **export.to_tflite(ws.scorer.model, representative),  # as `export` writes both, one trace
        # full-integer but for the layers named below (uint8 asked; the quantizer gives int8 ends)
        "int8_selective": convert.mlir_quantize(
            debugger.calibrated_model,
            fully_quantize=True,
            input_data_type=tf.uint8,
            output_data_type=tf.uint8,
            denylisted_nodes=worst["tensor_name"].tolist(),
        ),
    }
    result = {
        "repo": str(Path.cwd()),
        "split_seed": int(ws.params["split"]["seed"]),
        "threshold": args.threshold,
        "float_layers": [
            {"op": op, "layer": name.split(";")[0].split("/")[3], "steps": round(float(s), 3)}
            for op, name, s in zip(worst["op_name"], worst["tensor_name"], worst["steps"])
        ],
        "steps_median": round(float(stats["steps"].median()), 3),
        "bytes": {k: len(v) for k, v in files.items()},
    }
    result.update(ws.scores(files))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({s: result[s] for s in ("val", "test")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
