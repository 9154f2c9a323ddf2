"""Sharded pub/sub for the cluster backend: one connection per node that owns a slot we serve.

`Shards` keeps the wanted channels (bytes) and which node each is homed on. A task per
node connects, `SSUBSCRIBE`s the channels homed there, and reads in bulk
(`_pubsub.PubSubConnection`). When a node fails, answers `MOVED`, or pushes
`SUNSUBSCRIBE` (its slot moved away), the channels it carried lose their home: after
a short backoff the topology is read again and they are homed on the slot's new owner,
flagged for catch-up. The owner (the backend) turns each confirmation of a flagged
channel into a catch-up from history, so the stream continues without a gap; it drops
what it already delivered, so without a duplicate.

Liveness: `PubSubConnection.read_live` PINGs a connection after 5 idle seconds and fails
one that stays mute as long again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from redis.crc import key_slot

from .._exceptions import BackendError
from ._pubsub import PubSubConnection, PubSubError
from .base import BackendMessage

logger = logging.getLogger(__name__)

Address = tuple[str, int]
READ_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 5.0
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0
QUEUE_BATCHES = 10_000


def _by_slot(channels: Collection[bytes]) -> list[list[bytes]]:
    """One SSUBSCRIBE may only name channels of one slot (else CROSSSLOT)."""
    groups: dict[int, list[bytes]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel), []).append(channel)
    return list(groups.values())


class Shards:
    """The process's sharded subscriptions, one reader task per node. Feeds `out` with message batches."""

    def __init__(
        self,
        *,
        url_for: Callable[[Address], str],
        home_of: Callable[[bytes], Address],
        refresh: Callable[[], Awaitable[None]],
        on_message: Callable[[bytes, bytes], list[BackendMessage]],
        on_confirmed: Callable[[bytes, bool], Awaitable[list[BackendMessage]]],
    ) -> None:
        self._url_for = url_for
        self._home_of = home_of
        self._refresh = refresh
        self._on_message = on_message
        self._on_confirmed = on_confirmed
        #: Message batches in each node's order (a topic lives on one node, so in its order); None when closed.
        self.out: asyncio.Queue[list[BackendMessage] | None] = asyncio.Queue(QUEUE_BATCHES)
        self._wanted: set[bytes] = set()
        self._home: dict[bytes, Address] = {}
        self._lost: set[bytes] = set()  # confirmations of these trigger a catch-up
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._conns: dict[Address, PubSubConnection | None] = {}  # None: connecting
        self._tasks: dict[Address, asyncio.Task[None]] = {}
        self._leaving: Counter[bytes] = Counter()  # our own SUNSUBSCRIBEs not yet confirmed
        self._rehome: asyncio.Task[None] | None = None
        self._backoff = BACKOFF_MIN_S
        self.closed = False

    # -- what the backend asks -----------------------------------------------------------

    @property
    def wanted(self) -> frozenset[bytes]:
        return frozenset(self._wanted)

    def want(self, channels: Collection[bytes]) -> list[asyncio.Future[None]]:
        """Subscribe `channels`; the futures resolve once each is confirmed (and caught up if flagged)."""
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        new = [c for c in channels if c not in self._wanted]
        self._wanted.update(new)
        for channel in new:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(channel, []).append(fut)
            waiters.append(fut)
        self._place(new)
        return waiters

    def drop(self, channels: Collection[bytes]) -> None:
        by_home: dict[Address, list[bytes]] = {}
        for channel in channels:
            if channel not in self._wanted:
                continue
            self._wanted.discard(channel)
            self._lost.discard(channel)
            home = self._home.pop(channel, None)
            if home is not None:
                by_home.setdefault(home, []).append(channel)
        for home, gone in by_home.items():
            conn = self._conns.get(home)
            if conn is not None:
                self._leaving.update(gone)
                with contextlib.suppress(OSError):
                    for same_slot in _by_slot(gone):
                        conn.sunsubscribe(same_slot)

    def mark_lost(self, channel: bytes) -> None:
        """Catch this channel up at its next confirmation (e.g. a topic found late)."""
        self._lost.add(channel)

    async def aclose(self) -> None:
        self.closed = True
        tasks = list(self._tasks.values()) + ([self._rehome] if self._rehome else [])
        for task in tasks:
            task.cancel()
        for conn in self._conns.values():
            if conn is not None:
                conn.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await asyncio.gather(*tasks, return_exceptions=True)
        while True:
            try:
                self.out.put_nowait(None)
                break
            except asyncio.QueueFull:
                self.out.get_nowait()

    # -- homing channels on nodes --------------------------------------------------------

    def _place(self, channels: Collection[bytes]) -> None:
        by_home: dict[Address, list[bytes]] = {}
        for channel in channels:
            if channel in self._home:
                continue
            home = self._home[channel] = self._home_of(channel)
            by_home.setdefault(home, []).append(channel)
        for home, homed in by_home.items():
            conn = self._conns.get(home)
            if home not in self._tasks:
                self._conns[home] = None
                self._tasks[home] = asyncio.create_task(self._serve(home), name=f"broadcaster-shard-{home[1]}")
            elif conn is not None:
                try:
                    for same_slot in _by_slot(homed):
                        conn.ssubscribe(same_slot)
                except OSError:
                    pass  # the reader fails on its next read and re-homes them

    def _unhome(self, home: Address) -> None:
        for channel, where in list(self._home.items()):
            if where == home:
                del self._home[channel]
                self._lost.add(channel)
        self._schedule_rehome()

    def _schedule_rehome(self) -> None:
        if self._rehome is None or self._rehome.done():
            self._rehome = asyncio.create_task(self._rehome_all(), name="broadcaster-shard-rehome")

    async def _rehome_all(self) -> None:
        while not self.closed:
            await asyncio.sleep(self._backoff * random.uniform(0.8, 1.2))
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            try:
                await self._refresh()
            except Exception as exc:  # any topology failure (redis-py raises several kinds): retry
                logger.warning("Redis Cluster topology refresh failed, retrying: %s", exc)
                continue
            self._place([c for c in self._wanted if c not in self._home])
            return

    # -- one node's reader ---------------------------------------------------------------

    async def _serve(self, home: Address) -> None:
        conn = PubSubConnection(self._url_for(home))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await conn.connect()
            self._conns[home] = conn
            homed = [c for c, where in self._home.items() if where == home]
            for same_slot in _by_slot(homed):
                conn.ssubscribe(same_slot)
            await self._read(home, conn)
        except (OSError, PubSubError, TimeoutError, BackendError) as exc:
            if not self.closed:
                logger.warning("Redis Cluster pub/sub connection to %s:%d lost: %s", *home, exc)
        finally:
            conn.close()
            self._conns.pop(home, None)
            self._tasks.pop(home, None)
            if not self.closed:
                self._unhome(home)

    async def _read(self, home: Address, conn: PubSubConnection) -> None:
        while not self.closed:
            for message in await conn.read_live(READ_TIMEOUT_S):
                await self._handle(home, message)

    async def _handle(self, home: Address, message: Any) -> None:
        kind = message[0]
        if kind == b"smessage":
            if message[1] in self._wanted:
                out = self._on_message(message[1], message[2])
                if out:
                    await self.out.put(out)
        elif kind == b"ssubscribe":
            await self._confirmed(home, message[1])
        elif kind == b"sunsubscribe":
            channel = message[1]
            if self._leaving[channel]:
                self._leaving[channel] -= 1
            elif channel in self._wanted and self._home.get(channel) == home:
                # Pushed by the node: the slot moved away. Home it anew and catch it up.
                del self._home[channel]
                self._lost.add(channel)
                self._backoff = BACKOFF_MIN_S
                self._schedule_rehome()

    async def _confirmed(self, home: Address, channel: bytes) -> None:
        if channel not in self._wanted or self._home.get(channel) != home:
            return
        self._backoff = BACKOFF_MIN_S
        lost = channel in self._lost
        out = await self._on_confirmed(channel, lost)  # raises while the cluster is failing: retried
        self._lost.discard(channel)
        if out:
            await self.out.put(out)
        for fut in self._waiters.pop(channel, ()):
            if not fut.done():
                fut.set_result(None)
