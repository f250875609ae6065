"""The inbox page on a real `bentoml serve`: uploads through `/classify` are captured, the
page lists them in headless Chromium, and accept, a class picked by keyboard and reject move
or drop the files as `wastesort inbox` would; nothing opens without the token."""

from __future__ import annotations

import csv
import http.client
import json
import shutil
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import captured, copy_repo, overlaps, repo_env, serving

pytestmark = pytest.mark.slow
LABELS = ["cardboard", "glass", "metal"]
TOKEN = "inbox-page-token-4711"
SHOT = Path("/tmp/inbox_page.png")  # a copy for a person to look at


def photo(repo: Path, label: str) -> Path:
    return sorted((repo / "rawdata" / label).iterdir())[0]


def request_from(
    source: str, method: str, url: str, headers=None, params=None, body=None
) -> tuple[int, dict]:
    """One request sent from ``source`` (another loopback address): its status and JSON."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{urllib.parse.urlencode(params)}" if params else "")
    data = None if body is None else json.dumps(body).encode()
    sent = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=30, source_address=(source, 0)
    )
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def inbox_repo(pipeline_repo, tmp_path):
    """A copy of the pipeline repo (the session's is read-only) serving with capture on and
    the page open."""
    repo = copy_repo(pipeline_repo, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    capture_dir = tmp_path / "inbox"
    params["serve"].update(capture="all", capture_dir=str(capture_dir), inbox_token=TOKEN)
    params["serve"]["min_confidence"] = 1.0  # every answer uncertain: the badge is shown
    assert not (repo / "data" / "field").exists()
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo, capture_dir


def test_inbox_page_in_chromium(inbox_repo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    repo, capture_dir = inbox_repo
    field = repo / "data" / "field"
    env = repo_env(repo)
    env.pop("WASTESORT_INBOX_TOKEN", None)
    with serving(repo, env) as url:
        answers = {}
        for label in LABELS:
            data = photo(repo, label).read_bytes()
            resp = requests.post(f"{url}/classify", files={"image": ("a.jpg", data)}, timeout=60)
            assert resp.status_code == 200, resp.text
            answers[label] = resp.json()
        kept = captured(capture_dir, 3)
        assert len(kept) == 3 and {p.parent.name for p in kept} == {"uncertain"}
        kept_bytes = {p.name: p.read_bytes() for p in kept}

        # nothing opens without the token, nothing is decided
        one = f"/inbox/photo/uncertain/{kept[0].name}"
        body = {"file": kept[0].name, "decision": "reject"}
        # twelve wrong tries, more than the 10 a minute one address may make (then even the
        # right token gets a 429): each way of asking from its own loopback address
        hows = ({}, {"headers": {"Authorization": "Bearer wrong"}}, {"params": {"token": "x"}})
        for source, how in zip(("127.0.0.2", "127.0.0.3", "127.0.0.4"), hows, strict=True):
            for method, route in (("GET", "/inbox"), ("GET", "/inbox/items"), ("GET", one)):
                status, answer = request_from(source, method, url + route, **how)
                assert status == 401, (route, how, answer)
                assert answer["code"] == "unauthorized"
            status, answer = request_from(source, "POST", f"{url}/inbox/decide", body=body, **how)
            assert status == 401 and answer["code"] == "unauthorized"
        assert sorted(capture_dir.glob("*/*.jpg")) == kept
        auth = {"Authorization": f"Bearer {TOKEN}"}
        listed = requests.get(f"{url}/inbox/items", headers=auth, timeout=30).json()
        assert listed["count"] == 3 and listed["classes"] == LABELS
        assert sorted(i["suggested"] for i in listed["items"]) == sorted(
            a["label"] for a in answers.values()
        )
        assert requests.get(url + one, params={"token": TOKEN}, timeout=30).content == (
            kept[0].read_bytes()
        )

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(60_000)
            problems = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"{url}/inbox?token={TOKEN}")
            page.wait_for_selector("body[data-state=ready]")
            cards = page.locator(".card")
            expect(cards).to_have_count(3)
            page.wait_for_load_state("networkidle")
            widths = [cards.nth(i).locator("img").evaluate("i => i.naturalWidth") for i in range(3)]
            boxes = [cards.nth(i).bounding_box() for i in range(3)]
            badges = page.locator(".card .badge").all_inner_texts()
            count = page.inner_text("#count")
            shot = tmp_path / "inbox.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copyfile(shot, SHOT)

            # one click: the suggestion accepted
            first = cards.nth(0)
            accepted = (first.get_attribute("data-file"), first.get_attribute("data-suggested"))
            first.locator("button.accept").click()
            expect(cards).to_have_count(2)
            expect(page.locator("#status")).to_contain_text("Labelled")
            # the keyboard: focus went on to the next photo; a digit picks another class
            second = page.locator(".card:focus")
            expect(second).to_have_count(1)
            labelled = second.get_attribute("data-file")
            other = next(c for c in LABELS if c != second.get_attribute("data-suggested"))
            page.keyboard.press(str(LABELS.index(other) + 1))
            expect(cards).to_have_count(1)
            # and `x` rejects the last one
            rejected = page.locator(".card:focus").get_attribute("data-file")
            page.keyboard.press("x")
            page.wait_for_selector("body[data-state=empty]")
            empty = page.locator("#empty").inner_text()
            empty_count = page.inner_text("#count")
            page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)
            shutil.copyfile(tmp_path / "empty.png", SHOT.with_name("inbox_page_empty.png"))
            browser.close()
        after = requests.get(f"{url}/inbox/items", headers=auth, timeout=30).json()

    assert not problems, problems
    assert all(w > 0 for w in widths), widths  # every photo shown
    for i, a in enumerate(boxes):  # a grid: one row of three cards, none over another
        assert a["x"] >= 0 and a["x"] + a["width"] <= 1000
        for b in boxes[i + 1 :]:
            assert not overlaps(a, b), (a, b)
    assert len({round(b["y"]) for b in boxes}) == 1
    assert [b.lower() for b in badges] == ["uncertain"] * 3 and count == "3 photos"
    file, suggested = accepted
    assert (field / suggested / file).read_bytes() == kept_bytes[file]
    assert (field / other / labelled).is_file()
    assert not any(field.rglob(rejected)) and not list(capture_dir.glob("*/*.jpg"))
    with (field / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["decision"], r["class"], r["file"] or r["sha256"][:8]) for r in rows] == [
        ("label", suggested, f"{suggested}/{file}"),
        ("label", other, f"{other}/{labelled}"),
        ("reject", "", rejected[:8]),
    ]
    assert {r["source"] for r in rows} == {"inbox page"}
    assert {r["who"] for r in rows} == {"inbox page"}
    assert "Nothing waits" in empty and empty_count == "0 photos"
    assert after["count"] == 0 and after["items"] == []
