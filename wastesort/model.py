"""The classifier: raw RGB pixels in, class probabilities out, preprocessing inside the model.

The backbone (``backbone.name``: MobileNetV2 or EfficientNet-Lite0/1/2, see ``backbones``) is cut
in two. Its frozen part (everything below the top ``finetune.layers`` layers) is the
*trunk*; what sits above it (those top layers, pooling and the Dense head) is the *top*. The
trunk's output for every image is computed once and cached (see ``features``), so training
only ever runs the top. With ``finetune.layers: all`` the whole backbone is the top and the
trunk only hands on the resized images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from wastesort import backbones, config, preprocess
from wastesort.config import ConfigError

ALL_LAYERS = -1  # finetune.layers: all


@dataclass(frozen=True)
class BackboneSpec:
    image_size: tuple[int, int] = (224, 224)  # (height, width) the photo is resized to
    weights: str | None = "imagenet"  # "imagenet", a local weights file, or None for random
    fine_tune_layers: int = 0  # top K backbone layers above the cached cut (0: none, -1: all)
    name: str = "mobilenet_v2"

    def __post_init__(self):  # a whole number is a square
        object.__setattr__(self, "image_size", preprocess.hw(self.image_size))

    @classmethod
    def from_params(
        cls, backbone_cfg: dict[str, Any], finetune_cfg: dict[str, Any]
    ) -> BackboneSpec:
        backbone = config.typed("backbone", backbone_cfg)
        layers = config.typed("finetune", finetune_cfg).layers
        weights = None if backbone.weights in (None, "none", "None", "") else backbone.weights
        k = ALL_LAYERS if layers == "all" else layers
        return cls(
            preprocess.image_size(backbone.image_size),
            weights,
            k,
            backbones.check_name(backbone.name),
        )


def preprocessing(spec: BackboneSpec) -> list[keras.layers.Layer]:
    """Resize (bilinear, whole image) then the backbone's scaling of [0, 255] pixels."""
    scale, offset = backbones.SCALING[spec.name]
    return [
        keras.layers.Resizing(*spec.image_size, name="resize"),
        keras.layers.Rescaling(scale, offset=offset, name="scale_to_unit_range"),
    ]


def backbone(spec: BackboneSpec) -> keras.Model:
    return backbones.load(spec.name, (*spec.image_size, 3), spec.weights)


def split_backbone(net: keras.Model, k: int) -> tuple[keras.Model | None, keras.Model | None]:
    """Cut the backbone below its top ``k`` layers: (frozen bottom or None, trainable top or
    None). ``k`` = every layer (or ``ALL_LAYERS``) fine-tunes the whole backbone."""
    if k == ALL_LAYERS:
        k = len(net.layers) - 1
    if k == 0:
        return net, None
    if k > len(net.layers) - 1:
        raise ConfigError(
            f"finetune.layers={k}: the backbone has only {len(net.layers) - 1} layers"
        )
    if k == len(net.layers) - 1:
        return None, keras.Model(net.input, net.output, name="backbone_top")
    cut = net.layers[-k - 1]
    try:
        top = keras.Model(cut.output, net.output, name="backbone_top")
    except ValueError:
        raise ConfigError(
            f"finetune.layers={k} cuts through a residual block at "
            f"layer '{cut.name}'; valid values include {valid_cuts(net)}"
        ) from None
    bottom = keras.Model(net.input, cut.output, name="backbone_bottom")
    return bottom, top


def valid_cuts(net: keras.Model) -> list[int]:
    valid = [0]
    for k in range(1, len(net.layers) - 1):
        try:
            keras.Model(net.layers[-k - 1].output, net.output)
            valid.append(k)
        except ValueError:
            continue
    return valid


@dataclass
class Classifier:
    """The deployable model plus the views of it that training uses (all share weights)."""

    model: keras.Model  # raw RGB (any size) -> probabilities: what is saved and served
    trunk: keras.Model  # resized 224 px image -> activations at the cut (cached once)
    top: keras.Model  # activations at the cut -> probabilities (fine-tuning trains this)
    pooler: keras.Model  # activations at the cut -> pooled features
    head: keras.Model  # pooled features -> probabilities (head training trains this)
    spec: BackboneSpec  # what the model was built from


