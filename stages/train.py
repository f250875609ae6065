"""DVC stage `train`: the model's training recipe (wastesort/training/recipe.py: warm-up head,
fine-tuned backbone, final head, calibration) in one MLflow run, and the whole model saved: raw
RGB pixels in, probabilities out."""

import contextlib
import json

from wastesort import artifacts, config, paths, stage
from wastesort.training import distribute

MODEL_DIR = paths.MODELS
# the final head's epochs in MLflow: not the final model's figures when the fine-tuned head is
# kept (metric kept_fine_tuned_head = 1)
HEAD_REFIT = "head_refit_"


def input_example(params: dict):
    """The first val photo as raw pixels, small: the logged model's input example."""
    from wastesort import features, tracking

    first = artifacts.read_manifest(paths.split_manifest("val"))["path"].iloc[:1].tolist()
    return features.load_resized(
        config.data_root(params),
        first,
        tracking.EXAMPLE_SIZE,
        config.typed("validate", params["validate"]).max_pixels,
    )


def main() -> None:
    params = config.load_params()
    placement = distribute.place("train", params)
    with placement.strategy.scope():  # the model's variables live on the strategy's devices
        train_and_log(params)


def train_and_log(params: dict) -> None:
    import mlflow

    from wastesort import backbones, tracking
    from wastesort.model import parameter_counts
    from wastesort.tracking.challenger import TRAIN_MANIFEST_ARTIFACT
    from wastesort.training import recipe

    with contextlib.ExitStack() as stack:
        opened = []

        def start_run() -> None:
            """The pipeline's MLflow run, opened when training starts and nothing else then
            (see recipe.train): each epoch shows in the UI as it ends; evaluate, export and
            register add to it (models/mlflow_run.json)."""
            run = stack.enter_context(tracking.start_training_run(params))
            opened.append(run)
            print(f"train: MLflow run {run.info.run_id} ({tracking.tracking_uri()})")

        trained = recipe.train(
            params,
            finetune_callbacks=[tracking.live_epoch_metrics("finetune_")],
            head_callbacks=[tracking.live_epoch_metrics(HEAD_REFIT)],
            on_start=start_run,
        )
        (run,) = opened
        validation = artifacts.read_json(paths.metrics("validation.json"))
        mlflow.log_metrics(
            {f"data.{k}": float(v) for k, v in validation.items() if isinstance(v, (int, float))}
        )
        mlflow.log_dict(validation, "data/validation_summary.json")
        # what this model trained on: `register` leaves these images out when it scores
        # this model as the champion against a challenger
        mlflow.log_text(paths.split_manifest("train").read_text(), TRAIN_MANIFEST_ARTIFACT)
        data_path = params["data"]["path"]
        tracking.log_split(data_path, "training", paths.split_manifest("train"))
        tracking.log_split(data_path, "validation", paths.split_manifest("val"))
        tracking.log_finetune_summary(trained.fine_tuning)
        artifacts.write_json(paths.metrics("finetune.json"), trained.fine_tuning)
        model, classes, calibrated = trained.classifier.model, trained.classes, trained.calibration
        spec = trained.spec
        counts = parameter_counts(model)
        weights_sha256 = backbones.weights_sha256(spec.name, spec.weights, spec.image_size)
        print("train: parameters " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        print(
            f"train: temperature {calibrated['temperature']:.3f} fitted on val (NLL "
            f"{calibrated['val_nll_before']:.4f} -> {calibrated['val_nll_after']:.4f}, ECE "
            f"{calibrated['val_ece_before']:.4f} -> {calibrated['val_ece_after']:.4f})"
        )
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        mlflow.set_tags({"backbone": spec.name, "backbone_weights_sha256": weights_sha256})
        MODEL_DIR.mkdir(exist_ok=True)
        artifacts.write_json(MODEL_DIR / "calibration.json", calibrated)
        mlflow.log_metrics(
            {f"calibration_{k}": float(v) for k, v in calibrated.items() if isinstance(v, float)}
        )
        model.save(MODEL_DIR / "model.keras")
        (MODEL_DIR / "labels.json").write_text(json.dumps(classes, indent=2) + "\n")
        head = trained.head
        summary = {
            "best_val_accuracy": round(head.best_val_accuracy, 6),
            "epochs_run": head.epochs_run,
            "n_train_features": trained.n_train_features,
            "kept_fine_tuned_head": head.kept_start,
            "temperature": calibrated["temperature"],
            "backbone": spec.name,
            "backbone_weights_sha256": weights_sha256,
            **counts,
        }
        artifacts.write_json(paths.metrics("train.json"), summary)
        mlflow.log_metrics(
            {
                "best_val_accuracy": head.best_val_accuracy,
                "kept_fine_tuned_head": float(head.kept_start),
            }
        )
        mlflow.log_artifact(str(recipe.HEAD_HISTORY), "plots")
        info = tracking.log_keras_model(model, classes, input_example(params))
        artifacts.write_json(
            tracking.RUN_FILE,
            {
                "run_id": run.info.run_id,
                "model_uri": info.model_uri,
                "experiment_id": run.info.experiment_id,
            },
        )
    print(
        f"train: best val accuracy {head.best_val_accuracy:.4f}; model {MODEL_DIR}/model.keras; "
        f"MLflow run {run.info.run_id}"
    )


if __name__ == "__main__":
    stage.run("train", main)
