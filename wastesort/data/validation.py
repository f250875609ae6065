"""Data validation: a table of facts about every file, judged by a Great Expectations suite.

Python only measures (bytes, format, size, does it decode, perceptual hash, near-duplicates);
the verdicts come from the GE suite, so the GE validation result and Data Docs are the report of
record. The input folders are only ever read.

``data.extra_paths`` adds folder-per-class sets (``data/field``) to ``data.path``: the same
classes, checks and near-duplicate grouping. Their manifest paths are relative to ``data.path``
like every other (``../field/glass/ab12.jpg``), so the later stages open ``data_root / path``
for all of them; the ``source`` column says where each photo came from (``main`` or the extra
folder as configured).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from wastesort import images
from wastesort.config import ConfigError, UserError, is_hidden, typed
from wastesort.data import near_duplicates
from wastesort.data.expectations import (
    class_expectations,
    file_expectations,
    gx_context,
    run_suites,
    verdicts,
    write_docs,
)
from wastesort.data.report import render_report, summarise

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "path",
    "label",
    "sha256",
    "phash",
    "group",
    "width",
    "height",
    "mode",
    "notes",
    "source",
]
MAIN = "main"  # the source of data.path's files; an extra folder's is its path as configured


class DataCannotTrain(UserError, RuntimeError):
    """The data set as a whole is unusable (missing class, too few images, no folder)."""


@dataclass
class FolderScan:
    """What is under the data folder, before any file is opened."""

    root: Path
    classes: list[str]
    files: list[tuple[str, str, str]] = field(default_factory=list)  # (path, label, source)
    ignored: list[str] = field(default_factory=list)  # notes on what is not class data
    hidden_skipped: int = 0
    missing_classes: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)  # the extra folders' sources, in order

    @property
    def sources(self) -> list[str]:
        return [MAIN, *self.extras]


#: what to do when data.path holds nothing to train on (README, "Your own data")
GET_DATA = (
    "put one folder of photos per class there (TrashNet: https://github.com/garythung/trashnet; "
    "`make setup` links ../shared/data/trashnet to data/raw when it is there) or point "
    "data.path at yours: uv run dvc exp run -S data.path=FOLDER"
)


def scan_folder(root: Path, configured: list[str]) -> FolderScan:
    """List class files; root-level files and unlisted folders are ignored with a note."""
    if not root.exists():
        raise DataCannotTrain(f"data folder not found: {root}; {GET_DATA}")
    if not root.is_dir():
        raise DataCannotTrain(f"data.path is not a folder: {root}")
    scan = FolderScan(root=root, classes=[])
    folders = {}
    for entry in sorted(root.iterdir()):
        if is_hidden(entry.name):
            scan.hidden_skipped += 1
        elif entry.is_dir():
            folders[entry.name] = entry
        else:
            scan.ignored.append(
                f"{entry.name}: file at the root of the data folder, not in a class folder"
            )
    for name, folder in folders.items():
        if configured and name not in configured:
            scan.ignored.append(f"{name}/: folder not in data.classes")
    if configured:
        scan.classes = list(configured)
        scan.missing_classes = [c for c in configured if c not in folders]
    else:
        scan.classes = sorted(folders)
    for label in scan.classes:
        if label in folders:
            add_class_files(scan, folders[label], label, root, ".", MAIN)
    if not configured:
        used = {label for _, label, _ in scan.files}
        for label in [c for c in scan.classes if c not in used]:
            scan.ignored.append(f"{label}/: empty folder, not taken as a class")
        scan.classes = [c for c in scan.classes if c in used]
    if not folders:
        raise DataCannotTrain(f"no class folders in {root}; {GET_DATA}")
    return scan


def add_class_files(
    scan: FolderScan, folder: Path, label: str, base: Path, prefix: str, source: str
) -> None:
    """The files under one class folder, as ``prefix``/(path under ``base``); hidden ones
    (any part of that path) are counted and skipped."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(base)
        if any(is_hidden(part) for part in rel.parts):
            scan.hidden_skipped += int(path.is_file())
        elif path.is_file():
            scan.files.append(((Path(prefix) / rel).as_posix(), label, source))


def path_from(root: Path, folder: Path) -> str:
    """``folder`` as a path relative to ``root`` (``../field``), on the real paths, so that
    ``root / path`` opens it even when ``root`` is a symbolic link; absolute where there is no
    relative path (another drive)."""
    try:
        return Path(os.path.relpath(folder.resolve(), root.resolve())).as_posix()
    except ValueError:
        return folder.resolve().as_posix()


