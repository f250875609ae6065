"""Running a stage entry point: known problems end in one clear line, not a traceback."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from wastesort.config import ConfigError


class StageFailed(RuntimeError):
    """The stage ran but its result is not acceptable (for example the accuracy gate)."""


def quiet_tensorflow() -> None:
    """TF's C++ start-up chatter hides the messages users need; Keras progress stays on."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(name: str, main: Callable[[], None]) -> None:
    from wastesort.validation import DataCannotTrain

    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        main()
    except (ConfigError, DataCannotTrain, StageFailed) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
