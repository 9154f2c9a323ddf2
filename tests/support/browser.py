"""Headless Chromium for the browser tests: Debian's `chromium`, never a downloaded browser.

Without it the browser tests are skipped locally and fail under `CI=true`: a browser test
that CI skips would hide breakage.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_binary() -> str:
    """The path of Debian's Chromium; skip (locally) or fail (CI) without it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install -y chromium); browser tests must run in CI")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return binary
