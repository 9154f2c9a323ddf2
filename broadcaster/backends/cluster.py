"""ClusterBackend: Redis Cluster (or Valkey's), sharded pub/sub, everything of a topic in one slot.

Chosen by `redis+cluster://HOST:PORT[,HOST:PORT...]` (`rediss+cluster://` for TLS). The
keys of topic `t` carry the hash tag `{t}`: its stream `Pstream:{t}` and its meta hash
`Pmeta:{t}` (epoch, last seq, last publish time, registered: the single-Redis backend's
keys and script, see `_redis_scripts`), and its shard channel `P{t}`. One
script per publish batch touches only those and `SPUBLISH`es; no key is written by every
publish. A topic's first publish also registers it in the topic registry `P{registry}`
(a sorted set, and an announcement on its shard channel), which is how pattern streams
learn of new topics without `PSUBSCRIBE`, and what `topics()` lists.

Ids are per topic, `<tag>.<epoch>.<seq>` as on every backend (docs/resume.md); the reader
remembers the newest event it delivered per topic, which makes every catch-up exact
(`_history.read_missed`: a history lost or gone backwards in a failover says `reset`).
Commands go through redis-py's asyncio `RedisCluster` (slot routing, MOVED/ASK redirects)
with no hidden retries, so a publish to a dead master's slots fails at once with
`BackendUnavailable` (503 + Retry-After); subscriptions go through `Shards`. History reads
are the single-Redis backend's, on these keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from .._event import Event
from .._exceptions import BackendClosed, BackendUnavailable, ConfigError
from .._topics import is_pattern, matches_any, pattern_regex
from ._history import read_missed
from ._redis_scripts import CLUSTER_PUBLISH_SCRIPT
from ._redis_wire import batch_args, batch_events, decode_payload, map_redis_errors
from ._shards import Address, Shards
from .base import BackendMessage, TopicInfo
from .redis import DEFAULT_SOCKET_TIMEOUT_S, DEFAULT_SUBSCRIBE_TIMEOUT_S, RedisBackend

logger = logging.getLogger(__name__)

SCHEMES = ("redis+cluster://", "rediss+cluster://")


def parse_cluster_url(url: str) -> tuple[list[Address], str, str]:
    """`(seed nodes, node URL template, query)` of a `redis+cluster://` URL; `ConfigError` if malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis+cluster", "rediss+cluster"):
        raise ConfigError(f"a cluster URL starts with redis+cluster:// or rediss+cluster://, got {url!r}")
    netloc = urlsplit("//" + rest).netloc
    creds, _, hosts = netloc.rpartition("@")
    seeds: list[Address] = []
    for part in hosts.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"cluster URL {scheme}://...@{hosts}: each node is HOST:PORT, got {part!r}")
        seeds.append((host.strip("[]"), int(port)))
    node_scheme = "rediss" if scheme == "rediss+cluster" else "redis"
    query = urlsplit("//" + rest).query
    return seeds, f"{node_scheme}://{creds + '@' if creds else ''}{{host}}:{{port}}", query


