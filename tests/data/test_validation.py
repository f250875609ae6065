"""Data behaviour of the `validate` stage: one generated file for each bad case, exact verdicts."""

from __future__ import annotations

import hashlib
import io
import json
import runpy
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests import imagegen as g
from wastesort.data.near_duplicates import close_pairs
from wastesort.data.validation import DataCannotTrain, validate

CFG = {
    "min_side": 32,
    "max_pixels": 1_000_000,
    "min_images_per_class": 2,
    "near_duplicate_distance": 4,
    "exclude_near_duplicate_conflicts": False,
}


def photo(seed: int, size: tuple[int, int] = (160, 120), quality: int = 90) -> bytes:
    """A photo-like JPEG: random colour blocks, smoothly enlarged. Two seeds' pHashes differ in
    14 or more of 64 bits; a resized, re-encoded copy's in 2 at most."""
    blocks = np.random.default_rng(seed).integers(0, 256, (9, 12, 3), dtype=np.uint8)
    return g.encode(
        Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC), "JPEG", quality=quality
    )


def resized_copy(data: bytes, scale: float, quality: int) -> bytes:
    """The photo resized by ``scale`` and re-encoded at another JPEG quality."""
    img = Image.open(io.BytesIO(data))
    size = (round(img.width * scale), round(img.height * scale))
    return g.encode(img.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=quality)


