"""Pooling cached rows outside training (the warm-up head's rows, `train`'s rows after
fine-tuning, `review`'s frozen features) through a float32 LiteRT file on the CPU: the same
features to float rounding, about 1.6 times as fast as Keras (decision 0027).

The file is converted in a child process (``python -m wastesort.pooling``) from the pooler's
weights: TensorFlow's converter leaves about 0.45 GB of heap behind in its process, which would
add to the training process's peak (decision 0027).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from wastesort.config import UserError

#: images LiteRT pools at a time: as fast as 16 and faster than 64 under XNNPACK, with an
#: eighth of the tensor arena
CHUNK = 8


#: the frozen pooler's file in the features cache (``write_frozen``)
FROZEN = "pooler.tflite"


class LitePooler:
    """A float32 LiteRT pooler with Keras' ``predict`` call; ``batch_size`` is ignored (LiteRT
    runs ``CHUNK`` rows at a time). ``content``: the file's bytes (``convert_in_child``)."""

    def __init__(self, content: bytes, threads: int | None = None):
        from wastesort.litert import LiteModel

        threads = threads or len(os.sched_getaffinity(0))
        self.lite = LiteModel(content, threads)
        self.output = SimpleNamespace(shape=(None, self.lite.n_outputs))  # as a Keras model's

    def predict(self, x, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        # cast a chunk at a time: 512 cached uint8 rows at 240 px are 354 MB as float32
        return self.lite.predict_in_chunks(np.asarray(x), CHUNK)


def for_cpu(classifier, frozen: Path | None = None):
    """What pools cached rows outside training: where ``litert_pools()``, a ``LitePooler`` of
    ``classifier.pooler`` (its weights as they are now), read from ``frozen`` (``write_frozen``'s
    file) when that is given and exists, else converted; otherwise the Keras
    ``classifier.pooler`` itself."""
    if not litert_pools():
        return classifier.pooler
    if frozen is not None and frozen.is_file():
        return LitePooler(frozen.read_bytes())
    return LitePooler(convert_in_child(classifier))


def has_frozen_file(classifier) -> bool:
    """The cache's rows go through a backbone top (``finetune.layers`` not 0) whose starting
    weights are fixed (ImageNet or a weights file, not a seed's draw), and LiteRT pools here: the
    case where ``write_frozen`` writes its file."""
    return (
        classifier.spec.fine_tune_layers != 0
        and classifier.spec.weights is not None
        and litert_pools()
    )


def write_frozen(classifier, folder: Path) -> Path | None:
    """The backbone above the cache's cut with its starting weights, and pooling
    (``classifier.pooler`` before any training) as a float32 LiteRT file in the features cache:
    `review` pools every row through it and `train`'s warm-up pools the train and val rows, so it
    is converted once, here. None (nothing written) unless ``has_frozen_file``."""
    path = folder / FROZEN
    path.unlink(missing_ok=True)
    if not has_frozen_file(classifier):
        return None
    path.write_bytes(convert_in_child(classifier))
    return path


def cached_frozen(folder: Path) -> LitePooler | None:
    """``write_frozen``'s file in ``folder`` as a ``LitePooler``, without TensorFlow; None when
    the cache has none."""
    path = folder / FROZEN
    return LitePooler(path.read_bytes()) if path.is_file() else None


def litert_pools() -> bool:
    """LiteRT pools on the CPU in float32 with no distribution strategy; Keras pools with a GPU,
    under mixed precision or inside a strategy's scope."""
    import keras
    import tensorflow as tf

    return not (
        tf.config.list_logical_devices("GPU")
        or keras.mixed_precision.global_policy().name != "float32"
        or tf.distribute.has_strategy()
    )


def convert_in_child(classifier) -> bytes:
    """The pooler's float32 LiteRT file, converted by ``python -m wastesort.pooling`` from the
    pooler's weights saved to a temporary file."""
    with tempfile.TemporaryDirectory(prefix="wastesort-pooler-") as tmp:
        weights, out = Path(tmp) / "pooler.weights.h5", Path(tmp) / "pooler.tflite"
        classifier.pooler.save_weights(weights)
        spec = json.dumps(dataclasses.asdict(classifier.spec))
        proc = subprocess.run(
            [sys.executable, "-m", "wastesort.pooling", spec, str(weights), str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not out.is_file():
            raise UserError(
                f"converting the pooler to LiteRT failed in its child process: {_why(proc.stderr)}"
            )
        return out.read_bytes()


def _why(stderr: str, limit: int = 300) -> str:
    """The exception line of a child's traceback (or its last line), cut to ``limit``."""
    lines = stderr.strip().splitlines() or ["no output"]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    line = (raised or lines)[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _convert(spec_json: str, weights: str, out: str) -> None:
    from wastesort import stage

    stage.load_tensorflow()
    from wastesort import export
    from wastesort.model import BackboneSpec, build_classifier

    spec = BackboneSpec(**{**json.loads(spec_json), "weights": None})  # the weights: the file
    pooler = build_classifier(2, spec).pooler
    pooler.load_weights(weights)
    Path(out).write_bytes(export.float32_file(pooler))


if __name__ == "__main__":
    _convert(*sys.argv[1:])
