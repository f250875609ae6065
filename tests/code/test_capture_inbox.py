"""Capture (what the service keeps) and the inbox (what a person decides), on tiny photos."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml

from tests import imagegen as g
from tests.conftest import read_only
from tests.conftest import served_answer as answer
from wastesort.cli import main
from wastesort.config import ConfigError
from wastesort.field import inbox
from wastesort.field.capture import Capture, read_log

CLASSES = ["cardboard", "glass", "metal"]


def capture(folder: Path, mode: str = "all", files: int = 100, mb: float = 10) -> Capture:
    serve = {"capture": mode, "capture_dir": str(folder), "capture_max_files": files}
    return Capture.from_params({**serve, "capture_max_mb": mb})


def test_all_keeps_bytes_once_and_logs_every_answer(tmp_path):
    cap = capture(tmp_path / "inbox")
    photo = g.jpeg(seed=1)
    assert cap.keep(photo, answer()) and cap.keep(photo, answer())
    assert cap.keep(g.png(seed=2), answer("metal", 0.5, uncertain=True))
    sha = hashlib.sha256(photo).hexdigest()
    stored = tmp_path / "inbox" / "confident" / f"{sha}.jpg"
    assert stored.read_bytes() == photo
    assert len(list((tmp_path / "inbox").rglob("*.jpg"))) == 1  # the same bytes once
    assert len(list((tmp_path / "inbox" / "uncertain").glob("*.png"))) == 1
    lines = read_log(tmp_path / "inbox")
    assert [line["new"] for line in lines] == [True, False, True]
    assert lines[0]["sha256"] == sha and lines[0]["file"] == f"confident/{sha}.jpg"
    assert lines[0]["model"]["version"] == "3" and lines[0]["probabilities"]["glass"] == 0.9
    assert not list((tmp_path / "inbox").rglob(".*.part"))  # no temporary file left


def test_none_keeps_nothing_and_uncertain_only_the_uncertain(tmp_path):
    assert not capture(tmp_path / "a", "none").keep(g.jpeg(), answer(uncertain=True))
    assert not (tmp_path / "a").exists()
    cap = capture(tmp_path / "b", "uncertain")
    assert not cap.keep(g.jpeg(seed=1), answer())
    assert cap.keep(g.jpeg(seed=2), answer("metal", 0.4, uncertain=True))
    assert [r["uncertain"] for r in read_log(tmp_path / "b")] == [True]


def test_past_the_bounds_the_oldest_confident_go_first_and_uncertain_stay(tmp_path):
    cap = capture(tmp_path / "inbox", files=4)
    uncertain = [g.jpeg(seed=s) for s in (10, 11)]
    for data in uncertain:
        assert cap.keep(data, answer(uncertain=True))
    confident = [g.jpeg(seed=s) for s in range(4)]
    for data in confident:
        assert cap.keep(data, answer())
        time.sleep(0.01)  # distinct modification times
    kept = {p.name for p in (tmp_path / "inbox").rglob("*.jpg")}
    names = [hashlib.sha256(d).hexdigest() + ".jpg" for d in confident]
    assert kept == {hashlib.sha256(d).hexdigest() + ".jpg" for d in uncertain} | set(names[2:])
    # a folder of uncertain photos only is full: the next one is a miss, the answer unharmed
    full = capture(tmp_path / "full", files=2)
    assert full.keep(g.jpeg(seed=20), answer(uncertain=True))
    assert full.keep(g.jpeg(seed=21), answer(uncertain=True))
    assert not full.keep(g.jpeg(seed=22), answer(uncertain=True))
    assert full.missed == {"full": 1}


def test_byte_bound(tmp_path):
    photos = [g.jpeg(200, 150, seed=s) for s in range(5)]
    budget = 3 * max(len(p) for p in photos)
    cap = capture(tmp_path / "inbox", mb=budget / 1024 / 1024)
    for data in photos:
        assert cap.keep(data, answer())
        time.sleep(0.01)
    stored = list((tmp_path / "inbox").rglob("*.jpg"))
    assert sum(p.stat().st_size for p in stored) <= budget and len(stored) == 3


def test_an_unwritable_folder_never_raises_and_counts_the_miss(tmp_path):
    missed = []
    serve = {"capture": "all", "capture_max_files": 10, "capture_max_mb": 1}
    with read_only(tmp_path / "inbox") as works:
        if works:
            cap = Capture.from_params(
                {**serve, "capture_dir": str(tmp_path / "inbox")}, missed.append
            )
            assert not cap.keep(g.jpeg(), answer())
    # a file where the folder should be: unwritable on any file system, for anyone
    (tmp_path / "taken").write_text("")
    other = Capture.from_params({**serve, "capture_dir": str(tmp_path / "taken")}, missed.append)
    assert not other.keep(g.jpeg(), answer())
    assert missed == ["unwritable"] * (1 + works) and other.missed == {"unwritable": 1}


def inbox_with_photos(tmp_path: Path) -> tuple[Path, list[bytes]]:
    folder = tmp_path / "inbox"
    cap = capture(folder)
    photos = [g.jpeg(seed=s) for s in range(3)]
    cap.keep(photos[0], answer("glass", 0.95))
    cap.keep(photos[1], answer("metal", 0.55, uncertain=True))
    cap.keep(photos[2], answer("cardboard", 0.65, uncertain=True))
    return folder, photos


def test_waiting_lists_uncertain_first_then_least_confident(tmp_path):
    folder, _ = inbox_with_photos(tmp_path)
    items = inbox.waiting(folder)
    assert [(w.label, w.uncertain) for w in items] == [
        ("metal", True),
        ("cardboard", True),
        ("glass", False),
    ]
    assert items[0].model_version == "3" and items[0].answers == 1


def test_label_moves_into_the_field_folder_and_every_decision_is_recorded(tmp_path):
    folder, photos = inbox_with_photos(tmp_path)
    field = tmp_path / "field"
    first, second, third = inbox.waiting(folder)
    target = inbox.label(first, "glass", CLASSES, field, who="ana")
    assert target == field / "glass" / first.name and target.read_bytes() == photos[1]
    assert not first.path.exists()
    inbox.label(third, third.label, CLASSES, field, who="ana")  # the suggestion accepted
    inbox.reject(second, field, who="ben")
    assert not second.path.exists() and inbox.waiting(folder) == []
    rows = inbox.decisions(field)
    assert [(r["decision"], r["class"], r["answer"], r["who"]) for r in rows] == [
        ("label", "glass", "metal", "ana"),
        ("label", "glass", "glass", "ana"),
        ("reject", "", "cardboard", "ben"),
    ]
    assert rows[0]["sha256"] == first.sha256 and rows[0]["file"] == f"glass/{first.name}"
    with pytest.raises(ConfigError, match="plastic: not a class"):
        inbox.label(first, "plastic", CLASSES, field)


def test_find_by_name_path_or_sha_prefix_and_clear_errors(tmp_path):
    folder, _ = inbox_with_photos(tmp_path)
    item = inbox.waiting(folder)[0]
    assert inbox.find(folder, item.name) == item
    assert inbox.find(folder, str(item.path)) == item
    assert inbox.find(folder, item.sha256[:8]) == item
    with pytest.raises(ConfigError, match="nope.jpg: not waiting in"):
        inbox.find(folder, "nope.jpg")


def test_the_inbox_command(tmp_path, monkeypatch, capsys):
    folder, _ = inbox_with_photos(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"data": {"classes": CLASSES}, "serve": {"capture_dir": str(folder)}})
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), "inbox"]) == 0
    listing = capsys.readouterr().out
    assert "3 waiting" in listing and listing.index("metal") < listing.index("glass")
    assert main(["--params", str(params), "inbox", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert main(["--params", str(params), "inbox", "accept", items[0]["sha256"][:10]]) == 0
    assert (tmp_path / "data/field/metal" / Path(items[0]["file"]).name).is_file()
    assert main(["--params", str(params), "inbox", "label", items[1]["file"], "glass"]) == 0
    assert main(["--params", str(params), "inbox", "reject", Path(items[2]["file"]).name]) == 0
    capsys.readouterr()
    assert main(["--params", str(params), "inbox", "label", "missing.jpg", "glass"]) == 2
    assert "missing.jpg: not waiting" in capsys.readouterr().err
    with (tmp_path / "data/field/labels.csv").open() as fh:
        assert [r["decision"] for r in csv.DictReader(fh)] == ["label", "label", "reject"]


def test_submit_writes_on_a_thread_and_a_full_queue_is_a_busy_miss(tmp_path):
    import queue

    kept, missed = [], []
    serve = {"capture": "all", "capture_dir": str(tmp_path / "inbox"), "capture_max_files": 10}
    cap = Capture.from_params({**serve, "capture_max_mb": 1}, missed.append, kept.append)
    for seed in range(3):
        cap.submit(g.jpeg(seed=seed), answer(uncertain=seed == 0))
    cap.join()
    assert len(read_log(tmp_path / "inbox")) == 3 and sorted(kept) == [
        "confident",
        "confident",
        "uncertain",
    ]
    blocked = Capture.from_params({**serve, "capture_max_mb": 1}, missed.append)
    blocked._queue = queue.Queue(1)  # a writer that has not taken the last photo yet
    blocked._queue.put((b"", {}))
    blocked.submit(g.jpeg(seed=9), answer())
    assert missed == ["busy"] and blocked.missed == {"busy": 1}


def test_the_extension_comes_from_the_bytes():
    from wastesort.field.capture import extension

    assert extension(g.jpeg()) == ".jpg" and extension(g.png()) == ".png"
    assert extension(g.animated_gif()) == ".gif" and extension(b"junk") == ".bin"


def test_a_deleted_log_is_started_again(tmp_path):
    cap = capture(tmp_path / "inbox")
    assert cap.keep(g.jpeg(seed=1), answer())
    (tmp_path / "inbox" / "capture.jsonl").unlink()  # an operator rotates it away
    assert cap.keep(g.jpeg(seed=2), answer())
    assert len(read_log(tmp_path / "inbox")) == 1


def test_a_full_disk_never_tears_the_log(tmp_path, monkeypatch):
    """Writes cut short part-way (what a full disk does: some bytes, then ENOSPC) leave no
    fragment: every line of the log parses, every capture reported kept is in it, each cut
    one is a `disk_full` miss, and the records written after space comes back are whole."""
    import errno
    import os

    from wastesort.field import capture as module

    real_write, cut = os.write, {"on": False, "full": False}

    def full_disk(fd, data):
        if cut["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        if cut["on"]:  # this write fits in part; the next one finds no room at all
            cut["full"] = True
            return real_write(fd, bytes(data[: max(1, len(data) // 2)]))
        return real_write(fd, data)

    monkeypatch.setattr(module.os, "write", full_disk)
    cap = capture(tmp_path / "inbox", mb=100)
    kept = []
    for i in range(12):
        cut["on"] = cut["full"] = False
        cut["on"] = i % 3 == 1  # every third answer meets a full disk
        photo = g.jpeg(seed=100 + i % 4)  # repeats: only the record is written for these
        kept.append(cap.keep(photo, answer(confidence=0.5 + i / 100)))
    lines = (tmp_path / "inbox" / "capture.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["confidence"] for r in records] == [0.5 + i / 100 for i in range(12) if kept[i]]
    assert kept.count(False) == 4 and cap.missed["disk_full"] == 4
    assert not list((tmp_path / "inbox").rglob(".*.part"))


def test_a_torn_tail_from_an_older_version_loses_no_record(tmp_path):
    """An older version could leave a record torn with no newline, and glued the next one to
    it: that record is read back, and the next one written goes on a line of its own."""
    folder = tmp_path / "inbox"
    cap = capture(folder)
    assert cap.keep(g.jpeg(seed=1), answer(confidence=0.81))
    log = folder / "capture.jsonl"
    whole = log.read_text()
    glued = whole.strip()[:40] + whole  # a torn record, then a whole one on the same line
    log.write_text(whole + glued + whole.strip()[:30])  # ... and a torn tail
    assert [r["confidence"] for r in read_log(folder)] == [0.81, 0.81]
    fresh = capture(folder)  # the service started again on the old log
    assert fresh.keep(g.jpeg(seed=2), answer(confidence=0.82))
    assert [r["confidence"] for r in read_log(folder)] == [0.81, 0.81, 0.82]
    assert log.read_text().endswith("}\n")
