"""DVC stage `finetune`: adapt the top K backbone layers once; pool every cached activation.

With finetune.layers = 0 the cached features are already pooled and pass through unchanged.
"""

import shutil

import numpy as np

from wastesort import artifacts, config, paths, stage
from wastesort.training import distribute

FEATURES = paths.FEATURES
OUT_DIR = paths.FINETUNED
TOP_WEIGHTS = OUT_DIR / "backbone_top.weights.h5"
HEAD_WEIGHTS = OUT_DIR / "head.weights.h5"
HISTORY = paths.metrics("finetune_history.csv")
SPLITS = ("train", "val", "test")


def main() -> None:
    params = config.load_params()
    placement = distribute.place("finetune", params)
    cfg = config.section(params, "finetune")
    from wastesort import features
    from wastesort.model import BackboneSpec
    from wastesort.training import fitting

    spec = BackboneSpec.from_params(config.section(params, "backbone"), cfg)
    splits = {n: features.load(FEATURES, n) for n in SPLITS}
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    if spec.fine_tune_layers == 0:
        for name in SPLITS:
            features.copy(FEATURES, OUT_DIR, name)
        HISTORY.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n")
        artifacts.write_json(
            paths.metrics("finetune.json"), {"layers": 0, "fine_tuned_top_kept": False}
        )
        print("finetune: finetune.layers = 0, features passed through")
        return
    classes = fitting.class_order(config.configured_classes(params), splits["train"]["labels"])
    with placement.strategy.scope():  # the model's variables live on the strategy's devices
        train_on_devices(params, cfg, spec, splits, classes)


def train_on_devices(params, cfg, spec, splits, classes) -> None:
    """The warm-up head and the fine-tuning phase, tracked live in the pipeline's MLflow run;
    the adapted layers, the head and every split's pooled features saved."""
    from wastesort import features
    from wastesort.augmentation import FreshVariants
    from wastesort.model import build_classifier, top_backbone
    from wastesort.training import fitting

    head = config.section(params, "head")
    clf = build_classifier(
        len(classes), spec, int(head["dense_units"]), float(head["dropout"]), seed=int(cfg["seed"])
    )
    # the cached rows stay on disk and are read a batch at a time (features.Rows); uint8
    # resized images (finetune.layers: all) stay uint8, Keras casts per batch
    xy = {
        n: (d["features"], fitting.encode_labels(d["labels"], classes, n))
        for n, d in splits.items()
    }
    tune_cfg = {**cfg, "label_smoothing": float(head["label_smoothing"])}
    # the warm-up head: plain Adam (the schedule and averaging are for the layers)
    warmup_cfg = {
        **tune_cfg,
        "lr": cfg["warmup_lr"],
        "epochs": cfg["warmup_epochs"],
        "patience": cfg["warmup_patience"],
        "lr_schedule": "constant",
        "ema_momentum": 0.0,
    }
    fresh = None
    if cfg["fresh_augmentation"]:
        train = splits["train"]
        originals = np.flatnonzero(train["variants"] == 0)  # in path order, as features wrote them
        if train["features"].dtype == np.uint8:  # the cache holds the resized images: read them
            images = train["features"].subset(originals)
        else:  # activations inside the backbone: decode the photos again, held in memory
            resized = features.load_resized(
                config.data_root(params),
                train["paths"][originals].tolist(),
                spec.image_size,
                int(config.section(params, "validate")["max_pixels"]),
            )
            images = np.clip(np.round(resized), 0, 255).astype(np.uint8)
        labels = fitting.encode_labels(train["labels"][originals], classes, "train")
        fresh = FreshVariants.from_params(images, labels, len(classes), clf.trunk, params)
    from wastesort import tracking

    # the pipeline's MLflow run starts here: each epoch shows in the UI as it ends
    with tracking.start_finetune_run(params) as run:
        print(f"finetune: MLflow run {run.info.run_id} ({tracking.tracking_uri()})")
        result = fitting.fine_tune(
            clf,
            xy["train"],
            xy["val"],
            warmup_cfg,
            tune_cfg,
            HISTORY,
            fresh,
            callbacks=[tracking.live_epoch_metrics("finetune_")],
        )
        top_backbone(clf).save_weights(TOP_WEIGHTS)
        clf.head.save_weights(HEAD_WEIGHTS)  # `train` starts from it
        for name, data in splits.items():
            features.predict_to(
                clf.pooler, data, OUT_DIR, name, "float16", desc=f"finetune: pooling {name}"
            )
        speed = fitting.speed(result)
        summary = {
            "layers": len(top_backbone(clf).layers) - 1,
            "best_val_accuracy": round(result.best_val_accuracy, 6),
            "epochs_run": result.epochs_run,
            "fine_tuned_top_kept": result.fine_tuned,
            **speed,
        }
        tracking.log_finetune_summary(summary)
        artifacts.write_json(tracking.FINETUNE_RUN_FILE, {"run_id": run.info.run_id})
    artifacts.write_json(paths.metrics("finetune.json"), summary)
    print(
        f"finetune: top {summary['layers']} {spec.name} layers adapted, best val accuracy "
        f"{result.best_val_accuracy:.4f}; {speed}"
    )


if __name__ == "__main__":
    stage.run("finetune", main)
