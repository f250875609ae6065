"""Benchmark: what the hostile requests of issue 36 cost a served worker (seconds, RSS).

Starts `bentoml serve` in a repo whose pipeline registered a champion, then
sends, one after another: a real photo, a batch of 200 1x1 PNGs, a 49-megapixel PNG, eight of
them in one batch, a 24-megapixel PNG and 32 phone-sized JPEGs in one batch (at the new
limits), 8 s with no request, a 20,000 x 20,000 PNG header, and the real photo again; for each, the
answer's status and code, its seconds and the worker's RSS after it (psutil, the largest
process under the server).

    python benchmarks/hostile.py --repo PATH [--out benchmarks/results/hostile.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402
from serving import free_port, start, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG", optimize=True)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    sys.path.insert(0, str(REPO))
    from tests.imagegen import png_header as header

    return header(width, height)


def worker_rss(server: subprocess.Popen) -> float:
    procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    return round(max(p.memory_info().rss for p in procs) / 2**30, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/hostile.json")
    args = ap.parse_args()
    repo = args.repo.resolve()
    photo = next(p for p in sorted((repo / "rawdata").rglob("*.jpg")))
    big, tiny = png(7000, 7000), png(1, 1)  # 49 megapixels in a few kilobytes
    phone = io.BytesIO()  # a 12-megapixel phone photo's size, as a JPEG
    Image.open(photo).convert("RGB").resize((4032, 3024)).save(phone, "JPEG", quality=90)
    cases = [
        ("a real photo", "/classify", [("image", photo.read_bytes())]),
        ("200 1x1 PNGs", "/classify_batch", [("images", tiny)] * 200),
        ("a 49-megapixel PNG", "/classify", [("image", big)]),
        ("eight 49-megapixel PNGs", "/classify_batch", [("images", big)] * 8),
        ("a 24-megapixel PNG", "/classify", [("image", png(6000, 4000))]),
        ("32 12-megapixel JPEGs", "/classify_batch", [("images", phone.getvalue())] * 32),
        ("(8 s with no request)", None, []),
        ("a 20,000 x 20,000 PNG header", "/classify", [("image", png_header(20_000, 20_000))]),
        ("a real photo again", "/classify", [("image", photo.read_bytes())]),
    ]
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", str(port)]
    server, ready = start(cmd, repo, f"http://127.0.0.1:{port}/readyz")
    rows = [{"case": "ready", "seconds": round(ready, 2), "rss_gib": worker_rss(server)}]
    try:
        for name, route, files in cases:
            if route is None:  # a quiet spell: the service gives back a large batch's memory
                time.sleep(8)
                rows.append({"case": name, "rss_gib": worker_rss(server)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            form = [(field, (f"{i}.png", data)) for i, (field, data) in enumerate(files)]
            t = time.perf_counter()
            resp = requests.post(f"http://127.0.0.1:{port}{route}", files=form, timeout=300)
            seconds = time.perf_counter() - t
            body = resp.json()
            rows.append(
                {
                    "case": name,
                    "request_kib": round(sum(len(d) for _, d in files) / 1024, 1),
                    "status": resp.status_code,
                    "code": body.get("code") if isinstance(body, dict) else None,
                    "seconds": round(seconds, 2),
                    "rss_gib": worker_rss(server),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop(server)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "commit": commit, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
