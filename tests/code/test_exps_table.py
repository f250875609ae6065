"""`make exps` on the worst case: two experiments where every headline number differs.

A real `dvc exp run` in a throwaway git repo whose one stage writes metrics/headline.json with
the keys `wastesort.headline` writes and values of realistic width. DVC leaves out the last
columns of a table wider than the terminal without a word, so the check is that each one is
there, the changed param first, and that a narrow terminal loses metrics, never the param, and
says which."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import run, tool_env
from wastesort.headline import headline

ROOT = Path(__file__).resolve().parents[2]

STAGE = """\
import json, random, sys
import yaml

lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
r = random.Random(lr)
keys = json.loads(sys.argv[1])
row = {k: round(0.8 + r.random() / 10, 6) for k in keys}  # six decimals, as the stages round
row.update(min_f1_class="cardboard" if lr < 0.002 else "plastic", int8_mb=round(4 + r.random(), 2))
row["seconds"] = round(1000 + 2000 * r.random(), 1)
json.dump(row, open("metrics/headline.json", "w"))
"""


def keys() -> list[str]:
    per_class = {"glass": {"f1-score": 0.9}, "trash": {"f1-score": 0.7}}
    evaluation = {
        "per_class": per_class,
        "accuracy_ci95": [0.88, 0.94],
        "accuracy": 0.91,
        "macro_f1": 0.9,
        "ece_after": 0.03,
        "abstention": {"coverage": 0.95},
    }
    exported = {"int8": {"accuracy": 0.9, "bytes": 4_800_000}}
    return list(headline(evaluation, exported, {"train": 10.0}))


def test_every_headline_number_of_two_experiments_fits_160_columns(tmp_path):
    repo = tmp_path / "repo"
    (repo / "stages").mkdir(parents=True)
    (repo / "metrics").mkdir()
    (repo / "stages" / "summarize.py").write_text(STAGE)
    (repo / "params.yaml").write_text("train:\n  lr: 0.001\n")
    (repo / "metrics" / ".gitkeep").write_text("")
    all_keys = keys()
    cmd = f"{sys.executable} stages/summarize.py '{json.dumps(all_keys)}'"
    (repo / "dvc.yaml").write_text(
        "stages:\n  summarize:\n"
        f"    cmd: {cmd}\n"
        "    deps: [stages/summarize.py]\n    params: [train.lr]\n"
        "    metrics:\n      - metrics/headline.json:\n          cache: false\n"
    )
    env = tool_env()
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "repro", "-q"], repo, env=env)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first"], repo)
    for name, lr in (("faster-head", "0.003"), ("slower-head", "0.0005")):
        run(["dvc", "exp", "run", "-q", "-n", name, "-S", f"train.lr={lr}"], repo, env=env)

    assert "scripts/exps.py" in (ROOT / "Makefile").read_text()  # what `make exps` runs
    exps = [sys.executable, str(ROOT / "scripts" / "exps.py")]
    table = run(exps, repo, env={**env, "COLUMNS": "160"}).stdout
    assert max(len(line) for line in table.splitlines()) <= 160
    assert "…" not in table and "left out" not in table
    header = table.splitlines()[0].split()
    shown = [k for k in all_keys if k != "ci95_high"]
    assert header == ["Experiment", "train.lr", *shown]  # the changed param first
    assert "faster-head (" in table and "slower-head (" in table
    # too narrow for everything: metrics go from the right, the param stays, and it says so
    narrow = run([*exps, "--width", "60"], repo, env=env).stdout.splitlines()
    assert narrow[0].split()[:2] == ["Experiment", "train.lr"]
    assert max(len(line) for line in narrow[:-1]) <= 60
    kept = narrow[0].split()[2:]
    assert narrow[-1] == f"(left out for width: {', '.join(shown[len(kept) :])})"
