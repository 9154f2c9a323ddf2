"""The `broadcaster` command as a user runs it: real subprocesses, a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import httpx
import orjson

from .support.redis_server import free_port
from .support.servers import thread_server
from .support.waiting import eventually

COMMAND = [sys.executable, "-m", "broadcaster"]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours without any BROADCASTER_* setting that would change the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout, env=_env(**env))


def test_cli_serve_workers_without_redis_exits_2_with_a_clear_message():
    # A free port, so that if the guard failed the server would start (and time out) rather than clash.
    result = run_cli("serve", "--workers", "2", "--port", str(free_port()), timeout=20)
    assert result.returncode == 2
    assert "workers > 1 needs a Redis URL" in result.stderr
    assert "--redis-url" in result.stderr and "BROADCASTER_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_publish_prints_the_event_id(make_settings):
    with thread_server(make_settings()) as server:
        result = run_cli("publish", "orders", '{"n": 1}', "--type", "created", "--url", server.url)
        assert result.returncode == 0, result.stderr
        event_id = result.stdout.strip()
        history = httpx.get(f"{server.url}/topics/orders/history", timeout=10)
        lines = [orjson.loads(line) for line in history.text.splitlines()]
        events = [line for line in lines if "control" not in line]
        assert [(e["id"], e["type"], e["data"]) for e in events] == [(event_id, "created", {"n": 1})]


def test_cli_publish_reads_stdin_and_uses_broadcaster_url(make_settings):
    with thread_server(make_settings()) as server:
        result = subprocess.run(
            [*COMMAND, "publish", "orders", "-"],
            input='"from stdin"',
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(BROADCASTER_URL=server.url),
        )
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.1", result.stdout.strip()), result.stdout


def test_cli_publish_invalid_json_exits_2_with_the_quoting_hint():
    result = run_cli("publish", "topic", "notjson")
    assert result.returncode == 2
    assert "'notjson' is not valid JSON" in result.stderr
    assert """quote it: '"hello"'""" in result.stderr
    assert result.stderr.count("\n") == 1, "one line, no traceback"
    assert result.stdout == ""


def test_cli_publish_server_error_is_explained(make_settings):
    with thread_server(make_settings()) as server:
        result = run_cli("publish", "bad topic", "1", "--url", server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 422")
    assert "'bad topic'" in result.stderr, "the server's reason is shown"
    assert "Traceback" not in result.stderr


def test_cli_publish_unreachable_server_exits_1():
    result = run_cli("publish", "orders", "1", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr


async def test_cli_tail_json_prints_events_and_exits_130_on_sigint(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            proc = await asyncio.create_subprocess_exec(
                *COMMAND,
                "tail",
                "sensors.*",
                "--json",
                "--url",
                server.url,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_env(),
            )
            try:

                async def subscribed() -> bool:
                    topics = (await client.get("/topics")).json()["topics"]
                    return any(t["topic"] == "sensors.*" and t["subscribers"] == 1 for t in topics)

                await eventually(subscribed, within=15, what="tail subscribed")
                published = (await client.post("/topics/sensors.kitchen/events", json={"t": 21.5})).json()
                assert proc.stdout is not None and proc.stderr is not None
                async with asyncio.timeout(10):
                    line = orjson.loads(await proc.stdout.readline())
                assert line == {
                    "id": published["id"],
                    "topic": "sensors.kitchen",
                    "type": "message",
                    "ts": published["ts"],
                    "data": {"t": 21.5},
                }
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(10):
                    returncode = await proc.wait()
                    stderr = (await proc.stderr.read()).decode()
                assert returncode == 130
                assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
