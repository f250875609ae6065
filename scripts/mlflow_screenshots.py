"""Screenshots of what a user sees in the MLflow UI of a trained repo: the runs table, the
compare view of the newest runs and a model version page (docs/img/mlflow_*.png).

    uv run python scripts/mlflow_screenshots.py --repo . --runs 3 --version 2

Starts a real `mlflow ui` on the repo's sqlite store (127.0.0.1, a free port) and drives Debian's
Chromium (`make browser`) headless with Playwright."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("."))
    ap.add_argument("--runs", type=int, default=3, help="the newest N runs go side by side")
    ap.add_argument("--version", default=None, help="the model version page (default: newest)")
    ap.add_argument("--experiment", default="wastesort")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    from mlflow import MlflowClient
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    uri = f"sqlite:///{(args.repo / 'mlflow.db').resolve()}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        sys.exit(f"mlflow_screenshots: no experiment {args.experiment!r} in {uri}")
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=args.runs
    )
    versions = client.search_model_versions("name = 'wastesort'")
    version = args.version or max(int(v.version) for v in versions)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(port)],
        cwd=args.repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        ids = json.dumps([r.info.run_id for r in runs])
        newest = runs[0].info.run_name
        # (file, path, text to wait for, viewport height, switch to turn on, text at the top)
        pages = [
            (
                "mlflow_runs.png",
                f"/#/experiments/{experiment.experiment_id}/runs",
                newest,
                900,
                None,
                "Training runs",
            ),
            (
                "mlflow_compare.png",
                f"/#/compare-runs?runs={quote(ids)}"
                f"&experiments={quote(json.dumps([experiment.experiment_id]))}",
                "Run details",
                3000,
                "Show diff only",
                "Comparing",
            ),
            (
                "mlflow_version.png",
                f"/#/models/wastesort/versions/{version}",
                "Tags",
                1000,
                None,
                "Registered Models",
            ),
        ]
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            for name, path, text, height, switch, top in pages:
                page = browser.new_page(viewport={"width": 1600, "height": height})
                page.goto(base + path, wait_until="load")  # the UI polls: never network-idle
                page.get_by_text(text).first.wait_for(timeout=120_000)
                close = page.get_by_role("button", name="Close")  # the assistant's side panel
                if close.count():
                    close.first.click()
                if switch and page.get_by_text(switch).count():
                    for toggle in page.get_by_text(switch).all():
                        toggle.click()
                if name == "mlflow_compare.png":  # the runs' confusion matrices side by side
                    for picked in page.get_by_text("confusion_matrix.png", exact=True).all():
                        try:
                            picked.click(timeout=5_000)
                        except PlaywrightError:  # a hidden copy of the name: try the next
                            continue
                time.sleep(8)  # charts, tables and images draw after their data arrives
                page.get_by_text(top).first.scroll_into_view_if_needed()
                page.screenshot(path=str(args.out / name), full_page=True)
                page.close()
                print(f"mlflow_screenshots: {args.out / name} ({base + path})")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
