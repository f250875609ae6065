"""Keeping the service's uploads for review (``serve.capture``): the original bytes once per
sha256, and one JSON line per answer in an append-only log.

A capture never fails an answer: a full disk or an unwritable folder logs one line and counts
the miss (``Capture.missed``, and the service's ``wastesort_capture_missed_total``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from wastesort.field import EXTENSIONS, KINDS, LOG

log = logging.getLogger("wastesort.capture")

RESCAN_EVERY = 64  # own writes between two looks at the folder (other workers write too)


def extension(data: bytes) -> str:
    try:
        return EXTENSIONS.get(Image.open(io.BytesIO(data)).format or "", ".bin")
    except Exception:  # noqa: BLE001 - the service already decoded it; a name is all we need
        return ".bin"


@dataclass
class Capture:
    mode: str  # none, uncertain or all (serve.capture)
    folder: Path  # serve.capture_dir
    max_files: int
    max_bytes: int
    missed: Counter = field(default_factory=Counter)  # reason -> count, this process
    on_miss: Any = None  # called with the reason (the service counts it in Prometheus)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self._lock = threading.Lock()
        self._writes = 0
        self._files: int | None = None  # None: not scanned yet
        self._bytes = 0

    @classmethod
    def from_params(cls, serve: dict[str, Any], on_miss: Any = None) -> Capture:
        return cls(
            mode=str(serve["capture"]),
            folder=Path(str(serve["capture_dir"])).expanduser(),
            max_files=int(serve["capture_max_files"]),
            max_bytes=int(float(serve["capture_max_mb"]) * 1024 * 1024),
            on_miss=on_miss,
        )

    def wants(self, answer: dict[str, Any]) -> bool:
        return self.mode == "all" or (self.mode == "uncertain" and bool(answer["uncertain"]))

    def keep(self, data: bytes, answer: dict[str, Any]) -> bool:
        """Store ``data`` and its answer if ``serve.capture`` wants it; True when stored.
        Never raises."""
        if not self.wants(answer):
            return False
        try:
            return self._keep(data, answer)
        except CaptureFull as exc:
            self._miss("full", f"{self.folder}: {exc}")
            return False
        except OSError as exc:
            reason = "disk_full" if exc.errno == 28 else "unwritable"
            self._miss(reason, f"{self.folder}: {exc.strerror or exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - an answer must never fail for a capture
            self._miss("error", f"{self.folder}: {exc}")
            return False

    def _miss(self, reason: str, message: str) -> None:
        self.missed[reason] += 1
        log.warning("capture missed (%s): %s", reason, message)
        if self.on_miss is not None:
            with contextlib.suppress(Exception):
                self.on_miss(reason)

    def _keep(self, data: bytes, answer: dict[str, Any]) -> bool:
        kind = KINDS[0] if answer["uncertain"] else KINDS[1]
        sha = hashlib.sha256(data).hexdigest()
        name = sha + extension(data)
        target = self.folder / kind / name
        with self._lock:
            fresh = not target.exists()
            if fresh:
                self._bound(kind, len(data))
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.parent / f".{name}.{uuid.uuid4().hex}.part"
                try:
                    temporary.write_bytes(data)
                    os.replace(temporary, target)  # atomic: a reader sees all of it or nothing
                finally:
                    temporary.unlink(missing_ok=True)
                self._files = (self._files or 0) + 1
                self._bytes += len(data)
            line = {
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "sha256": sha,
                "file": f"{kind}/{name}",
                "capture": self.mode,
                "new": fresh,
                **{k: answer[k] for k in ("label", "confidence", "uncertain", "stream")},
                "probabilities": answer["probabilities"],
                "model": answer["model"],
            }
            append_line(self.folder / LOG, line)
            self._writes += 1
        return True

    def _bound(self, kind: str, incoming: int) -> None:
        """Make room for one more file: past serve.capture_max_files or _mb the oldest
        confident captures go first; uncertain ones are kept, so a folder full of them takes
        no more (counted as a ``full`` miss)."""
        if self._files is None or self._writes % RESCAN_EVERY == 0:
            self._scan()
        if self._files + 1 <= self.max_files and self._bytes + incoming <= self.max_bytes:
            return
        self._scan()
        oldest = sorted(
            (e.stat().st_mtime_ns, e.path, e.stat().st_size)
            for e in scandir(self.folder / KINDS[1])
        )
        for _, path, size in oldest:
            if self._files + 1 <= self.max_files and self._bytes + incoming <= self.max_bytes:
                return
            with contextlib.suppress(FileNotFoundError):  # another worker took it first
                os.unlink(path)
                self._files -= 1
                self._bytes -= size
        if self._files + 1 > self.max_files or self._bytes + incoming > self.max_bytes:
            raise CaptureFull(kind)

    def _scan(self) -> None:
        entries = [e for k in KINDS for e in scandir(self.folder / k)]
        self._files = len(entries)
        self._bytes = sum(e.stat().st_size for e in entries)


class CaptureFull(OSError):
    def __init__(self, kind: str):
        super().__init__(f"full: serve.capture_max_files or capture_max_mb reached ({kind})")
        self.strerror = str(self)


def scandir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_file() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, appended with a single write (O_APPEND: lines of several service
    workers never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_log(folder: Path) -> list[dict[str, Any]]:
    """Every line of ``<folder>/capture.jsonl``; a broken line is skipped with a warning
    naming its number (a crash mid-write leaves at most the last one torn)."""
    path = Path(folder) / LOG
    if not path.is_file():
        return []
    records = []
    with path.open() as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError:
                log.warning("%s:%d: not a JSON line, skipped", path, number)
    return records
