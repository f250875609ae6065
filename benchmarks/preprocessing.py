"""Benchmark: does decoding large JPEGs at a reduced DCT scale (Pillow's ``draft``) change the
answers? The test split's photos are upscaled to phone size (4x, JPEG quality 95) and
classified by the registered float32 file twice: decoded in full, and through
``preprocess.load_for_model`` (which drafts). Reports accuracy both ways, agreement, and the
time per photo; the rule is at most 0.3 points of accuracy.

    python benchmarks/preprocessing.py --repo PATH [--scale 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/preprocessing.json")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    import yaml

    from wastesort import images, preprocess
    from wastesort.serving import ServeConfig, load_champion

    params = yaml.safe_load(Path("params.yaml").read_text())
    root = (repo / params["data"]["path"]).resolve()
    rows = [line.split(",") for line in Path("data/split/test.csv").read_text().splitlines()[1:]]
    cfg = ServeConfig.load()
    champion = load_champion(cfg)
    size, labels = champion.input_size, champion.labels
    truth = np.array([labels.index(r[1]) for r in rows])
    big = []
    for r in rows:
        img = images.decode((root / r[0]).read_bytes(), cfg.max_pixels).image
        img = img.resize((img.width * args.scale, img.height * args.scale), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95)
        big.append(buf.getvalue())
    result = {"photos": len(rows), "photo_size": list(Image.open(io.BytesIO(big[0])).size)}
    for name, load in (
        (
            "full_decode",
            lambda d: preprocess.resize(images.decode(d, cfg.max_pixels).array(), size),
        ),
        ("draft", lambda d: preprocess.load_for_model(d, cfg.max_pixels, size)),
    ):
        t = time.perf_counter()
        batch = np.stack([load(d) for d in big])
        ms = (time.perf_counter() - t) * 1000 / len(big)
        p = champion.model.predict_in_chunks(batch).argmax(axis=1)
        result[name] = {
            "accuracy": round(float(np.mean(p == truth)), 4),
            "decode_resize_ms": round(ms, 1),
        }
        result[name + "_pred"] = p
    result["agreement"] = round(
        float(np.mean(result.pop("full_decode_pred") == result.pop("draft_pred"))), 4
    )
    original = np.stack(
        [preprocess.load_for_model((root / r[0]).read_bytes(), cfg.max_pixels, size) for r in rows]
    )
    result["original_photos_accuracy"] = round(
        float(np.mean(champion.model.predict_in_chunks(original).argmax(axis=1) == truth)), 4
    )
    out = (
        Path(args.out)
        if Path(args.out).is_absolute()
        else Path(__file__).resolve().parent.parent / args.out
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
