"""The upload page at `/`: pick or drop a photo, see the material and class probabilities; the
inbox page at `/inbox` (``wastesort.webui.inbox``), off unless serve.inbox_token is set."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from wastesort.webui import inbox

PAGE = Path(__file__).with_name("index.html")


async def index(_request) -> HTMLResponse:
    return HTMLResponse(PAGE.read_text())


async def api_docs(_request):
    """BentoML's own OpenAPI page, moved from `/` (where the upload page now is) to `/docs`."""
    from _bentoml_impl import server

    folder = Path(server.__file__).parent
    for name in ("main-openapi.html", "main-ui.html"):
        if (folder / name).is_file():
            return FileResponse(folder / name)
    return HTMLResponse('<a href="/docs.json">OpenAPI spec</a>')


app = Starlette(routes=[Route("/", index), Route("/docs", api_docs), *inbox.routes])
