"""The headline metrics (metrics/headline.json) and the stage times they add up."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

from wastesort.headline import headline

ROOT = Path(__file__).resolve().parents[2]


def evaluation(f1: dict[str, float]) -> dict:
    return {
        "accuracy": 0.91,
        "accuracy_ci95": [0.87, 0.94],
        "macro_f1": 0.9,
        "ece_after": 0.03,
        "abstention": {"coverage": 0.88},
        "per_class": {
            c: {"f1-score": v, "precision": 1.0, "recall": 1.0, "support": 9} for c, v in f1.items()
        },
    }


EXPORTED = {"int8": {"accuracy": 0.905, "bytes": 4_150_000}, "float32": {"accuracy": 0.91}}


def test_headline_names_the_weakest_class_and_adds_the_stage_seconds():
    numbers = headline(
        evaluation({"glass": 0.93, "trash": 0.71, "metal": 0.88}),
        EXPORTED,
        {"validate": 10.0, "finetune": 900.5, "train": 20.2},
    )
    assert numbers == {
        "accuracy": 0.91,
        "ci95_low": 0.87,
        "ci95_high": 0.94,
        "macro_f1": 0.9,
        "min_f1": 0.71,
        "min_f1_class": "trash",
        "ece": 0.03,
        "answered": 0.88,
        "int8_accuracy": 0.905,
        "int8_mb": 4.15,
        "seconds": 930.7,
    }
    assert len(numbers) <= 12


def test_summarize_knows_every_stage_dvc_yaml_runs():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "stages" / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(summarize.STAGES) == set(stages) - {"summarize"}
    # the headline file is the only DVC metric: what `dvc metrics show` and `dvc exp show` list
    declared = [next(iter(m)) for s in stages.values() for m in s.get("metrics", [])]
    assert declared == ["${paths.metrics}/headline.json"]


def test_a_stage_writes_its_seconds_only_when_it_succeeds(tmp_path):
    script = (
        "import sys\nfrom wastesort import stage\nfrom wastesort.config import ConfigError\n"
        "def main():\n    if sys.argv[1] == 'fail':\n"
        "        raise ConfigError('params.yaml: x.y must be positive')\n"
        "stage.run(sys.argv[1], main)\n"
    )
    (tmp_path / "s.py").write_text(script)
    env_path = {"PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "s.py", "ok"], cwd=tmp_path, capture_output=True, text=True, env=env_path
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "metrics/time/ok.json").read_text())["seconds"] >= 0
    failed = subprocess.run(
        [sys.executable, "s.py", "fail"], cwd=tmp_path, capture_output=True, text=True, env=env_path
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == "fail: error: params.yaml: x.y must be positive"
    assert not (tmp_path / "metrics/time/fail.json").exists()
