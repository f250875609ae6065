"""Fine-tuning that reads the cache from disk a batch at a time learns exactly what the same
data held in memory teaches (same batches, same order, same numbers)."""

from __future__ import annotations

import hashlib

import numpy as np

from wastesort import features, pooling
from wastesort.augmentation import FreshVariants
from wastesort.model import BackboneSpec, build_classifier
from wastesort.training import fitting

AUGMENT = {
    "horizontal_flip": True,
    "vertical_flip": False,
    "rotation_degrees": 10.0,
    "width_shift": 0.1,
    "height_shift": 0.1,
    "shear_degrees": 0.0,
    "zoom": 0.1,
    "brightness": 0.1,
    "contrast": 0.1,
    "fill_mode": "reflect",
}
RECIPE = {
    "lr": 1e-3,
    "epochs": 2,
    "patience": 5,
    "batch_size": 8,
    "seed": 3,
    "label_smoothing": 0.1,
    "class_weights": True,
}


def cache(n_images: int = 18, variants: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A train split as `features` caches it with finetune.layers: all: resized uint8 images,
    each original (variant 0) followed by its variants."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % 3
    centres = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    originals = np.clip(
        centres[labels][:, None, None, :] + rng.normal(0, 40, (n_images, 32, 32, 3)), 0, 255
    ).astype(np.uint8)
    rows = np.repeat(originals, 1 + variants, axis=0)
    return {
        "features": rows,
        "labels": np.repeat(labels, 1 + variants).astype(str),
        "paths": np.repeat([f"{i:02d}.jpg" for i in range(n_images)], 1 + variants),
        "variants": np.tile(np.arange(1 + variants), n_images).astype(np.int32),
    }


def tune(train: dict, val: dict, tmp_path, name: str):
    spec = BackboneSpec(32, None, -1, "efficientnet_lite0")  # the whole backbone, random weights
    clf = build_classifier(3, spec, 16, 0.2, seed=5)
    y = train["labels"].astype(int)
    originals = np.flatnonzero(train["variants"] == 0)
    images = train["features"]
    fresh = FreshVariants(
        images.subset(originals) if isinstance(images, features.Rows) else images[originals],
        y[originals],
        3,
        clf.trunk,
        AUGMENT,
        8,
        seed=3,
    )
    result = fitting.fine_tune(
        clf,
        (images, y),
        (val["features"], val["labels"].astype(int)),
        {**RECIPE, "lr_schedule": "constant", "ema_momentum": 0.0},
        {**RECIPE, "lr": 1e-4, "lr_schedule": "cosine", "ema_momentum": 0.9},
        tmp_path / f"{name}.csv",
        fresh,
    )
    pooled = features.predict(clf.pooler, images)
    return result, [w.copy() for w in clf.model.get_weights()], pooled


def test_fine_tuning_from_the_disk_cache_equals_fine_tuning_in_memory(tmp_path, monkeypatch):
    # both runs start from the same weights, so the warm-up's pooler is converted to LiteRT once
    # (a real conversion in its child process) and the second run gets that file again
    converted, convert = {}, pooling.convert_in_child

    def convert_once(classifier):
        digest = hashlib.sha256()
        for w in classifier.pooler.get_weights():
            digest.update(np.ascontiguousarray(w).tobytes())
        key = (str(classifier.spec), digest.hexdigest())
        if key not in converted:
            converted[key] = convert(classifier)
        return converted[key]

    monkeypatch.setattr(pooling, "convert_in_child", convert_once)
    train, val = cache(18, 1, seed=0), cache(9, 0, seed=1)
    features.save(tmp_path / "cache", "train", train)
    features.save(tmp_path / "cache", "val", val)
    streamed = features.load(tmp_path / "cache", "train"), features.load(tmp_path / "cache", "val")
    assert isinstance(streamed[0]["features"], features.Rows)

    in_memory = tune(train, val, tmp_path, "memory")
    on_disk = tune(*streamed, tmp_path, "disk")

    assert in_memory[0].epochs_run == on_disk[0].epochs_run == 4  # warm-up and tuning ran
    assert in_memory[0].history == on_disk[0].history  # every loss and accuracy, to the bit
    for a, b in zip(in_memory[1], on_disk[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(in_memory[2], on_disk[2])
    assert (tmp_path / "memory.csv").read_text() == (tmp_path / "disk.csv").read_text()
    assert len(converted) == 1  # the two runs' warm-up poolers had the same weights
