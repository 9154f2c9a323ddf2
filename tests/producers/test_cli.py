"""`python -m producers NAME --target URL --topic T`: real processes against a real server."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import orjson
import pytest

from producers.__main__ import main

from ..support.redis_server import free_port
from ..support.servers import thread_server

pytestmark = pytest.mark.e2e


async def _producers(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producers",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}, **(env or {})},
    )
    try:
        async with asyncio.timeout(20):
            _, err = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def _history(url: str, topic: str) -> list[object]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/topics/{topic}/history")
    return [orjson.loads(line)["data"] for line in response.text.splitlines()]


async def test_cli_sensor_publishes_over_http(make_settings):
    with thread_server(make_settings()) as server:
        args = ("sensor", "--target", server.url, "--topic", "sensors.lab", "--count", "30", "--rate", "1000")
        code, err = await _producers(*args, "--seed", "3", "--type", "reading")
        history = await _history(server.url, "sensors.lab")
    assert code == 0, err
    assert "sensor: sent 30, rejected 0, dropped 0" in err
    assert len(history) == 30 and all(isinstance(r, dict) and r["sensor"].startswith("sensor-") for r in history)


@pytest.mark.redis
async def test_cli_stdin_publishes_straight_into_redis(make_settings, redis_url):
    with thread_server(make_settings(redis_url=redis_url)) as server:
        code, err = await _producers(
            "stdin", "--text", "--target", redis_url, "--topic", "logs", stdin=b"one\ntwo\r\n\nthree"
        )
        history = await _history(server.url, "logs")
    assert code == 0, err
    assert history == ["one", "two", "three"]


@pytest.mark.redis
@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--history-size", "2"], {}), ([], {"BROADCASTER_HISTORY_SIZE": "2"})],
    ids=["flag", "variable"],
)
async def test_cli_redis_target_takes_the_servers_history_settings(make_settings, redis_url, flags, env):
    code, err = await _producers(
        "stdin", "--target", redis_url, "--topic", "short", *flags, stdin=b"1\n2\n3\n", env=env
    )
    assert code == 0, err
    with thread_server(make_settings(redis_url=redis_url)) as server:
        assert await _history(server.url, "short") == [2, 3]


async def test_cli_reports_a_target_that_is_down(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    args = ["sensor", "--target", url, "--topic", "s", "--count", "3", "--retry-for-s", "0.3"]
    code = await asyncio.to_thread(main, args)  # in a thread: main() runs its own event loop
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: cannot reach {url}" in err and "gave up after" in err
    assert "dropped 3" in err


async def test_cli_refuses_an_unknown_target_scheme(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sensor", "--target", "ftp://example.org", "--topic", "s"])
    assert exit.value.code == 2 and "unknown target 'ftp://example.org'" in capsys.readouterr().err
