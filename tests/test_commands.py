"""Every command a user can type: its `--help` works and lists what the docs say it takes; its errors are one line.

The commands come from the parsers themselves (a new subcommand or producer is
covered without editing this file) and from the docs (`python -m loadtest.NAME`).
Each runs as a subprocess of what is installed: the `broadcaster` console script of
this environment, and `python -m` for the packages. Issue 9.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from broadcaster._config import setting_fields
from broadcaster.cli import build_parser as broadcaster_parser
from producers.__main__ import build_parser as producers_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {
    path: path.read_text() for path in [ROOT / "README.md", ROOT / "loadtest" / "README.md", *ROOT.glob("docs/*.md")]
}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_COMMAND_END = re.compile(r"\s#|`|\||&&|;")  # a comment, the end of inline code, a pipe, the next command


def _console_script(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"the console script {name} is not installed next to {sys.executable}: pip install -e ."
    return str(path)


def _after(command: str) -> set[str]:
    """Flags written after `command` in the docs, up to the end of that command line."""
    flags: set[str] = set()
    for text in DOCS.values():
        for match in re.finditer(rf"(?<![\w.-]){re.escape(command)}(?=[ `]|$)", text, re.M):
            rest = _QUOTED.sub("", text[match.end() :].split("\n", 1)[0])
            end = _COMMAND_END.search(rest)
            flags |= set(_FLAG.findall(rest[: end.start()] if end else rest))
    return flags


def _settings_table() -> set[str]:
    table = re.search(r"<!-- settings-table -->\n(.*?)<!-- /settings-table -->", README, re.S)
    assert table, "README.md has no settings table"
    return set(re.findall(r"^\| `(--[a-z0-9-]+)` \|", table[1], re.M))


def _producer_flags(name: str) -> set[str]:
    section = README.split("\n## Producers\n", 1)[1].split("\n## ", 1)[0]
    common = next(p for p in section.split("\n\n") if "common options:" in p)
    bullet = re.search(rf"^- `{name} ([^`]*)`", section, re.M)
    assert bullet, f"README's Producers section has no bullet for {name}"
    return set(_FLAG.findall(common)) | set(_FLAG.findall(bullet[1])) | _after(f"python -m producers {name}")


def _loadtest_flags() -> set[str]:
    options = next(p for p in DOCS[ROOT / "loadtest" / "README.md"].split("\n\n") if p.startswith("Options:"))
    return set(_FLAG.findall(_QUOTED.sub("", options))) | _after("python -m loadtest")


def _commands() -> list[tuple[str, list[str], set[str], set[str]]]:
    """(what the user types, argv, flags the docs give it, subcommands its help must name)."""
    broadcaster = _console_script("broadcaster")
    subcommands = broadcaster_parser().subcommands()
    producers = producers_parser().subcommands()
    commands = [
        ("broadcaster", [broadcaster], set(), set(subcommands)),
        ("python -m producers", [sys.executable, "-m", "producers"], set(), set(producers)),
        ("python -m loadtest", [sys.executable, "-m", "loadtest"], _loadtest_flags(), set()),
    ]
    for name in subcommands:
        documented = _after(f"broadcaster {name}") | (_settings_table() if name == "serve" else set())
        commands.append((f"broadcaster {name}", [broadcaster, name], documented, set()))
    for name in producers:
        commands.append(
            (f"python -m producers {name}", [sys.executable, "-m", "producers", name], _producer_flags(name), set())
        )
    for module in sorted({m for text in DOCS.values() for m in re.findall(r"python -m (loadtest\.\w+)", text)}):
        commands.append((f"python -m {module}", [sys.executable, "-m", module], _after(f"python -m {module}"), set()))
    return commands


COMMANDS = _commands()


def _env() -> dict[str, str]:
    """Ours without BROADCASTER_* settings, so that the test does not depend on the shell it runs in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}


