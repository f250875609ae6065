"""DVC stage `register`: the gated model into the MLflow registry (alias), its exported
TFLite files into the BentoML store under the tag the registered version records."""

import json

from wastesort import artifacts, config, paths, stage

RECEIPT = paths.RECEIPT
EXPORT = paths.EXPORT


def main() -> None:
    params = config.load_params()
    cfg = config.typed("register", params["register"])
    evaluation = artifacts.read_json(paths.metrics("evaluate.json"))
    if not evaluation.get("gate_passed"):
        raise stage.StageFailed(
            f"the model did not pass the gate (accuracy "
            f"{evaluation.get('accuracy')}); nothing registered"
        )
    exported = artifacts.read_json(paths.metrics("export.json"))
    if not exported.get("passed"):
        raise stage.StageFailed("the exported files failed their parity check; nothing registered")
    from mlflow import MlflowClient

    from wastesort import tracking
    from wastesort.export import FILES
    from wastesort.tracking import challenger, index, registry

    run = artifacts.read_json(tracking.RUN_FILE)
    labels = json.loads(paths.LABELS.read_text())
    sha = registry.file_sha256(paths.MODEL)
    tracking.configure(config.section(params, "mlflow")["experiment"])
    run_tags = tracking.run_tags(params)
    tags = {
        "test_accuracy": str(evaluation["accuracy"]),
        "macro_f1": str(evaluation["macro_f1"]),
        "git_commit": run_tags["git_commit"],
        "data_dvc_md5": run_tags["data_dvc_md5"],
        "run_id": run["run_id"],
        "labels": json.dumps(labels),
        **{f"tflite_{kind}_sha256": exported[kind]["sha256"] for kind in FILES},
    }
    name, alias = cfg.model_name, cfg.alias
    serve = config.typed("serve", params["serve"])
    verdict = challenger.challenge(
        name,
        alias,
        sha,
        EXPORT / FILES[serve.model],
        labels,
        config.data_root(params),
        artifacts.read_manifest(paths.split_manifest("test"), ("path", "label", "sha256")),
        config.typed("validate", params["validate"]).max_pixels,
        cfg.max_regression,
        serve.min_confidence,
        serve.model,
    )
    print(f"register: {verdict.reason}")
    version, created = registry.register_version(
        name,
        alias,
        run["model_uri"],
        sha,
        {**tags, **verdict.tags()},
        registry.labels_description(labels),
        move_alias=verdict.promote,
        verdict=verdict.reason,
    )
    bento_tag = registry.store_version(
        name, MlflowClient().get_model_version(name, version), EXPORT
    )
    new = "new" if created else "already registered"
    if verdict.promote:
        receipt = registry.Receipt(
            name,
            version,
            alias,
            sha,
            run["run_id"],
            bento_tag,
            {kind: exported[kind]["sha256"] for kind in FILES},
        )
        print(f"register: {name} version {version} is @{alias} ({new}); BentoML model {bento_tag}")
    else:
        receipt = registry.alias_receipt(name, alias)
        receipt.challenger = {
            "version": version,
            "bento_model": bento_tag,
            "reason": verdict.reason,
        }
        print(
            f"register: {name} version {version} registered ({new}) without @{alias}, which "
            f"stays on version {receipt.version}"
        )
    recorded = receipt.to_json()
    artifacts.write_json(RECEIPT, recorded)
    # the registry is as register left it: the service may start from this, not from MLflow
    index.write(recorded, index.registry_stamp(tracking.tracking_uri()))


if __name__ == "__main__":
    stage.run("register", main)
