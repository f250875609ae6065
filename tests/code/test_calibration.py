"""Confidence a sorter can act on: temperature scaling, the abstention curve, the Wilson
interval and the gate rule that uses it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from wastesort import calibration
from wastesort.config import ConfigError
from wastesort.evaluation import evaluate_predictions, wilson_interval


def overconfident(n: int = 4000, classes: int = 3, sharpen: float = 4.0, seed: int = 0):
    """Logits whose softmax is right about as often as calibrated logits say, but sharpened
    ``sharpen`` times: a model that says 99 % when it is right 80 % of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    z = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[y]
    calibrated = 1.5 * z  # the true posterior's logits: log p(k | z) = 1.5 z_k + const
    return calibrated * sharpen, y


def test_temperature_scaling_lowers_ece_on_overconfident_logits():
    logits, y = overconfident()
    fit, held = slice(0, 2000), slice(2000, None)  # fitted on one half, judged on the other
    t = calibration.fit_temperature(logits[fit], y[fit])
    assert 3.0 < t < 5.0  # it finds the sharpening
    before = softmax(logits[held], axis=1)
    after = softmax(logits[held] / t, axis=1)
    ece_before = calibration.expected_calibration_error(before, y[held])
    ece_after = calibration.expected_calibration_error(after, y[held])
    assert ece_before > 0.1 and ece_after < 0.03 and ece_after < ece_before / 4
    assert calibration.nll(logits[held], y[held], t) < calibration.nll(logits[held], y[held])
    # same argmax: scaling changes confidence, never the answer
    assert (before.argmax(axis=1) == after.argmax(axis=1)).all()
    # rescale recovers the unscaled probabilities from the scaled ones
    assert calibration.rescale(after, t) == pytest.approx(before, abs=1e-6)


def test_fold_temperature_scales_the_saved_models_softmax():
    from wastesort.model import BackboneSpec, build_classifier, fold_temperature, head_logits

    clf = build_classifier(3, BackboneSpec(224, None, 0), dense_units=8, seed=1)
    features = np.random.default_rng(1).normal(size=(16, 1280)).astype("float32")
    logits = head_logits(clf.head, features)
    assert softmax(logits, axis=1) == pytest.approx(clf.head.predict(features, verbose=0), abs=1e-5)
    fold_temperature(clf.head, 0.5)
    assert softmax(logits / 0.5, axis=1) == pytest.approx(
        clf.head.predict(features, verbose=0), abs=1e-5
    )


def test_risk_coverage_and_abstention():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45], [0.3, 0.7]])
    y = np.array([0, 0, 1, 0, 1])  # the 0.6 answer is wrong
    curve = calibration.risk_coverage(p, y)
    assert curve["coverage"].tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert curve["accuracy"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.8])
    at = calibration.abstention(p, y, 0.65)
    assert (at["answered"], at["uncertain"], at["coverage"]) == (3, 2, 0.6)
    assert at["accuracy_answered"] == 1.0 and at["accuracy_uncertain"] == 0.5
    nobody = calibration.abstention(p, y, 1.0)
    assert nobody["answered"] == 0 and nobody["accuracy_answered"] is None


def test_wilson_interval_and_the_lower_bound_gate():
    k, n = 275, 302
    z, phat = 1.959964, k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-5)
    labels = ["a", "b"]
    actual = ["a"] * 92 + ["b"] * 8
    probs = np.tile([[0.9, 0.1]], (100, 1))  # everything "a": 92 % right
    paths = [f"{i}.jpg" for i in range(100)]
    point = evaluate_predictions(paths, actual, probs, labels, 0.90).metrics
    low, high = point["accuracy_ci95"]
    assert low < 0.90 < 0.92 < high and point["gate_passed"] is True
    bound = evaluate_predictions(paths, actual, probs, labels, 0.90, "lower_bound").metrics
    assert bound["gate_passed"] is False and bound["gate_value"] == pytest.approx(low)
    with pytest.raises(ConfigError, match="evaluate.gate_on"):
        evaluate_predictions(paths, actual, probs, labels, 0.90, "upper")


def test_one_confusion_plot_for_the_test_split_and_a_field_folder(tmp_path):
    from PIL import Image

    from wastesort.evaluation import confusion_counts, plot_confusion

    labels = ["glass", "metal", "paper"]
    actual = ["glass", "glass", "metal", "paper", "cups", "cups", "bags"]
    predicted = ["glass", "metal", "metal", "glass", "paper", "paper", "glass"]
    rows, matrix = confusion_counts(actual, predicted, labels)
    # the model's labels first (a class without photos keeps its row), then unknown ones sorted
    assert rows == ["glass", "metal", "paper", "bags", "cups"]
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 2]]
    assert matrix.sum() == len(actual)
    rows, matrix = confusion_counts(["glass"], ["glass"], labels)  # a square test-split matrix
    assert rows == labels and matrix.shape == (3, 3)
    for name, (a, p) in {"field": (actual, predicted), "empty": ([], [])}.items():
        plot_confusion(a, p, labels, name, tmp_path / f"{name}.png")
        with Image.open(tmp_path / f"{name}.png") as png:
            assert png.width > 300 and png.height > 200
    with pytest.raises(ValueError):  # a prediction outside the model's labels is a bug
        confusion_counts(["glass"], ["plastic"], labels)
