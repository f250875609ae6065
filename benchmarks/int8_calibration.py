"""Benchmark: how the int8 file's accuracy depends on its calibration photos.

In a pipeline run's workspace (its `export` stage ran): the full-integer int8 file is converted
again from the evaluated Keras model, calibrated on other sets of train photos, and each file
is scored on val (which chooses) and test, against the float32 file `export` writes. The sets:
the export stage's own draw (`export.representative_images` photos with `export.seed`), two
more draws of the same size (the draw's spread), the same size drawn evenly over the classes,
and three times as many photos.

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/int8_calibration.py --out int8_calibration.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def draws(train, n: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices of ``train`` for each calibration set."""
    rng = np.random.default_rng
    label = train["label"].to_numpy()
    per_class = n // len(set(label))
    even = np.concatenate(
        [
            rng(seed).choice(np.flatnonzero(label == c), per_class, replace=False)
            for c in sorted(set(label))
        ]
    )
    return {
        f"export's draw ({n}, seed {seed})": rng(seed).choice(len(train), n, replace=False),
        f"another draw ({n}, seed {seed + 1})": rng(seed + 1).choice(len(train), n, replace=False),
        f"another draw ({n}, seed {seed + 2})": rng(seed + 2).choice(len(train), n, replace=False),
        f"even over classes ({per_class} each)": even,
        f"{3 * n} photos (seed {seed})": rng(seed).choice(len(train), 3 * n, replace=False),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="int8_calibration.json")
    args = ap.parse_args()

    from int8_selective import Workspace

    from wastesort import export
    from wastesort.litert import LiteModel

    ws = Workspace()
    train, scorer = ws.train, ws.scorer
    n = min(int(ws.export["representative_images"]), len(train))
    splits = {split: ws.split(split) for split in ("val", "test")}

    def score(blob: bytes) -> dict[str, float]:
        model = LiteModel(blob)
        return {
            split: round(float(np.mean(model.predict_in_chunks(x).argmax(1) == truth)), 4)
            for split, (x, truth) in splits.items()
        }

    result = {
        "repo": str(Path.cwd()),
        "split_seed": int(ws.params["split"]["seed"]),
        "float32": score(export.to_float32(scorer.model)),
        "int8": {},
    }
    for name, rows in draws(train, n, int(ws.export["seed"])).items():
        chosen = train.iloc[np.sort(rows)]
        start = time.perf_counter()
        representative = ws.images(chosen)
        scores = score(export.to_int8(scorer.model, representative))
        scores["drop_val"] = round(result["float32"]["val"] - scores["val"], 4)
        scores["drop_test"] = round(result["float32"]["test"] - scores["test"], 4)
        scores["seconds"] = round(time.perf_counter() - start, 1)
        result["int8"][name] = scores
        print(name, scores, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
