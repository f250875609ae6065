"""The inbox page at `/inbox`: the `wastesort inbox` of the browser. A grid of the photos the
service captured (``serve.capture``), each with its suggested label; accept, pick a class or
reject, by mouse or keyboard. Decisions go through ``wastesort.field.inbox``, so the page and
the CLI move files and write ``data/field/labels.csv`` the same way.

Off unless ``serve.inbox_token`` (or ``WASTESORT_INBOX_TOKEN``) is set: then every route
wants that token, as ``Authorization: Bearer <token>`` or ``?token=<token>``.

    GET  /inbox                       the page (open it as /inbox?token=...)
    GET  /inbox/items                 JSON: what waits, and the classes to pick from
    GET  /inbox/photo/{kind}/{name}   a waiting photo's bytes
    POST /inbox/decide                JSON {"file", "decision": accept|label|reject, "class"}
"""

from __future__ import annotations

import functools
import hmac
import json
import mimetypes
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from wastesort.config import ConfigError
from wastesort.field import FIELD, KINDS, inbox
from wastesort.field.capture import read_log

PAGE = Path(__file__).with_name("inbox.html")
SOURCE = "inbox page"  # labels.csv's `source` column, and `who` when the page sends no name
DECISIONS = ("accept", "label", "reject")
MAX_BODY = 16 * 1024  # a decision is a few dozen bytes
MAX_WHO = 64
SHOWN, MOST_SHOWN = 120, 1000  # photos a listing gives: by default, at most (`?limit=`)
#: A captured photo's file name (``<sha256>.<ext>``): no separators, no leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
OFF = (
    "the inbox page is off: set serve.inbox_token in params.yaml "
    "(or the WASTESORT_INBOX_TOKEN environment variable) and restart the service"
)
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
#: Token guessing: a client (by address) whose wrong tokens reach MAX_WRONG within WINDOW
#: seconds is refused (429, even with the right token) until the oldest of them is WINDOW old.
MAX_WRONG, WINDOW = 10, 60.0
WRONG: dict[str, deque[float]] = {}  # client address -> times of its recent wrong tokens
WRONG_LOCK = threading.Lock()
clock = time.monotonic  # tests move it on


@dataclass(frozen=True)
class Settings:
    token: str  # empty: the page is off
    capture_dir: Path
    field_dir: Path
    params: dict[str, Any]


@functools.cache
def settings() -> Settings:
    """params.yaml as the service reads it (its working directory is the repo root), loaded on
    the first request. Tests clear it with ``settings.cache_clear()``."""
    from wastesort.config import load_params
    from wastesort.serving import ServeConfig

    cfg = ServeConfig.load()
    return Settings(
        token=cfg.inbox_token,
        capture_dir=Path(cfg.serve.capture_dir).expanduser(),
        field_dir=FIELD,
        params=load_params(),
    )


def classes(s: Settings) -> list[str]:
    """What a photo may be labelled: data.classes or the data folder's classes; where neither
    is there (a built bento has no data folder), the classes the model answered with."""
    try:
        return inbox.known_classes(s.params)
    except ConfigError:
        seen: dict[str, None] = {}
        for record in read_log(s.capture_dir):
            seen.update(dict.fromkeys(record.get("probabilities") or {}))
        return list(seen)


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None):
    return JSONResponse(
        {"error": message, "code": code}, status, headers={**PRIVATE, **(headers or {})}
    )


