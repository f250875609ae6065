"""Output paths are defined once: dvc.yaml's `vars: paths` and wastesort/paths.py agree, and
the stages name no pipeline path as a literal."""

import ast
import re
from pathlib import Path

import yaml

from wastesort import paths

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_NAMES = {"log_dict", "log_text", "log_artifact", "log_artifacts"}  # artifact names


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_vars_name_the_same_folders_as_the_paths_module():
    (declared,) = [v["paths"] for v in dvc_yaml()["vars"] if "paths" in v]
    assert {k: Path(v) for k, v in declared.items()} == {
        k.lower(): v
        for k, v in vars(paths).items()
        if isinstance(v, Path) and v.parent in (Path("."), Path("data"))
    }


def test_every_pipeline_path_in_dvc_yaml_goes_through_the_vars():
    folders = {str(v) for v in vars(paths).values() if isinstance(v, Path)}
    stages = dvc_yaml()["stages"]
    for name, stage in stages.items():
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                path = entry if isinstance(entry, str) else next(iter(entry))
                if path.startswith(("wastesort/", "stages/", "${")):
                    continue
                assert not any(path == f or path.startswith(f + "/") for f in folders), (
                    f"dvc.yaml: stage {name} names {path}; use ${{paths.…}}"
                )


def test_stage_scripts_take_their_paths_from_the_paths_module():
    folders = [str(v) for v in vars(paths).values() if isinstance(v, Path)]

    def is_pipeline_path(text: str) -> bool:  # "export" alone is also a stage's name
        return any(text.startswith(f + "/") or text == f and "/" in f for f in folders)

    found = []
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        mlflow_args = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MLFLOW_NAMES
            for arg in node.args
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in mlflow_args
                and re.fullmatch(r"[\w./-]+", node.value)
                and is_pipeline_path(node.value)
            ):
                found.append(f"{script.name}:{node.lineno} {node.value}")
    assert found == []
