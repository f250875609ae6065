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

import numpy as np

from wastesort.config import UserError

#: images LiteRT pools at a time: as fast as 16 and faster than 64 under XNNPACK, with an
#: eighth of the tensor arena
CHUNK = 8


class LitePooler:
    """``classifier.pooler`` (its weights as they are now) as a float32 LiteRT file, with Keras'
    ``predict`` call; ``batch_size`` is ignored (LiteRT runs ``CHUNK`` rows at a time)."""

    def __init__(self, classifier, threads: int | None = None):
        from wastesort.litert import LiteModel

        self.output = classifier.pooler.output
        threads = threads or len(os.sched_getaffinity(0))
        self.lite = LiteModel(convert_in_child(classifier), threads)

    def predict(self, x, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        # cast a chunk at a time: 512 cached uint8 rows at 240 px are 354 MB as float32
        return self.lite.predict_in_chunks(np.asarray(x), CHUNK)


def for_cpu(classifier):
    """What pools cached rows outside training: a ``LitePooler`` where ``litert_pools()``, else
    the Keras ``classifier.pooler`` itself."""
    return LitePooler(classifier) if litert_pools() else classifier.pooler


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
