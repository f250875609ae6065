"""The MLflow model registry and the BentoML model store: where a gated model goes to be served.

A version is registered once per distinct model file (its sha256 is a version tag), the alias
(``champion``) is moved to it, and the same version is imported into the BentoML store, so
``bentoml serve`` finds it with no other command.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Receipt:
    name: str
    version: str
    alias: str
    model_sha256: str
    run_id: str
    bento_model: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register_version(name: str, alias: str, model_uri: str, model_sha256: str,
                     tags: dict[str, str], description: str) -> tuple[str, bool]:
    """Register (unless this exact model file already is) and point the alias at it."""
    from mlflow import MlflowClient, register_model
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    existing = client.search_model_versions(f"name = '{name}' and tags.model_sha256 = "
                                            f"'{model_sha256}'")
    if existing:
        version, created = str(max(int(v.version) for v in existing)), False
    else:
        mv = register_model(model_uri, name, tags={**tags, "model_sha256": model_sha256})
        version, created = str(mv.version), True
        client.update_model_version(name, version, description=description)
    client.set_registered_model_alias(name, alias, version)
    return version, created


def import_to_bentoml(name: str, alias: str, version: str, metadata: dict[str, Any]) -> str:
    """Bring ``models:/NAME@ALIAS`` into the BentoML store (skipped if that version is there)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        newest = bentoml.models.get(f"{name}:latest")
    except NotFound:
        newest = None
    if newest is not None and newest.info.labels.get("mlflow_version") == version and \
            newest.info.metadata.get("model_sha256") == metadata.get("model_sha256"):
        return str(newest.tag)
    model = bentoml.mlflow.import_model(
        name, f"models:/{name}@{alias}",
        labels={"mlflow_model": name, "mlflow_version": version, "alias": alias},
        metadata=metadata)
    return str(model.tag)


def version_metadata(version) -> dict[str, Any]:
    """What the BentoML store model carries, read from a registered version's tags."""
    tags = version.tags
    return {"labels": json.loads(tags.get("labels", "[]")),
            "model_sha256": tags.get("model_sha256"),
            "test_accuracy": float(tags.get("test_accuracy", "nan")),
            "mlflow_run_id": version.run_id}


def import_champion(name: str, alias: str) -> tuple[str, str]:
    """Import the version ``models:/NAME@ALIAS`` points at: (its version, BentoML tag)."""
    from mlflow import MlflowClient

    version = MlflowClient().get_model_version_by_alias(name, alias)
    return str(version.version), import_to_bentoml(name, alias, str(version.version),
                                                   version_metadata(version))


def labels_description(labels: list[str]) -> str:
    return "Waste material classifier. Softmax order: " + json.dumps(labels)
