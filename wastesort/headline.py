"""The few numbers `dvc metrics show` and `dvc exp show` display: metrics/headline.json.

The per-class, per-stage and calibration details stay in the other files under ``metrics/``
(plain outputs, not DVC metrics) and in the MLflow run."""

from __future__ import annotations

from typing import Any


def headline(
    evaluation: dict[str, Any], exported: dict[str, Any], seconds: dict[str, float]
) -> dict[str, Any]:
    """From metrics/evaluate.json, metrics/export.json and each stage's wall seconds."""
    per_class = evaluation["per_class"]
    weakest = min(per_class, key=lambda c: (per_class[c]["f1-score"], c))
    low, high = evaluation["accuracy_ci95"]
    return {
        "accuracy": evaluation["accuracy"],
        "ci95_low": low,
        "ci95_high": high,
        "macro_f1": evaluation["macro_f1"],
        "min_f1": round(per_class[weakest]["f1-score"], 6),
        "min_f1_class": weakest,
        "ece": evaluation["ece_after"],
        "answered": evaluation["abstention"]["coverage"],
        "int8_accuracy": exported["int8"]["accuracy"],
        "int8_mb": round(exported["int8"]["bytes"] / 1e6, 2),
        "seconds": round(sum(seconds.values()), 1),
    }
