"""What an MLflow run says about itself: its name and tags name the DVC experiment and the
params that differ from the committed params.yaml; its description carries the headline. A
real git repo and a real MLflow store (sqlite)."""

from __future__ import annotations

from tests.conftest import run
from wastesort import tracking

COMMITTED = "train:\n  lr: 0.001\n  calibrate: true\nsplit:\n  seed: 42\n"
HEADLINE = {
    "accuracy": 0.933993,
    "ci95_low": 0.900252,
    "ci95_high": 0.956868,
    "macro_f1": 0.926497,
    "min_f1": 0.875,
    "min_f1_class": "trash",
    "ece": 0.020255,
    "answered": 0.907591,
    "int8_accuracy": 0.930693,
    "int8_mb": 5.09,
    "seconds": 3470.0,
}


def test_the_run_is_named_after_the_experiment_and_what_it_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    (tmp_path / "params.yaml").write_text(COMMITTED)
    run(["git", "init", "-q"], tmp_path)
    run(["git", "add", "params.yaml"], tmp_path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"], tmp_path)
    assert tracking.changed_params() == {} and tracking.run_name() is None
    # what `dvc exp run -S train.lr=0.0005 -S train.calibrate=false` leaves in the workspace
    (tmp_path / "params.yaml").write_text(
        COMMITTED.replace("0.001", "0.0005").replace("true", "false") + "extra:\n  k: [1, 2]\n"
    )
    changed = tracking.changed_params()
    assert changed == {"extra.k": "[1, 2]", "train.calibrate": "false", "train.lr": "0.0005"}
    monkeypatch.setenv("DVC_EXP_NAME", "gamic-soft")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    assert tracking.run_name() == (
        "gamic-soft: extra.k=[1, 2], train.calibrate=false, train.lr=0.0005"
    )
    tags = tracking.run_tags({"data": {"path": "data/raw"}})
    assert tags["dvc_exp_name"] == "gamic-soft" and tags["dvc_exp_baseline_rev"] == "abc123"
    assert tags["changed_params"] == "extra.k=[1, 2], train.calibrate=false, train.lr=0.0005"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.run_name() == "extra.k=[1, 2], train.calibrate=false, train.lr=0.0005"


def test_the_headline_is_one_group_and_the_description(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # no git here: changed params are "none"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        with tracking.start_named_run() as active:
            tracking.log_headline(HEADLINE, {"gate_passed": True, "min_accuracy": 0.9})
        data = MlflowClient(uri).get_run(active.info.run_id).data
    finally:
        mlflow.set_tracking_uri(None)
    grouped = {k.removeprefix("Headline/"): v for k, v in data.metrics.items()}
    assert grouped == {k: v for k, v in HEADLINE.items() if k != "min_f1_class"}
    assert all(k.startswith("Headline/") for k in data.metrics)
    assert data.tags["Headline/min_f1_class"] == "trash"
    note = data.tags["mlflow.note.content"]
    assert note.startswith("Test accuracy **0.9340** (95 % CI 0.900-0.957); gate passed")
    assert "weakest class trash (F1 0.875)" in note and "answered 90.8%" in note
    assert "Changed params: none." in note
