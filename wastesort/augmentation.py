"""Seeded augmentation of the train split, as a plan of explicit transforms.

The ``augment`` stage draws every variant's transform once (a CSV anyone can read and diff);
``features`` applies the plan to decoded, resized originals in batches, straight into the frozen
trunk. No variant is written as an image: that saves a JPEG round trip per variant and hundreds
of megabytes of DVC cache, and the same plan always gives the same pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from wastesort.config import Augment, typed

PLAN_COLUMNS = [
    "path",
    "label",
    "variant",
    "flip_h",
    "flip_v",
    "rotation",
    "shift_x",
    "shift_y",
    "shear",
    "zoom",
    "brightness",
    "contrast",
]
RANGE_KEYS = (
    "rotation_degrees",
    "width_shift",
    "height_shift",
    "shear_degrees",
    "zoom",
    "brightness",
    "contrast",
)


TRANSFORM_COLUMNS = PLAN_COLUMNS[3:]


def draw_transforms(
    n: int, cfg: Augment | dict[str, Any], rng: np.random.Generator
) -> pd.DataFrame:
    """``n`` random transforms within the ranges of ``augment.*``."""
    cfg = typed("augment", cfg)

    def uniform(half_width: float) -> np.ndarray:
        return rng.uniform(-half_width, half_width, n)

    return pd.DataFrame(
        {
            "flip_h": rng.random(n) < (0.5 if cfg.horizontal_flip else 0.0),
            "flip_v": rng.random(n) < (0.5 if cfg.vertical_flip else 0.0),
            "rotation": uniform(cfg.rotation_degrees),
            "shift_x": uniform(cfg.width_shift),
            "shift_y": uniform(cfg.height_shift),
            "shear": uniform(cfg.shear_degrees),
            "zoom": 1.0 + uniform(cfg.zoom),
            "brightness": 1.0 + uniform(cfg.brightness),
            "contrast": 1.0 + uniform(cfg.contrast),
        },
        columns=TRANSFORM_COLUMNS,
    )


def make_plan(train: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """Draw ``variants_per_image`` random transforms per train image, from ``augment.seed``."""
    cfg = typed("augment", cfg)  # a bad range is a one-line error naming augment.KEY
    rng = np.random.default_rng(cfg.seed)
    ordered = train.sort_values("path").reset_index(drop=True)
    k, n = cfg.variants_per_image, len(ordered)
    plan = pd.DataFrame(
        {
            "path": np.repeat(ordered["path"].to_numpy(), k),
            "label": np.repeat(ordered["label"].to_numpy(), k),
            "variant": np.tile(np.arange(1, k + 1), n),
        }
    )
    plan = pd.concat([plan, draw_transforms(n * k, cfg, rng)], axis=1)
    return plan[PLAN_COLUMNS].round(6)


def inverse_affine(row: dict[str, Any], size: tuple[int, int]) -> list[float]:
    """Keras ``affine_transform`` vector (output pixel -> input pixel) for one plan row on an
    image of ``size`` (height, width); shifts are fractions of each side."""
    theta, shear = math.radians(row["rotation"]), math.radians(row["shear"])
    fx = -1.0 if row["flip_h"] else 1.0
    fy = -1.0 if row["flip_v"] else 1.0
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    shear_m = np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
    forward = rot @ shear_m @ np.diag([row["zoom"] * fx, row["zoom"] * fy])
    inverse = np.linalg.inv(forward)
    height, width = size
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    shift = np.array([row["shift_x"] * width, row["shift_y"] * height])
    offset = centre - inverse @ (centre + shift)
    return [
        inverse[0, 0],
        inverse[0, 1],
        offset[0],
        inverse[1, 0],
        inverse[1, 1],
        offset[1],
        0.0,
        0.0,
    ]


def apply_plan(images: np.ndarray, rows: list[dict[str, Any]], fill_mode: str) -> np.ndarray:
    """Apply plan rows to a batch of float images in [0, 255] (one row per image)."""
    from keras import ops

    size = images.shape[1:3]
    transforms = np.array([inverse_affine(r, size) for r in rows], dtype=np.float32)
    out = ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode=fill_mode
    )
    out = np.asarray(out)
    contrast = np.array([r["contrast"] for r in rows], np.float32)[:, None, None, None]
    brightness = np.array([r["brightness"] for r in rows], np.float32)[:, None, None, None]
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    # ((out - mean) * contrast + mean) * brightness, clipped: in place on one new array
    adjusted = np.subtract(out, mean)
    adjusted *= contrast
    adjusted += mean
    adjusted *= brightness
    return np.clip(adjusted, 0.0, 255.0, out=adjusted)


def read_plan(path) -> pd.DataFrame:
    """The plan CSV with its numeric and boolean columns typed again."""
    from wastesort.artifacts import read_manifest

    plan = read_manifest(path, tuple(PLAN_COLUMNS))
    plan["variant"] = plan["variant"].astype(int)
    for column in PLAN_COLUMNS[3:]:
        if column.startswith("flip"):
            plan[column] = plan[column] == "True"
        else:
            plan[column] = plan[column].astype(float)
    return plan


def mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight * a + (1 - weight) * b`` with one weight per row."""
    w = weight.reshape((-1,) + (1,) * (a.ndim - 1))
    return w * a + (1.0 - w) * b


