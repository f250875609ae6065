"""The real pipeline: `dvc repro` in a temporary git repo on generated images, tracked by a
real MLflow (sqlite default and a `mlflow server` process), with the accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import copy_repo, read_json, registered_versions, repo_env, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(pipeline_repo) -> Path:
    return pipeline_repo


@pytest.fixture(scope="module")
def scratch_repo(pipeline_repo, tmp_path_factory) -> Path:
    """A full copy (git, DVC cache, MLflow db, BentoML store) that tests may change."""
    return copy_repo(pipeline_repo, tmp_path_factory.mktemp("scratch") / "repo")


def test_second_repro_changes_nothing(repo, tmp_path):
    # in a copy (same files and times): the session's repo is read-only for the tests
    repo = copy_repo(repo, tmp_path / "repo")
    again = run(["dvc", "repro"], repo, env=repo_env(repo))
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout
    status = run(["dvc", "status"], repo)
    assert "up to date" in status.stdout


def test_same_machine_data_and_seeds_give_identical_metrics(repo, tmp_path):
    """The augmentation, the feature cache and both trainings run again from scratch in a copy
    (its own DVC cache, MLflow store and BentoML store) and reproduce the first run to the last
    digit: op determinism and seeded augmentation. (validate and split are pure functions of
    the files, checked in tests/data/test_validation.py and tests/data/test_splitting.py.)"""
    again = copy_repo(
        repo,
        tmp_path / "again",
        store=False,
        ignore=lambda _, names: {"mlflow.db", "cache"} & set(names),
    )
    # DVC deletes a stage's outputs before it runs it, and fails when one is not written again
    run(
        ["dvc", "repro", "-f", "-s", "augment", "features", "train", "evaluate"],
        again,
        env=repo_env(again),
    )
    for name in (
        "metrics/evaluate.json",
        "metrics/train.json",
        "metrics/test_predictions.csv",
        "metrics/finetune_history.csv",
        "metrics/train_history.csv",
        "data/augment/plan.csv",
    ):
        assert (again / name).read_text() == (repo / name).read_text(), name
    timing = ("epoch_seconds", "train_images_per_second")
    first, second = (read_json(r / "metrics/finetune.json") for r in (repo, again))
    assert {k: v for k, v in first.items() if k not in timing} == {
        k: v for k, v in second.items() if k not in timing
    }
    history = (repo / "metrics/finetune_history.csv").read_text().splitlines()
    assert len(history) > 2 and "loss" in history[0]  # real per-epoch losses were compared


def test_stages_name_their_device_and_hide_tensorflow_start_up(scratch_repo):
    repo = scratch_repo
    out = run(["dvc", "repro", "-f", "-s", "train"], repo, env=repo_env(repo))
    text = out.stdout + out.stderr
    assert "train: training on CPU" in text
    for noise in (
        "cuInit",
        "cuda_platform",
        "cudart_stub",
        "oneDNN custom operations",
        "absl::InitializeLog",
    ):
        assert noise not in text, noise


def test_review_pools_through_the_features_cache_without_tensorflow(scratch_repo, tmp_path):
    """`features` leaves the frozen pooler as a LiteRT file; `review` pools every cached row
    through it with no TensorFlow in its process (here a `tensorflow` that fails to import is
    first on its path) and reports what it reported when the pipeline ran."""
    repo = scratch_repo
    assert (repo / "data/features/pooler.tflite").stat().st_size > 0
    before = read_json(repo / "metrics/review.json")
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("review imported tensorflow")\n')
    out = run(
        ["dvc", "repro", "-f", "-s", "review"],
        repo,
        env=repo_env(repo, PYTHONPATH=str(blocker.parent)),
    )
    assert "Running stage 'review'" in out.stdout
    assert read_json(repo / "metrics/review.json") == before


def test_pipeline_outputs(repo):
    summary = read_json(repo / "metrics/validation.json")
    assert summary["accepted"] == 36 and summary["rejected"] == 0
    splits = {
        n: (repo / f"data/split/{n}.csv").read_text().splitlines()[1:]
        for n in ("train", "val", "test")
    }
    assert sum(map(len, splits.values())) == 36
    assert (repo / "reports/validation/data_docs/index.html").is_file()
    assert (repo / "reports/augment/preview.png").stat().st_size > 1000
    assert json.loads((repo / "models/labels.json").read_text()) == ["cardboard", "glass", "metal"]
    assert (repo / "models/model.keras").is_file()
    assert (repo / "data/finetuned/backbone_top.weights.h5").is_file()
    tuned = read_json(repo / "metrics/finetune.json")
    assert tuned["layers"] == 11 and tuned["epochs_run"] >= 2
    ev = read_json(repo / "metrics/evaluate.json")
    assert set(ev) >= {"accuracy", "macro_f1", "per_class", "gate_passed"}
    assert set(ev["per_class"]) == {"cardboard", "glass", "metal"}
    for png in ("confusion_matrix.png", "confident_mistakes.png"):
        assert (repo / "reports/evaluate" / png).stat().st_size > 1000
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]:
        assert read_json(repo / f"metrics/time/{stage}.json")["seconds"] >= 0, stage
    assert read_json(repo / "metrics/time/train.json")["seconds"] > 1


def test_saved_model_carries_the_fine_tuned_top(repo):
    import keras
    import numpy as np

    from wastesort.keras_scoring import input_size
    from wastesort.model import BackboneSpec, build_classifier, top_backbone

    model = keras.models.load_model(repo / "models/model.keras")
    assert input_size(model) == (224, 224)
    saved = model.get_layer("backbone_top")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    spec = BackboneSpec.from_params(params["backbone"], params["finetune"])
    assert spec.name == "efficientnet_lite0"  # tiny_params' backbone, through the tiny pipeline
    imagenet = top_backbone(build_classifier(3, spec))
    changed = any(
        not np.allclose(a, b) for a, b in zip(saved.get_weights(), imagenet.get_weights())
    )
    assert changed == read_json(repo / "metrics/finetune.json")["fine_tuned_top_kept"]


def assert_run_is_complete(client: MlflowClient, run_id: str, repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    r = client.get_run(run_id)
    for key, value in [
        ("train.lr", params["train"]["lr"]),
        ("data.path", "rawdata"),
        ("augment.variants_per_image", 2),
        ("split.seed", params["split"]["seed"]),
        ("evaluate.min_accuracy", params["evaluate"]["min_accuracy"]),
        ("backbone.image_size", 224),
    ]:
        assert r.data.params[key] == str(value), key
    ev = read_json(repo / "metrics/evaluate.json")
    assert r.data.metrics["test_accuracy"] == pytest.approx(ev["accuracy"])
    assert r.data.metrics["test_macro_f1"] == pytest.approx(ev["macro_f1"])
    assert r.data.metrics["params_trainable"] > 0 and r.data.metrics["data.accepted"] == 36
    epochs = read_json(repo / "metrics/train.json")["epochs_run"]
    tuned = read_json(repo / "metrics/finetune.json")["epochs_run"]
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(client.get_metric_history(run_id, f"head_refit_{metric}")) == epochs, metric
        assert len(client.get_metric_history(run_id, f"finetune_{metric}")) == tuned, metric
        assert metric not in r.data.metrics  # nothing unprefixed from a head that may be dropped
    kept = read_json(repo / "metrics/train.json")["kept_fine_tuned_head"]
    assert r.data.metrics["kept_fine_tuned_head"] == float(kept)
    assert not any(p.startswith("optimizer_") for p in r.data.params)  # params.yaml names only
    assert r.data.params["finetune.layers"] == "11"
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    data_md5 = next(d["md5"] for d in lock["stages"]["validate"]["deps"] if d["path"] == "rawdata")
    assert r.data.tags["git_commit"] == head
    assert r.data.tags["git_dirty"] in ("true", "false")
    assert r.data.tags["data_dvc_md5"] == data_md5
    assert r.data.tags["gate"] == "passed"
    # the headline group: metrics/headline.json's numbers, the file, and the description
    headline = read_json(repo / "metrics/headline.json")
    for key, value in headline.items():
        if key == "min_f1_class":
            assert r.data.tags["Headline/min_f1_class"] == value
        else:
            assert r.data.metrics[f"Headline/{key}"] == pytest.approx(value), key
    note = r.data.tags["mlflow.note.content"]
    assert f"Test accuracy **{headline['accuracy']:.4f}**" in note and "gate passed" in note
    logged = client.download_artifacts(run_id, "metrics/headline.json")
    assert json.loads(Path(logged).read_text()) == headline
    # the splits as the run's datasets, the test plots where the compare view finds them
    inputs = {}
    for logged in r.inputs.dataset_inputs:
        tags = {t.key: t.value for t in logged.tags}
        inputs[tags["mlflow.data.context"]] = (logged.dataset, tags)
    assert set(inputs) == {"training", "validation", "test"}
    for context, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        dataset, tags = inputs[context]
        rows = pd.read_csv(repo / f"data/split/{split}.csv")
        assert dataset.name == f"rawdata-{split}" and int(tags["photos"]) == len(rows)
        assert json.loads(tags["classes"]) == rows["label"].value_counts().to_dict()
    assert {"confusion_matrix.png", "reliability.png"} <= {
        a.path for a in client.list_artifacts(run_id)
    }
    assert any(k.startswith("system/cpu") for k in r.data.metrics)  # sampled while training
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {
        "plots/confusion_matrix.png",
        "plots/confident_mistakes.png",
        "plots/train_history.csv",
    } <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "data")} == {
        "data/validation_summary.json",
        "data/train_manifest.csv",
    }
    info = mlflow.models.get_model_info(read_json(repo / "models/mlflow_run.json")["model_uri"])
    assert info.metadata["labels"] == ["cardboard", "glass", "metal"]
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, -1, -1, 3)
    # the input example (test_mlflow_run_in_default_sqlite serves it through mlflow.pyfunc)
    assert info.saved_input_example_info["type"] == "ndarray"
    assert info.model_uuid and info.run_id == run_id


def test_export_writes_float32_and_int8_with_parity(repo):
    from wastesort.litert import LiteModel
    from wastesort.tracking.registry import file_sha256

    exported = read_json(repo / "metrics/export.json")
    ev = read_json(repo / "metrics/evaluate.json")
    assert exported["passed"] is True and exported["keras_accuracy"] == ev["accuracy"]
    assert exported["n_test"] == ev["n_test"]
    for kind, name in (("float32", "model_float32.tflite"), ("int8", "model_int8.tflite")):
        path = repo / "export" / name
        assert exported[kind]["sha256"] == file_sha256(path)
        assert exported[kind]["bytes"] == path.stat().st_size
        assert 0 <= exported[kind]["accuracy"] <= 1
    assert exported["float32"]["top1_agreement"] >= 0.995
    assert exported["int8"]["bytes"] <= 5_000_000  # the edge goal for one Lite0
    assert exported["int8"]["bytes"] * 3 < exported["float32"]["bytes"]
    int8 = LiteModel((repo / "export/model_int8.tflite").read_bytes())
    assert int8.input_dtype == np.uint8 and int8.output_dtype == np.uint8  # full integer
    assert int8.input_quantization[0] == pytest.approx(1.0, abs=0.01)  # raw pixels in
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(run_id, "export")}
    assert logged == {
        "export/model_float32.tflite",
        "export/model_int8.tflite",
        "export/labels.json",
    }
    metrics = client.get_run(run_id).data.metrics
    assert metrics["export_float32_top1_agreement"] == exported["float32"]["top1_agreement"]
    assert metrics["export_int8_accuracy"] == exported["int8"]["accuracy"]


def test_export_fails_when_int8_drops_too_much(scratch_repo):
    repo = scratch_repo
    exported = read_json(repo / "metrics/export.json")
    drop = exported["keras_accuracy"] - exported["int8"]["accuracy"]
    # just under what the int8 file reached (a negative limit when it beat Keras here)
    limit = round(drop - 0.01, 4)
    params = (repo / "params.yaml").read_text()
    try:
        proc = run(
            ["dvc", "exp", "run", "-S", f"export.max_int8_drop={limit}"],
            repo,
            env=repo_env(repo),
            check=False,
        )
    finally:  # `exp run -S` edits the workspace's params; later tests share this repo
        (repo / "params.yaml").write_text(params)
    assert proc.returncode != 0
    assert "export: error: the int8 file's test accuracy" in proc.stderr
    assert f"more than export.max_int8_drop = {limit}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Running stage 'register'" not in proc.stdout


# MLflow 3.17's pyfunc hands a Keras model with one named input a one-element list; Keras warns
@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match:UserWarning")
def test_mlflow_run_in_default_sqlite(repo):
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    assert_run_is_complete(MlflowClient(uri), run_id, repo)
    # the logged model serves its input example, a val photo, through MLflow's own loader
    from wastesort.features import load_resized
    from wastesort.tracking import EXAMPLE_SIZE

    logged = mlflow.pyfunc.load_model(read_json(repo / "models/mlflow_run.json")["model_uri"])
    example = logged.input_example["image"]  # keyed by the signature's input name
    first_val = pd.read_csv(repo / "data/split/val.csv")["path"].iloc[:1].tolist()
    photo = load_resized(repo / "rawdata", first_val, EXAMPLE_SIZE, 50_000_000)
    assert example.dtype == np.float32 and np.allclose(example, photo, atol=0.5)
    probabilities = np.asarray(logged.predict(example))
    assert probabilities.shape == (1, 3) and probabilities.sum() == pytest.approx(1, abs=1e-4)


def test_gate_fails_the_stage_above_reached_accuracy(scratch_repo):
    repo = scratch_repo
    reached = read_json(repo / "metrics/evaluate.json")["accuracy"]
    assert reached < 0.99  # the tiny model leaves room for a gate above it
    gate = round(reached + 0.01, 4)
    versions_before = registered_versions(repo)
    proc = run(
        ["dvc", "exp", "run", "-S", f"evaluate.min_accuracy={gate}"],
        repo,
        env=repo_env(repo),
        check=False,
    )
    assert proc.returncode != 0
    assert (
        f"evaluate: error: test accuracy {reached:.4f} is below the gate "
        f"evaluate.min_accuracy = {gate:.2f}" in proc.stderr
    )
    assert read_json(repo / "metrics/evaluate.json")["gate_passed"] is False
    assert "Running stage 'register'" not in proc.stdout
    assert registered_versions(repo) == versions_before  # no new version, alias unmoved


def test_register_sets_champion_with_tags(repo):
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    receipt = read_json(repo / "registry/receipt.json")
    champion = client.get_model_version_by_alias("wastesort", "champion")
    assert str(champion.version) == receipt["version"] == "1"
    ev = read_json(repo / "metrics/evaluate.json")
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    assert champion.tags["test_accuracy"] == str(ev["accuracy"])
    assert champion.tags["macro_f1"] == str(ev["macro_f1"])
    assert champion.tags["run_id"] == run_id == champion.run_id
    assert champion.tags["git_commit"] == run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert champion.tags["data_dvc_md5"] == next(
        d["md5"] for d in lock["stages"]["validate"]["deps"] if d["path"] == "rawdata"
    )
    assert json.loads(champion.tags["labels"]) == ["cardboard", "glass", "metal"]
    exported = read_json(repo / "metrics/export.json")
    for kind in ("float32", "int8"):
        assert (
            champion.tags[f"tflite_{kind}_sha256"]
            == exported[kind]["sha256"]
            == receipt["tflite_sha256"][kind]
        )
    assert champion.tags["bento_model"] == receipt["bento_model"]
    info = mlflow.models.get_model_info("models:/wastesort@champion")
    assert info.signature is not None and info.metadata["labels"] == ["cardboard", "glass", "metal"]
    listed = json.loads(
        run(["bentoml", "models", "list", "-o", "json"], repo, env=repo_env(repo)).stdout
    )
    assert [m["tag"] for m in listed] == [receipt["bento_model"]]


def test_register_again_registers_nothing_new(repo, tmp_path):
    repo = copy_repo(repo, tmp_path / "repo")
    out = run(["dvc", "repro", "-f", "-s", "register"], repo, env=repo_env(repo)).stdout
    assert "already registered" in out
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert [str(v.version) for v in client.search_model_versions("name = 'wastesort'")] == ["1"]
    listed = json.loads(
        run(["bentoml", "models", "list", "-o", "json"], repo, env=repo_env(repo)).stdout
    )
    assert len(listed) == 1


def test_evaluate_reports_calibration_interval_and_abstention(repo):
    ev = read_json(repo / "metrics/evaluate.json")
    low, high = ev["accuracy_ci95"]
    assert low <= ev["accuracy"] <= high and high - low > 0.1  # 9 test images: a wide interval
    assert ev["gate_on"] == "point" and ev["gate_value"] == ev["accuracy"]
    calibrated = read_json(repo / "models/calibration.json")
    assert calibrated["temperature"] == ev["temperature"] > 0
    assert calibrated["val_nll_after"] <= calibrated["val_nll_before"]  # fitted on val
    assert read_json(repo / "metrics/train.json")["temperature"] == calibrated["temperature"]
    at = ev["abstention"]
    assert at["min_confidence"] == 0.0 and at["coverage"] == 1.0 and at["uncertain"] == 0
    curve = (repo / "metrics/risk_coverage.csv").read_text().splitlines()
    assert curve[0] == "threshold,coverage,accuracy" and curve[-1].split(",")[1] == "1.0"
    assert float(curve[-1].split(",")[2]) == pytest.approx(ev["accuracy"], abs=1e-6)
    assert "accuracy_before" in (repo / "metrics/reliability.csv").read_text().splitlines()[0]
    for png in ("reliability.png", "risk_coverage.png"):
        assert (repo / "reports/evaluate" / png).stat().st_size > 1000
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run_id = read_json(repo / "models/mlflow_run.json")["run_id"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["test_accuracy_ci95_low"] == low and metrics["test_ece_after"] == ev["ece_after"]
    logged = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/risk_coverage.png", "plots/reliability.png", "plots/risk_coverage.csv"} <= logged
    manifest = client.download_artifacts(run_id, "data/train_manifest.csv")
    assert Path(manifest).read_text() == (repo / "data/split/train.csv").read_text()
