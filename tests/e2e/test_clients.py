"""Real clients against a real uvicorn server on a real socket: httpx-sse, streamed httpx NDJSON, and `curl -N`."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e


def _subscribers(server: ThreadServer, key: str) -> int:
    # The server's hub lives in the server thread's loop; reading a count from here is a plain dict lookup.
    return server.app.state.hub.subscriber_count(key)


async def _next_event(events: AsyncIterator[ServerSentEvent], within: float = 5) -> ServerSentEvent:
    """The next SSE event that carries data (skips the `retry:`-only preamble)."""
    async with asyncio.timeout(within):
        while True:
            sse = await anext(events)
            if sse.data:
                return sse


async def test_clients_httpx_sse_receives_id_event_and_data(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with aconnect_sse(client, "GET", "/topics/sse.demo/events") as source:
                assert source.response.status_code == 200
                assert source.response.headers["content-type"].startswith("text/event-stream")
                events = source.aiter_sse()
                published = []
                for n, event_type in enumerate(["message", "reading", "alarm"]):
                    answer = await client.post("/topics/sse.demo/events", params={"type": event_type}, json={"n": n})
                    assert answer.status_code == 201, answer.text
                    published.append(answer.json())
                    async with asyncio.timeout(5):
                        sse = await anext(events)  # no empty event first: the retry hint comes with the first
                    if n == 0:
                        assert sse.retry is not None and sse.retry >= 3000
                    else:
                        assert sse.retry is None
                    assert sse.id == published[-1]["id"]
                    assert sse.event == event_type
                    assert sse.json() == {"n": n}
                assert [p["topic"] for p in published] == ["sse.demo"] * 3


async def test_clients_httpx_sse_multi_topic_stream(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            params = {"topic": ["a", "b.*"]}
            async with aconnect_sse(client, "GET", "/events", params=params) as source:
                events = source.aiter_sse()
                published = []
                for topic in ("a", "b.one", "b.two.deep"):
                    answer = await client.post(f"/topics/{topic}/events", json=topic)
                    assert answer.status_code == 201
                    published.append(answer.json()["id"])
                    sse = await _next_event(events)
                    # The SSE id is the stream's cursor: the last id of every topic so far.
                    assert sse.id.partition("~")[2] == ",".join(published)
                    assert sse.json()["id"] == answer.json()["id"]
                    assert sse.json()["topic"] == topic
                    assert sse.json()["data"] == topic


async def test_clients_streamed_ndjson_gets_each_event_before_the_next_is_published(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as publisher:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                async with client.stream("GET", "/topics/nd/events") as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("application/x-ndjson")
                    assert response.headers["cache-control"] == "no-store"
                    lines = response.aiter_lines()
                    for n in range(5):
                        answer = await publisher.post("/topics/nd/events", json={"n": n, "text": "é\u2028✓"})
                        assert answer.status_code == 201
                        async with asyncio.timeout(5):
                            line = orjson.loads(await anext(lines))
                            while "control" in line:  # keepalives may interleave
                                line = orjson.loads(await anext(lines))
                        assert line == {
                            "id": answer.json()["id"],
                            "topic": "nd",
                            "type": "message",
                            "ts": answer.json()["ts"],
                            "data": {"n": n, "text": "é\u2028✓"},
                        }


async def test_clients_streamed_ndjson_receives_a_burst_in_order(make_settings):
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/burst/events") as response:
                ids = []
                for n in range(200):
                    answer = await client.post("/topics/burst/events", json=n)
                    ids.append(answer.json()["id"])
                received = []
                async with asyncio.timeout(5):
                    async for raw in response.aiter_lines():
                        line = orjson.loads(raw)
                        if "control" not in line:
                            received.append((line["id"], line["data"]))
                        if len(received) == len(ids):
                            break
                assert received == list(zip(ids, range(200), strict=True))


@contextlib.asynccontextmanager
async def _curl(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    curl = shutil.which("curl")
    assert curl is not None, "curl must be on PATH for this test (it is what users run)"
    process = await asyncio.create_subprocess_exec(
        curl, "-N", "-sS", "--max-time", "20", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(5):
            await process.wait()


async def test_clients_curl_n_receives_published_ndjson_line(make_settings):
    with thread_server(make_settings()) as server:
        async with _curl(f"{server.url}/topics/curl.demo/events") as curl, httpx.AsyncClient(timeout=10) as client:
            await eventually(lambda: _subscribers(server, "curl.demo") == 1 or curl.returncode is not None, within=5)
            assert curl.returncode is None
            answer = await client.post(f"{server.url}/topics/curl.demo/events", json={"hello": "curl"})
            assert answer.status_code == 201
            assert curl.stdout is not None
            async with asyncio.timeout(5):
                line = orjson.loads(await curl.stdout.readline())
                while "control" in line:
                    line = orjson.loads(await curl.stdout.readline())
            assert line["id"] == answer.json()["id"]
            assert line["topic"] == "curl.demo"
            assert line["data"] == {"hello": "curl"}


async def test_clients_curl_n_receives_sse_frame(make_settings):
    with thread_server(make_settings()) as server:
        url = f"{server.url}/topics/curl.sse/events"
        async with _curl("-H", "Accept: text/event-stream", url) as curl, httpx.AsyncClient(timeout=10) as client:
            await eventually(lambda: _subscribers(server, "curl.sse") == 1 or curl.returncode is not None, within=5)
            answer = await client.post(f"{server.url}/topics/curl.sse/events", params={"type": "note"}, json=[1, 2])
            assert answer.status_code == 201
            assert curl.stdout is not None
            frame: list[bytes] = []
            async with asyncio.timeout(5):
                while True:
                    line = (await curl.stdout.readline()).rstrip(b"\n")
                    if line.startswith(b"id:"):
                        frame = [line]
                    elif frame and line:
                        frame.append(line)
                    elif frame:
                        break
            assert frame == [f"id: {answer.json()['id']}".encode(), b"event: note", b"data: [1,2]"]
