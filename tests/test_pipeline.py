"""The real pipeline: `dvc repro` in a temporary git repo on generated images, tracked by a
real MLflow (sqlite default and a `mlflow server` process), with the accuracy gate."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import make_pipeline_repo, run, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = make_pipeline_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    first = run(["dvc", "repro"], root)
    assert "Running stage 'evaluate'" in first.stdout
    return root


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_second_repro_changes_nothing(repo):
    again = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout
    status = run(["dvc", "status"], repo)
    assert "up to date" in status.stdout


def test_pipeline_outputs(repo):
    summary = read_json(repo / "metrics/validation.json")
    assert summary["accepted"] == 36 and summary["rejected"] == 0
    splits = {n: (repo / f"data/split/{n}.csv").read_text().splitlines()[1:]
              for n in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 36
    assert (repo / "reports/validation/data_docs/index.html").is_file()
    assert (repo / "reports/augment/preview.png").stat().st_size > 1000
    assert json.loads((repo / "models/labels.json").read_text()) == ["cardboard", "glass", "metal"]
    assert (repo / "models/model.keras").is_file()
    ev = read_json(repo / "metrics/evaluate.json")
    assert set(ev) >= {"accuracy", "macro_f1", "per_class", "gate_passed"}
    assert set(ev["per_class"]) == {"cardboard", "glass", "metal"}
    for png in ("confusion_matrix.png", "confident_mistakes.png"):
        assert (repo / "reports/evaluate" / png).stat().st_size > 1000
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert '"accuracy"' in shown and '"cross_class_duplicate_groups"' in shown


def assert_run_is_complete(client: MlflowClient, run_id: str, repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    r = client.get_run(run_id)
    for key, value in [("train.lr", params["train"]["lr"]), ("data.path", "rawdata"),
                       ("augment.variants_per_image", 2), ("split.seed", params["split"]["seed"]),
                       ("evaluate.min_accuracy", params["evaluate"]["min_accuracy"]),
                       ("backbone.image_size", 96)]:
        assert r.data.params[key] == str(value), key
    ev = read_json(repo / "metrics/evaluate.json")
    assert r.data.metrics["test_accuracy"] == pytest.approx(ev["accuracy"])
    assert r.data.metrics["test_macro_f1"] == pytest.approx(ev["macro_f1"])
    assert r.data.metrics["params_trainable"] > 0 and r.data.metrics["data.accepted"] == 36
    epochs = read_json(repo / "metrics/train.json")["epochs_run"]
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run_id, metric)
        assert len(history) == epochs, metric
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    data_md5 = next(d["md5"] for d in lock["stages"]["validate"]["deps"] if d["path"] == "rawdata")
    assert r.data.tags["git_commit"] == head
    assert r.data.tags["git_dirty"] in ("true", "false")
    assert r.data.tags["data_dvc_md5"] == data_md5
    assert r.data.tags["gate"] == "passed"
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/confident_mistakes.png",
            "plots/train_history.csv"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "data")} == \
        {"data/validation_summary.json"}
    info = mlflow.models.get_model_info(read_json(repo / "models/mlflow_run.json")["model_uri"])
    assert info.metadata["labels"] == ["cardboard", "glass", "metal"]
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, -1, -1, 3)


def test_mlflow_run_in_default_sqlite(repo):
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    assert_run_is_complete(MlflowClient(uri), run_id, repo)


def test_head_param_experiment_on_mlflow_server(repo, mlflow_server):
    env = tool_env(MLFLOW_TRACKING_URI=mlflow_server)
    out = run(["dvc", "exp", "run", "-S", "train.lr=0.002"], repo, env=env).stdout
    assert "Stage 'features' didn't change, skipping" in out
    assert "Running stage 'train'" in out
    mlflow.set_tracking_uri(mlflow_server)
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    client = MlflowClient(mlflow_server)
    assert client.get_run(run_id).data.params["train.lr"] == "0.002"
    assert_run_is_complete(client, run_id, repo)


def test_gate_fails_the_stage_above_reached_accuracy(repo):
    reached = read_json(repo / "metrics/evaluate.json")["accuracy"]
    gate = round(reached + 0.01, 4) if reached < 1 else 1.01
    proc = run(["dvc", "exp", "run", "-S", f"evaluate.min_accuracy={gate}"], repo, check=False)
    assert proc.returncode != 0
    assert f"evaluate: error: test accuracy {reached:.4f} is below the gate " \
           f"evaluate.min_accuracy = {gate:.2f}" in proc.stderr
    assert read_json(repo / "metrics/evaluate.json")["gate_passed"] is False
