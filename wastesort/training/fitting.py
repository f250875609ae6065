"""Training on cached activations: the fine-tuning phase and the head.

The trunk's activations are computed once (``features``). ``fine_tune`` first fits a head on
their pooled form, then unfreezes the backbone layers above the cut and trains them with that
head at a lower learning rate. ``fit`` is the one training loop both use: Adam, class weights,
label smoothing, the best epoch by validation accuracy restored (Keras EarlyStopping), and on
request a cosine learning-rate decay and an exponential moving average of the weights (Keras's
optimizer EMA, evaluated and kept through ``SwapEMAWeights``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from wastesort import calibration, pooling
from wastesort.config import ConfigError
from wastesort.features import Rows
from wastesort.features import predict as predict_rows
from wastesort.model import Classifier, fold_temperature, head_logits, set_fine_tuning, top_backbone


@dataclass
class TrainingResult:
    best_val_accuracy: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    fine_tuned: bool = False  # the fine-tuned backbone top was kept (it beat the head alone)
    kept_start: bool = False  # the head it started from was kept (training did not beat it)
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each epoch run
    train_images: int = 0  # images seen per epoch


def encode_labels(labels: np.ndarray, classes: list[str], source: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        raise ConfigError(f"{source}: labels {unknown} are not in the class list {classes}")
    return np.array([index[label] for label in labels], dtype=np.int32)


def class_order(configured: list[str], labels: np.ndarray) -> list[str]:
    """Softmax order: data.classes as listed, else the class folders sorted by name."""
    return list(configured) if configured else sorted(set(labels.tolist()))


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)} | {
        c: 1.0 for c in range(n_classes) if c not in present
    }


@dataclass(frozen=True)
class Recipe:
    """What one ``fit`` call uses (``training.recipe.recipes`` makes the pipeline's three from
    the typed ``finetune``, ``head`` and ``train`` sections, which validated every value)."""

    lr: float
    epochs: int
    batch_size: int
    patience: int
    seed: int = 0
    label_smoothing: float = 0.0
    class_weights: bool = True
    lr_schedule: Literal["constant", "cosine"] = "constant"
    ema_momentum: float = 0.0

    @classmethod
    def of(cls, cfg: dict[str, Any] | Recipe) -> Recipe:
        if isinstance(cfg, Recipe):
            return cfg
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


def optimizer(cfg: dict[str, Any] | Recipe, steps_per_epoch: int):
    """Adam at ``lr``; ``lr_schedule: cosine`` decays it to 0 over ``epochs``, and
    ``ema_momentum`` > 0 keeps a moving average of the weights (what is evaluated and kept)."""
    import keras

    recipe = Recipe.of(cfg)
    lr = recipe.lr
    if recipe.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, recipe.epochs * steps_per_epoch)
    ema = recipe.ema_momentum
    return keras.optimizers.Adam(lr, use_ema=ema > 0, ema_momentum=ema or 0.99)


def epoch_timer():
    """A Keras callback that records each epoch's wall time (training and validation) in
    its ``seconds`` list."""
    import time

    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def progress_bar(desc: str, images: int, batch_size: int, epochs: int):
    """A Keras callback drawing one tqdm bar (stderr) over every epoch of a ``fit``: images
    trained, images/s and the time left (validation pauses count in the rate). Ends short when
    early stopping ends the run."""
    import keras
    from tqdm import tqdm

    class ProgressBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs * images, desc=desc, unit="img")

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(min(batch_size, images - batch * batch_size))

        def on_train_end(self, logs=None):
            self.bar.close()

    return ProgressBar()


def fit(
    model,
    train,
    val: tuple[np.ndarray, np.ndarray],
    cfg: Recipe | dict[str, Any],
    history_csv: Path,
    callbacks: list | None = None,
    first_epoch: int = 0,
    train_labels: np.ndarray | None = None,
    progress: str | None = None,
) -> TrainingResult:
    """Train ``model`` with ``cfg`` (lr, epochs, batch_size, patience, label_smoothing,
    class_weights, optionally lr_schedule and ema_momentum); the weights of the best validation
    epoch are kept. ``train`` is an (inputs, labels) pair, or a Keras dataset of one-hot batches
    with ``train_labels`` given. ``progress``: a progress bar of that name over the run."""
    import keras

    cfg = Recipe.of(cfg)
    n_classes = int(model.output.shape[-1])
    batch = cfg.batch_size
    replicas = check_replica_batches(batch)
    val_x = np.asarray(val[0]) if replicas > 1 else val[0]  # several replicas: padded below
    validation = (val_x, keras.utils.to_categorical(val[1], n_classes))
    if isinstance(val_x, Rows):  # cached rows read a batch at a time, in the same batches
        validation = row_batches(*validation, batch)
    if isinstance(train, tuple) and isinstance(train[0], Rows):  # the fixed plan: in memory
        train = (np.asarray(train[0]), train[1])
    if isinstance(train, tuple):
        train_labels = train[1]
        targets = keras.utils.to_categorical(train[1], n_classes)
        if replicas > 1:  # the dataset reshuffles itself each epoch
            inputs = {
                "x": full_batches(train[0], targets, batch, replicas, cfg.seed),
                "shuffle": False,
            }
            steps = len(inputs["x"])
        else:
            inputs = {"x": train[0], "y": targets, "batch_size": batch, "shuffle": True}
            steps = -(-len(train[0]) // batch)
    else:
        train.drop_remainder = replicas > 1
        inputs = {"x": train}
        steps = len(train)
    if replicas > 1:  # every validation batch full too: padded with rows of weight 0
        validation = padded_with_zero_weight(*validation, batch)
    opt = optimizer(cfg, steps)
    model.compile(
        optimizer=opt,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        # several replicas: weighted, so the padding rows of weight 0 do not count (training
        # accuracy then weighs by class_weights too)
        **{
            "weighted_metrics" if replicas > 1 else "metrics": [
                keras.metrics.CategoricalAccuracy(name="accuracy")
            ]
        },
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy",
        mode="max",
        patience=cfg.patience,
        restore_best_weights=True,
        verbose=1,
    )
    history_csv.parent.mkdir(parents=True, exist_ok=True)
    timer = epoch_timer()
    bar = [progress_bar(progress, len(train_labels), batch, cfg.epochs)] if progress else []
    fitted = model.fit(
        **inputs,
        validation_data=validation,
        validation_batch_size=batch if replicas > 1 else None,
        epochs=first_epoch + cfg.epochs,
        initial_epoch=first_epoch,
        class_weight=class_weights(train_labels, n_classes) if cfg.class_weights else None,
        # SwapEMAWeights first: validation, the best-epoch copy and the result use the average.
        callbacks=[
            *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if opt.use_ema else []),
            stopper,
            keras.callbacks.CSVLogger(str(history_csv), append=first_epoch > 0),
            timer,
            *bar,
            *(callbacks or []),
        ],
        verbose=2,
    )
    history = [
        {"epoch": e, **{k: float(v[i]) for k, v in fitted.history.items()}}
        for i, e in enumerate(fitted.epoch)
    ]
    best = max((h["val_accuracy"] for h in history), default=0.0)
    return TrainingResult(
        best,
        first_epoch + len(history),
        history,
        epoch_seconds=timer.seconds,
        train_images=len(train_labels),
    )


def row_batches(rows: Rows, targets: np.ndarray, batch_size: int):
    """(rows, targets) as a Keras dataset of consecutive batches read from disk when needed:
    what ``fit`` and ``evaluate`` make of in-memory arrays, without holding them."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return -(-len(rows) // batch_size)

        def __getitem__(self, index):
            part = slice(index * batch_size, (index + 1) * batch_size)
            return rows[part], targets[part]

    return Batches(workers=1, use_multiprocessing=False)


