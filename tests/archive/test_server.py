"""The archive in a server: `serve --archive-dir --archive-topics` (in-server archiver), and the CLI's guards."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from ..support.redis_server import free_port
from ..support.servers import ProcessServer
from ..support.waiting import eventually, eventually_sync
from .support import event_numbers, read_topic

COMMAND = [sys.executable, "-m", "broadcaster"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.e2e
def test_in_server_archiver_misses_nothing_published_once_the_server_answers(tmp_path):
    """A burst of 500 right after /readyz, with a history of 10: only a live subscription made before can hold it."""
    server = ProcessServer(
        "--archive-dir", str(tmp_path), "--archive-topics", "logs.*", "--history-size", "10",
        env={"BROADCASTER_LOG_LEVEL": "warning"},
    )  # fmt: skip
    with server:
        assert httpx.get(server.url + "/healthz").status_code == 200
        body = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(500))
        answer = httpx.post(
            server.url + "/topics/logs.app/events", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert answer.json()["accepted"] == 500
        listing = eventually_sync(lambda: _listed(server.url), what="the archive lists the events")
        assert listing[0]["last_id"] == answer.json()["last_id"]
    assert server.stop() == 0
    lines = read_topic(tmp_path, "logs.app")
    assert event_numbers(lines) == list(range(500)) and all("control" not in line for line in lines)


def _listed(url: str) -> list[dict] | None:
    """The segments of logs.app once one has a last id (the events are written)."""
    response = httpx.get(url + "/topics/logs.app/archive")
    segments = response.json()["segments"] if response.status_code == 200 else None
    return segments if segments and segments[0]["last_id"] else None


async def test_in_server_archiver_serves_what_it_writes(make_settings, client_factory, tmp_path):
    settings = make_settings(archive_dir=str(tmp_path), archive_topics="orders")
    async with client_factory(settings) as client:
        for n in range(3):
            await client.post("/topics/orders/events", json={"n": n})

        async def listed():
            response = await client.get("/topics/orders/archive")
            segments = response.json()["segments"] if response.status_code == 200 else []
            return segments and segments[0]["last_id"]

        await eventually(listed, what="the events are archived")
        export = await client.get("/topics/orders/archive/export")
    assert [orjson.loads(line)["data"]["n"] for line in export.content.splitlines()] == [0, 1, 2]


def test_cli_serve_archive_topics_with_redis_exits_2_saying_what_to_run():
    port = str(free_port())
    result = _run("serve", "--port", port, "--redis-url", "redis://127.0.0.1:1/0", "--archive-dir", "/tmp/x",
                  "--archive-topics", "a.*")  # fmt: skip
    assert result.returncode == 2
    assert "broadcaster archive" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dir", "/tmp/x", "--topics", "a.*"], "needs --redis-url"),
        (["--topics", "a.*", "--redis-url", "redis://127.0.0.1:1/0"], "needs archive_dir"),
        (
            ["--dir", "/tmp/x", "--topics", "bad topic!", "--redis-url", "redis://127.0.0.1:1/0"],
            "--archive-topics has an invalid entry",
        ),
        (["--dir", "/tmp/x", "--topics", "a", "--archive-fsync", "often", "--redis-url", "redis://x:1"], "batch"),
    ],
    ids=["no-redis", "no-dir", "bad-pattern", "bad-fsync"],
)
def test_cli_archive_usage_errors_exit_2_naming_the_problem(args, message):
    result = _run("archive", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_archive_help_names_its_flags():
    result = _run("archive", "--help")
    assert result.returncode == 0
    for flag in ("--dir", "--topics", "--redis-url", "--archive-fsync", "--archive-gzip", "--archive-retention-s"):
        assert flag in result.stdout
