"""The inbox: captured photos waiting for a person. Labelling one moves it into the DVC-tracked
``data/field/<class>/``; rejecting drops it. Every decision is a row of ``data/field/labels.csv``.

Used by ``wastesort inbox`` and by the service's `/inbox` page, so both decide the same way.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wastesort.config import ConfigError, configured_classes, data_root, is_hidden
from wastesort.field import FIELD, KINDS, LABELS_CSV
from wastesort.field.capture import append_whole, read_log

COLUMNS = [
    "time", "sha256", "decision", "class", "source", "answer", "confidence", "model_version",
    "who", "file",
]  # fmt: skip


@dataclass(frozen=True)
class Waiting:
    path: Path  # the photo in the capture folder
    sha256: str
    label: str  # the service's answer: the suggested class
    confidence: float
    uncertain: bool
    time: str
    model_version: str
    answers: int  # times the service answered these bytes

    @property
    def name(self) -> str:
        return self.path.name

    def described(self, file: str) -> dict[str, Any]:
        """The JSON both `wastesort inbox --json` and the inbox page give, naming the photo as
        ``file``."""
        return {
            "file": file,
            "sha256": self.sha256,
            "suggested": self.label,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "time": self.time,
            "model_version": self.model_version,
            "answers": self.answers,
        }


def waiting(capture_dir: Path) -> list[Waiting]:
    """Photos in the capture folder with their last answer: uncertain first, then the least
    confident first."""
    capture_dir = Path(capture_dir)
    last: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for record in read_log(capture_dir):
        sha = str(record.get("sha256", ""))
        last[sha] = record
        seen[sha] = seen.get(sha, 0) + 1
    out = []
    for sha, r in last.items():
        path = capture_dir / str(r.get("file", ""))
        if not sha or not path.is_file():
            continue  # decided already, or evicted past serve.capture_max_*
        out.append(
            Waiting(
                path=path,
                sha256=sha,
                label=str(r["label"]),
                confidence=float(r["confidence"]),
                uncertain=bool(r["uncertain"]),
                time=str(r["time"]),
                model_version=str(r.get("model", {}).get("version", "")),
                answers=seen[sha],
            )
        )
    return sorted(out, key=lambda w: (not w.uncertain, w.confidence, w.time))


def find(capture_dir: Path, ref: str) -> Waiting:
    """A waiting photo by its path, its file name or the start of its sha256 (6+ characters)."""
    items = waiting(capture_dir)
    name = Path(ref).name
    matches = [w for w in items if w.name == name or str(w.path) == ref]
    if not matches and len(ref) >= 6:
        matches = [w for w in items if w.sha256.startswith(ref.lower())]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"{ref}: not waiting in {capture_dir} (`wastesort inbox` lists it)")
    raise ConfigError(f"{ref}: matches {len(matches)} photos; give more of the sha256")


def known_classes(params: dict[str, Any]) -> list[str]:
    """What a photo may be labelled: data.classes, or (when []) the data folder's classes."""
    classes = configured_classes(params)
    if classes:
        return classes
    root = data_root(params)
    if not root.is_dir():
        raise ConfigError(f"data folder not found: {root} (set data.path or data.classes)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def label(
    item: Waiting,
    cls: str,
    classes: list[str],
    field_dir: Path = FIELD,
    who: str = "",
    source: str = "inbox",
) -> Path:
    """Move the photo to ``field_dir/cls/`` and record the decision; the new path."""
    if cls not in classes:
        raise ConfigError(
            f"{cls}: not a class (known: {', '.join(classes)}); add it to data.classes first"
        )
    target = Path(field_dir) / cls / item.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # the same bytes were labelled before: keep one copy
        item.path.unlink(missing_ok=True)
    else:
        shutil.move(item.path, target)
    record(field_dir, item, "label", cls, who, source, target)
    return target


def reject(item: Waiting, field_dir: Path = FIELD, who: str = "", source: str = "inbox") -> None:
    """Drop the photo (not waste, a face, a duplicate); the decision is still recorded."""
    item.path.unlink(missing_ok=True)
    record(field_dir, item, "reject", "", who, source, None)


def record(
    field_dir: Path,
    item: Waiting,
    decision: str,
    cls: str,
    who: str,
    source: str,
    target: Path | None,
) -> None:
    """One row of labels.csv, appended in a single write (the page and the CLI may both
    decide at once)."""
    path = Path(field_dir) / LABELS_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": item.sha256,
        "decision": decision,
        "class": cls,
        "source": source,
        "answer": item.label,
        "confidence": f"{item.confidence:.6f}",
        "model_version": item.model_version,
        "who": who or getpass.getuser(),
        "file": target.relative_to(field_dir).as_posix() if target else "",
    }
    header, text = io.StringIO(), io.StringIO()
    csv.DictWriter(header, COLUMNS, lineterminator="\n").writeheader()
    csv.DictWriter(text, COLUMNS, lineterminator="\n").writerow(row)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        append_whole(fd, text.getvalue().encode(), header.getvalue().encode())
    finally:
        os.close(fd)


def decisions(field_dir: Path = FIELD) -> list[dict[str, str]]:
    path = Path(field_dir) / LABELS_CSV
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


__all__ = ["KINDS", "Waiting", "decisions", "find", "known_classes", "label", "reject", "waiting"]
