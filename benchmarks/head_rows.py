"""Benchmark: `train`'s head refit on fewer cached train rows (originals and their first k
planned variants), to see whether `train` could pool fewer train rows after fine-tuning.

In a pipeline run's workspace: the same head, recipe (`train.*`), start (the fine-tuned head) and
val rows as the `train` stage, on the pooled fine-tuned rows in data/finetuned; best val
accuracy (which chooses) for each k, and the number of rows that would be pooled. The row with
every variant reproduces `metrics/train.json`'s best val accuracy (checked).

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/head_rows.py --out head_rows.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", type=int, nargs="+", default=[1, 0])
    ap.add_argument("--out", default="head_rows.json")
    args = ap.parse_args()

    from wastesort import artifacts, config, features, paths, stage

    stage.load_tensorflow()  # as `train` starts it: op determinism, so the refit reproduces
    from wastesort.model import BackboneSpec, build_classifier
    from wastesort.training import fitting

    params = config.load_params()
    head = config.section(params, "head")
    cfg = {**config.section(params, "train"), "label_smoothing": head["label_smoothing"]}
    spec = BackboneSpec.from_params(
        config.section(params, "backbone"), config.section(params, "finetune")
    )
    train, val = (features.load(paths.FINETUNED, n) for n in ("train", "val"))
    classes = fitting.class_order(config.configured_classes(params), train["labels"])
    x_train = np.asarray(train["features"], np.float32)
    y_train = fitting.encode_labels(train["labels"], classes, "train")
    x_val = np.asarray(val["features"], np.float32)
    y_val = fitting.encode_labels(val["labels"], classes, "val")
    recorded = artifacts.read_json(paths.metrics("train.json"))["best_val_accuracy"]
    result = {
        "repo": str(Path.cwd()),
        "split_seed": int(params["split"]["seed"]),
        "recorded_best_val": recorded,
    }
    most = int(train["variants"].max())
    with tempfile.TemporaryDirectory() as tmp:
        for k in [most, *args.variants]:
            keep = train["variants"] <= k
            clf = build_classifier(
                len(classes),
                spec,
                int(head["dense_units"]),
                float(head["dropout"]),
                int(cfg["seed"]),
            )
            fitted = fitting.fit_head(
                clf.head,
                (x_train[keep], y_train[keep]),
                (x_val, y_val),
                cfg,
                Path(tmp) / f"history_{k}.csv",
                start=paths.FINETUNED / "head.weights.h5",
            )
            result[f"variants<={k}"] = {
                "rows": int(keep.sum()),
                "best_val": round(fitted.best_val_accuracy, 6),
                "kept_fine_tuned_head": fitted.kept_start,
            }
    if abs(result[f"variants<={most}"]["best_val"] - recorded) > 1e-6:
        raise SystemExit(f"every row gave val {result[f'variants<={most}']} against {recorded}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
