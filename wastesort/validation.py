"""Data validation: a table of facts about every file, judged by a Great Expectations suite.

Python only measures (bytes, format, size, does it decode); the verdicts come from the GE
suite, so the GE validation result and Data Docs are the report of record. The input folder is
only ever read.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from wastesort import images
from wastesort.config import ConfigError, is_hidden

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["path", "label", "sha256", "width", "height", "mode", "notes"]


class DataCannotTrain(RuntimeError):
    """The data set as a whole is unusable (missing class, too few images, no folder)."""


@dataclass
class FolderScan:
    """What is under the data folder, before any file is opened."""

    root: Path
    classes: list[str]
    files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, label)
    ignored: list[str] = field(default_factory=list)  # notes on what is not class data
    hidden_skipped: int = 0
    missing_classes: list[str] = field(default_factory=list)


def scan_folder(root: Path, configured: list[str]) -> FolderScan:
    """List class files; root-level files and unlisted folders are ignored with a note."""
    if not root.exists():
        raise DataCannotTrain(f"data folder not found: {root} (set data.path in params.yaml)")
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
            scan.ignored.append(f"{entry.name}: file at the root of the data folder, not in a class folder")
    for name, folder in folders.items():
        if configured and name not in configured:
            scan.ignored.append(f"{name}/: folder not in data.classes")
    if configured:
        scan.classes = list(configured)
        scan.missing_classes = [c for c in configured if c not in folders]
    else:
        scan.classes = sorted(folders)
    for label in scan.classes:
        if label not in folders:
            continue
        for path in sorted(folders[label].rglob("*")):
            rel = path.relative_to(root)
            if any(is_hidden(part) for part in rel.parts):
                scan.hidden_skipped += int(path.is_file())
            elif path.is_file():
                scan.files.append((rel.as_posix(), label))
    if not configured:
        used = {label for _, label in scan.files}
        for label in [c for c in scan.classes if c not in used]:
            scan.ignored.append(f"{label}/: empty folder, not taken as a class")
        scan.classes = [c for c in scan.classes if c in used]
    return scan


def probe_file(data: bytes, max_pixels: int) -> dict[str, Any]:
    """Measure one file: header facts, then a full decode to RGB via ``wastesort.images``."""
    facts: dict[str, Any] = {
        "bytes": len(data), "format": "none", "width": 0, "height": 0, "mode": "",
        "decodes": False, "rgb_ok": False, "decode_error": "", "exif_orientation": 1, "notes": "",
    }
    if data:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(io.BytesIO(data)) as img:
                    facts.update(format=img.format or "none", width=img.width,
                                 height=img.height, mode=img.mode)
            except Exception:  # noqa: BLE001 - unreadable headers are a fact, judged below
                pass
    try:
        decoded = images.decode(data, max_pixels)
    except images.ImageRejected as exc:
        facts["decode_error"] = exc.reason
        facts["decodes"] = exc.code == "mode"
        if exc.code == "bomb" and facts["format"] == "none":
            facts["format"] = "unknown"  # Pillow refused the header itself as a bomb
            facts["width"] = facts["height"] = -1
    else:
        facts.update(decodes=True, rgb_ok=True, exif_orientation=decoded.exif_orientation,
                     notes="; ".join(decoded.notes))
    return facts


def build_facts(scan: FolderScan, max_pixels: int) -> pd.DataFrame:
    rows = []
    for rel, label in tqdm(scan.files, desc="validate: reading images", unit="img", mininterval=1.0):
        data = (scan.root / rel).read_bytes()
        row = {"path": rel, "label": label, "sha256": hashlib.sha256(data).hexdigest()}
        row.update(probe_file(data, max_pixels))
        rows.append(row)
    columns = ["path", "label", "sha256", "bytes", "format", "width", "height", "mode", "decodes",
               "rgb_ok", "decode_error", "exif_orientation", "notes"]
    facts = pd.DataFrame(rows, columns=columns)
    facts["pixels"] = facts["width"].clip(lower=0) * facts["height"].clip(lower=0)
    facts.loc[facts["width"] < 0, "pixels"] = -1
    facts["short_side"] = facts[["width", "height"]].min(axis=1)
    return mark_duplicates(facts)


def mark_duplicates(facts: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files: across classes all copies conflict; within a class keep the first."""
    facts = facts.copy()
    facts["label_conflict"] = False
    facts["conflict_classes"] = ""
    facts["duplicate_of"] = ""
    nonempty = facts[facts["bytes"] > 0]
    for _, group in nonempty.groupby("sha256", sort=True):
        if len(group) < 2:
            continue
        labels = sorted(group["label"].unique())
        if len(labels) > 1:
            facts.loc[group.index, "label_conflict"] = True
            facts.loc[group.index, "conflict_classes"] = ", ".join(
                f"{r.label}/{Path(r.path).name}" for r in group.sort_values("path").itertuples())
        else:
            ordered = group.sort_values("path")
            facts.loc[ordered.index[1:], "duplicate_of"] = ordered["path"].iloc[0]
    return facts


