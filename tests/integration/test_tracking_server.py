"""A team's tracking server: MLflow on PostgreSQL with artifacts proxied by the server. The
tiny pipeline tracks into it (the fine-tuning epochs live), a second run with another param sits
beside the first, the registry holds the champion, and `bentoml serve` serves that champion."""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.conftest import copy_repo, repo_env, run, serving
from tests.integration.test_pipeline import assert_run_is_complete, read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team_repo(team_server, pipeline_repo, tmp_path_factory):
    """A clone of the session's tiny pipeline, its data stages done and no tracking store of its
    own, whose next `dvc repro` runs with MLFLOW_TRACKING_URI naming the team server: every
    stage that tracks (train, forced, then evaluate to register) tracks into it."""
    url, _ = team_server
    repo = copy_repo(
        pipeline_repo,
        tmp_path_factory.mktemp("team") / "repo",
        store=False,
        ignore=lambda _, names: {"mlflow.db"} & set(names),
    )
    env = repo_env(repo, MLFLOW_TRACKING_URI=url)
    forced = run(["dvc", "repro", "-f", "-s", "train"], repo, env=env).stdout
    assert "Running stage 'train'" in forced
    out = run(["dvc", "repro"], repo, env=env).stdout
    assert "Running stage 'evaluate'" in out and "Running stage 'register'" in out
    assert "Running stage 'features'" not in out
    assert not (repo / "mlflow.db").exists()  # nothing tracked beside the clone
    return repo


def test_pipeline_run_lives_on_postgres_with_proxied_artifacts(team_server, team_repo):
    url, artifact_root = team_server
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    run_id = read_json(team_repo / "models/mlflow_run.json")["run_id"]
    # one run for the execution: opened by train (both phases' epochs, see
    # assert_run_is_complete), continued by evaluate, export and register
    assert not (team_repo / "data/finetuned/mlflow_run.json").exists()
    assert_run_is_complete(client, run_id, team_repo)
    # artifacts went through the server into its destination, not to a path the client wrote
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    stored = {p.name for p in artifact_root.rglob("*") if p.is_file()}
    assert {"confusion_matrix.png", "reliability.png", "model_float32.tflite"} <= stored
    champion = client.get_model_version_by_alias("wastesort", "champion")
    assert champion.run_id == run_id
    assert read_json(team_repo / "registry/receipt.json")["version"] == str(champion.version)


def test_fine_tuning_epochs_reach_the_server_while_it_trains(team_server, team_repo):
    client = MlflowClient(team_server[0])
    run_id = read_json(team_repo / "models/mlflow_run.json")["run_id"]
    history = client.get_metric_history(run_id, "finetune_val_accuracy")
    tuned = read_json(team_repo / "metrics/finetune.json")["epochs_run"]
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(tuned))
    # each epoch was logged when it ended: before the stage saved the weights it trained
    saved_ms = os.stat(team_repo / "data/finetuned/backbone_top.weights.h5").st_mtime * 1000
    stamps = [m.timestamp for m in sorted(history, key=lambda m: m.step)]
    assert stamps == sorted(stamps) and stamps[-1] <= saved_ms
    assert stamps[0] < stamps[-1]
    assert client.get_run(run_id).data.metrics["finetune_train_images_per_second"] > 0


def test_two_runs_compare_side_by_side_and_serve_the_champion(team_server, team_repo):
    url, _ = team_server
    env = repo_env(team_repo, MLFLOW_TRACKING_URI=url)
    first = read_json(team_repo / "models/mlflow_run.json")["run_id"]
    out = run(["dvc", "exp", "run", "-S", "train.lr=0.002"], team_repo, env=env).stdout
    assert "Stage 'features' didn't change, skipping" in out and "Running stage 'train'" in out
    run(["git", "checkout", "params.yaml"], team_repo)
    second = read_json(team_repo / "models/mlflow_run.json")["run_id"]
    assert second != first
    client = MlflowClient(url)
    runs = {
        r.info.run_id: r
        for r in client.search_runs([client.get_experiment_by_name("wastesort").experiment_id])
    }
    assert {first, second} <= set(runs)
    assert (runs[first].data.params["train.lr"], runs[second].data.params["train.lr"]) == (
        "0.001",
        "0.002",
    )
    # the run is named after the DVC experiment, as `dvc exp show` lists it, and its change
    experiment, changed = runs[second].info.run_name.split(": ")
    assert f"Ran experiment(s): {experiment}\n" in out and changed == "train.lr=0.002"
    for run_id in (first, second):  # what the UI's compare view shows for each
        assert "test_accuracy" in runs[run_id].data.metrics
        assert "plots/confusion_matrix.png" in {
            a.path for a in client.list_artifacts(run_id, "plots")
        }
    # each run trained the whole recipe: its own fine-tuning epochs, the same count (the
    # finetune params did not change), none copied from another run
    assert "finetune_run_id" not in runs[second].data.tags
    assert len(client.get_metric_history(second, "finetune_val_accuracy")) == len(
        client.get_metric_history(first, "finetune_val_accuracy")
    )

    mlflow.set_tracking_uri(url)
    champion = client.get_model_version_by_alias("wastesort", "champion")
    photo = sorted((team_repo / "rawdata" / "glass").iterdir())[0]
    with serving(team_repo, env) as served:
        answer = requests.post(
            f"{served}/classify", timeout=60, files={"image": (photo.name, photo.read_bytes())}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"] == str(champion.version)
    assert json.loads(champion.tags["labels"]) == sorted(answer.json()["probabilities"])
