"""Benchmark: frozen ImageNet features at a given input size, scored by a linear probe.

For each NAME:HEIGHT:WIDTH given, every photo of a finished run's split (`data/split/*.csv` of
a `benchmarks/pipeline.py --workdir` folder) is resized to HEIGHT x WIDTH (the whole photo, as
the model's Resizing layer does), run through the frozen backbone and average-pooled; a
standardised logistic regression is fitted on train with C chosen on val, and val and test
accuracy are reported with the seconds the features took. A cheap first look at a backbone or
an input shape (the photo's own aspect ratio, say) before a fine-tuning run.

    uv run python benchmarks/probe.py /tmp/exp/e0/repo efficientnet_lite0:224:224 \\
        efficientnet_lite0:240:320 --out benchmarks/results/probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline import cpu_model
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def features(name: str, size: tuple[int, int], photos: list[np.ndarray]) -> np.ndarray:
    import keras

    from wastesort import backbones, preprocess

    net = backbones.load(name, (*size, 3), "imagenet")
    scale, offset = backbones.SCALING[name]
    image = keras.Input((*size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(
        net(keras.layers.Rescaling(scale, offset=offset)(image))
    )
    model = keras.Model(image, pooled)
    batch = np.stack([preprocess.resize(p, size) for p in photos])
    return model.predict(batch, batch_size=32, verbose=0)


def probe(
    split: dict[str, pd.DataFrame], feats: dict[str, np.ndarray], cs: list[float]
) -> dict[str, float]:
    scaler = StandardScaler().fit(feats["train"])
    x = {n: scaler.transform(f) for n, f in feats.items()}
    best = None
    for c in cs:
        fit = LogisticRegression(C=c, max_iter=3000).fit(x["train"], split["train"]["label"])
        val = fit.score(x["val"], split["val"]["label"])
        if best is None or val > best["val"]:
            best = {
                "c": c,
                "val": round(val, 4),
                "test": round(fit.score(x["test"], split["test"]["label"]), 4),
            }
    return best


def main() -> None:
    from wastesort import config, images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path, help="a finished pipeline folder (its split and data)")
    ap.add_argument("configs", nargs="+", help="NAME:HEIGHT:WIDTH, e.g. efficientnet_lite0:224:224")
    ap.add_argument("--c", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03, 0.1])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    params = config.load_params(args.repo / "params.yaml")
    root = (args.repo / params["data"]["path"]).resolve()
    split = {n: pd.read_csv(args.repo / f"data/split/{n}.csv") for n in ("train", "val", "test")}
    max_pixels = int(params["validate"]["max_pixels"])
    photos = {
        n: [np.asarray(images.decode((root / p).read_bytes(), max_pixels).image) for p in s["path"]]
        for n, s in split.items()
    }
    rows = []
    for spec in args.configs:
        name, height, width = spec.split(":")
        started = time.perf_counter()
        feats = {n: features(name, (int(height), int(width)), p) for n, p in photos.items()}
        row = {
            "backbone": name,
            "height": int(height),
            "width": int(width),
            **probe(split, feats, args.c),
            "feature_seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "repo": str(args.repo),
                    "split_seed": params["split"]["seed"],
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
