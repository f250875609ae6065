"""The real `features` stage on generated photos: bounded memory, bytes per photo, and the
disk check, each run in a subprocess as DVC runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests import imagegen as g
from tests.conftest import REPO, tool_env
from wastesort import artifacts, features
from wastesort.augmentation import make_plan

# Runs a stage script and prints the peak resident memory of its process (kB) last.
PEAK_RSS = (
    "import resource, runpy, sys\n"
    "try:\n"
    "    runpy.run_path(sys.argv[1], run_name='__main__')\n"
    "finally:\n"
    "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
)


def stage_repo(root: Path, per_class: int, variants: int = 4) -> Path:
    """A work folder at the `features` stage: params, split manifests and the augment plan."""
    photos = g.make_class_folders(root / "raw", {c: per_class for c in ("a", "b", "c")})
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(path=str(photos), classes=[])
    params["backbone"].update(weights="none", image_size=224, batch_size=16)
    params["augment"]["variants_per_image"] = variants
    work = root / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    paths = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    parts = {
        "train": paths[0::5] + paths[1::5] + paths[2::5],
        "val": paths[3::5],
        "test": paths[4::5],
    }
    for name, part in parts.items():
        frame = pd.DataFrame(
            {"path": part, "label": [p.split("/")[0] for p in part], "width": 64, "height": 48}
        )
        artifacts.write_csv(work / f"data/split/{name}.csv", frame)
    plan = make_plan(pd.read_csv(work / "data/split/train.csv"), params["augment"])
    artifacts.write_csv(work / "data/augment/plan.csv", plan)
    return work


def run_features(work: Path) -> tuple[subprocess.CompletedProcess, int]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(REPO / "stages/features.py")],
        cwd=work,
        env=tool_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    peak = int(proc.stdout.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) * 1024
    return proc, peak


@pytest.mark.slow
def test_memory_stays_flat_as_the_photos_grow_and_bytes_per_photo_are_reported(tmp_path):
    peaks, caches = [], []
    for per_class in (8, 96):
        work = stage_repo(tmp_path / str(per_class), per_class)
        proc, peak = run_features(work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        cache = sum(f.stat().st_size for f in (work / "data/features").iterdir())
        report = json.loads((work / "metrics/features.json").read_text())
        assert report["photos"] == 3 * per_class
        assert report["bytes"] == cache
        assert report["bytes_per_photo"] == round(cache / (3 * per_class))
        train = features.load(work / "data/features", "train")
        assert len(train["features"]) == report["splits"]["train"]["rows"]
        assert (train["variants"] > 0).sum() == 4 * (train["variants"] == 0).sum()
        assert "img/s" in proc.stderr  # the progress bar's rate (and its ETA)
        peaks.append(peak)
        caches.append(cache)
    # 12 times the photos: about 150 MB more cache. Holding it would add at least that much
    # resident memory; streaming it adds a small fraction (the index lists, allocator noise).
    assert caches[1] - caches[0] > 120e6
    assert peaks[1] - peaks[0] < 0.2 * (caches[1] - caches[0]), (peaks, caches)


def test_a_cache_that_would_not_fit_the_disk_stops_the_stage_in_one_line(tmp_path):
    work = stage_repo(tmp_path, 4)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["backbone"]["image_size"] = 20000  # 1.2 GB a row: no disk here holds 2 x 36 rows
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    proc, _ = run_features(work)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("features: error: data/features: the feature cache needs ")
    assert "is free there" in errors[0]
    assert not (work / "data/features").exists() or not any((work / "data/features").iterdir())