def check_replica_batches(batch_size: int) -> int:
    """The replica count of the current ``tf.distribute`` strategy; with several, the batch
    size must split evenly across them."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1 and batch_size % replicas:
        raise ConfigError(
            f"params.yaml: batch_size {batch_size} must be a multiple of the "
            f"{replicas} replicas of distribute.strategy"
        )
    return replicas


def full_batches(x: np.ndarray, y: np.ndarray, batch_size: int, replicas: int, seed: int):
    """(x, y) for several replicas: a dataset reshuffled every epoch from ``seed`` that keeps
    only full batches (a different remainder left out each epoch). Keras 3 (TensorFlow 2.20)
    fails on a batch that does not split evenly across the replicas (an AddN shape error, or an
    empty replica batch in BatchNorm); `fit` also pads validation with rows of weight 0, which
    leave its accuracy exact. One device keeps Keras's own shuffled arrays."""
    import tensorflow as tf

    if len(x) < batch_size:  # one batch, evenly divisible
        batch_size = max(replicas, len(x) - len(x) % replicas)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    return data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(
        batch_size, drop_remainder=True
    )


def padded_with_zero_weight(x: np.ndarray, y: np.ndarray, batch_size: int):
    extra = -len(x) % batch_size
    weights = np.concatenate([np.ones(len(x), np.float32), np.zeros(extra, np.float32)])
    return (
        np.concatenate([x, np.repeat(x[:1], extra, axis=0)]),
        np.concatenate([y, np.repeat(y[:1], extra, axis=0)]),
        weights,
    )


