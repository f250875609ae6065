"""Running a stage entry point: known problems end in one clear line, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from wastesort import paths
from wastesort.artifacts import write_json
from wastesort.config import UserError

#: each stage's wall seconds, written when it succeeds; `summarize` adds them up
TIME_DIR = paths.TIME
_STARTED = time.perf_counter()  # the stage script imports this module first


class StageFailed(UserError, RuntimeError):
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
    device through ``training.distribute.place``)."""
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


def run(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``: a known problem ends in one line on stderr and exit 1; on
    success the stage's wall seconds go to ``metrics/time/<name>.json``."""
    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        main()
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    write_json(TIME_DIR / f"{name}.json", {"seconds": round(time.perf_counter() - _STARTED, 1)})
