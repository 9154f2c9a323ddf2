"""`broadcaster tail` on the client: --tail, --from-id, --token, and a server restart survived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from broadcaster.client import publish

from ..support.servers import ProcessServer, thread_server
from .test_tokens import gated_server

pytestmark = pytest.mark.e2e


class Tail:
    """A `broadcaster tail` child process whose output is read line by line, with deadlines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, within: float = 10.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            raw = await self.process.stdout.readline()
        assert raw, f"tail ended: {await self.stop()}"
        return dict(orjson.loads(raw))

    async def lines(self, count: int) -> list[dict[str, Any]]:
        return [await self.line() for _ in range(count)]

    async def stop(self) -> tuple[int, str]:
        """SIGINT, then the exit status and stderr."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        return await self.exited()

    async def exited(self) -> tuple[int, str]:
        """The exit status and stderr of a child that ends by itself."""
        assert self.process.stderr is not None
        async with asyncio.timeout(10):
            stderr = (await self.process.stderr.read()).decode()
            return await self.process.wait(), stderr


@contextlib.asynccontextmanager
async def tail(*args: str, **env: str) -> AsyncIterator[Tail]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broadcaster",
        "tail",
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environ, **env},
    )
    try:
        yield Tail(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _resume_hint(stderr: str) -> str:
    """The position `broadcaster tail` prints when it stops: `-- to resume: --from-id '<position>' --`."""
    match = re.search(r"^-- to resume: --from-id '([^']+)' --$", stderr, re.MULTILINE)
    assert match, f"no resume hint in {stderr!r}"
    return match[1]


async def test_tail_cli_tail_n_and_from_id_start_where_asked(make_settings):
    with thread_server(make_settings()) as server:
        sent = [publish(server.url, "log", n) for n in range(5)]
        async with tail("log", "--url", server.url, "--tail", "2") as child:
            assert [line.get("id") for line in await child.lines(2)] == [p.id for p in sent[3:]]
            live = await child.line()
            assert live == {"control": "live", "replayed": 2, "cursor": live["cursor"]}
            status, stderr = await child.stop()
        assert status == 130 and _resume_hint(stderr) == sent[4].id  # one topic: the last event's id
        async with tail("log", "--url", server.url, "--from-id", sent[1].id) as child:
            lines = await child.lines(4)
            assert [line.get("data") for line in lines] == [2, 3, 4, None]
            assert lines[-1] == {"control": "live", "replayed": 3, "cursor": lines[-1]["cursor"]}
            assert lines[-1]["cursor"].endswith("~" + sent[1].id)  # the stream started from that id
            assert (await child.stop())[0] == 130


async def test_tail_cli_several_topics_resume_from_the_printed_cursor(make_settings):
    """On several topics the position is a cursor: tail prints it when it stops, and --from-id resumes every topic."""
    with thread_server(make_settings()) as server:
        seen = [publish(server.url, topic, n) for n, topic in enumerate(["app.web", "db", "app.web"])]
        async with tail("app.*", "db", "--url", server.url, "--tail", "3") as child:
            assert [line.get("id") for line in await child.lines(3)] == [p.id for p in seen]
            assert (await child.line())["control"] == "live"
            status, stderr = await child.stop()
        cursor = _resume_hint(stderr)
        assert status == 130 and "~" in cursor
        missed = [publish(server.url, topic, n) for n, topic in enumerate(["db", "app.api", "app.web"])]
        async with tail("app.*", "db", "--url", server.url, "--from-id", cursor) as child:
            lines = await child.lines(4)
    assert "reset" not in [line.get("control") for line in lines]
    assert sorted(line["id"] for line in lines[:3]) == sorted(p.id for p in missed)  # each missed event once
    assert lines[3]["control"] == "live" and lines[3]["replayed"] == 3


async def test_tail_cli_survives_a_server_restart_and_prints_each_event_once():
    server = ProcessServer("--heartbeat-s", "0.5", "--retry-ms", "300")
    with server:
        first = await asyncio.to_thread(publish, server.url, "svc", "before")
        async with tail("svc", "--url", server.url, "--tail", "1") as child:
            assert (await child.line())["id"] == first.id
            assert (await child.line())["control"] == "live"
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            after = await asyncio.to_thread(publish, server.url, "svc", "after")
            lines = [await child.line(within=20)]
            while lines[-1].get("data") != "after":
                lines.append(await child.line(within=20))
            status, stderr = await child.stop()
    assert status == 130
    assert lines[0]["control"] == "shutdown" and lines[0]["retry_ms"] > 0  # the stop, as the server said it
    assert [(line["id"], line["data"]) for line in lines if "data" in line] == [(after.id, "after")]
    assert "reconnecting in" in stderr and "Traceback" not in stderr


async def test_tail_cli_token_flag_and_variable_and_a_refusal(make_settings):
    with gated_server(make_settings()) as (server, _gate):
        sent = publish(server.url, "sec", "x", token="t1")
        async with tail("sec", "--url", server.url, "--tail", "1", "--token", "t1") as child:
            assert (await child.line())["id"] == sent.id
        async with tail("sec", "--url", server.url, "--tail", "1", BROADCASTER_TOKEN="t1") as child:
            assert (await child.line())["id"] == sent.id
        async with tail("sec", "--url", server.url, "--token", "wrong") as child:
            status, stderr = await child.exited()
        assert status == 1
        assert "401 unauthorized: a valid token is needed" in stderr and "wrong" not in stderr


async def test_tail_cli_bad_topic_is_a_usage_error():
    async with tail("not a topic!") as child:
        status, stderr = await child.exited()
    assert status == 2 and "error:" in stderr and "Traceback" not in stderr
