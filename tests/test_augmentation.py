"""Code behaviour of the augmentation plan and its application."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from wastesort.augmentation import apply_plan, make_plan

CFG = yaml.safe_load((REPO / "params.yaml").read_text())["augment"]
IDENTITY = {"flip_h": False, "flip_v": False, "rotation": 0.0, "shift_x": 0.0, "shift_y": 0.0,
            "shear": 0.0, "zoom": 1.0, "brightness": 1.0, "contrast": 1.0}


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


@pytest.mark.parametrize("key, value", [("zoom", 1.5), ("rotation_degrees", -1),
                                        ("variants_per_image", -2)])
def test_bad_ranges_are_named(key, value):
    from wastesort.config import ConfigError

    with pytest.raises(ConfigError, match=f"augment.{key}"):
        make_plan(train_manifest(), {**CFG, key: value})
