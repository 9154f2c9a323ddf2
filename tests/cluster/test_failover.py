"""Acceptance 3 and 4 of issue 17: a master SIGKILLed, a slot migrated, under load, readers on a server process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import orjson
import pytest
from redis.crc import key_slot

from ..support.redis_cluster import RedisCluster
from ..support.servers import ProcessServer
from .load import Load

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture
def healed(redis_cluster: RedisCluster, cluster_url: str) -> Iterator[RedisCluster]:
    """The cluster, with every node back and every master replicated after the test."""
    redis_cluster.heal()
    try:
        yield redis_cluster
    finally:
        redis_cluster.heal()


def _owner(cluster: RedisCluster, topic: str) -> int:
    """Port of the master that owns the topic's slot."""
    slot = key_slot(f"broadcaster:{{{topic}}}".encode())
    for start, end, port in _slots(cluster):
        if start <= slot <= end:
            return port
    raise AssertionError(f"no master owns slot {slot}")


def _slots(cluster: RedisCluster) -> list[tuple[int, int, int]]:
    """(first slot, last slot, master port) of every slot range, from CLUSTER SLOTS."""
    import redis

    client = redis.Redis(port=cluster.master_ports()[0])
    try:
        ranges = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    return [(int(r[0]), int(r[1]), int(r[2][1])) for r in ranges]


async def _history_ids(url: str, topic: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/topics/{topic}/history", params={"limit": 10000})
        assert answer.status_code == 200
        return [orjson.loads(line)["id"] for line in answer.text.splitlines() if line]


@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_cluster_master_killed_under_load_readers_get_every_acknowledged_event(healed, wait_replicas):
    cluster = healed
    with ProcessServer("--redis-url", cluster.url, "--redis-wait-replicas", str(wait_replicas)) as server:
        load = Load(server.url, prefix=f"kill{wait_replicas}.")
        victim = _owner(cluster, load.topics[0])

        async def kill() -> None:
            cluster.node(victim).stop()  # SIGKILL: no goodbye to anyone
            # Its replica takes over; then it comes back (as a replica), as a supervisor would restart it.
            await asyncio.to_thread(cluster.wait_ok)
            await asyncio.to_thread(cluster.node(victim).start)

        await load.run(kill)
        assert load.refused > 0, "publishes to the dead master's slots were answered 503 meanwhile"
        assert len(load.acked) == len({(t, n) for t, _, n in load.acked})
        assert load.problems() == []
        if wait_replicas:
            # Nothing acknowledged was lost by the promotion, so nothing to announce either.
            assert all("reset" not in r.controls for r in load.readers)
            # And every acked event is in the history.
            for topic in load.topics:
                ids = set(await _history_ids(server.url, topic))
                assert {i for t, i, _ in load.acked if t == topic} <= ids, topic


async def test_cluster_slot_migrated_under_load_no_gap_no_duplicate_no_reset(healed):
    cluster = healed
    with ProcessServer("--redis-url", cluster.url) as server:
        load = Load(server.url, prefix="move.")
        topic = load.topics[0]
        slot = key_slot(f"broadcaster:{{{topic}}}".encode())
        source = _owner(cluster, topic)
        target = next(p for p in cluster.master_ports() if p != source)

        async def migrate() -> None:
            await asyncio.to_thread(_migrate_slot, cluster, slot, source, target)

        await load.run(migrate, at=0.4)
        assert _owner(cluster, topic) == target
        assert load.problems() == []
        assert all("reset" not in r.controls and "gap" not in r.controls for r in load.readers)


def _migrate_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE its keys, SETSLOT NODE on every master."""
    source_id = cluster.command(source, "CLUSTER", "MYID")
    target_id = cluster.command(target, "CLUSTER", "MYID")
    cluster.command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    cluster.command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    while True:
        keys = cluster.command(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
        if not keys:
            break
        cluster.command(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
    for port in (target, source, *[p for p in cluster.master_ports() if p not in (source, target)]):
        cluster.command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
