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
import yaml
from PIL import Image

from tests import imagegen as g
from tests.conftest import (
    REPO,
    VENV_BIN,
    copy_repo,
    free_port,
    overlaps,
    repo_env,
    run,
    samples,
    server_processes,
    serving,
    stop,
    total,
    wait_http,
)

pytestmark = pytest.mark.slow
LABELS = ["cardboard", "glass", "metal"]


@pytest.fixture(scope="module")
def server(pipeline_repo):
    """`bentoml serve` right after `dvc repro`, with no other command."""
    with serving(pipeline_repo) as url:
        yield url


def photo(repo: Path, label: str = "glass") -> Path:
    return sorted((repo / "rawdata" / label).iterdir())[0]


def classify(url: str, data: bytes, name: str = "photo.jpg") -> requests.Response:
    return requests.post(f"{url}/classify", files={"image": (name, data)}, timeout=60)


def assert_answer(body: dict, labels: list[str] = LABELS) -> None:
    assert set(body) == {"label", "confidence", "uncertain", "stream", "probabilities", "model"}
    assert body["uncertain"] is False  # the tiny pipeline's serve.min_confidence is 0
    assert body["model"]["name"] == "wastesort" and body["model"]["version"] == "1"
    assert body["model"]["alias"] == "champion" and body["model"]["format"] == "float32"
    assert list(body["probabilities"]) == labels
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    streams = {"cardboard": "paper_and_cardboard", "glass": "glass", "metal": "metals"}
    assert body["stream"] == streams[body["label"]]


def test_health_and_openapi(server):
    assert requests.get(f"{server}/livez", timeout=10).status_code == 200
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200
    spec = requests.get(f"{server}/docs.json", timeout=10).json()
    assert {"/classify", "/classify_batch", "/predict", "/about"} <= set(spec["paths"])
    assert requests.get(f"{server}/docs", timeout=10).status_code == 200


