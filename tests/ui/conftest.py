"""Fixtures of the dashboard tests: our uvicorn server on a real socket, Debian's Chromium via Playwright.

`open_dashboard(...)` starts a server (settings as given), opens `/ui` in a fresh browser
context and records every console error, uncaught exception, failed request and error
status of the page in `Dashboard.problems`. Screenshots go to `test-artifacts/ui/`
(or `$BROADCASTER_TEST_ARTIFACTS/ui/`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from broadcaster import Settings

from ..support.browser import launched_chromium
from ..support.servers import ThreadServer

ARTIFACTS = Path(os.environ.get("BROADCASTER_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")) / "ui"
LAPTOP = {"width": 1280, "height": 860}


@dataclass
class Dashboard:
    server: ThreadServer
    page: Page
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions: fail every test

    @property
    def url(self) -> str:
        return self.server.url

    async def model(self, panel: str) -> Any:
        """A panel's state as the page exposes it for tests (`broadcasterUI.<panel>.model()`)."""
        return await self.page.evaluate(f"broadcasterUI.{panel}.model()")

    async def until(self, condition: str, timeout_ms: float = 5000) -> None:
        """Wait until the JavaScript `condition` holds in the page."""
        # As a function: Playwright polls a bare expression through eval(), which the CSP forbids.
        await self.page.wait_for_function(f"() => {condition}", timeout=timeout_ms)

    async def tab(self, name: str) -> None:
        await self.page.click(f"#tab-{name}")

    async def screenshot(self, name: str, selector: str | None = None) -> Path:
        """A PNG of the page, or of one element, as a test artifact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if selector is None:
            await self.page.screenshot(path=path)
        else:
            await self.page.locator(selector).screenshot(path=path)
        return path


OpenDashboard = Callable[..., Awaitable[Dashboard]]


def _watch(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.on("console", lambda m: m.type == "error" and dashboard.problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: dashboard.errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: dashboard.problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and dashboard.problems.append(f"{r.status} from {r.url}"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as browser:  # skips locally without chromium, fails under CI=true
        yield browser


@pytest.fixture
async def open_dashboard(browser: Browser, make_settings: Callable[..., Settings]) -> AsyncIterator[OpenDashboard]:
    servers: list[ThreadServer] = []
    dashboards: list[Dashboard] = []

    async def open_(
        settings: Settings | None = None,
        *,
        path: str = "/ui",
        viewport: dict[str, int] = LAPTOP,
        color_scheme: str = "light",
    ) -> Dashboard:
        server = ThreadServer(settings or make_settings())
        server.start()
        servers.append(server)
        context = await browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        dashboard = Dashboard(server, await context.new_page())
        dashboards.append(dashboard)
        _watch(dashboard)
        await dashboard.page.goto(server.url + path)
        await dashboard.until("window.broadcasterUI !== undefined")
        return dashboard

    try:
        yield open_
        for dashboard in dashboards:
            assert dashboard.errors == [], "the page raised"
    finally:
        for dashboard in dashboards:
            await dashboard.page.context.close()
        for server in servers:
            server.stop()
