"""The MLflow model registry and the BentoML model store: where a gated model goes to be served.

A version is registered once per distinct model file (its sha256 is a version tag) and the
alias (``champion``) is moved to it. The exported TFLite files go into the BentoML store under
a tag derived from the model's sha256 (so two clones or data sets on one machine never share an
entry), and the version records that tag and each file's sha256 (``bento_model``,
``tflite_<kind>_sha256``): the service serves what the alias points at and nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wastesort.artifacts import file_sha256
from wastesort.export import FILES

STORE_FILES = (*FILES.values(), "labels.json")


@dataclass
class Receipt:
    name: str
    version: str
    alias: str
    model_sha256: str
    run_id: str
    bento_model: str
    tflite_sha256: dict[str, str] = field(default_factory=dict)
    challenger: dict[str, str] = field(default_factory=dict)  # a held-back newer version

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def register_version(
    name: str,
    alias: str,
    model_uri: str,
    model_sha256: str,
    tags: dict[str, str],
    description: str,
    move_alias: bool = True,
    verdict: str = "",
) -> tuple[str, bool]:
    """Register (unless this exact model file already is) and, with ``move_alias``, point the
    alias at it. The version's description is ``description`` and the challenge ``verdict``
    (the first thing its page shows)."""
    from mlflow import MlflowClient, register_model
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    existing = client.search_model_versions(
        f"name = '{name}' and tags.model_sha256 = '{model_sha256}'"
    )
    if existing:
        version, created = str(max(int(v.version) for v in existing)), False
        for key, value in tags.items():  # an already registered file gets this run's tags
            client.set_model_version_tag(name, version, key, value)
    else:
        mv = register_model(model_uri, name, tags={**tags, "model_sha256": model_sha256})
        version, created = str(mv.version), True
    described = f"{description}\n\nChallenge: {verdict}" if verdict else description
    client.update_model_version(name, version, description=described)
    if move_alias:
        client.set_registered_model_alias(name, alias, version)
    return version, created


def alias_receipt(name: str, alias: str) -> Receipt:
    """What ``models:/NAME@ALIAS`` is, from its version tags."""
    from mlflow import MlflowClient

    v = MlflowClient().get_model_version_by_alias(name, alias)
    return Receipt(
        name,
        str(v.version),
        alias,
        v.tags.get("model_sha256", ""),
        v.run_id,
        v.tags.get("bento_model", ""),
        {kind: v.tags.get(f"tflite_{kind}_sha256", "") for kind in FILES},
    )


def bento_tag(name: str, model_sha256: str) -> str:
    return f"{name}:{model_sha256[:20]}"


def store_files(tag: str, folder: Path, metadata: dict[str, Any]) -> str:
    """Copy the exported files into the BentoML store as ``tag`` (kept if already identical)."""
    import bentoml
    from bentoml.exceptions import NotFound

    wanted = {f: file_sha256(folder / f) for f in STORE_FILES}
    try:
        existing = bentoml.models.get(tag)
        if all(
            Path(existing.path_of(f)).is_file() and file_sha256(Path(existing.path_of(f))) == s
            for f, s in wanted.items()
        ):
            return str(existing.tag)
        bentoml.models.delete(tag)
    except NotFound:
        pass
    with bentoml.models.create(tag, labels={"project": "wastesort"}, metadata=metadata) as model:
        for f in STORE_FILES:
            shutil.copyfile(folder / f, model.path_of(f))
    return str(model.tag)


def store_version(name: str, version, export_dir: Path) -> str:
    """Put a registered version's exported files into the BentoML store; record the tag."""
    from mlflow import MlflowClient

    tags = version.tags
    for kind, f in FILES.items():
        expected = tags.get(f"tflite_{kind}_sha256")
        if expected and file_sha256(export_dir / f) != expected:
            raise ValueError(
                f"{export_dir / f}: sha256 differs from what {name} version "
                f"{version.version} registered"
            )
    metadata = {
        "mlflow_model": name,
        "mlflow_version": str(version.version),
        "model_sha256": tags.get("model_sha256"),
        "mlflow_run_id": version.run_id,
        "labels": json.loads((export_dir / "labels.json").read_text()),
        "test_accuracy": float(tags.get("test_accuracy", "nan")),
    }
    tag = store_files(bento_tag(name, tags["model_sha256"]), export_dir, metadata)
    MlflowClient().set_model_version_tag(name, str(version.version), "bento_model", tag)
    return tag


def import_champion(name: str, alias: str) -> tuple[str, str]:
    """Bring the files of the version ``models:/NAME@ALIAS`` points at into the BentoML store
    (from its run's ``export/`` artifacts): (its version, BentoML tag)."""
    import mlflow
    from mlflow import MlflowClient

    version = MlflowClient().get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path="export", dst_path=tmp
        )
        return str(version.version), store_version(name, version, Path(local))


def labels_description(labels: list[str]) -> str:
    return "Waste material classifier. Softmax order: " + json.dumps(labels)
