"""Reading and writing the small files stages hand to each other (manifests, metrics)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from wastesort.config import ConfigError


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (has the stage that writes it run?)")
    return json.loads(path.read_text())


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Deterministic CSV: same frame, same bytes (DVC hashes these)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def read_manifest(path: str | Path, required: tuple[str, ...] = ("path", "label")) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found (run the stage that writes it first)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
    return frame
