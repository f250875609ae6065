"""Serving's parts without a server: preprocessing, the in-process batcher, the upload guard."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

import numpy as np
import pytest

from tests import imagegen as g
from wastesort import images, preprocess
from wastesort.serving import Batcher
from wastesort.serving.guard import UploadGuard


def test_large_jpegs_are_drafted_small_ones_and_pngs_decoded_in_full():
    big = images.decode(g.jpeg(1000, 800), 10**8, draft_to=224)
    assert big.image.size == (500, 400)  # 1/2 scale keeps both sides >= 224
    assert (big.width, big.height) == (1000, 800)  # as stored, for reports
    huge = images.decode(g.jpeg(4032, 3024), 10**8, draft_to=224)
    assert huge.image.size == (504, 378)  # 1/8 scale: about TrashNet's own size
    for data in (g.jpeg(512, 384), g.png(1000, 800)):
        full = images.decode(data, 10**8)
        assert images.decode(data, 10**8, draft_to=224).image.size == full.image.size
    rotated = images.decode(g.exif_rotated_jpeg(), 10**8, draft_to=16)
    assert rotated.exif_orientation == 6 and rotated.image.size[1] > rotated.image.size[0]


def test_load_for_model_gives_the_model_input():
    x = preprocess.load_for_model(g.jpeg(640, 480), 10**8, 224)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255
    with pytest.raises(images.ImageRejected, match="not an image"):
        preprocess.load_for_model(b"junk", 10**8, 224)


def test_no_tensorflow_on_the_serving_import_path():
    import subprocess

    code = (
        "import sys, wastesort.serving, wastesort.cli, wastesort.preprocess, "
        "wastesort.litert; print(any(m.startswith('tensorflow') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batcher_answers_each_request_with_its_own_rows_and_batches_under_load():
    def slow_identity(batch):
        time.sleep(0.02)
        return batch[:, :1] * 2

    batcher = Batcher(slow_identity, max_batch_size=8)
    answers = {}

    def request(i):
        answers[i] = batcher(np.full((1 + i % 2, 3), float(i)))

    threads = [threading.Thread(target=request, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, out in answers.items():
        assert out.shape == (1 + i % 2, 1) and np.all(out == 2 * i)
    assert max(batcher.batch_sizes) > 2  # requests that waited ran together
    assert max(batcher.batch_sizes) <= 8 + 1  # a request is never split; the cap holds before it


def test_batcher_hands_a_model_error_to_the_waiting_request():
    def broken(batch):
        raise RuntimeError("interpreter failed")

    with pytest.raises(RuntimeError, match="interpreter failed"):
        Batcher(broken, 4)(np.zeros((1, 3)))


def test_the_batcher_calls_on_idle_once_per_quiet_spell_never_while_busy():
    idle = []
    batcher = Batcher(
        lambda b: b, 4, on_idle=lambda: idle.append(time.monotonic()), idle_seconds=0.3
    )
    start = time.monotonic()
    while time.monotonic() - start < 0.9:  # busy: a request every 0.05 s
        batcher(np.zeros((1, 3)))
        time.sleep(0.05)
    assert idle == []
    time.sleep(1.0)  # quiet: one call, after 0.3 s, then it waits for work
    assert len(idle) == 1
    batcher(np.zeros((1, 3)))
    time.sleep(0.6)
    assert len(idle) == 2


def test_a_failing_on_idle_does_not_stop_the_batcher():
    def broken():
        raise RuntimeError("no")

    batcher = Batcher(lambda b: b * 2, 4, on_idle=broken, idle_seconds=0.05)
    time.sleep(0.2)
    assert batcher(np.ones((1, 3))).tolist() == [[2.0, 2.0, 2.0]]


seen_field: list = [None]


def call_guard(
    body: bytes, content_type: str, path: str = "/predict", sent: list | None = None
) -> tuple[int, bytes, bytes]:
    seen = {}

    async def app(scope, receive, send):
        seen["body"] = (await receive())["body"]
        seen["length"] = dict(scope["headers"])[b"content-length"]
        seen_field[:] = [dict(scope["headers"]).get(b"x-wastesort-upload-field")]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = UploadGuard(
        app,
        {"/predict": ("file", "image"), "/batch": ("images",)},
        {"/predict": 10**6, "/batch": 10**6},
        max_files={"/batch": (3, "serve.max_images_per_request")},
        no_input=("/about",),
    )
    sent = [] if sent is None else sent

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], seen.get("body", b""), seen.get("length", b"")


def multipart(field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="image.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_guard_renames_the_alternative_field_for_the_api():
    status, body, length = call_guard(*multipart("image", b'name="image" in the photo'))
    assert status == 200
    assert b'name="file"; filename="image.jpg"' in body
    assert body.endswith(b'name="image" in the photo\r\n--XyZ--\r\n')  # the data untouched
    assert int(length) == len(body)
    assert seen_field[0] == b"image"
    status, body, _ = call_guard(*multipart("file", b"abc"))
    assert status == 200 and b'name="file"' in body
    status, _, _ = call_guard(*multipart("photo", b"abc"))
    assert status == 400


def multipart_files(field: str, n: int) -> tuple[bytes, str]:
    parts = b"".join(
        f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\nabc\r\n".encode()
        for i in range(n)
    )
    return parts + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"


def test_guard_bounds_the_files_per_request():
    assert call_guard(*multipart_files("images", 3), path="/batch")[0] == 200
    sent: list = []
    status, body, _ = call_guard(*multipart_files("images", 4), path="/batch", sent=sent)
    assert status == 413 and body == b""  # the API never saw it
    error = json.loads(sent[1]["body"])
    assert error == {
        "error": "images: 4 files in one request, over the limit of 3 "
        "(serve.max_images_per_request)",
        "code": "too_many",
    }


def test_guard_hands_a_route_without_input_an_empty_json_body():
    """/about takes nothing: whatever is sent (a multipart type with no boundary made BentoML
    answer 500) reaches it as an empty JSON body."""
    for content_type in ("multipart/form-data", "text/plain", "application/json"):
        status, body, length = call_guard(b"--junk", content_type, path="/about")
        assert (status, body, length) == (200, b"{}", b"2")


def test_the_configured_limits_are_the_ones_named():
    """Past Pillow's own bomb limit (about 179 megapixels) the message still names ours; an
    image under the minimum side is refused before decoding."""
    with pytest.raises(images.ImageRejected) as bomb:
        images.decode(g.png_header(20_000, 20_000), 25_000_000)
    assert bomb.value.code == "bomb"
    assert bomb.value.reason == (
        "decompression bomb: 400,000,000 pixels, over the limit of 25,000,000"
    )
    with pytest.raises(images.ImageRejected) as small:
        preprocess.load_for_model(g.jpeg(40, 20), 10**8, 224, min_side=32)
    assert small.value.code == "too_small"
    assert small.value.reason == "image of 40x20 pixels is under the minimum side of 32 px"
    assert preprocess.load_for_model(g.jpeg(40, 32), 10**8, 224, min_side=32).shape == (224, 224, 3)


def test_the_model_never_runs_more_than_max_batch_size_at_once():
    seen = []

    def model(batch):
        seen.append(len(batch))
        return batch[:, :1] + 1

    rows = np.arange(20, dtype=np.float32).reshape(20, 1).repeat(3, axis=1)
    out = Batcher(model, max_batch_size=8)(rows)
    assert np.array_equal(out[:, 0], np.arange(20) + 1)  # every row answered, in order
    assert seen[-3:] == [8, 8, 4]


def test_a_photo_part_without_a_file_name_is_read_as_a_file():
    """RFC 7578 makes the file name optional: a part with an image type and none is the
    photo; a text part of the same field is still refused."""
    part = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"\r\n'
        b"Content-Type: image/png\r\n\r\nabc\r\n--XyZ--\r\n"
    )
    status, body, length = call_guard(part, "multipart/form-data; boundary=XyZ")
    assert status == 200 and b'name="file"; filename="upload"' in body
    assert body.endswith(b"\r\n\r\nabc\r\n--XyZ--\r\n") and int(length) == len(body)
    text = part.replace(b"image/png", b"text/plain")
    assert call_guard(text, "multipart/form-data; boundary=XyZ")[0] == 400
