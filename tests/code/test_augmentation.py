"""Code behaviour of the augmentation plan and its application."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from wastesort.augmentation import apply_plan, make_plan
from wastesort.config import typed

CFG = yaml.safe_load((REPO / "params.yaml").read_text())["augment"]
IDENTITY = {
    "flip_h": False,
    "flip_v": False,
    "rotation": 0.0,
    "shift_x": 0.0,
    "shift_y": 0.0,
    "shear": 0.0,
    "zoom": 1.0,
    "brightness": 1.0,
    "contrast": 1.0,
}


def train_manifest(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"a/{i}.jpg" for i in range(n)], "label": "a"})


def test_plan_is_seeded_and_within_ranges():
    plan = make_plan(train_manifest(), CFG)
    assert plan.equals(make_plan(train_manifest().iloc[::-1], CFG))  # order-independent
    assert not plan.equals(make_plan(train_manifest(), {**CFG, "seed": CFG["seed"] + 1}))
    assert len(plan) == 10 * CFG["variants_per_image"]
    assert plan["rotation"].abs().max() <= CFG["rotation_degrees"]
    assert (plan["zoom"] - 1).abs().max() <= CFG["zoom"]
    assert plan["flip_h"].any() and plan["flip_v"].any()


def test_identity_and_flip():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    same = apply_plan(image, [IDENTITY], "reflect")
    assert np.abs(same - image).max() < 1e-3
    flipped = apply_plan(image, [{**IDENTITY, "flip_h": True}], "reflect")
    assert np.abs(flipped - image[:, :, ::-1]).max() < 1e-3


@pytest.mark.parametrize(
    "key, value", [("zoom", 1.5), ("rotation_degrees", -1), ("variants_per_image", -2)]
)
def test_bad_ranges_are_named(key, value):
    from wastesort.config import ConfigError

    with pytest.raises(ConfigError, match=f"augment.{key}"):
        make_plan(train_manifest(), {**CFG, key: value})


def test_fresh_variants_mixup_blends_images_and_labels_alike():
    from wastesort.augmentation import RANGE_KEYS, FreshVariants

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(12) % 3
    identity_cfg = {
        **CFG,
        "horizontal_flip": False,
        "vertical_flip": False,
        **{k: 0.0 for k in RANGE_KEYS},
    }
    plain = FreshVariants(images, labels, 3, lambda x, training: x, identity_cfg, 12, seed=1)
    x, y = plain.batch(0)
    assert set(np.unique(y)) == {0.0, 1.0}  # one-hot
    mixed = FreshVariants(
        images, labels, 3, lambda x, training: x, identity_cfg, 12, seed=1, mixup_alpha=0.4
    )
    xm, ym = mixed.batch(0)
    assert np.allclose(ym.sum(axis=1), 1.0)
    assert ((ym > 0.01) & (ym < 0.99)).any()  # soft targets
    # every mixed image is a blend w*a + (1-w)*b of two originals, and its target the same
    # blend of their one-hot labels
    order = mixed.order[:12]
    originals, onehot = images[order].astype(np.float32), np.eye(3)[labels[order]]
    for i in range(12):
        found = False
        for j in range(12):
            diff = (originals[i] - originals[j]).ravel()
            w = 1.0 if i == j else float(diff @ (xm[i] - originals[j]).ravel() / (diff @ diff))
            if np.allclose(
                xm[i], w * originals[i] + (1 - w) * originals[j], atol=0.05
            ) and np.allclose(ym[i], w * onehot[i] + (1 - w) * onehot[j], atol=1e-4):
                found = True
                break
        assert found, f"row {i} is not one blend of two images and their labels"
    with pytest.raises(Exception, match="finetune.mixup_alpha must be greater than or equal to 0"):
        FreshVariants(images, labels, 3, None, identity_cfg, 4, seed=1, mixup_alpha=-1)


def test_shifts_are_fractions_of_each_side_of_a_landscape_image():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 8, 16, 3)).astype(np.float32)  # 8 high, 16 wide
    across = apply_plan(image, [{**IDENTITY, "shift_x": 0.25}], "constant")[0]
    np.testing.assert_allclose(across[:, 4:], image[0, :, :-4], atol=1e-3)  # 4 = 0.25 * 16
    down = apply_plan(image, [{**IDENTITY, "shift_y": 0.25}], "constant")[0]
    np.testing.assert_allclose(down[2:], image[0, :-2], atol=1e-3)  # 2 = 0.25 * 8


def test_fresh_variants_from_params_take_augment_and_finetune_knobs():
    from wastesort.augmentation import FreshVariants

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(10) % 2
    params = {"augment": CFG, "finetune": {"batch_size": 4, "seed": 7, "mixup_alpha": 0.2}}
    fresh = FreshVariants.from_params(images, labels, 2, lambda x, training: x, params)
    direct = FreshVariants(images, labels, 2, lambda x, training: x, CFG, 4, 7, 0.2)
    assert (fresh.batch_size, fresh.mixup_alpha, fresh.cfg) == (4, 0.2, typed("augment", CFG))
    for a, b in zip(fresh.batch(0), direct.batch(0), strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed draws the same batch
    assert len(fresh.batch(0)[0]) == 4
