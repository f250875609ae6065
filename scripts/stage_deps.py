"""Which code each DVC stage can run, against what dvc.yaml lists as its deps.

A stage's script imports modules, and they import others (at the top or inside functions).
Every repo module in that closure must be covered by the stage's deps (the file itself, or a
folder above it), or editing it leaves `dvc repro` "up to date" over stale results; and every
code dep must be in the closure, or editing it re-runs the stage for nothing.

    uv run python scripts/stage_deps.py          # one line per problem; exit 1 when any
    uv run python scripts/stage_deps.py --write  # rewrite each stage's code deps in dvc.yaml
    uv run python scripts/stage_deps.py --show   # each stage's closure
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import yaml

CODE_ROOTS = ("wastesort", "stages")


def module_file(root: Path, name: str) -> Path | None:
    """The repo file of a dotted module name, or None when it is not ours."""
    parts = name.split(".")
    if parts[0] not in CODE_ROOTS:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(root: Path, path: Path) -> set[str]:
    """Every module name an import statement in ``path`` can load, wherever the statement is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from package import module` loads the sub-module too
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def closure(root: Path, script: Path) -> set[Path]:
    """The repo files that running ``script`` can import, the script included, with the
    ``__init__.py`` of every package on the way (Python runs them too)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(root, path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_file(root, ".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return {p.relative_to(root) for p in seen}


def stage_scripts(dvc: dict) -> dict[str, tuple[Path, list[str]]]:
    out = {}
    for name, stage in (dvc.get("stages") or {}).items():
        words = str(stage.get("cmd", "")).split()
        scripts = [w for w in words if w.endswith(".py")]
        if not scripts:
            continue
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps") or []]
        out[name] = (Path(scripts[0]), deps)
    return out


def is_code(dep: str) -> bool:
    return dep.split("/")[0] in CODE_ROOTS


def problems(root: Path, dvc: dict) -> list[str]:
    """One line per code file a stage imports without depending on it, or depends on without
    importing."""
    lines = []
    for name, (script, deps) in stage_scripts(dvc).items():
        code = {p.as_posix() for p in closure(root, root / script)}
        code_deps = [d.rstrip("/") for d in deps if is_code(d)]
        for module in sorted(code):
            if not any(module == d or module.startswith(d + "/") for d in code_deps):
                lines.append(f"dvc.yaml: stage {name} imports {module} but does not depend on it")
        for dep in code_deps:
            if not any(m == dep or m.startswith(dep + "/") for m in code):
                lines.append(f"dvc.yaml: stage {name} depends on {dep} but never imports it")
    return lines


def rewrite(root: Path, text: str) -> str:
    """``dvc.yaml``'s text with each stage's code deps replaced by its closure (the script
    first, then the modules in path order); other deps, comments and layout are kept."""
    scripts = stage_scripts(yaml.safe_load(text))
    out: list[str] = []
    stage = None
    in_deps = False
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("-"):
            stage, in_deps = stripped[:-1], False
        elif indent == 4 and stripped:
            in_deps = stripped == "deps:" and stage in scripts
            out.append(line)
            if in_deps:
                script = scripts[stage][0]
                modules = sorted(p.as_posix() for p in closure(root, root / script))
                modules.remove(script.as_posix())
                out.extend(f"      - {m}" for m in [script.as_posix(), *modules])
            continue
        if in_deps and stripped.startswith("- ") and is_code(stripped[2:].strip()):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--show", action="store_true", help="print each stage's closure")
    parser.add_argument("--write", action="store_true", help="rewrite the code deps in place")
    args = parser.parse_args()
    root = args.dvc_yaml.resolve().parent
    if args.write:
        args.dvc_yaml.write_text(rewrite(root, args.dvc_yaml.read_text()))
    dvc = yaml.safe_load(args.dvc_yaml.read_text())
    if args.show:
        for name, (script, _) in stage_scripts(dvc).items():
            print(
                f"{name}: " + " ".join(sorted(p.as_posix() for p in closure(root, root / script)))
            )
    found = problems(root, dvc)
    print("\n".join(found) or "every stage depends on exactly the code it imports")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