# Row-level expectations, in the order their reasons take precedence. A reason is a template
# filled from the failing row, so every rejected file gets exactly one, specific reason.
def file_expectations(max_pixels: int, min_side: int) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1,
                                        meta={"reason": "empty file (0 bytes)"}),
        E.ExpectColumnValuesToBeInSet(column="format", value_set=sorted(images.SUPPORTED_FORMATS),
                                      meta={"reason": "{decode_error}"}),
        E.ExpectColumnValuesToBeBetween(column="pixels", min_value=0, max_value=max_pixels,
                                        meta={"reason": "{decode_error}"}),
        E.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True],
                                      meta={"reason": "{decode_error}"}),
        E.ExpectColumnValuesToBeInSet(column="rgb_ok", value_set=[True],
                                      meta={"reason": "{decode_error}"}),
        E.ExpectColumnValuesToBeBetween(
            column="short_side", min_value=min_side,
            meta={"reason": "too small: {width}x{height}, smallest side under %d px" % min_side}),
        E.ExpectColumnValuesToBeInSet(
            column="label_conflict", value_set=[False],
            meta={"reason": "label conflict: byte-identical copies filed as {conflict_classes}; "
                            "all copies excluded"}),
        E.ExpectColumnValuesToBeInSet(
            column="duplicate_of", value_set=[""],
            meta={"reason": "duplicate: byte-identical to {duplicate_of} in the same class "
                            "(that copy kept)"}),
    ]


def class_expectations(min_images: int) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectTableRowCountToBeBetween(min_value=2, meta={"reason": "fewer than 2 classes"}),
        E.ExpectColumnValuesToBeInSet(column="folder_exists", value_set=[True],
                                      meta={"reason": "class folder {label}/ not found"}),
        E.ExpectColumnValuesToBeBetween(
            column="accepted", min_value=min_images,
            meta={"reason": "class {label} has {accepted} usable images, needs at least %d"
                            % min_images}),
    ]


@dataclass
class SuiteRun:
    success: bool
    failures: dict[str, list[dict[str, Any]]]  # suite name -> failing expectations
    result: dict[str, Any]  # GE's own validation result, JSON-ready


def gx_context(workdir: Path):
    """A throwaway file-backed GE project, so Data Docs can be built and copied out."""
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="file", project_root_dir=str(workdir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # ours is enough
    return context


def run_suites(context, tables: dict[str, tuple[pd.DataFrame, list]], key: str) -> SuiteRun:
    """Validate each table with its suite through a GE checkpoint that updates Data Docs."""
    import great_expectations as gx

    definitions, frames = [], {}
    for name, (frame, expectations) in tables.items():
        source = context.data_sources.add_pandas(f"{name}_source")
        asset = source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definitions.append(context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)))
        frames[name] = frame
    results, failures, success = {}, {}, True
    for definition in definitions:
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{definition.name}_checkpoint", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key]
                           if key in frames[definition.name] else []}))
        run = checkpoint.run(batch_parameters={"dataframe": frames[definition.name]})
        success &= bool(run.success)
        for validation in run.run_results.values():
            results[definition.name] = validation.to_json_dict()
            failures[definition.name] = [
                {"reason": r.expectation_config.meta.get("reason", r.expectation_config.type),
                 "rows": [row[key] for row in (r.result.get("unexpected_index_list") or [])
                          if isinstance(row, dict) and key in row]}
                for r in validation.results if not r.success]
    return SuiteRun(success, failures, results)


def verdicts(facts: pd.DataFrame, failures: list[dict[str, Any]]) -> pd.Series:
    """First failing expectation per file, its reason filled from the file's facts."""
    reason = pd.Series("", index=facts.index, dtype=object)
    by_path = {p: i for i, p in zip(facts.index, facts["path"])}
    for failure in failures:
        for path in failure["rows"]:
            idx = by_path[path]
            if not reason[idx]:
                reason[idx] = failure["reason"].format(**facts.loc[idx].to_dict())
    return reason


@dataclass
class ValidationOutcome:
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    summary: dict[str, Any]
    report: str
    problems: list[str]

    @property
    def can_train(self) -> bool:
        return not self.problems


