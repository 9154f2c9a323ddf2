"""A history that went backwards (a failover to a replica that lagged, Redis restarted from an old
snapshot) must not issue the same ids twice: the next publish starts a new epoch, and a resume from
an id of the lost tail says `reset`.

The lagging replica's state is made on a real Redis / Redis Cluster by cutting the topic's newest
entries and its meta hash back to what a replica two events behind holds.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from broadcaster import Control, Event, Hub, Settings, backend_from_url
from broadcaster._ids import parse_cursor
from broadcaster._replay import Replay

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", "cluster"])
def settings(request: pytest.FixtureRequest) -> Settings:
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
    return Settings(redis_url=url)


def _commands(url: str) -> aioredis.Redis | RedisCluster:
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    return aioredis.Redis.from_url(url)


async def _lag_behind(url: str, topic: str, keep: int) -> None:
    """Cut `topic`'s history back to its first `keep` events, as a replica that lagged holds it."""
    client = _commands(url)
    try:
        stream = f"broadcaster:stream:{{{topic}}}"
        for entry_id, _ in await client.xrange(stream):
            if int(entry_id.decode().partition("-")[0]) > keep:  # entry ids are `<seq>-<ms>`
                await client.xdel(stream, entry_id)
        await client.hset(f"broadcaster:meta:{{{topic}}}", "n", keep)
        assert await client.xlen(stream) == keep, "the replica holds the first events"
    finally:
        await client.aclose()


async def test_backwards_history_gets_a_new_epoch_at_the_next_publish(settings: Settings):
    topic = "backwards.publish"
    async with backend_from_url(settings.backend_url, settings) as backend:
        before = await backend.publish(topic, [("message", b"%d" % n) for n in range(5)])
        await _lag_behind(settings.backend_url, topic, keep=3)
        (after,) = await backend.publish(topic, [("message", b"5")])
        assert after.epoch != before[-1].epoch, "seqs 4 and 5 would have been issued twice"
        assert after.seq == 1
        page = await backend.history(topic, limit=10)
        assert [e.id for e in page.events] == [after.id], "the old epoch's entries are gone with it"


async def test_backwards_history_resume_from_the_lost_tail_says_reset(settings: Settings):
    topic = "backwards.resume"
    async with Hub(settings=settings) as hub:
        sent = await hub.backend.publish(topic, [("message", b"%d" % n) for n in range(5)])
        await _lag_behind(settings.backend_url, topic, keep=3)
        (fresh,) = await hub.backend.publish(topic, [("message", b"5")])
        replay = Replay(hub, [topic], after=parse_cursor(sent[-1].id))
        await replay.prepare()
        items: list[Event | Control] = []
        async with asyncio.timeout(5):
            async for page in replay.pages():
                items.extend(page)
    assert isinstance(items[0], Control) and items[0].kind == "reset", items
    assert [i.id for i in items if isinstance(i, Event)] == [fresh.id]
