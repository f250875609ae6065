"""Champion against challenger on a real MLflow registry (sqlite), with real TFLite files run
under LiteRT on real JPEGs: a worse challenger never takes the alias."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests import imagegen as g
from wastesort.tracking import challenger

LABELS = ["red", "green", "blue"]


def colour_model(permute: bool, scale: float = 0.1) -> bytes:
    """A TFLite file that calls a photo by its strongest channel (or, permuted, gets it
    wrong every time); a small ``scale`` gives the same answers at near-uniform confidence
    (an uncalibrated model)."""
    import keras

    from wastesort.export import to_float32

    image = keras.Input((None, None, 3))
    x = keras.layers.Resizing(16, 16, name="resize")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3, activation="softmax")
    out = dense(x)
    kernel = np.eye(3, dtype="float32") * scale
    dense.set_weights([np.roll(kernel, 1, axis=1) if permute else kernel, np.zeros(3, "float32")])
    return to_float32(keras.Model(image, out))


def photos(root: Path, n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(LABELS):
        for k in range(n):
            pixels = rng.integers(0, 60, (40, 30, 3)).astype(np.uint8)
            pixels[..., i] = 200 + k
            path = root / label / f"{label}{k}.jpg"
            g.write(path, g.encode(Image.fromarray(pixels), "JPEG"))
            rows.append(
                {
                    "path": f"{label}/{label}{k}.jpg",
                    "label": label,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the sqlite store keeps artifacts under ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(None)


def register_champion(mlflow, files: Path, tflite: bytes, trained_on: pd.DataFrame) -> str:
    from mlflow import MlflowClient

    (files / "model_float32.tflite").write_bytes(tflite)
    with mlflow.start_run() as run:
        mlflow.log_text(trained_on.to_csv(index=False), challenger.TRAIN_MANIFEST_ARTIFACT)
        for kind in ("float32", "int8"):  # an int8 file only where the test wrote one
            if (files / f"model_{kind}.tflite").is_file():
                mlflow.log_artifact(str(files / f"model_{kind}.tflite"), "export")
    client = MlflowClient()
    client.create_registered_model("wastesort")
    mv = client.create_model_version(
        "wastesort",
        f"runs:/{run.info.run_id}/export",
        run.info.run_id,
        tags={"model_sha256": "champion-sha", "labels": json.dumps(LABELS)},
    )
    client.set_registered_model_alias("wastesort", "champion", mv.version)
    return str(mv.version)


def test_worse_challenger_is_held_and_an_equal_one_promoted(registry, tmp_path):
    root = tmp_path / "data"
    manifest = photos(root)
    trained_on, test = manifest.iloc[[0]], manifest  # one test photo the champion saw
    good, bad = colour_model(permute=False), colour_model(permute=True)
    version = register_champion(registry, tmp_path, good, trained_on)
    (tmp_path / "bad.tflite").write_bytes(bad)
    held = challenger.challenge(
        "wastesort",
        "champion",
        "new-sha",
        tmp_path / "bad.tflite",
        LABELS,
        root,
        test,
        10**8,
        max_regression=0.0,
    )
    assert held.promote is False and held.champion_version == version
    assert held.n_images == len(test) - 1  # the photo it trained on is left out
    assert (held.champion_accuracy, held.challenger_accuracy) == (1.0, 0.0)
    assert held.tags()["challenge"] == "held" and "the alias stays" in held.reason
    # the alias is untouched by the comparison itself
    from mlflow import MlflowClient

    assert str(MlflowClient().get_model_version_by_alias("wastesort", "champion").version) == "1"
    (tmp_path / "same.tflite").write_bytes(good)
    equal = challenger.challenge(
        "wastesort",
        "champion",
        "other-sha",
        tmp_path / "same.tflite",
        LABELS,
        root,
        test,
        10**8,
        max_regression=0.0,
    )
    assert equal.promote is True and equal.challenger_accuracy == equal.champion_accuracy == 1.0
    tolerant = challenger.challenge(
        "wastesort",
        "champion",
        "new-sha",
        tmp_path / "bad.tflite",
        LABELS,
        root,
        test,
        10**8,
        max_regression=1.0,
    )
    assert tolerant.promote is True  # a 100-point allowance lets anything through


def test_first_model_and_other_classes_need_no_comparison(registry, tmp_path):
    root = tmp_path / "data"
    test = photos(root, n=1)
    first = challenger.challenge(
        "wastesort", "champion", "sha", tmp_path / "none.tflite", LABELS, root, test, 10**8, 0.0
    )
    assert first.promote is True and "first model" in first.reason
    register_champion(registry, tmp_path, colour_model(False), test.iloc[:0])
    other = challenger.challenge(
        "wastesort", "champion", "sha", tmp_path / "none.tflite", ["a", "b"], root, test, 10**8, 0.0
    )
    assert other.promote is True and "other classes" in other.reason


def test_a_tie_on_accuracy_that_is_worse_elsewhere_is_held_and_the_figure_named(registry, tmp_path):
    """The uncalibrated run of issue 38: the same answers (accuracy tied) at confidence near
    a third, so it answers nothing at serve.min_confidence and its ECE is about 0.6: held, and
    the verdict names the figure. The calibrated model against that champion takes the alias."""
    root = tmp_path / "data"
    test = photos(root)
    register_champion(registry, tmp_path, colour_model(False), test.iloc[:0])
    (tmp_path / "flat.tflite").write_bytes(colour_model(False, scale=0.001))
    held = challenger.challenge(
        "wastesort", "champion", "flat-sha", tmp_path / "flat.tflite", LABELS, root, test,
        10**8, max_regression=0.0, min_confidence=0.7,
    )  # fmt: skip
    assert held.promote is False and held.deciding == "answered"
    assert held.champion_accuracy == held.challenger_accuracy == 1.0
    assert held.champion["answered"] == 1.0 and held.challenger["answered"] == 0.0
    assert held.challenger["ece"] > held.champion["ece"] + 0.5
    assert held.champion["weakest_f1"] == held.challenger["weakest_f1"] == 1.0
    assert "ties on accuracy" in held.reason and "worse on the share answered" in held.reason
    tags = held.tags()
    assert tags["challenge"] == "held" and tags["challenge_deciding"] == "answered"
    assert float(tags["challenge_challenger_ece"]) == held.challenger["ece"]
    # with nothing asked of the answered share, the calibration error decides
    held_on_ece = challenger.challenge(
        "wastesort", "champion", "flat-sha", tmp_path / "flat.tflite", LABELS, root, test,
        10**8, max_regression=0.0, min_confidence=0.0,
    )  # fmt: skip
    assert held_on_ece.promote is False and held_on_ece.deciding == "ece"
    assert "calibration error" in held_on_ece.reason


def test_the_served_kind_is_compared_with_the_champions_file_of_that_kind(registry, tmp_path):
    """serve.model: int8 compares the challenger's int8 file with the champion's int8 file, not
    its float32 one (here the champion's int8 file is the permuted, always-wrong model)."""
    root = tmp_path / "data"
    test = photos(root)
    good, bad = colour_model(permute=False), colour_model(permute=True)
    (tmp_path / "model_int8.tflite").write_bytes(bad)
    register_champion(registry, tmp_path, good, test.iloc[:0])
    (tmp_path / "new.tflite").write_bytes(good)
    verdicts = {
        kind: challenger.challenge(
            "wastesort",
            "champion",
            "new-sha",
            tmp_path / "new.tflite",
            LABELS,
            root,
            test,
            10**8,
            max_regression=0.0,
            kind=kind,
        )
        for kind in ("float32", "int8")
    }
    assert verdicts["float32"].champion_accuracy == 1.0  # the champion's float32 file: a tie
    assert verdicts["int8"].champion_accuracy == 0.0  # its int8 file
    assert verdicts["int8"].promote and verdicts["int8"].challenger_accuracy == 1.0


def test_the_rule_figure_by_figure():
    """decide() alone: accuracy first, the others only within max_regression of a tie."""
    base = {"accuracy": 0.9, "macro_f1": 0.9, "weakest_f1": 0.8, "answered": 0.9, "ece": 0.04}
    assert challenger.decide(base, dict(base), 0.0) == (True, "accuracy")
    better = {**base, "accuracy": 0.91, "ece": 0.2}  # clearly better: accuracy decides
    assert challenger.decide(base, better, 0.0) == (True, "accuracy")
    assert challenger.decide(base, better, 0.02) == (False, "ece")  # within 0.02: a tie
    for figure, worse in (("macro_f1", 0.89), ("weakest_f1", 0.7), ("answered", 0.8)):
        assert challenger.decide(base, {**base, figure: worse}, 0.0) == (False, figure)
    assert challenger.decide(base, {**base, "ece": 0.041}, 0.0) == (False, "ece")
    assert challenger.decide(base, {**base, "ece": 0.041}, 0.01) == (True, "accuracy")
    assert challenger.decide(base, {**base, "accuracy": 0.89}, 0.0) == (False, "accuracy")
    assert challenger.decide(base, {**base, "accuracy": 0.89, "ece": 0.0}, 0.02) == (
        True,
        "accuracy",
    )