def photo_folders(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    for ci, (label, count) in enumerate(per_class.items()):
        for i in range(count):
            g.write(root / label / f"{label}_{i:02d}.jpg", photo(seed + 100 * ci + i))
    return root


def snapshot(root: Path) -> dict[str, tuple[str, float]]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


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


@pytest.mark.parametrize(
    "name, reason",
    [
        ("zero.jpg", "empty file (0 bytes)"),
        ("notes.jpg", "not an image: Pillow cannot identify the bytes as any image format"),
        ("tiny.jpg", "too small: 10x10, smallest side under 32 px"),
        (
            "bomb.png",
            "decompression bomb: 2000x2000 = 4,000,000 pixels, over the limit of 1,000,000",
        ),
        (
            "conflict.jpg",
            "label conflict: byte-identical copies filed as glass/conflict.jpg, "
            "metal/conflict_copy.jpg; all copies excluded",
        ),
        (
            "conflict_copy.jpg",
            "label conflict: byte-identical copies filed as glass/conflict.jpg, "
            "metal/conflict_copy.jpg; all copies excluded",
        ),
        (
            "b_copy.jpg",
            "duplicate: byte-identical to glass/a_original.jpg in the same class (that copy kept)",
        ),
    ],
)
def test_rejected_with_exact_reason(outcome, name, reason):
    assert reason_of(outcome, name) == reason


def test_truncated_jpeg_is_rejected_as_corrupt(outcome):
    assert reason_of(outcome, "truncated.jpg").startswith(
        "corrupt or truncated image data: image file is truncated"
    )


@pytest.mark.parametrize(
    "name, mode, note",
    [
        ("gray.jpg", "L", "converted from mode L to RGB"),
        ("rgba.png", "RGBA", "converted from mode RGBA to RGB"),
        ("cmyk.jpg", "CMYK", "converted from mode CMYK to RGB"),
        ("deep.png", "I;16", "converted from mode I;16 to RGB"),
        ("rotated.jpg", "RGB", "EXIF orientation 6 applied"),
        ("animated.gif", "P", "animated (2 frames): first frame used"),
        ("a_original.jpg", "RGB", ""),
    ],
)
def test_accepted_with_note(outcome, name, mode, note):
    row = accepted_row(outcome, name)
    assert row["mode"] == mode
    assert note in row["notes"] if note else row["notes"] == ""


def test_every_file_has_one_verdict(outcome, messy):
    listed = set(outcome.manifest["path"]) | set(outcome.rejected["path"])
    assert len(listed) == len(outcome.manifest) + len(outcome.rejected)
    expected = {
        p.relative_to(messy).as_posix()
        for p in messy.glob("*/*")
        if p.is_file() and not p.name.startswith(".")
    }
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


@pytest.mark.parametrize(
    "classes, message",
    [
        (["glass", "metal", "paper", "plastic_cup"], "class folder plastic_cup/ not found"),
        (
            ["glass", "metal", "paper", "empty_class"],
            "class empty_class has 0 usable images, needs at least 2",
        ),
    ],
)
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
    (tmp_path / "empty" / "README.md").write_text("no class folders here\n")
    # nothing to train on says what to do, in one line
    with pytest.raises(DataCannotTrain, match=r"no class folders in .*make setup.*data\.path="):
        validate(tmp_path / "empty", [], CFG, tmp_path / "docs")
    g.make_class_folders(tmp_path / "one", {"glass": 6})
    result = validate(tmp_path / "one", [], CFG, tmp_path / "docs")
    assert not result.can_train and "fewer than 2 classes" in result.problems


def test_stage_exits_nonzero_with_message(messy, tmp_path, monkeypatch, capsys):
    repo = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(path=str(messy), classes=["glass", "metal", "plastic_cup"])
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


@pytest.fixture(scope="module")
def near(tmp_path_factory) -> Path:
    """Distinct photos, two resized and re-encoded copies of glass_00 (one large enough to be
    hashed from a reduced JPEG decode) and a copy of paper_02 filed under metal."""
    root = photo_folders(tmp_path_factory.mktemp("near"), {"glass": 5, "metal": 5, "paper": 5})
    original = (root / "glass" / "glass_00.jpg").read_bytes()
    g.write(root / "glass" / "glass_00_small.jpg", resized_copy(original, 0.5, 60))
    g.write(root / "glass" / "glass_00_big.jpg", resized_copy(original, 1.6, 75))
    g.write(
        root / "metal" / "relabelled.jpg",
        resized_copy((root / "paper" / "paper_02.jpg").read_bytes(), 0.8, 70),
    )
    return root


@pytest.fixture(scope="module")
def near_outcome(near, tmp_path_factory):
    before = snapshot(near)
    result = validate(near, [], CFG, tmp_path_factory.mktemp("near_docs"))
    assert snapshot(near) == before
    return result


def test_resized_reencoded_copies_share_their_originals_group(near_outcome):
    group = dict(zip(near_outcome.manifest["path"], near_outcome.manifest["group"]))
    copies = ["glass/glass_00.jpg", "glass/glass_00_big.jpg", "glass/glass_00_small.jpg"]
    assert [group[p] for p in copies] == ["glass/glass_00.jpg"] * 3
    assert all(group[p] == p for p in group if p not in copies)  # distinct photos stand alone
    s = near_outcome.summary
    assert s["near_duplicate_groups"] == 1 and s["images_in_near_duplicate_groups"] == 3
    assert s["accepted"] == 18 and s["rejected"] == 0


def test_cross_class_near_duplicate_is_reported_and_kept_by_default(near_outcome):
    s = near_outcome.summary
    assert s["near_duplicate_label_conflicts"] == 1 and s["near_duplicate_conflict_files"] == 2
    assert s["near_duplicate_conflicts_excluded"] == 0
    group = dict(zip(near_outcome.manifest["path"], near_outcome.manifest["group"]))
    assert group["metal/relabelled.jpg"] == "metal/relabelled.jpg"  # classes are not grouped
    assert group["paper/paper_02.jpg"] == "paper/paper_02.jpg"
    across = near_outcome.pairs[near_outcome.pairs["label_a"] != near_outcome.pairs["label_b"]]
    assert across[["path_a", "path_b"]].values.tolist() == [
        ["metal/relabelled.jpg", "paper/paper_02.jpg"]
    ]
    assert "- #1 metal/relabelled.jpg ~ paper/paper_02.jpg (distance " in near_outcome.report
    assert "near-duplicates across classes (1 pairs, kept)" in near_outcome.report


def test_cross_class_near_duplicates_excluded_when_params_say_so(near, tmp_path):
    result = validate(near, [], {**CFG, "exclude_near_duplicate_conflicts": True}, tmp_path)
    reasons = dict(zip(result.rejected["path"], result.rejected["reason"]))
    assert set(reasons) == {"metal/relabelled.jpg", "paper/paper_02.jpg"}
    assert reasons["metal/relabelled.jpg"].startswith(
        "possible label conflict: near-duplicate of paper/paper_02.jpg (distance "
    )
    assert reasons["paper/paper_02.jpg"].endswith(
        "in another class; excluded (validate.exclude_near_duplicate_conflicts)"
    )
    assert result.summary["near_duplicate_conflicts_excluded"] == 2
    assert result.summary["near_duplicate_groups"] == 1  # the within-class group stays


def test_pairs_match_imagehash_distances_across_blocks():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (60, 64)).astype(bool)
    bits[1::3] = bits[::3][: len(bits[1::3])] ^ (rng.random((20, 64)) < 0.05)  # close pairs
    hashes = [str(imagehash.ImageHash(b.reshape(8, 8))) for b in bits]
    found = close_pairs(hashes, 6, block=100)  # two rows a block: every block boundary crossed
    expected = [
        (i, j, imagehash.hex_to_hash(hashes[i]) - imagehash.hex_to_hash(hashes[j]))
        for i in range(60)
        for j in range(i + 1, 60)
        if imagehash.hex_to_hash(hashes[i]) - imagehash.hex_to_hash(hashes[j]) <= 6
    ]
    assert len(expected) >= 15
    assert sorted(map(tuple, found.tolist())) == expected


