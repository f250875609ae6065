"""MLflow tracking: one run per pipeline execution, shared by the stages that train and judge.

``finetune`` opens the run, logs every param and each epoch while it trains (``finetune_*``
metrics, visible in the UI during the run) and leaves its id in ``data/finetuned/mlflow_run.json``.
``train`` continues that run (``pipeline_run``) or, when fine-tuning was cached or ran under other
params or another tracking server, opens a new one and copies the fine-tuning epochs in; it leaves
the id in ``models/mlflow_run.json``, and ``evaluate`` and ``register`` reopen it, so params,
epochs, test metrics and the model sit together.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from wastesort import paths

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_FILE = paths.MODELS / "mlflow_run.json"
FINETUNE_RUN_FILE = paths.FINETUNED / "mlflow_run.json"
TRAINED_TAG = "wastesort.trained"  # set by `train`: that run has its model, start another


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
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
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


def start_named_run(tags: dict[str, str] | None = None):
    """A new run, renamed after the DVC experiment when there is one. MLflow draws its default
    run name from Python's global `random`, which Keras also draws seeds from during training:
    the name is always drawn, then replaced, so `dvc repro` and `dvc exp run` train alike."""
    import mlflow

    run = mlflow.start_run(tags=tags)
    if name := dvc_experiment():
        mlflow.set_tag("mlflow.runName", name)
    return run


def dvc_experiment() -> str | None:
    """The name `dvc exp run` gave this experiment (DVC sets DVC_EXP_NAME for its stages), so
    the MLflow run and `dvc exp show` use the same one; None under plain `dvc repro`."""
    return os.environ.get("DVC_EXP_NAME") or None


def run_tags(params: dict[str, Any]) -> dict[str, str]:
    data_path = str(params["data"]["path"])
    experiment = dvc_experiment()
    return {
        **git_state(),
        "data_path": data_path,
        "data_dvc_md5": data_hash(data_path),
        "pipeline": f"dvc exp run ({experiment})" if experiment else "dvc repro",
    }


def model_signature(n_classes: int):
    """Raw RGB pixels of any size in (float32, 0-255), one probability per class out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes), "probabilities")]),
    )


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


def start_finetune_run(params: dict[str, Any]):
    """The pipeline's run, opened by `finetune` with every param and the run tags."""
    configure(params["mlflow"]["experiment"])
    return open_run(params)


def open_run(params: dict[str, Any], tags: dict[str, str] | None = None):
    """A new run (see ``start_named_run``) with the run tags, ``tags`` and every param."""
    import mlflow

    run = start_named_run(tags={**run_tags(params), **(tags or {})})
    mlflow.log_params(flatten(params))
    return run


def log_finetune_summary(summary: dict[str, Any]) -> None:
    """metrics/finetune.json's numbers as ``finetune_*`` metrics of the active run."""
    import mlflow

    mlflow.log_metrics(
        {
            f"finetune_{k}": float(v)
            for k, v in summary.items()
            if k not in ("layers", "epochs_run") and isinstance(v, (int, float))
        }
    )


def pipeline_run(params: dict[str, Any]):
    """For `train`: (the active run, whether it continues the one `finetune` opened). That run
    is continued when this tracking server has it, it was opened under exactly these params and
    no model was trained in it yet; otherwise a new run is opened with the params and tags (and
    the caller copies the fine-tuning epochs in)."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = (
        json.loads(FINETUNE_RUN_FILE.read_text()).get("run_id")
        if FINETUNE_RUN_FILE.is_file()
        else None
    )
    if run_id:
        try:
            opened = mlflow.get_run(run_id)
        except MlflowException:
            opened = None
        if (
            opened is not None
            and TRAINED_TAG not in opened.data.tags
            and opened.data.params == flatten(params)
        ):
            run = mlflow.start_run(run_id=run_id)
            mlflow.set_tag(TRAINED_TAG, "true")
            return run, True
    tags = {TRAINED_TAG: "true", **({"finetune_run_id": run_id} if run_id else {})}
    return open_run(params, tags), False


def live_epoch_metrics(prefix: str):
    """A Keras callback that logs each epoch's metrics to the active run as it ends, named
    ``prefix + name`` with the epoch as step (the fine-tuning phase's ``finetune_*``)."""
    import keras
    import mlflow

    class LiveEpochMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics(
                {f"{prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=epoch
            )

    return LiveEpochMetrics()


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
