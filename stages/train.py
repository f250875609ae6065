"""DVC stage `train`: fit the head on pooled features of the (fine-tuned) backbone, tracked in
MLflow, and save the whole model: raw RGB pixels in, probabilities out."""

import csv
import json
from pathlib import Path

import numpy as np

from wastesort import artifacts, config, paths, stage
from wastesort.training import distribute

FEATURES = paths.FINETUNED
MODEL_DIR = paths.MODELS
# the head refit's epochs in MLflow: not the final model's figures when the fine-tuned head is
# kept (metric kept_fine_tuned_head = 1)
HEAD_REFIT = "head_refit_"


def main() -> None:
    params = config.load_params()
    # the head trains in float32 whatever the device: it is small, and the model it completes
    # is saved, exported to TFLite and served
    placement = distribute.place("train", params, mixed_precision=False)
    with placement.strategy.scope():
        smoothing = config.section(params, "head")["label_smoothing"]
        train_and_log(params, {**config.section(params, "train"), "label_smoothing": smoothing})


def train_and_log(params: dict, cfg: dict) -> None:
    import mlflow

    from wastesort import backbones, features, tracking
    from wastesort.model import BackboneSpec, build_classifier, parameter_counts, top_backbone
    from wastesort.tracking.challenger import TRAIN_MANIFEST_ARTIFACT
    from wastesort.training import fitting

    # pooled features are small (1,280 numbers a row): read whole
    train, val = (
        {**d, "features": np.asarray(d["features"], np.float32)}
        for d in (features.load(FEATURES, "train"), features.load(FEATURES, "val"))
    )
    classes = fitting.class_order(config.configured_classes(params), train["labels"])
    spec = BackboneSpec.from_params(
        config.section(params, "backbone"), config.section(params, "finetune")
    )
    head = config.section(params, "head")
    clf = build_classifier(
        len(classes), spec, int(head["dense_units"]), float(head["dropout"]), int(cfg["seed"])
    )
    if (upper := top_backbone(clf)) is not None:
        upper.load_weights(FEATURES / "backbone_top.weights.h5")
    counts = parameter_counts(clf.model)
    weights_sha256 = backbones.weights_sha256(spec.name, spec.weights, spec.image_size)
    print("train: parameters " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    tracking.configure(config.section(params, "mlflow")["experiment"])
    run, continued = tracking.pipeline_run(params)
    with run:
        print(
            f"train: MLflow run {run.info.run_id}"
            + (" (the one finetune opened)" if continued else "")
        )
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        mlflow.set_tags({"backbone": spec.name, "backbone_weights_sha256": weights_sha256})
        validation = artifacts.read_json(paths.metrics("validation.json"))
        mlflow.log_metrics(
            {f"data.{k}": float(v) for k, v in validation.items() if isinstance(v, (int, float))}
        )
        mlflow.log_dict(validation, "data/validation_summary.json")
        # what this model trained on: `register` leaves these images out when it scores this
        # model as the champion against a challenger
        mlflow.log_text(paths.split_manifest("train").read_text(), TRAIN_MANIFEST_ARTIFACT)
        data_path = str(config.section(params, "data")["path"])
        tracking.log_split(data_path, "training", paths.split_manifest("train"))
        tracking.log_split(data_path, "validation", paths.split_manifest("val"))
        if not continued:  # the fine-tuning epochs were logged live to the run finetune opened
            log_finetune_history(mlflow, paths.metrics("finetune_history.csv"))
        result = fitting.fit_head(
            clf.head,
            (
                train["features"],
                fitting.encode_labels(train["labels"], classes, "train"),
            ),
            (
                val["features"],
                fitting.encode_labels(val["labels"], classes, "val"),
            ),
            cfg,
            paths.metrics("train_history.csv"),
            [tracking.live_epoch_metrics(HEAD_REFIT)],
            start=FEATURES / "head.weights.h5",
        )
        MODEL_DIR.mkdir(exist_ok=True)
        y_val = fitting.encode_labels(val["labels"], classes, "val")
        calibrated = fitting.calibrate_head(
            clf.head, val["features"], y_val, bool(cfg["calibrate"])
        )
        print(
            f"train: temperature {calibrated['temperature']:.3f} fitted on val (NLL "
            f"{calibrated['val_nll_before']:.4f} -> {calibrated['val_nll_after']:.4f}, ECE "
            f"{calibrated['val_ece_before']:.4f} -> {calibrated['val_ece_after']:.4f})"
        )
        artifacts.write_json(MODEL_DIR / "calibration.json", calibrated)
        mlflow.log_metrics(
            {f"calibration_{k}": float(v) for k, v in calibrated.items() if isinstance(v, float)}
        )
        clf.model.save(MODEL_DIR / "model.keras")
        (MODEL_DIR / "labels.json").write_text(json.dumps(classes, indent=2) + "\n")
        summary = {
            "best_val_accuracy": round(result.best_val_accuracy, 6),
            "epochs_run": result.epochs_run,
            "n_train_features": int(len(train["labels"])),
            "kept_fine_tuned_head": result.kept_start,
            "temperature": calibrated["temperature"],
            "backbone": spec.name,
            "backbone_weights_sha256": weights_sha256,
            **counts,
        }
        artifacts.write_json(paths.metrics("train.json"), summary)
        mlflow.log_metrics(
            {
                "best_val_accuracy": result.best_val_accuracy,
                "kept_fine_tuned_head": float(result.kept_start),
            }
        )
        mlflow.log_artifact(str(paths.metrics("train_history.csv")), "plots")
        info = mlflow.keras.log_model(
            clf.model,
            name="model",
            signature=tracking.model_signature(len(classes)),
            metadata={"labels": classes},
            pip_requirements=tracking.pip_requirements(),
        )
        artifacts.write_json(
            tracking.RUN_FILE,
            {
                "run_id": run.info.run_id,
                "model_uri": info.model_uri,
                "experiment_id": run.info.experiment_id,
            },
        )
    print(
        f"train: best val accuracy {result.best_val_accuracy:.4f}; model {MODEL_DIR}/model.keras; "
        f"MLflow run {run.info.run_id}"
    )


def log_finetune_history(mlflow, path: Path) -> None:
    """The fine-tuning phase's epochs and summary, as `finetune_*` metrics of this run (as
    `finetune` logs them to the run it opens)."""
    from wastesort import tracking

    tracking.log_finetune_summary(artifacts.read_json(paths.metrics("finetune.json")))
    if not path.is_file():
        return
    with path.open() as fh:
        for row in csv.DictReader(fh):
            mlflow.log_metrics(
                {
                    f"finetune_{k}": float(v)
                    for k, v in row.items()
                    if k != "epoch" and v not in ("", None)
                },
                step=int(row["epoch"]),
            )


if __name__ == "__main__":
    stage.run("train", main)