class FreshVariants:
    """Endless, seeded, newly drawn augmentations of an in-memory image set, pushed through
    a frozen ``trunk``: the fine-tuning phase sees a different variant of every image in every
    epoch, which the fixed, cached plan cannot give it.

    With ``mixup_alpha`` > 0 each augmented image is blended with another of the batch (and
    its one-hot label with the same weight, drawn from Beta(alpha, alpha)): mixup.

    A ``keras.utils.PyDataset`` (built by ``as_dataset``) yielding (activations, one-hot)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        trunk,
        cfg: Augment | dict[str, Any],
        batch_size: int,
        seed: int,
        mixup_alpha: float = 0.0,
    ):
        typed("finetune", {"mixup_alpha": float(mixup_alpha)})
        self.images, self.labels, self.n_classes = images, labels, n_classes
        self.trunk, self.cfg, self.batch_size = trunk, typed("augment", cfg), batch_size
        self.mixup_alpha = float(mixup_alpha)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))
        self.drop_remainder = False  # True under several replicas: only full batches

    @classmethod
    def from_params(
        cls, images: np.ndarray, labels: np.ndarray, n_classes: int, trunk, params: dict[str, Any]
    ) -> FreshVariants:
        """As the `train` stage draws them: `augment`'s transforms, `finetune`'s batch size,
        seed and mixup."""
        cfg = typed("finetune", params["finetune"])
        return cls(
            images,
            labels,
            n_classes,
            trunk,
            params["augment"],
            cfg.batch_size,
            cfg.seed,
            cfg.mixup_alpha,
        )

    def __len__(self) -> int:
        if self.drop_remainder and len(self.images) >= self.batch_size:
            return len(self.images) // self.batch_size  # a new remainder left out each epoch
        return -(-len(self.images) // self.batch_size)

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        import keras

        picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = draw_transforms(len(picked), self.cfg, self.rng).to_dict("records")
        augmented = apply_plan(self.images[picked].astype(np.float32), rows, self.cfg.fill_mode)
        targets = keras.utils.to_categorical(self.labels[picked], self.n_classes)
        if self.mixup_alpha > 0:
            weight = self.rng.beta(self.mixup_alpha, self.mixup_alpha, len(picked))
            weight = weight.astype(np.float32)
            partner = self.rng.permutation(len(picked))
            augmented = mix(augmented, augmented[partner], weight)
            targets = mix(targets, targets[partner], weight)
        activations = np.asarray(self.trunk(augmented, training=False))
        return activations, targets

    def reshuffle(self) -> None:
        self.order = self.rng.permutation(len(self.images))

    def as_dataset(self):
        import keras

        source = self

        class Dataset(keras.utils.PyDataset):
            def __len__(self):
                return len(source)

            def __getitem__(self, index):
                return source.batch(index)

            def on_epoch_end(self):
                source.reshuffle()

        return Dataset(workers=1, use_multiprocessing=False)
