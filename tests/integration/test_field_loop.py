"""The field loop on real components: a `bentoml serve` with capture on keeps uploads (once per
byte string), counts what it sees at `/metrics`, still answers when its folder is read-only;
`wastesort inbox` labels the photos into data/field, and `dvc repro` validates and splits them
with the main folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from tests import imagegen as g
from tests.conftest import (
    captured,
    copy_repo,
    read_only,
    repo_env,
    run,
    samples,
    serving,
    total,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def field_repo(pipeline_repo, tmp_path_factory) -> Path:
    """A copy of the tiny pipeline (git, DVC cache, MLflow db, BentoML store) with capture on."""
    copy = copy_repo(pipeline_repo, tmp_path_factory.mktemp("field") / "repo")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["serve"].update(capture="all", capture_dir="inbox")
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (copy / ".gitignore").write_text((copy / ".gitignore").read_text() + "/inbox/\n")
    return copy


def test_capture_metrics_inbox_and_the_split(field_repo, tmp_path):
    photos = g.make_class_folders(
        tmp_path / "field", {"cardboard": 2, "glass": 2, "metal": 2}, seed=500
    )
    truth = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.parent.name
        for p in sorted(photos.rglob("*.jpg"))
    }
    files = sorted(photos.rglob("*.jpg"))
    inbox = field_repo / "inbox"
    with serving(field_repo) as url:
        for path in [*files, files[0]]:  # the first one twice
            resp = requests.post(
                f"{url}/classify", files={"image": (path.name, path.read_bytes())}, timeout=60
            )
            assert resp.status_code == 200, resp.text
        bad = requests.post(f"{url}/classify", files={"image": ("x.jpg", b"junk")}, timeout=60)
        assert bad.status_code == 415
        stored = captured(inbox, 7)
        assert {p.stem for p in stored} == set(truth)  # each byte string once
        assert {p.read_bytes() for p in stored} == {p.read_bytes() for p in files}
        lines = [json.loads(t) for t in (inbox / "capture.jsonl").read_text().splitlines()]
        assert len(lines) == 7 and [line["new"] for line in lines].count(False) == 1
        assert all(line["model"]["version"] == "1" for line in lines)
        # capture must never fail an answer: a read-only folder answers 200 and counts the miss
        with read_only(inbox / "confident") as works:
            extra = g.jpeg(64, 48, seed=900)
            resp = requests.post(f"{url}/classify", files={"image": ("n.jpg", extra)}, timeout=60)
            assert resp.status_code == 200, resp.text
            captured(inbox, 8, timeout=5 if works else 20)  # a miss writes no line
            metrics = samples(requests.get(f"{url}/metrics", timeout=10).text)
    answers = total(metrics, "wastesort_answers_total", model_version="1")
    assert answers == 8
    per_label = {lab["label"] for lab, v in metrics["wastesort_answers_total"] if v > 0}
    assert per_label <= {"cardboard", "glass", "metal"} and per_label
    assert total(metrics, "wastesort_confidence_count", model_version="1") == 8
    assert total(metrics, "wastesort_rejected_uploads_total", reason="not_image") == 1
    assert total(metrics, "wastesort_model_info", version="1", alias="champion") == 1
    assert total(metrics, "wastesort_captured_total", kind="confident") == 7 + (not works)
    assert total(metrics, "wastesort_capture_missed_total", reason="unwritable") == works
    assert "bentoml_service_request_total" in "".join(metrics)  # BentoML's own beside ours

    # a person labels the photos: they move into data/field, tracked with DVC
    env = repo_env(field_repo)
    listing = json.loads(run(["wastesort", "inbox", "--json"], field_repo, env=env).stdout)
    assert len(listing) == 6
    for item in listing:
        run(["wastesort", "inbox", "label", item["sha256"][:12], truth[item["sha256"]]],
            field_repo, env=env)  # fmt: skip
    assert run(["wastesort", "inbox", "--json"], field_repo, env=env).stdout.strip() == "[]"
    field = field_repo / "data" / "field"
    assert sorted(p.parent.name for p in field.rglob("*.jpg")) == sorted(truth.values())
    assert len(pd.read_csv(field / "labels.csv")) == 6
    run(["dvc", "add", "data/field"], field_repo, env=env)
    params = yaml.safe_load((field_repo / "params.yaml").read_text())
    params["data"]["extra_paths"] = ["data/field"]
    (field_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "split"], field_repo, env=env).stdout
    assert "Running stage 'validate'" in out and "Running stage 'split'" in out
    manifest = pd.read_csv(field_repo / "data/validated/manifest.csv")
    split = pd.concat(
        pd.read_csv(field_repo / f"data/split/{n}.csv") for n in ("train", "val", "test")
    )
    for frame in (manifest, split):
        names = {Path(p).stem for p in frame["path"]}
        assert set(truth) <= names
    labelled = {Path(p).stem: lab for p, lab in zip(split["path"], split["label"])}
    assert {sha: labelled[sha] for sha in truth} == truth
    # a new field photo is noticed by `dvc repro` on its own
    g.write(field / "glass" / "new.jpg", g.jpeg(64, 48, seed=901))
    run(["dvc", "add", "data/field"], field_repo, env=env)
    again = run(["dvc", "repro", "split"], field_repo, env=env).stdout
    assert "Running stage 'validate'" in again
