"""Decode, resize and push images through the frozen trunk once; cache what it computes.

Originals of every split and the planned variants of the train split go through the same
preprocessing as evaluation and serving (``preprocess``: decode, then the NumPy port of the
model's resize) and the same trunk, so cached features are exactly what the deployed model
computes below its trainable top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from wastesort import images, preprocess
from wastesort.augmentation import apply_plan


def load_resized(
    root: Path, paths: list[str], size: preprocess.Size, max_pixels: int
) -> np.ndarray:
    """Files as the model's input batch, through the one preprocessing path (``preprocess``)."""
    batch = np.empty((len(paths), *preprocess.hw(size), 3), np.float32)
    for i, rel in enumerate(paths):
        try:
            batch[i] = preprocess.load_for_model((root / rel).read_bytes(), max_pixels, size)
        except images.ImageRejected as exc:  # validated earlier; the folder changed since
            raise images.ImageRejected(f"{root / rel}: {exc.reason}", exc.code) from None
    return batch


def run_trunk(trunk, batch: np.ndarray, dtype: str = "float16") -> np.ndarray:
    out = np.asarray(trunk(batch, training=False))
    if dtype == "uint8":
        out = np.clip(np.round(out), 0, 255)
    return out.astype(dtype)


def extract_split(
    trunk,
    root: Path,
    split: pd.DataFrame,
    plan: pd.DataFrame | None,
    cfg: dict[str, Any],
    name: str,
    dtype: str = "float16",
) -> dict[str, np.ndarray]:
    """Features for every image of a split (variant 0) and, for train, each planned variant."""
    size, chunk = preprocess.image_size(cfg["image_size"]), int(cfg["batch_size"])
    plan_by_path = (
        {p: g.to_dict("records") for p, g in plan.groupby("path")} if plan is not None else {}
    )
    feats, labels, paths, variants = [], [], [], []
    ordered = split.sort_values("path").reset_index(drop=True)
    for start in tqdm(range(0, len(ordered), chunk), desc=f"features: {name}", unit="batch"):
        part = ordered.iloc[start : start + chunk]
        batch = load_resized(root, part["path"].tolist(), size, int(cfg["max_pixels"]))
        feats.append(run_trunk(trunk, batch, dtype))
        labels += part["label"].tolist()
        paths += part["path"].tolist()
        variants += [0] * len(part)
        rows = [(i, r) for i, p in enumerate(part["path"]) for r in plan_by_path.get(p, [])]
        for v_start in range(0, len(rows), chunk):
            group = rows[v_start : v_start + chunk]
            augmented = apply_plan(
                batch[[i for i, _ in group]], [r for _, r in group], cfg["fill_mode"]
            )
            feats.append(run_trunk(trunk, augmented, dtype))
            labels += [r["label"] for _, r in group]
            paths += [r["path"] for _, r in group]
            variants += [int(r["variant"]) for _, r in group]
    return {
        "features": np.concatenate(feats) if feats else np.zeros((0,), np.float16),
        "labels": np.array(labels),
        "paths": np.array(paths),
        "variants": np.array(variants, dtype=np.int32),
    }


def save(path: Path, data: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
