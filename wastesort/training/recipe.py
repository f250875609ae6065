"""The model's one training recipe, as the `train` stage runs it in one process:

1. **warm-up**: the head alone on the frozen backbone's pooled activations (``finetune.warmup_*``,
   plain Adam);
2. **fine-tuning**: the backbone's top (``finetune.layers``) and the head together on freshly
   augmented variants (``finetune.*``: cosine decay, weight EMA), kept only if it beats the
   warm-up on val;
3. **the final head**: every cached row pooled through the fine-tuned backbone, the head refit on
   them (``train.*``), kept only if it beats the fine-tuned head on val;
4. **calibration**: a temperature fitted on val, folded into the head (``train.calibrate``).

With ``finetune.layers: 0`` the cached features are already pooled: steps 1-2 are skipped and
the head trains from scratch. Each phase leaves its history (``metrics/finetune_history.csv``,
``metrics/train_history.csv``) and the pooled rows and weights in ``data/finetuned``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wastesort import config, paths

POOLED = paths.FINETUNED  # every split's rows pooled by the fine-tuned backbone, and its weights
TOP_WEIGHTS = POOLED / "backbone_top.weights.h5"
HEAD_WEIGHTS = POOLED / "head.weights.h5"  # the fine-tuned head: where the final head starts
FINETUNE_HISTORY = paths.metrics("finetune_history.csv")
HEAD_HISTORY = paths.metrics("train_history.csv")
SPLITS = ("train", "val", "test")


@dataclass
class Trained:
    """What the recipe made: the final classifier and what each phase reports."""

    classifier: Any  # model.Classifier: the calibrated model is classifier.model
    spec: Any  # model.BackboneSpec
    classes: list[str]
    fine_tuning: dict[str, Any]  # metrics/finetune.json
    head: Any  # fitting.TrainingResult of the final head
    calibration: dict[str, Any]  # models/calibration.json
    n_train_features: int


def recipes(params: dict[str, Any]):
    """The three ``fitting.Recipe``s (warm-up, fine-tuning, final head) from the typed
    ``finetune``, ``head`` and ``train`` sections."""
    from wastesort.training.fitting import Recipe

    tune = config.typed("finetune", params["finetune"])
    head = config.typed("head", params["head"])
    final = config.typed("train", params["train"])
    smoothing = head.label_smoothing
    warmup = Recipe(
        lr=tune.warmup_lr,
        epochs=tune.warmup_epochs,
        batch_size=tune.batch_size,
        patience=tune.warmup_patience,
        seed=tune.seed,
        label_smoothing=smoothing,
    )
    fine = Recipe(
        lr=tune.lr,
        epochs=tune.epochs,
        batch_size=tune.batch_size,
        patience=tune.patience,
        seed=tune.seed,
        label_smoothing=smoothing,
        lr_schedule=tune.lr_schedule,
        ema_momentum=tune.ema_momentum,
    )
    last = Recipe(
        lr=final.lr,
        epochs=final.epochs,
        batch_size=final.batch_size,
        patience=final.patience,
        seed=final.seed,
        label_smoothing=smoothing,
        class_weights=final.class_weights,
    )
    return warmup, fine, last


def train(
    params: dict[str, Any],
    finetune_callbacks=(),
    head_callbacks=(),
    on_start: Callable[[], Any] | None = None,
) -> Trained:
    """Run the whole recipe on the ``features`` stage's cache. ``*_callbacks``: Keras callbacks
    for the fine-tuning phases' and the final head's epochs (e.g. live MLflow metrics).
    ``on_start``: called once, when the model is built and the data read, right before the
    first epoch (the stage opens its MLflow run there). Where matters: MLflow draws a run's
    default name from Python's global `random`, which Keras also draws from (the batch order
    of a `PyDataset`, what fine-tuning trains on), so the run is opened after the recipe's
    seeds are set, at one fixed point. Run it inside the placement's ``strategy.scope()``."""
    import keras

    from wastesort import features
    from wastesort.model import BackboneSpec, build_classifier, top_backbone
    from wastesort.training import fitting

    spec = BackboneSpec.from_params(params["backbone"], params["finetune"])
    head_cfg = config.typed("head", params["head"])
    warmup, fine, last = recipes(params)
    splits = {n: features.load(paths.FEATURES, n) for n in SPLITS}
    classes = fitting.class_order(config.configured_classes(params), splits["train"]["labels"])
    if POOLED.exists():
        shutil.rmtree(POOLED)
    POOLED.mkdir(parents=True)
    if spec.fine_tune_layers == 0:  # the cache holds pooled features already
        for name in SPLITS:
            features.copy(paths.FEATURES, POOLED, name)
        FINETUNE_HISTORY.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n")
        fine_tuning = {"layers": 0, "fine_tuned_top_kept": False}
        print("train: finetune.layers = 0, the cached features are pooled already")
        if on_start is not None:
            on_start()
    else:
        fine_tuning = fine_tune(
            params, spec, splits, classes, warmup, fine, finetune_callbacks, on_start
        )
    del splits
    # the final head trains in float32 whatever the device: it is small, and the model it
    # completes is saved, exported to TFLite and served
    keras.mixed_precision.set_global_policy("float32")
    clf = build_classifier(
        len(classes), spec, head_cfg.dense_units, head_cfg.dropout, seed=last.seed
    )
    if (upper := top_backbone(clf)) is not None:
        upper.load_weights(TOP_WEIGHTS)
    # pooled rows are small (1,280 numbers each): read whole
    train_rows, val_rows = (
        {**d, "features": np.asarray(d["features"], np.float32)}
        for d in (features.load(POOLED, "train"), features.load(POOLED, "val"))
    )
    y_train = fitting.encode_labels(train_rows["labels"], classes, "train")
    y_val = fitting.encode_labels(val_rows["labels"], classes, "val")
    result = fitting.fit_head(
        clf.head,
        (train_rows["features"], y_train),
        (val_rows["features"], y_val),
        last,
        HEAD_HISTORY,
        list(head_callbacks),
        start=HEAD_WEIGHTS,
    )
    calibrated = fitting.calibrate_head(
        clf.head,
        val_rows["features"],
        y_val,
        config.typed("train", params["train"]).calibrate,
    )
    return Trained(clf, spec, classes, fine_tuning, result, calibrated, int(len(y_train)))


