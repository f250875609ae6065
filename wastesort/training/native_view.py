"""The native view: a second, frozen look at each photo at its own resolution.

The fine-tuned MobileNetV2 sees every photo squashed to 224 px. This view runs the ImageNet
MobileNetV2 as it is (nothing here is trained by gradient) on the photo resized to
``native_view.height`` x ``width`` (TrashNet's photos as they are, 512 x 384), averages its
last activations, and a logistic regression fitted on the train split turns them into logits.
The saved model adds those logits (times ``weight``) to the fine-tuned model's before one
softmax, whose temperature ``train`` fits on val. The regression is folded into a Dense layer,
its standardisation included, so the saved, exported and served model stays one Keras graph:
raw pixels in (resized to height x width by ``preprocess``), probabilities out.

The two views err on different photos: on TrashNet's splits the sum scored 0.7-3.6 points
above the fine-tuned model alone, for about five times its compute per image (BENCHMARKS.md).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wastesort.config import ConfigError


@dataclass(frozen=True)
class NativeViewSpec:
    height: int = 0
    width: int = 0
    c: float = 0.01
    weight: float = 1.0
    batch_size: int = 16

    @property
    def enabled(self) -> bool:
        return self.height > 0 and self.width > 0

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @classmethod
    def from_params(cls, cfg: dict[str, Any] | None) -> NativeViewSpec:
        cfg = cfg or {}
        values = {}
        for key, kind in (("height", int), ("width", int), ("c", float), ("weight", float),
                          ("batch_size", int)):
            value = cfg.get(key, getattr(cls, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"params.yaml: native_view.{key} must be a number, "
                                  f"got {value!r}")
            values[key] = kind(value)
        spec = cls(**values)
        if (spec.height > 0) != (spec.width > 0) or spec.height < 0 or spec.width < 0:
            raise ConfigError("params.yaml: native_view.height and native_view.width must both "
                              f"be > 0 (on) or both 0 (off), got {spec.height} x {spec.width}")
        if spec.enabled and min(spec.size) < 32:
            raise ConfigError(f"params.yaml: native_view.height and width must be at least 32 px "
                              f"(MobileNetV2's smallest input), got {spec.height} x {spec.width}")
        if spec.c <= 0 or spec.batch_size < 1:
            raise ConfigError("params.yaml: native_view.c must be > 0 and batch_size >= 1")
        return spec


def check_orientation(spec: NativeViewSpec, widths, heights) -> None:
    """The view must keep the photos' aspect ratio: a portrait view of landscape photos (or the
    reverse) stretches every one of them, so it is refused, naming the photos' typical size."""
    widths, heights = np.asarray(widths, float), np.asarray(heights, float)
    if widths.size == 0 or widths.shape != heights.shape:
        return
    known = (widths > 0) & (heights > 0)
    if not known.any():
        return
    photo = float(np.median(widths[known] / heights[known]))
    view = spec.width / spec.height
    if (photo - 1) * (view - 1) < 0 and abs(np.log(photo)) > np.log(1.1):
        w = int(np.median(widths[known]))
        h = int(np.median(heights[known]))
        raise ConfigError(
            f"params.yaml: native_view is {spec.height} high x {spec.width} wide, but the "
            f"photos are typically {h} high x {w} wide: the view would stretch them; swap "
            "native_view.height and native_view.width")


def backbone(spec: NativeViewSpec, weights: str | None):
    """The frozen ImageNet MobileNetV2 at height x width, average-pooled: [-1, 1] pixels in,
    1,280 features out."""
    import keras

    with warnings.catch_warnings():  # "weights for input shape (224, 224) will be loaded":
        warnings.simplefilter("ignore")  # they are, and they are what this view wants
        try:
            net = keras.applications.MobileNetV2(input_shape=(*spec.size, 3), include_top=False,
                                                 weights=weights, pooling="avg")
        except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception on download failure
            raise ConfigError(f"native_view: cannot load the backbone weights {weights!r} "
                              f"({exc}); offline, run scripts/seed_keras_cache.sh (part of "
                              "`make setup`)") from None
    net.trainable = False
    return keras.Model(net.input, net.output, name="native_backbone")


def extract(net, root: Path, paths: list[str], spec: NativeViewSpec, max_pixels: int,
            progress: str | None = None) -> np.ndarray:
    """Pooled features of the files, decoded and resized by the one preprocessing path."""
    from tqdm import tqdm

    from wastesort.features import load_resized

    out = []
    starts = range(0, len(paths), spec.batch_size)
    for start in tqdm(starts, desc=progress, unit="batch", disable=progress is None):
        batch = load_resized(root, paths[start:start + spec.batch_size], spec.size, max_pixels)
        out.append(np.asarray(net(batch / 127.5 - 1.0, training=False), np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(net.output.shape[-1])), np.float32)


def fit(features: np.ndarray, y: np.ndarray, n_classes: int, c: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """A standardised multinomial logistic regression on ``features``, folded into one
    (kernel, bias): logits = features @ kernel + bias."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise ConfigError(f"native_view: classes {missing} have no train image")
    scaler = StandardScaler().fit(features)
    lr = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(features), y)
    coef, intercept = lr.coef_, lr.intercept_
    if n_classes == 2:  # one logit z for class 1: softmax([-z/2, z/2]) gives the same odds
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept,
                                                                              intercept]) / 2
    coef = coef / scaler.scale_  # (n_classes, d)
    kernel = coef.T.astype(np.float32)
    bias = (intercept - coef @ scaler.mean_).astype(np.float32)
    return kernel, bias


def logits(features: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(features, np.float64) @ kernel + bias


def combined_model(fine_tuned, head, n_classes: int, spec: NativeViewSpec, weights: str | None,
                   branch: tuple[np.ndarray, np.ndarray], temperature: float):
    """One Keras model: raw RGB pixels in; the fine-tuned model's logits plus ``weight`` times
    the native view's, over ``temperature``, through a softmax out.

    ``fine_tuned`` is the 224 px classifier (its ``resize`` layer sees the native-size input),
    ``head`` its Dense head: the head's layers are reused up to its last Dense, whose weights
    (over ``temperature``) move into a linear layer, so no probability is ever logged."""
    import keras

    image = keras.Input(shape=(None, None, 3), name="image")
    native = keras.layers.Resizing(*spec.size, name="resize_native")(image)
    native = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_native")(native)
    pooled_native = backbone(spec, weights)(native)
    from wastesort.model import head_hidden

    x = head_hidden(head, fine_tuned_pooled(fine_tuned, image))
    logits_a = keras.layers.Dense(n_classes, name="logits_fine_tuned")(x)
    logits_b = keras.layers.Dense(n_classes, name="logits_native")(pooled_native)
    total = keras.layers.Add(name="logits")([logits_a, logits_b])
    out = keras.layers.Activation("softmax", name="ensemble_probabilities", dtype="float32")(total)
    model = keras.Model(image, out, name="wastesort_two_view_classifier")
    kernel_a, bias_a = head.get_layer("probabilities").get_weights()
    model.get_layer("logits_fine_tuned").set_weights([kernel_a / temperature,
                                                      bias_a / temperature])
    scale = spec.weight / temperature
    model.get_layer("logits_native").set_weights([branch[0] * scale, branch[1] * scale])
    return model


def fine_tuned_pooled(fine_tuned, image):
    """The fine-tuned classifier's pooled features of ``image`` (its layers, shared): the
    graph from its input up to the ``pool`` layer."""
    import keras

    x = image
    for layer in fine_tuned.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x)
        if layer.name == "pool":
            return x
    raise ConfigError("the fine-tuned model has no `pool` layer")
