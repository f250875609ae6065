"""Label review: which given labels are most likely wrong. A report to read; it changes nothing.

Every accepted image (train, val and test) is embedded by the frozen ImageNet backbone
(``backbone.name``, pooled features), a logistic regression on the standardised features gives
out-of-fold class probabilities (``cross_val_predict``, ``review.folds`` stratified folds), and
cleanlab scores each given label's quality (``get_label_quality_scores``: the out-of-fold
probability of the given label) and flags likely label issues (``find_label_issues``, confident
learning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wastesort import artifacts, features
from wastesort.config import ConfigError, Review, typed
from wastesort.data.gallery import plot_grid

SPLITS = ("train", "val", "test")
SUSPECT_COLUMNS = [
    "rank",
    "path",
    "split",
    "given",
    "suggested",
    "quality",
    "p_suggested",
    "flagged",
]
CHUNK = 256  # images decoded or converted to float at a time


def load_originals(feature_dir: Path) -> dict[str, Any]:
    """Every split's original images (variant 0) in the cache: ``features`` as one lazy
    ``features.Rows`` view per split (read a chunk at a time), with path, label and split."""
    parts = []
    for name in SPLITS:
        data = features.load(feature_dir, name)
        keep = data["variants"] == 0
        parts.append(
            {
                "features": data["features"].subset(np.flatnonzero(keep)),
                "paths": data["paths"][keep],
                "labels": data["labels"][keep],
                "splits": np.full(keep.sum(), name),
            }
        )
    out: dict[str, Any] = {
        k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "features"
    }
    out["features"] = [p["features"] for p in parts]
    return out


def frozen_features(pooler, cached: list, batch_size: int) -> np.ndarray:
    """Pooled frozen-backbone features of each cached row: ``pooler`` is the backbone above the
    cache's cut with its ImageNet weights, and global pooling (``Classifier.pooler`` of a model
    built with the cache's ``finetune.layers``), so no photo is decoded again.

    ``cached`` holds, per split, the cache's rows (arrays or ``features.Rows``): the resized
    images (finetune.layers: all), activations inside the backbone (any other cut), both run
    through ``pooler``, or the frozen pooled features themselves (finetune.layers: 0; used as
    they are). Memory holds one chunk at a time."""
    out = []
    for rows in cached:
        if rows.ndim == 2:
            out.append(np.asarray(rows, np.float32))
            continue
        for start in range(0, len(rows), CHUNK):
            batch = np.asarray(rows[start : start + CHUNK], np.float32)
            out.append(pooler.predict(batch, batch_size=batch_size, verbose=0))
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out).astype(np.float32)


def out_of_fold_probabilities(
    x: np.ndarray, y: np.ndarray, folds: int, seed: int, c: float = 0.01
) -> np.ndarray:
    """Class probabilities of each row from a logistic regression that never saw it (one BLAS
    thread: on 2 busy cores, threaded BLAS made this 30 times slower)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    smallest = int(np.bincount(y).min())
    if smallest < folds:
        raise ConfigError(
            f"params.yaml: review.folds={folds} needs at least {folds} images in "
            f"every class; the smallest class has {smallest}"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        return cross_val_predict(model, x, y, cv=cv, method="predict_proba")


def rank_suspects(
    probs: np.ndarray, labels: np.ndarray, classes: list[str], paths: np.ndarray, splits: np.ndarray
) -> pd.DataFrame:
    """Every image, the least trustworthy label first (``SUSPECT_COLUMNS``)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.array([classes.index(label) for label in labels])
    suggested = probs.argmax(axis=1)
    table = pd.DataFrame(
        {
            "path": paths,
            "split": splits,
            "given": labels,
            "suggested": np.array(classes)[suggested],
            "quality": get_label_quality_scores(y, probs).round(6),
            "p_suggested": probs.max(axis=1).round(6),
            "flagged": find_label_issues(y, probs, n_jobs=1),
        }
    )
    table = table.sort_values(["quality", "path"]).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[SUSPECT_COLUMNS]


def review(
    feats: np.ndarray, data: dict[str, np.ndarray], cfg: Review | dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ranked table and metrics for images ``data`` (paths, labels, splits) with ``feats``;
    ``cfg``: the ``review`` section (a mapping is validated first)."""
    cfg = typed("review", cfg)
    classes = sorted(set(data["labels"].tolist()))
    y = np.array([classes.index(label) for label in data["labels"]])
    probs = out_of_fold_probabilities(feats, y, cfg.folds, cfg.seed, cfg.c)
    table = rank_suspects(probs, data["labels"], classes, data["paths"], data["splits"])
    flagged = table[table["flagged"]]
    metrics = {
        "n_images": int(len(table)),
        "n_suspects": int(len(flagged)),
        "suspects_in_test": int((flagged["split"] == "test").sum()),
        "folds": cfg.folds,
        "oof_accuracy": round(float((probs.argmax(axis=1) == y).mean()), 4),
    }
    return table, metrics


def render_report(table: pd.DataFrame, metrics: dict[str, Any], top: int) -> str:
    lines = [
        "# Label review",
        "",
        "Out-of-fold probabilities of a logistic regression on frozen ImageNet backbone",
        "features, ranked by cleanlab's label quality (the probability of the given label;",
        "low = suspect). `flagged`: cleanlab's `find_label_issues`. Nothing here changes",
        "the data or the split: fix a label by moving the file to its class folder.",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in metrics.items()]
    lines += [
        "",
        f"## Top {top} suspects",
        "",
        "![suspects](suspects.png)",
        "",
        "| rank | path | split | given | suggested | quality | flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.rank} | {r.path} | {r.split} | {r.given} | {r.suggested} | {r.quality:.3f} "
        f"| {'yes' if r.flagged else ''} |"
        for r in table.head(top).itertuples()
    ]
    lines += ["", "Every image, ranked: label_suspects.csv", ""]
    return "\n".join(lines)


def write_report(
    root: Path,
    table: pd.DataFrame,
    metrics: dict[str, Any],
    top: int,
    report_dir: Path,
    max_pixels: int,
) -> None:
    """label_suspects.csv, suspects.png (the top ``top``) and report.md."""
    artifacts.write_csv(report_dir / "label_suspects.csv", table)
    cells = [
        (r.path, f"{r.given} -> {r.suggested}, {r.quality:.3f}")
        for r in table.head(top).itertuples()
    ]
    plot_grid(root, cells, report_dir / "suspects.png", max_pixels)
    (report_dir / "report.md").write_text(render_report(table, metrics, top))
