"""Issue 16, acceptance 2: a history that was lost is announced, never replayed as if complete.

Redis restarted empty, Redis replaced by a fresh instance on the same port, a memory server
restarted: a resume from an id issued before answers `reset` with a reason saying the
history was lost, before anything live, over SSE and NDJSON, on one topic and on several;
then it gets the events of the new history, exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from ..support.redis_server import RedisServer, find_binary
from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

TOPICS = ["lost.a", "lost.b"]


def parse_sse(text: str) -> list[dict]:
    """Events as {"id", "data"} and controls as {"control", ...}, in order (keepalive comments skipped)."""
    items = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" not in fields:
            continue
        data = orjson.loads(fields["data"])
        if "event" in fields and "id" not in fields:
            items.append({"control": fields["event"], **data})
        else:
            items.append({"sse_id": fields["id"], **(data if isinstance(data, dict) and "topic" in data else {})})
    return items


def parse_ndjson(text: str) -> list[dict]:
    return [item for item in map(orjson.loads, text.splitlines()) if item.get("control") != "heartbeat"]


async def before_the_loss(client: httpx.AsyncClient) -> tuple[str, str]:
    """Publish on both topics; return a single-topic id and a multi-topic cursor (from a real SSE stream)."""
    ids = [(await client.post(f"/topics/{t}/events", json=f"old {t}")).json()["id"] for t in TOPICS]
    params = {"topic": TOPICS, "tail": 2, "max_events": 2}
    stream = await client.get("/events", params=params, headers={"Accept": "text/event-stream"})
    cursor = [item["sse_id"] for item in parse_sse(stream.text) if "sse_id" in item][-1]
    assert all(event_id in cursor for event_id in ids)
    return ids[0], cursor


async def after_the_loss(client: httpx.AsyncClient, single: str, cursor: str) -> None:
    """Publish one event in the new history, then resume from the old ids in every way."""
    answer = await eventually(
        lambda: _publish(client, TOPICS[0], "new"), within=10, interval=0.1, what="publish on the new history"
    )
    new_id = answer.json()["id"]
    assert new_id.split(".")[1] != single.split(".")[1], "the new history has a new epoch"
    cases = [
        (f"/topics/{TOPICS[0]}/events", {}, single, [TOPICS[0]]),
        ("/events", {"topic": TOPICS}, cursor, TOPICS),
    ]
    for path, params, resume_point, lost_topics in cases:
        for fmt in ("sse", "ndjson"):
            query = {**params, "format": fmt, "max_duration": 0.5}
            response = await client.get(path, params=query, headers={"Last-Event-ID": resume_point})
            assert response.status_code == 200
            items = parse_sse(response.text) if fmt == "sse" else parse_ndjson(response.text)
            where = f"{path} {fmt}: {items}"
            assert [i.get("control") for i in items] == ["reset", None, "live"], where
            reset = items[0]
            assert "history" in reset["reason"] and "lost" in reset["reason"], where
            assert sorted(reset["topics"]) == lost_topics, where
            event = items[1]
            # NDJSON and the multi-topic envelope carry the id; single-topic SSE has it as `id:`.
            assert event.get("id", event.get("sse_id")) == new_id, where
            assert items[2]["replayed"] == 1


async def _publish(client: httpx.AsyncClient, topic: str, data: str) -> httpx.Response | None:
    answer = await client.post(f"/topics/{topic}/events", json=data)
    return answer if answer.status_code == 201 else None


@contextlib.contextmanager
def _server(make_settings: Callable[..., object], **changes: object) -> Iterator[ThreadServer]:
    with thread_server(make_settings(heartbeat_s=0.2, **changes)) as server:  # type: ignore[arg-type]
        yield server


async def test_lost_history_memory_server_restarted(make_settings):
    with _server(make_settings) as first:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
            single, cursor = await before_the_loss(client)
    with _server(make_settings) as second:  # a new process state: every history starts again
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            await after_the_loss(client, single, cursor)


async def _lose_redis_history(
    make_settings, redis: RedisServer, lose: Callable[[], contextlib.AbstractContextManager[object]]
) -> None:
    """Publish, take the resume points, lose Redis's data (`lose()` keeps the new Redis up), resume."""
    with _server(make_settings, redis_url=redis.url) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            single, cursor = await before_the_loss(client)
            with lose():
                await after_the_loss(client, single, cursor)


@pytest.mark.redis
async def test_lost_history_redis_restarted_empty(make_settings, redis_server_factory):
    redis = redis_server_factory()

    @contextlib.contextmanager
    def restart() -> Iterator[None]:
        redis.stop()
        redis.start()  # no persistence: it comes back empty, on the same port
        yield

    await _lose_redis_history(make_settings, redis, restart)


@pytest.mark.redis
async def test_lost_history_redis_replaced_by_a_fresh_instance(make_settings, redis_server_factory):
    redis = redis_server_factory()

    @contextlib.contextmanager
    def replace() -> Iterator[None]:
        redis.close()  # gone with its directory
        binary = find_binary()
        assert binary is not None
        with RedisServer(binary, port=redis.port):  # another server, same address
            yield

    await _lose_redis_history(make_settings, redis, replace)
