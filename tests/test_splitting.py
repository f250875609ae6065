"""Code behaviour of the split: stratified, seeded, duplicates kept together."""
from __future__ import annotations

import pandas as pd
import pytest

from wastesort import artifacts
from wastesort.config import ConfigError
from wastesort.splitting import split_manifest


def manifest(per_class: dict[str, int], shared: int = 0) -> pd.DataFrame:
    rows = [{"path": f"{label}/{i:03d}.jpg", "label": label, "sha256": f"{label}{i:03d}"}
            for label, n in per_class.items() for i in range(n)]
    # byte-identical copies inside a class (possible when validation keeps them by config)
    rows += [{"path": f"a/copy{i}.jpg", "label": "a", "sha256": f"a{i:03d}"} for i in range(shared)]
    return pd.DataFrame(rows).sample(frac=1, random_state=1)  # order must not matter


def test_stratified_fractions():
    splits = split_manifest(manifest({"a": 100, "b": 60, "c": 40}), 0.15, 0.15, seed=3)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 200 and sizes["test"] == 30 and sizes["val"] == 30
    for name in ("val", "test"):
        assert splits[name]["label"].value_counts().to_dict() == {"a": 15, "b": 9, "c": 6}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    data = manifest({"a": 50, "b": 50})
    for run in ("one", "two"):
        for name, frame in split_manifest(data, 0.2, 0.2, seed=7).items():
            artifacts.write_csv(tmp_path / run / f"{name}.csv", frame)
    for name in ("train", "val", "test"):
        assert (tmp_path / "one" / f"{name}.csv").read_bytes() == \
               (tmp_path / "two" / f"{name}.csv").read_bytes()
    other = split_manifest(data, 0.2, 0.2, seed=8)["test"]
    assert set(other["path"]) != set(split_manifest(data, 0.2, 0.2, seed=7)["test"]["path"])


def test_identical_bytes_never_straddle_splits():
    splits = split_manifest(manifest({"a": 40, "b": 40}, shared=20), 0.2, 0.2, seed=0)
    where = {sha: name for name, f in splits.items() for sha in f["sha256"]}
    for name, frame in splits.items():
        assert all(where[sha] == name for sha in frame["sha256"])
    assert sum(len(f) for f in splits.values()) == 100


@pytest.mark.parametrize("val, test", [(0.0, 0.2), (0.5, 0.5), (0.2, 1.2)])
def test_bad_fractions_are_named(val, test):
    with pytest.raises(ConfigError, match="split.val_fraction"):
        split_manifest(manifest({"a": 10, "b": 10}), val, test, seed=0)


def test_too_small_to_stratify_is_explained():
    with pytest.raises(ConfigError, match="cannot stratify"):
        split_manifest(manifest({"a": 2, "b": 2}), 0.2, 0.2, seed=0)
