"""`wastesort inbox`: list the captured photos, label them into data/field, or reject them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wastesort.config import load_params
from wastesort.field import FIELD, inbox


def add_parser(sub) -> None:
    p = sub.add_parser(
        "inbox",
        help="photos the service captured: list, label into data/field/<class>/, or reject",
        description="With no action: list what waits, uncertain first, with the suggested label.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--by", default="", help="who decides (default: the login name)")
    p.add_argument("--field", default=str(FIELD), help="the field folder (default: %(default)s)")
    actions = p.add_subparsers(dest="action")
    lab = actions.add_parser("label", help="label a photo: move it to data/field/CLASS/")
    lab.add_argument("file", metavar="FILE", help="its path, file name or sha256 prefix")
    lab.add_argument("cls", metavar="CLASS")
    acc = actions.add_parser("accept", help="label photos with the service's suggestion")
    acc.add_argument("files", nargs="+", metavar="FILE")
    rej = actions.add_parser("reject", help="drop photos (not waste, a person, unusable)")
    rej.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    capture_dir = Path(str(params["serve"]["capture_dir"])).expanduser()
    field = Path(args.field)
    if args.action is None:
        return show(inbox.waiting(capture_dir), capture_dir, args.json)
    if args.action == "reject":
        for ref in args.files:
            item = inbox.find(capture_dir, ref)
            inbox.reject(item, field, args.by)
            print(f"rejected {item.name}")
        return 0
    classes = inbox.known_classes(params)
    pairs = (
        [(args.file, args.cls)] if args.action == "label" else [(ref, None) for ref in args.files]
    )
    for ref, cls in pairs:
        item = inbox.find(capture_dir, ref)
        target = inbox.label(item, cls or item.label, classes, field, args.by)
        print(f"{item.name} -> {target}")
    print(f"then: dvc add {field} && git add {field}.dvc && git commit && dvc push")
    return 0


def show(items: list[inbox.Waiting], capture_dir: Path, as_json: bool) -> int:
    if as_json:
        rows = [w.described(str(w.path)) for w in items]
        print(json.dumps(rows, indent=2))
        return 0
    if not items:
        print(f"nothing waits in {capture_dir} (serve.capture: uncertain or all keeps uploads)")
        return 0
    width = max(len(w.name) for w in items)
    print(f"{'file':<{width}}  {'suggested':<18} {'confidence':>10}  captured")
    for w in items:
        note = "  uncertain" if w.uncertain else ""
        print(f"{w.name:<{width}}  {w.label:<18} {w.confidence:>10.4f}  {w.time[:19]}{note}")
    print(f"{len(items)} waiting in {capture_dir}")
    return 0
