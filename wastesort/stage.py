"""Running a stage entry point: known problems end in one clear line, not a traceback."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from wastesort.config import ConfigError


class StageFailed(RuntimeError):
    """The stage ran but its result is not acceptable (for example the accuracy gate)."""


def quiet_tensorflow() -> None:
    """TF's C++ start-up chatter hides the messages users need; Keras progress stays on."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").is_file()


def load_tensorflow(deterministic: bool = True):
    """Import TensorFlow and initialise its devices with the C++ start-up lines (the CUDA probe
    on a machine without a GPU, oneDNN notices) kept off the terminal; they are shown only when
    an NVIDIA driver is present but TensorFlow found no GPU, where they say why.

    ``deterministic``: TensorFlow's op determinism, so the same machine, data and seeds give
    identical weights and metrics. Returns the tensorflow module (training stages name their
    device through ``training_placement``)."""
    quiet_tensorflow()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        if not gpus and nvidia_driver_present():
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return tf


def training_placement(name: str, params: dict, mixed_precision: bool = True):
    """For a training stage: TensorFlow loaded, the ``distribute`` section applied (strategy,
    and mixed precision unless ``mixed_precision`` is False; see
    ``wastesort.training.distribute``) and the device printed."""
    tf = load_tensorflow()
    from wastesort.training import distribute

    cfg = dict(params.get("distribute") or {})
    if not mixed_precision:
        cfg["mixed_precision"] = False
    placement = distribute.setup(tf, cfg)
    print(f"{name}: training on {placement.description} ({placement.precision})")
    return placement


def run(name: str, main: Callable[[], None]) -> None:
    from wastesort.data.validation import DataCannotTrain

    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        main()
    except (ConfigError, DataCannotTrain, StageFailed) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
