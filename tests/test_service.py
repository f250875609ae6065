"""The served model: a real `bentoml serve` process on 127.0.0.1 over the pipeline's champion,
real uploads over HTTP, the CLI and the Keras model agreeing, and the page in Chromium."""
from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests import imagegen as g
from tests.conftest import free_port, repo_env, run, stop, wait_http

pytestmark = pytest.mark.slow
LABELS = ["cardboard", "glass", "metal"]


@pytest.fixture(scope="module")
def server(pipeline_repo):
    """`bentoml serve` right after `dvc repro`, with no other command."""
    port = free_port()
    proc = subprocess.Popen(["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=pipeline_repo, env=repo_env(pipeline_repo),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc, timeout=240)
        yield url
    finally:
        stop(proc)


def photo(repo: Path, label: str = "glass") -> Path:
    return sorted((repo / "rawdata" / label).iterdir())[0]


def classify(url: str, data: bytes, name: str = "photo.jpg") -> requests.Response:
    return requests.post(f"{url}/classify", files={"image": (name, data)}, timeout=60)


def assert_answer(body: dict) -> None:
    assert set(body) == {"label", "confidence", "stream", "probabilities"}
    assert list(body["probabilities"]) == LABELS
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    streams = {"cardboard": "paper_and_cardboard", "glass": "glass", "metal": "metals"}
    assert body["stream"] == streams[body["label"]]


def test_health_and_openapi(server):
    assert requests.get(f"{server}/livez", timeout=10).status_code == 200
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200
    spec = requests.get(f"{server}/docs.json", timeout=10).json()
    assert {"/classify", "/classify_batch"} <= set(spec["paths"])
    assert requests.get(f"{server}/docs", timeout=10).status_code == 200


def test_jpeg_and_png_uploads(server, pipeline_repo):
    jpeg = photo(pipeline_repo).read_bytes()
    png = g.encode(Image.open(io.BytesIO(jpeg)), "PNG")
    answers = []
    for data, name in ((jpeg, "a.jpg"), (png, "a.png")):
        resp = classify(server, data, name)
        assert resp.status_code == 200, resp.text
        assert_answer(resp.json())
        answers.append(resp.json()["probabilities"])
    # lossless PNG of the decoded JPEG: the same pixels, so the same answer
    assert answers[0] == pytest.approx(answers[1], abs=1e-5)


@pytest.mark.parametrize("name, data", [
    ("gray.jpg", g.grayscale_jpeg()), ("rgba.png", g.rgba_png()), ("cmyk.jpg", g.cmyk_jpeg()),
    ("deep.png", g.png16()), ("animated.gif", g.animated_gif()),
])
def test_converted_modes_are_accepted(server, name, data):
    resp = classify(server, data, name)
    assert resp.status_code == 200, resp.text
    assert_answer(resp.json())


def test_exif_orientation_is_honoured(server, pipeline_repo):
    img = Image.open(photo(pipeline_repo, "metal"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    tagged = g.encode(img, "PNG", exif=exif.tobytes())
    upright = g.encode(img.transpose(Image.Transpose.ROTATE_270), "PNG")
    unrotated = g.encode(img, "PNG")
    p_tagged = classify(server, tagged, "t.png").json()["probabilities"]
    assert p_tagged == pytest.approx(classify(server, upright, "u.png").json()["probabilities"],
                                     abs=1e-5)
    assert p_tagged != pytest.approx(classify(server, unrotated, "n.png").json()["probabilities"],
                                     abs=1e-5)


@pytest.mark.parametrize("name, data, status, code, words", [
    ("zero.jpg", b"", 400, "empty", "image: empty file (0 bytes)"),
    ("notes.jpg", b"just some text\n", 415, "not_image", "image: not an image"),
    ("cut.jpg", g.truncated_jpeg(), 422, "corrupt", "image: corrupt or truncated image data"),
    ("icon.ico", g.encode(Image.new("RGB", (48, 48)), "ICO"), 415, "unsupported",
     "image: unsupported image format ICO"),
    ("big.jpg", b"\xff" * (10 * 1024 * 1024 + 1), 413, "too_large",
     "image: upload of 10,485,761 bytes is over the limit of 10,485,760 bytes"),
    ("huge.jpg", b"\xff" * (11 * 1024 * 1024), 413, "too_large", "image: request of "),
    ("bomb.png", g.bomb_png(8000), 413, "bomb", "image: decompression bomb: 8000x8000"),
])
def test_bad_uploads_get_a_clear_4xx(server, name, data, status, code, words):
    resp = classify(server, data, name)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code and body["error"].startswith(words)


def test_missing_field_empty_body_and_wrong_encoding_are_4xx(server):
    resp = requests.post(f"{server}/classify", timeout=30)
    assert resp.status_code == 400
    assert resp.json() == {"error": "image: the request has no body", "code": "empty"}
    resp = requests.post(f"{server}/classify", files={"photo": ("a.jpg", g.jpeg())}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["error"] == "image: no form field 'image' (fields sent: photo)"
    resp = requests.post(f"{server}/classify", timeout=30,
                         files={"image": ("a.jpg", g.jpeg()), "extra": ("b.jpg", g.jpeg())})
    assert resp.status_code == 400 and "unexpected form field(s) extra" in resp.json()["error"]
    resp = requests.post(f"{server}/classify", data={"image": "not a file"}, timeout=30)
    assert resp.status_code in (400, 415) and resp.json()["error"].startswith("image: ")
    resp = requests.post(f"{server}/classify", data=g.jpeg(), timeout=30,
                         headers={"Content-Type": "image/jpeg"})
    assert resp.status_code == 415 and resp.json()["code"] == "not_multipart"
    assert "curl -F image=@photo.jpg" in resp.json()["error"]
    resp = requests.post(f"{server}/classify_batch", json={"images": []}, timeout=30)
    assert resp.status_code == 415 and resp.json()["error"].startswith("images: ")


def test_server_survives_bad_input(server, pipeline_repo):
    for data in (b"", b"junk", g.truncated_jpeg(), g.bomb_png(8000)):
        classify(server, data)
    assert requests.get(f"{server}/livez", timeout=10).status_code == 200
    assert classify(server, photo(pipeline_repo).read_bytes()).status_code == 200


def test_batch_matches_single(server, pipeline_repo):
    files = [photo(pipeline_repo, c) for c in LABELS]
    resp = requests.post(f"{server}/classify_batch", timeout=60,
                         files=[("images", (f.name, f.read_bytes())) for f in files])
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    for f, r in zip(files, results):
        single = classify(server, f.read_bytes()).json()
        assert r["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    bad = requests.post(f"{server}/classify_batch", timeout=60, files=[
        ("images", ("ok.jpg", files[0].read_bytes())), ("images", ("bad.jpg", b"nope"))])
    assert bad.status_code == 415 and bad.json()["error"].startswith("images[1]")


def test_service_cli_and_keras_agree(server, pipeline_repo):
    import keras

    from wastesort.images import decode

    path = photo(pipeline_repo, "cardboard")
    served = classify(server, path.read_bytes()).json()["probabilities"]
    cli = run(["wastesort", "predict", "--json", str(path)], pipeline_repo,
              env=repo_env(pipeline_repo))
    cli_probs = json.loads(cli.stdout)[0]["probabilities"]
    model = keras.models.load_model(pipeline_repo / "models/model.keras")
    raw = decode(path.read_bytes(), 10**8).array().astype(np.float32)[None]
    direct = dict(zip(LABELS, np.asarray(model(raw, training=False))[0].tolist()))
    assert cli_probs == pytest.approx(served, abs=1e-5)
    assert direct == pytest.approx(served, abs=1e-5)
    assert max(served.values()) < 0.999  # a real, non-degenerate answer


def test_cli_table_folder_and_errors(pipeline_repo, tmp_path):
    folder = tmp_path / "photos"
    for label in LABELS:
        g.write(folder / f"{label}.jpg", photo(pipeline_repo, label).read_bytes())
    g.write(folder / "broken.jpg", b"not a photo")
    proc = run(["wastesort", "predict", str(folder), str(tmp_path / "missing.jpg")],
               pipeline_repo, env=repo_env(pipeline_repo), check=False)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["path", "label", "confidence", "stream"]
    assert len(lines) == 5 and re.search(r"broken\.jpg\s+error: not an image", proc.stdout)
    assert "missing.jpg: no such file or folder" in proc.stderr
    assert "classifying" in proc.stderr  # progress bar for a folder


def test_upload_page_in_chromium(server, pipeline_repo, tmp_path):
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 900, "height": 900})
        page.goto(server + "/")
        page.set_input_files("#file", str(photo(pipeline_repo, "glass")))
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        label = page.inner_text("#label")
        bars = page.locator(".bar").count()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert label.lower().replace(" ", "_") in LABELS and bars == len(LABELS)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape[1] == 900 and img.std() > 10  # a rendered page, not a blank one


def test_bentoml_build_packs_service_and_champion(pipeline_repo):
    out = run(["bentoml", "build"], pipeline_repo, env=repo_env(pipeline_repo)).stdout
    assert "Successfully built" in out
    bentos = json.loads(run(["bentoml", "list", "-o", "json"], pipeline_repo,
                            env=repo_env(pipeline_repo)).stdout)
    assert [b["tag"].split(":")[0] for b in bentos] == ["wastesort"]
    receipt = json.loads((pipeline_repo / "registry/receipt.json").read_text())
    info = json.loads(run(["bentoml", "get", bentos[0]["tag"], "-o", "json"], pipeline_repo,
                          env=repo_env(pipeline_repo)).stdout)
    models = [m["tag"] for service in info["services"] for m in service["models"]]
    assert models == [receipt["bento_model"]]
