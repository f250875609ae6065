"""Benchmark: does reading the feature cache from disk slow fine-tuning down?

In one process, on a workspace whose `features` stage has run, alternates one-epoch fits of
the fine-tuning phase (fresh variants, validation after the epoch, as `train` runs them)
with the train and validation rows streamed from the cache (`features.Rows`, what the stage
does) and with the same rows held in memory (what the code before streaming did). One process
and alternating epochs take the machine's drift out of the comparison. Prints and writes JSON.

    cd WORKSPACE && PYTHONPATH=$PWD uv run --project /path/to/wastesort \
        python /path/to/wastesort/benchmarks/streaming.py --rounds 4 --out streaming.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4, help="epochs of each source, alternating")
    ap.add_argument("--out", default="streaming.json")
    args = ap.parse_args()

    from wastesort import config, features, paths
    from wastesort.augmentation import FreshVariants
    from wastesort.model import BackboneSpec, build_classifier, set_fine_tuning
    from wastesort.training import fitting

    params = config.load_params()
    cfg, head = config.section(params, "finetune"), config.section(params, "head")
    spec = BackboneSpec.from_params(config.section(params, "backbone"), cfg)
    train, val = (features.load(paths.FEATURES, n) for n in ("train", "val"))
    classes = fitting.class_order(config.configured_classes(params), train["labels"])
    originals = np.flatnonzero(train["variants"] == 0)
    streamed = {"train": train["features"].subset(originals), "val": val["features"]}
    if streamed["train"].dtype != np.uint8:
        raise SystemExit("finetune.layers must be `all` (the cache holds resized images)")
    in_memory = {k: np.asarray(v) for k, v in streamed.items()}
    clf = build_classifier(
        len(classes), spec, int(head["dense_units"]), float(head["dropout"]), seed=int(cfg["seed"])
    )
    set_fine_tuning(clf, True)
    tune_cfg = {**cfg, "epochs": 1, "label_smoothing": float(head["label_smoothing"])}
    y_train = fitting.encode_labels(train["labels"][originals], classes, "train")
    y_val = fitting.encode_labels(val["labels"], classes, "val")

    def epoch(source: dict) -> float:
        fresh = FreshVariants.from_params(source["train"], y_train, len(classes), clf.trunk, params)
        with tempfile.TemporaryDirectory() as tmp:
            result = fitting.fit(
                clf.top,
                fresh.as_dataset(),
                (source["val"], y_val),
                tune_cfg,
                Path(tmp) / "history.csv",
                train_labels=fresh.labels,
            )
        return fitting.speed(result)["train_images_per_second"]

    runs: dict[str, list[float]] = {"streamed": [], "in_memory": []}
    started = time.perf_counter()
    for r in range(args.rounds):
        order = ("streamed", "in_memory") if r % 2 == 0 else ("in_memory", "streamed")
        for name in order:
            runs[name].append(epoch(streamed if name == "streamed" else in_memory))
            print(f"round {r + 1}: {name} {runs[name][-1]} images/s", flush=True)
    ratios = [s / m for s, m in zip(runs["streamed"], runs["in_memory"], strict=True)]
    out = {
        "cpu": cpu_model(),
        "train_images": len(originals),
        "val_images": len(val["labels"]),
        "images_per_second": runs,
        "median": {k: statistics.median(v) for k, v in runs.items()},
        "streamed_over_in_memory": [round(x, 4) for x in ratios],
        "median_ratio": round(statistics.median(ratios), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
