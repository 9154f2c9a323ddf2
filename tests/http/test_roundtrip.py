"""Publish over HTTP, receive over the in-process app, on both backends."""

from __future__ import annotations

import asyncio

import orjson

from broadcaster import Hub

from ..support.waiting import eventually


async def test_published_event_reaches_ndjson_subscriber(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:

        async def subscribe() -> list[dict]:
            response = await client.get("/topics/demo/events", params={"max_events": 2})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            assert response.headers["cache-control"] == "no-store"
            return [orjson.loads(line) for line in response.text.splitlines()]

        task = asyncio.create_task(subscribe())
        await eventually(lambda: hub.subscriber_count("demo") == 1)
        first = await client.post("/topics/demo/events", json={"n": 1})
        second = await client.post("/topics/demo/events", params={"type": "reading"}, json={"n": 2})
        assert first.status_code == 201 and second.status_code == 201
        async with asyncio.timeout(10):
            lines = await task
        assert [line["data"] for line in lines] == [{"n": 1}, {"n": 2}]
        assert [line["type"] for line in lines] == ["message", "reading"]
        assert [line["id"] for line in lines] == [first.json()["id"], second.json()["id"]]
        assert all(line["topic"] == "demo" for line in lines)
