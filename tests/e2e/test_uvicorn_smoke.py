"""A real uvicorn server on a real socket: streaming is incremental, not buffered."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from ..support.servers import thread_server

pytestmark = pytest.mark.e2e


async def test_ndjson_stream_delivers_each_event_as_published(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/live/events") as response:
                assert response.status_code == 200
                lines = response.aiter_lines()
                for n in range(3):
                    # Publish only after the previous event arrived: proves each line is flushed at once.
                    published = await client.post("/topics/live/events", json={"n": n})
                    assert published.status_code == 201
                    async with asyncio.timeout(5):
                        line = orjson.loads(await anext(lines))
                    while "control" in line:  # keepalives may interleave
                        async with asyncio.timeout(5):
                            line = orjson.loads(await anext(lines))
                    assert line["data"] == {"n": n}
                    assert line["id"] == published.json()["id"]
