"""DVC stage `evaluate`: test-split metrics and plots, logged to the run, then the gate."""
import json
from pathlib import Path

from wastesort import artifacts, config, stage

REPORTS = Path("reports/evaluate")


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    cfg = config.section(params, "evaluate")
    import mlflow

    from wastesort import tracking
    from wastesort.evaluation import evaluate_predictions, plot_confident_mistakes, plot_confusion
    from wastesort.predict import Predictor

    predictor = Predictor.from_files(Path("models/model.keras"), Path("models/labels.json"),
                                     int(config.section(params, "validate")["max_pixels"]))
    test = artifacts.read_manifest("data/split/test.csv")
    root = config.data_root(params)
    probabilities = predictor.predict_paths([root / p for p in test["path"]], progress="evaluate")
    ev = evaluate_predictions(test["path"].tolist(), test["label"].tolist(), probabilities,
                              predictor.labels, float(cfg["min_accuracy"]))
    artifacts.write_json("metrics/evaluate.json", ev.metrics)
    artifacts.write_csv("metrics/test_predictions.csv", ev.predictions)
    plot_confusion(ev, predictor.labels, REPORTS / "confusion_matrix.png")
    plot_confident_mistakes(ev, root, REPORTS / "confident_mistakes.png", int(cfg["mistakes_shown"]))

    tracking.configure(config.section(params, "mlflow")["experiment"])
    with tracking.reopen_run() as run:
        m = ev.metrics
        mlflow.log_metrics({"test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"]})
        mlflow.log_metrics({f"test_{k}.{c}": v for c, per in m["per_class"].items()
                            for k, v in per.items() if k != "support"})
        mlflow.log_artifacts(str(REPORTS), "plots")
        mlflow.log_dict(m, "metrics/evaluate.json")
        mlflow.set_tag("gate", "passed" if m["gate_passed"] else "failed")
    print(f"evaluate: test accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} "
          f"on {m['n_test']} images (MLflow run {run.info.run_id})")
    print(json.dumps({c: round(v["f1-score"], 3) for c, v in m["per_class"].items()}))
    if not m["gate_passed"]:
        raise stage.StageFailed(f"test accuracy {m['accuracy']:.4f} is below the gate "
                                f"evaluate.min_accuracy = {m['min_accuracy']:.2f}")
    print(f"evaluate: gate passed ({m['accuracy']:.4f} >= {m['min_accuracy']:.2f})")


if __name__ == "__main__":
    stage.run("evaluate", main)
