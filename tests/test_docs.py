"""The docs tell the truth: the README's settings table and commands match the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from broadcaster._config import settings_markdown

README = (Path(__file__).parent.parent / "README.md").read_text()


def _between(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", README, re.S)
    assert match, f"README.md has no {marker} block"
    return match[1]


def test_readme_settings_table_matches_settings_fields():
    assert _between("settings-table").strip() == settings_markdown()


def test_readme_test_command_runs_scripts_test_which_ci_runs():
    command = _between("test-command")
    assert "pip install -e '.[test]'" in command and "scripts/test" in command
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "test-command" in ci, ".ci/run must read the test command from the README"


def test_readme_serve_command_installs_and_serves():
    command = _between("serve-command")
    assert "pip install -e ." in command and "broadcaster serve" in command


def test_readme_jq_filter_keeps_every_event_and_drops_controls():
    """Issue 16: the README's `jq 'select(.data)'` dropped events whose data is false or null."""
    jq = shutil.which("jq")
    if jq is None:
        pytest.fail("jq is not installed (apt-get install -y jq; .ci/run installs it)")
    filters = re.findall(r"`jq (?:-c )?'([^']+)'` keeps only events", README)
    assert filters, "the README names its jq filter for events"
    lines = [
        {"id": "a", "topic": "t", "type": "message", "ts": 1, "data": False},
        {"control": "live", "replayed": 0},
        {"id": "b", "topic": "t", "type": "message", "ts": 1, "data": None},
        {"control": "heartbeat"},
        {"id": "c", "topic": "t", "type": "message", "ts": 1, "data": 0},
        {"id": "d", "topic": "t", "type": "message", "ts": 1, "data": {"n": 1}},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    for expression in filters:
        out = subprocess.run([jq, "-c", expression], input=text, capture_output=True, text=True, check=True, timeout=10)
        assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == ["a", "b", "c", "d"], expression
