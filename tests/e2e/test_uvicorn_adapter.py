"""What `broadcaster.http._uvicorn` relies on in uvicorn, checked against the installed uvicorn.

These fail loudly when an upgrade changes one of them; without them the fast path would
silently turn off (streams still work, at several times the CPU per delivery).
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

from broadcaster.http import _uvicorn
from broadcaster.http._uvicorn import Connection, get_subprocess, http_chunk
from broadcaster.http.streams.streaming import EventStream

from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_uvicorn_installed_version_is_in_the_tested_range():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [requirement] = [Requirement(d) for d in dependencies if Requirement(d).name == "uvicorn"]
    assert requirement.specifier.filter([version("uvicorn")]), (
        f"uvicorn {version('uvicorn')} is outside the tested range {requirement.specifier}: "
        "run tests/e2e/test_uvicorn_adapter.py and widen the range in pyproject.toml if it passes"
    )
    assert any(spec.operator in ("<", "<=") for spec in requirement.specifier), "the range needs an upper bound"


def test_uvicorn_subprocess_helper_keeps_its_signature():
    assert list(inspect.signature(get_subprocess).parameters) == ["config", "target", "sockets"]


def test_uvicorn_chunk_framing():
    assert http_chunk(b"data: 1\n\n") == b"9\r\ndata: 1\n\n\r\n"


def _only_stream(server: ThreadServer) -> EventStream:
    streams = list(server.app.state.monitor.streams)
    assert len(streams) == 1, streams
    stream: EventStream = streams[0]
    return stream


async def test_uvicorn_stream_finds_its_connection_and_writes_events_directly(make_settings, monkeypatch):
    """`send.__self__` is the request cycle, with a transport and chunked encoding; a parked stream writes to it."""
    writes: list[bool] = []
    real = Connection.try_write_framed

    def spy(self: Connection, chunk: bytes) -> bool:
        wrote = real(self, chunk)
        writes.append(wrote)
        return wrote

    monkeypatch.setattr(Connection, "try_write_framed", spy)
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/direct/events") as response:
                lines = response.aiter_lines()
                await eventually(lambda: server.app.state.monitor.streams, within=5, what="stream open")
                stream = _only_stream(server)
                assert stream._connection is not None, "uvicorn's send is no longer a bound method of its cycle"
                assert stream._connection.chunked, "uvicorn's cycle no longer says chunked_encoding"
                assert stream._direct
                await eventually(lambda: stream.sub.sink is stream, within=5, what="stream parked as a sink")
                for n in range(3):
                    answer = await client.post("/topics/direct/events", json={"n": n})
                    assert answer.status_code == 201
                    async with asyncio.timeout(5):
                        line = await anext(lines)
                        while '"control"' in line:
                            line = await anext(lines)
                    assert line.endswith(f'"data":{{"n":{n}}}}}'), line
    assert True in writes, f"no event went through the direct write: {writes}"


async def test_uvicorn_abort_ends_the_stream_and_the_request(make_settings):
    """`abort()` closes the socket; uvicorn marks the cycle disconnected, the stream ends and leaves the hub."""
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/aborted/events") as response:
                await eventually(lambda: server.app.state.monitor.streams, within=5, what="stream open")
                stream = _only_stream(server)
                task: Any = stream._task
                task.get_loop().call_soon_threadsafe(stream.abort)
                with pytest.raises(httpx.HTTPError):
                    async with asyncio.timeout(5):
                        async for _ in response.aiter_bytes():
                            pass
        await eventually(lambda: not server.app.state.monitor.streams, within=5, what="stream gone")
        await eventually(lambda: server.app.state.hub.subscriber_count("aborted") == 0, within=5, what="unsubscribed")
        assert task.done() and not task.cancelled()  # the request task ended by itself, not by a cancel


def test_uvicorn_adapter_is_the_only_module_that_reaches_into_uvicorn():
    """uvicorn's internals (`_subprocess`, the request cycle) are named in the adapter and nowhere else."""
    offenders = []
    for path in (ROOT / "broadcaster").rglob("*.py"):
        if path.name == Path(_uvicorn.__file__).name:
            continue
        text = path.read_text()
        for needle in ("uvicorn._subprocess", "uvicorn.protocols", "__self__", ".transport", "chunked_encoding"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []
