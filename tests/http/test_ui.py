"""The dashboard's files are served from the package: the page, its modules, no outside URL.

The browser tests (tests/ui/) show what the page does; these check what the server sends.
"""

from __future__ import annotations

import importlib.resources
import re

import pytest

from broadcaster.http.api.ui import assets

UI = importlib.resources.files("broadcaster") / "ui"


async def test_root_redirects_to_the_dashboard(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        answer = await client.get("/")
        assert answer.status_code == 307
        assert answer.headers["location"] == "ui"
        assert (await client.get("/ui/")).headers["location"] == "../ui"
        page = await client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert str(page.url) == "http://test/ui"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Broadcaster</title>" in page.text


async def test_ui_page_allows_nothing_from_other_origins(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        page = await client.get("/ui")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    for directive in ("script-src", "style-src", "connect-src"):
        assert f"{directive} 'self';" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
async def test_ui_assets_served_with_their_media_type_and_etag(make_settings, client_factory, name, media_type):
    async with client_factory(make_settings()) as client:
        answer = await client.get(f"/ui/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == media_type
        assert answer.content == (UI / name).read_bytes()
        again = await client.get(f"/ui/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("path", ["/ui/nothing.js", "/ui/index.html", "/ui/..%2F__init__.py", "/ui/App.JS"])
async def test_ui_unknown_file_is_a_json_404(make_settings, client_factory, path):
    async with client_factory(make_settings()) as client:
        answer = await client.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def _references(text: str) -> list[str]:
    """Every URL an HTML, CSS or JS file of the dashboard loads: src/href attributes, imports, url()."""
    found = re.findall(r'(?:src|href)="([^"]+)"', text)
    found += re.findall(r'\bfrom\s+"([^"]+)"', text)
    found += re.findall(r'\bimport\s*\(\s*"([^"]+)"', text)
    found += re.findall(r"url\(([^)]+)\)", text)
    return found


def test_ui_loads_only_its_own_files():
    """No CDN: every reference is one of the package's files (or the page's own `#`)."""
    names = set(assets())
    for name in [*names, "index.html"]:
        text = (UI / name).read_text()
        for reference in _references(text):
            if reference.startswith("#"):
                continue
            assert "://" not in reference and not reference.startswith("//"), f"{name} loads {reference}"
            target = reference.removeprefix("./").removeprefix("ui/")
            assert target in names, f"{name} refers to {reference}, which the package does not ship"
