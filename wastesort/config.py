"""Parameters and paths shared by every stage, the service and the CLI.

Every knob lives in ``params.yaml`` (DVC's params file) so ``dvc exp run -S key=value``
reaches it; code reads it through here and never hard-codes a class list.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A parameter or input path is unusable; the message names it."""


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repo root)")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    check_moved(params, path)
    return params


# Parameters that moved (README, "Upgrading"): old section.key -> new section.key or None
MOVED = {
    "finetune.head_dense_units": "head.dense_units", "train.dense_units": "head.dense_units",
    "finetune.head_dropout": "head.dropout", "train.dropout": "head.dropout",
    "finetune.label_smoothing": "head.label_smoothing",
    "train.label_smoothing": "head.label_smoothing",
    "finetune.head_lr": "finetune.warmup_lr", "finetune.head_epochs": "finetune.warmup_epochs",
    "finetune.head_patience": "finetune.warmup_patience",
    "native_view": None,
}


def check_moved(params: dict[str, Any], path: Path) -> None:
    """A parameter of an earlier version is named with where it went, in one line."""
    for old, new in MOVED.items():
        section_name, _, key = old.partition(".")
        value = params.get(section_name)
        present = isinstance(value, dict) and key in value if key else value is not None
        if not present:
            continue
        where = f"it is now {new}" if new else "it was removed (one model; README, Upgrading)"
        raise ConfigError(f"{path}: {old} is no longer a parameter: {where}")


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def data_root(params: dict[str, Any]) -> Path:
    return Path(str(section(params, "data").get("path", "data/raw"))).expanduser()


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def configured_classes(params: dict[str, Any]) -> list[str]:
    """The class list from params; empty means "every sub-folder of the data folder"."""
    classes = section(params, "data").get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise ConfigError("params.yaml: data.classes must be a list of folder names (or [])")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"params.yaml: data.classes has repeated names: {classes}")
    return list(classes)
