"""Benchmark: `/classify` latency and throughput of a real `bentoml serve` on 127.0.0.1,
against the floor of the same TFLite model invoked in-process (no HTTP, no decoding).

Run in a repo where `dvc repro` has registered a champion (BENTOML_HOME as it used).
Requests go to loopback only and are bounded in count.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def tflite_floor(repo: Path, image: bytes, n: int) -> dict[str, float]:
    os.chdir(repo)
    from wastesort.serving import ServeConfig, check_upload, load_champion

    cfg = ServeConfig.load()
    champion = load_champion(cfg)
    batch = champion.prepare([check_upload(image, cfg)])
    for _ in range(5):
        champion.predict(batch)
    t = []
    for _ in range(n):
        start = time.perf_counter()
        champion.predict(batch)
        t.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    for _ in range(n):
        champion.prepare([check_upload(image, cfg)])
    prep = (time.perf_counter() - start) * 1000 / n
    return {"tflite_invoke_ms_p50": statistics.median(t), "decode_resize_ms": prep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", default=".", help="repo with a registered champion")
    ap.add_argument("--image", required=True, help="a photo to send")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/service_latency.json")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    image = Path(args.image).read_bytes()
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.perf_counter() - started > 300:
                print("server did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.5)
        ready_s = time.perf_counter() - started
        session = requests.Session()

        def one() -> float:
            t = time.perf_counter()
            r = session.post(f"{url}/classify", files={"image": ("p.jpg", image)}, timeout=60)
            r.raise_for_status()
            return (time.perf_counter() - t) * 1000

        for _ in range(10):
            one()
        sequential = [one() for _ in range(args.requests)]

        def worker(n: int) -> list[float]:
            s = requests.Session()
            out = []
            for _ in range(n):
                t = time.perf_counter()
                s.post(f"{url}/classify", files={"image": ("p.jpg", image)},
                       timeout=60).raise_for_status()
                out.append((time.perf_counter() - t) * 1000)
            return out

        per_worker = max(1, args.requests // args.concurrency)
        start = time.perf_counter()
        with futures.ThreadPoolExecutor(args.concurrency) as pool:
            lat = [x for chunk in pool.map(worker, [per_worker] * args.concurrency) for x in chunk]
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    result = {"startup_to_ready_s": round(ready_s, 1),
              "sequential_ms_p50": round(statistics.median(sequential), 2),
              "sequential_ms_p95": round(percentile(sequential, 95), 2),
              "concurrency": args.concurrency,
              "concurrent_ms_p50": round(statistics.median(lat), 2),
              "concurrent_ms_p95": round(percentile(lat, 95), 2),
              "throughput_img_per_s": round(len(lat) / elapsed, 1),
              **{k: round(v, 2) for k, v in tflite_floor(repo, image, 100).items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
