"""HttpTarget and RedisTarget against a running server: delivery, retries, overflow, clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from producers import (
    HttpTarget,
    InvalidData,
    RedisTarget,
    TargetConfigError,
    TargetRejected,
    TargetUnavailable,
    target_from_url,
)

from ..support.redis_server import free_port
from ..support.servers import thread_server
from ..support.waiting import eventually


async def _data(lines: AsyncIterator[str], count: int, within: float = 10.0) -> list[object]:
    """The data of the next `count` events of an NDJSON stream (control lines skipped)."""
    received: list[object] = []
    async with asyncio.timeout(within):
        while len(received) < count:
            line = orjson.loads(await anext(lines))
            if "data" in line:
                received.append(line["data"])
    return received


async def _history(client: httpx.AsyncClient, topic: str) -> list[object]:
    response = await client.get(f"/topics/{topic}/history")
    return [orjson.loads(line)["data"] for line in response.text.splitlines()]


async def test_http_target_streams_events_to_subscribers_before_its_post_ends(settings):
    with thread_server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/plant/events") as stream:
                lines = stream.aiter_lines()
                async with HttpTarget(server.url, type="reading", idle_s=30, max_post_s=30) as target:
                    await target.publish("plant", b'{"n": 0}')
                    assert await _data(lines, 1) == [{"n": 0}]
                    assert target.stats.sent == 0, "delivered while its POST is still open (not acknowledged yet)"
                    for n in range(1, 50):
                        await target.publish("plant", orjson.dumps({"n": n}))
                    await target.flush()
                    assert target.stats.sent == 50
                    assert await _data(lines, 49) == [{"n": n} for n in range(1, 50)]
    assert (target.stats.rejected, target.stats.dropped) == (0, 0)


@pytest.mark.redis
async def test_redis_target_flattens_multi_line_json_to_one_line(make_settings, redis_url):
    """Pretty-printed JSON would cut an SSE `data:` field in two; it is sent as one line."""
    with thread_server(make_settings(redis_url=redis_url)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/pretty/events", params={"format": "sse"}) as stream:
                lines = stream.aiter_lines()
                async with RedisTarget(redis_url) as target:
                    await target.publish("pretty", b'{\n  "temp": 21.5,\n  "unit": "C"\n}')
                    await target.flush()
                frame: list[str] = []
                async with asyncio.timeout(10):
                    while not (frame and frame[-1] == "" and any(f.startswith("data:") for f in frame)):
                        frame.append(await anext(lines))
                data_lines = [f for f in frame if f.startswith("data:")]
                assert data_lines == ['data: {"temp":21.5,"unit":"C"}']


@pytest.mark.redis
async def test_redis_target_reaches_subscribers_of_a_running_server(make_settings, redis_url):
    with thread_server(make_settings(redis_url=redis_url)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/plant/events") as stream:
                lines = stream.aiter_lines()
                async with target_from_url(redis_url, type="reading") as target:
                    assert isinstance(target, RedisTarget)
                    for n in range(20):
                        await target.publish("plant", orjson.dumps({"n": n}))
                    assert await _data(lines, 20) == [{"n": n} for n in range(20)]
            # The same atomic path as the server: the events are in the topic's history too.
            assert await _history(client, "plant") == [{"n": n} for n in range(20)]
    assert target.stats.sent == 20


async def test_http_target_down_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    target = HttpTarget(url, retry_for_s=0.3)
    with pytest.raises(TargetUnavailable) as failure:
        async with target:
            await target.publish("plant", b"1")
            await target.flush()
    message = str(failure.value)
    assert url in message and "cannot reach" in message and "ConnectError" in message and "gave up" in message
    assert target.stats.retries >= 1


@pytest.mark.redis
async def test_redis_target_down_is_a_clear_error():
    url = f"redis://127.0.0.1:{free_port()}/0"
    target = RedisTarget(url, retry_for_s=0.3)
    with pytest.raises(TargetUnavailable) as failure:
        async with target:
            await target.publish("plant", b"1")
            await target.flush()
    message = str(failure.value)
    assert url in message and "unreachable" in message and "gave up" in message
    with pytest.raises(TargetUnavailable):
        await target.publish("plant", b"2")  # the failure stays: no silent loss after it


@pytest.mark.redis
async def test_http_target_retries_503_until_the_backend_is_back(make_settings, redis_server_factory):
    redis = redis_server_factory()
    with thread_server(make_settings(redis_url=redis.url)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            redis.stop()
            async with HttpTarget(server.url, retry_for_s=20, idle_s=0.1, max_post_s=0.5) as target:
                for n in range(10):
                    await target.publish("plant", orjson.dumps({"n": n}))
                await eventually(lambda: target.stats.retries >= 1, what="a 503 answered and retried")
                redis.start()
                async with asyncio.timeout(15):
                    await target.flush()
            assert target.stats.sent == 10
            # Every event once, in order: the 503 report told the target what to send again.
            await eventually(lambda: _history(client, "plant"), within=5)
            assert await _history(client, "plant") == [{"n": n} for n in range(10)]


@pytest.mark.redis
async def test_redis_target_retries_while_redis_restarts(make_settings, redis_server_factory):
    redis = redis_server_factory()
    async with RedisTarget(redis.url, retry_for_s=20) as target:
        await target.publish("plant", b'{"n": 0}')
        await target.flush()
        redis.stop()
        await target.publish("plant", b'{"n": 1}')
        await eventually(lambda: target.stats.retries >= 1, what="a failed publish retried")
        redis.start()
        async with asyncio.timeout(15):
            await target.flush()
    assert (target.stats.sent, target.stats.dropped) == (2, 0)


async def test_http_target_drop_overflow_counts_what_it_dropped(make_settings):
    with thread_server(make_settings()) as server:
        async with HttpTarget(server.url, buffer=5, overflow="drop") as target:
            for n in range(20):  # no await yields to the sender in between: the buffer fills
                await target.publish("plant", orjson.dumps({"n": n}))
            await target.flush()
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert await _history(client, "plant") == [{"n": n} for n in range(5)]
    assert (target.stats.sent, target.stats.dropped) == (5, 15)


async def test_http_target_block_overflow_waits_and_loses_nothing(make_settings):
    with thread_server(make_settings()) as server:
        async with HttpTarget(server.url, buffer=5, batch=2) as target:
            for n in range(50):
                await target.publish("plant", orjson.dumps({"n": n}))
            await target.flush()
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert await _history(client, "plant") == [{"n": n} for n in range(50)]
    assert (target.stats.sent, target.stats.dropped) == (50, 0)


async def test_http_target_counts_lines_the_server_rejected(make_settings):
    with thread_server(make_settings()) as server:
        async with HttpTarget(server.url) as target:
            await target.publish("plant", b'{"ok": 1}')
            await target.publish("plant", b"{not json")  # the server's ingest rejects this line alone
            await target.publish("plant", b'{"ok": 2}')
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert await _history(client, "plant") == [{"ok": 1}, {"ok": 2}]
    assert (target.stats.sent, target.stats.rejected) == (2, 1)


async def test_http_target_4xx_is_rejected_with_the_servers_reason(make_settings):
    with thread_server(make_settings()) as server:
        target = HttpTarget(server.url + "/no/such/prefix", retry_for_s=5)
        with pytest.raises(TargetRejected) as failure:
            async with target:
                await target.publish("plant", b"1")
    assert "404" in str(failure.value) and "plant" in str(failure.value)


async def test_targets_refuse_invalid_data_and_urls(redis_url):
    with pytest.raises(TargetConfigError, match="unknown target"):
        target_from_url("ftp://example.org")
    with pytest.raises(TargetConfigError, match="reserved"):
        HttpTarget("http://127.0.0.1:1", type="gap")
    async with HttpTarget("http://127.0.0.1:1", max_event_bytes=10) as target:
        for topic, data, why in [
            ("bad topic!", b"1", "invalid"),
            ("plant", b"1\n2", "one line"),
            ("plant", b"", "empty"),
            ("plant", b"[" + b"1," * 10 + b"1]", "limit is 10 bytes"),
        ]:
            with pytest.raises(InvalidData, match=why):
                await target.publish(topic, data)
    async with RedisTarget(redis_url) as redis_target:
        with pytest.raises(InvalidData, match="not valid JSON"):
            await redis_target.publish("plant", b"{nope")


@pytest.mark.redis
async def test_redis_target_takes_history_settings_as_arguments_never_from_the_environment(
    monkeypatch, make_settings, redis_url
):
    """Issue 10 item 6: the server's variables in the producer's environment change nothing."""
    monkeypatch.setenv("BROADCASTER_HISTORY_SIZE", "1")
    monkeypatch.setenv("BROADCASTER_REDIS_PREFIX", "elsewhere:")
    async with RedisTarget(redis_url, history_size=3) as target:
        for n in range(5):
            await target.publish("kept", b"%d" % n)
        await target.flush()
    with thread_server(make_settings(redis_url=redis_url)) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert await _history(client, "kept") == [2, 3, 4]
    with pytest.raises(TargetConfigError, match="history_size must be at least 1"):
        RedisTarget(redis_url, history_size=0)