def build_classifier(
    n_classes: int, spec: BackboneSpec, dense_units: int = 128, dropout: float = 0.3, seed: int = 0
) -> Classifier:
    if n_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {n_classes}")
    keras.utils.set_random_seed(seed)
    net = backbone(spec)
    bottom, upper = split_backbone(net, spec.fine_tune_layers)
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    head_layers = [
        keras.layers.Dense(dense_units, activation="relu", name="head_dense"),
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32"),
    ]  # float32 under mixed precision too

    def pooled(x):
        if upper is not None:
            x = upper(x, training=False)  # BatchNorm stays in inference mode
        return pool(x)

    def classify(x):
        for layer in head_layers:
            x = layer(x)
        return x

    image = keras.Input(shape=(None, None, 3), name="image")
    x = image
    for layer in preprocessing(spec):
        x = layer(x)
    if bottom is not None:
        x = bottom(x, training=False)
    model = keras.Model(image, classify(pooled(x)), name="wastesort_classifier")

    size = spec.image_size
    trunk_in = keras.Input(shape=(*size, 3), name="resized_image")
    scale = preprocessing(spec)[1]
    if bottom is None:  # the whole backbone is fine-tuned: the trunk passes resized images on
        trunk_out = keras.layers.Identity(name="resized")(trunk_in)
        act_in = keras.Input(shape=(*size, 3), name="activations")
        top_in = scale(act_in)
    else:
        trunk_out = bottom(scale(trunk_in), training=False)
        act_in = keras.Input(shape=tuple(bottom.output.shape[1:]), name="activations")
        top_in = act_in
    trunk = keras.Model(trunk_in, trunk_out, name="trunk")
    top = keras.Model(act_in, classify(pooled(top_in)), name="top")
    pooler = keras.Model(act_in, pooled(top_in), name="pooler")
    feat_in = keras.Input(shape=(int(pool.output.shape[-1]),), name="features")
    head = keras.Model(feat_in, classify(feat_in), name="head")
    return Classifier(model, trunk, top, pooler, head, spec)


def top_backbone(classifier: Classifier) -> keras.Model | None:
    """The backbone layers above the cut (fine-tuned when ``fine_tune_layers`` > 0)."""
    return next((layer for layer in classifier.top.layers if layer.name == "backbone_top"), None)


def cache_model(classifier: Classifier) -> keras.Model:
    """What ``features`` caches: activations at the cut, or pooled features when nothing
    above the backbone is fine-tuned (49 times smaller)."""
    if top_backbone(classifier) is not None:
        return classifier.trunk
    trunk = classifier.trunk
    return keras.Model(trunk.input, classifier.pooler(trunk.output), name="trunk_pooled")


def cache_dtype(classifier: Classifier) -> str:
    """Resized images (the whole backbone is fine-tuned) cache as uint8, activations as
    float16: half the disk, and precise enough for either."""
    resized_only = any(layer.name == "resized" for layer in classifier.trunk.layers)
    return "uint8" if resized_only else "float16"


def parameter_counts(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    return {
        "params_total": total,
        "params_trainable": trainable,
        "params_frozen": total - trainable,
    }


def set_fine_tuning(classifier: Classifier, enabled: bool) -> None:
    """Unfreeze (or freeze again) the backbone layers above the cut; BatchNorm stays frozen."""
    part = top_backbone(classifier)
    if part is None:
        return
    part.trainable = enabled
    # A model cut from intermediate tensors does not pass `trainable` on to its layers (they
    # stay owned by the frozen backbone), so set each one.
    for layer in part.layers:
        layer.trainable = enabled and not isinstance(layer, keras.layers.BatchNormalization)


def head_hidden(head: keras.Model, x):
    """The head's shared layers called anew on ``x``, up to (not including) its last Dense."""
    last = head.get_layer("probabilities")
    for layer in head.layers:
        if not isinstance(layer, keras.layers.InputLayer) and layer is not last:
            x = layer(x)
    return x


def head_logits(head: keras.Model, features: np.ndarray) -> np.ndarray:
    """The head's logits (its last Dense layer before the softmax), in inference mode."""
    inp = keras.Input(shape=tuple(head.input.shape[1:]))
    h = np.asarray(
        keras.Model(inp, head_hidden(head, inp)).predict(features, batch_size=256, verbose=0),
        np.float64,
    )
    kernel, bias = head.get_layer("probabilities").get_weights()
    return h @ kernel + bias


def fold_temperature(head: keras.Model, temperature: float) -> None:
    """Divide the last layer's kernel and bias by ``temperature``: the softmax of every model
    sharing this head (the saved, exported and served one) becomes ``softmax(logits / T)``."""
    layer = head.get_layer("probabilities")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, bias / temperature])
