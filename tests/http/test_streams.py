"""Subscribing over the in-process app: formats, headers, keepalives, several topics, flow control, endings,
and the operational routes. Every stream under test ends by itself (max_events / max_duration)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from broadcaster import Hub, Settings

from ..support.waiting import eventually

SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"


def _sse(text: str) -> list[dict[str, Any]]:
    """What an EventSource dispatches from `text`, plus `retry` and comment lines as it reads them."""
    decoder = SSEDecoder()
    items: list[dict[str, Any]] = []
    for line in SSELineDecoder().decode(text):
        if line.startswith(":"):
            items.append({"comment": line[1:].strip()})
            continue
        sse = decoder.decode(line)
        if sse is not None:
            items.append({"id": sse.id, "event": sse.event, "data": sse.data, "retry": sse.retry})
    return items


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line]


def _events(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "control" not in line]


async def _open(
    client: httpx.AsyncClient,
    hub: Hub,
    url: str,
    *,
    keys: dict[str, int],
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> asyncio.Task[httpx.Response]:
    """Start a (self-ending) stream request; return once the hub counts `keys` subscribers."""
    task = asyncio.create_task(client.get(url, params=params, headers=headers))
    await eventually(
        lambda: task.done() or all(hub.subscriber_count(k) >= n for k, n in keys.items()),
        within=5,
        what=f"subscribers {keys}",
    )
    if task.done():  # an early answer is an error: surface it
        response = task.result()
        raise AssertionError(f"the stream ended before subscribing: {response.status_code} {response.text}")
    return task


async def _finish(task: asyncio.Task[httpx.Response], within: float = 5) -> httpx.Response:
    async with asyncio.timeout(within):
        return await task


StreamRunner = Callable[..., Awaitable[tuple[httpx.Response, list[str]]]]


@pytest.fixture
def run_stream(settings: Settings, client_factory: Callable[..., Any]) -> StreamRunner:
    """Open one stream, publish `publish` (topic, data) items once it is subscribed, return the response."""

    async def run(
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        keys: dict[str, int] | None = None,
        publish: Sequence[tuple[str, Any]] = (),
        settings_changes: dict[str, Any] | None = None,
    ) -> tuple[httpx.Response, list[str]]:
        chosen = settings.replace(**(settings_changes or {}))
        async with Hub(settings=chosen) as hub, client_factory(chosen, hub) as client:
            task = await _open(client, hub, url, keys=keys or {}, params=params, headers=headers)
            ids = []
            for topic, data in publish:
                answer = await client.post(f"/topics/{topic}/events", json=data)
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
            return await _finish(task), ids

    return run


# -- format negotiation and headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "headers", "media_type"),
    [
        pytest.param({}, {}, NDJSON_TYPE, id="default-ndjson"),
        pytest.param({}, {"Accept": "*/*"}, NDJSON_TYPE, id="curl-accept-ndjson"),
        pytest.param({}, {"Accept": "text/event-stream"}, SSE_TYPE, id="accept-sse"),
        pytest.param({}, {"Accept": "text/html, text/event-stream;q=0.9"}, SSE_TYPE, id="accept-list-sse"),
        pytest.param({"format": "sse"}, {}, SSE_TYPE, id="format-sse"),
        pytest.param({"format": "ndjson"}, {"Accept": "text/event-stream"}, NDJSON_TYPE, id="format-overrides-accept"),
        pytest.param({"format": "sse"}, {"Accept": "application/x-ndjson"}, SSE_TYPE, id="format-sse-overrides"),
    ],
)
async def test_stream_format_negotiation(run_stream, params, headers, media_type):
    response, ids = await run_stream(
        "/topics/fmt/events",
        params={**params, "max_events": 1},
        headers=headers,
        keys={"fmt": 1},
        publish=[("fmt", {"n": 1})],
    )
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    if media_type == SSE_TYPE:
        [event] = [item for item in _sse(response.text) if item.get("id")]
        assert (event["id"], event["event"], orjson.loads(event["data"])) == (ids[0], "message", {"n": 1})
    else:
        [event] = _events(_ndjson(response.text))
        assert (event["id"], event["topic"], event["data"]) == (ids[0], "fmt", {"n": 1})


@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
async def test_stream_headers_no_store_no_buffering_never_compressed(run_stream, fmt):
    response, _ = await run_stream(
        "/topics/hdr/events",
        params={"format": fmt, "max_events": 1},
        headers={"Accept-Encoding": "gzip, deflate, br"},
        keys={"hdr": 1},
        publish=[("hdr", "x" * 2000)],  # big enough that a compression middleware would kick in
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in response.headers
    assert "content-length" not in response.headers
    assert ("x" * 2000) in response.text


async def test_stream_sse_starts_with_a_jittered_retry_hint(run_stream, settings):
    response, ids = await run_stream(
        "/topics/retry/events",
        params={"format": "sse", "max_events": 1},
        keys={"retry": 1},
        publish=[("retry", 1)],
    )
    # No blank line after it: the hint joins the first event's block (no empty event first).
    match = re.match(r"retry: (\d+)\n(: keepalive\n)*id: ", response.text)
    assert match is not None, response.text[:80]
    assert settings.retry_ms <= int(match[1]) <= settings.retry_ms * 1.5
    items = [item for item in _sse(response.text) if "comment" not in item]
    assert items[0]["retry"] == int(match[1]) and items[0]["id"] == ids[0]
    assert [item["id"] for item in items] == ids


async def test_stream_ndjson_has_no_preamble(run_stream):
    response, ids = await run_stream(
        "/topics/pre/events", params={"max_events": 1}, keys={"pre": 1}, publish=[("pre", 1)]
    )
    assert orjson.loads(response.text.splitlines()[0])["id"] == ids[0]


# -- keepalives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "keepalive"),
    [pytest.param("sse", ": keepalive", id="sse-comment"), pytest.param("ndjson", '{"control":"heartbeat"}', id="nd")],
)
async def test_stream_idle_gets_keepalives(run_stream, fmt, keepalive):
    started = time.monotonic()
    response, _ = await run_stream(
        "/topics/idle/events",
        params={"format": fmt, "max_duration": 0.9},
        keys={"idle": 1},
        settings_changes={"heartbeat_s": 0.2},
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line and not line.startswith("retry:")]
    assert len(lines) >= 2, response.text
    assert set(lines) == {keepalive}
    assert len(lines) <= elapsed / 0.2 + 1


async def test_stream_keepalive_pushed_back_by_events(settings, client_factory):
    """A stream that is busy with events needs no keepalives."""
    chosen = settings.replace(heartbeat_s=0.4)
    async with Hub(settings=chosen) as hub, client_factory(chosen, hub) as client:
        task = await _open(client, hub, "/topics/busy/events", keys={"busy": 1}, params={"max_events": 12})
        for n in range(12):
            await hub.publish_json("busy", n)
            await asyncio.sleep(0.1)  # ~1.2 s in all: three heartbeat periods, each well covered by events
        response = await _finish(task)
    lines = _ndjson(response.text)
    assert [line["data"] for line in _events(lines)] == list(range(12))
    # A fixed-timer heartbeat would have sent two or three by now; events push it back every time.
    assert [line for line in lines if line.get("control") == "heartbeat"] == []


# -- several topics and patterns ----------------------------------------------------------------


async def test_stream_events_route_merges_topics_and_patterns_ndjson(run_stream):
    response, ids = await run_stream(
        "/events",
        params={"topic": ["orders", "sensors.*"], "max_events": 3},
        keys={"orders": 1, "sensors.*": 1},
        publish=[("other", 0), ("orders", 1), ("sensors.kitchen", 2), ("sensorsX", 9), ("sensors.hall.temp", 3)],
    )
    assert response.headers["content-type"].startswith(NDJSON_TYPE)
    events = _events(_ndjson(response.text))
    assert [(e["topic"], e["data"]) for e in events] == [
        ("orders", 1),
        ("sensors.kitchen", 2),
        ("sensors.hall.temp", 3),
    ]
    assert [e["id"] for e in events] == [ids[1], ids[2], ids[4]]


async def test_stream_events_route_sse_data_carries_the_envelope(run_stream):
    response, ids = await run_stream(
        "/events",
        params={"topic": ["orders", "sensors.*"], "max_events": 2},
        headers={"Accept": "text/event-stream"},
        keys={"orders": 1, "sensors.*": 1},
        publish=[("orders", {"n": 1}), ("sensors.kitchen", {"t": 21.5})],
    )
    assert response.headers["content-type"].startswith(SSE_TYPE)
    events = [item for item in _sse(response.text) if item.get("data")]
    # The SSE id of a multi-topic stream is its cursor (the last id of every topic so far); the
    # envelope keeps the event's own id.
    base = events[0]["id"].partition("~")[0]
    assert base.isdigit()
    assert [e["id"] for e in events] == [f"{base}~{ids[0]}", f"{base}~{ids[0]},{ids[1]}"]
    envelopes = [orjson.loads(e["data"]) for e in events]
    assert [(env["id"], env["topic"], env["type"], env["data"]) for env in envelopes] == [
        (ids[0], "orders", "message", {"n": 1}),
        (ids[1], "sensors.kitchen", "message", {"t": 21.5}),
    ]
    assert all(isinstance(env["ts"], int) for env in envelopes)


async def test_stream_topic_and_matching_pattern_deliver_each_event_once(run_stream):
    response, ids = await run_stream(
        "/events",
        params={"topic": ["sensors.kitchen", "sensors.*"], "max_events": 2},
        keys={"sensors.kitchen": 1, "sensors.*": 1},
        publish=[("sensors.kitchen", 1), ("sensors.kitchen", 2)],
    )
    assert [e["id"] for e in _events(_ndjson(response.text))] == ids


async def test_stream_repeated_topic_counts_once(run_stream):
    response, ids = await run_stream(
        "/events",
        params={"topic": ["dup", "dup"], "max_events": 1},
        keys={"dup": 1},
        publish=[("dup", 1)],
    )
    assert [e["id"] for e in _events(_ndjson(response.text))] == ids


# -- per-subscriber flow control ----------------------------------------------------------------


async def _burst(
    client_factory: Callable[..., Any], settings: Settings, params: dict[str, Any], count: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """A stream parked in wait(), then `count` events offered in one pump pass.

    On the memory backend one `publish_many` reaches the pump as one batch that it offers without
    yielding, so the stream's writer cannot drain in between: the queue sees the whole burst.
    """
    assert settings.redis_url is None
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        task = await _open(client, hub, "/topics/burst/events", keys={"burst": 1}, params=params)
        events = await hub.publish_many("burst", [("message", b"%d" % n) for n in range(count)])
        response = await _finish(task)
    assert response.status_code == 200
    lines = [line for line in _ndjson(response.text) if line.get("control") != "heartbeat"]
    return lines, [e.id for e in events]


def _shape(lines: list[dict[str, Any]]) -> list[Any]:
    return [line["control"] if "control" in line else line["data"] for line in lines]


async def test_stream_queue_and_drop_oldest_honoured(make_settings, client_factory):
    params = {"queue": 2, "overflow": "drop-oldest", "max_events": 2}
    lines, ids = await _burst(client_factory, make_settings(), params, 5)
    assert _shape(lines) == ["gap", 3, 4]
    assert (lines[0]["dropped"], lines[0]["first_id"], lines[0]["last_id"]) == (3, ids[0], ids[2])


async def test_stream_queue_and_drop_newest_honoured(make_settings, client_factory):
    params = {"queue": 2, "overflow": "drop-newest", "max_duration": 0.5}
    lines, ids = await _burst(client_factory, make_settings(), params, 5)
    assert _shape(lines) == [0, 1, "gap"]
    assert (lines[2]["dropped"], lines[2]["first_id"], lines[2]["last_id"]) == (3, ids[2], ids[4])


async def test_stream_small_queue_disconnects_by_default(make_settings, client_factory):
    lines, _ = await _burst(client_factory, make_settings(), {"queue": 2}, 3)
    assert _shape(lines) == ["fault"]
    assert lines[0]["reason"] == "slow consumer"
    assert "2 events" in lines[0]["message"]


async def test_stream_queue_large_enough_loses_nothing(make_settings, client_factory):
    lines, _ = await _burst(client_factory, make_settings(), {"queue": 5, "max_events": 5}, 5)
    assert _shape(lines) == [0, 1, 2, 3, 4]


async def test_stream_server_default_overflow_and_queue_apply(make_settings, client_factory):
    lines, _ = await _burst(client_factory, make_settings(overflow="drop-oldest", queue_size=2), {"max_events": 2}, 4)
    assert _shape(lines) == ["gap", 2, 3]


# -- endings ------------------------------------------------------------------------------------


async def test_stream_max_events_ends_after_exactly_n(run_stream):
    response, ids = await run_stream(
        "/topics/n/events",
        params={"max_events": 2},
        keys={"n": 1},
        publish=[("n", 1), ("n", 2), ("n", 3)],
    )
    assert [e["id"] for e in _events(_ndjson(response.text))] == ids[:2]


async def test_stream_max_duration_ends_an_idle_stream(run_stream):
    started = time.monotonic()
    response, _ = await run_stream("/topics/d/events", params={"max_duration": 0.3}, keys={"d": 1})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert _events(_ndjson(response.text)) == []
    assert 0.3 <= elapsed < 2.0


async def test_stream_ending_unsubscribes(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        task = await _open(client, hub, "/topics/gone/events", keys={"gone": 1}, params={"max_events": 1})
        await hub.publish_json("gone", 1)
        await _finish(task)
        await eventually(lambda: hub.subscriber_count("gone") == 0 and hub.keys == 0, within=5)


# -- operational routes -------------------------------------------------------------------------


async def test_topics_lists_local_subscriber_counts(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        tasks = [
            await _open(client, hub, "/topics/count/events", keys={"count": n}, params={"max_events": 1})
            for n in (1, 2)
        ]
        other = await _open(client, hub, "/topics/solo/events", keys={"solo": 1}, params={"max_events": 1})
        listing = (await client.get("/topics")).json()["topics"]
        by_topic = {entry["topic"]: entry for entry in listing}
        assert by_topic["count"]["subscribers"] == 2
        assert by_topic["solo"]["subscribers"] == 1
        await hub.publish_json("count", 1)
        await hub.publish_json("solo", 1)
        for task in [*tasks, other]:
            await _finish(task)
        await eventually(lambda: hub.subscriber_count("count") == 0, within=5)
        listing = (await client.get("/topics")).json()["topics"]
        by_topic = {entry["topic"]: entry for entry in listing}
        assert by_topic["count"]["subscribers"] == 0
        assert by_topic["count"]["events"] == 1
        assert by_topic["count"]["retained"] == 1
        assert set(by_topic["count"]) == {"topic", "subscribers", "events", "events_per_s", "retained", "last_id"}


async def test_healthz_and_readyz(settings, client_factory, backend_kind):
    async with client_factory(settings) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert isinstance(health.json()["version"], str)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "backend": backend_kind}


async def test_openapi_documents_every_route_and_stream_parameter(make_settings, client_factory):
    """/docs works and names the stream parameters (warnings are errors in this suite)."""
    async with client_factory(make_settings()) as client:
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
    for path in ("/topics/{topic}/events", "/events", "/topics/{topic}/history", "/topics", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    names = {p["name"] for p in spec["paths"]["/events"]["get"]["parameters"]}
    assert {"topic", "format", "queue", "overflow", "last_event_id", "Last-Event-ID", "tail"} <= names
    assert "requestBody" in spec["paths"]["/topics/{topic}/events"]["post"]


async def test_healthz_and_readyz_answer_head_for_probes(settings, client_factory):
    """`curl -I` and load balancers probe with HEAD: same status, no body."""
    async with client_factory(settings) as client:
        for path in ("/healthz", "/readyz"):
            response = await client.head(path)
            assert response.status_code == 200, path
            assert response.content == b""


def _metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_metrics_prometheus_shape_and_counts(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        names = {
            "broadcaster_streams": "gauge",
            "broadcaster_subscriptions": "gauge",
            "broadcaster_topics": "gauge",
            "broadcaster_published_total": "counter",
            "broadcaster_received_total": "counter",
            "broadcaster_evicted_total": "counter",
            "broadcaster_dropped_total": "counter",
            "broadcaster_send_timeouts_total": "counter",
            "broadcaster_healthy": "gauge",
        }
        for name, kind in names.items():
            assert f"# HELP {name} " in response.text
            assert f"# TYPE {name} {kind}\n" in response.text
        before = _metrics(response.text)
        assert set(names) <= set(before)
        assert before["broadcaster_healthy"] == 1

        task = await _open(client, hub, "/topics/m/events", keys={"m": 1}, params={"max_events": 1})

        async def registered() -> dict[str, float] | None:
            # The hub counts the subscription before the stream registers with the monitor (replay first).
            now = _metrics((await client.get("/metrics")).text)
            return now if now["broadcaster_streams"] == before["broadcaster_streams"] + 1 else None

        during = await eventually(registered, within=5, what="the stream counted in /metrics")
        assert during["broadcaster_subscriptions"] == before["broadcaster_subscriptions"] + 1
        assert during["broadcaster_topics"] == before["broadcaster_topics"] + 1
        assert (await client.post("/topics/m/events", json=1)).status_code == 201
        await _finish(task)
        after = _metrics((await client.get("/metrics")).text)
        assert after["broadcaster_published_total"] == before["broadcaster_published_total"] + 1
        assert after["broadcaster_received_total"] >= before["broadcaster_received_total"] + 1
