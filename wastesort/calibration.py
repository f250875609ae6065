"""Confidence a sorter can act on: temperature scaling, calibration error, abstention.

Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted on the
validation split. ``train`` folds it into the model's last Dense layer (kernel and bias
divided by T), so the saved model, its TFLite exports, ``evaluate``, the CLI and the service
all give calibrated probabilities with no extra code path. ``rescale`` undoes or redoes it on
probabilities (softmax is shift-invariant, so ``softmax(T * log p)`` recovers the
uncalibrated softmax exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

EPS = 1e-12


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes ``y`` at this temperature."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(
    logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The T > 0 minimising the negative log-likelihood of ``y`` (searched on log T)."""
    result = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def rescale(probabilities: np.ndarray, factor: float) -> np.ndarray:
    """``softmax(log(p) * factor)``: with ``factor`` = T, the probabilities before scaling."""
    return softmax(
        np.log(np.clip(np.asarray(probabilities, np.float64), EPS, 1.0)) * factor, axis=1
    )


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Top-label reliability table: per confidence bin, mean confidence, accuracy and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        rows.append(
            {
                "bin": b,
                "lower": edges[b],
                "upper": edges[b + 1],
                "confidence": float(confidence[members].mean()) if n else np.nan,
                "accuracy": float(correct[members].mean()) if n else np.nan,
                "count": n,
            }
        )
    return pd.DataFrame(rows)


def side_by_side(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Reliability tables of one split (e.g. before and after scaling) as one row per bin,
    with the bin's middle as x: what the DVC plot draws."""
    first = next(iter(tables.values()))
    out = pd.DataFrame({"bin_middle": ((first["lower"] + first["upper"]) / 2).round(4)})
    for name, table in tables.items():
        for column in ("confidence", "accuracy", "count"):
            out[f"{column}_{name}"] = table[column].round(6)
    return out


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over the bins."""
    table = reliability(probabilities, y, bins).dropna()
    if table.empty:
        return 0.0
    gaps = (table["confidence"] - table["accuracy"]).abs() * table["count"]
    return float(gaps.sum() / table["count"].sum())


def risk_coverage(probabilities: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Answer only when confidence >= threshold: for each distinct threshold (most confident
    first), the share answered (coverage) and the accuracy on those answered."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(float)
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], np.cumsum(correct[order])
    n = np.arange(1, len(conf) + 1)
    last = np.r_[conf[1:] != conf[:-1], True]  # ties answer together
    return pd.DataFrame(
        {
            "threshold": conf[last].round(6),
            "coverage": (n[last] / len(conf)).round(6),
            "accuracy": (hits[last] / n[last]).round(6),
        }
    )


def abstention(probabilities: np.ndarray, y: np.ndarray, min_confidence: float) -> dict[str, float]:
    """What ``serve.min_confidence`` gives on a labelled split."""
    confidence = probabilities.max(axis=1)
    answered = confidence >= min_confidence
    correct = probabilities.argmax(axis=1) == y
    return {
        "min_confidence": float(min_confidence),
        "n": int(len(y)),
        "answered": int(answered.sum()),
        "uncertain": int((~answered).sum()),
        "coverage": round(float(answered.mean()) if len(y) else 0.0, 6),
        "accuracy_answered": round(float(correct[answered].mean()), 6) if answered.any() else None,
        "accuracy_uncertain": round(float(correct[~answered].mean()), 6)
        if (~answered).any()
        else None,
    }


def fit_and_report(logits: np.ndarray, y: np.ndarray, enabled: bool = True) -> dict[str, Any]:
    """Temperature scaling fitted on (validation) ``logits``: T (1 when not ``enabled``), and
    NLL and ECE before and after."""
    t = fit_temperature(logits, y) if enabled else 1.0
    before, after = softmax(logits, axis=1), softmax(logits / t, axis=1)
    return {
        "temperature": round(t, 6),
        "n": int(len(y)),
        "val_nll_before": round(nll(logits, y), 6),
        "val_nll_after": round(nll(logits, y, t), 6),
        "val_ece_before": round(expected_calibration_error(before, y), 6),
        "val_ece_after": round(expected_calibration_error(after, y), 6),
    }
