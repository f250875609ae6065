"""The label review: a flipped label ranks first; the stage writes a report, changes nothing."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.data.test_validation import photo_folders
from wastesort import features
from wastesort.config import ConfigError
from wastesort.data import review

CLASSES = ["cardboard", "glass", "metal"]
CFG = {"folds": 5, "seed": 0, "c": 1.0, "top": 6}


def clusters(per_class: int = 40, flipped: int = 17, seed: int = 0):
    """Well-separated Gaussian clusters, one per class, with row ``flipped`` of class 0
    labelled as class 2."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    centres = 10.0 * np.eye(len(CLASSES), 16)
    x = centres[y] + rng.normal(size=(len(y), 16))
    labels = np.array(CLASSES)[y]
    labels[flipped] = CLASSES[2]
    paths = np.array([f"{label}/{i:03d}.jpg" for i, label in enumerate(np.array(CLASSES)[y])])
    return x, {"labels": labels, "paths": paths, "splits": np.full(len(y), "train")}


@pytest.mark.parametrize("flipped", [3, 17, 29])
def test_flipped_label_ranks_first_and_is_flagged(flipped):
    x, data = clusters(flipped=flipped)
    table, metrics = review.review(x, data, CFG)
    top = table.iloc[0]
    assert top["path"] == f"cardboard/{flipped:03d}.jpg" and top["rank"] == 1
    assert top["given"] == "metal" and top["suggested"] == "cardboard" and top["flagged"]
    assert top["quality"] < 0.05 and table["quality"].iloc[1] > 0.3  # far ahead of the rest
    assert table["flagged"].sum() == 1 and metrics["n_suspects"] == 1
    assert metrics["n_images"] == 120 and metrics["oof_accuracy"] >= 0.98
    assert list(table.columns) == review.SUSPECT_COLUMNS
    assert table["quality"].is_monotonic_increasing


def test_same_inputs_same_ranking_other_seed_same_suspect():
    x, data = clusters()
    first, _ = review.review(x, data, CFG)
    pd.testing.assert_frame_equal(first, review.review(x, data, CFG)[0])
    assert review.review(x, data, {**CFG, "seed": 1})[0]["path"].iloc[0] == first["path"].iloc[0]


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({**CFG, "folds": 1}, r"review.folds must be greater than or equal to 2 \(got 1\)"),
        ({**CFG, "top": 0}, r"review.top must be greater than or equal to 1 \(got 0\)"),
        ({**CFG, "c": 0}, r"review.c must be greater than 0 \(got 0\)"),
    ],
)
def test_bad_review_params_are_named(cfg, message):
    x, data = clusters()
    with pytest.raises(ConfigError, match=message):
        review.review(x, data, cfg)


def test_more_folds_than_images_in_a_class_is_explained():
    x, data = clusters(per_class=4, flipped=1)
    with pytest.raises(
        ConfigError,
        match="review.folds=5 needs at least 5 images in every class; the smallest class has 3",
    ):
        review.review(x, data, CFG)


def test_missing_or_foreign_feature_cache_is_named(tmp_path):
    with pytest.raises(ConfigError, match="train.npy: not found .run the features stage first."):
        review.load_originals(tmp_path)
    for name in ("train", "val", "test"):
        np.save(tmp_path / f"{name}.npy", np.zeros((1, 4)))
        np.savez(tmp_path / f"{name}.index.npz", paths=np.array(["a/x.jpg"]))
    with pytest.raises(
        ConfigError, match="train.index.npz: lacks labels, variants .re-run the features"
    ):
        review.load_originals(tmp_path)


class MeanPool:
    """Stands in for the frozen backbone above the cut: the mean of each row's pixels."""

    def __init__(self):
        self.seen = []

    def predict(self, batch, batch_size, verbose):
        self.seen.append(batch.dtype)
        return np.asarray(batch, np.float32).mean(axis=(1, 2))


