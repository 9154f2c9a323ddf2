"""The docs tell the truth: the README's settings table and commands match the code."""

from __future__ import annotations

import re
from pathlib import Path

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
