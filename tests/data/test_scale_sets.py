"""benchmarks/scale.py's generated sets: the requested size, the source's class mix, and
photos distinct enough that `validate` does not group them as near-duplicates."""

from __future__ import annotations

import importlib.util
import shutil
from itertools import combinations

import pytest
from PIL import Image

from tests.conftest import REPO
from wastesort.data.near_duplicates import phash

TRASHNET = REPO.parent / "shared/data/trashnet"


def scale_module():
    spec = importlib.util.spec_from_file_location("scale", REPO / "benchmarks/scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not TRASHNET.is_dir(), reason="needs ../shared/data/trashnet")
def test_generated_set_keeps_the_class_mix_and_no_two_photos_are_near_duplicates(tmp_path):
    source = tmp_path / "source"
    for label, n in (("glass", 2), ("paper", 4)):  # few sources: each is used three times
        (source / label).mkdir(parents=True)
        for f in sorted((TRASHNET / label).glob("*.jpg"))[:n]:
            shutil.copy(f, source / label / f.name)
    (source / "LICENSE").write_text("root-level files are not photos")

    scale = scale_module()
    counts = scale.generate(source, tmp_path / "out", 18)
    assert counts == {"glass": 6, "paper": 12}
    made = sorted((tmp_path / "out").rglob("*.jpg"))
    assert len(made) == 18
    originals = scale.sources(source)
    hashes = {}
    for path in made:
        label, number = path.stem.rsplit("_", 1)
        with Image.open(originals[label][int(number) % len(originals[label])]) as original:
            size = original.size
        with Image.open(path) as image:
            assert image.size == size  # its source's size: a crop, resized back
            hashes[path] = int(phash(image.convert("RGB")), 16)
    threshold = 4  # validate.near_duplicate_distance's default
    closest = min(bin(a ^ b).count("1") for a, b in combinations(hashes.values(), 2))
    assert closest > threshold
