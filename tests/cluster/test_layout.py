"""Acceptance 2 of issue 17: topics spread evenly over the masters; a publish writes only its topic's keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import redis

from broadcaster import Settings, backend_from_url

from ..support.redis_cluster import RedisCluster
from ..support.waiting import eventually

pytestmark = pytest.mark.redis


@contextlib.contextmanager
def _clients(ports: list[int]) -> Iterator[dict[int, redis.Redis]]:
    clients = {port: redis.Redis(port=port) for port in ports}
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()


async def test_cluster_1000_topics_spread_within_10_percent_of_even_over_the_masters(redis_cluster, cluster_url):
    settings = Settings(redis_url=cluster_url)
    async with backend_from_url(settings.backend_url, settings) as backend:
        for chunk in range(10):
            await asyncio.gather(
                *(backend.publish(f"room.{n}", [("message", b"1")]) for n in range(chunk * 100, chunk * 100 + 100))
            )
    masters = redis_cluster.master_ports()
    assert len(masters) == 3
    with _clients(masters) as clients:
        streams = {
            port: len(list(c.scan_iter(match="broadcaster:stream:{room.*}", count=1000))) for port, c in clients.items()
        }
    assert sum(streams.values()) == 1000
    even = 1000 / 3
    for port, count in streams.items():
        assert abs(count - even) <= even * 0.10, f"master {port} holds {count} topics: {streams}"


async def test_cluster_publish_writes_only_keys_of_its_topic(redis_cluster: RedisCluster, cluster_url):
    """Keyspace notifications on every master while existing topics get events: only `{topic}` keys change."""
    settings = Settings(redis_url=cluster_url)
    topics = [f"t{n}" for n in range(12)]
    masters = redis_cluster.master_ports()
    async with backend_from_url(settings.backend_url, settings) as backend:
        for topic in topics:  # created (and registered) first
            await backend.publish(topic, [("message", b"0")])
        with _clients(masters) as clients:
            listeners = []
            for client in clients.values():
                client.config_set("notify-keyspace-events", "KEA")
                pubsub = client.pubsub()
                pubsub.psubscribe("__keyevent@0__:*")
                listeners.append(pubsub)
            try:
                for n in range(3):
                    for topic in topics:
                        await backend.publish(topic, [("message", b"%d" % n)])
                touched: list[str] = []

                def drained() -> bool:
                    for pubsub in listeners:
                        while (message := pubsub.get_message(timeout=0)) is not None:
                            if message["type"] == "pmessage":
                                touched.append(message["data"].decode())
                    return len(touched) >= len(topics) * 3 * 2

                await eventually(drained, within=5, what="keyspace notifications of the publishes")
            finally:
                for pubsub in listeners:
                    pubsub.close()
                for client in clients.values():
                    client.config_set("notify-keyspace-events", "")
    keys = set(touched)
    expected = {f"broadcaster:{kind}:{{{t}}}" for t in topics for kind in ("stream", "meta")}
    assert keys == expected, f"keys written besides the topics' own: {sorted(keys - expected)}"
