"""`data.extra_paths`: extra folder-per-class sets (data/field) validated and split with data.path.

Real generated photos in a main folder and a field folder laid out as `wastesort inbox label`
leaves it (<class>/<sha256>.jpg and a root-level labels.csv); real validation and split.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests import imagegen as g
from tests.data.test_validation import CFG, photo, photo_folders, resized_copy, snapshot
from wastesort.config import ConfigError
from wastesort.data import splitting, validation
from wastesort.data.splitting import split_manifest
from wastesort.data.validation import DataCannotTrain, validate

REPO = Path(__file__).resolve().parents[2]
MAIN = {"glass": 10, "metal": 10, "paper": 10}
FRACTIONS = (0.2, 0.2)  # val, test: 2 of the 10 groups of a class each


def field_photo(field: Path, label: str, data: bytes) -> str:
    """Write ``data`` as the inbox does (<class>/<sha256>.jpg); its name."""
    name = f"{hashlib.sha256(data).hexdigest()}.jpg"
    g.write(field / label / name, data)
    return name


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """data/raw with 10 distinct photos a class; data/field with a resized, re-encoded twin of
    every glass photo, 3 new photos a class, a byte copy of metal_04 and labels.csv."""
    base = tmp_path_factory.mktemp("repo")
    raw = photo_folders(base / "data" / "raw", MAIN)
    field = base / "data" / "field"
    twins = {}  # field name -> the main photo it copies
    for i in range(MAIN["glass"]):
        original = (raw / "glass" / f"glass_{i:02d}.jpg").read_bytes()
        twins[field_photo(field, "glass", resized_copy(original, 0.7, 65))] = f"glass_{i:02d}"
    for ci, label in enumerate(MAIN):
        for i in range(3):
            field_photo(field, label, photo(5000 + 100 * ci + i))
    field_photo(field, "metal", (raw / "metal" / "metal_04.jpg").read_bytes())
    g.write(field / "labels.csv", b"file,label,who\n")
    g.write(field / ".DS_Store", b"\x00")
    return raw, field, twins


@pytest.fixture(scope="module")
def outcome(folders, tmp_path_factory):
    raw, field, _ = folders
    before = snapshot(field)
    result = validate(raw, [], CFG, tmp_path_factory.mktemp("docs"), [field])
    assert snapshot(field) == before, "validation must never touch an extra folder"
    return result


@pytest.fixture(scope="module")
def main_only(folders, tmp_path_factory):
    return validate(folders[0], [], CFG, tmp_path_factory.mktemp("main_docs"))


def test_extras_are_validated_into_the_manifest_relative_to_data_path(outcome, folders):
    raw, field, _ = folders
    m = outcome.manifest
    source = field.as_posix()
    extras = m[m["source"] == source]
    assert len(m) == 30 + 10 + 9 and len(extras) == 19
    assert (m.loc[m["source"] != source, "source"] == "main").all()
    assert extras["path"].str.startswith("../field/").all()
    assert all((raw / p).is_file() for p in m["path"])  # how every later stage opens them
    assert extras["label"].value_counts().to_dict() == {"glass": 13, "metal": 3, "paper": 3}
    assert outcome.can_train and "labels.csv" not in " ".join(m["path"])


def test_root_files_of_an_extra_are_ignored_and_counted_per_source(outcome, folders):
    field = folders[1].as_posix()
    note = f"{field}/labels.csv: file at the root of an extra folder (data.extra_paths)"
    assert note in outcome.report
    s = outcome.summary
    assert s["hidden_skipped"] == 1 and s["ignored"] == 1
    assert {
        k: {n: v[n] for n in ("files", "accepted", "rejected")} for k, v in s["sources"].items()
    } == {
        "main": {"files": 30, "accepted": 30, "rejected": 0},
        field: {"files": 20, "accepted": 19, "rejected": 1},
    }
    assert f"- {field}: 20 files, 19 accepted, 1 rejected" in outcome.report
    assert "- main: 30 files, 30 accepted, 0 rejected" in outcome.report


def test_byte_copy_in_an_extra_loses_to_the_main_folders_copy(outcome):
    (reason,) = outcome.rejected["reason"]
    assert outcome.rejected["path"].iloc[0].startswith("../field/metal/")
    assert reason == (
        "duplicate: byte-identical to metal/metal_04.jpg in the same class (that copy kept)"
    )


def test_near_duplicate_twins_are_grouped_across_folders(outcome):
    m = outcome.manifest
    twins = m[m["path"].str.startswith("../field/glass/")]
    group_size = m["group"].map(m["group"].value_counts())
    assert (group_size[m["path"].str.startswith("glass/")] == 2).all()
    assert (group_size[m["path"].str.startswith(("metal/", "paper/"))] == 1).all()
    assert outcome.summary["near_duplicate_groups"] == 10
    assert (group_size[twins.index] == 2).sum() == 10  # the 3 new glass photos stand alone


def test_each_field_twin_lands_in_its_main_photos_split(outcome, folders):
    _, field, twins = folders
    splits = split_manifest(outcome.manifest, *FRACTIONS, seed=0)
    where = {p: name for name, frame in splits.items() for p in frame["path"]}
    sides = {where[f"../field/glass/{name}"] for name in twins}
    for name, stem in twins.items():
        assert where[f"../field/glass/{name}"] == where[f"glass/{stem}.jpg"], stem
    assert sides == {"train", "val", "test"}  # twins of train, val and test photos alike
    accepted = set(outcome.manifest["path"])
    assert set(where) == accepted and sum(len(f) for f in splits.values()) == len(accepted)
    for frame in splits.values():
        assert set(frame["source"]) <= {"main", field.as_posix()}


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_extras_never_move_the_main_folders_photos(outcome, main_only, seed):
    before = split_manifest(main_only.manifest, *FRACTIONS, seed=seed)
    after = split_manifest(outcome.manifest, *FRACTIONS, seed=seed)
    for name in splitting.SPLITS:
        main_rows = after[name][after[name]["source"] == "main"]
        assert main_rows["path"].tolist() == before[name]["path"].tolist(), name
        assert "source" not in before[name].columns  # no extras: the same columns as before


def test_a_field_photo_keeps_its_split_as_more_arrive(outcome):
    m = outcome.manifest
    full = split_manifest(m, *FRACTIONS, seed=0)
    alone = m["group"].map(m["group"].value_counts()) == 1
    new = m[alone & (m["source"] != "main")]
    assert len(new) == 9  # the field photos that are not near-duplicates of a main photo
    fewer = split_manifest(m.drop(index=new.index[:4]), *FRACTIONS, seed=0)
    where = {p: n for n, f in full.items() for p in f["path"]}
    again = {p: n for n, f in fewer.items() for p in f["path"]}
    assert all(where[p] == again[p] for p in again)
    assert len({where[p] for p in new["path"]}) >= 2  # hashed apart, not all in one split


def test_cross_class_byte_copy_across_folders_is_a_label_conflict(tmp_path):
    raw = photo_folders(tmp_path / "raw", {"a": 3, "b": 3})
    name = field_photo(tmp_path / "field", "b", (raw / "a" / "a_01.jpg").read_bytes())
    result = validate(raw, [], CFG, tmp_path / "docs", [tmp_path / "field"])
    reasons = dict(zip(result.rejected["path"], result.rejected["reason"]))
    expected = (
        f"label conflict: byte-identical copies filed as a/a_01.jpg, ../field/b/{name}; "
        "all copies excluded"
    )
    assert reasons == {"a/a_01.jpg": expected, f"../field/b/{name}": expected}


def test_configured_classes_apply_to_extras(tmp_path):
    raw = photo_folders(tmp_path / "raw", {"a": 3, "b": 3, "c": 3})
    field_photo(tmp_path / "field", "c", photo(900))
    with pytest.raises(DataCannotTrain) as info:
        validate(raw, ["a", "b"], CFG, tmp_path / "docs", [tmp_path / "field"])
    assert str(info.value) == (
        f"data.extra_paths: {(tmp_path / 'field').as_posix()}/c/ is not a class folder "
        "(the classes: a, b); rename or move it"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        ("nope", "params.yaml: data.extra_paths: folder not found: {base}/nope"),
        ("labels.csv", "params.yaml: data.extra_paths: not a folder: {base}/labels.csv"),
        (
            "raw/a",
            "params.yaml: data.extra_paths: {base}/raw/a overlaps data.path ({base}/raw); "
            "each folder may be listed once, and none inside another",
        ),
        (
            ".",
            "params.yaml: data.extra_paths: {base} overlaps data.path ({base}/raw); "
            "each folder may be listed once, and none inside another",
        ),
        ("field/plastik", None),
    ],
)
def test_bad_extra_paths_are_one_line_errors(tmp_path, extra, message):
    raw = photo_folders(tmp_path / "raw", {"a": 2, "b": 2})
    g.write(tmp_path / "labels.csv", b"x\n")
    field_photo(tmp_path / "field", "plastik", photo(7))
    folder = tmp_path / extra
    if message is None:  # an unknown class folder inside an extra
        folder = tmp_path / "field"
        message = (
            "data.extra_paths: {base}/field/plastik/ is not a class folder "
            "(the classes: a, b); rename or move it"
        )
    kind = ConfigError if message.startswith("params.yaml") else DataCannotTrain
    with pytest.raises(kind) as info:
        validate(raw, [], CFG, tmp_path / "docs", [folder])
    assert str(info.value) == message.format(base=tmp_path.as_posix())
    assert not (tmp_path / "docs").exists()


def test_the_same_extra_twice_is_refused(tmp_path):
    raw = photo_folders(tmp_path / "raw", {"a": 2, "b": 2})
    field_photo(tmp_path / "field", "a", photo(7))
    with pytest.raises(ConfigError, match="field overlaps data.extra_paths entry .*field; each"):
        validate(raw, [], CFG, tmp_path / "docs", [tmp_path / "field", tmp_path / "field"])


def test_symlinked_data_path_still_opens_extras(tmp_path):
    """The manifest path is computed on real paths: `data/raw/..` is the link target's parent."""
    store = photo_folders(tmp_path / "store" / "trashnet", {"a": 3, "b": 3})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(store, target_is_directory=True)
    field_photo(tmp_path / "data" / "field", "a", photo(77))
    result = validate(
        tmp_path / "data" / "raw", [], CFG, tmp_path / "docs", [tmp_path / "data/field"]
    )
    extra = result.manifest[result.manifest["source"] != "main"]["path"].iloc[0]
    assert (tmp_path / "data" / "raw" / extra).is_file()