def fine_tune(
    classifier: Classifier,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    head_cfg: Recipe,
    tune_cfg: Recipe,
    history_csv: Path,
    fresh=None,
    callbacks: list | None = None,
    frozen: Path | None = None,
) -> TrainingResult:
    """Head first on pooled activations, then the backbone top and head together, on
    ``fresh`` (newly augmented images each epoch, see ``FreshVariants``) when given, else on
    the cached activations. ``callbacks`` see both phases' epochs, numbered on from one to the
    other (as in ``history_csv``). ``frozen``: the features cache's LiteRT file of the pooler
    as built (``pooling.write_frozen``), which pools the warm-up's rows where it exists."""
    pooler = pooling.for_cpu(classifier, frozen)
    pooled_train = predict_rows(pooler, train[0], desc="train: warm-up, pooling train")
    pooled_val = predict_rows(pooler, val[0], desc="train: warm-up, pooling val")
    del pooler
    warm = fit(
        classifier.head,
        (pooled_train, train[1]),
        (pooled_val, val[1]),
        head_cfg,
        history_csv,
        callbacks,
    )
    if top_backbone(classifier) is None:
        return warm
    before = classifier.top.get_weights()
    set_fine_tuning(classifier, True)
    data = (fresh.as_dataset(), fresh.labels) if fresh is not None else (train, None)
    tuned = fit(
        classifier.top,
        data[0],
        val,
        tune_cfg,
        history_csv,
        callbacks,
        first_epoch=warm.epochs_run,
        train_labels=data[1],
        progress="train: fine-tuning",
    )
    set_fine_tuning(classifier, False)
    kept = not restore_unless_beaten(classifier.top, before, warm.best_val_accuracy, tuned)
    return TrainingResult(
        max(warm.best_val_accuracy, tuned.best_val_accuracy),
        tuned.epochs_run,
        warm.history + tuned.history,
        kept,
        epoch_seconds=tuned.epoch_seconds,
        train_images=tuned.train_images,
    )


def speed(result: TrainingResult) -> dict[str, float]:
    """Mean epoch seconds and training images per second (validation included) of a run."""
    if not result.epoch_seconds:
        return {}
    mean = sum(result.epoch_seconds) / len(result.epoch_seconds)
    return {
        "epoch_seconds": round(mean, 1),
        "train_images_per_second": round(result.train_images / mean, 1),
    }


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    probabilities = model.predict(x, batch_size=256, verbose=0)
    return float((probabilities.argmax(axis=1) == y).mean())


def fit_head(
    head,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: Recipe | dict[str, Any],
    history_csv: Path,
    callbacks: list | None = None,
    start: Path | None = None,
) -> TrainingResult:
    """Fit the head on pooled features, starting from the fine-tuning phase's head when
    ``start`` holds weights of the same shape (it was trained with the backbone on fresh
    variants, so it is kept unless training beats its validation accuracy), else from scratch.
    """
    start_weights = None
    if start is not None and start.is_file():
        untrained = head.get_weights()
        try:
            with warnings.catch_warnings():
                # another head shape: Keras warns of the parts it skips, then raises ValueError
                warnings.filterwarnings("ignore", "Skipping nested container", UserWarning)
                head.load_weights(start)
            start_weights = [w.copy() for w in head.get_weights()]
        except ValueError:  # another head shape (e.g. finetune.layers was 0)
            head.set_weights(untrained)
    if start_weights is None:
        return fit(head, train, val, cfg, history_csv, callbacks)
    start_accuracy = accuracy(head, *val)
    result = fit(head, train, val, cfg, history_csv, callbacks)
    if restore_unless_beaten(head, start_weights, start_accuracy, result):
        return TrainingResult(start_accuracy, result.epochs_run, result.history, kept_start=True)
    return result


def restore_unless_beaten(
    model, before: list[np.ndarray], before_accuracy: float, result: TrainingResult
) -> bool:
    """Put ``before`` back when training (``result``) did not reach its validation accuracy;
    a tie goes to the trained weights. True when restored."""
    if result.best_val_accuracy >= before_accuracy:
        return False
    model.set_weights(before)
    return True


def calibrate_head(
    head, features: np.ndarray, y: np.ndarray, enabled: bool = True
) -> dict[str, Any]:
    """Temperature scaling fitted on (validation) ``features``, folded into the head's last
    layer; NLL and ECE on them before and after. ``enabled`` False records T = 1."""
    report = calibration.fit_and_report(head_logits(head, features), y, enabled)
    fold_temperature(head, report["temperature"])
    return report
