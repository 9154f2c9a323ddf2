"""The Redis backend's own pub/sub connection: passwords, bulk reads, a connection that goes silent.

All against real Redis servers; the silent connection is made by a real TCP relay that
stops relaying without closing anything (as a dead NAT or a half-open peer would).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from broadcaster import BackendUnavailable, Event
from broadcaster.backends._pubsub import PubSubConnection, PubSubError
from broadcaster.backends.redis import RedisBackend

from ..support.waiting import eventually

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def _reading(backend: RedisBackend) -> AsyncIterator[list[Event]]:
    received: list[Event] = []

    async def read() -> None:
        async for message in backend.messages():
            if isinstance(message.event, Event):
                received.append(message.event)

    task = asyncio.create_task(read())
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_pubsub_connection_authenticates_with_the_urls_password(redis_server_factory):
    server = redis_server_factory("--requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
    async with RedisBackend(url) as backend, _reading(backend) as received:
        await backend.subscribe(["t"])
        published = await backend.publish("t", [("message", b'{"n":1}')])
        await eventually(lambda: received == published, within=5)


async def test_pubsub_connection_names_a_refused_password(redis_server_factory):
    server = redis_server_factory("--requirepass", "s3cret")
    conn = PubSubConnection(f"redis://:wrong@127.0.0.1:{server.port}/0")
    with pytest.raises(PubSubError, match="AUTH"):
        async with asyncio.timeout(5):
            await conn.connect()
    await conn.aclose()


async def test_a_burst_read_in_one_go_arrives_complete_and_in_order(redis_url):
    async with RedisBackend(redis_url) as backend, _reading(backend) as received:
        await backend.subscribe(["burst"])
        published = await backend.publish("burst", [("message", b'{"n":%d}' % n) for n in range(2000)])
        await eventually(lambda: len(received) >= 2000, within=10)
        assert received == published


class _Relay:
    """A TCP relay to Redis that can freeze: it keeps the sockets open and stops moving bytes."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> _Relay:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        self.flowing.set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))


async def test_reader_reconnects_when_its_connection_goes_silent(redis_url, monkeypatch):
    """No RST, no FIN, nothing: the idle PING goes unanswered and the reader connects again."""
    monkeypatch.setattr(RedisBackend, "read_timeout_s", 0.05)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with _Relay(port) as relay:
        url = f"redis://127.0.0.1:{relay.port}/0"
        async with RedisBackend(url) as backend, _reading(backend) as received:
            await backend.subscribe(["quiet"])
            first = await backend.publish("quiet", [("message", b"1")])
            await eventually(lambda: received == first, within=5)
            connections = relay.connections
            relay.flowing.clear()  # the reader's connection (and the publisher's) now hang
            await eventually(lambda: not backend.available, within=5, what="the silence noticed")
            relay.flowing.set()
            await eventually(lambda: relay.connections > connections and backend.available, within=10)
            second = await backend.publish("quiet", [("message", b"2")])
            await eventually(lambda: received == first + second, within=5)


async def test_publish_against_a_stopped_server_is_unavailable_at_once(redis_server_factory):
    server = redis_server_factory()
    async with RedisBackend(server.url) as backend:
        server.stop()
        with pytest.raises(BackendUnavailable):
            async with asyncio.timeout(5):
                await backend.publish("t", [("message", b"1")])


async def _pubsub_clients(client) -> int:
    return sum(1 for c in await client.client_list() if int(c["sub"]) or int(c["psub"]))


async def test_catch_up_after_outages_delivers_every_page_once(redis_url, monkeypatch):
    """More than a page published while the reader is away all arrives; a second outage repeats none.

    The backend yields RESYNC after reconnecting; the hub pages through history (`Hub.history_pages`).
    """
    import redis.asyncio as aioredis

    from broadcaster import Hub, Settings
    from broadcaster._hub import HISTORY_PAGE
    from broadcaster.backends import redis as redis_backend

    monkeypatch.setattr(redis_backend, "DEFAULT_BACKOFF_MIN_S", 1.0)  # a window to publish in (0.8-1.2 s)
    size = 2 * HISTORY_PAGE + 500
    admin = aioredis.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url, history_size=10_000, max_queue_size=10_000, queue_bytes=16 * 2**20)
    try:
        async with Hub(settings=settings) as hub:
            sub = await hub.subscribe(["outage"], queue_size=10_000)
            received: list[Event] = []

            async def drain() -> list[Event]:
                received.extend(item for item in sub.drain() if isinstance(item, Event))
                return received

            before = await hub.publish("outage", b"0")
            await eventually(lambda: _drained(drain, [before]), within=5)

            await admin.client_kill_filter(_type="pubsub")
            missed: list[Event] = []
            for start in range(1, size + 1, 1000):
                items = [("message", b"%d" % n) for n in range(start, min(start + 1000, size + 1))]
                missed += await hub.publish_many("outage", items)
            assert len(missed) == size
            await eventually(lambda: _drained(drain, [before, *missed]), within=10, what="caught up")

            await admin.client_kill_filter(_type="pubsub")  # again, before any live message
            await eventually(lambda: _pubsub_clients(admin), within=10, what="reconnected")
            live = await hub.publish("outage", b"-1")
            await eventually(lambda: _drained(drain, [before, *missed, live]), within=5, what="the live event")
            assert received == [before, *missed, live], "every page of the outage, in order, once"
    finally:
        await admin.aclose()


async def _drained(drain, expected: list[Event]) -> bool:
    got = await drain()
    assert got == expected[: len(got)], "in order, no duplicate"
    return len(got) == len(expected)


async def test_first_publish_after_a_restart_succeeds_without_a_503(redis_server_factory):
    """Issue 16: idle through a Redis restart, the first publish failed on a stale pooled connection."""
    server = redis_server_factory()
    async with RedisBackend(server.url) as backend:
        await backend.publish("t", [("message", b"1")])  # the pool now holds a connection
        server.stop()
        server.start()  # same port; nothing used the backend meanwhile
        async with asyncio.timeout(1):
            [event] = await backend.publish("t", [("message", b"2")])
        assert event.data == b"2"
        assert backend.available
