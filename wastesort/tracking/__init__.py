"""MLflow tracking: one run per pipeline execution, shared by the stages that train and judge.

``train`` opens the run, logs every param and each epoch while it trains (``finetune_*`` and
``head_refit_*`` metrics, visible in the UI during the run, and system metrics) and leaves its
id in ``models/mlflow_run.json``; ``evaluate``, ``export`` and ``register`` reopen it, so params,
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


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure(experiment: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params.yaml sections as dotted keys (``train.lr``) with their values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flatten(params: dict[str, Any]) -> dict[str, str]:
    """``leaves`` as MLflow params (strings of at most 6,000 characters)."""
    return {key: str(value)[:6000] for key, value in leaves(params).items()}


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


def start_named_run(tags: dict[str, str] | None = None, system_metrics: bool = False):
    """A new run, named for what it is (``run_name``), sampling CPU and memory as
    ``system/*`` metrics with ``system_metrics``. MLflow draws its default run name from
    Python's global `random`, which Keras also draws seeds from during training: the name is
    always drawn, then replaced, so `dvc repro` and `dvc exp run` train alike."""
    import mlflow

    run = mlflow.start_run(tags=tags, log_system_metrics=system_metrics)
    if name := run_name():
        mlflow.set_tag("mlflow.runName", name)
    return run


def dvc_experiment() -> str | None:
    """The name `dvc exp run` gave this experiment (DVC sets DVC_EXP_NAME for its stages), so
    the MLflow run and `dvc exp show` use the same one; None under plain `dvc repro`."""
    return os.environ.get("DVC_EXP_NAME") or None


def shown(value: Any) -> str:
    """A param's value as `-S` takes it (``false``, not ``False``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def changed_params(params_file: Path = Path("params.yaml")) -> dict[str, str]:
    """The params.yaml entries that differ from the committed file (what `-S` set), with
    their values; {} outside git or when nothing changed."""
    try:
        committed = subprocess.run(
            ["git", "show", f"HEAD:{params_file.as_posix()}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        before = yaml.safe_load(committed) or {}
        after = yaml.safe_load(params_file.read_text()) or {}
    except (OSError, subprocess.SubprocessError, yaml.YAMLError):
        return {}

    old, new = leaves(before), leaves(after)
    return {
        key: shown(new[key]) if key in new else "(removed)"
        for key in sorted(set(old) | set(new))
        if old.get(key, object()) != new.get(key, object())
    }


def run_name() -> str | None:
    """``<DVC experiment>: <param>=<value>, ...`` (the params that differ from the committed
    params.yaml), so the runs table says what each run changed; None (MLflow's own name) for a
    `dvc repro` of the committed params."""
    changes = ", ".join(f"{k}={v}" for k, v in changed_params().items())
    name = ": ".join(part for part in (dvc_experiment(), changes) if part)
    return name[:240] or None


def run_tags(params: dict[str, Any]) -> dict[str, str]:
    data_path = str(params["data"]["path"])
    experiment = dvc_experiment()
    changes = changed_params()
    return {
        **git_state(),
        "data_path": data_path,
        "data_dvc_md5": data_hash(data_path),
        "pipeline": f"dvc exp run ({experiment})" if experiment else "dvc repro",
        **({"dvc_exp_name": experiment} if experiment else {}),
        **(
            {"dvc_exp_baseline_rev": base}
            if experiment and (base := os.environ.get("DVC_EXP_BASELINE_REV"))
            else {}
        ),
        "changed_params": ", ".join(f"{k}={v}" for k, v in changes.items()) or "(none)",
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


#: the logged model's input example: one val photo, small (the model resizes any size itself)
EXAMPLE_SIZE = (48, 64)


def log_keras_model(model, classes: list[str], example):
    """``mlflow.keras.log_model`` with the signature, the labels and ``example`` (a batch of
    raw RGB pixels) as the input example. MLflow 3.17's Keras flavor writes the example before
    it creates the model's folder and fails
    ([mlflow#16183](https://github.com/mlflow/mlflow/issues/16183)), so its ``save_model`` is
    called through one that creates the folder first; the rest is ``Model.log``, what
    ``mlflow.keras.log_model`` calls. MLflow's own check that the example serves (it loads the
    logged model and prints Keras' progress bar and warnings into the stage's output) is off:
    tests/integration/test_pipeline.py serves the example through ``mlflow.pyfunc``."""
    import types

    import mlflow.keras
    from mlflow.models import Model

    def save_model(path, validate_serving_input=None, **kwargs):
        os.makedirs(path, exist_ok=True)
        return mlflow.keras.save_model(path=path, **kwargs)

    flavor = types.SimpleNamespace(__name__=mlflow.keras.__name__, save_model=save_model)
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=flavor,
        model=model,
        signature=model_signature(len(classes)),
        input_example=example,
        metadata={"labels": classes},
        pip_requirements=pip_requirements(),
        validate_serving_input=False,
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


def start_training_run(params: dict[str, Any]):
    """The pipeline's run, opened by `train` with every param, the run tags and system metrics
    while it trains."""
    configure(params["mlflow"]["experiment"])
    return open_run(params, system_metrics=True)


def open_run(
    params: dict[str, Any], tags: dict[str, str] | None = None, system_metrics: bool = False
):
    """A new run (see ``start_named_run``) with the run tags, ``tags`` and every param."""
    import mlflow

    run = start_named_run(tags={**run_tags(params), **(tags or {})}, system_metrics=system_metrics)
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


def log_split(data_path: str, context: str, manifest: Path) -> None:
    """A split manifest as the run's input dataset (the runs table's Dataset column): each
    photo's path, label and sha256 (the digest changes when the photos do), the data folder
    as source, the photos and class counts as tags."""
    import json
    import warnings

    import mlflow
    import pandas as pd

    frame = pd.read_csv(manifest)
    root = Path(data_path).resolve()
    with warnings.catch_warnings():  # a local path is a source in two ways; either will do
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(
            frame[[c for c in ("path", "label", "sha256") if c in frame]],
            source=root.as_uri(),
            name=f"{root.name}-{manifest.stem}",
            targets="label",
        )
    counts = {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}
    mlflow.log_input(
        dataset, context=context, tags={"photos": str(len(frame)), "classes": json.dumps(counts)}
    )


# the metrics/headline.json numbers, one group in MLflow's views; MLflow sorts names by code
# point, so the capital puts the group first in the compare view's list of metrics
HEADLINE = "Headline/"


def describe(numbers: dict[str, Any], evaluation: dict[str, Any]) -> str:
    """The run's description (MLflow's note): the headline numbers and the gate's verdict."""
    verdict = "passed" if evaluation.get("gate_passed") else "failed"
    changes = ", ".join(f"{k}={v}" for k, v in changed_params().items()) or "none"
    return (
        f"Test accuracy **{numbers['accuracy']:.4f}** (95 % CI {numbers['ci95_low']:.3f}-"
        f"{numbers['ci95_high']:.3f}); gate {verdict} ({evaluation.get('gate_on', 'point')} >= "
        f"{evaluation.get('min_accuracy')}). Macro F1 {numbers['macro_f1']:.4f}; weakest class "
        f"{numbers['min_f1_class']} (F1 {numbers['min_f1']:.3f}); answered "
        f"{numbers['answered']:.1%}; ECE {numbers['ece']:.4f}; int8 accuracy "
        f"{numbers['int8_accuracy']:.4f} ({numbers['int8_mb']} MB); {numbers['seconds']:.0f} s."
        f"\n\nChanged params: {changes}."
    )


def log_headline(numbers: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """metrics/headline.json into the active run: its numbers as ``Headline/*`` metrics, the
    file itself, the weakest class as a tag and the description."""
    import mlflow

    mlflow.log_metrics(
        {
            f"{HEADLINE}{k}": float(v)
            for k, v in numbers.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    mlflow.set_tags(
        {
            f"{HEADLINE}min_f1_class": str(numbers["min_f1_class"]),
            "mlflow.note.content": describe(numbers, evaluation),
        }
    )
    mlflow.log_dict(numbers, "metrics/headline.json")


def pip_requirements() -> list[str]:
    """Pinned from what is installed, so MLflow skips its slow requirement inference."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("tensorflow", "keras", "numpy", "pillow")]
