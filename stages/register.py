"""DVC stage `register`: the gated model into the MLflow registry (alias) and BentoML store."""
import json
from pathlib import Path

from wastesort import artifacts, config, stage

RECEIPT = Path("registry/receipt.json")


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    cfg = config.section(params, "register")
    evaluation = artifacts.read_json("metrics/evaluate.json")
    if not evaluation.get("gate_passed"):
        raise stage.StageFailed(f"the model did not pass the gate (accuracy "
                                f"{evaluation.get('accuracy')}); nothing registered")
    from wastesort import registry, tracking

    run = artifacts.read_json(tracking.RUN_FILE)
    labels = json.loads(Path("models/labels.json").read_text())
    sha = registry.file_sha256(Path("models/model.keras"))
    tracking.configure(config.section(params, "mlflow")["experiment"])
    run_tags = tracking.run_tags(params)
    tags = {"test_accuracy": str(evaluation["accuracy"]), "macro_f1": str(evaluation["macro_f1"]),
            "git_commit": run_tags["git_commit"], "data_dvc_md5": run_tags["data_dvc_md5"],
            "run_id": run["run_id"], "labels": json.dumps(labels)}
    name, alias = cfg["model_name"], cfg["alias"]
    version, created = registry.register_version(name, alias, run["model_uri"], sha, tags,
                                                  registry.labels_description(labels))
    _, bento_tag = registry.import_champion(name, alias)
    warm_tflite_cache(bento_tag)
    receipt = registry.Receipt(name, version, alias, sha, run["run_id"], bento_tag)
    artifacts.write_json(RECEIPT, receipt.to_json())
    print(f"register: {name} version {version} is @{alias} "
          f"({'new' if created else 'already registered'}); BentoML model {bento_tag}")


def warm_tflite_cache(bento_tag: str) -> None:
    """Convert to TFLite now, so `bentoml serve` and the CLI start without converting."""
    import bentoml

    from wastesort.serving import ServeConfig, load_champion

    load_champion(ServeConfig.load(), bentoml.models.get(bento_tag))


if __name__ == "__main__":
    stage.run("register", main)
