"""Seeded, stratified train/val/test split of the validated manifest.

The split draws groups, not files: a near-duplicate group (the manifest's ``group``, from
validation; byte-identical files share a ``sha256`` when there is none) lands in one split as a
whole, so no copy of a photo can leak from train into test.

Photos from ``data.extra_paths`` (the manifest's ``source`` is not ``main``) never move the main
folder's photos: its groups are drawn exactly as without extras. An extra photo in a group with
a main photo (a near-duplicate of it) joins that group's split; the other extra groups each take
the split a seeded hash of their content gives (``split.*_fraction`` on average), so a photo
keeps its split as more extras arrive.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from sklearn.model_selection import train_test_split

from wastesort.config import ConfigError

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ["path", "label", "sha256", "group"]
MAIN = "main"  # the manifest's source for data.path (wastesort.data.validation.MAIN)


def group_key(manifest: pd.DataFrame) -> pd.Series:
    """What keeps files together: the near-duplicate group, or the bytes' hash."""
    return manifest["group"] if "group" in manifest.columns else manifest["sha256"]


def hashed_split(key: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """The split of ``key`` drawn from its seeded hash, whatever else is in the manifest."""
    draw = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:15], 16) / 16**15
    if draw < test_fraction:
        return "test"
    return "val" if draw < test_fraction + val_fraction else "train"


def split_manifest(
    manifest: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            "params.yaml: split.val_fraction and split.test_fraction must be in "
            f"(0, 1) with a sum under 1, got {val_fraction} and {test_fraction}"
        )
    ordered = manifest.sort_values("path").reset_index(drop=True)
    ordered["group"] = group_key(ordered)
    if "source" not in ordered.columns:
        ordered["source"] = MAIN
    main = ordered["source"] == MAIN
    # stratum: the first main file's label; the same groups, in the same order, as without extras
    groups = ordered[main].drop_duplicates("group")[["group", "label"]]
    n_test, n_val = round(test_fraction * len(groups)), round(val_fraction * len(groups))
    try:
        rest, test = train_test_split(
            groups, test_size=n_test, random_state=seed, stratify=groups["label"]
        )
        train, val = train_test_split(
            rest, test_size=n_val, random_state=seed, stratify=rest["label"]
        )
    except ValueError as exc:
        counts = groups["label"].value_counts().to_dict()
        raise ConfigError(
            f"cannot stratify {len(groups)} image groups ({counts}) into "
            f"train/val/test with these fractions: {exc}"
        ) from None
    split_of = {g: name for name, part in zip(SPLITS, (train, val, test)) for g in part["group"]}
    extra_only = ordered[~ordered["group"].isin(split_of)].groupby("group")["sha256"].min()
    for group, sha in extra_only.items():
        split_of[group] = hashed_split(sha, seed, val_fraction, test_fraction)
    ordered["split"] = ordered["group"].map(split_of)
    # a manifest without extras keeps its split files byte for byte
    columns = SPLIT_COLUMNS + ([] if main.all() else ["source"])
    return {
        name: ordered.loc[ordered["split"] == name, columns]
        .sort_values(["label", "path"])
        .reset_index(drop=True)
        for name in SPLITS
    }


def split_counts(splits: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    return {
        name: {
            "total": int(len(frame)),
            **{k: int(v) for k, v in frame["label"].value_counts().sort_index().items()},
        }
        for name, frame in splits.items()
    }


def extra_counts(splits: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Photos from data.extra_paths per split (none without a ``source`` column)."""
    return {
        name: int((frame["source"] != MAIN).sum()) if "source" in frame.columns else 0
        for name, frame in splits.items()
    }


def grouped_images(splits: dict[str, pd.DataFrame]) -> tuple[int, int]:
    """Near-duplicate groups of two or more files, and the files in them."""
    sizes = pd.concat(splits.values())["group"].value_counts()
    return int((sizes > 1).sum()), int(sizes[sizes > 1].sum())
