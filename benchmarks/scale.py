"""Benchmark: memory, disk and time per photo as the data set grows (2,000 to 15,000 photos).

Generates folder-per-class sets of each size from a real one (seeded crops, rotations, colour
shifts and JPEG re-encodes of its photos, so the copies are distinct photos, not pixel
copies), then, in a fresh clone of HEAD per size, runs `validate` to `features` and
`train` (one epoch of each phase) with `dvc repro -s STAGE` under `/usr/bin/time -v`. Reports each
stage's peak resident memory, seconds and photos/s, and the feature cache's bytes per photo.
Writes JSON (and prints a Markdown table).

    uv run python benchmarks/scale.py --data ../shared/data/trashnet --sizes 2000 5000 15000
    uv run python benchmarks/scale.py --sizes 2000 15000 --until validate  # validate alone
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pipeline import cpu_model  # noqa: E402

STAGES = ("validate", "split", "augment", "features", "train")
SUFFIXES = {".jpg", ".jpeg", ".png"}


def sources(data: Path) -> dict[str, list[Path]]:
    """The real photos to derive from, per class folder."""
    return {
        d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES)
        for d in sorted(data.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def variant(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """One new photo from ``image``: a crop of 70-95 % of each side, a rotation within 12
    degrees, per-channel colour gains and a brightness shift; and the JPEG quality to save it."""
    width, height = image.size
    scale = rng.uniform(0.70, 0.95)
    w, h = int(width * scale), int(height * scale)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    out = image.crop((left, top, left + w, top + h))
    out = out.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, expand=False)
    out = out.resize((width, height), Image.BILINEAR)
    gains = rng.uniform(0.85, 1.15, 3)
    pixels = np.asarray(out, np.float32) * gains
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.85, 1.15)))
    return out, int(rng.integers(70, 96))


def generate(data: Path, target: Path, size: int, seed: int = 0) -> dict[str, int]:
    """``size`` photos under ``target``, classes in the source's proportions."""
    classes = sources(data)
    total = sum(len(v) for v in classes.values())
    counts = {c: max(1, round(size * len(v) / total)) for c, v in classes.items()}
    counts[max(counts, key=counts.get)] += size - sum(counts.values())
    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        folder = target / label
        folder.mkdir(parents=True, exist_ok=True)
        files = classes[label]
        for i in range(n):
            with Image.open(files[i % len(files)]) as src:
                image, quality = variant(src.convert("RGB"), rng)
            image.save(folder / f"{label}_{i:05d}.jpg", quality=quality)
    return counts


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds and peak resident bytes of ``cmd``'s largest process (GNU time, else rusage)."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    start = time.perf_counter()
    if gnu_time:
        proc = subprocess.run(
            [gnu_time, "-v", *cmd], cwd=cwd, env=env, capture_output=True, text=True
        )
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        peak = int(found.group(1)) * 1024 if found else 0
    else:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def run_size(
    data: Path, size: int, work: Path, env: dict[str, str], stages: tuple[str, ...] = STAGES
) -> dict:
    photos = work / f"photos_{size}"
    started = time.perf_counter()
    counts = generate(data, photos, size)
    generated = round(time.perf_counter() - started, 1)
    clone = work / f"repo_{size}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["data"].update(path=str(photos), classes=[])
    params["finetune"].update(epochs=1, warmup_epochs=1)
    params["train"].update(epochs=1)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage_env = {**env, "PYTHONPATH": str(clone)}
    timings = {}
    for stage in stages:
        print(f"=== {size} photos: dvc repro -s {stage}", flush=True)
        timings[stage] = timed(["dvc", "repro", "-s", stage], clone, stage_env)
        timings[stage]["photos_per_second"] = round(size / timings[stage]["seconds"], 1)
        print(f"    {json.dumps(timings[stage])}", flush=True)
    finetune = clone / "metrics/finetune.json"
    tuned = json.loads(finetune.read_text()) if finetune.is_file() else {}
    cache_bytes = folder_bytes(clone / "data/features")  # also for commits without the metric
    result = {
        "photos": size,
        "classes": counts,
        "generate_seconds": generated,
        "stages": timings,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
        "feature_cache_bytes": cache_bytes,
        "feature_cache_bytes_per_photo": round(cache_bytes / size),
        "dvc_cache_bytes": folder_bytes(clone / ".dvc/cache"),
        "finetune_train_images_per_second": tuned.get("train_images_per_second"),
        "finetune_epoch_seconds": tuned.get("epoch_seconds"),
    }
    shutil.rmtree(clone)
    shutil.rmtree(photos)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/trashnet")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 15000])
    ap.add_argument(
        "--until",
        choices=STAGES,
        default=STAGES[-1],
        help="the last stage to run and measure (the ones before it run too)",
    )
    ap.add_argument("--workdir", help="generate and clone here instead of a temporary folder")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/scale.json"))
    args = ap.parse_args()
    data = Path(args.data).resolve()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wastesort-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {"cpu": cpu_model(), "data": str(data), "sizes": []}
    stages = STAGES[: STAGES.index(args.until) + 1]
    for size in args.sizes:
        results["sizes"].append(run_size(data, size, work, env, stages))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nCPU: {results['cpu']}\n")
    print("| photos | stage | seconds | photos/s | peak RSS (MB) |\n|---|---|---|---|---|")
    for r in results["sizes"]:
        for stage, s in r["stages"].items():
            print(
                f"| {r['photos']} | {stage} | {s['seconds']} | {s['photos_per_second']} | "
                f"{s['peak_rss_mb']} |"
            )
    print("\n| photos | feature cache per photo (kB) | DVC cache (MB) | fine-tuning images/s |")
    print("|---|---|---|---|")
    for r in results["sizes"]:
        print(
            f"| {r['photos']} | {r['feature_cache_bytes_per_photo'] / 1e3:.1f} | "
            f"{r['dvc_cache_bytes'] / 1e6:.0f} | {r['finetune_train_images_per_second']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
