"""Lineage: each stage depends on exactly the code its script can import (scripts/stage_deps.py)."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "stage_deps.py"
spec = importlib.util.spec_from_file_location("stage_deps", SCRIPT)
stage_deps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_deps)


def test_every_stage_depends_on_exactly_the_code_it_imports():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert stage_deps.problems(ROOT, dvc) == []
    assert set(stage_deps.stage_scripts(dvc)) >= {"validate", "train", "export", "register"}


def copy_repo(tmp_path: Path) -> Path:
    for name in ("wastesort", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dvc-yaml", str(repo / "dvc.yaml")],
        capture_output=True,
        text=True,
    )


def drop_dep(text: str, stage: str, dep: str) -> str:
    """dvc.yaml's text without one dep line of one stage."""
    lines, current, dropped = [], None, False
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":"):
            current = line.strip()[:-1]
        if current == stage and line.strip() == f"- {dep}" and not dropped:
            dropped = True
            continue
        lines.append(line)
    assert dropped, f"{stage} has no dep {dep}"
    return "\n".join(lines) + "\n"


def test_a_removed_dep_fails_naming_the_stage_and_the_module(tmp_path):
    repo = copy_repo(tmp_path)
    assert check(repo).returncode == 0
    dvc_yaml = repo / "dvc.yaml"
    dvc_yaml.write_text(drop_dep(dvc_yaml.read_text(), "train", "wastesort/features.py"))
    result = check(repo)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "dvc.yaml: stage train imports wastesort/features.py but does not depend on it"
    )


def test_a_new_import_fails_until_write_adds_it(tmp_path):
    repo = copy_repo(tmp_path)
    # an import inside a function counts: it runs when the stage does
    split = repo / "stages" / "split.py"
    split.write_text(
        split.read_text() + "\n\ndef later():\n    from wastesort import calibration\n"
    )
    result = check(repo)
    assert result.returncode == 1
    assert "stage split imports wastesort/calibration.py" in result.stdout
    subprocess.run(
        [sys.executable, str(SCRIPT), "--dvc-yaml", str(repo / "dvc.yaml"), "--write"],
        check=True,
        capture_output=True,
    )
    assert check(repo).returncode == 0
    deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["split"]["deps"]
    assert deps[0] == "stages/split.py" and "wastesort/calibration.py" in deps
    assert "${paths.validated}/manifest.csv" in deps  # data deps are kept


def test_a_dep_that_is_never_imported_is_reported(tmp_path):
    repo = copy_repo(tmp_path)
    dvc_yaml = repo / "dvc.yaml"
    dvc_yaml.write_text(
        dvc_yaml.read_text().replace(
            "      - stages/split.py\n",
            "      - stages/split.py\n      - wastesort/evaluation.py\n",
            1,
        )
    )
    result = check(repo)
    assert result.returncode == 1
    assert "stage split depends on wastesort/evaluation.py but never imports it" in result.stdout


def test_the_stage_runner_pulls_in_no_data_validation_or_training():
    code = {p.as_posix() for p in stage_deps.closure(ROOT, ROOT / "stages" / "split.py")}
    assert "wastesort/stage.py" in code
    assert not any(m.startswith(("wastesort/training", "wastesort/data/validation")) for m in code)


def test_relative_and_from_imports_resolve(tmp_path):
    pkg = tmp_path / "wastesort" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "wastesort" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("thing = 1\n")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "s.py").write_text("from wastesort.sub import a\nimport numpy\n")
    found = {p.as_posix() for p in stage_deps.closure(tmp_path, tmp_path / "stages" / "s.py")}
    assert found == {
        "stages/s.py",
        "wastesort/__init__.py",
        "wastesort/sub/__init__.py",
        "wastesort/sub/a.py",
        "wastesort/sub/b.py",
    }
