"""Headless Chromium for the browser tests: Debian's `chromium`, never a downloaded browser.

Without it the browser tests are skipped locally and fail under `CI=true`: a browser test
that CI skips would hide breakage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright


def chromium_binary() -> str:
    """The path of Debian's Chromium; skip (locally) or fail (CI) without it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install -y chromium); browser tests must run in CI")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return binary


@contextlib.asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright (through `executable_path`), closed on exit."""
    binary = chromium_binary()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=binary, args=["--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()