def fine_tune(
    params, spec, splits, classes, warmup, fine, callbacks, on_start=None
) -> dict[str, Any]:
    """Steps 1-2: the warm-up head, then the backbone's top with it; saves both and every
    split pooled by the result to ``data/finetuned``. Returns metrics/finetune.json."""
    from wastesort import features, pooling
    from wastesort.augmentation import FreshVariants
    from wastesort.model import build_classifier, top_backbone
    from wastesort.training import fitting

    tune = config.typed("finetune", params["finetune"])
    head = config.typed("head", params["head"])
    clf = build_classifier(len(classes), spec, head.dense_units, head.dropout, seed=tune.seed)
    # the cached rows stay on disk and are read a batch at a time (features.Rows); uint8
    # resized images (finetune.layers: all) stay uint8, Keras casts per batch
    xy = {
        n: (d["features"], fitting.encode_labels(d["labels"], classes, n))
        for n, d in splits.items()
    }
    fresh = None
    if tune.fresh_augmentation:
        train = splits["train"]
        originals = np.flatnonzero(train["variants"] == 0)  # in path order, as features wrote them
        if train["features"].dtype == np.uint8:  # the cache holds the resized images: read them
            images = train["features"].subset(originals)
        else:  # activations inside the backbone: decode the photos again, held in memory
            resized = features.load_resized(
                config.data_root(params),
                train["paths"][originals].tolist(),
                spec.image_size,
                config.typed("validate", params["validate"]).max_pixels,
            )
            images = np.clip(np.round(resized), 0, 255).astype(np.uint8)
        labels = fitting.encode_labels(train["labels"][originals], classes, "train")
        fresh = FreshVariants.from_params(images, labels, len(classes), clf.trunk, params)
    if on_start is not None:
        on_start()
    # the warm-up pools through the features cache's file of this very pooler (fixed starting
    # weights), converted once for review and here; a seed's random weights are converted here
    frozen = paths.FEATURES / pooling.FROZEN if pooling.has_frozen_file(clf) else None
    result = fitting.fine_tune(
        clf,
        xy["train"],
        xy["val"],
        warmup,
        fine,
        FINETUNE_HISTORY,
        fresh,
        list(callbacks),
        frozen,
    )
    top_backbone(clf).save_weights(TOP_WEIGHTS)
    clf.head.save_weights(HEAD_WEIGHTS)
    pooler = pooling.for_cpu(clf)
    for name, data in splits.items():
        features.predict_to(pooler, data, POOLED, name, "float16", desc=f"train: pooling {name}")
    del pooler  # LiteRT's arena, before the final head
    speed = fitting.speed(result)
    print(
        f"train: top {len(top_backbone(clf).layers) - 1} {spec.name} layers fine-tuned, best "
        f"val accuracy {result.best_val_accuracy:.4f}; {speed}"
    )
    return {
        "layers": len(top_backbone(clf).layers) - 1,
        "best_val_accuracy": round(result.best_val_accuracy, 6),
        "epochs_run": result.epochs_run,
        "fine_tuned_top_kept": result.fine_tuned,
        **speed,
    }
