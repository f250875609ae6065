"""The defaults run: a fresh clone's `make setup` links TrashNet (../shared/data/trashnet) to
data/raw, the default data.path, and `dvc repro validate` works with no arguments; with no
photos anywhere it stops in one line that says what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import imagegen as g
from tests.conftest import PIPELINE_FILES, REPO, repo_env, run

SCRIPT = "scripts/link_data.sh"


def fresh_clone(root: Path) -> Path:
    """The work tree's pipeline files with the committed params.yaml and .gitignore, as a git
    repo: what `git clone` gives a new user."""
    root.mkdir(parents=True)
    for name in [*PIPELINE_FILES, ".gitignore", SCRIPT]:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "clone"], root)
    return root


@pytest.mark.slow  # two `dvc repro validate` runs in subprocesses
def test_setup_links_shared_trashnet_and_dvc_repro_runs_with_no_arguments(tmp_path):
    classes = {"glass": 20, "metal": 20, "paper": 20}  # validate.min_images_per_class is 20
    g.make_class_folders(tmp_path / "shared/data/trashnet", classes)
    repo = fresh_clone(tmp_path / "repo")

    linked = run(["bash", SCRIPT], repo)
    raw = repo / "data/raw"
    assert raw.is_symlink() and Path(str(raw.readlink())) == Path("../../shared/data/trashnet")
    assert "data/raw -> ../../shared/data/trashnet" in linked.stdout
    assert "is there (a link" in run(["bash", SCRIPT], repo).stdout  # a second setup keeps it
    assert run(["git", "status", "--porcelain", "data"], repo).stdout == ""  # ignored by git

    run(["dvc", "repro", "validate"], repo, env=repo_env(repo))
    summary = json.loads((repo / "metrics/validation.json").read_text())
    assert summary["can_train"] and sorted(summary["classes"]) == sorted(classes), summary
    manifest = (repo / "data/validated/manifest.csv").read_text().splitlines()
    assert {row.split(",")[1] for row in manifest[1:]} == set(classes)
    assert not any((tmp_path / "shared/data/trashnet").rglob("*.csv"))  # raw data untouched


@pytest.mark.slow  # one `dvc repro validate` in a subprocess
def test_with_no_data_anywhere_dvc_repro_stops_in_one_line_that_says_what_to_do(tmp_path):
    repo = fresh_clone(tmp_path / "repo")
    setup = run(["bash", SCRIPT], repo)
    assert "put one folder of photos per class in data/raw" in setup.stdout
    assert (repo / "data/raw").is_dir() and not any((repo / "data/raw").iterdir())

    failed = run(["dvc", "repro", "validate"], repo, env=repo_env(repo), check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    ours = [line for line in output.splitlines() if line.startswith("validate: error")]
    assert len(ours) == 1, output
    assert "no class folders in data/raw" in ours[0]
    assert "https://github.com/garythung/trashnet" in ours[0] and "data.path=" in ours[0]
    assert "Traceback" not in output

    # TrashNet arriving later: the next `make setup` replaces the empty folder with the link
    g.make_class_folders(tmp_path / "shared/data/trashnet", {"glass": 2, "metal": 2})
    run(["bash", SCRIPT], repo)
    assert (repo / "data/raw").is_symlink()
