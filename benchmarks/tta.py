"""Benchmark: test-time augmentation on a trained pipeline's exported files, val and test.

Scores ``export/model_float32.tflite`` and ``export/model_int8.tflite`` of a pipeline run
(e.g. a ``benchmarks/pipeline.py --workdir`` folder) under LiteRT on its own val and test
splits, once on each photo and with the photo's mirror images averaged in: the left-right
mirror (``flip``) and, as a second variant, the upside-down one as well (``flip4``: the four
flips, as `augment` draws them while training). Probabilities are averaged, as a folded-in
TTA graph would. Val chooses; test only reports. Prints a Markdown table, writes JSON.

    uv run python benchmarks/tta.py --repo /path/to/pipeline/repo --out result.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline import cpu_model  # noqa: E402
from wastesort import artifacts  # noqa: E402
from wastesort.litert import LiteModel  # noqa: E402
from wastesort.preprocess import load_for_model  # noqa: E402

VIEWS = {
    "none": [lambda x: x],
    "flip": [lambda x: x, lambda x: x[:, :, ::-1]],
    "flip4": [
        lambda x: x,
        lambda x: x[:, :, ::-1],
        lambda x: x[:, ::-1],
        lambda x: x[:, ::-1, ::-1],
    ],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    repo = args.repo.resolve()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    root = Path(params["data"]["path"])
    root = root if root.is_absolute() else repo / root
    labels = json.loads((repo / "export/labels.json").read_text())
    models = {
        name: LiteModel((repo / f"export/model_{name}.tflite").read_bytes(), args.threads)
        for name in ("float32", "int8")
    }
    size = models["float32"].input_size
    result: dict = {"repo": str(repo), "cpu": cpu_model(), "split_seed": params["split"]["seed"]}
    rows = []
    trash = labels.index("trash") if "trash" in labels else None
    for split in ("val", "test"):
        manifest = artifacts.read_manifest(repo / f"data/split/{split}.csv")
        pixels = np.stack(
            [load_for_model((root / p).read_bytes(), 10**9, size) for p in manifest["path"]]
        )
        truth = np.array([labels.index(label) for label in manifest["label"]])
        for name, model in models.items():
            started = time.perf_counter()
            outputs = [
                model.predict_in_chunks(np.ascontiguousarray(v(pixels))) for v in VIEWS["flip4"]
            ]
            seconds = time.perf_counter() - started
            for tta, views in VIEWS.items():
                p = np.mean(outputs[: len(views)], axis=0)
                pred = p.argmax(axis=1)
                row = {
                    "split": split,
                    "model": name,
                    "tta": tta,
                    "n": int(len(truth)),
                    "accuracy": round(float((pred == truth).mean()), 6),
                    "trash_f1": round(
                        float(f1_score(truth, pred, labels=[trash], average=None)[0]),
                        4,
                    )
                    if trash is not None
                    else None,
                    "answered_at_0.7": round(float((p.max(axis=1) >= 0.7).mean()), 4),
                }
                rows.append(row)
            result[f"{split}_{name}_seconds_4_views"] = round(seconds, 1)
    result["rows"] = rows
    print(f"{repo} (split seed {result['split_seed']}), {result['cpu']}")
    print(
        "| split | file | TTA | accuracy | trash F1 | answered at 0.7 |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['split']} | {r['model']} | {r['tta']} | {r['accuracy']:.4f} | "
            f"{r['trash_f1']} | {r['answered_at_0.7']:.3f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
