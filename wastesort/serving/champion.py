"""Which model is served: the version the registry's alias points at, and only its files.

``resolve`` asks the MLflow registry (``MLFLOW_TRACKING_URI``, default the clone's
``mlflow.db``) for ``models:/NAME@ALIAS`` through MLflow's client, or, while the local
registry's file is unchanged since the champion was last found, reads the champion index
(``registry/champion.json``, ``wastesort.tracking.index``) without importing MLflow; the version
records the BentoML store tag of its exported files and each file's sha256. ``load_champion``
opens that entry, checks the file against the recorded hash and runs it under LiteRT. Anything
missing or different is a ``ConfigError`` that says what to run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
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

    @classmethod
    def from_fields(cls, r: dict[str, Any]) -> ChampionRef:
        """From a receipt's (or the champion index's) fields."""
        return cls(
            r["name"],
            r["alias"],
            str(r["version"]),
            r["bento_model"],
            dict(r.get("tflite_sha256") or {}),
        )

    def fields(self) -> dict[str, Any]:
        """A receipt's fields for this champion: what ``from_fields`` reads back."""
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "bento_model": self.bento_tag,
            "tflite_sha256": self.sha256,
        }


def store_home() -> str:
    return os.environ.get("BENTOML_HOME", "~/bentoml")


#: ``bentoml serve`` resolves the alias in its own process and hands the answer to the worker
#: processes it starts (they inherit the environment), so only one process imports MLflow.
RESOLVED_ENV = "WASTESORT_RESOLVED_CHAMPION"


def resolve_once(cfg) -> ChampionRef:
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
    return ChampionRef.from_fields(r)


def from_index(cfg, uri: str) -> ChampionRef | None:
    """The champion ``register``, ``wastesort import-champion`` or an earlier start found, while
    the local registry's file has not been written since (``wastesort.tracking.index``): no
    MLflow import. None (ask MLflow's client) otherwise."""
    from wastesort.tracking import index

    found = index.read(cfg.model_name, cfg.alias, uri)
    return None if found is None else ChampionRef.from_fields(found)


def resolve(cfg) -> ChampionRef:
    if (packed := from_receipt(cfg)) is not None:
        return packed
    from wastesort.tracking import tracking_uri

    uri = tracking_uri()
    return from_index(cfg, uri) or from_mlflow(cfg, uri)


def from_mlflow(cfg, uri: str) -> ChampionRef:
    """The alias as MLflow's client resolves it, from any tracking store; indexed for the next
    start where the store is a local file."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from wastesort.tracking import index

    stamp = index.registry_stamp(uri)  # before the read: a write after it voids the index
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
    ref = ChampionRef(
        cfg.model_name,
        cfg.alias,
        str(version.version),
        tag,
        {kind: tags.get(f"tflite_{kind}_sha256", "") for kind in FILES},
    )
    try:
        index.write(ref.fields(), stamp)
    except OSError:
        pass  # a read-only clone: the next start asks the client again
    return ref


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
