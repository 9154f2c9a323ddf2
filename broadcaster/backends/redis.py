"""RedisBackend: Redis pub/sub between processes, a Redis stream per topic for history.

One process holds two connections, whatever the number of its clients and topics:
a redis-py client for commands (publish, history) and one pub/sub connection that
carries every topic and pattern the process serves. The hub reads that connection
through `messages()`, with a read timeout, in bulk: `_pubsub.PubSubConnection`
(hiredis-parsed, ~20x cheaper per message than redis-py's `PubSub.get_message`,
which also returns nothing, rather than waiting, when nothing is subscribed).

Deliberate divergence from redis-py's own recovery: both connections are made
with no automatic retries. A publish while Redis is down fails at once
(`BackendUnavailable`, which the HTTP layer answers with 503 + Retry-After) instead
of hanging in hidden retries, and the reader reconnects by itself with jittered
backoff, subscribes again, and yields `RESYNC`: the hub then reads from the topic
streams what was published while the reader was away (`Hub.history_pages`), so
subscribers stay connected and lose nothing that Redis kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any, Self, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    RedisError,
)

from .._event import Event
from .._exceptions import BackendClosed, BackendError, BackendUnavailable
from .._ids import format_id
from .._redact import redact_url
from .._topics import is_pattern, pattern_regex
from ._pubsub import PubSubConnection
from ._redis_scripts import NEW_EPOCH_SCRIPT, PUBLISH_SCRIPT
from ._redis_wire import batch_args, batch_events, decode_payload, map_redis_errors, stale_connection
from .base import RESYNC, BackendMessage, HistoryPage, TopicInfo

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How long a topic's epoch and last seq outlive its last publish (resumes from it say `reset` after).
META_TTL_MS = 7 * 86_400_000

#: Topics whose newest (epoch, seq) a process remembers, to detect a history that went backwards.
NEWEST_SEEN_TOPICS = 100_000

DEFAULT_SOCKET_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 1.0
DEFAULT_SUBSCRIBE_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_MIN_S = 0.05
DEFAULT_BACKOFF_MAX_S = 2.0


class RedisBackend:
    """Pub/sub through Redis, history in Redis streams. Use as an async context manager."""

    #: The pub/sub reader's read timeout; after `_pubsub.PING_AFTER_IDLE_READS` empty reads it PINGs.
    read_timeout_s = DEFAULT_READ_TIMEOUT_S

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "broadcaster:",
        history_size: int = 1000,
        history_ttl_s: float = 3600.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl_ms = int(history_ttl_s * 1000)
        self.meta_ttl_ms = max(META_TTL_MS, 2 * self.history_ttl_ms)
        # redis-py's return types are unions of every RESP shape; we know ours, so Any.
        self._client: Any = None
        self._script: Any = None
        self._pubsub: Any = None
        self._keys: set[str] = set()
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._last_message: tuple[bytes, bytes, list[Event]] | None = None
        #: Per topic, the newest (epoch, seq) this process published or received (bounded): sent
        #: with each publish, so that a history that went backwards starts a new epoch.
        self._newest: dict[str, tuple[str, int]] = {}
        self._connected = asyncio.Event()
        self._down = False  # the reader lost (or never got) its connection and is retrying
        self._closed = False
        self._opened = False
        self.available = False

    # -- lifecycle -------------------------------------------------------------------------

    def _new_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=DEFAULT_SOCKET_TIMEOUT_S,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT_S,
            health_check_interval=0,
        )

    async def __aenter__(self) -> Self:
        if self._opened:
            raise BackendClosed("a RedisBackend cannot be opened twice")
        self._opened = True
        self._client = self._new_client()
        self._script = self._client.register_script(PUBLISH_SCRIPT)
        try:
            await self.ping()
        except BackendUnavailable as exc:
            logger.warning("Redis is not reachable yet, will keep trying: %s", exc, extra={"url": redact_url(self.url)})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected.set()
        pubsub, self._pubsub = self._pubsub, None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                if pubsub is not None:
                    await pubsub.aclose()
                if self._client is not None:
                    await self._client.aclose()

    def _check_open(self) -> Any:
        if self._closed or self._client is None:
            raise BackendClosed("the backend is closed")
        return self._client

    async def ping(self) -> None:
        client = self._check_open()
        await self._run(client.ping)
        self.available = True

    async def _run(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run a command (mapping errors); once more at once if the pooled connection was stale.

        After Redis restarts, the pool still holds connections to the old process, and the
        first command on one fails: retried on a new connection, the first publish after an
        outage succeeds as soon as Redis accepts connections. A failure to connect is not
        retried (it answers 503 at once).
        """
        try:
            with map_redis_errors():
                return await command()
        except BackendUnavailable as exc:
            if not stale_connection(exc):
                raise
        with map_redis_errors():
            return await command()

    # -- publishing and history ------------------------------------------------------------

    def _stream_key(self, topic: str) -> str:
        # `{topic}` is a Redis Cluster hash tag: every key of a topic lives in one slot (issue 17).
        return f"{self.prefix}stream:{{{topic}}}"

    def _meta_key(self, topic: str) -> str:
        return f"{self.prefix}meta:{{{topic}}}"

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        self._check_open()
        if not items:
            return []
        keys = [self._stream_key(topic), self._meta_key(topic), self.prefix + "topics"]
        # Three arguments for the whole batch, not two per event: packing thousands of
        # arguments was most of the server's cost of a batch (and Redis parses fewer).
        # The batch travels newline-framed, to the script and in its PUBLISH.
        type_arg, blob = batch_args(items)
        args = [self._channel(topic), self.history_size, self.history_ttl_ms, topic, len(items), type_arg, blob]
        args.extend((self.meta_ttl_ms, *self._newest_seen(topic)))
        try:
            raw_epoch, n, ms = await self._run(lambda: self._script(keys=keys, args=args))
        except BackendUnavailable:
            self.available = False
            raise
        self.available = True
        epoch = raw_epoch.decode()
        self._note_newest(topic, epoch, int(n) + len(items))
        return batch_events(topic, epoch, int(n) + 1, int(ms), items)

    def _newest_seen(self, topic: str) -> tuple[str, int]:
        return self._newest.get(topic, ("", 0))

    def _note_newest(self, topic: str, epoch: str, seq: int) -> None:
        newest = self._newest
        if len(newest) >= NEWEST_SEEN_TOPICS and topic not in newest:
            del newest[next(iter(newest))]  # the topic noted first: bounded memory, a best effort
        newest[topic] = (epoch, seq)

    async def new_epoch(self, topic: str, replaced: str) -> None:
        client = self._check_open()
        keys = [self._meta_key(topic), self._stream_key(topic)]
        await self._run(lambda: client.eval(NEW_EPOCH_SCRIPT, 2, *keys, replaced))

    def _to_events(self, topic: str, epoch: str, entries: list[Any]) -> list[Event]:
        events = []
        for raw_id, fields in entries:
            fields = dict(zip(fields[::2], fields[1::2], strict=True)) if isinstance(fields, list) else fields
            seq_text, _, ms = raw_id.decode().partition("-")
            seq = int(seq_text)
            event_id = format_id(topic, epoch, seq)
            events.append(Event(topic, event_id, fields[b"t"].decode(), fields[b"d"], int(ms), seq=seq, epoch=epoch))
        return events

    def _horizon_ms(self) -> int:
        return time.time_ns() // 1_000_000 - self.history_ttl_ms

    async def history(
        self, topic: str, *, after: int | None = None, since_ms: int | None = None, limit: int
    ) -> HistoryPage:
        client = self._check_open()
        key = self._stream_key(topic)
        # Events of an idle topic can outlive the ttl until its next publish: readers skip them.
        since = max(self._horizon_ms(), since_ms or 0)

        async def read() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hmget(self._meta_key(topic), "e", "n")
                pipe.xrange(key, "-" if after is None else f"({after}-18446744073709551615", "+", count=limit)
                result: list[Any] = await pipe.execute()
                return result

        meta, entries = await self._run(read)
        if meta[0] is None:
            return HistoryPage([], None, 0)
        epoch = meta[0].decode()
        events = self._to_events(topic, epoch, entries)
        if events and events[0].ts < since:
            if events[-1].ts < since and len(entries) == limit:
                # A whole page too old (an idle topic's expired entries, or before `since_ms`):
                # find the first recent one from the newest end instead.
                return await self._history_since(topic, epoch, int(meta[1]), since, limit)
            events = [e for e in events if e.ts >= since]
        return HistoryPage(events, epoch, int(meta[1]))

    async def _history_since(self, topic: str, epoch: str, last: int, since: int, limit: int) -> HistoryPage:
        """The oldest `limit` events with `ts >= since`, read backwards from the newest (cost: what is read)."""
        client = self._check_open()
        newer: list[Event] = []
        end = "+"
        while True:
            entries = await self._run(functools.partial(client.xrevrange, self._stream_key(topic), end, "-", count=256))
            page = self._to_events(topic, epoch, entries)
            fresh = [e for e in page if e.ts >= since]
            newer.extend(fresh)
            if len(fresh) < len(page) or len(entries) < 256:
                break
            end = f"({page[-1].seq}-0"
        newer.reverse()
        return HistoryPage(newer[:limit], epoch, last)

    async def tail(self, topic: str, count: int) -> list[Event]:
        client = self._check_open()
        if count <= 0:
            return []

        async def read() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hget(self._meta_key(topic), "e")
                pipe.xrevrange(self._stream_key(topic), "+", "-", count=count)
                result: list[Any] = await pipe.execute()
                return result

        epoch, entries = await self._run(read)
        if epoch is None:
            return []
        horizon = self._horizon_ms()
        return [e for e in self._to_events(topic, epoch.decode(), list(reversed(entries))) if e.ts >= horizon]

    async def topics(self, pattern: str = "*") -> list[TopicInfo]:
        client = self._check_open()
        rx = pattern_regex(pattern)
        with map_redis_errors():
            names = await client.zrangebyscore(self.prefix + "topics", self._horizon_ms(), "+inf")
            topics = sorted(n.decode() for n in names if rx.match(n.decode()))
            async with client.pipeline(transaction=False) as pipe:
                for topic in topics:
                    pipe.xlen(self._stream_key(topic))
                    pipe.hmget(self._meta_key(topic), "e", "n")
                replies = await pipe.execute(raise_on_error=False)
        return self._topic_infos(topics, replies)

    @staticmethod
    def _topic_infos(topics: list[str], replies: list[Any]) -> list[TopicInfo]:
        """TopicInfo of each topic with retained events, from its XLEN and HMGET meta e n replies."""
        result = []
        for index, topic in enumerate(topics):
            length, (epoch, last) = replies[2 * index], replies[2 * index + 1]
            if isinstance(length, int) and length and epoch is not None:
                result.append(TopicInfo(topic, length, format_id(topic, epoch.decode(), int(last))))
        return result

    # -- subscribing -----------------------------------------------------------------------

    def _channel(self, key: str) -> str:
        return self.prefix + key

    async def subscribe(self, keys: Collection[str]) -> None:
        self._check_open()
        new = [k for k in keys if k not in self._keys]
        self._keys.update(new)
        if not new:
            return
        if not self._connected.is_set() and not self._down:
            # The reader is making its first connection: wait for it, or a publish made right
            # after this returns could reach Redis before our SUBSCRIBE does.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEFAULT_SUBSCRIBE_TIMEOUT_S):
                    await self._connected.wait()
        conn = self._pubsub
        if conn is None or not self._connected.is_set() or self._closed:
            return  # Redis is down: the reader subscribes everything in self._keys when it reconnects
        loop = asyncio.get_running_loop()
        waiters = []
        for key in new:
            fut: asyncio.Future[None] = loop.create_future()
            self._pending.setdefault(self._channel(key), []).append(fut)
            waiters.append(fut)
        try:
            self._send_subscribe(conn, new)
            async with asyncio.timeout(DEFAULT_SUBSCRIBE_TIMEOUT_S):
                await asyncio.gather(*waiters)
        except (TimeoutError, OSError, BackendUnavailable) as exc:
            # The reader is reconnecting (or will): it subscribes every key in self._keys again.
            logger.warning("subscribe not confirmed, the reader will retry: %s", exc)

    def _send_subscribe(self, conn: PubSubConnection, keys: Collection[str]) -> int:
        """Send (P)SUBSCRIBE for `keys`; return how many confirmations will come."""
        channels = [self._channel(k).encode() for k in keys if not is_pattern(k)]
        patterns = [self._channel(k).encode() for k in keys if is_pattern(k)]
        if channels:
            conn.subscribe(channels)
        if patterns:
            conn.psubscribe(patterns)
        return len(channels) + len(patterns)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        gone = [k for k in keys if k in self._keys]
        self._keys.difference_update(gone)
        conn = self._pubsub
        if not gone or conn is None or not self._connected.is_set():
            return
        channels = [self._channel(k).encode() for k in gone if not is_pattern(k)]
        patterns = [self._channel(k).encode() for k in gone if is_pattern(k)]
        try:
            if channels:
                conn.unsubscribe(channels)
            if patterns:
                conn.punsubscribe(patterns)
        except OSError as exc:
            logger.warning("unsubscribe failed (the reader reconnects without these keys): %s", exc)

    # -- the reader ------------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[BackendMessage]:
        try:
            async for message in self._messages():
                yield message
        finally:
            conn, self._pubsub = self._pubsub, None
            if conn is not None:
                conn.close()

    async def _messages(self) -> AsyncIterator[BackendMessage]:
        backoff = DEFAULT_BACKOFF_MIN_S
        reconnect = False
        while not self._closed:
            try:
                conn, early = await self._connect_pubsub()
                backoff = DEFAULT_BACKOFF_MIN_S
                if reconnect:
                    yield RESYNC  # the hub reads from history what the outage kept from us
                reconnect = True
                for message in self._decode_batch(early):
                    yield message
                async for message in self._read(conn):
                    yield message
            except (RedisError, OSError, BackendError) as exc:
                if self._closed:
                    break
                self._connected.clear()
                self._down = True
                self.available = False
                for futures in self._pending.values():
                    for fut in futures:
                        if not fut.done():
                            fut.set_exception(BackendUnavailable(str(exc)))
                self._pending.clear()
                old, self._pubsub = self._pubsub, None
                if old is not None:
                    old.close()
                delay = backoff * random.uniform(0.8, 1.2)  # jitter: processes must not return in lockstep
                logger.warning("Redis pub/sub connection lost, reconnecting in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, DEFAULT_BACKOFF_MAX_S)

    async def _connect_pubsub(self) -> tuple[PubSubConnection, list[Any]]:
        """Connect, subscribe every key, wait for the confirmations; return messages that came meanwhile."""
        self._check_open()
        conn = PubSubConnection(self.url)
        early: list[Any] = []
        try:
            async with asyncio.timeout(DEFAULT_SOCKET_TIMEOUT_S):
                await conn.connect()
            # An internal channel proves the connection works even with no key to serve.
            conn.subscribe([(self.prefix + "-").encode()])
            expected = 1 + self._send_subscribe(conn, list(self._keys))
            async with asyncio.timeout(DEFAULT_SUBSCRIBE_TIMEOUT_S):
                while expected:
                    for message in await conn.read(self.read_timeout_s):
                        if message[0] in (b"subscribe", b"psubscribe"):
                            expected -= 1
                            self._resolve(message[1])
                        else:
                            early.append(message)  # a key confirmed earlier already delivers
        except BaseException as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable("Redis did not confirm the pub/sub subscriptions in time") from exc
            raise
        self._pubsub = conn
        self._connected.set()
        self._down = False
        self.available = True
        return conn, early

    def _resolve(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        for fut in self._pending.pop(name, ()):
            if not fut.done():
                fut.set_result(None)

    async def _read(self, conn: PubSubConnection) -> AsyncIterator[BackendMessage]:
        """Messages as they arrive; PING after an idle spell, and give up on a connection that stays mute."""
        while not self._closed:
            for message in self._decode_batch(await conn.read_live(self.read_timeout_s)):
                yield message

    def _decode_batch(self, batch: list[Any]) -> Iterator[BackendMessage]:
        skip = len(self.prefix)
        for message in batch:
            kind = message[0]
            if kind == b"message":
                key_raw, channel, payload = message[1], message[1], message[2]
            elif kind == b"pmessage":
                key_raw, channel, payload = message[1], message[2], message[3]
            else:
                if kind in (b"subscribe", b"psubscribe"):
                    self._resolve(message[1])
                continue  # pong, unsubscribe confirmations
            key = key_raw[skip:].decode()
            for event in self._decode(channel, payload):
                yield BackendMessage(key, event)

    def _decode(self, channel: bytes, payload: bytes) -> list[Event]:
        """The events of one PUBLISH (`decode_payload`); the same objects for a topic and a pattern."""
        last = self._last_message
        if last is not None and last[0] == channel and last[1] == payload:
            return last[2]  # the same publish through a topic and a pattern: the same Event objects
        events = decode_payload(channel[len(self.prefix) :].decode(), payload)
        self._last_message = (channel, payload, events)
        newest = events[-1]
        self._note_newest(newest.topic, newest.epoch, newest.seq)
        return events