def validate(root: Path, classes: list[str], cfg: dict[str, Any], docs_dir: Path) -> ValidationOutcome:
    """Validate the folder; Data Docs and GE's result JSON are written under ``docs_dir``."""
    max_pixels, min_side = int(cfg["max_pixels"]), int(cfg["min_side"])
    min_images = int(cfg["min_images_per_class"])
    scan = scan_folder(root, classes)
    facts = build_facts(scan, max_pixels)
    with tempfile.TemporaryDirectory() as tmp:
        context = gx_context(Path(tmp))
        file_run = run_suites(context, {"files": (facts, file_expectations(max_pixels, min_side))},
                              "path")
        facts["reason"] = verdicts(facts, file_run.failures.get("files", []))
        accepted = facts[facts["reason"] == ""]
        per_class = pd.DataFrame({
            "label": scan.classes,
            "folder_exists": [c not in scan.missing_classes for c in scan.classes],
            "accepted": [int((accepted["label"] == c).sum()) for c in scan.classes]})
        class_run = run_suites(context, {"classes": (per_class, class_expectations(min_images))},
                               "label")
        problems = [f["reason"].format(**row) for f in class_run.failures.get("classes", [])
                    for row in _rows_for(per_class, f)]
        write_docs(Path(tmp), docs_dir, {**file_run.result, **class_run.result})
    if facts.empty and not problems:
        problems.append(f"no image files found under {root}")
    manifest = accepted[["path", "label", "sha256", "width", "height", "mode", "notes"]]
    rejected = facts.loc[facts["reason"] != "", ["path", "label", "reason"]]
    summary = summarise(scan, facts, per_class, problems)
    return ValidationOutcome(manifest.reset_index(drop=True), rejected.reset_index(drop=True),
                             summary, render_report(scan, facts, summary, problems), problems)


def _rows_for(table: pd.DataFrame, failure: dict[str, Any]) -> list[dict[str, Any]]:
    if not failure["rows"]:  # table-level expectation: fill from the table size
        return [{"label": "", "accepted": 0, "rows": len(table)}]
    return [table[table["label"] == label].iloc[0].to_dict() for label in failure["rows"]]


def write_docs(gx_root: Path, docs_dir: Path, results: dict[str, Any]) -> None:
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    shutil.copytree(site, docs_dir / "data_docs")
    (docs_dir / "ge_validation_result.json").write_text(
        json.dumps(results, indent=2, sort_keys=True, default=str))


def summarise(scan: FolderScan, facts: pd.DataFrame, per_class: pd.DataFrame,
              problems: list[str]) -> dict[str, Any]:
    accepted = facts[facts["reason"] == ""]
    counts = {r.label: int(r.accepted) for r in per_class.itertuples()}
    nonzero = [n for n in counts.values() if n]
    conflict_groups = facts[facts["label_conflict"]]["sha256"].nunique()
    return {
        "files": int(len(facts)),
        "accepted": int(len(accepted)),
        "rejected": int((facts["reason"] != "").sum()),
        "cross_class_duplicate_groups": int(conflict_groups),
        "cross_class_duplicate_files": int(facts["label_conflict"].sum()),
        "within_class_duplicates": int((facts["duplicate_of"] != "").sum()),
        "converted_to_rgb": int((accepted["mode"] != "RGB").sum()),
        "exif_rotated": int((accepted["exif_orientation"] != 1).sum()),
        "ignored": len(scan.ignored),
        "hidden_skipped": scan.hidden_skipped,
        "classes": counts,
        "imbalance_ratio": round(max(nonzero) / min(nonzero), 3) if nonzero else 0.0,
        "can_train": not problems,
    }


def render_report(scan: FolderScan, facts: pd.DataFrame, summary: dict[str, Any],
                  problems: list[str]) -> str:
    lines = [f"# Validation report: {scan.root}", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items() if k != "classes"]
    lines += ["", "## Images per class (accepted)", ""]
    lines += [f"- {label}: {n}" for label, n in summary["classes"].items()]
    if problems:
        lines += ["", "## Problems: this data cannot train", ""] + [f"- {p}" for p in problems]
    lines += ["", "## Cross-class duplicate groups (label conflicts, all copies excluded)", ""]
    conflicts = facts[facts["label_conflict"]].sort_values("path").groupby("sha256", sort=False)
    for sha, group in conflicts:
        lines.append(f"- {sha[:12]}: " + ", ".join(group["path"]))
    lines += ["", "## Ignored", ""] + [f"- {note}" for note in scan.ignored]
    rejected = facts[facts["reason"] != ""]
    lines += ["", f"## Rejected files ({len(rejected)})", ""]
    lines += [f"- {r.path}: {r.reason}" for r in rejected.itertuples()]
    noted = facts[(facts["reason"] == "") & (facts["notes"] != "")]
    lines += ["", f"## Accepted with notes ({len(noted)})", ""]
    lines += [f"- {r.path}: {r.notes}" for r in noted.itertuples()]
    lines += ["", "Great Expectations Data Docs: data_docs/index.html", ""]
    return "\n".join(lines)


def check_config(cfg: dict[str, Any]) -> None:
    for key in ("max_pixels", "min_side", "min_images_per_class"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 0:
            raise ConfigError(f"params.yaml: validate.{key} must be a non-negative integer")
