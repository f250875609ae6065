"""Serving the champion: which model, upload checks, answers. Shared by ``service.py`` and the
``wastesort predict`` CLI, so both load the same registered file and preprocess identically
(``preprocess.load_for_model``). Nothing here imports TensorFlow: the exported TFLite file runs
under LiteRT.

``answers``: settings, uploads and answers; ``champion``: which model and its files;
``batching``: adaptive batches; ``guard``: the request checks in front of BentoML;
``heap``: malloc set for same-sized requests; ``metrics``: the Prometheus counters.
"""

from wastesort.serving.answers import (
    MODEL_KINDS,
    STATUS_FOR,
    ServeConfig,
    describe,
    error_body,
    load_upload,
)
from wastesort.serving.batching import Batcher
from wastesort.serving.champion import (
    Champion,
    ChampionRef,
    bento_entry,
    load_champion,
    resolve,
    resolve_once,
)
from wastesort.serving.guard import UploadGuard

__all__ = [
    "MODEL_KINDS",
    "STATUS_FOR",
    "Batcher",
    "Champion",
    "ChampionRef",
    "ServeConfig",
    "UploadGuard",
    "bento_entry",
    "describe",
    "error_body",
    "load_champion",
    "load_upload",
    "resolve",
    "resolve_once",
]
