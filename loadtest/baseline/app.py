"""A DELIBERATELY NAIVE SSE server, written the way tutorials do it: the yardstick, not a model.

FastAPI + sse-starlette ``EventSourceResponse``, and for every connected client:
- its own Redis pub/sub subscription (one Redis connection per client),
- its own unbounded ``asyncio.Queue`` (a slow client grows memory without limit),
- its own ``json.loads`` of every message and ``json.dumps`` of every event.
Publishing is ``POST /topics/{topic}/events`` straight to Redis ``PUBLISH``. Do not fix
any of this: the load test measures Broadcaster against exactly this shape.

Run by the load test as ``uvicorn loadtest.baseline.app:app --loop uvloop --http httptools``
with ``BASELINE_REDIS_URL`` pointing at a throwaway Redis. ``?format=ndjson`` (or an
``Accept`` without ``text/event-stream``) streams NDJSON through a ``StreamingResponse``
instead, the other tutorial shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sse_starlette.sse import EventSourceResponse

REDIS_URL = os.environ.get("BASELINE_REDIS_URL") or "redis://127.0.0.1:6379/0"

app = FastAPI(title="naive baseline")
# redis-py 8 caps a pool at 100 connections; the usual "fix" for "Too many connections" is to lift it.
redis = aioredis.from_url(REDIS_URL, max_connections=1_000_000)
ids = itertools.count(1)


def _event(topic: str, data: Any) -> dict[str, Any]:
    return {"id": str(next(ids)), "topic": topic, "type": "message", "ts": int(time.time() * 1000), "data": data}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    await redis.ping()
    return {"status": "ok"}


@app.post("/topics/{topic}/events", status_code=201, response_model=None)
async def publish(topic: str, request: Request) -> dict[str, Any] | JSONResponse:
    if request.headers.get("content-type", "").startswith("application/x-ndjson"):
        accepted = rejected = 0
        buffer = b""
        async for chunk in request.stream():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    data = json.loads(line)
                except ValueError:
                    rejected += 1
                    continue
                await redis.publish(f"topic:{topic}", json.dumps(_event(topic, data)))
                accepted += 1
        if buffer.strip():
            await redis.publish(f"topic:{topic}", json.dumps(_event(topic, json.loads(buffer))))
            accepted += 1
        return JSONResponse({"accepted": accepted, "rejected": rejected}, status_code=200)
    event = _event(topic, await request.json())
    await redis.publish(f"topic:{topic}", json.dumps(event))
    return {"id": event["id"], "topic": topic, "ts": event["ts"]}


async def _listen(topic: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
    pubsub = redis.pubsub()  # a new Redis connection for this one client
    await pubsub.subscribe(f"topic:{topic}")
    try:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await queue.put(json.loads(message["data"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _events(topic: str, request: Request) -> AsyncIterator[dict[str, Any]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # unbounded
    listener = asyncio.create_task(_listen(topic, queue))
    try:
        while True:
            yield await queue.get()
    finally:
        listener.cancel()


@app.get("/topics/{topic}/events", response_model=None)
async def subscribe(topic: str, request: Request, format: str | None = None) -> StreamingResponse | EventSourceResponse:
    sse = format == "sse" or (format is None and "text/event-stream" in request.headers.get("accept", ""))
    if sse:

        async def sse_events() -> AsyncIterator[dict[str, str]]:
            async for event in _events(topic, request):
                yield {"id": event["id"], "data": json.dumps(event["data"])}

        return EventSourceResponse(sse_events())

    async def ndjson_lines() -> AsyncIterator[str]:
        async for event in _events(topic, request):
            yield json.dumps(event) + "\n"

    return StreamingResponse(ndjson_lines(), media_type="application/x-ndjson")
