"""A team's data remote: the raw photos and every cached output pushed to a DVC remote (a local
folder here; S3 or SSH work the same), a fresh clone pulls them, and `dvc repro` has nothing
left to do."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import repo_env, run

pytestmark = pytest.mark.slow


def test_push_clone_pull_and_nothing_to_reproduce(pipeline_repo, tmp_path):
    team = tmp_path / "team"
    shutil.copytree(pipeline_repo, team, symlinks=True)  # the shared repo is not changed
    remote = tmp_path / "remote"
    env = repo_env(team)
    run(["dvc", "add", "-q", "rawdata"], team, env=env)  # the raw photos, versioned by DVC
    run(["dvc", "remote", "add", "-d", "storage", str(remote)], team, env=env)
    run(["git", "add", "-A"], team)
    run(["git", "commit", "-qm", "pipeline run, data tracked, remote set"], team)
    pushed = run(["dvc", "push"], team, env=env).stdout
    assert "pushed" in pushed and any(remote.rglob("*"))

    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", str(team), str(fresh)], tmp_path)
    assert not (fresh / "rawdata").exists() and not (fresh / "models/model.keras").exists()
    run(["dvc", "pull"], fresh, env=repo_env(fresh))
    for path in (
        "models/model.keras",
        "export/model_float32.tflite",
        "export/model_int8.tflite",
        "data/finetuned/backbone_top.weights.h5",
        "data/split/test.csv",
    ):
        assert (fresh / path).read_bytes() == (team / path).read_bytes(), path
    photos = sorted(p.relative_to(team) for p in (team / "rawdata").rglob("*.jpg"))
    assert (
        photos
        and sorted(p.relative_to(fresh) for p in (fresh / "rawdata").rglob("*.jpg")) == photos
    )
    again = run(["dvc", "repro"], fresh, env=repo_env(fresh))
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout
