"""The export stage's parity inputs: the Keras model's answers come from `evaluate`'s
predictions file, matched to the test manifest by path."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wastesort import export
from wastesort.config import ConfigError

STAGE = Path(__file__).resolve().parents[2] / "stages" / "export.py"
LABELS = ["glass", "metal", "paper towel"]


def keras_answers():
    return runpy.run_path(str(STAGE), run_name="not_main")["keras_answers"]


def write_predictions(rows: list[tuple[str, str]]) -> None:
    Path("metrics").mkdir(exist_ok=True)
    pd.DataFrame(
        {
            "path": [p for p, _ in rows],
            "actual": [a for _, a in rows],
            "predicted": [a for _, a in rows],
            "confidence": 0.9,
        }
    ).to_csv("metrics/test_predictions.csv", index=False)


def test_answers_follow_the_test_manifests_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictions(
        [("paper towel/b.jpg", "paper towel"), ("glass/a.jpg", "metal"), ("metal/c.jpg", "metal")]
    )
    answers = keras_answers()(["glass/a.jpg", "metal/c.jpg", "paper towel/b.jpg"], LABELS)
    assert answers.tolist() == [1, 1, 2]


def test_a_test_photo_without_an_answer_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictions([("glass/a.jpg", "glass")])
    with pytest.raises(
        ConfigError,
        match=r"test_predictions.csv: no answer for metal/c.jpg "
        r"\(and 0 more\); run `dvc repro evaluate`",
    ):
        keras_answers()(["glass/a.jpg", "metal/c.jpg"], LABELS)


def test_parity_compares_top1_with_the_keras_answers_and_the_labels():
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    result = export.parity(np.array([0, 1, 1, 0]), probabilities, np.array([0, 1, 2, 1]))
    assert result.agreement == pytest.approx(0.75) and result.accuracy == pytest.approx(0.75)
