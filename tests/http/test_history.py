"""Retained history over HTTP: the NDJSON download, and resume / tail on the stream endpoints."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import orjson
import psutil
import pytest

from broadcaster import Hub
from broadcaster._ids import parse_event_id

from ..support.servers import ProcessServer
from ..support.waiting import eventually

NDJSON = {"Content-Type": "application/x-ndjson"}


def lines(response) -> list[dict]:
    return [orjson.loads(line) for line in response.text.splitlines()]


def events(items: list[dict]) -> list[dict]:
    return [i for i in items if "control" not in i]


async def publish_values(client, topic: str, values) -> None:
    body = b"".join(orjson.dumps(v) + b"\n" for v in values)
    answer = await client.post(f"/topics/{topic}/events", content=body, headers=NDJSON)
    assert answer.status_code in (200, 201), answer.text
    assert answer.json()["accepted"] == len(values)


async def published_ids(client, topic: str) -> list[str]:
    return [line["id"] for line in lines(await client.get(f"/topics/{topic}/history"))]


def assert_valid_download(response, count: int) -> list[dict]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.text.endswith("\n") or count == 0
    items = lines(response)  # every line parses
    assert len(items) == count
    refs = [parse_event_id(i["id"]) for i in items]
    assert len({(r.tag, r.epoch) for r in refs}) <= 1, "one topic, one epoch"
    assert [r.seq for r in refs] == sorted({r.seq for r in refs}), "seqs strictly increase"
    return items


async def test_history_download_streams_every_retained_event_across_pages(client_factory, settings):
    async with client_factory(settings.replace(history_size=5000)) as client:
        await publish_values(client, "big", range(2500))  # more than two of the download's pages
        response = await client.get("/topics/big/history")
        items = assert_valid_download(response, 2500)
        assert [i["data"] for i in items] == list(range(2500))
        assert 'filename="big.ndjson"' in response.headers["content-disposition"]
        assert {i["topic"] for i in items} == {"big"}


async def test_history_download_after_and_limit(client):
    await publish_values(client, "h", range(10))
    ids = await published_ids(client, "h")
    after = assert_valid_download(await client.get("/topics/h/history", params={"after": ids[3]}), 6)
    assert [i["data"] for i in after] == [4, 5, 6, 7, 8, 9]
    limited = assert_valid_download(await client.get("/topics/h/history", params={"after": ids[3], "limit": 2}), 2)
    assert [i["data"] for i in limited] == [4, 5]
    assert_valid_download(await client.get("/topics/h/history", params={"after": ids[-1]}), 0)
    assert_valid_download(await client.get("/topics/unknown/history"), 0)


async def test_history_download_says_reset_when_after_was_trimmed(client_factory, settings):
    async with client_factory(settings.replace(history_size=3)) as client:
        await publish_values(client, "h", [0])
        first = (await published_ids(client, "h"))[0]
        await publish_values(client, "h", range(1, 6))
        items = lines(await client.get("/topics/h/history", params={"after": first}))
        assert items[0]["control"] == "reset" and items[0]["last_event_id"] == first
        assert [i["data"] for i in items[1:]] == [3, 4, 5]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"after": "yesterday"}, 400), ({"after": "12-x"}, 400), ({"limit": 0}, 422), ({"limit": "many"}, 422)],
    ids=["after-word", "after-half-id", "limit-zero", "limit-word"],
)
async def test_history_download_rejects_bad_parameters(client, params, status):
    response = await client.get("/topics/h/history", params=params)
    assert response.status_code == status
    assert response.json()["error"]["code"]


async def test_history_skips_expired_events_of_an_idle_topic(client_factory, settings):
    """A page full of expired entries must not end the download (or a replay) early."""
    async with client_factory(settings.replace(history_ttl_s=2.0, history_size=5000)) as client:
        started = time.monotonic()
        await publish_values(client, "idle", range(1000))  # a whole page that will expire
        first = (await published_ids(client, "idle"))[0]
        await eventually(lambda: time.monotonic() > started + 1.0, within=5)  # a second batch, 1 s younger
        await publish_values(client, "idle", range(1000, 1005))
        await eventually(lambda: time.monotonic() > started + 2.1, within=5)  # the first batch has expired
        assert time.monotonic() < started + 2.9, "the machine was too slow for this test's timing"
        download = assert_valid_download(await client.get("/topics/idle/history"), 5)
        assert [i["data"] for i in download] == [1000, 1001, 1002, 1003, 1004]
        resumed = lines(await client.get("/topics/idle/events", params={"last_event_id": first, "max_events": 5}))
        assert resumed[0]["control"] == "reset"
        assert [i["data"] for i in events(resumed)] == [1000, 1001, 1002, 1003, 1004]


# -- resume and tail on the stream endpoints ------------------------------------------------------------


async def test_resume_with_last_event_id_header_replays_then_says_live(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        await publish_values(client, "r", range(5))
        ids = await published_ids(client, "r")
        headers = {"Last-Event-ID": ids[1]}
        task = asyncio.create_task(client.get("/topics/r/events", headers=headers, params={"max_events": 4}))
        await eventually(lambda: hub.subscriber_count("r") == 1)
        await publish_values(client, "r", [5])
        async with asyncio.timeout(5):
            items = lines(await task)
        assert [i.get("data", i.get("control")) for i in items] == [2, 3, 4, "live", 5]
        assert items[3] == {"control": "live", "replayed": 3}
        assert [i["id"] for i in items[:3]] == ids[2:]


async def test_resume_over_sse_frames_controls_without_ids(client_factory, settings):
    async with client_factory(settings.replace(history_size=3)) as client:
        await publish_values(client, "s", range(6))
        ids = await published_ids(client, "s")
        response = await client.get(
            "/topics/s/events",
            params={"last_event_id": ids[0].rpartition(".")[0] + ".1", "max_events": 3},  # seq 1: trimmed
            headers={"Accept": "text/event-stream"},
        )
        assert re.match(r"retry: \d+\nevent: reset\n", response.text), "the hint joins the first block"
        frames = [f for f in re.sub(r"^retry: \d+\n", "", response.text).split("\n\n") if f]
        assert frames[0].startswith("event: reset\ndata: ")
        assert orjson.loads(frames[0].split("data: ", 1)[1])["topics"] == ["s"]
        assert frames[1:] == [f"id: {i}\ndata: {n}" for i, n in zip(ids, (3, 4, 5), strict=True)]
        # the stream ended after its 3 events: the replay used them all, so no `live` follows
        assert not any("event: live" in f for f in frames)


async def test_resume_that_replays_nothing_still_says_live(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        await publish_values(client, "n", [1])
        last = (await published_ids(client, "n"))[-1]
        params = {"last_event_id": last, "max_events": 1}
        task = asyncio.create_task(client.get("/topics/n/events", params=params))
        await eventually(lambda: hub.subscriber_count("n") == 1)
        await publish_values(client, "n", [2])
        async with asyncio.timeout(5):
            items = lines(await task)
        assert items == [{"control": "live", "replayed": 0}, *events(items)]
        assert [i["data"] for i in events(items)] == [2]


async def test_tail_sends_the_last_events_then_live(client):
    await publish_values(client, "t", range(10))
    items = lines(await client.get("/topics/t/events", params={"tail": 3, "max_events": 3}))
    assert [i["data"] for i in events(items)] == [7, 8, 9]
    items = lines(await client.get("/events", params={"topic": ["t", "x.*"], "tail": 2, "max_events": 2}))
    assert [(i["topic"], i["data"]) for i in events(items)] == [("t", 8), ("t", 9)]


def sse_frames(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            frames.append(fields)
    return frames


async def test_resume_multi_topic_stream_from_its_cursor_id(settings, client_factory):
    """The SSE `id:` of a multi-topic stream is its cursor: one Last-Event-ID resumes every topic exactly."""
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        await _resume_multi_topic_from_cursor(hub, client)


async def _resume_multi_topic_from_cursor(hub: Hub, client: httpx.AsyncClient) -> None:
    selectors = {"topic": ["m.a", "m.b", "p.*"]}
    sse = {"Accept": "text/event-stream"}
    task = asyncio.create_task(client.get("/events", params={**selectors, "max_events": 3}, headers=sse))
    await eventually(lambda: hub.subscriber_count("m.a") == 1)
    for n in range(3):
        await publish_values(client, ["m.a", "m.b", "p.x"][n], [n])
    async with asyncio.timeout(5):
        seen = [f["id"] for f in sse_frames((await task).text)]
    assert len(seen) == 3
    cursor = seen[-1]
    assert "~" in cursor and cursor.count(",") == 2, "the cursor carries the last id of each of 3 topics"
    for n in range(3, 9):
        await publish_values(client, ["m.a", "m.b", "p.x", "p.y"][n % 4], [n])
    response = await client.get(
        "/events", params={**selectors, "max_events": 6}, headers={**sse, "Last-Event-ID": cursor}
    )
    frames = sse_frames(response.text)
    assert [f.get("event") for f in frames] == [None] * 6, "no reset: nothing was lost"
    items = [orjson.loads(f["data"]) for f in frames]
    assert sorted(i["data"] for i in items) == [3, 4, 5, 6, 7, 8]
    assert [i["data"] for i in items if i["topic"] == "p.y"] == [3, 7], (
        "a topic new to the stream replays since its start"
    )
    assert frames[-1]["id"].count(",") == 3, "the last frame's cursor covers all four topics"


@pytest.mark.parametrize("where", ["header", "query"])
@pytest.mark.parametrize("bad", ["abc", "12", "1-2-3", "-1-2", "1-x"])
async def test_resume_with_malformed_id_is_400(client, where, bad):
    headers = {"Last-Event-ID": bad} if where == "header" else {}
    params = {"last_event_id": bad} if where == "query" else {}
    response = await client.get("/topics/t/events", headers=headers, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_event_id"


@pytest.mark.parametrize("tail", [-1, 10**6])
async def test_tail_out_of_bounds_is_422(client, tail):
    response = await client.get("/topics/t/events", params={"tail": tail})
    assert response.status_code == 422


@pytest.mark.e2e
@pytest.mark.redis
async def test_history_download_of_a_big_topic_streams_with_flat_server_memory(redis_url):
    """Issue 4: the server process's RSS, sampled during the download, stays flat (loadtest/history_memory.py
    measures 100 000 events; this is the same at 50 000)."""
    count = 50_000
    env = {"BROADCASTER_REDIS_URL": redis_url, "BROADCASTER_HISTORY_SIZE": "100000"}
    with ProcessServer(env=env) as server:
        process = psutil.Process(server.process.pid)
        pad = "x" * 150
        body = b"".join(orjson.dumps({"n": n, "pad": pad}) + b"\n" for n in range(count))  # ~10 MB
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            answer = await client.post("/topics/big/events", content=body, headers=NDJSON)
            assert answer.json()["accepted"] == count
            del body
            await client.get("/topics/big/history", params={"limit": 2000})  # warm-up
            before = process.memory_info().rss
            peak = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.01):
                    peak[0] = max(peak[0], process.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            lines = size = 0
            last = 0
            try:
                async with client.stream("GET", "/topics/big/history") as response:
                    assert response.headers["content-disposition"].startswith("attachment")
                    async for line in response.aiter_lines():
                        item = orjson.loads(line)
                        seq = parse_event_id(item["id"]).seq
                        assert seq > last and item["data"]["n"] == lines
                        last = seq
                        lines += 1
                        size += len(line) + 1
            finally:
                stop.set()
                sampler.join(5)
    assert lines == count
    growth = peak[0] - before
    assert growth < size / 4, f"the server grew by {growth / 1e6:.1f} MB for a {size / 1e6:.1f} MB download"
