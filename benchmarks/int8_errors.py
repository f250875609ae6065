"""Benchmark: where the int8 file's test accuracy goes, and what its bytes hold.

In a pipeline workspace whose `export` stage ran: runs both TFLite files on the test split and
counts the photos whose top-1 class changes from float32 to int8, how many of those were right,
the float32 margin (top-1 minus top-2) of each, and ties of the int8 file's two highest uint8
probabilities (argmax then takes the first class). Also splits the int8 file's bytes into
weights, biases and the rest (tensor tables and per-channel quantization parameters).

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/int8_errors.py --out int8_errors.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def anatomy(path: Path) -> dict:
    """Bytes of the int8 file's constant tensors by type, and the quantized channels."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    by_type: dict[str, int] = {}
    channels = 0
    for detail in interpreter.get_tensor_details():
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:  # an activation: no data before allocate_tensors
            continue
        if value.size == 0:
            continue
        by_type[str(value.dtype)] = by_type.get(str(value.dtype), 0) + value.nbytes
        channels += len(detail["quantization_parameters"]["scales"])
    size = path.stat().st_size
    return {
        "file_bytes": size,
        "constant_bytes_by_type": by_type,
        "other_bytes": size - sum(by_type.values()),
        "quantized_channels": channels,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="int8_errors.json")
    args = ap.parse_args()

    from wastesort import artifacts, config, paths
    from wastesort.features import load_resized
    from wastesort.litert import LiteModel

    params = config.load_params()
    export = json.loads(paths.metrics("export.json").read_text())
    labels = json.loads((paths.EXPORT / "labels.json").read_text())
    test = artifacts.read_manifest(paths.split_manifest("test"))
    max_pixels = int(config.section(params, "validate")["max_pixels"])
    size = tuple(export["input_size"])
    x = load_resized(config.data_root(params), test["path"].tolist(), size, max_pixels)
    truth = np.array([labels.index(label) for label in test["label"]])
    probs = {
        kind: LiteModel((paths.EXPORT / f"model_{kind}.tflite").read_bytes()).predict_in_chunks(x)
        for kind in ("float32", "int8")
    }
    f32, i8 = probs["float32"].argmax(1), probs["int8"].argmax(1)
    changed = f32 != i8
    top2 = np.sort(probs["int8"], axis=1)[:, -2:]
    ties = top2[:, 0] == top2[:, 1]
    ranked = np.sort(probs["float32"][changed], axis=1)
    out = {
        "n_test": len(truth),
        "accuracy": {"float32": float(np.mean(f32 == truth)), "int8": float(np.mean(i8 == truth))},
        "changed": int(changed.sum()),
        "right_to_wrong": int((changed & (f32 == truth)).sum()),
        "wrong_to_right": int((changed & (i8 == truth)).sum()),
        "float32_margins_of_changed": [round(float(m), 3) for m in ranked[:, -1] - ranked[:, -2]],
        "int8_top2_ties": int(ties.sum()),
        "int8_mistakes_among_ties": int((i8[ties] != truth[ties]).sum()),
        "int8_file": anatomy(paths.EXPORT / "model_int8.tflite"),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
