"""Training under a `tf.distribute` strategy: the mirrored path on this CPU split into two
logical devices learns what one device learns, and runs the real fine-tune and train stages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.conftest import copy_repo, repo_env, run, tool_env

# A learnable problem through the pipeline's own training loop (fitting.fit: class weights,
# label smoothing, EMA, early stopping): three Gaussian blobs, 90 train and 45 val points, so
# batches of 16 leave uneven remainders. Prints the predictions on a fixed grid.
LEARN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from wastesort import stage
    tf = stage.load_tensorflow()
    import keras
    from wastesort.training import distribute, fitting
    placement = distribute.setup(tf, json.loads(sys.argv[1]))
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [5, 5, 0, 0], [0, 5, 5, 0]], np.float32)
    def blobs(n):
        y = np.arange(n) % 3
        return (centres[y] + rng.normal(size=(n, 4))).astype(np.float32), y.astype(np.int32)
    train, val, grid = blobs(90), blobs(45), blobs(60)[0]
    with placement.strategy.scope():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        cfg = {"lr": 0.01, "epochs": 25, "batch_size": 16, "patience": 25, "seed": 3,
               "label_smoothing": 0.1, "ema_momentum": 0.9}
        result = fitting.fit(model, train, val, cfg, Path(sys.argv[2]))
    print(json.dumps({"where": placement.description, "replicas":
                      placement.strategy.num_replicas_in_sync,
                      "val_accuracy": result.best_val_accuracy,
                      "grid": model.predict(grid, verbose=0).argmax(1).tolist()}))
""")


def learn(distribute: dict, tmp_path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LEARN,
            json.dumps(distribute),
            str(tmp_path / f"{distribute['strategy']}.csv"),
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # about a minute: two trainings in subprocesses
def test_mirrored_on_two_logical_cpus_learns_what_one_device_learns(tmp_path):
    one = learn({"strategy": "none"}, tmp_path)
    mirrored = learn({"strategy": "mirrored", "logical_cpus": 2}, tmp_path)
    assert one["replicas"] == 1 and one["where"] == "CPU"
    assert mirrored["replicas"] == 2
    assert mirrored["where"] == "mirrored over 2 logical CPU devices"
    assert one["val_accuracy"] >= 0.9 and mirrored["val_accuracy"] >= 0.9, (one, mirrored)
    same = sum(a == b for a, b in zip(one["grid"], mirrored["grid"])) / len(one["grid"])
    assert same >= 0.95, (one, mirrored)


def test_unknown_strategy_is_a_clear_error():
    # setup() checks the section before it touches a device, so it can run in this process
    from wastesort import stage
    from wastesort.config import ConfigError
    from wastesort.training import distribute

    tf = stage.load_tensorflow()
    with pytest.raises(ConfigError) as raised:
        distribute.setup(tf, {"strategy": "horovod"})
    assert (
        "distribute.strategy must be 'none', 'mirrored' or 'multi_worker' (got 'horovod')"
        in str(raised.value)
    )
    assert tf.distribute.get_strategy().num_replicas_in_sync == 1  # nothing was set up


@pytest.mark.slow
def test_pipeline_fine_tunes_and_trains_mirrored(pipeline_repo, tmp_path):
    repo = copy_repo(pipeline_repo, tmp_path / "repo", store=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["distribute"].update(strategy="mirrored", logical_cpus=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "evaluate"], repo, env=repo_env(repo)).stdout
    assert "train: training on mirrored over 2 logical CPU devices (float32)" in out
    for name in ("finetune", "train"):
        one = json.loads((pipeline_repo / f"metrics/{name}.json").read_text())
        two = json.loads((repo / f"metrics/{name}.json").read_text())
        assert two["epochs_run"] == one["epochs_run"]
    evaluated = json.loads((repo / "metrics/evaluate.json").read_text())
    assert (
        evaluated["n_test"]
        == json.loads((pipeline_repo / "metrics/evaluate.json").read_text())["n_test"]
    )


ONEDNN = (
    "import os, wastesort; from wastesort import stage; stage.load_tensorflow(); "
    "from tensorflow.python.util import _pywrap_util_port as port; "
    "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())"
)


@pytest.mark.parametrize("given, expected", [(None, "1 True"), ("0", "0 False")])
def test_onednn_kernels_are_on_unless_the_environment_says_otherwise(given, expected, tmp_path):
    # TensorFlow leaves oneDNN off on AVX2-only CPUs (a third of the training speed there);
    # importing wastesort turns it on before TensorFlow loads, and an explicit setting is kept.
    env = {k: v for k, v in tool_env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    out = run([sys.executable, "-c", ONEDNN], cwd=tmp_path, env=env).stdout.split()
    assert " ".join(out[-2:]) == expected
