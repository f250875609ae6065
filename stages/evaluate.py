"""DVC stage `evaluate`: test-split metrics and plots, logged to the run, then the gate."""

import json

import numpy as np

from wastesort import artifacts, config, paths, stage

REPORTS = paths.report("evaluate")


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    cfg = config.typed("evaluate", params["evaluate"])
    import mlflow

    from wastesort import calibration, tracking
    from wastesort.evaluation import (
        evaluate_predictions,
        plot_confident_mistakes,
        plot_confusion,
        plot_reliability,
        plot_risk_coverage,
    )
    from wastesort.keras_scoring import KerasScorer

    scorer = KerasScorer.from_files(
        paths.MODEL,
        paths.LABELS,
        config.typed("validate", params["validate"]).max_pixels,
    )
    test = artifacts.read_manifest(paths.split_manifest("test"))
    root = config.data_root(params)
    probabilities = scorer.predict_paths([root / p for p in test["path"]], progress="evaluate")
    ev = evaluate_predictions(
        test["path"].tolist(),
        test["label"].tolist(),
        probabilities,
        scorer.labels,
        cfg.min_accuracy,
        cfg.gate_on,
    )
    # calibration: the saved model is temperature-scaled; T recovers the softmax before it
    truth = np.array([scorer.labels.index(label) for label in test["label"]])
    temperature = float(artifacts.read_json(paths.CALIBRATION)["temperature"])
    versions = {"before": calibration.rescale(probabilities, temperature), "after": probabilities}
    tables = {k: calibration.reliability(p, truth) for k, p in versions.items()}
    ece = {k: calibration.expected_calibration_error(p, truth) for k, p in versions.items()}
    curve = calibration.risk_coverage(probabilities, truth)
    at = calibration.abstention(
        probabilities, truth, config.typed("serve", params["serve"]).min_confidence
    )
    ev.metrics.update(
        {
            "temperature": temperature,
            "ece_before": round(ece["before"], 6),
            "ece_after": round(ece["after"], 6),
            "abstention": at,
        }
    )
    artifacts.write_json(paths.metrics("evaluate.json"), ev.metrics)
    artifacts.write_csv(paths.metrics("test_predictions.csv"), ev.predictions)
    artifacts.write_csv(paths.metrics("reliability.csv"), calibration.side_by_side(tables))
    artifacts.write_csv(paths.metrics("risk_coverage.csv"), curve)
    plot_confusion(
        ev.predictions["actual"].tolist(),
        ev.predictions["predicted"].tolist(),
        scorer.labels,
        f"Test confusion matrix (accuracy {ev.metrics['accuracy']:.3f})",
        REPORTS / "confusion_matrix.png",
    )
    plot_confident_mistakes(ev, root, REPORTS / "confident_mistakes.png", cfg.mistakes_shown)
    plot_reliability(
        {f"{k} temperature scaling": t for k, t in tables.items()},
        {f"{k} temperature scaling": v for k, v in ece.items()},
        REPORTS / "reliability.png",
    )
    plot_risk_coverage(curve, at, REPORTS / "risk_coverage.png")

    tracking.configure(config.section(params, "mlflow")["experiment"])
    with tracking.reopen_run() as run:
        m = ev.metrics
        mlflow.log_metrics(
            {
                "test_accuracy": m["accuracy"],
                "test_macro_f1": m["macro_f1"],
                "test_accuracy_ci95_low": m["accuracy_ci95"][0],
                "test_accuracy_ci95_high": m["accuracy_ci95"][1],
                "test_ece_before": m["ece_before"],
                "test_ece_after": m["ece_after"],
                "test_coverage": at["coverage"],
                **(
                    {"test_accuracy_answered": at["accuracy_answered"]}
                    if at["accuracy_answered"] is not None
                    else {}
                ),
            }
        )
        mlflow.log_metrics(
            {
                f"test_{k}.{c}": v
                for c, per in m["per_class"].items()
                for k, v in per.items()
                if k != "support"
            }
        )
        mlflow.log_artifacts(str(REPORTS), "plots")
        # also at the top level, where MLflow's compare view puts runs' images side by side
        for png in ("confusion_matrix.png", "reliability.png"):
            mlflow.log_artifact(str(REPORTS / png))
        tracking.log_split(
            str(config.section(params, "data")["path"]), "test", paths.split_manifest("test")
        )
        mlflow.log_artifact(str(paths.metrics("risk_coverage.csv")), "plots")
        mlflow.log_artifact(str(paths.metrics("reliability.csv")), "plots")
        mlflow.log_dict(m, "metrics/evaluate.json")
        mlflow.set_tag("gate", "passed" if m["gate_passed"] else "failed")
    low, high = m["accuracy_ci95"]
    print(
        f"evaluate: test accuracy {m['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f}), macro F1 "
        f"{m['macro_f1']:.4f} on {m['n_test']} images (MLflow run {run.info.run_id})"
    )
    print(
        f"evaluate: calibration error {m['ece_before']:.4f} -> {m['ece_after']:.4f} (T "
        f"{temperature:.3f}); at min_confidence {at['min_confidence']:.2f} it answers "
        f"{at['coverage']:.1%} of the test images, {at['uncertain']} go to a manual check"
    )
    print(json.dumps({c: round(v["f1-score"], 3) for c, v in m["per_class"].items()}))
    what = (
        "test accuracy"
        if m["gate_on"] == "point"
        else "the lower end of the test accuracy's 95% interval"
    )
    if not m["gate_passed"]:
        raise stage.StageFailed(
            f"{what} {m['gate_value']:.4f} is below the gate "
            f"evaluate.min_accuracy = {m['min_accuracy']:.2f}"
        )
    print(f"evaluate: gate passed ({what} {m['gate_value']:.4f} >= {m['min_accuracy']:.2f})")


if __name__ == "__main__":
    stage.run("evaluate", main)
