"""`wastesort` command line: classify photos with the served champion, outside the server.

Uses ``serving.load_champion`` and ``serving.load_upload``, the same registered file and
preprocessing as ``service.py``, so the CLI and the service give the same probabilities.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wastesort.config import ConfigError, is_hidden


def image_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given, folders expanded recursively (hidden entries skipped)."""
    found, missing = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(is_hidden(part) for part in p.relative_to(path).parts)
            ]
        elif path.is_file():
            found.append(path)
        else:
            missing.append(f"{raw}: no such file or folder")
    return found, missing


def predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wastesort.images import ImageRejected
    from wastesort.serving import ServeConfig, describe, load_champion, load_upload

    files, problems = image_files(args.paths)
    for problem in problems:
        print(f"wastesort: error: {problem}", file=sys.stderr)
    if not files:
        return 1 if problems else 0
    cfg = ServeConfig.load(args.params)
    champion = load_champion(cfg)
    info = champion.info()
    rows = []
    show_bar = len(files) > 1 and not args.json
    for path in tqdm(files, desc="classifying", unit="img", disable=not show_bar, file=sys.stderr):
        try:
            batch = load_upload(path.read_bytes(), cfg, champion.input_size)[None]
        except ImageRejected as exc:
            rows.append({"path": str(path), "error": exc.reason})
            continue
        probabilities = champion.predict(batch)[0]
        rows.append({"path": str(path), **describe(champion.labels, probabilities, cfg, info)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    failed = sum("error" in r for r in rows) + len(problems)
    return 1 if failed else 0


def print_table(rows: list[dict]) -> None:
    width = max(len("path"), *(len(r["path"]) for r in rows))
    print(f"{'path':<{width}}  {'label':<18} {'confidence':>10}  stream")
    for r in rows:
        if "error" in r:
            print(f"{r['path']:<{width}}  error: {r['error']}")
        else:
            note = "  (uncertain: below serve.min_confidence)" if r["uncertain"] else ""
            print(
                f"{r['path']:<{width}}  {r['label']:<18} {r['confidence']:>10.4f}  "
                f"{r['stream']}{note}"
            )


def import_champion(args: argparse.Namespace) -> int:
    """Re-import models:/NAME@ALIAS into the BentoML store (after moving the alias by hand)."""
    import mlflow
    import mlflow.exceptions

    from wastesort import tracking
    from wastesort.config import load_params, section
    from wastesort.tracking import registry

    cfg = section(load_params(args.params), "register")
    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        version, tag = registry.import_champion(cfg["model_name"], cfg["alias"])
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(
            f"cannot import {cfg['model_name']}@{cfg['alias']} from "
            f"{tracking.tracking_uri()}: {exc.message}"
        ) from None
    from wastesort.tracking import index

    stamp = index.registry_stamp(tracking.tracking_uri())  # after the import's writes
    index.write(registry.alias_receipt(cfg["model_name"], cfg["alias"]).to_json(), stamp)
    print(f"{cfg['model_name']}@{cfg['alias']} is version {version}; BentoML model {tag}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wastesort", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify image files or folders with the champion")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=predict)
    i = sub.add_parser(
        "import-champion",
        help="bring the registry's champion's exported files into BentoML's store",
    )
    i.set_defaults(func=import_champion)
    from wastesort.field import cli as inbox_cli
    from wastesort.field import drift
    from wastesort.field import evaluate as field_evaluate

    inbox_cli.add_parser(sub)
    field_evaluate.add_parser(sub)
    drift.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"wastesort: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
