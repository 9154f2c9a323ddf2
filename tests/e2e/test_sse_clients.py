"""Third-party SSE clients read exactly the published events: no empty event, whatever the stream's start.

Issue 16: the opening `retry:` block reached httpx-sse users as an event with empty data, so
the usual `json.loads(sse.data)` loop raised on the first item. The streams here sit idle
first (the preamble and several keepalives go out before any event), then carry events of
the default and of a named type.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import sseclient
from httpx_sse import aconnect_sse

from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

EVENTS = [("message", {"n": 0}), ("reading", {"n": 1}), ("message", False), ("message", None), ("alarm", [1])]
HEARTBEAT_S = 0.1


async def _publish_after_keepalives(server: ThreadServer, topic: str) -> list[str]:
    """Wait until the stream is subscribed and idle for a few keepalives, then publish EVENTS; their ids."""
    await eventually(lambda: server.app.state.hub.subscriber_count(topic) == 1, within=5, what="subscribed")
    await asyncio.sleep(4 * HEARTBEAT_S)  # let keepalives go out before the first event (pacing, not a sync)
    ids = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for event_type, value in EVENTS:
            body = orjson.dumps(value)  # json=None would send no body at all
            headers = {"Content-Type": "application/json"}
            answer = await client.post(
                f"/topics/{topic}/events", params={"type": event_type}, content=body, headers=headers
            )
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


async def test_sse_clients_httpx_sse_yields_exactly_the_published_events(make_settings):
    with thread_server(make_settings(heartbeat_s=HEARTBEAT_S)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with aconnect_sse(client, "GET", "/topics/hx/events") as source:
                publisher = asyncio.create_task(_publish_after_keepalives(server, "hx"))
                received = []
                async with asyncio.timeout(10):
                    async for sse in source.aiter_sse():
                        received.append(sse)
                        if len(received) == len(EVENTS):
                            break
                ids = await publisher
    assert [(s.id, s.event, orjson.loads(s.data)) for s in received] == [
        (i, t, v) for i, (t, v) in zip(ids, EVENTS, strict=True)
    ]
    assert received[0].retry is not None  # the reconnect hint arrived, with the first event


async def test_sse_clients_sseclient_py_yields_exactly_the_published_events(make_settings):
    with thread_server(make_settings(heartbeat_s=HEARTBEAT_S)) as server:

        def read() -> list[sseclient.Event]:
            events = []
            with httpx.Client(timeout=10) as client:
                headers = {"Accept": "text/event-stream"}
                with client.stream("GET", f"{server.url}/topics/ssec/events", headers=headers) as response:
                    for event in sseclient.SSEClient(response.iter_bytes()).events():
                        events.append(event)
                        if len(events) == len(EVENTS):
                            return events
            return events

        async with asyncio.timeout(10):
            reader = asyncio.create_task(asyncio.to_thread(read))
            ids = await _publish_after_keepalives(server, "ssec")
            received = await reader
    assert [(e.id, e.event, orjson.loads(e.data)) for e in received] == [
        (i, t, v) for i, (t, v) in zip(ids, EVENTS, strict=True)
    ]