def presented(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token", "")


def check(request: Request, html: bool = False) -> tuple[Response | None, Settings | None]:
    """(the refusal, None) or (None, the settings): 404 while the page is off, 401 without
    the token."""
    try:
        s = settings()
    except ConfigError as exc:
        return error(500, f"the inbox page cannot start: {exc}", "config"), None
    if not s.token:
        if html:
            return HTMLResponse(f"<!doctype html><p>{OFF}.</p>", 404, headers=PRIVATE), None
        return error(404, OFF, "inbox_off"), None
    client = request.client.host if request.client else ""
    wait = locked_out(client)
    if wait:
        return error(
            429,
            f"too many wrong inbox tokens from {client or 'this client'}: try again in {wait} s",
            "too_many_attempts",
            {"Retry-After": str(wait)},
        ), None
    given = presented(request)
    if not given or not hmac.compare_digest(given.encode(), s.token.encode()):
        with WRONG_LOCK:
            WRONG.setdefault(client, deque(maxlen=MAX_WRONG)).append(clock())
        return error(
            401,
            "the inbox page needs its token: open /inbox?token=<serve.inbox_token>, "
            "or send Authorization: Bearer <token>",
            "unauthorized",
            {"WWW-Authenticate": 'Bearer realm="wastesort inbox"'},
        ), None
    return None, s


def locked_out(client: str) -> int:
    """Seconds until ``client`` may try a token again (0: it may now)."""
    now = clock()
    with WRONG_LOCK:
        times = WRONG.get(client)
        if times is None:
            return 0
        while times and now - times[0] >= WINDOW:
            times.popleft()
        if not times:
            del WRONG[client]
            return 0
        if len(times) < MAX_WRONG:
            return 0
        return max(1, int(WINDOW - (now - times[0]) + 0.999))


def guarded(endpoint, html: bool = False, json_body: bool = False):
    """The route, answering only with the token. ``endpoint(request, settings)`` runs in a
    worker thread (it reads and moves files); with ``json_body`` it gets the request's JSON
    object in place of the request."""

    @functools.wraps(endpoint)
    async def checked(request: Request) -> Response:
        refused, s = await run_in_threadpool(check, request, html)
        if refused is not None:
            return refused
        if json_body:
            body = await body_of(request)
            if isinstance(body, Response):
                return body
            return await run_in_threadpool(endpoint, body, s)
        return await run_in_threadpool(endpoint, request, s)

    return checked


def page(_request: Request, _s: Settings) -> Response:
    return HTMLResponse(
        PAGE.read_text(),
        headers={
            **PRIVATE,
            "Content-Security-Policy": "default-src 'self'; img-src 'self'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
        },
    )


def described(w: inbox.Waiting) -> dict[str, Any]:
    kind = w.path.parent.name
    return w.described(w.name) | {"kind": kind, "photo": f"/inbox/photo/{kind}/{w.name}"}


def items(request: Request, s: Settings) -> Response:
    """What waits (uncertain first, the least confident first): the first ``?limit=`` photos
    (120; at most 1000), ``count`` of them all, and the classes to pick from."""
    limit = request.query_params.get("limit", str(SHOWN))
    if not limit.isdigit() or not 1 <= int(limit) <= MOST_SHOWN:
        return error(400, f"limit: must be a whole number from 1 to {MOST_SHOWN}", "bad_limit")
    waiting = inbox.waiting(s.capture_dir)
    return JSONResponse(
        {
            "items": [described(w) for w in waiting[: int(limit)]],
            "classes": classes(s),
            "count": len(waiting),
        },
        headers=PRIVATE,
    )


def photo(request: Request, s: Settings) -> Response:
    kind, name = request.path_params["kind"], request.path_params["name"]
    if kind not in KINDS:
        return error(400, f"kind: must be one of {', '.join(KINDS)}, got {kind!r}", "bad_kind")
    if not NAME.fullmatch(name):
        return error(400, f"name: {name!r} is not a captured photo's file name", "bad_name")
    folder = (s.capture_dir / kind).resolve()
    path = (folder / name).resolve()  # a link's target, which must be in the folder too
    if path.parent != folder or not path.is_file():
        return error(404, f"name: {name} is not in {kind}/ (decided already?)", "not_found")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if not media.startswith("image/"):
        media = "application/octet-stream"
    return FileResponse(
        path,
        media_type=media,
        headers={
            **PRIVATE,
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def body_of(request: Request) -> dict[str, Any] | Response:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return error(
            413, f"body: over {MAX_BODY} bytes; a decision is a small JSON object", "too_large"
        )
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return error(413, f"body: over {MAX_BODY} bytes", "too_large")
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'body: not JSON; send {"file": ..., "decision": ...}', "bad_json")
    if not isinstance(body, dict):
        return error(400, 'body: expected a JSON object {"file": ..., "decision": ...}', "bad_json")
    return body


def decide(body: dict[str, Any], s: Settings) -> Response:
    file, decision = body.get("file"), body.get("decision")
    if not isinstance(file, str) or not NAME.fullmatch(file):
        return error(400, "file: give the photo's file name, as /inbox/items lists it", "bad_file")
    if decision not in DECISIONS:
        return error(
            400,
            f"decision: must be one of {', '.join(DECISIONS)}, got {decision!r}",
            "bad_decision",
        )
    who = body.get("who") or ""
    if not isinstance(who, str):
        return error(400, "who: must be a name (text)", "bad_who")
    who = " ".join("".join(c if c.isprintable() else " " for c in who).split())[:MAX_WHO]
    who = who or SOURCE
    item = next((w for w in inbox.waiting(s.capture_dir) if w.name == file), None)
    if item is None:
        return error(404, f"file: {file} is not waiting (decided already?)", "not_waiting")
    known = classes(s)
    if decision == "label":
        cls = body.get("class")
        if not isinstance(cls, str) or cls not in known:
            return error(400, f"class: must be one of {', '.join(known)}, got {cls!r}", "bad_class")
    else:
        cls = item.label
    try:
        if decision == "reject":
            inbox.reject(item, s.field_dir, who, SOURCE)
            target = None
        else:
            target = inbox.label(item, cls, known, s.field_dir, who, SOURCE)
    except FileNotFoundError:
        return error(409, f"file: {file} was just decided elsewhere", "not_waiting")
    except ConfigError as exc:  # an accepted suggestion that is no longer a class
        return error(400, f"class: {exc}", "bad_class")
    return JSONResponse(
        {
            "file": file,
            "decision": decision,
            "class": "" if target is None else cls,
            "moved_to": "" if target is None else target.as_posix(),
            "waiting": len(inbox.waiting(s.capture_dir)),
        },
        headers=PRIVATE,
    )


async def moved(request: Request) -> Response:
    """The page's address before 2026-12-06 (`/review`): a permanent redirect, query kept."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/inbox{query}", status_code=308)


routes = [
    Route("/review", moved),
    Route("/inbox", guarded(page, html=True)),
    Route("/inbox/items", guarded(items)),
    Route("/inbox/photo/{kind}/{name}", guarded(photo)),
    Route("/inbox/decide", guarded(decide, json_body=True), methods=["POST"]),
]
