"""`broadcaster serve --workers 2` on Redis: the supervisor runs, replaces and stops real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from ..support.redis_server import RedisServer
from ..support.servers import ProcessServer
from ..support.waiting import eventually_sync

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def _workers(parent: int) -> set[int]:
    """Pids of the worker processes (multiprocessing spawn children) of `parent`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def _streams_per_worker(workers: set[int], port: int) -> dict[int, int]:
    """Established connections on the server's port held by each worker process."""
    return {
        pid: sum(
            c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in psutil.Process(pid).net_connections()
        )
        for pid in workers
    }


async def _roundtrip(server: ProcessServer, topic: str, workers: set[int], most: int = 60) -> None:
    """Subscribers on every worker each receive an event published through one of them."""
    async with contextlib.AsyncExitStack() as stack:
        streams = []
        # One client per stream: separate TCP connections, which the kernel hands to either
        # worker. Open them until every worker serves at least one (so the event must cross
        # workers through Redis), at most `most`.
        while len(streams) < 4 or min(_streams_per_worker(workers, server.port).values()) == 0:
            assert len(streams) < most, (
                f"connections not spread over the workers: {_streams_per_worker(workers, server.port)}"
            )
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            stream = await stack.enter_async_context(client.stream("GET", f"{server.url}/topics/{topic}/events"))
            assert stream.status_code == 200
            streams.append(stream.aiter_lines())
        async with httpx.AsyncClient(timeout=10) as publisher:
            answer = await publisher.post(f"{server.url}/topics/{topic}/events", json={"hello": topic})
        assert answer.status_code == 201, answer.text
        for lines in streams:
            async with asyncio.timeout(10):
                while "control" in (event := orjson.loads(await anext(lines))):
                    pass
            assert (event["id"], event["data"]) == (answer.json()["id"], {"hello": topic})


async def test_workers_serve_replace_a_dead_worker_and_stop_cleanly(redis_server: RedisServer | str):
    redis_url = redis_server if isinstance(redis_server, str) else redis_server.url
    server = ProcessServer("--workers", "2", "--redis-url", redis_url)
    server.start(timeout=30)
    try:
        assert server.process is not None
        supervisor = server.process.pid
        first = eventually_sync(lambda: len(_workers(supervisor)) == 2 and _workers(supervisor), what="two workers")
        await _roundtrip(server, "workers-a", first)

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = eventually_sync(
            lambda: (now := _workers(supervisor)) and len(now) == 2 and victim not in now and now,
            timeout=20,
            what="the killed worker replaced",
        )
        assert replaced & first == first - {victim}
        await _roundtrip(server, "workers-b", replaced)  # the new worker serves too
    finally:
        code = server.stop(timeout=30)
    assert code == 0
    assert _workers(supervisor) == set()
