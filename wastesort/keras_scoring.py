"""The saved Keras model scored on image files, for `evaluate` and `export` (the `wastesort
predict` command answers with the registered TFLite file instead: ``serving``).

Decoding and resizing go through ``preprocess.load_for_model`` (the same function as the
service and the CLI), and the forward pass through one compiled ``tf.function`` over
batches at the model's input size, several times faster than ``model.predict`` on a handful
of images. (The service and CLI run its TFLite export under LiteRT, see ``export`` and
``serving``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from wastesort import images
from wastesort.config import ConfigError
from wastesort.preprocess import load_for_model


def input_size(model) -> tuple[int, int]:
    """The (height, width) the model's input is resized to: its largest ``Resizing`` layer
    (``backbone.image_size``)."""
    import keras

    sizes = [
        (int(layer.height), int(layer.width))
        for layer in model.layers
        if isinstance(layer, keras.layers.Resizing)
    ]
    if not sizes:
        raise ConfigError(f"model {model.name!r} has no Resizing layer")
    return max(sizes, key=lambda hw: hw[0] * hw[1])


class KerasScorer:
    def __init__(self, model, labels: Sequence[str], max_pixels: int, batch_size: int = 32):
        import tensorflow as tf

        self.model = model
        self.labels = list(labels)
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.input_size = input_size(model)
        n_out = int(model.output.shape[-1])
        if n_out != len(self.labels):
            raise ConfigError(f"model has {n_out} outputs but {len(self.labels)} labels")
        spec = tf.TensorSpec((None, *self.input_size, 3), tf.float32)
        self._forward = tf.function(
            lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True
        )

    @classmethod
    def from_files(cls, model_path: Path, labels_path: Path, max_pixels: int) -> KerasScorer:
        import keras

        for path in (model_path, labels_path):
            if not path.is_file():
                raise ConfigError(f"{path}: not found (run `dvc repro train` first)")
        return cls(
            keras.models.load_model(model_path), json.loads(labels_path.read_text()), max_pixels
        )

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for images already resized to the model's input size."""
        out = [
            np.asarray(self._forward(batch[i : i + self.batch_size]))
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def load(self, data: bytes) -> np.ndarray:
        return load_for_model(data, self.max_pixels, self.input_size)

    def predict_paths(self, paths: Iterable[Path], progress: str | None = None) -> np.ndarray:
        from tqdm import tqdm

        paths = list(paths)
        chunks = range(0, len(paths), self.batch_size)
        out = []
        for start in tqdm(chunks, desc=progress, unit="batch", disable=progress is None):
            batch = []
            for path in paths[start : start + self.batch_size]:
                try:
                    batch.append(self.load(Path(path).read_bytes()))
                except images.ImageRejected as exc:
                    raise images.ImageRejected(f"{path}: {exc.reason}", exc.code) from None
            out.append(self.predict_batch(np.stack(batch)))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