def test_main_source_names_agree():
    assert validation.MAIN == splitting.MAIN == "main"


def write_params(workdir: Path, extra_paths: list[str]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"path": "data/raw", "classes": [], "extra_paths": extra_paths}
    params["validate"] = CFG
    params["split"].update(val_fraction=FRACTIONS[0], test_fraction=FRACTIONS[1], seed=0)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(name: str) -> None:
    runpy.run_path(str(REPO / "stages" / f"{name}.py"), run_name="__main__")


def test_stages_carry_the_source_through(folders, tmp_path, monkeypatch, capsys):
    raw, field, twins = folders
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(raw, target_is_directory=True)
    (tmp_path / "data" / "field").symlink_to(field, target_is_directory=True)
    write_params(tmp_path, ["data/field"])
    monkeypatch.chdir(tmp_path)
    run_stage("validate")
    run_stage("split")
    out = capsys.readouterr().out
    assert "validate: data/field: 19 accepted, 1 rejected" in out
    assert "from data.extra_paths: train " in out
    manifest = pd.read_csv("data/validated/manifest.csv")
    assert manifest["source"].value_counts().to_dict() == {"main": 30, "data/field": 19}
    metrics = json.loads(Path("metrics/validation.json").read_text())
    assert metrics["sources"]["data/field"]["accepted"] == 19
    splits = {n: pd.read_csv(f"data/split/{n}.csv") for n in splitting.SPLITS}
    assert sum((f["source"] == "data/field").sum() for f in splits.values()) == 19
    where = {p: n for n, f in splits.items() for p in f["path"]}
    for name, stem in twins.items():
        assert where[f"../field/glass/{name}"] == where[f"glass/{stem}.jpg"]


def test_stage_without_extras_writes_no_source_in_the_splits(folders, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(folders[0], target_is_directory=True)
    write_params(tmp_path, [])
    monkeypatch.chdir(tmp_path)
    run_stage("validate")
    run_stage("split")
    assert set(pd.read_csv("data/validated/manifest.csv")["source"]) == {"main"}
    assert "sources" not in json.loads(Path("metrics/validation.json").read_text())
    header = Path("data/split/train.csv").read_text().splitlines()[0]
    assert header == "path,label,sha256,group"


def test_stage_names_a_missing_extra_in_one_line(folders, tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(folders[0], target_is_directory=True)
    write_params(tmp_path, ["data/field"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_stage("validate")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == "validate: error: params.yaml: data.extra_paths: folder not found: data/field"
    assert not (tmp_path / "data" / "validated").exists()
