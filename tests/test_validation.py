"""Data behaviour of the `validate` stage: one generated file for each bad case, exact verdicts."""
from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests import imagegen as g
from wastesort.validation import DataCannotTrain, validate

CFG = {"min_side": 32, "max_pixels": 1_000_000, "min_images_per_class": 2}


def snapshot(root: Path) -> dict[str, tuple[str, float]]:
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messy")
    g.make_class_folders(root, {"metal": 3, "paper": 3, "glass": 3})
    w = g.write
    w(root / "metal" / "truncated.jpg", g.truncated_jpeg())
    w(root / "metal" / "zero.jpg", b"")
    w(root / "metal" / "notes.jpg", b"this is a text file, not a photo\n")
    w(root / "metal" / "tiny.jpg", g.jpeg(10, 10))
    w(root / "metal" / "bomb.png", g.bomb_png(2000))
    w(root / "paper" / "gray.jpg", g.grayscale_jpeg())
    w(root / "paper" / "rgba.png", g.rgba_png())
    w(root / "paper" / "cmyk.jpg", g.cmyk_jpeg())
    w(root / "paper" / "rotated.jpg", g.exif_rotated_jpeg(6))
    w(root / "paper" / "deep.png", g.png16())
    w(root / "paper" / "animated.gif", g.animated_gif())
    same = g.jpeg(seed=999)
    w(root / "glass" / "conflict.jpg", same)
    w(root / "metal" / "conflict_copy.jpg", same)
    again = g.jpeg(seed=555)
    w(root / "glass" / "a_original.jpg", again)
    w(root / "glass" / "b_copy.jpg", again)
    (root / "empty_class").mkdir()
    w(root / "LICENSE", b"MIT\n")
    w(root / "README.md", b"# data\n")
    w(root / ".DS_Store", b"\x00\x01")
    w(root / "paper" / ".hidden.jpg", g.jpeg(seed=42))
    return root


@pytest.fixture(scope="module")
def outcome(messy, tmp_path_factory):
    before = snapshot(messy)
    result = validate(messy, [], CFG, tmp_path_factory.mktemp("docs"))
    assert snapshot(messy) == before, "validation must never touch the input folder"
    return result


def reason_of(outcome, name: str) -> str:
    rows = outcome.rejected[outcome.rejected["path"].str.endswith(name)]
    assert len(rows) == 1, f"{name} should be rejected exactly once: {outcome.rejected}"
    return rows["reason"].iloc[0]


def accepted_row(outcome, name: str) -> pd.Series:
    rows = outcome.manifest[outcome.manifest["path"].str.endswith("/" + name)]
    assert len(rows) == 1, f"{name} should be accepted: {outcome.rejected}"
    return rows.iloc[0]


@pytest.mark.parametrize("name, reason", [
    ("zero.jpg", "empty file (0 bytes)"),
    ("notes.jpg", "not an image: Pillow cannot identify the bytes as any image format"),
    ("tiny.jpg", "too small: 10x10, smallest side under 32 px"),
    ("bomb.png", "decompression bomb: 2000x2000 = 4,000,000 pixels, over the limit of 1,000,000"),
    ("conflict.jpg", "label conflict: byte-identical copies filed as glass/conflict.jpg, "
                     "metal/conflict_copy.jpg; all copies excluded"),
    ("conflict_copy.jpg", "label conflict: byte-identical copies filed as glass/conflict.jpg, "
                          "metal/conflict_copy.jpg; all copies excluded"),
    ("b_copy.jpg", "duplicate: byte-identical to glass/a_original.jpg in the same class "
                   "(that copy kept)"),
])
def test_rejected_with_exact_reason(outcome, name, reason):
    assert reason_of(outcome, name) == reason


def test_truncated_jpeg_is_rejected_as_corrupt(outcome):
    assert reason_of(outcome, "truncated.jpg").startswith(
        "corrupt or truncated image data: image file is truncated")


