"""Code behaviour of the split: stratified, seeded, duplicates and near-duplicates kept together."""

from __future__ import annotations

import pandas as pd
import pytest

from tests import imagegen as g
from tests.data.test_validation import CFG, photo_folders, resized_copy
from wastesort import artifacts
from wastesort.config import ConfigError
from wastesort.data.splitting import grouped_images, split_manifest
from wastesort.data.validation import validate


def manifest(per_class: dict[str, int], shared: int = 0) -> pd.DataFrame:
    rows = [
        {"path": f"{label}/{i:03d}.jpg", "label": label, "sha256": f"{label}{i:03d}"}
        for label, n in per_class.items()
        for i in range(n)
    ]
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
        assert (tmp_path / "one" / f"{name}.csv").read_bytes() == (
            tmp_path / "two" / f"{name}.csv"
        ).read_bytes()
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


def grouped_manifest(per_class: dict[str, int], group_size: int) -> pd.DataFrame:
    """Every ``group_size`` consecutive files of a class form a near-duplicate group."""
    frame = manifest(per_class)
    number = frame["path"].str.extract(r"(\d+)\.jpg$")[0].astype(int) // group_size
    frame["group"] = frame["label"] + "/" + number.map("{:03d}".format)
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_near_duplicate_groups_never_straddle_splits(seed):
    data = grouped_manifest({"a": 60, "b": 45, "c": 30}, group_size=3)
    splits = split_manifest(data, 0.2, 0.2, seed=seed)
    where = {p: name for name, f in splits.items() for p in f["path"]}
    for _, group in data.groupby("group"):
        assert len({where[p] for p in group["path"]}) == 1
    assert grouped_images(splits) == (45, 135)
    assert {name: len(f) for name, f in splits.items()} == {"train": 81, "val": 27, "test": 27}
    for name in ("val", "test"):  # 9 groups drawn per split, stratified: 4 a, 3 b, 2 c
        assert splits[name]["label"].value_counts().to_dict() == {"a": 12, "b": 9, "c": 6}


def test_groups_of_one_split_as_before():
    data = manifest({"a": 50, "b": 50})
    alone = data.assign(group=data["path"])
    for name, frame in split_manifest(alone, 0.2, 0.2, seed=7).items():
        plain = split_manifest(data, 0.2, 0.2, seed=7)[name]
        assert frame["path"].tolist() == plain["path"].tolist()


@pytest.fixture(scope="module")
def copied(tmp_path_factory) -> pd.DataFrame:
    """The validated manifest of distinct photos where 4 train-sized originals per class have a
    smaller (JPEG quality 60) and a larger (quality 80) re-encoded copy."""
    root = photo_folders(tmp_path_factory.mktemp("copies"), {"a": 16, "b": 16, "c": 16})
    for label in ("a", "b", "c"):
        for i in range(4):
            original = (root / label / f"{label}_{i:02d}.jpg").read_bytes()
            g.write(root / label / f"{label}_{i:02d}_small.jpg", resized_copy(original, 0.5, 60))
            g.write(root / label / f"{label}_{i:02d}_large.jpg", resized_copy(original, 1.5, 80))
    outcome = validate(root, [], CFG, tmp_path_factory.mktemp("copies_docs"))
    assert outcome.summary["near_duplicate_groups"] == 12
    return outcome.manifest


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 42])
def test_resized_reencoded_copy_stays_in_its_originals_split(copied, seed):
    splits = split_manifest(copied, 0.2, 0.2, seed=seed)
    where = {p: name for name, f in splits.items() for p in f["path"]}
    for label in ("a", "b", "c"):
        for i in range(4):
            stem = f"{label}/{label}_{i:02d}"
            assert where[f"{stem}_small.jpg"] == where[f"{stem}.jpg"] == where[f"{stem}_large.jpg"]
    # the same manifest split by bytes alone scatters the copies: what the groups prevent
    by_bytes = split_manifest(copied.drop(columns="group"), 0.2, 0.2, seed=seed)
    where = {p: name for name, f in by_bytes.items() for p in f["path"]}
    assert any(where[p] != where[p.replace("_small", "")] for p in where if "_small" in p)
