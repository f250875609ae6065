"""MLflow tracking: one run per pipeline execution, shared by the train and evaluate stages.

``train`` opens the run and leaves its id in ``models/mlflow_run.json``; ``evaluate`` and
``register`` reopen that run, so params, epochs, test metrics and the model sit together.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_FILE = Path("models/mlflow_run.json")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure(experiment: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params.yaml sections as MLflow's dotted keys (``train.lr``)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def data_hash(data_path: str, lock_file: Path = Path("dvc.lock")) -> str:
    """The md5 DVC recorded for the input data folder when `validate` last ran."""
    if not lock_file.is_file():
        return "unknown"
    lock = yaml.safe_load(lock_file.read_text()) or {}
    for dep in lock.get("stages", {}).get("validate", {}).get("deps", []):
        if os.path.normpath(dep.get("path", "")) == os.path.normpath(data_path):
            return str(dep.get("md5") or dep.get("hash") or "unknown")
    return "unknown"


def run_tags(params: dict[str, Any]) -> dict[str, str]:
    data_path = str(params.get("data", {}).get("path", ""))
    return {**git_state(), "data_path": data_path, "data_dvc_md5": data_hash(data_path),
            "pipeline": "dvc repro"}


def model_signature(n_classes: int):
    """Raw RGB pixels of any size in (float32, 0-255), one probability per class out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes), "probabilities")]))


def reopen_run():
    """The run `train` opened (its id is in models/mlflow_run.json), or a linked new one when
    this tracking server does not have it (for example after MLFLOW_TRACKING_URI changed)."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = json.loads(RUN_FILE.read_text())["run_id"] if RUN_FILE.is_file() else None
    if run_id:
        try:
            mlflow.get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except MlflowException:
            pass
    return mlflow.start_run(tags={"model_run_id": run_id or "unknown"})


def epoch_metrics_callback():
    """MLflow's Keras callback (per-epoch metrics), logging optimizer params only on the first
    fit: the fine-tuning phase's second optimizer would otherwise clash with logged params."""
    import mlflow.keras

    class EpochMetrics(mlflow.keras.MlflowCallback):
        began = False

        def on_train_begin(self, logs=None):
            if not self.began:
                self.began = True
                super().on_train_begin(logs)

    return EpochMetrics()


def pip_requirements() -> list[str]:
    """Pinned from what is installed, so MLflow skips its slow requirement inference."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("tensorflow", "keras", "numpy", "pillow")]