class ClusterBackend(RedisBackend):
    """Pub/sub and history on a Redis Cluster. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "broadcaster:",
        history_size: int = 1000,
        history_ttl_s: float = 3600.0,
        wait_replicas: int = 0,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"the Redis key prefix may not contain braces on a cluster, got {prefix!r}")
        super().__init__(url, prefix=prefix, history_size=history_size, history_ttl_s=history_ttl_s)
        self.seeds, self._node_url, self._query = parse_cluster_url(url)
        self.wait_replicas = wait_replicas
        self._registry = f"{prefix}{{registry}}"
        self._last: dict[str, Event] = {}  # newest event delivered per topic
        self._since: dict[str, int] = {}  # a catch-up with nothing delivered yet starts at this time (ms)
        self._key_cache: dict[str, list[str]] = {}
        self._shards: Shards | None = None

    # -- keys ----------------------------------------------------------------------------

    def _channel(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"

    def _topic_of(self, channel: bytes) -> str:
        return channel[len(self.prefix) + 1 : -1].decode()

    # -- lifecycle -----------------------------------------------------------------------

    def _new_client(self) -> Any:
        parts = urlsplit(self._node_url.format(host="h", port=1))
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.seeds],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=self._node_url.startswith("rediss"),
            retry=Retry(NoBackoff(), 0),
            socket_timeout=DEFAULT_SOCKET_TIMEOUT_S,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT_S,
        )

    async def __aenter__(self) -> Self:
        if self._opened:
            raise BackendClosed("a ClusterBackend cannot be opened twice")
        self._opened = True
        self._client = self._new_client()
        try:
            with map_redis_errors():
                await self._client.initialize()
        except BackendUnavailable as exc:
            await self._client.aclose()
            raise BackendUnavailable(f"no node of the Redis Cluster answered: {exc}") from exc
        self._script = self._client.register_script(CLUSTER_PUBLISH_SCRIPT)
        self._shards = Shards(
            url_for=self._url_for,
            home_of=self._home_of,
            refresh=self._refresh,
            on_message=self._on_message,
            on_confirmed=self._on_confirmed,
        )
        self.available = True
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._shards is not None:
            await self._shards.aclose()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                if self._client is not None:
                    await self._client.aclose()

    def _url_for(self, home: Address) -> str:
        url = self._node_url.format(host=home[0], port=home[1])
        return f"{url}?{self._query}" if self._query else url

    def _home_of(self, channel: bytes) -> Address:
        node = self._client.nodes_manager.get_node_from_slot(key_slot(channel))
        return (node.host, int(node.port))

    async def _refresh(self) -> None:
        with map_redis_errors():
            await self._client.nodes_manager.initialize()

    async def ping(self) -> None:
        client = self._check_open()
        with map_redis_errors():
            await client.ping(target_nodes=RedisCluster.PRIMARIES)
        self.available = True

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        self._check_open()
        if not items:
            return []
        channel = self._channel(topic)
        keys = [self._stream_key(topic), self._meta_key(topic), channel]
        type_arg, blob = batch_args(items)
        args = ["", self.history_size, self.history_ttl_ms, topic, len(items), type_arg, blob, self.meta_ttl_ms]
        args.extend(self._newest_seen(topic))
        try:
            with map_redis_errors():
                raw_epoch, n, ms, registered = await self._script(keys=keys, args=args)
                if self.wait_replicas:
                    await self._wait_replicas(channel)
                registered_ms = int(registered)
                if not registered_ms or int(ms) - registered_ms > self.history_ttl_ms // 2:
                    await self._register(topic, int(ms))
                    if not registered_ms:
                        await self._serve_new(topic)
        except BackendUnavailable:
            self.available = False
            raise
        self.available = True
        epoch = raw_epoch.decode()
        self._note_newest(topic, epoch, int(n) + len(items))
        return batch_events(topic, epoch, int(n) + 1, int(ms), items)

    async def _wait_replicas(self, tag: str) -> None:
        """WAIT on the topic's master until `wait_replicas` replicas have the batch (or 503)."""
        node = self._client.get_node_from_key(tag)
        timeout_ms = int(DEFAULT_SOCKET_TIMEOUT_S * 500)
        acked = await self._client.execute_command("WAIT", self.wait_replicas, timeout_ms, target_nodes=node)
        if int(acked) < self.wait_replicas:
            raise BackendUnavailable(f"only {acked} of {self.wait_replicas} replicas confirmed the write in time")

    async def _register(self, topic: str, ms: int) -> None:
        """A topic's first publish (and one per half ttl): into the registry, announced, marked done.

        A live topic's score is never older than 1.5 ttl, so older members are forgotten topics.
        """
        await self._client.zadd(self._registry, {topic: ms})
        await self._client.zremrangebyscore(self._registry, "-inf", ms - self.history_ttl_ms * 3 // 2)
        await self._client.execute_command(
            "SPUBLISH", self._registry, topic, target_nodes=self._client.get_node_from_key(self._registry)
        )
        await self._client.hset(self._meta_key(topic), "r", ms)

    async def _serve_new(self, topic: str) -> None:
        """A new topic that a pattern of this process matches: served before the publish returns."""
        waiters = self._discover(topic)
        if waiters:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEFAULT_SUBSCRIBE_TIMEOUT_S):
                    await asyncio.gather(*waiters)

    async def topics(self, pattern: str = "*") -> list[TopicInfo]:
        client = self._check_open()
        rx = pattern_regex(pattern)
        with map_redis_errors():
            names = sorted(n.decode() for n in await client.zrange(self._registry, 0, -1))
            names = [n for n in names if rx.match(n)]
            pipe = client.pipeline(transaction=False)
            for topic in names:
                pipe.xlen(self._stream_key(topic))
                pipe.hmget(self._meta_key(topic), "e", "n")
            replies = await pipe.execute(raise_on_error=False) if names else []
        return self._topic_infos(names, replies)

    # -- subscribing ---------------------------------------------------------------------

    def _shards_or_closed(self) -> Shards:
        if self._closed or self._shards is None:
            raise BackendClosed("the backend is closed")
        return self._shards

    async def _server_ms(self) -> int:
        node = self._client.get_node_from_key(self._registry)
        with map_redis_errors():
            seconds, micros = await self._client.execute_command("TIME", target_nodes=node)
        return int(seconds) * 1000 + int(micros) // 1000

    async def subscribe(self, keys: Collection[str]) -> None:
        shards = self._shards_or_closed()
        new = [k for k in keys if k not in self._keys]
        if not new:
            return
        self._keys.update(new)
        self._key_cache.clear()
        channels = [self._channel(k).encode() for k in new if not is_pattern(k)]
        patterns = [k for k in new if is_pattern(k)]
        if patterns:
            # Every topic matching, existing or created from now on, caught up from this instant.
            since = await self._server_ms()
            for topic in await self._registered(patterns):
                self._since.setdefault(topic, since)
                channel = self._channel(topic).encode()
                shards.mark_lost(channel)
                channels.append(channel)
            channels.append(self._registry.encode())
        fresh = [k for k in new if not is_pattern(k) and self._channel(k).encode() not in shards.wanted]
        if fresh:  # a catch-up after a lost connection starts at the subscription
            now = await self._server_ms()
            for topic in fresh:
                self._since[topic] = now
        waiters = shards.want(channels)
        try:
            async with asyncio.timeout(DEFAULT_SUBSCRIBE_TIMEOUT_S):
                await asyncio.gather(*waiters)
        except (TimeoutError, BackendUnavailable) as exc:
            logger.warning("subscribe not confirmed, the shard readers will retry: %s", exc)

    async def _registered(self, patterns: list[str]) -> list[str]:
        with map_redis_errors():
            names = await self._client.zrange(self._registry, 0, -1)
        return [n.decode() for n in names if matches_any(n.decode(), patterns)]

    async def unsubscribe(self, keys: Collection[str]) -> None:
        gone = [k for k in keys if k in self._keys]
        if not gone or self._shards is None:
            return
        self._keys.difference_update(gone)
        self._key_cache.clear()
        patterns = [k for k in self._keys if is_pattern(k)]
        served = {self._topic_of(c) for c in self._shards.wanted if c != self._registry.encode()}
        unused = [t for t in served if not matches_any(t, self._keys)]
        for topic in unused:  # a later subscription starts afresh
            self._last.pop(topic, None)
            self._since.pop(topic, None)
        channels = [self._channel(t).encode() for t in unused]
        if not patterns:
            channels.append(self._registry.encode())
        self._shards.drop(channels)

    def _keys_for(self, topic: str) -> list[str]:
        keys = self._key_cache.get(topic)
        if keys is None:
            keys = self._key_cache[topic] = [k for k in self._keys if matches_any(topic, [k])]
        return keys

    # -- the readers' callbacks ------------------------------------------------------------

    def _on_message(self, channel: bytes, payload: bytes) -> list[BackendMessage]:
        if channel == self._registry.encode():
            self._discover(payload.decode())
            return []
        topic = self._topic_of(channel)
        return self._deliver(topic, decode_payload(topic, payload))

    def _deliver(self, topic: str, events: list[Event]) -> list[BackendMessage]:
        done = self._last.get(topic)
        if done is not None:  # already delivered (a catch-up overlapped)
            events = [e for e in events if e.epoch != done.epoch or e.seq > done.seq]
        if not events:
            return []
        last = self._last[topic] = events[-1]
        self._note_newest(topic, last.epoch, last.seq)
        keys = self._keys_for(topic)
        return [BackendMessage(key, event) for event in events for key in keys]

    def _discover(self, topic: str) -> list[asyncio.Future[None]]:
        """A topic announced as new: serve it if a pattern of ours matches, from its first event."""
        shards = self._shards
        channel = self._channel(topic).encode()
        if shards is None or channel in shards.wanted or not self._keys_for(topic):
            return []
        self._since.setdefault(topic, 0)
        shards.mark_lost(channel)
        return shards.want([channel])

    async def _on_confirmed(self, channel: bytes, lost: bool) -> list[BackendMessage]:
        if channel == self._registry.encode():
            if lost:  # announcements may have been missed: read the registry again
                for topic in await self._registered([k for k in self._keys if is_pattern(k)]):
                    self._discover(topic)
            return []
        topic = self._topic_of(channel)
        last = self._last.get(topic)
        since = self._since.get(topic)
        if not lost or (last is None and since is None):
            return []
        missed = await read_missed(self, topic, last, since or 0)
        keys = self._keys_for(topic)
        messages = [BackendMessage(key, control) for control in missed.controls for key in keys]
        messages.extend(self._deliver(topic, missed.events))
        return messages

    async def messages(self) -> AsyncIterator[BackendMessage]:
        """The shards' batches as they come: a topic lives on one node, so its events stay in order."""
        queue = self._shards_or_closed().out
        while True:
            batch = await queue.get()
            if batch is None:
                return
            for message in batch:
                yield message
