"""Training the top of the classifier on cached trunk features.

Phase 1 trains the Dense head with the backbone frozen; optional phase 2 unfreezes the
backbone layers above the cache cut at a lower learning rate. Both keep the best epoch by
validation accuracy (EarlyStopping with restored weights) and weight classes by frequency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from wastesort.config import ConfigError
from wastesort.model import Classifier, set_fine_tuning


@dataclass
class TrainingResult:
    best_val_accuracy: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def encode_labels(labels: np.ndarray, classes: list[str], source: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        raise ConfigError(f"{source}: labels {unknown} are not in the class list {classes}")
    return np.array([index[label] for label in labels], dtype=np.int32)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)} | \
        {c: 1.0 for c in range(n_classes) if c not in present}


def fit(classifier: Classifier, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray], cfg: dict[str, Any], fine_tune_lr: float,
        fine_tune_epochs: int, history_csv: Path, extra_callbacks: list | None = None
        ) -> TrainingResult:
    import keras

    n_classes = classifier.top.output.shape[-1]
    weights = class_weights(train[1], n_classes) if cfg.get("class_weights", True) else None
    history: list[dict[str, float]] = []
    history_csv.parent.mkdir(parents=True, exist_ok=True)

    def phase(lr: float, epochs: int, first_epoch: int, append: bool) -> int:
        classifier.top.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss=keras.losses.CategoricalCrossentropy(
                label_smoothing=float(cfg.get("label_smoothing", 0.0))),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=int(cfg["patience"]),
            restore_best_weights=True, verbose=1)
        fitted = classifier.top.fit(
            train[0], keras.utils.to_categorical(train[1], n_classes),
            validation_data=(val[0], keras.utils.to_categorical(val[1], n_classes)),
            epochs=first_epoch + epochs, initial_epoch=first_epoch,
            batch_size=int(cfg["batch_size"]), class_weight=weights, shuffle=True,
            callbacks=[stopper, keras.callbacks.CSVLogger(str(history_csv), append=append),
                       *(extra_callbacks or [])],
            verbose=2)
        for i, epoch in enumerate(fitted.epoch):
            history.append({"epoch": epoch, **{k: float(v[i]) for k, v in fitted.history.items()}})
        return first_epoch + len(fitted.epoch)

    set_fine_tuning(classifier, False)
    done = phase(float(cfg["lr"]), int(cfg["epochs"]), 0, append=False)
    best = max((h["val_accuracy"] for h in history), default=0.0)
    if fine_tune_epochs > 0 and any(layer.name == "backbone_top" for layer in classifier.top.layers):
        head_only, phase1_epochs = classifier.top.get_weights(), len(history)
        set_fine_tuning(classifier, True)
        done = phase(fine_tune_lr, fine_tune_epochs, done, append=True)
        set_fine_tuning(classifier, False)
        tuned = max((h["val_accuracy"] for h in history[phase1_epochs:]), default=0.0)
        if tuned < best:  # fine-tuning did not beat the head alone: keep the head-only weights
            classifier.top.set_weights(head_only)
        best = max(best, tuned)
    return TrainingResult(best, done, history)


def class_order(configured: list[str], labels: np.ndarray) -> list[str]:
    """Softmax order: data.classes as listed, else the class folders sorted by name."""
    return list(configured) if configured else sorted(set(labels.tolist()))
