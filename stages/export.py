"""DVC stage `export`: the evaluated model as TFLite float32 and int8, with test-split parity."""

import json

import numpy as np

from wastesort import artifacts, config, paths, stage

OUT = paths.EXPORT
PREDICTIONS = paths.metrics("test_predictions.csv")


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    cfg = config.typed("export", params["export"])
    max_pixels = config.typed("validate", params["validate"]).max_pixels
    import mlflow

    from wastesort import export, tracking
    from wastesort.features import load_resized
    from wastesort.keras_scoring import KerasScorer
    from wastesort.litert import LiteModel
    from wastesort.tracking import registry

    scorer = KerasScorer.from_files(paths.MODEL, paths.LABELS, max_pixels)
    labels, size, root = scorer.labels, scorer.input_size, config.data_root(params)
    train = artifacts.read_manifest(paths.split_manifest("train")).sort_values("path")
    n = min(cfg.representative_images, len(train))
    rng = np.random.default_rng(cfg.seed)
    chosen = train.iloc[np.sort(rng.choice(len(train), n, replace=False))]
    representative = load_resized(
        root, chosen["path"].tolist(), size, max_pixels, desc="export: calibration photos"
    )
    test = artifacts.read_manifest(paths.split_manifest("test"))
    x_test = load_resized(root, test["path"].tolist(), size, max_pixels, desc="export: test photos")
    truth = np.array([labels.index(label) for label in test["label"]])
    reference = keras_answers(test["path"].tolist(), labels)
    keras_accuracy = float(np.mean(reference == truth))

    OUT.mkdir(exist_ok=True)
    blobs = export.to_tflite(scorer.model, representative)
    results, metrics = (
        {},
        {
            "keras_accuracy": round(keras_accuracy, 6),
            "n_test": len(test),
            "representative_images": n,
            "input_size": list(size),
        },
    )
    for kind, blob in blobs.items():
        path = OUT / export.FILES[kind]
        path.write_bytes(blob)
        results[kind] = export.parity(reference, LiteModel(blob).predict_in_chunks(x_test), truth)
        metrics[kind] = {
            "file": str(path),
            "bytes": len(blob),
            "sha256": registry.file_sha256(path),
            **results[kind].to_json(),
        }
        print(
            f"export: {path} ({len(blob) / 1e6:.2f} MB): test accuracy "
            f"{results[kind].accuracy:.4f}, top-1 agreement with Keras "
            f"{results[kind].agreement:.2%}"
        )
    (OUT / "labels.json").write_text(json.dumps(labels) + "\n")
    problems = export.check(keras_accuracy, results, cfg.min_float32_agreement, cfg.max_int8_drop)
    metrics["passed"] = not problems
    artifacts.write_json(paths.metrics("export.json"), metrics)

    tracking.configure(config.section(params, "mlflow")["experiment"])
    with tracking.reopen_run():
        mlflow.log_metrics(
            {
                f"export_{kind}_{k}": float(v)
                for kind in blobs
                for k, v in metrics[kind].items()
                if k in ("bytes", "accuracy", "top1_agreement")
            }
        )
        mlflow.log_artifacts(str(OUT), "export")
        mlflow.log_dict(metrics, "metrics/export.json")
    if problems:
        raise stage.StageFailed("; ".join(problems))


def keras_answers(paths: list[str], labels: list[str]) -> np.ndarray:
    """The Keras model's top-1 class index for each test path, as `evaluate` recorded it in
    metrics/test_predictions.csv (the same model, files and preprocessing: no second pass)."""
    answers = artifacts.read_manifest(PREDICTIONS, ("path", "predicted"))
    by_path = dict(zip(answers["path"], answers["predicted"]))
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise config.ConfigError(
            f"{PREDICTIONS}: no answer for {missing[0]} (and "
            f"{len(missing) - 1} more); run `dvc repro evaluate`"
        )
    return np.array([labels.index(by_path[p]) for p in paths])


if __name__ == "__main__":
    stage.run("export", main)