def test_commands_cover_the_parsers_and_the_documented_options():
    """The list below is not empty by accident: every subcommand and producer, and what the docs give them."""
    typed = {command for command, *_ in COMMANDS}
    assert {"broadcaster serve", "broadcaster publish", "broadcaster tail"} <= typed
    assert {"python -m producers logtail", "python -m producers sensor", "python -m producers stdin"} <= typed
    assert {"python -m loadtest", "python -m loadtest.ingest_memory"} <= typed
    documented = {command: flags for command, _, flags, _ in COMMANDS}
    assert len(_settings_table()) == len(setting_fields()) >= 20
    assert _settings_table() <= documented["broadcaster serve"]
    assert {"--type", "--buffer", "--retry-for-s", "--max-event-bytes", "--rate", "--seed"} <= documented[
        "python -m producers sensor"
    ]
    assert {"--smoke", "--runs", "--duration", "--quiet"} <= documented["python -m loadtest"]


@pytest.mark.parametrize(("command", "argv", "documented", "subcommands"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_help_exits_0_with_usage_and_every_documented_option(command, argv, documented, subcommands):
    result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"usage: {command}"), result.stdout[:200]
    listed = set(_FLAG.findall(result.stdout))
    assert documented <= listed, f"{command} --help lacks documented options {sorted(documented - listed)}"
    for name in subcommands:
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), f"{command} --help does not list {name}"


BROADCASTER_ERRORS = [
    # argv after `broadcaster`, environment, what the one line must name
    (["serve", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["serve", "--port", "eighty"], {}, "--port: 'eighty' is not a valid int"),
    (["serve", "--port", "70000"], {}, "--port must be between 1 and 65535, got 70000"),
    (["serve", "--heartbeat-s", "nan"], {}, "--heartbeat-s must be a finite number greater than 0"),
    (["serve", "--overflow", "sometimes"], {}, "argument --overflow: invalid choice: 'sometimes'"),
    (["serve"], {"BROADCASTER_QUEUE_SIZE": "many"}, "BROADCASTER_QUEUE_SIZE: 'many' is not a valid int"),
    (
        ["serve"],
        {"BROADCASTER_HISTORY_TTL_S": "-1"},
        "BROADCASTER_HISTORY_TTL_S must be a finite number greater than 0",
    ),
    (["serve"], {"BROADCASTER_OVERFLOW": "sometimes"}, "BROADCASTER_OVERFLOW must be one of disconnect"),
    (["serve"], {"BROADCASTER_REDIS_URL": "localhost:6379"}, "BROADCASTER_REDIS_URL must start with redis://"),
    (["serve", "--queue-size", "20000"], {}, "queue_size (20000) must not exceed max_queue_size (10000)"),
    (["nope"], {}, "invalid choice: 'nope'"),
    (["publish", "orders"], {}, "the following arguments are required: json"),
]
PRODUCER_ERRORS = [
    (["sensor", "--topic", "t", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["sensor", "--topic", "t", "--buffer", "lots"], {}, "argument --buffer: invalid int value: 'lots'"),
    (["sensor", "--topic", "t", "--rate", "0"], {}, "rate must be greater than 0"),
    (["sensor", "--topic", "no spaces"], {}, "--topic: topic 'no spaces' is invalid"),
    (["sensor"], {}, "the following arguments are required: --topic"),
    (["stdin", "--topic", "t", "--target", "ftp://x"], {}, "--target: unknown target 'ftp://x'"),
    (["stdin", "--topic", "t"], {"BROADCASTER_URL": "ftp://x"}, "BROADCASTER_URL: unknown target 'ftp://x'"),
    (["stdin", "--topic", "t", "--history-size", "0"], {}, "--history-size must be at least 1, got 0"),
    (["stdin", "--topic", "t"], {"BROADCASTER_MAX_EVENT_BYTES": "big"}, "BROADCASTER_MAX_EVENT_BYTES: 'big' is not"),
    (["logtail", "x.log", "--topic", "t", "--poll-s", "0"], {}, "poll_s must be a finite number greater than 0"),
]
ERRORS = [("broadcaster", *row) for row in BROADCASTER_ERRORS] + [
    ("python -m producers", *row) for row in PRODUCER_ERRORS
]


@pytest.mark.parametrize(
    ("command", "args", "env", "named"), ERRORS, ids=[" ".join([c, *a, *e]) for c, a, e, _ in ERRORS]
)
def test_command_error_exits_2_with_one_line_naming_the_problem(command, args, env, named):
    argv = [_console_script("broadcaster")] if command == "broadcaster" else [sys.executable, "-m", "producers"]
    result = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, env={**_env(), **env}, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    prog = command if not args or args[0] == "nope" else f"{command} {args[0]}"
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].endswith(f"(see {prog} --help)"), lines[0]
