"""The on-disk feature cache: rows written a batch at a time, read back on demand."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from wastesort import features
from wastesort.config import ConfigError


def split_data(n: int = 10, shape=(4, 3), dtype=np.uint8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.integers(0, 256, (n, *shape)).astype(dtype),
        "labels": np.array([f"c{i % 3}" for i in range(n)]),
        "paths": np.array([f"c{i % 3}/{i}.jpg" for i in range(n)]),
        "variants": np.arange(n, dtype=np.int32) % 2,
    }


def test_rows_read_back_exactly_by_slice_index_mask_and_view(tmp_path):
    data = split_data(2500)  # more than one write block
    written = features.save(tmp_path, "train", data)
    assert written["rows"] == 2500
    assert written["bytes"] == sum(f.stat().st_size for f in tmp_path.iterdir())
    loaded = features.load(tmp_path, "train")
    rows, x = loaded["features"], data["features"]
    for key in ("labels", "paths", "variants"):
        np.testing.assert_array_equal(loaded[key], data[key])
    assert rows.shape == x.shape and rows.dtype == x.dtype and rows.ndim == 3 and len(rows) == 2500
    np.testing.assert_array_equal(np.asarray(rows), x)
    np.testing.assert_array_equal(rows[7:1030], x[7:1030])
    picked = np.array([9, 3, 4, 5, 3, 2499, 0])  # unordered, repeated, runs and gaps
    np.testing.assert_array_equal(rows[picked], x[picked])
    mask = data["variants"] == 0
    np.testing.assert_array_equal(rows[mask], x[mask])
    np.testing.assert_array_equal(rows[5], x[5])
    view = rows.subset(np.flatnonzero(mask))
    assert len(view) == mask.sum() and view.nbytes == mask.sum() * 12
    np.testing.assert_array_equal(view[[2, 0]], x[mask][[2, 0]])
    np.testing.assert_array_equal(view.subset(slice(1, 3))[:], x[mask][1:3])
    np.testing.assert_array_equal(np.asarray(view, np.float32), x[mask].astype(np.float32))


def test_float16_activations_and_an_empty_split(tmp_path):
    data = split_data(5, shape=(2, 2, 8), dtype=np.float16)
    features.save(tmp_path, "val", data)
    np.testing.assert_array_equal(
        np.asarray(features.load(tmp_path, "val")["features"]), data["features"]
    )
    empty = features.Writer(tmp_path, "test", 0).close()
    assert empty["rows"] == 0 and len(features.load(tmp_path, "test")["features"]) == 0


def test_writer_keeps_its_count_and_a_broken_cache_is_named(tmp_path):
    writer = features.Writer(tmp_path, "train", 3)
    writer.append(np.zeros((2, 4), np.uint8), ["a", "a"], ["a/1", "a/2"], [0, 0])
    with pytest.raises(ValueError, match="more than the 3 rows announced"):
        writer.append(np.zeros((2, 4), np.uint8), ["a", "a"], ["a/3", "a/4"], [0, 0])
    with pytest.raises(ValueError, match="rows of .4,. float16, expected .4,. uint8"):
        writer.append(np.zeros((1, 4), np.float16), ["a"], ["a/3"], [0])
    with pytest.raises(ValueError, match="2 rows written, 3 announced"):
        writer.close()

    features.save(tmp_path, "val", split_data(4))
    with (tmp_path / "val.npy").open("r+b") as fh:  # a cache cut short (a full disk, say)
        fh.truncate((tmp_path / "val.npy").stat().st_size - 5)
    with pytest.raises(ConfigError, match=r"val.npy: truncated \(re-run the features stage\)"):
        features.load(tmp_path, "val")["features"][2:]
    shutil.copyfile(tmp_path / "val.npy", tmp_path / "test.npy")
    features.save(tmp_path, "other", split_data(6))
    shutil.copyfile(tmp_path / "other.index.npz", tmp_path / "test.index.npz")
    with pytest.raises(ConfigError, match="test.npy: 4 rows for 6 labels"):
        features.load(tmp_path, "test")


def test_a_cache_larger_than_the_free_disk_is_refused_in_one_line(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    features.check_disk(tmp_path / "data/features", 1000)  # a folder not made yet: its parent
    with pytest.raises(ConfigError) as info:
        features.check_disk(tmp_path / "data/features", free // 2 + 1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'data/features'}: the feature cache needs ")
    assert "augment.variants_per_image" in message


def test_long_runs_are_read_in_pieces(tmp_path):
    data = split_data(40, shape=(1000,))
    features.save(tmp_path, "train", data)
    rows = features.load(tmp_path, "train")["features"]
    with (tmp_path / "train.npy").open("rb") as fh:
        whole = features.read_exactly(fh, 40_000, rows.offset, piece=3_001)
        assert features.read_exactly(fh, 40_001, rows.offset, piece=3_001) is None
    np.testing.assert_array_equal(
        np.frombuffer(whole, np.uint8).reshape(40, 1000), data["features"]
    )


def test_planned_rows_counts_originals_and_their_variants():
    import pandas as pd

    split = pd.DataFrame({"path": ["a/1", "a/2", "b/3"], "label": ["a", "a", "b"]})
    plan = pd.DataFrame({"path": ["a/1", "a/1", "b/3", "z/9"]})
    assert features.planned_rows(split, None) == 3
    assert features.planned_rows(split, plan) == 6
