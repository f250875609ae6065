"""Benchmark: the served model against the usual Flask + Keras service, in one run.

Starts `bentoml serve` in a repo whose pipeline registered a champion (once per registered
file, float32 and int8), then the Flask baseline (``flask_baseline.py``, Keras
``model.predict`` per request, same registered version), each under 1 and 16 closed-loop
clients on 127.0.0.1 posting real photos (the repo's test split) for ``--seconds``; and the
floor: the same photos decoded and resized, and the registered file run by LiteRT, in one
process with no HTTP.

    python benchmarks/serving.py --repo PATH [--seconds 30]
    python benchmarks/serving.py --repo PATH --capture-only   # serve.capture's cost

``--capture-only``: the float32 service under 16 clients with ``serve.capture`` none and all,
alternating (three rounds each, after a warm-up), every upload a new byte string (a few random
bytes after the JPEG's end), so capture writes every photo as a field roll-out would.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], repo: Path, ready_url: str, **env: str) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if requests.get(ready_url, timeout=2).status_code == 200:
                return proc, time.perf_counter() - started
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.perf_counter() - started > 300:
            raise SystemExit(f"{' '.join(cmd)}: did not become ready")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(
    url: str, photos: list[bytes], clients: int, seconds: float, unique: bool = False
) -> dict[str, float]:
    """``clients`` closed-loop clients (aiohttp, one event loop, so the load generator takes
    little of the 2 cores it shares with the server), each posting the next photo as soon as
    its last answer came back; a non-200 answer or a failed request counts as an error."""
    import asyncio

    import aiohttp

    async def run() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        errors = 0

        async def post(session, photo: bytes) -> bool:
            form = aiohttp.FormData()
            form.add_field("file", photo, filename="p.jpg", content_type="image/jpeg")
            async with session.post(url, data=form) as resp:
                await resp.read()
                return resp.status == 200

        async def client(session, offset: int, deadline: float) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                photo = photos[i % len(photos)] + (os.urandom(8) if unique else b"")
                t = time.perf_counter()
                try:
                    ok = await post(session, photo)
                except aiohttp.ClientError:
                    ok = False
                latencies.append((time.perf_counter() - t) * 1000)
                errors += not ok
                i += 1

        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for photo in photos[:5]:
                assert await post(session, photo), f"{url}: warm-up request failed"
            began = time.perf_counter()
            await asyncio.gather(*(client(session, k * 7, began + seconds) for k in range(clients)))
            return latencies, errors, time.perf_counter() - began

    latencies, errors, elapsed = asyncio.run(run())
    return {
        "clients": clients,
        "images_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "requests": len(latencies),
        "errors": errors,
    }


def floor(repo: Path, photos: list[bytes], kind: str) -> dict[str, float]:
    """Decode + resize, and the registered file alone, in this process on all cores."""
    import dataclasses

    os.environ["WASTESORT_SERVE_MODEL"] = kind
    from wastesort.serving import ServeConfig, load_champion, load_upload

    cfg = dataclasses.replace(
        ServeConfig.load(repo / "params.yaml"), tflite_threads=os.cpu_count() or 1
    )
    champion = load_champion(cfg)
    t = time.perf_counter()
    batches = [load_upload(p, cfg, champion.input_size)[None] for p in photos]
    prep = (time.perf_counter() - t) * 1000 / len(photos)
    for b in batches[:5]:
        champion.predict(b)
    t = time.perf_counter()
    for b in batches:
        champion.predict(b)
    invoke = (time.perf_counter() - t) * 1000 / len(photos)
    return {
        "decode_resize_ms": round(prep, 2),
        "litert_invoke_ms": round(invoke, 2),
        "images_per_s": round(1000 / (prep + invoke), 1),
        "file_bytes": Path(champion_path(champion, kind)).stat().st_size,
    }


def champion_path(champion, kind: str) -> str:
    from wastesort.export import FILES
    from wastesort.serving.champion import bento_entry

    return bento_entry(champion.ref).path_of(FILES[kind])


def serve(
    cmd: list[str],
    repo: Path,
    ready: str,
    predict: str,
    photos: list[bytes],
    clients: list[int],
    seconds: float,
    unique: bool = False,
    **env: str,
) -> dict:
    proc, ready_s = start(cmd, repo, ready, **env)
    try:
        return {
            "start_to_ready_s": round(ready_s, 1),
            "runs": [load(predict, photos, c, seconds, unique) for c in clients],
        }
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".", help="repo with a registered champion")
    ap.add_argument("--photos", type=int, default=50, help="test-split photos to send")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--formats", default="float32,int8")
    ap.add_argument("--no-baseline", action="store_true", help="skip the Flask + Keras app")
    ap.add_argument("--capture-only", action="store_true", help="only serve.capture's cost")
    ap.add_argument("--out", default="benchmarks/results/serving.json")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    root = (repo / params["data"]["path"]).resolve()
    test = (repo / "data/split/test.csv").read_text().splitlines()[1:]
    paths = [root / line.split(",")[0] for line in sorted(test)[: args.photos]]
    photos = [p.read_bytes() for p in paths]
    here = Path(__file__).resolve().parent
    clients = [int(c) for c in args.clients.split(",")]
    serve_cfg = params["serve"]
    result: dict = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "serve": {k: serve_cfg.get(k) for k in ("workers", "tflite_threads", "max_batch_size")},
        "photos": len(photos),
        "photo_sizes": sorted({Image.open(p).size for p in paths}),
    }
    if args.capture_only:
        result["capture"] = capture_cost(repo, photos, args.seconds)
        return write(result, here, args.out)
    for kind in args.formats.split(","):
        port = free_port()
        result[f"bentoml_{kind}"] = serve(
            ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
            repo,
            f"http://127.0.0.1:{port}/readyz",
            f"http://127.0.0.1:{port}/predict",
            photos,
            clients,
            args.seconds,
            WASTESORT_SERVE_MODEL=kind,
        )
    port = free_port()
    result["flask_keras"] = (
        None
        if args.no_baseline
        else serve(
            [sys.executable, str(here / "flask_baseline.py"), "--port", str(port)],
            repo,
            f"http://127.0.0.1:{port}/ready",
            f"http://127.0.0.1:{port}/predict",
            photos,
            clients,
            args.seconds,
        )
    )
    os.chdir(repo)
    for kind in args.formats.split(","):
        result[f"floor_{kind}"] = floor(repo, photos, kind)
    return write(result, here, args.out)


def capture_cost(repo: Path, photos: list[bytes], seconds: float) -> dict:
    """Images/s with 16 clients, serve.capture none and all, alternating three rounds each
    after a warm-up server (not counted); the cost compares the medians."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="wastesort-capture-"))
    rates: dict[str, list[float]] = {"none": [], "all": []}
    kept = 0
    try:
        for mode in ("warm-up", *("none", "all") * 3):  # the first server of a run is slow
            port = free_port()
            run = serve(
                ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
                repo,
                f"http://127.0.0.1:{port}/readyz",
                f"http://127.0.0.1:{port}/predict",
                photos,
                [16],
                seconds,
                unique=True,
                WASTESORT_SERVE_MODEL="float32",
                WASTESORT_SERVE_CAPTURE="none" if mode == "warm-up" else mode,
                WASTESORT_CAPTURE_DIR=str(folder),
            )["runs"][0]
            assert run["errors"] == 0, run
            rates.setdefault(mode, []).append(run["images_per_s"])
        kept = sum(1 for p in folder.rglob("*") if p.is_file() and p.name != "capture.jsonl")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    none, keep = statistics.median(rates["none"]), statistics.median(rates["all"])
    return {
        "clients": 16,
        "images_per_s": rates,
        "photos_kept": kept,
        "cost": round(1 - keep / none, 4),
    }


def write(result: dict, here: Path, out_arg: str) -> int:
    out = Path(out_arg) if Path(out_arg).is_absolute() else here.parent / out_arg
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=list) + "\n")
    print(json.dumps(result, indent=2, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