def run_validate_stage(data: Path, cfg: dict, workdir: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(path=str(data), classes=[])
    params["validate"] = cfg
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(workdir)
    runpy.run_path(str(repo / "stages" / "validate.py"), run_name="__main__")


def test_stage_writes_groups_and_conflict_thumbnails(near, tmp_path, monkeypatch):
    run_validate_stage(near, {**CFG, "min_images_per_class": 2}, tmp_path, monkeypatch)
    manifest = pd.read_csv(tmp_path / "data/validated/manifest.csv")
    assert {"phash", "group"} <= set(manifest.columns) and manifest["phash"].str.len().eq(16).all()
    assert (manifest["group"] == "glass/glass_00.jpg").sum() == 3
    pairs = pd.read_csv(tmp_path / "data/validated/near_duplicates.csv")
    assert len(pairs) == 3 + 1  # the three glass copies pairwise, and the cross-class pair
    metrics = json.loads((tmp_path / "metrics/validation.json").read_text())
    assert metrics["near_duplicate_label_conflicts"] == 1 and metrics["near_duplicate_groups"] == 1
    report = (tmp_path / "reports/validation/report.md").read_text()
    for png in ("label_conflicts.png", "near_duplicates.png"):
        assert f"]({png})" in report
        assert (tmp_path / "reports/validation" / png).stat().st_size > 5000


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "near_duplicate_distance",
            64,
            "validate.near_duplicate_distance must be less than or equal to 63 (got 64)",
        ),
        (
            "near_duplicate_distance",
            "4",
            "validate.near_duplicate_distance must be a valid integer",
        ),
        (
            "exclude_near_duplicate_conflicts",
            "no",
            "validate.exclude_near_duplicate_conflicts must be a valid boolean (got 'no')",
        ),
    ],
)
def test_bad_near_duplicate_params_are_named(
    near, tmp_path, monkeypatch, capsys, key, value, message
):
    with pytest.raises(SystemExit) as exit_info:
        run_validate_stage(near, {**CFG, key: value}, tmp_path, monkeypatch)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("validate: error: params.yaml: ") and message in err
    assert "\n" not in err and not (tmp_path / "data").exists()
