"""Keeping the service's uploads for review (``serve.capture``): the original bytes once per
sha256, and one JSON line per answer in an append-only log.

A capture never fails an answer: a full disk or an unwritable folder logs one line and counts
the miss (``Capture.missed``, and the service's ``wastesort_capture_missed_total``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wastesort.config import Serve, typed
from wastesort.field import KINDS, LOG

log = logging.getLogger("wastesort.capture")

RESCAN_SECONDS = 5.0  # between two looks at the folder (the other workers write there too)
NEAR = 0.9  # of a bound: past it, look at the folder before every new photo
QUEUE = 256  # photos waiting for the writer thread (``submit``); more are a ``busy`` miss


#: The first bytes of each format the service accepts (``images.SUPPORTED_FORMATS``).
MAGIC = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def extension(data: bytes) -> str:
    """The file name's extension, from the format's signature (the service decoded it already)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in MAGIC if data.startswith(magic)), ".bin")


@dataclass
class Capture:
    mode: str  # none, uncertain or all (serve.capture)
    folder: Path  # serve.capture_dir
    max_files: int
    max_bytes: int
    missed: Counter = field(default_factory=Counter)  # reason -> count, this process
    on_miss: Any = None  # called with the reason (the service counts it in Prometheus)
    on_kept: Any = None  # called with the kind (uncertain, confident) of each kept answer

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self._lock = threading.Lock()
        self._scanned = -RESCAN_SECONDS  # time.monotonic() of the last look at the folder
        self._files = 0
        self._bytes = 0
        self._queue: queue.Queue | None = None
        self._log_fd: int | None = None

    @classmethod
    def from_params(
        cls, serve: Serve | dict[str, Any], on_miss: Any = None, on_kept: Any = None
    ) -> Capture:
        """From the ``serve`` section (a mapping is validated first)."""
        serve = typed("serve", serve)
        return cls(
            mode=serve.capture,
            folder=Path(serve.capture_dir).expanduser(),
            max_files=serve.capture_max_files,
            max_bytes=int(serve.capture_max_mb * 1024 * 1024),
            on_miss=on_miss,
            on_kept=on_kept,
        )

    def submit(self, data: bytes, answer: dict[str, Any]) -> None:
        """``keep`` on a writer thread, so the answer leaves before the photo is written (the
        service). A full queue is a ``busy`` miss."""
        if not self.wants(answer):
            return
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue(QUEUE)
                threading.Thread(target=self._drain, name="capture", daemon=True).start()
        try:
            self._queue.put_nowait((data, answer))
        except queue.Full:
            self._miss("busy", f"{self.folder}: {QUEUE} photos already wait to be written")

    def _drain(self) -> None:
        while True:
            data, answer = self._queue.get()
            self.keep(data, answer)
            self._queue.task_done()

    def join(self) -> None:
        """Wait until every submitted photo is written (tests)."""
        if self._queue is not None:
            self._queue.join()

    def wants(self, answer: dict[str, Any]) -> bool:
        return self.mode == "all" or (self.mode == "uncertain" and bool(answer["uncertain"]))

    def keep(self, data: bytes, answer: dict[str, Any]) -> bool:
        """Store ``data`` and its answer if ``serve.capture`` wants it; True when stored.
        Never raises."""
        if not self.wants(answer):
            return False
        try:
            kept = self._keep(data, answer)
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
        if self.on_kept is not None:
            with contextlib.suppress(Exception):
                self.on_kept(KINDS[0] if answer["uncertain"] else KINDS[1])
        return kept

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
                    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    try:
                        write_all(fd, data)
                    finally:
                        os.close(fd)
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
            self._append(line)
        return True

    def _append(self, record: dict[str, Any]) -> None:
        """``append_whole`` on a descriptor kept open (opening costs as much as writing the
        photo); opened again when the log was deleted or a write failed."""
        fd = self._log_fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            os.close(fd)
            fd = self._log_fd = None
        if fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOG, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._log_fd = fd
        try:
            append_whole(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        except OSError:
            os.close(fd)
            self._log_fd = None
            raise

    def _bound(self, kind: str, incoming: int) -> None:
        """Make room for one more file: past serve.capture_max_files or _mb the oldest
        confident captures go first; uncertain ones are kept, so a folder full of them takes
        no more (counted as a ``full`` miss)."""
        near = self._files + 1 > NEAR * self.max_files or (
            self._bytes + incoming > NEAR * self.max_bytes
        )
        if near or time.monotonic() - self._scanned > RESCAN_SECONDS:
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
        self._scanned = time.monotonic()


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


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a full disk writes part, then raises)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_whole(fd: int, data: bytes, header: bytes = b"") -> None:
    """Append one line to the log open at ``fd`` (O_RDWR | O_APPEND) whole or not at all,
    after ``header`` if the log is empty (a CSV's).

    Under an exclusive ``flock`` (every service worker appends to the same log): a write cut
    short (a full disk) is truncated back to where the log ended and raises, so the record is
    a miss, never a fragment the next record would be glued to; a log whose last line an older
    version left torn gets its newline first.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        end = os.fstat(fd).st_size
        if not end:
            data = header + data
        elif os.pread(fd, 1, end - 1) != b"\n":
            data = b"\n" + data
        try:
            write_all(fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)  # shrinking needs no space
            raise
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_log(folder: Path) -> list[dict[str, Any]]:
    """Every record of ``<folder>/capture.jsonl``. A line that does not parse is skipped with a
    warning naming its number; where an older version's torn record had the next one glued to
    it, the whole record at the end of the line is kept."""
    path = Path(folder) / LOG
    if not path.is_file():
        return []
    records = []
    with path.open(errors="replace") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                records.append(json.loads(text))
                continue
            except json.JSONDecodeError:
                pass
            glued = whole_tail(text)
            if glued is None:
                log.warning("%s:%d: not a JSON line, skipped", path, number)
            else:
                records.append(glued[1])
                log.warning("%s:%d: %d torn bytes before a record, skipped", path, number, glued[0])
    return records


def whole_tail(text: str) -> tuple[int, dict[str, Any]] | None:
    """(where it starts, the record) for the first ``{`` after the start of ``text`` from
    which the rest of the line is one JSON object; None if there is none."""
    start = text.find("{", 1)
    while start != -1:
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(text[start:])
            if isinstance(record, dict):
                return start, record
        start = text.find("{", start + 1)
    return None
