"""The `/inbox` routes on the web app alone (Starlette's TestClient, no model): off without a
token, 401 without the right one, the listing, decisions that move files, no path traversal."""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import pytest
import yaml

with warnings.catch_warnings():  # Starlette 1.x would rather have `httpx2`; httpx works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from tests import imagegen as g
from tests.conftest import served_answer as answer
from wastesort import webui
from wastesort.field.capture import Capture
from wastesort.webui import inbox

CLASSES = ["cardboard", "glass", "metal"]
TOKEN = "s3cret-token"
ROUTES = [
    ("GET", "/inbox"),
    ("GET", "/inbox/items"),
    ("GET", "/inbox/photo/uncertain/x.jpg"),
    ("POST", "/inbox/decide"),
]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A repo-like folder (params.yaml, a capture folder of 3 photos) as the working directory;
    ``site(token)`` writes params.yaml and gives a client of the web app."""
    folder = tmp_path / "inbox"
    cap = Capture.from_params(
        {"capture": "all", "capture_dir": str(folder), "capture_max_files": 100}
        | {"capture_max_mb": 10}
    )
    photos = [g.jpeg(seed=s) for s in range(3)]
    cap.keep(photos[0], answer("glass", 0.95, False))
    cap.keep(photos[1], answer("metal", 0.55, True))
    cap.keep(photos[2], answer("cardboard", 0.65, True))
    (tmp_path / "secret.txt").write_text("not for the page")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WASTESORT_INBOX_TOKEN", raising=False)
    monkeypatch.delenv("WASTESORT_SERVE_MODEL", raising=False)

    def make(token: str = TOKEN) -> TestClient:
        serve = {"capture": "all", "capture_dir": str(folder), "inbox_token": token}
        params = {"data": {"classes": CLASSES}, "serve": serve}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        inbox.settings.cache_clear()
        return TestClient(webui.app)

    make.folder, make.photos, make.root = folder, photos, tmp_path
    inbox.WRONG.clear()
    yield make
    inbox.settings.cache_clear()
    inbox.WRONG.clear()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_off_without_a_token_says_how_to_turn_it_on(site):
    client = site("")
    page = client.get("/inbox")
    assert page.status_code == 404 and "serve.inbox_token" in page.text
    assert "WASTESORT_INBOX_TOKEN" in page.text
    for method, route in ROUTES[1:]:
        resp = client.request(method, route, headers=bearer(""))
        assert resp.status_code == 404, route
        assert resp.json()["code"] == "inbox_off" and "serve.inbox_token" in resp.json()["error"]


def test_the_environment_token_turns_it_on(site, monkeypatch):
    monkeypatch.setenv("WASTESORT_INBOX_TOKEN", "from-env")
    client = site("")
    assert client.get("/inbox/items", headers=bearer("from-env")).status_code == 200
    assert client.get("/inbox/items", headers=bearer(TOKEN)).status_code == 401


@pytest.mark.parametrize(
    "how",
    [
        {},
        {"headers": {"Authorization": "Bearer wrong"}},
        {"headers": {"Authorization": TOKEN}},  # no scheme
        {"headers": {"Authorization": f"Basic {TOKEN}"}},
        {"params": {"token": "wrong"}},
        {"params": {"token": TOKEN[:-1]}},
        {"params": {"token": TOKEN + "ü"}},  # not ASCII: still a plain 401
    ],
)
def test_every_route_wants_the_token(site, how):
    client = site()
    for method, route in ROUTES:
        resp = client.request(method, route, json={"file": "x.jpg", "decision": "reject"}, **how)
        assert resp.status_code == 401, (route, resp.text)
        assert resp.json()["code"] == "unauthorized" and "token" in resp.json()["error"]
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert len(list(site.folder.rglob("*.jpg"))) == 3  # nothing decided


def test_the_page_opens_with_the_token_in_the_query_or_the_header(site):
    client = site()
    for resp in (
        client.get("/inbox", params={"token": TOKEN}),
        client.get("/inbox", headers=bearer()),
    ):
        assert resp.status_code == 200 and "wastesort inbox" in resp.text
        assert resp.headers["content-type"].startswith("text/html")
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["referrer-policy"] == "no-referrer"
    assert client.get("/").status_code == 200  # the upload page is unchanged


def test_items_list_what_waits_and_the_classes(site):
    client = site()
    body = client.get("/inbox/items", headers=bearer()).json()
    assert body["classes"] == CLASSES and body["count"] == 3
    items = body["items"]
    assert [(i["suggested"], i["uncertain"], i["kind"]) for i in items] == [
        ("metal", True, "uncertain"),
        ("cardboard", True, "uncertain"),
        ("glass", False, "confident"),
    ]
    first = items[0]
    assert first["file"] == hashlib.sha256(site.photos[1]).hexdigest() + ".jpg"
    assert first["confidence"] == pytest.approx(0.55) and first["time"].endswith("Z")
    assert first["photo"] == f"/inbox/photo/uncertain/{first['file']}"
    photo = client.get(first["photo"], params={"token": TOKEN})
    assert photo.status_code == 200 and photo.content == site.photos[1]
    assert photo.headers["content-type"] == "image/jpeg"
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert client.get(first["photo"], headers=bearer()).content == site.photos[1]
    gone = client.get(f"/inbox/photo/confident/{first['file']}", headers=bearer())
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_decisions_move_the_files_and_are_recorded(site):
    client = site()
    metal, cardboard, glass = client.get("/inbox/items", headers=bearer()).json()["items"]
    resp = client.post(
        "/inbox/decide", headers=bearer(), json={"file": metal["file"], "decision": "accept"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "file": metal["file"],
        "decision": "accept",
        "class": "metal",
        "moved_to": f"data/field/metal/{metal['file']}",
        "waiting": 2,
    }
    assert (site.root / "data/field/metal" / metal["file"]).read_bytes() == site.photos[1]
    assert not (site.folder / "uncertain" / metal["file"]).exists()
    resp = client.post(
        "/inbox/decide",
        headers=bearer(),
        json={"file": cardboard["file"], "decision": "label", "class": "glass", "who": " ana\n"},
    )
    assert resp.status_code == 200 and resp.json()["class"] == "glass"
    assert (site.root / "data/field/glass" / cardboard["file"]).is_file()
    resp = client.post(
        "/inbox/decide",
        params={"token": TOKEN},
        json={"file": glass["file"], "decision": "reject"},
    )
    assert resp.status_code == 200 and resp.json()["moved_to"] == "" and resp.json()["waiting"] == 0
    assert (
        not list(site.folder.rglob("*.jpg"))
        and not (site.root / "data/field/glass" / glass["file"]).exists()
    )
    with (site.root / "data/field/labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["decision"], r["class"], r["answer"], r["who"], r["source"]) for r in rows] == [
        ("label", "metal", "metal", "inbox page", "inbox page"),
        ("label", "glass", "cardboard", "ana", "inbox page"),
        ("reject", "", "glass", "inbox page", "inbox page"),
    ]
    again = client.post(
        "/inbox/decide", headers=bearer(), json={"file": metal["file"], "decision": "accept"}
    )
    assert again.status_code == 404 and again.json()["code"] == "not_waiting"
    assert client.get("/inbox/items", headers=bearer()).json() == {
        "items": [],
        "classes": CLASSES,
        "count": 0,
    }


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"decision": "accept"}, 400, "file"),
        ({"file": 3, "decision": "accept"}, 400, "file"),
        ({"file": "FIRST", "decision": "keep"}, 400, "decision"),
        ({"file": "FIRST"}, 400, "decision"),
        ({"file": "FIRST", "decision": "label"}, 400, "class"),
        ({"file": "FIRST", "decision": "label", "class": "plastic"}, 400, "class"),
        ({"file": "FIRST", "decision": "accept", "who": ["x"]}, 400, "who"),
        ({"file": "nope.jpg", "decision": "accept"}, 404, "file"),
        (["FIRST"], 400, "body"),
        ("not json", 400, "body"),
    ],
)
def test_bad_decisions_name_the_field(site, body, status, field):
    client = site()
    first = client.get("/inbox/items", headers=bearer()).json()["items"][0]["file"]
    if body == "not json":
        resp = client.post("/inbox/decide", headers=bearer(), content=b"{nope")
    else:
        body = (
            {k: first if v == "FIRST" else v for k, v in body.items()}
            if isinstance(body, dict)
            else [first]
        )
        resp = client.post("/inbox/decide", headers=bearer(), json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"].startswith(f"{field}: ")
    assert len(list(site.folder.rglob("*.jpg"))) == 3 and not (site.root / "data").exists()


def test_a_huge_body_is_refused(site):
    client = site()
    resp = client.post("/inbox/decide", headers=bearer(), content=b"{" + b" " * 100_000 + b"}")
    assert resp.status_code == 413 and resp.json()["code"] == "too_large"


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/photo/uncertain/%2E%2E",
        "/inbox/photo/uncertain/..%2F..%2Fsecret.txt",
        "/inbox/photo/uncertain/..%5C..%5Csecret.txt",
        "/inbox/photo/%2E%2E/secret.txt",
        "/inbox/photo/inbox/secret.txt",
        "/inbox/photo/uncertain/.hidden",
        "/inbox/photo/uncertain/%2Fetc%2Fpasswd",
        "/inbox/photo/..%2F..%2Fsecret.txt/x",
    ],
)
def test_no_path_traversal(site, path):
    client = site()
    resp = client.get(path, headers=bearer())
    assert resp.status_code in (400, 404), (path, resp.status_code)
    assert "not for the page" not in resp.text and "root:" not in resp.text


def test_decide_takes_file_names_only(site):
    client = site()
    first = client.get("/inbox/items", headers=bearer()).json()["items"][0]
    for ref in (
        f"uncertain/{first['file']}",
        str(site.folder / first["kind"] / first["file"]),
        "../secret.txt",
    ):
        resp = client.post(
            "/inbox/decide", headers=bearer(), json={"file": ref, "decision": "reject"}
        )
        assert resp.status_code == 400 and resp.json()["code"] == "bad_file", ref
    assert (site.root / "secret.txt").is_file() and len(list(site.folder.rglob("*.jpg"))) == 3


def test_classes_fall_back_to_the_models_when_the_data_folder_is_absent(site, tmp_path):
    client = site()
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"] = {"classes": [], "path": str(tmp_path / "absent")}  # a built bento
    Path("params.yaml").write_text(yaml.safe_dump(params))
    inbox.settings.cache_clear()
    assert client.get("/inbox/items", headers=bearer()).json()["classes"] == CLASSES


def test_a_long_inbox_is_listed_a_page_at_a_time(site):
    client = site()
    body = client.get("/inbox/items", headers=bearer(), params={"limit": 2}).json()
    assert body["count"] == 3 and [i["suggested"] for i in body["items"]] == ["metal", "cardboard"]
    for bad in ("0", "1001", "-1", "two"):
        resp = client.get("/inbox/items", headers=bearer(), params={"limit": bad})
        assert resp.status_code == 400 and resp.json()["error"].startswith("limit: ")


def test_a_link_in_the_capture_folder_is_never_followed_out_of_it(site):
    """A symlink placed among the captured photos, to a file outside the folder, is a 404;
    one to a photo in the same folder serves that photo."""
    client = site()
    outside = site.root / "secret.txt"
    (site.folder / "uncertain" / "leak.jpg").symlink_to(outside)
    (site.folder / "uncertain" / "up.jpg").symlink_to("../../secret.txt")
    for name in ("leak.jpg", "up.jpg"):
        resp = client.get(f"/inbox/photo/uncertain/{name}", headers=bearer())
        assert resp.status_code == 404 and "not for the page" not in resp.text, name
    photo = next(p for p in (site.folder / "uncertain").glob("*.jpg") if not p.is_symlink())
    (site.folder / "uncertain" / "same.jpg").symlink_to(photo.name)
    resp = client.get("/inbox/photo/uncertain/same.jpg", headers=bearer())
    assert resp.status_code == 200 and resp.content == photo.read_bytes()


def test_guessing_the_token_is_refused_for_a_while(site, monkeypatch):
    """MAX_WRONG wrong tokens from one client within WINDOW seconds: then 429 with Retry-After,
    even for the right token, until the first wrong one is WINDOW old."""
    now = [1000.0]
    monkeypatch.setattr(inbox, "clock", lambda: now[0])
    client = site()
    for i in range(inbox.MAX_WRONG):
        now[0] += 1
        assert client.get("/inbox/items", headers=bearer(f"guess{i}")).status_code == 401
    for token in ("guess-again", TOKEN):
        refused = client.get("/inbox/items", headers=bearer(token))
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_attempts"
        wait = int(refused.headers["retry-after"])
        assert 0 < wait <= inbox.WINDOW and f"{wait} s" in refused.json()["error"]
    assert client.get("/inbox", params={"token": TOKEN}).status_code == 429  # the page too
    now[0] += wait
    assert client.get("/inbox/items", headers=bearer()).status_code == 200
    # wrong tokens spread wider than the window never add up to a refusal
    for i in range(3 * inbox.MAX_WRONG):
        now[0] += inbox.WINDOW / (inbox.MAX_WRONG - 1)
        assert client.get("/inbox/items", headers=bearer("nope")).status_code == 401


def test_the_old_names_say_where_they_went(site, monkeypatch):
    """Before 2026-12-06 the page was `/review` and its token serve.review_token."""
    from wastesort.config import ConfigError
    from wastesort.serving import ServeConfig

    client = site()
    old = client.get("/review", params={"token": TOKEN}, follow_redirects=False)
    assert old.status_code == 308 and old.headers["location"] == f"/inbox?token={TOKEN}"
    assert client.get("/review", params={"token": TOKEN}).status_code == 200  # followed
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["serve"]["review_token"] = params["serve"].pop("inbox_token")
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError,
        match="serve.review_token is no longer a parameter: it is now serve.inbox_token",
    ):
        ServeConfig.load()
    monkeypatch.setenv("WASTESORT_REVIEW_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="WASTESORT_REVIEW_TOKEN is now WASTESORT_INBOX_TOKEN"):
        ServeConfig.load()