@pytest.mark.parametrize("name, mode, note", [
    ("gray.jpg", "L", "converted from mode L to RGB"),
    ("rgba.png", "RGBA", "converted from mode RGBA to RGB"),
    ("cmyk.jpg", "CMYK", "converted from mode CMYK to RGB"),
    ("deep.png", "I;16", "converted from mode I;16 to RGB"),
    ("rotated.jpg", "RGB", "EXIF orientation 6 applied"),
    ("animated.gif", "P", "animated (2 frames): first frame used"),
    ("a_original.jpg", "RGB", ""),
])
def test_accepted_with_note(outcome, name, mode, note):
    row = accepted_row(outcome, name)
    assert row["mode"] == mode
    assert note in row["notes"] if note else row["notes"] == ""


def test_every_file_has_one_verdict(outcome, messy):
    listed = set(outcome.manifest["path"]) | set(outcome.rejected["path"])
    assert len(listed) == len(outcome.manifest) + len(outcome.rejected)
    expected = {p.relative_to(messy).as_posix() for p in messy.glob("*/*")
                if p.is_file() and not p.name.startswith(".")}
    assert listed == expected


def test_summary_counts_and_notes(outcome):
    s = outcome.summary
    assert s["rejected"] == 8 and s["accepted"] == len(outcome.manifest) == 9 + 6 + 1
    assert s["cross_class_duplicate_groups"] == 1 and s["within_class_duplicates"] == 1
    assert s["hidden_skipped"] == 2
    assert s["classes"] == {"glass": 3 + 1, "metal": 3, "paper": 3 + 6}
    assert s["imbalance_ratio"] == pytest.approx(9 / 3)
    assert s["can_train"] is True
    assert "LICENSE: file at the root of the data folder, not in a class folder" in outcome.report
    assert "README.md: file at the root" in outcome.report
    assert "empty_class/: empty folder, not taken as a class" in outcome.report


def test_great_expectations_report_is_written(outcome, tmp_path):
    validate_dir = tmp_path / "docs"
    root = g.make_class_folders(tmp_path / "data", {"a": 2, "b": 2})
    validate(root, [], CFG, validate_dir)
    assert (validate_dir / "data_docs" / "index.html").is_file()
    result = json.loads((validate_dir / "ge_validation_result.json").read_text())
    assert set(result) == {"files", "classes"}
    assert all(r["success"] for r in result.values())


@pytest.mark.parametrize("classes, message", [
    (["glass", "metal", "paper", "plastic_cup"], "class folder plastic_cup/ not found"),
    (["glass", "metal", "paper", "empty_class"],
     "class empty_class has 0 usable images, needs at least 2"),
])
def test_data_that_cannot_train_is_named(messy, tmp_path, classes, message):
    result = validate(messy, classes, CFG, tmp_path)
    assert not result.can_train
    assert message in result.problems


def test_too_few_images_per_class(messy, tmp_path):
    result = validate(messy, [], {**CFG, "min_images_per_class": 5}, tmp_path)
    assert "class metal has 3 usable images, needs at least 5" in result.problems


def test_missing_and_empty_data_folder(tmp_path):
    with pytest.raises(DataCannotTrain, match="data folder not found"):
        validate(tmp_path / "nope", [], CFG, tmp_path / "docs")
    (tmp_path / "empty").mkdir()
    result = validate(tmp_path / "empty", [], CFG, tmp_path / "docs")
    assert not result.can_train and "fewer than 2 classes" in result.problems


def test_stage_exits_nonzero_with_message(messy, tmp_path, monkeypatch, capsys):
    repo = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"] = {"path": str(messy), "classes": ["glass", "metal", "plastic_cup"]}
    params["validate"] = CFG
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(repo / "stages" / "validate.py"), run_name="__main__")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "validate: error: data cannot train: class folder plastic_cup/ not found" in err
    assert "Traceback" not in err
    assert (tmp_path / "metrics" / "validation.json").is_file()  # report written before failing