def test_features_from_cached_images_activations_or_pooled_features(tmp_path):
    root = photo_folders(tmp_path, {"a": 2})
    paths = np.array(["a/a_00.jpg", "a/a_01.jpg"])
    decoded = features.load_resized(root, list(paths), 32, 10**7)
    cached = decoded.round().astype(np.uint8)
    pool = MeanPool()
    from_images = review.frozen_features(pool, [cached], 8)
    np.testing.assert_allclose(from_images, decoded.mean(axis=(1, 2)), atol=0.5)
    assert pool.seen == [np.float32]  # uint8 images are handed over as float32
    # the same from the on-disk cache, split in two parts as load_originals gives it
    data = {"features": cached, "labels": paths, "paths": paths, "variants": np.zeros(2)}
    features.save(tmp_path / "cache", "train", data)
    rows = features.load(tmp_path / "cache", "train")["features"]
    np.testing.assert_array_equal(
        review.frozen_features(MeanPool(), [rows.subset([0]), rows.subset([1])], 8), from_images
    )
    pooled = np.arange(6, dtype=np.float16).reshape(2, 3)
    np.testing.assert_array_equal(review.frozen_features(None, [pooled], 8), pooled)
    # activations inside the backbone go through the layers above the cut as they are
    activations = np.arange(2 * 4 * 4 * 3, dtype=np.float16).reshape(2, 4, 4, 3)
    np.testing.assert_allclose(
        review.frozen_features(MeanPool(), [activations[:1], activations[1:]], 8),
        activations.astype(np.float32).mean(axis=(1, 2)),
    )


def test_the_review_stage_pools_cached_activations_like_the_whole_frozen_backbone():
    """The review's pooler on the trunk's cached activations gives the whole frozen backbone's
    pooled features (what review decoded every photo again for before)."""
    from wastesort.model import BackboneSpec, build_classifier, cache_model

    images = np.random.default_rng(5).integers(0, 256, (3, 48, 48, 3)).astype(np.float32)
    cut = build_classifier(2, BackboneSpec((48, 48), None, 20, "mobilenet_v2"), seed=1)
    whole = cache_model(
        build_classifier(2, BackboneSpec((48, 48), None, 0, "mobilenet_v2"), seed=1)
    )
    activations = cut.trunk.predict(images, verbose=0).astype(np.float16)  # as the cache holds them
    np.testing.assert_allclose(
        review.frozen_features(cut.pooler, [activations], 8),
        whole.predict(images, verbose=0),
        rtol=0.02,
        atol=0.02,
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_stage_writes_report_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """The real stage on cached 32 px images, with a random-weight backbone (offline)."""
    repo = Path(__file__).resolve().parents[2]
    root = photo_folders(tmp_path / "raw", {c: 6 for c in CLASSES})
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(path=str(root), classes=[])
    params["backbone"].update(weights="none", image_size=32, batch_size=8)
    params["review"] = {"folds": 3, "seed": 0, "c": 0.01, "top": 4}
    work = tmp_path / "work"
    (work / "data/split").mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    for i, name in enumerate(("train", "val", "test")):
        part = paths[i::3]
        pd.DataFrame({"path": part, "label": [p.split("/")[0] for p in part]}).to_csv(
            work / f"data/split/{name}.csv", index=False
        )
        images = features.load_resized(root, part, 32, 10**7).round().astype(np.uint8)
        variants = [0] * len(part) + ([1] * len(part) if name == "train" else [])
        features.save(
            work / "data/features",
            name,
            {
                "features": np.concatenate([images] * (2 if name == "train" else 1)),
                "labels": np.array([p.split("/")[0] for p in part] * (2 if name == "train" else 1)),
                "paths": np.array(part * (2 if name == "train" else 1)),
                "variants": np.array(variants, np.int32),
            },
        )
    before = snapshot(root), snapshot(work / "data")
    monkeypatch.chdir(work)
    runpy.run_path(str(repo / "stages" / "review.py"), run_name="__main__")
    assert (snapshot(root), snapshot(work / "data")) == before
    table = pd.read_csv(work / "reports/review/label_suspects.csv")
    assert list(table.columns) == review.SUSPECT_COLUMNS
    assert sorted(table["path"]) == paths and table["rank"].tolist() == list(range(1, 19))
    assert set(table["split"]) == {"train", "val", "test"}
    metrics = json.loads((work / "metrics/review.json").read_text())
    assert metrics["n_images"] == 18 and metrics["folds"] == 3
    assert set(metrics) == {"n_images", "n_suspects", "suspects_in_test", "folds", "oof_accuracy"}
    assert (work / "reports/review/suspects.png").stat().st_size > 5000
    report = (work / "reports/review/report.md").read_text()
    assert "## Top 4 suspects" in report and report.count("\n| ") == 4 + 1
    assert "review: " in capsys.readouterr().out
