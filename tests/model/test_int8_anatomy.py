"""benchmarks/int8_errors.py's split of an int8 TFLite file: weights, biases and the rest."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO


def int8_errors():
    spec = importlib.util.spec_from_file_location("int8_errors", REPO / "benchmarks/int8_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a TFLite conversion
def test_anatomy_counts_the_weights_biases_and_channels_of_a_known_model(tmp_path):
    import keras

    from wastesort.export import to_int8

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(8, 8)(inputs)  # what export's fixed input size is read from
    x = keras.layers.Conv2D(4, 3)(x)  # 108 weights, 4 biases, 4 channels
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))  # 8 + 2
    representative = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 3)).astype(np.float32)
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(to_int8(model, representative))

    got = int8_errors().anatomy(path)
    assert got["constant_bytes_by_type"]["int8"] == 108 + 8
    assert got["constant_bytes_by_type"]["int32"] >= (4 + 2) * 4  # biases (and any axes)
    # the convolution is quantized per channel (weights and biases: 4 scales each), the dense
    # layer per tensor or per channel
    assert got["quantized_channels"] >= 2 * 4 + 2
    assert got["file_bytes"] == path.stat().st_size
    assert got["other_bytes"] == got["file_bytes"] - sum(got["constant_bytes_by_type"].values())
