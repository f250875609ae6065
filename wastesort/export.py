"""Export the evaluated Keras model as TFLite: float32, and full-integer int8 for edge devices.

Both files take a batch of height x width (``predict.input_size``) RGB images in [0, 255] (what
``preprocess.load_for_model`` returns) and give class probabilities in ``labels.json`` order.
The float32 file takes float32 pixels; the int8 file takes uint8 pixels (input scale 1, zero
point 0) and returns uint8 probabilities (multiply by the output scale, 1/256). Parity with
the Keras model is measured on the test split before anything is registered.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

FILES = {"float32": "model_float32.tflite", "int8": "model_int8.tflite"}


def fixed_size(keras_model):
    """The model from its resized input on: a fixed input shape for the converter."""
    import keras

    from wastesort.keras_scoring import input_size

    inputs = keras.Input((*input_size(keras_model), 3), name="image")
    return keras.Model(inputs, keras_model(inputs, training=False))


@contextlib.contextmanager
def _quiet():
    """The converter prints every captured tensor to stdout and MLIR notes to fd 2; keep both
    off the terminal unless it fails (then its notes are shown)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as notes, contextlib.redirect_stdout(io.StringIO()):
        os.dup2(notes.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            notes.seek(0)
            sys.stderr.write(notes.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _convert(make_converter) -> bytes:
    """The file ``make_converter()``'s converter writes, made inside ``_quiet`` (making a
    converter from a concrete function logs too)."""
    with _quiet():
        return make_converter().convert()


def frozen_graph(keras_model):
    """The fixed-size model traced once, its weights folded in as constants: a concrete
    function both converters take as it is, where converting the Keras model writes and reads
    a SavedModel for each file (decision 0021)."""
    return traced(fixed_size(keras_model))


def traced(model):
    """``model`` (a fixed input shape) traced once in inference mode, its weights folded in as
    constants; float32 input named ``image``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    return convert_variables_to_constants_v2(concrete)


def to_tflite(keras_model, representative: np.ndarray) -> dict[str, bytes]:
    """Both files (``FILES``' kinds) from one trace of the model."""
    graph = frozen_graph(keras_model)
    return {"float32": _float32(graph), "int8": _int8(graph, representative)}


def to_float32(keras_model) -> bytes:
    return _float32(frozen_graph(keras_model))


def float32_file(model) -> bytes:
    """Any Keras model with a fixed input shape (``Classifier.pooler``, say) as a float32
    TFLite file."""
    return _float32(traced(model))


def to_int8(keras_model, representative: np.ndarray) -> bytes:
    """Full-integer post-training quantization, calibrated on ``representative`` (resized
    images in [0, 255]); uint8 input and output, as microcontrollers and NPUs expect."""
    return _int8(frozen_graph(keras_model), representative)


def _float32(graph) -> bytes:
    import tensorflow as tf

    return _convert(lambda: tf.lite.TFLiteConverter.from_concrete_functions([graph]))


def _int8(graph, representative: np.ndarray) -> bytes:
    import tensorflow as tf

    def converter():
        made = tf.lite.TFLiteConverter.from_concrete_functions([graph])
        made.optimizations = [tf.lite.Optimize.DEFAULT]
        made.representative_dataset = lambda: (
            [representative[i : i + 1]] for i in range(len(representative))
        )
        made.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        made.inference_input_type = tf.uint8
        made.inference_output_type = tf.uint8
        return made

    with warnings.catch_warnings():
        # the converter asks for input statistics whenever the input type is uint8; here the
        # representative images give them (the calibration above), as TensorFlow's guide does
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return _convert(converter)


@dataclass
class Parity:
    agreement: float  # share of test images whose top-1 class equals the Keras model's
    accuracy: float

    def to_json(self) -> dict[str, float]:
        return {"top1_agreement": round(self.agreement, 6), "accuracy": round(self.accuracy, 6)}


def parity(reference: np.ndarray, probabilities: np.ndarray, truth: np.ndarray) -> Parity:
    """``reference``: the Keras model's top-1 class index per image; ``truth``: the labels'."""
    predicted = probabilities.argmax(axis=1)
    return Parity(float(np.mean(predicted == reference)), float(np.mean(predicted == truth)))


def check(
    keras_accuracy: float, results: dict[str, Parity], min_agreement: float, max_int8_drop: float
) -> list[str]:
    """What is wrong with the exported files, as sentences (empty: both are good)."""
    problems = []
    f32 = results.get("float32")
    if f32 is not None and f32.agreement < min_agreement:
        problems.append(
            f"the float32 file agrees with the Keras model on {f32.agreement:.2%} "
            f"of test images, under export.min_float32_agreement = {min_agreement:.2%}"
        )
    i8 = results.get("int8")
    if i8 is not None and keras_accuracy - i8.accuracy > max_int8_drop + 1e-9:
        problems.append(
            f"the int8 file's test accuracy {i8.accuracy:.4f} is "
            f"{keras_accuracy - i8.accuracy:.4f} under the Keras model's "
            f"{keras_accuracy:.4f}, more than export.max_int8_drop = {max_int8_drop}"
        )
    return problems
