"""`wastesort evaluate FOLDER`: the champion scored on a labelled folder-per-class set.

The slow tests take the tiny pipeline's champion: on its test split's photos, laid out per
class beside an unknown class and a broken file, the field accuracy is `evaluate`'s own and
`wastesort predict`'s. The fast one runs the command in-process over a stand-in champion (the
serving path around it is real: upload checks, preprocessing, MLflow logging)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from tests import imagegen as g
from tests.conftest import repo_env, run
from wastesort.cli import main
from wastesort.serving import ChampionRef

LABELS = ["cardboard", "glass", "metal"]


def field_folder(root: Path, photos: dict[str, list[Path]]) -> Path:
    """FOLDER/<class>/<photo> from the given photos, plus a class no model here knows
    (`plastic`), a broken file in `glass` and a file beside the class folders."""
    for label, paths in photos.items():
        for path in paths:
            g.write(root / label / path.name, path.read_bytes())
    for i in range(3):
        g.write(root / "plastic" / f"bottle_{i}.jpg", g.jpeg(64, 48, seed=900 + i))
    g.write(root / "glass" / "broken.jpg", b"not a photo")
    g.write(root / "notes.txt", b"taken at the depot on Monday")
    return root


def assert_unknown_and_unreadable_reported(metrics: dict, out: str) -> None:
    assert metrics["unknown_classes"]["plastic"]["photos"] == 3
    assert sum(metrics["unknown_classes"]["plastic"]["predicted"].values()) == 3
    (broken,) = metrics["unreadable"]
    assert broken["path"] == "glass/broken.jpg" and broken["reason"].startswith("not an image")
    assert metrics["loose_files"] == ["notes.txt"]
    assert "not in the model's labels (scored, left out of the accuracy):" in out
    assert "  plastic: 3 photos, answered as " in out
    assert "unreadable (left out): 1\n  glass/broken.jpg: not an image" in out


# ---- a stand-in champion -------------------------------------------------------------------


class StandIn:
    """What ``load_champion`` returns, over a made-up model: the probabilities are a fixed
    function of the preprocessed pixels."""

    kind = "float32"
    labels = LABELS
    input_size = (32, 40)

    def __init__(self, version: str):
        self.ref = ChampionRef("wastesort", "champion", version, "wastesort:standin", {})

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = batch.reshape(len(batch), -1, 3).mean(axis=1) / 32.0
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def info(self) -> dict[str, str]:
        r = self.ref
        return {
            "name": r.name,
            "version": r.version,
            "alias": r.alias,
            "format": self.kind,
            "bento_model": r.bento_tag,
        }


def test_field_report_and_mlflow_run_with_a_stand_in_champion(tmp_path, monkeypatch, capsys):
    from wastesort import serving
    from wastesort.serving import ServeConfig, load_upload

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = {"serve": {"min_confidence": 0.4}, "mlflow": {"experiment": "wastesort"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # a registered version made from a logged model, as `train` and `register` make it
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("wastesort")
    with mlflow.start_run() as training:
        model = mlflow.initialize_logged_model(name="model")
        mlflow.finalize_logged_model(model.model_id, "READY")
    version = str(mlflow.register_model(model.model_uri, "wastesort").version)
    champion = StandIn(version)
    monkeypatch.setattr(serving, "load_champion", lambda cfg: champion)

    sources = g.make_class_folders(tmp_path / "made", {c: 6 for c in LABELS}, size=(80, 60))
    folder = field_folder(
        tmp_path / "depot", {c: sorted((sources / c).iterdir()) for c in ["glass", "metal"]}
    )
    code = main(["evaluate", str(folder), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out

    # the numbers: what the serving path answers for each known-class photo
    cfg = ServeConfig.load("params.yaml")
    truth, answered = [], []
    for label in ["glass", "metal"]:
        for path in sorted((sources / label).iterdir()):
            p = champion.predict(load_upload(path.read_bytes(), cfg, champion.input_size)[None])
            truth.append(label)
            answered.append(LABELS[int(p.argmax())])
    accuracy = float(np.mean(np.array(truth) == np.array(answered)))
    report = tmp_path / "reports/field_eval/depot"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["accuracy"] == round(accuracy, 6) and metrics["known_class_photos"] == 12
    assert metrics["files"] == 16 and metrics["scored"] == 15
    assert metrics["per_class"]["cardboard"]["support"] == 0  # no photos: no recall shown
    assert_unknown_and_unreadable_reported(metrics, out)
    assert f"accuracy: {accuracy:.4f} ({int(round(accuracy * 12))}/12; 95% CI " in out
    assert "abstain:  at serve.min_confidence 0.40 it answers " in out
    assert {p.name for p in report.iterdir()} == {
        "report.md",
        "confusion_matrix.png",
        "predictions.csv",
        "metrics.json",
    }
    markdown = (report / "report.md").read_text()
    assert "## Classes the model does not know" in markdown and "| plastic | 3 |" in markdown
    assert (
        "- `glass/broken.jpg`: not an image" in markdown and "| cardboard | 0 | - | - |" in markdown
    )
    rows = pd.read_csv(report / "predictions.csv")
    assert len(rows) == 16 and rows["error"].fillna("").str.startswith("not an image").sum() == 1

    # the MLflow run: an evaluation of that version, linked to its logged model
    client = MlflowClient(uri)
    (run_,) = client.search_runs(
        [client.get_experiment_by_name("wastesort-field").experiment_id],
        "tags.`wastesort.evaluation` = 'field'",
    )
    assert f"mlflow:   run {run_.info.run_id} in experiment 'wastesort-field'" in out
    tags = run_.data.tags
    assert (tags["model_name"], tags["model_version"], tags["model_alias"]) == (
        "wastesort",
        version,
        "champion",
    )
    assert tags["model_run_id"] == training.info.run_id
    assert run_.data.metrics["field_accuracy"] == pytest.approx(accuracy)
    assert run_.data.metrics["field_unknown_class_photos"] == 3
    assert run_.data.metrics["field_unreadable"] == 1
    inputs = client.get_run(run_.info.run_id).inputs
    assert [m.model_id for m in inputs.model_inputs] == [model.model_id]
    assert inputs.dataset_inputs[0].dataset.name == "depot"
    linked = {m.key: m for m in mlflow.get_logged_model(model.model_id).metrics}
    assert linked["field_accuracy"].run_id == run_.info.run_id
    assert linked["field_accuracy"].dataset_name == "depot"
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id, "field_eval")}
    assert "field_eval/report.md" in artifacts and "field_eval/confusion_matrix.png" in artifacts

    # --no-mlflow and --out
    code = main(["evaluate", str(folder), "--quiet", "--no-mlflow", "--out", "elsewhere"])
    assert code == 0 and "mlflow:" not in capsys.readouterr().out
    assert (tmp_path / "elsewhere/report.md").is_file()
    assert (
        len(client.search_runs([client.get_experiment_by_name("wastesort-field").experiment_id]))
        == 1
    )
    # the pipeline's experiment keeps only the pipeline's (training) run
    (alone,) = client.search_runs([client.get_experiment_by_name("wastesort").experiment_id])
    assert alone.info.run_id == training.info.run_id


def test_unusable_folders(tmp_path, monkeypatch, capsys):
    from wastesort import serving

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.setattr(serving, "load_champion", lambda cfg: StandIn("1"))
    assert main(["evaluate", "missing"]) == 2
    assert capsys.readouterr().err == "wastesort: error: missing: no such folder\n"
    (tmp_path / "empty" / "glass").mkdir(parents=True)
    assert main(["evaluate", "empty"]) == 2
    assert "empty: no photos in class sub-folders" in capsys.readouterr().err
    g.write(tmp_path / "junk" / "glass" / "a.jpg", b"no")
    assert main(["evaluate", "junk", "--no-mlflow", "--quiet"]) == 1
    assert "wastesort: error: no photo could be scored" in capsys.readouterr().err
    g.write(tmp_path / "other" / "plastic" / "a.jpg", g.jpeg())
    assert main(["evaluate", "other", "--no-mlflow", "--quiet"]) == 1
    assert "no photo of a class the model knows" in capsys.readouterr().err


# ---- the tiny pipeline's champion --------------------------------------------------------------


@pytest.fixture(scope="module")
def field_repo(pipeline_repo, tmp_path_factory) -> Path:
    """What `wastesort evaluate` reads of the pipeline repo (params, registry, the test split's
    photos, evaluate's metrics) and its BentoML store, copied: the run it logs goes to the copy,
    in an experiment of its own (so its artifacts are written under the copy too)."""
    copy = tmp_path_factory.mktemp("field") / "repo"
    copy.mkdir()
    for name in ("params.yaml", "mlflow.db", "rawdata", "data/split", "metrics", "models"):
        src, dst = pipeline_repo / name, copy / name
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shutil.copytree(
        repo_env(pipeline_repo)["BENTOML_HOME"], repo_env(copy)["BENTOML_HOME"], symlinks=True
    )
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["mlflow"]["experiment"] = "field"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return copy


@pytest.mark.slow
def test_field_accuracy_is_evaluates_on_the_test_split(field_repo, tmp_path):
    """The acceptance check: on the test split's photos the field accuracy is the one
    `evaluate` recorded (the Keras model there, the served float32 TFLite file here: their
    probabilities agree to ~1e-5, so every top-1 answer and the accuracy are equal), and the
    one `wastesort predict --json` gives; the unknown class and the broken file are reported
    and left out."""
    repo = field_repo
    test = pd.read_csv(repo / "data/split/test.csv")
    photos = {
        label: [repo / "rawdata" / p for p in group["path"]]
        for label, group in test.groupby("label")
    }
    folder = field_folder(tmp_path / "depot", photos)
    env = repo_env(repo)
    proc = run(["wastesort", "evaluate", str(folder), "--out", str(tmp_path / "report")], repo, env)
    metrics = json.loads((tmp_path / "report/metrics.json").read_text())
    recorded = json.loads((repo / "metrics/evaluate.json").read_text())
    assert metrics["known_class_photos"] == recorded["n_test"] == len(test)
    assert metrics["accuracy"] == recorded["accuracy"]
    assert metrics["accuracy_ci95"] == recorded["accuracy_ci95"]
    for label in LABELS:
        assert metrics["per_class"][label]["recall"] == recorded["per_class"][label]["recall"]
    assert metrics["abstention"]["coverage"] == recorded["abstention"]["coverage"]
    assert f"accuracy: {recorded['accuracy']:.4f} " in proc.stdout
    assert_unknown_and_unreadable_reported(metrics, proc.stdout)
    for name in ("report.md", "confusion_matrix.png", "predictions.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 0

    # the same answers as `wastesort predict --json`, photo by photo (it exits 1: broken.jpg)
    known = [folder / label for label in photos]
    proc = run(["wastesort", "predict", "--json", *map(str, known)], repo, env, check=False)
    answers = [a for a in json.loads(proc.stdout) if "error" not in a]
    assert proc.returncode == 1 and len(answers) == len(test)
    by_path = {Path(a["path"]).relative_to(folder).as_posix(): a for a in answers}
    rows = pd.read_csv(tmp_path / "report/predictions.csv").set_index("path")
    for path, a in by_path.items():
        assert rows.loc[path, "predicted"] == a["label"]
        assert rows.loc[path, "confidence"] == pytest.approx(a["confidence"], abs=1e-6)
    predicted = np.mean([a["label"] == Path(p).parts[0] for p, a in by_path.items()])
    assert metrics["accuracy"] == round(float(predicted), 6)

    # the MLflow run, linked to the champion's version and its logged model
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(uri)
    (field_run,) = client.search_runs([client.get_experiment_by_name("field-field").experiment_id])
    version = client.get_model_version_by_alias("wastesort", "champion")
    tags = field_run.data.tags
    assert (tags["model_version"], tags["model_run_id"]) == (str(version.version), version.run_id)
    assert (
        tags["model_run_id"] == json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    )
    assert field_run.data.metrics["field_accuracy"] == pytest.approx(recorded["accuracy"])
    model_id = version.source.removeprefix("models:/")
    inputs = client.get_run(field_run.info.run_id).inputs
    assert [m.model_id for m in inputs.model_inputs] == [model_id]
    artifacts = {a.path for a in client.list_artifacts(field_run.info.run_id, "field_eval")}
    assert {"field_eval/report.md", "field_eval/confusion_matrix.png"} <= artifacts
