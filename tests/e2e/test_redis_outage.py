"""Redis stopped and started again under subscribed clients: 503 meanwhile, streams stay up, events resume.

The Redis here has no persistence: it comes back empty, so every stream is told (`reset`) that
the history it was reading was lost, then gets every event published after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from ..support.redis_server import RedisServer
from ..support.servers import thread_server
from ..support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


class Collector:
    """Reads one stream in the background, keeping events, keepalives and control messages apart."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.keepalives = 0
        self.controls: list[dict[str, Any]] = []
        self.ended = False
        self.task: asyncio.Task[None] | None = None

    def ids(self) -> list[str]:
        return [event["id"] for event in self.events]

    async def ndjson(self, response: httpx.Response) -> None:
        try:
            async for raw in response.aiter_lines():
                line = orjson.loads(raw)
                if line.get("control") == "heartbeat":
                    self.keepalives += 1
                elif "control" in line:
                    self.controls.append(line)
                else:
                    self.events.append(line)
        finally:
            self.ended = True

    async def sse(self, response: httpx.Response) -> None:
        # Read lines ourselves: httpx-sse's decoder hides comment lines, and keepalives are comments.
        fields: dict[str, str] = {}
        try:
            async for line in response.aiter_lines():
                if line == ": keepalive":
                    self.keepalives += 1
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    data = orjson.loads(fields["data"])
                    if "id" in fields:
                        self.events.append({"id": fields["id"], "data": data})
                    else:
                        self.controls.append(data)
                    fields = {}
                else:
                    fields = {}
        finally:
            self.ended = True


@contextlib.asynccontextmanager
async def _collect(client: httpx.AsyncClient, url: str, fmt: str) -> AsyncIterator[Collector]:
    collector = Collector()
    if fmt == "sse":
        context: Any = aconnect_sse(client, "GET", url)
    else:
        context = client.stream("GET", url)
    async with context as opened:
        response = opened.response if fmt == "sse" else opened
        assert response.status_code == 200
        collector.task = asyncio.create_task(getattr(collector, fmt)(response))
        try:
            yield collector
        finally:
            collector.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector.task