def scan_extras(scan: FolderScan, extras: Sequence[Path]) -> None:
    """Add each ``data.extra_paths`` folder's class files to ``scan``. A missing or overlapping
    folder is a ``ConfigError`` and a class folder that is not one of ``scan.classes`` a
    ``DataCannotTrain``, each naming the folder; root-level files are ignored with a note."""
    taken = {scan.root.resolve(): f"data.path ({scan.root.as_posix()})"}
    for extra in extras:
        source = extra.as_posix()
        if not extra.is_dir():
            what = "not a folder" if extra.exists() else "folder not found"
            raise ConfigError(f"params.yaml: data.extra_paths: {what}: {source}")
        real = extra.resolve()
        for other, name in taken.items():
            if real == other or other in real.parents or real in other.parents:
                raise ConfigError(
                    f"params.yaml: data.extra_paths: {source} overlaps {name}; "
                    "each folder may be listed once, and none inside another"
                )
        taken[real] = f"data.extra_paths entry {source}"
        scan.extras.append(source)
        prefix = path_from(scan.root, extra)
        for entry in sorted(extra.iterdir()):
            if is_hidden(entry.name):
                scan.hidden_skipped += 1
            elif not entry.is_dir():
                scan.ignored.append(
                    f"{source}/{entry.name}: file at the root of an extra folder "
                    "(data.extra_paths), not in a class folder"
                )
            elif entry.name not in scan.classes:
                raise DataCannotTrain(
                    f"data.extra_paths: {source}/{entry.name}/ is not a class folder "
                    f"(the classes: {', '.join(scan.classes) or 'none'}); rename or move it"
                )
            else:
                add_class_files(scan, entry, entry.name, extra, prefix, source)
                if entry.name in scan.missing_classes:
                    scan.missing_classes.remove(entry.name)


def probe_file(data: bytes, max_pixels: int) -> dict[str, Any]:
    """Measure one file: header facts, then a decode to RGB via ``wastesort.images`` (all of
    the data; JPEGs at a reduced DCT scale) and the decoded image's perceptual hash."""
    facts: dict[str, Any] = {
        "bytes": len(data),
        "format": "none",
        "width": 0,
        "height": 0,
        "mode": "",
        "decodes": False,
        "rgb_ok": False,
        "decode_error": "",
        "exif_orientation": 1,
        "notes": "",
        "phash": "",
    }
    if data:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(io.BytesIO(data)) as img:
                    facts.update(
                        format=img.format or "none",
                        width=img.width,
                        height=img.height,
                        mode=img.mode,
                    )
            except Exception:  # noqa: BLE001 - unreadable headers are a fact, judged below
                pass
    try:
        decoded = images.decode(data, max_pixels, draft_to=near_duplicates.HASH_DECODE_SIDE)
    except images.ImageRejected as exc:
        facts["decode_error"] = exc.reason
        facts["decodes"] = exc.code == "mode"
        if exc.code == "bomb" and facts["format"] == "none":
            facts["format"] = "unknown"  # Pillow refused the header itself as a bomb
            facts["width"] = facts["height"] = -1
    else:
        facts.update(
            decodes=True,
            rgb_ok=True,
            exif_orientation=decoded.exif_orientation,
            notes="; ".join(decoded.notes),
            phash=near_duplicates.phash(decoded.image),
        )
    return facts


def build_facts(scan: FolderScan, max_pixels: int) -> pd.DataFrame:
    rows = []
    for rel, label, source in tqdm(
        scan.files, desc="validate: reading images", unit="img", mininterval=1.0
    ):
        data = (scan.root / rel).read_bytes()
        row = {"path": rel, "label": label, "source": source}
        row["sha256"] = hashlib.sha256(data).hexdigest()
        row.update(probe_file(data, max_pixels))
        rows.append(row)
    columns = [
        "path",
        "label",
        "source",
        "sha256",
        "bytes",
        "format",
        "width",
        "height",
        "mode",
        "decodes",
        "rgb_ok",
        "decode_error",
        "exif_orientation",
        "notes",
        "phash",
    ]
    facts = pd.DataFrame(rows, columns=columns)
    facts["pixels"] = facts["width"].clip(lower=0) * facts["height"].clip(lower=0)
    facts.loc[facts["width"] < 0, "pixels"] = -1
    facts["short_side"] = facts[["width", "height"]].min(axis=1)
    return mark_duplicates(facts)


