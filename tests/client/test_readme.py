"""The README's "Subscribing from Python" examples run as written, and type-check under `mypy --strict`.

Issue 13, acceptance 7.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from ..support.servers import thread_server

README = (Path(__file__).parents[2] / "README.md").read_text()
README_URL = "http://127.0.0.1:8000"


def _example(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- /{marker} -->", README, re.S)
    assert match, f"README.md has no {marker} block"
    return match[1]


def _run(code: str, url: str) -> str:
    assert README_URL in code
    result = subprocess.run(
        [sys.executable, "-c", code.replace(README_URL, url)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.e2e
def test_readme_client_examples_run_against_a_real_server(make_settings):
    with thread_server(make_settings()) as server:
        out = _run(_example("client-example"), server.url)
        lines = out.splitlines()
        assert lines[:2] == ["sensors.kitchen {'temp': 21.5}", "sensors.kitchen bye"]
        history = [
            orjson.loads(line) for line in httpx.get(f"{server.url}/topics/sensors.kitchen/history").text.split()
        ]
        assert lines[2] == f"resume from {history[-1]['id']}"  # the id of the last event, "bye"
        position = history[-1]["id"]

        sync_out = _run(_example("client-sync-example"), server.url).split()
        assert sync_out == [position, "sensors.kitchen", "reading", "bye"]


def test_readme_client_examples_pass_mypy_strict_and_mypy_sees_the_types(tmp_path):
    (tmp_path / "example.py").write_text(_example("client-example"))
    (tmp_path / "sync_example.py").write_text(_example("client-sync-example"))
    # Misuse that the types must catch, so that a clean run above means something.
    (tmp_path / "misuse.py").write_text(
        "from broadcaster.client import Gap, Subscriber\n"
        "def f(sub: Subscriber, gap: Gap) -> None:\n"
        "    sub.reconnects.upper()\n"  # line 3: an int
        "    print(gap.dropped + 1)\n"  # line 4: int | None
        "    Subscriber('http://x', 't', tail='5')\n"  # line 5: not an int
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
        + [str(tmp_path / name) for name in ("example.py", "sync_example.py", "misuse.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert all("misuse.py" in line for line in errors), result.stdout  # the README examples are clean
    assert sorted({int(line.split(":")[1]) for line in errors}) == [3, 4, 5], result.stdout
