"""Test-split evaluation with scikit-learn metrics, the plots a reviewer wants, and the gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
)

from wastesort.config import ConfigError


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # path, actual, predicted, confidence


GATE_RULES = ("point", "lower_bound")


def wilson_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (scipy's binomial test)."""
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def evaluate_predictions(
    paths: list[str],
    actual: list[str],
    probabilities: np.ndarray,
    classes: list[str],
    min_accuracy: float,
    gate_on: str = "point",
) -> Evaluation:
    """Metrics of the test split. The gate compares ``min_accuracy`` with the accuracy itself
    (``gate_on: point``) or with the lower end of its 95 % Wilson interval (``lower_bound``)."""
    if gate_on not in GATE_RULES:
        raise ConfigError(
            f"params.yaml: evaluate.gate_on must be one of {', '.join(GATE_RULES)}, got {gate_on!r}"
        )
    predicted_idx = probabilities.argmax(axis=1)
    predicted = [classes[i] for i in predicted_idx]
    report = classification_report(
        actual, predicted, labels=classes, output_dict=True, zero_division=0
    )
    accuracy = float(accuracy_score(actual, predicted))
    low, high = wilson_interval(int(round(accuracy * len(actual))), len(actual))
    gated = accuracy if gate_on == "point" else low
    metrics = {
        "accuracy": round(accuracy, 6),
        "accuracy_ci95": [round(low, 6), round(high, 6)],
        "macro_f1": round(
            float(f1_score(actual, predicted, labels=classes, average="macro", zero_division=0)), 6
        ),
        "n_test": len(actual),
        "min_accuracy": min_accuracy,
        "gate_on": gate_on,
        "gate_value": round(gated, 6),
        "gate_passed": gated >= min_accuracy,
        "per_class": {
            c: {
                k: round(float(report[c][k]), 6)
                for k in ("precision", "recall", "f1-score", "support")
            }
            for c in classes
        },
    }
    frame = pd.DataFrame(
        {
            "path": paths,
            "actual": actual,
            "predicted": predicted,
            "confidence": probabilities.max(axis=1).round(6),
        }
    )
    return Evaluation(metrics, frame)


def confusion_counts(
    actual: Sequence[str], predicted: Sequence[str], labels: list[str]
) -> tuple[list[str], np.ndarray]:
    """The rows (``labels``, then unknown actual classes, sorted) and the count matrix of
    (actual, predicted) pairs, one column per label."""
    rows = [*labels, *sorted(set(actual) - set(labels))]
    matrix = np.zeros((len(rows), len(labels)), dtype=int)
    for a, p in zip(actual, predicted, strict=True):
        matrix[rows.index(a), labels.index(p)] += 1
    return rows, matrix


def plot_confusion(
    actual: Sequence[str],
    predicted: Sequence[str],
    labels: list[str],
    title: str,
    path: Path,
    xlabel: str = "predicted",
    ylabel: str = "actual",
) -> None:
    """Counts of (actual, predicted) pairs. Columns: the model's ``labels``; rows: the same,
    then any actual class the model does not know (marked "unknown", as a field folder may
    hold). The test split's plot and `wastesort evaluate FOLDER`'s are this one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, matrix = confusion_counts(actual, predicted, labels)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 3, 0.9 * len(rows) + 2.5))
    if len(actual):
        ax.imshow(matrix, cmap="Blues")
        for i in range(len(rows)):
            for j in range(len(labels)):
                color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [c if c in labels else f"{c} (unknown)" for c in rows])
        ax.set(xlabel=xlabel, ylabel=ylabel)
    else:
        ax.text(0.5, 0.5, "no photo could be scored", ha="center")
        ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confident_mistakes(ev: Evaluation, root: Path, path: Path, max_images: int) -> int:
    """A grid of the wrong test predictions the model was most sure of."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wastesort import images

    wrong = ev.predictions[ev.predictions["actual"] != ev.predictions["predicted"]]
    wrong = wrong.sort_values("confidence", ascending=False).head(max_images)
    cols = 4
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3, rows * 3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, wrong.itertuples()):
        ax.imshow(images.decode((root / row.path).read_bytes(), 10**9).image)
        ax.set_title(f"{row.actual} -> {row.predicted}\n{row.confidence:.2f}", fontsize=9)
    if wrong.empty:
        axes.flat[0].text(0.5, 0.5, "no mistakes on the test split", ha="center")
    fig.suptitle("Most confident mistakes (true -> predicted, confidence)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return len(wrong)


def plot_reliability(tables: dict[str, pd.DataFrame], ece: dict[str, float], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfectly calibrated")
    for (name, table), marker in zip(tables.items(), "os^"):
        t = table.dropna()
        ax.plot(
            t["confidence"], t["accuracy"], marker=marker, label=f"{name} (ECE {ece[name]:.3f})"
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="confidence (top class)",
        ylabel="accuracy",
        title="Reliability on the test split",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_risk_coverage(curve: pd.DataFrame, at: dict, path: Path) -> None:
    """Accuracy on the answered images against the share answered; the configured threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(curve["coverage"], curve["accuracy"], drawstyle="steps-post")
    if at["accuracy_answered"] is not None:
        ax.scatter(
            [at["coverage"]],
            [at["accuracy_answered"]],
            color="C3",
            zorder=3,
            label=f"serve.min_confidence {at['min_confidence']:.2f}: answers "
            f"{at['coverage']:.0%}, {at['accuracy_answered']:.1%} right",
        )
        ax.legend(loc="lower left")
    ax.set(
        xlim=(0, 1.01),
        xlabel="coverage (share of images answered)",
        ylabel="accuracy on the answered",
        title="Risk-coverage on the test split",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
