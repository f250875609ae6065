"""Test-split evaluation with scikit-learn metrics, the plots a reviewer wants, and the gate."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (ConfusionMatrixDisplay, accuracy_score, classification_report,
                             confusion_matrix, f1_score)


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # path, actual, predicted, confidence


def evaluate_predictions(paths: list[str], actual: list[str], probabilities: np.ndarray,
                         classes: list[str], min_accuracy: float) -> Evaluation:
    predicted_idx = probabilities.argmax(axis=1)
    predicted = [classes[i] for i in predicted_idx]
    report = classification_report(actual, predicted, labels=classes, output_dict=True,
                                   zero_division=0)
    accuracy = float(accuracy_score(actual, predicted))
    metrics = {
        "accuracy": round(accuracy, 6),
        "macro_f1": round(float(f1_score(actual, predicted, labels=classes, average="macro",
                                         zero_division=0)), 6),
        "n_test": len(actual),
        "min_accuracy": min_accuracy,
        "gate_passed": accuracy >= min_accuracy,
        "per_class": {c: {k: round(float(report[c][k]), 6)
                          for k in ("precision", "recall", "f1-score", "support")}
                      for c in classes},
    }
    frame = pd.DataFrame({"path": paths, "actual": actual, "predicted": predicted,
                          "confidence": probabilities.max(axis=1).round(6)})
    return Evaluation(metrics, frame)


def plot_confusion(ev: Evaluation, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(ev.predictions["actual"], ev.predictions["predicted"], labels=classes)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, xticks_rotation=45,
                                                                colorbar=False)
    ax.set_title(f"Test confusion matrix (accuracy {ev.metrics['accuracy']:.3f})")
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
