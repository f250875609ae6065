"""The validation summary (metrics/validation.json), report.md and its thumbnail sheets."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from wastesort.data.gallery import plot_grid

if TYPE_CHECKING:
    from wastesort.data.validation import FolderScan, ValidationOutcome

GROUPS_PNG = "near_duplicates.png"
CONFLICTS_PNG = "label_conflicts.png"
MAX_SHOWN = 60  # thumbnails on a sheet; report.md lists every file


def near_duplicate_groups(manifest: pd.DataFrame) -> list[list[str]]:
    """The files of ``manifest`` in near-duplicate groups of two or more, sorted by path."""
    sizes = manifest["group"].map(manifest["group"].value_counts())
    grouped = manifest[sizes > 1].sort_values("path")
    return [list(g["path"]) for _, g in grouped.groupby("group", sort=True)]


def cross_class(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[pairs["label_a"] != pairs["label_b"]]


def per_source(scan: FolderScan, facts: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Files, accepted and rejected per source (``main``, then each extra folder), with a
    fingerprint of the source's files (sha256 over its sorted "path sha256" lines)."""
    out = {}
    for source in scan.sources:
        rows = facts[facts["source"] == source].sort_values("path")
        listing = "".join(f"{r.path} {r.sha256}\n" for r in rows.itertuples())
        out[source] = {
            "files": int(len(rows)),
            "accepted": int((rows["reason"] == "").sum()),
            "rejected": int((rows["reason"] != "").sum()),
            "fingerprint": hashlib.sha256(listing.encode()).hexdigest(),
        }
    return out


def summarise(
    scan: FolderScan,
    facts: pd.DataFrame,
    per_class: pd.DataFrame,
    pairs: pd.DataFrame,
    problems: list[str],
) -> dict[str, Any]:
    accepted = facts[facts["reason"] == ""]
    counts = {r.label: int(r.accepted) for r in per_class.itertuples()}
    nonzero = [n for n in counts.values() if n]
    conflict_groups = facts[facts["label_conflict"]]["sha256"].nunique()
    groups = near_duplicate_groups(accepted)
    # only with extra folders: a data set without them keeps its summary, and `train` (which
    # depends on it) stays up to date
    sources = {"sources": per_source(scan, facts)} if scan.extras else {}
    return {
        "files": int(len(facts)),
        "accepted": int(len(accepted)),
        "rejected": int((facts["reason"] != "").sum()),
        "cross_class_duplicate_groups": int(conflict_groups),
        "cross_class_duplicate_files": int(facts["label_conflict"].sum()),
        "within_class_duplicates": int((facts["duplicate_of"] != "").sum()),
        "near_duplicate_groups": len(groups),
        "images_in_near_duplicate_groups": sum(len(g) for g in groups),
        "near_duplicate_label_conflicts": int(len(cross_class(pairs))),
        "near_duplicate_conflict_files": int(facts["near_conflict"].sum()),
        "near_duplicate_conflicts_excluded": int(
            (facts["near_conflict"] & facts["reason"].str.startswith("possible label")).sum()
        ),
        "converted_to_rgb": int((accepted["mode"] != "RGB").sum()),
        "exif_rotated": int((accepted["exif_orientation"] != 1).sum()),
        "ignored": len(scan.ignored),
        "hidden_skipped": scan.hidden_skipped,
        "classes": counts,
        "imbalance_ratio": round(max(nonzero) / min(nonzero), 3) if nonzero else 0.0,
        "can_train": not problems,
        **sources,
    }


def render_report(
    scan: FolderScan,
    facts: pd.DataFrame,
    summary: dict[str, Any],
    pairs: pd.DataFrame,
    problems: list[str],
) -> str:
    lines = [f"# Validation report: {scan.root}", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items() if k not in ("classes", "sources")]
    lines += ["", "## Images per class (accepted)", ""]
    lines += [f"- {label}: {n}" for label, n in summary["classes"].items()]
    lines += ["", "## Images per source (main: data.path; then data.extra_paths)", ""]
    lines += [
        f"- {source}: {n['files']} files, {n['accepted']} accepted, {n['rejected']} rejected"
        for source, n in per_source(scan, facts).items()
    ]
    if problems:
        lines += ["", "## Problems: this data cannot train", ""] + [f"- {p}" for p in problems]
    lines += ["", "## Cross-class duplicate groups (label conflicts, all copies excluded)", ""]
    conflicts = facts[facts["label_conflict"]].sort_values("path").groupby("sha256", sort=False)
    for sha, group in conflicts:
        lines.append(f"- {sha[:12]}: " + ", ".join(group["path"]))
    verdict = "excluded" if summary["near_duplicate_conflicts_excluded"] else "kept"
    across = cross_class(pairs)
    lines += [
        "",
        f"## Possible label conflicts: near-duplicates across classes ({len(across)} "
        f"pairs, {verdict})",
        "",
    ]
    if len(across):
        lines += [f"![label conflicts]({CONFLICTS_PNG})", ""]
    lines += [
        f"- #{n} {r.path_a} ~ {r.path_b} (distance {r.distance})"
        for n, r in enumerate(across.itertuples(), 1)
    ]
    groups = near_duplicate_groups(facts[facts["reason"] == ""])
    lines += [
        "",
        f"## Near-duplicate groups within a class ({len(groups)}, each kept in one split)",
        "",
    ]
    if groups:
        lines += [f"![near-duplicate groups]({GROUPS_PNG})", ""]
    lines += [f"- #{n} {', '.join(group)}" for n, group in enumerate(groups, 1)]
    lines += ["", "## Ignored", ""] + [f"- {note}" for note in scan.ignored]
    rejected = facts[facts["reason"] != ""]
    lines += ["", f"## Rejected files ({len(rejected)})", ""]
    lines += [f"- {r.path}: {r.reason}" for r in rejected.itertuples()]
    noted = facts[(facts["reason"] == "") & (facts["notes"] != "")]
    lines += ["", f"## Accepted with notes ({len(noted)})", ""]
    lines += [f"- {r.path}: {r.notes}" for r in noted.itertuples()]
    lines += ["", "Great Expectations Data Docs: data_docs/index.html", ""]
    return "\n".join(lines)


def plot_near_duplicates(
    root: Path, outcome: ValidationOutcome, report_dir: Path, max_pixels: int
) -> None:
    """Thumbnail sheets, written only when there is something to show: cross-class pairs
    (label_conflicts.png) and within-class groups (near_duplicates.png), numbered."""
    across = cross_class(outcome.pairs)
    cells = [
        cell
        for n, r in enumerate(across.itertuples(), 1)
        for cell in (
            (r.path_a, f"#{n} {r.path_a}"),
            (r.path_b, f"#{n} {r.path_b} (distance {r.distance})"),
        )
    ]
    if cells:
        plot_grid(root, cells[:MAX_SHOWN], report_dir / CONFLICTS_PNG, max_pixels, columns=4)
    groups = near_duplicate_groups(outcome.manifest)
    cells = [(p, f"#{n} {p}") for n, group in enumerate(groups, 1) for p in group]
    if cells:
        plot_grid(root, cells[:MAX_SHOWN], report_dir / GROUPS_PNG, max_pixels)