def mark_duplicates(facts: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files: across classes all copies conflict; within a class keep the first
    (data.path's copy before an extra folder's, then by path)."""
    facts = facts.copy()
    facts["label_conflict"] = False
    facts["conflict_classes"] = ""
    facts["duplicate_of"] = ""
    rank = {source: n for n, source in enumerate(pd.unique(facts["source"]))}
    facts["_order"] = facts["source"].map(rank)
    nonempty = facts[facts["bytes"] > 0]
    for _, group in nonempty.groupby("sha256", sort=True):
        if len(group) < 2:
            continue
        ordered = group.sort_values(["_order", "path"])
        if group["label"].nunique() > 1:
            facts.loc[group.index, "label_conflict"] = True
            facts.loc[group.index, "conflict_classes"] = ", ".join(
                f"{r.label}/{Path(r.path).name}" if r.source == MAIN else r.path
                for r in ordered.itertuples()
            )
        else:
            facts.loc[ordered.index[1:], "duplicate_of"] = ordered["path"].iloc[0]
    return facts.drop(columns="_order")


def mark_near_duplicates(
    facts: pd.DataFrame, max_distance: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Near-duplicate groups within a class (``group``) and other-class near-duplicates
    (``near_conflict_with``) among decoded files that are not byte-identical copies; returns
    the facts and the close pairs."""
    facts = facts.copy()
    candidates = facts[(facts["duplicate_of"] == "") & ~facts["label_conflict"]]
    group, pairs = near_duplicates.find_near_duplicates(candidates, max_distance)
    facts["group"] = facts["path"]
    facts.loc[candidates.index, "group"] = group
    facts["near_conflict_with"] = near_duplicates.conflicts_of(facts, pairs)
    facts["near_conflict"] = facts["near_conflict_with"] != ""
    return facts, pairs


@dataclass
class ValidationOutcome:
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    pairs: pd.DataFrame  # near-duplicate pairs (near_duplicates.PAIR_COLUMNS)
    summary: dict[str, Any]
    report: str
    problems: list[str]

    @property
    def can_train(self) -> bool:
        return not self.problems


def validate(
    root: Path,
    classes: list[str],
    cfg: dict[str, Any],
    docs_dir: Path,
    extras: Sequence[Path] = (),
) -> ValidationOutcome:
    """Validate the folder and the ``extras`` (``data.extra_paths``) as one data set; Data Docs
    and GE's result JSON are written under ``docs_dir``."""
    cfg = typed("validate", cfg)
    max_pixels, min_side = cfg.max_pixels, cfg.min_side
    min_images = cfg.min_images_per_class
    scan = scan_folder(root, classes)
    scan_extras(scan, extras)
    facts, pairs = mark_near_duplicates(build_facts(scan, max_pixels), cfg.near_duplicate_distance)
    expectations = file_expectations(max_pixels, min_side, cfg.exclude_near_duplicate_conflicts)
    with tempfile.TemporaryDirectory() as tmp:
        context = gx_context(Path(tmp))
        file_run = run_suites(context, {"files": (facts, expectations)}, "path")
        facts["reason"] = verdicts(facts, file_run.failures.get("files", []))
        accepted = facts[facts["reason"] == ""]
        per_class = pd.DataFrame(
            {
                "label": scan.classes,
                "folder_exists": [c not in scan.missing_classes for c in scan.classes],
                "accepted": [int((accepted["label"] == c).sum()) for c in scan.classes],
            }
        )
        class_run = run_suites(
            context, {"classes": (per_class, class_expectations(min_images))}, "label"
        )
        problems = [
            f["reason"].format(**row)
            for f in class_run.failures.get("classes", [])
            for row in _rows_for(per_class, f)
        ]
        write_docs(Path(tmp), docs_dir, {**file_run.result, **class_run.result})
    if facts.empty and not problems:
        problems.append(f"no image files found under {root}")
    manifest = accepted[MANIFEST_COLUMNS]
    rejected = facts.loc[facts["reason"] != "", ["path", "label", "reason"]]
    summary = summarise(scan, facts, per_class, pairs, problems)
    return ValidationOutcome(
        manifest.reset_index(drop=True),
        rejected.reset_index(drop=True),
        pairs,
        summary,
        render_report(scan, facts, summary, pairs, problems),
        problems,
    )


def _rows_for(table: pd.DataFrame, failure: dict[str, Any]) -> list[dict[str, Any]]:
    if not failure["rows"]:  # table-level expectation: fill from the table size
        return [{"label": "", "accepted": 0, "rows": len(table)}]
    return [table[table["label"] == label].iloc[0].to_dict() for label in failure["rows"]]