async def test_redis_outage_publish_503_streams_stay_up_and_resume(
    make_settings, redis_server_factory: Callable[[], RedisServer]
):
    redis = redis_server_factory()
    settings = make_settings(redis_url=redis.url, heartbeat_s=0.3)
    with thread_server(settings) as server:
        url = f"{server.url}/topics/outage/events"
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            _collect(client, url, "sse") as sse,
            _collect(client, url, "ndjson") as ndjson,
            contextlib.AsyncExitStack() as stack,
        ):
            collectors = (sse, ndjson)
            before = await client.post("/topics/outage/events", json={"phase": "before"})
            assert before.status_code == 201
            await eventually(lambda: all(c.ids() == [before.json()["id"]] for c in collectors), within=5)

            redis.stop()  # killed, like a crash

            failed = await client.post("/topics/outage/events", json={"phase": "during"})
            assert failed.status_code == 503
            assert int(failed.headers["retry-after"]) > 0
            error = failed.json()["error"]
            assert error["code"] == "backend_unavailable"
            assert "unreachable" in error["message"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "retry-after" in ready.headers
            assert ready.json()["error"]["code"] == "backend_unavailable"
            assert (await client.get("/healthz")).status_code == 200  # the process itself is fine

            # Subscribers stay connected: keepalives keep coming, nothing ends the streams.
            marks = [c.keepalives for c in collectors]
            await eventually(
                lambda: all(c.keepalives >= m + 3 for c, m in zip(collectors, marks, strict=True)),
                within=5,
                what="keepalives during the outage",
            )
            assert not any(c.ended for c in collectors)
            assert all(c.controls == [] for c in collectors), [c.controls for c in collectors]

            # A client that subscribes during the outage is served too (its topic is subscribed on reconnect).
            late_stream = await stack.enter_async_context(
                _collect(client, f"{server.url}/topics/late/events", "ndjson")
            )
            # So is one that resumes during the outage (a browser reconnecting): 200 and keepalives, it waits.
            resumed = await stack.enter_async_context(
                _collect(client, f"{url}?last_event_id={before.json()['id']}", "sse")
            )
            mark = resumed.keepalives
            await eventually(lambda: resumed.keepalives >= mark + 2, within=5, what="keepalives while it waits")
            assert resumed.events == [] and resumed.controls == [] and not resumed.ended

            redis.start()  # same port

            async def published_after_recovery() -> httpx.Response | None:
                answer = await client.post("/topics/outage/events", json={"phase": "after"})
                return answer if answer.status_code == 201 else None

            after = await eventually(published_after_recovery, within=8, interval=0.1, what="publish after restart")
            more = await client.post("/topics/outage/events", json={"phase": "after", "n": 2})
            assert more.status_code == 201
            expected = [before.json()["id"], after.json()["id"], more.json()["id"]]
            await eventually(
                lambda: all(c.ids() == expected for c in collectors),
                within=8,
                what="events after recovery reach the same streams",
            )
            assert [e["data"]["phase"] for e in sse.events] == ["before", "after", "after"]
            assert not any(c.ended for c in collectors)
            # Redis came back empty: the history of `before` is gone, and each stream was told so.
            for collector in collectors:
                resets = [c for c in collector.controls if c.get("control", "reset") == "reset"]
                assert len(resets) == 1 and "history was lost" in resets[0]["reason"], collector.controls
                assert resets[0]["topics"] == ["outage"]
            assert after.json()["id"].split(".")[1] != before.json()["id"].split(".")[1], "a new epoch"
            # The stream that resumed during the outage: reset (its id's history is gone), then both new events.
            await eventually(lambda: resumed.ids() == expected[1:], within=8, what="the resumed stream")
            # reset, then live; the hub's own catch-up may announce the same loss once more (it held it
            # for this subscription while the replay waited): every control but `live` says the history was lost.
            assert "history" in resumed.controls[0]["reason"] and "lost" in resumed.controls[0]["reason"]
            assert sum("replayed" in c for c in resumed.controls) == 1, resumed.controls
            others = [c for c in resumed.controls if "replayed" not in c]
            assert 1 <= len(others) <= 2 and all("was lost" in c["reason"] for c in others), resumed.controls
            assert (await client.get("/readyz")).status_code == 200
            late = await client.post("/topics/late/events", json="late")
            assert late.status_code == 201
            await eventually(lambda: late_stream.ids() == [late.json()["id"]], within=8, what="late subscriber")


@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
async def test_redis_outage_longer_than_backend_wait_ends_streams_with_shutdown(
    make_settings, redis_server_factory: Callable[[], RedisServer], fmt
):
    """A stream opened during an outage waits `backend_wait_s` (200, keepalives), then ends with
    `shutdown` (`backend_unavailable`) and a jittered reconnect hint, so that the client reconnects."""
    redis = redis_server_factory()
    settings = make_settings(redis_url=redis.url, heartbeat_s=0.2, backend_wait_s=1.0, retry_ms=1000)
    with thread_server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            (await client.post("/topics/wait/events", json=1)).raise_for_status()
            first = (await client.get("/topics/wait/history")).json()["id"]
            redis.stop()
            for url in (f"{server.url}/topics/wait/events", f"{server.url}/topics/wait/events?last_event_id={first}"):
                async with _collect(client, url, fmt) as stream:  # 200: asserted on opening
                    await eventually(lambda s=stream: s.ended, within=8, what="the stream ends after backend_wait_s")
                assert stream.keepalives >= 2, "kept alive while it waited"
                assert stream.events == []
                (shutdown,) = stream.controls
                assert shutdown["reason"] == "backend_unavailable"
                assert 1000 <= shutdown["retry_ms"] <= 2000  # retry_ms plus 0-100 % jitter
            assert (await client.post("/topics/wait/events", json=2)).status_code == 503  # publishing keeps its 503
