"""The built-in dashboard: `GET /ui` serves the page, `GET /ui/{name}` its assets, `GET /` redirects.

The page is plain HTML, CSS and JavaScript modules shipped inside the package
(`broadcaster/ui/`), written here: no CDN, no build step, no third-party code.
The assets are read once, on first use, and served from memory with an `ETag`
(they change only with the installed package). A Content-Security-Policy allows
nothing but this origin, so the page cannot load anything from elsewhere.

The page uses relative URLs (`ui/app.js`, `topics`, `events?...`), so it also
works behind a proxy that serves the broadcaster under a path prefix.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import error_response

router = APIRouter(include_in_schema=False)

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:css|js|svg)\Z")

_HEADERS = {
    # `connect-src 'self'` covers fetch and EventSource; nothing may come from another origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (the ETag makes that a 304): an upgraded package shows at once.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """The dashboard's files by name, read from the package once."""
    found: dict[str, Asset] = {}
    for entry in (importlib.resources.files("broadcaster") / "ui").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[entry.name] = Asset(body, _MEDIA_TYPES[suffix], etag)
    return found


def _serve(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        return error_response(404, "not_found", f"the dashboard has no file {name[:80]!r}")
    headers = {**_HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard is the server's front page."""
    return RedirectResponse("ui", status_code=307)


@router.get("/ui")
async def page(request: Request) -> Response:
    """The dashboard page."""
    return _serve(request, "index.html")


@router.get("/ui/")
async def page_slash() -> RedirectResponse:
    # The page's relative URLs resolve from /ui, not /ui/.
    return RedirectResponse("../ui", status_code=307)


@router.get("/ui/{name}")
async def asset(request: Request, name: str) -> Response:
    """One of the dashboard's scripts, its style sheet or its icon."""
    if _NAME_RE.match(name) is None:
        return error_response(404, "not_found", f"the dashboard has no file {name[:80]!r}")
    return _serve(request, name)