def test_predict_takes_file_or_image_like_flask_services(server, pipeline_repo):
    jpeg = photo(pipeline_repo).read_bytes()
    reference = classify(server, jpeg).json()
    for field in ("file", "image"):
        resp = requests.post(f"{server}/predict", files={field: ("a.jpg", jpeg)}, timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json() == reference
    both = requests.post(
        f"{server}/predict", timeout=60, files={"file": ("a.jpg", jpeg), "image": ("b.jpg", jpeg)}
    )
    assert both.status_code == 400 and both.json()["code"] == "bad_form"
    bad = requests.post(f"{server}/predict", files={"file": ("x.jpg", b"junk")}, timeout=60)
    assert bad.status_code == 415 and bad.json()["error"].startswith("file: not an image")
    other = requests.post(f"{server}/predict", files={"photo": ("a.jpg", jpeg)}, timeout=60)
    assert other.status_code == 400 and "'file' or 'image'" in other.json()["error"]


def test_no_tensorflow_in_any_server_process(server):
    family = server_processes(server)
    assert family, "the bentoml serve process was not found"
    assert len(family) >= 2  # the CLI and its service worker
    for proc in family.values():
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "tensorflow" not in maps.lower(), proc.cmdline()
    # the model worker runs the TFLite file under LiteRT
    assert any("ai_edge_litert" in Path(f"/proc/{p}/maps").read_text() for p in family)


def test_a_photo_costs_the_workers_few_page_faults(server):
    """Each worker sets malloc for same-sized requests (`serving.heap`): a photo's arrays come
    from the heap and are reused, not fresh mmaps the kernel zero-fills page by page (the
    bound sits between the counts with and without it: BENCHMARKS.md, Serving)."""
    jpeg = g.jpeg(512, 384)  # TrashNet's size: its decoded array alone is 144 pages

    def faults() -> int:  # minor page faults, /proc/PID/stat's tenth field
        return sum(
            int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
            for pid in server_processes(server)
        )

    for _ in range(5):
        assert classify(server, jpeg).status_code == 200
    before = faults()
    for _ in range(40):
        assert classify(server, jpeg).status_code == 200
    assert (faults() - before) / 40 < 500


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


@pytest.mark.parametrize(
    "name, data",
    [
        ("gray.jpg", g.grayscale_jpeg()),
        ("rgba.png", g.rgba_png()),
        ("cmyk.jpg", g.cmyk_jpeg()),
        ("deep.png", g.png16()),
        ("animated.gif", g.animated_gif()),
    ],
)
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
    assert p_tagged == pytest.approx(
        classify(server, upright, "u.png").json()["probabilities"], abs=1e-5
    )
    assert p_tagged != pytest.approx(
        classify(server, unrotated, "n.png").json()["probabilities"], abs=1e-5
    )


@pytest.mark.parametrize(
    "name, data, status, code, words",
    [
        ("zero.jpg", b"", 400, "empty", "image: empty file (0 bytes)"),
        ("notes.jpg", b"just some text\n", 415, "not_image", "image: not an image"),
        ("cut.jpg", g.truncated_jpeg(), 422, "corrupt", "image: corrupt or truncated image data"),
        (
            "icon.ico",
            g.encode(Image.new("RGB", (48, 48)), "ICO"),
            415,
            "unsupported",
            "image: unsupported image format ICO",
        ),
        (
            "big.jpg",
            b"\xff" * (10 * 1024 * 1024 + 1),
            413,
            "too_large",
            "image: upload of 10,485,761 bytes is over the limit of 10,485,760 bytes",
        ),
        ("huge.jpg", b"\xff" * (11 * 1024 * 1024), 413, "too_large", "image: request of "),
        ("bomb.png", g.bomb_png(8000), 413, "bomb", "image: decompression bomb: 8000x8000"),
    ],
)
@pytest.mark.parametrize(
    "route, field", [("/classify", "image"), ("/predict", "file"), ("/predict", "image")]
)
def test_bad_uploads_get_a_clear_4xx(server, route, field, name, data, status, code, words):
    resp = requests.post(f"{server}{route}", files={field: (name, data)}, timeout=60)
    assert resp.status_code == status, resp.text
    body = resp.json()
    # /predict names the field the photo was sent in, except where the request is refused on
    # its length alone, before the form is read (then it names its main field, `file`)
    sent = "file" if words.startswith("image: request of") and route == "/predict" else field
    expected = words.replace("image:", f"{sent}:", 1)
    assert body["code"] == code and body["error"].startswith(expected)


def test_missing_field_empty_body_and_wrong_encoding_are_4xx(server):
    resp = requests.post(f"{server}/classify", timeout=30)
    assert resp.status_code == 400
    assert resp.json() == {"error": "image: the request has no body", "code": "empty"}
    resp = requests.post(f"{server}/classify", files={"photo": ("a.jpg", g.jpeg())}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["error"] == "image: no form field 'image' (fields sent: photo)"
    resp = requests.post(
        f"{server}/classify",
        timeout=30,
        files={"image": ("a.jpg", g.jpeg()), "extra": ("b.jpg", g.jpeg())},
    )
    assert resp.status_code == 400 and "unexpected form field(s) extra" in resp.json()["error"]
    resp = requests.post(f"{server}/classify", data={"image": "not a file"}, timeout=30)
    assert resp.status_code in (400, 415) and resp.json()["error"].startswith("image: ")
    resp = requests.post(
        f"{server}/classify", data=g.jpeg(), timeout=30, headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status_code == 415 and resp.json()["code"] == "not_multipart"
    assert "curl -F image=@photo.jpg" in resp.json()["error"]
    resp = requests.post(f"{server}/classify_batch", json={"images": []}, timeout=30)
    assert resp.status_code == 415 and resp.json()["error"].startswith("images: ")
    resp = requests.post(f"{server}/predict", timeout=30)
    assert resp.status_code == 400
    assert resp.json() == {"error": "file: the request has no body", "code": "empty"}
    resp = requests.post(
        f"{server}/predict", data=g.jpeg(), timeout=30, headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status_code == 415 and "curl -F file=@photo.jpg" in resp.json()["error"]
    resp = requests.post(f"{server}/predict", data={"file": "not a file"}, timeout=30)
    assert resp.status_code in (400, 415) and resp.json()["error"].startswith("file: ")


def test_server_survives_bad_input(server, pipeline_repo):
    for data in (b"", b"junk", g.truncated_jpeg(), g.bomb_png(8000)):
        classify(server, data)
    assert requests.get(f"{server}/livez", timeout=10).status_code == 200
    assert classify(server, photo(pipeline_repo).read_bytes()).status_code == 200


def test_hostile_requests_get_a_4xx_naming_the_setting_never_a_500(server):
    """What a hostile tester found (issue 36): each now a one-line 4xx, or the answer."""
    about = requests.post(
        f"{server}/about", data=b"--x", headers={"Content-Type": "multipart/form-data"}, timeout=30
    )  # a multipart type with no boundary made /about answer 500
    assert about.status_code == 200 and about.json()["labels"] == LABELS
    many = [("images", (f"{i}.jpg", g.jpeg(40, 40, seed=i))) for i in range(33)]
    resp = requests.post(f"{server}/classify_batch", files=many, timeout=60)
    assert resp.status_code == 413 and resp.json() == {
        "error": "images: 33 files in one request, over the limit of 32 "
        "(serve.max_images_per_request)",
        "code": "too_many",
    }
    assert requests.post(f"{server}/classify_batch", files=many[:32], timeout=60).ok
    cases = [
        (
            g.png(1, 1),
            422,
            "too_small",
            "image: image of 1x1 pixels is under the minimum side of 32 px (validate.min_side)",
        ),
        (
            g.png_header(20_000, 20_000),
            413,
            "bomb",
            "image: decompression bomb: 400,000,000 "
            "pixels, over the limit of 25,000,000 (serve.max_pixels)",
        ),
    ]
    for data, status, code, error in cases:
        resp = classify(server, data, "x.png")
        assert (resp.status_code, resp.json()) == (status, {"error": error, "code": code})


def test_the_openapi_schema_says_what_the_service_does(server, tmp_path):
    """schemathesis, every check, 50 examples per operation, against the real service: no
    server error, no undocumented status, no schema-valid request refused for its form (the
    repo's schemathesis.toml says which refusals a schema cannot express), none accepted
    that breaks it."""
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "--config-file",
            str(REPO / "schemathesis.toml"),
            "run",
            f"{server}/docs.json",
            "--checks",
            "all",
            "--max-examples",
            "50",
            "--seed",
            "36",
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "8 passed" in result.stdout  # every operation was tested
    log = server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def test_batch_matches_single(server, pipeline_repo):
    files = [photo(pipeline_repo, c) for c in LABELS]
    resp = requests.post(
        f"{server}/classify_batch",
        timeout=60,
        files=[("images", (f.name, f.read_bytes())) for f in files],
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    for f, r in zip(files, results):
        single = classify(server, f.read_bytes()).json()
        assert r["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    bad = requests.post(
        f"{server}/classify_batch",
        timeout=60,
        files=[("images", ("ok.jpg", files[0].read_bytes())), ("images", ("bad.jpg", b"nope"))],
    )
    assert bad.status_code == 415 and bad.json()["error"].startswith("images[1]")


def test_service_cli_and_keras_agree(server, pipeline_repo):
    import keras

    from wastesort.images import decode

    path = photo(pipeline_repo, "cardboard")
    served = classify(server, path.read_bytes()).json()["probabilities"]
    cli = run(
        ["wastesort", "predict", "--json", str(path)], pipeline_repo, env=repo_env(pipeline_repo)
    )
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
    proc = run(
        ["wastesort", "predict", str(folder), str(tmp_path / "missing.jpg")],
        pipeline_repo,
        env=repo_env(pipeline_repo),
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["path", "label", "confidence", "stream"]
    assert len(lines) == 5 and re.search(r"broken\.jpg\s+error: not an image", proc.stdout)
    assert "missing.jpg: no such file or folder" in proc.stderr
    assert "classifying" in proc.stderr  # progress bar for a folder


@pytest.mark.parametrize(
    "viewport", [{"width": 900, "height": 900}, {"width": 390, "height": 844}]
)  # a desktop, a phone
def test_upload_page_in_chromium(server, pipeline_repo, tmp_path, viewport):
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport=viewport)
        page.goto(server + "/")
        assert page.get_attribute("#file", "capture") == "environment"  # the phone's camera
        assert page.get_attribute("#file", "accept") == "image/*"
        page.set_input_files("#file", str(photo(pipeline_repo, "glass")))
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        boxes = {
            sel: page.locator(sel).bounding_box()
            for sel in ("h1", "p.sub", "#drop", "#preview", "#result", "footer")
        }
        label = page.inner_text("#label")
        model = page.inner_text("#model")
        bars = [
            page.locator(".bar").nth(i).bounding_box() for i in range(page.locator(".bar").count())
        ]
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert label.lower().replace(" ", "_") in LABELS and len(bars) == len(LABELS)
    assert model == "Model: wastesort version 1 (@champion, float32)"
    assert all(b is not None for b in boxes.values()), boxes  # everything shown
    names = list(boxes)
    for i, a in enumerate(names):  # what a person sees: no block drawn over another
        for b in names[i + 1 :]:
            assert not overlaps(boxes[a], boxes[b]), (a, b, boxes[a], boxes[b])
    order = [boxes[n]["y"] for n in names]
    assert order == sorted(order)  # title, subtitle, drop zone, photo, answer, footer
    for box in [*boxes.values(), *bars]:
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape[1] == viewport["width"] and img.std() > 10


def test_uncertain_answers_through_the_server_and_page(pipeline_repo, tmp_path):
    """Under serve.min_confidence an answer is marked uncertain and routed to the manual
    check, label and probabilities still given; the page says so."""
    from playwright.sync_api import sync_playwright

    repo = copy_repo(pipeline_repo, tmp_path / "repo")  # the session's repo is read-only
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["min_confidence"] = 1.0  # nothing is that sure
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with serving(repo) as url:
        body = classify(url, photo(repo).read_bytes()).json()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.goto(url + "/")
            page.set_input_files("#file", str(photo(repo, "glass")))
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            banner_visible = page.locator("#uncertain").is_visible()
            banner, label = page.inner_text("#uncertain"), page.inner_text("#label")
            page.screenshot(path=str(tmp_path / "uncertain.png"), full_page=True)
            browser.close()
    assert body["uncertain"] is True and body["stream"] == "manual_check"
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] < 1.0 and list(body["probabilities"]) == LABELS
    assert banner_visible and "check this item by hand" in banner
    assert label.lower().startswith("maybe ")


def test_bentoml_build_packs_service_and_champion(pipeline_repo, tmp_path):
    import shutil

    # the bento goes to a copy of the repo's store: the session's repo and store are read-only
    store = shutil.copytree(repo_env(pipeline_repo)["BENTOML_HOME"], tmp_path / "store")
    env = repo_env(pipeline_repo, BENTOML_HOME=str(store))
    out = run(["bentoml", "build"], pipeline_repo, env=env).stdout
    assert "Successfully built" in out
    bentos = json.loads(run(["bentoml", "list", "-o", "json"], pipeline_repo, env=env).stdout)
    assert [b["tag"].split(":")[0] for b in bentos] == ["wastesort"]
    receipt = json.loads((pipeline_repo / "registry/receipt.json").read_text())
    info = json.loads(
        run(["bentoml", "get", bentos[0]["tag"], "-o", "json"], pipeline_repo, env=env).stdout
    )
    models = [m["tag"] for service in info["services"] for m in service["models"]]
    assert models == [receipt["bento_model"]]
    # the built bento serves on its own: no registry beside it, the packed receipt says which
    port = free_port()
    proc = subprocess.Popen(
        ["bentoml", "serve", bentos[0]["tag"], "--host", "127.0.0.1", "--port", str(port)],
        cwd=pipeline_repo.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=240)
        answer = classify(f"http://127.0.0.1:{port}", photo(pipeline_repo).read_bytes()).json()
    finally:
        stop(proc)
    assert_answer(answer)
    assert answer["model"]["bento_model"] == receipt["bento_model"]


def test_serve_stops_with_one_line_when_the_champion_is_not_in_the_store(
    pipeline_repo, tmp_path, monkeypatch
):
    env = repo_env(pipeline_repo, BENTOML_HOME=str(tmp_path / "empty-store"))
    proc = subprocess.run(
        ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=pipeline_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    receipt = json.loads((pipeline_repo / "registry/receipt.json").read_text())
    line = (
        f"wastesort: error: wastesort version 1 (@champion) is BentoML model "
        f"{receipt['bento_model']}, which is not in the store at {tmp_path / 'empty-store'}; "
        "run `wastesort import-champion`"
    )
    assert line in proc.stderr and "Traceback" not in proc.stderr
    # what the line says to run brings exactly the registered files back
    out = run(["wastesort", "import-champion"], pipeline_repo, env=env).stdout
    assert f"wastesort@champion is version 1; BentoML model {receipt['bento_model']}" in out
    from wastesort.tracking import index

    monkeypatch.chdir(pipeline_repo)  # import-champion wrote to the registry, then indexed it
    indexed = index.read("wastesort", "champion", "sqlite:///mlflow.db")
    assert indexed and indexed["bento_model"] == receipt["bento_model"], indexed
    from wastesort.tracking.registry import file_sha256

    stored = tmp_path / "empty-store" / "models" / receipt["bento_model"].replace(":", "/")
    assert file_sha256(stored / "model_float32.tflite") == receipt["tflite_sha256"]["float32"]
    assert file_sha256(stored / "model_int8.tflite") == receipt["tflite_sha256"]["int8"]


def test_two_clones_serve_their_own_champions_from_one_store(pipeline_repo, tmp_path):
    """A second clone with other classes, registered into the same BentoML store: each
    `bentoml serve` answers with its own labels and model, at the same time."""
    from tests.conftest import make_pipeline_repo, tiny_params

    store = tmp_path / "one-store"
    run(
        ["wastesort", "import-champion"],
        pipeline_repo,
        env=repo_env(pipeline_repo, BENTOML_HOME=str(store)),
    )
    other = make_pipeline_repo(tmp_path / "other")
    params = tiny_params("rawdata")
    params["data"]["classes"] = ["metal", "glass"]
    params["finetune"]["layers"] = 0  # a head on frozen features is enough for this clone
    (other / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = repo_env(other, BENTOML_HOME=str(store))
    run(["dvc", "repro", "-q", "register"], other, env=env)  # `review` is not needed here
    servers, urls = [], {}
    try:
        for repo in (pipeline_repo, other):
            port = free_port()
            proc = subprocess.Popen(
                ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=repo,
                env=repo_env(repo, BENTOML_HOME=str(store)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            servers.append(proc)
            urls[repo] = f"http://127.0.0.1:{port}"
            wait_http(f"{urls[repo]}/readyz", proc, timeout=240)
        jpeg = photo(pipeline_repo, "metal").read_bytes()
        first, second = (classify(urls[r], jpeg).json() for r in (pipeline_repo, other))
    finally:
        for proc in servers:
            stop(proc)
    assert_answer(first)
    assert list(second["probabilities"]) == ["metal", "glass"]
    receipts = [
        json.loads((r / "registry/receipt.json").read_text()) for r in (pipeline_repo, other)
    ]
    assert first["model"]["bento_model"] == receipts[0]["bento_model"]
    assert (
        second["model"]["bento_model"] == receipts[1]["bento_model"] != receipts[0]["bento_model"]
    )


def test_the_champion_index_gives_what_mlflow_gives_until_the_registry_is_written(
    pipeline_repo, tmp_path, monkeypatch
):
    """register leaves an index of the champion (registry/champion.json) that the service
    reads without importing MLflow; it must give what MLflow's client gives, and step aside
    once the registry is written (the alias moved), until a start through the client indexes
    the new champion."""
    import shutil
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from wastesort.serving.champion import from_index, from_mlflow, resolve
    from wastesort.tracking import index

    for name in ("mlflow.db", "registry/champion.json"):  # copy2 keeps the file's stat
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(pipeline_repo / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = "sqlite:///mlflow.db"
    cfg = SimpleNamespace(model_name="wastesort", alias="champion")
    indexed = from_index(cfg, uri)
    assert indexed is not None and indexed == from_mlflow(cfg, uri)
    receipt = json.loads((pipeline_repo / "registry/receipt.json").read_text())
    assert (indexed.version, indexed.bento_tag) == (receipt["version"], receipt["bento_model"])
    assert from_index(SimpleNamespace(model_name="wastesort", alias="other"), uri) is None
    assert index.registry_stamp("postgresql://127.0.0.1/mlflow") is None
    assert from_index(cfg, "postgresql://127.0.0.1/mlflow") is None

    client = MlflowClient(uri, registry_uri=uri)
    first = client.get_model_version_by_alias("wastesort", "champion")
    moved = client.create_model_version(
        "wastesort",
        first.source,
        run_id=first.run_id,
        tags={"bento_model": "wastesort:moved", "tflite_float32_sha256": "ab" * 32},
    )
    client.set_registered_model_alias("wastesort", "champion", moved.version)
    assert from_index(cfg, uri) is None  # the registry was written: the index is void
    found = resolve(cfg)  # through MLflow's client, which indexes what it found
    assert (found.version, found.bento_tag) == (str(moved.version), "wastesort:moved")
    assert found.sha256["float32"] == "ab" * 32
    assert from_index(cfg, uri) == found  # the next start reads it without MLflow

    (tmp_path / "registry/champion.json").write_text("{not json")
    assert from_index(cfg, uri) is None  # a broken index is ignored, not served


def server_workers(url: str) -> list:
    """The processes of the `bentoml serve` at ``url`` that run the model (LiteRT loaded)."""
    return [
        p
        for pid, p in server_processes(url).items()
        if p.is_running() and "ai_edge_litert" in Path(f"/proc/{pid}/maps").read_text()
    ]


def answers_counted(url: str) -> float:
    return total(
        samples(requests.get(f"{url}/metrics", timeout=30).text), "wastesort_answers_total"
    )


def test_a_killed_worker_costs_only_its_requests_in_flight(pipeline_repo):
    """`kill -9` of one of the two workers under four clients: at most the four requests in
    flight fail (never a wrong answer), a new worker takes its place and answers, and the dead
    worker's answers stay counted in /metrics."""
    import os
    import signal
    import threading
    import time

    data = photo(pipeline_repo).read_bytes()
    with serving(pipeline_repo) as url:
        deadline = time.time() + 120  # ready when one worker is: the other may still load
        while len(workers := server_workers(url)) < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert len(workers) == 2, workers  # serve.workers
        ok, failed, stop_at = [], [], [time.time() + 600]

        def client():
            session = requests.Session()
            while time.time() < stop_at[0]:
                try:
                    resp = session.post(
                        f"{url}/classify", files={"image": ("a.jpg", data)}, timeout=60
                    )
                    (ok if resp.status_code == 200 else failed).append(resp.status_code)
                except requests.RequestException as exc:
                    failed.append(type(exc).__name__)
                    session = requests.Session()

        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.time() + 120
        while len(ok) < 40 and time.time() < deadline:  # under load
            time.sleep(0.05)
        if len(ok) < 40:
            stop_at[0] = 0  # the clients stop before the test fails
        assert len(ok) >= 40, failed
        os.kill(workers[0].pid, signal.SIGKILL)
        killed_at = len(ok)
        deadline = time.time() + 120
        while time.time() < deadline and not (
            len(server_workers(url)) == 2 and len(ok) > killed_at + 80
        ):
            time.sleep(0.2)
        stop_at[0] = 0
        for t in threads:
            t.join()
        replaced = server_workers(url)
        assert len(replaced) == 2 and workers[0].pid not in {p.pid for p in replaced}
        assert len(ok) > killed_at + 80  # the service went on answering
        assert len(failed) <= 4, failed  # one request in flight per client, at most
        counted = answers_counted(url)
        assert len(ok) <= counted <= len(ok) + len(failed)
