"""Which model is served: the version the registry's alias points at, and only its files.

``resolve`` asks the MLflow registry (``MLFLOW_TRACKING_URI``, default the clone's
``mlflow.db``, whose alias table it reads directly) for ``models:/NAME@ALIAS``; the version
records the BentoML store tag of its exported files and each file's sha256. ``load_champion``
opens that entry, checks the file against the recorded hash and runs it under LiteRT. Anything
missing or different is a ``ConfigError`` that says what to run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wastesort import paths
from wastesort.config import ConfigError
from wastesort.export import FILES
from wastesort.litert import LiteModel

FIX = "run `wastesort import-champion` (or `dvc exp run`, whose register stage does it)"


@dataclass(frozen=True)
class ChampionRef:
    name: str
    alias: str
    version: str
    bento_tag: str
    sha256: dict[str, str]  # model kind -> sha256 of its TFLite file


def store_home() -> str:
    return os.environ.get("BENTOML_HOME", "~/bentoml")


#: ``bentoml serve`` resolves the alias in its own process and hands the answer to the worker
#: processes it starts (they inherit the environment), so only one process imports MLflow.
RESOLVED_ENV = "WASTESORT_RESOLVED_CHAMPION"


def resolve_once(cfg) -> ChampionRef:
    from dataclasses import asdict

    from wastesort.tracking import tracking_uri

    key = {"uri": tracking_uri(), "name": cfg.model_name, "alias": cfg.alias}
    cached = json.loads(os.environ.get(RESOLVED_ENV) or "{}")
    if cached.get("key") == key:
        return ChampionRef(**cached["ref"])
    ref = resolve(cfg)
    os.environ[RESOLVED_ENV] = json.dumps({"key": key, "ref": asdict(ref)})
    return ref


#: Written by the register stage; a built bento carries it in place of the registry.
RECEIPT = paths.RECEIPT


def from_receipt(cfg) -> ChampionRef | None:
    """In a built bento (no ``mlflow.db`` beside it, no tracking server named): the champion it
    was built with, as the register stage recorded it."""
    from wastesort.tracking import DEFAULT_TRACKING_URI, tracking_uri

    if (
        tracking_uri() != DEFAULT_TRACKING_URI
        or Path("mlflow.db").exists()
        or not RECEIPT.is_file()
    ):
        return None
    r = json.loads(RECEIPT.read_text())
    if (r.get("name"), r.get("alias")) != (cfg.model_name, cfg.alias):
        return None
    return ChampionRef(
        r["name"],
        r["alias"],
        str(r["version"]),
        r["bento_model"],
        dict(r.get("tflite_sha256") or {}),
    )


def from_sqlite_registry(cfg, uri: str) -> ChampionRef | None:
    """The alias read straight from a local ``sqlite:///`` registry's tables, which answers in
    milliseconds where importing MLflow takes seconds of the service's start. None (ask
    MLflow) for any other store, a missing alias, or tables this reader does not know."""
    import sqlite3
    from contextlib import closing

    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                (cfg.model_name, cfg.alias),
            ).fetchall()
            if len(rows) != 1:
                return None
            version = int(rows[0][0])
            tags = dict(
                db.execute(
                    "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                    (cfg.model_name, version),
                ).fetchall()
            )
    except sqlite3.Error:
        return None
    if not tags.get("bento_model"):
        return None
    return ChampionRef(
        cfg.model_name,
        cfg.alias,
        str(version),
        tags["bento_model"],
        {kind: tags.get(f"tflite_{kind}_sha256", "") for kind in FILES},
    )


def resolve(cfg) -> ChampionRef:
    if (packed := from_receipt(cfg)) is not None:
        return packed
    from wastesort.tracking import tracking_uri

    uri = tracking_uri()
    return from_sqlite_registry(cfg, uri) or from_mlflow(cfg, uri)


def from_mlflow(cfg, uri: str) -> ChampionRef:
    """The alias as MLflow's client resolves it, from any tracking store."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    try:
        version = MlflowClient().get_model_version_by_alias(cfg.model_name, cfg.alias)
    except MlflowException:
        raise ConfigError(
            f"no version of model '{cfg.model_name}' has the alias @{cfg.alias} in "
            f"the MLflow registry at {uri}; run the pipeline (`dvc exp run`) "
            "first"
        ) from None
    tags = version.tags
    tag = tags.get("bento_model")
    if not tag:
        raise ConfigError(
            f"{cfg.model_name} version {version.version} (@{cfg.alias}) records no "
            f"BentoML model; {FIX}"
        )
    return ChampionRef(
        cfg.model_name,
        cfg.alias,
        str(version.version),
        tag,
        {kind: tags.get(f"tflite_{kind}_sha256", "") for kind in FILES},
    )


@dataclass
class Champion:
    """The served model: the registered version's TFLite file under LiteRT, and its labels."""

    ref: ChampionRef
    kind: str
    labels: list[str]
    model: LiteModel
    metadata: dict[str, Any]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return self.model.input_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.model.predict(batch)

    def info(self) -> dict[str, str]:
        """What every answer says about the model it came from."""
        return {
            "name": self.ref.name,
            "version": self.ref.version,
            "alias": self.ref.alias,
            "format": self.kind,
            "bento_model": self.ref.bento_tag,
        }


def bento_entry(ref: ChampionRef):
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(ref.bento_tag)
    except NotFound:
        raise ConfigError(
            f"{ref.name} version {ref.version} (@{ref.alias}) is BentoML model "
            f"{ref.bento_tag}, which is not in the store at {store_home()}; "
            f"{FIX}"
        ) from None


def load_champion(cfg, ref: ChampionRef | None = None, entry=None) -> Champion:
    ref = ref or resolve(cfg)
    entry = entry or bento_entry(ref)
    path = Path(entry.path_of(FILES[cfg.model_kind]))
    if not path.is_file():
        raise ConfigError(f"{path}: missing from BentoML model {ref.bento_tag}; {FIX}")
    content = path.read_bytes()  # hashed and loaded from one read
    expected = ref.sha256.get(cfg.model_kind)
    if expected and hashlib.sha256(content).hexdigest() != expected:
        raise ConfigError(
            f"{path}: not the file {ref.name} version {ref.version} registered "
            f"(sha256 differs); {FIX}"
        )
    labels = json.loads(Path(entry.path_of("labels.json")).read_text())
    model = LiteModel(content, cfg.tflite_threads)
    if model.n_outputs != len(labels):
        raise ConfigError(f"{path}: {model.n_outputs} outputs but {len(labels)} labels; {FIX}")
    return Champion(ref, cfg.model_kind, labels, model, dict(entry.info.metadata))
