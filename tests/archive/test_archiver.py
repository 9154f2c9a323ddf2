"""Archiver: exactly once and in order across restarts, overflows and patterns; `reset` when history cannot cover."""

from __future__ import annotations

import orjson
import pytest

from broadcaster import ConfigError, Hub
from broadcaster.archive import ArchiveOptions, Archiver
from broadcaster.archive._layout import STATE_NAME
from broadcaster.archive._writer import ArchiveWriter, now_ms

from ..support.waiting import eventually
from .support import NDJSON_LINES, event_numbers, read_topic


async def _publish(hub: Hub, topic: str, numbers: range) -> None:
    await hub.publish_many(topic, [("message", orjson.dumps({"n": n})) for n in numbers])


def _archiver(hub: Hub, root, patterns=("t.*",), **options) -> Archiver:
    return Archiver(hub, root, list(patterns), ArchiveOptions(**options), render=NDJSON_LINES)


async def test_archiver_starts_from_the_oldest_retained_event_and_follows_live(hub, tmp_path):
    await _publish(hub, "t.a", range(1, 6))
    async with _archiver(hub, tmp_path) as archiver:
        await _publish(hub, "t.a", range(6, 11))
        await eventually(lambda: archiver.written == 10, what="10 archived")
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(1, 11))
    assert archiver.resets == 0


async def test_archiver_restart_continues_with_no_gap_and_no_duplicate(hub, tmp_path):
    async with _archiver(hub, tmp_path) as archiver:
        await _publish(hub, "t.a", range(1, 6))
        await eventually(lambda: archiver.written == 5)
    await _publish(hub, "t.a", range(6, 11))  # while no archiver runs
    await _publish(hub, "t.b", range(100, 103))  # a topic it never saw
    async with _archiver(hub, tmp_path) as again:
        await _publish(hub, "t.a", range(11, 13))
        await eventually(lambda: again.written == 10, what="5 + 3 caught up, 2 live")
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(1, 13))
    assert event_numbers(read_topic(tmp_path, "t.b")) == [100, 101, 102]
    assert again.resets == 0


async def test_archiver_writes_a_reset_line_when_the_history_was_trimmed_past_it(make_settings, tmp_path):
    async with Hub(settings=make_settings(history_size=5)) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 4))
            await eventually(lambda: archiver.written == 3)
        last_archived = read_topic(tmp_path, "t.a")[-1]["id"]
        await _publish(hub, "t.a", range(4, 24))  # 20 more, 5 retained: 19..23
        async with _archiver(hub, tmp_path) as again:
            await eventually(lambda: again.written == 5)
    lines = read_topic(tmp_path, "t.a")
    reset = lines[3]
    assert reset["control"] == "reset" and reset["last_event_id"] == last_archived and reset["topics"] == ["t.a"]
    assert "trimmed" in reset["reason"]
    assert event_numbers(lines) == [1, 2, 3, 19, 20, 21, 22, 23]
    assert again.resets == 1


async def test_archiver_catches_up_from_history_after_its_queue_overflowed(make_settings, tmp_path):
    """A burst longer than the archiver's queue (a slow disk): dropped live, read again from history."""
    async with Hub(settings=make_settings(queue_size=10, max_queue_size=10)) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 501))  # one publish: 500 offers without a pause
            await eventually(lambda: archiver.written == 500, what="500 archived")
            assert archiver.catch_ups >= 2
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(1, 501))
    assert archiver.resets == 0


async def test_archiver_close_writes_what_was_published_up_to_then(hub, tmp_path):
    archiver = _archiver(hub, tmp_path)
    await archiver.start()
    await _publish(hub, "t.a", range(1, 201))
    await archiver.aclose()  # at once: the final catch-up reads what the pump has not delivered yet
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(1, 201))
    await archiver.aclose()  # idempotent


async def test_archiver_only_writes_topics_matching_its_patterns(hub, tmp_path):
    async with _archiver(hub, tmp_path, patterns=["t.*", "exact"]) as archiver:
        for topic in ("t.a", "other", "exact", "t.b.c"):
            await _publish(hub, topic, range(1, 3))
        await eventually(lambda: archiver.written == 6)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["exact", "t.a", "t.b.c"]


async def test_archiver_after_an_unclean_stop_on_a_memory_backend_says_events_may_be_lost(make_settings, tmp_path):
    """The in-server archiver died with its server (kill -9): the new server's history starts empty."""
    async with Hub(settings=make_settings()) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 4))
            await eventually(lambda: archiver.written == 3)
    state = tmp_path / STATE_NAME
    state.write_bytes(orjson.dumps({"live_ms": now_ms(), "clean": False}))  # as a kill -9 leaves it
    async with Hub(settings=make_settings()) as fresh:  # a new process: an empty memory history
        archiver = Archiver(
            fresh, tmp_path, ["t.*"], ArchiveOptions(), render=NDJSON_LINES, history_survives_restart=False
        )
        async with archiver:
            await _publish(fresh, "t.a", range(4, 6))
            await eventually(lambda: archiver.written == 2)
    lines = read_topic(tmp_path, "t.a")
    assert [line.get("control") for line in lines] == [None, None, None, "reset", None, None]
    assert "did not survive" in lines[3]["reason"]


async def test_archiver_clean_restart_on_a_memory_backend_writes_no_reset(make_settings, tmp_path):
    async with Hub(settings=make_settings()) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 4))
            await eventually(lambda: archiver.written == 3)
    async with Hub(settings=make_settings()) as fresh:
        async with Archiver(
            fresh, tmp_path, ["t.*"], ArchiveOptions(), render=NDJSON_LINES, history_survives_restart=False
        ) as again:
            await _publish(fresh, "t.a", range(4, 6))
            await eventually(lambda: again.written == 2)
    assert [line.get("control") for line in read_topic(tmp_path, "t.a")] == [None] * 5


async def test_archiver_stopped_longer_than_the_history_ttl_writes_a_reset(make_settings, tmp_path):
    async with Hub(settings=make_settings(history_ttl_s=60)) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 3))
            await eventually(lambda: archiver.written == 2)
        (tmp_path / STATE_NAME).write_bytes(orjson.dumps({"live_ms": now_ms() - 61_000, "clean": True}))
        async with _archiver(hub, tmp_path) as again:
            await eventually(lambda: again.resets == 1)
    lines = read_topic(tmp_path, "t.a")
    assert lines[-1]["control"] == "reset" and "ttl" in lines[-1]["reason"]


async def test_archiver_refuses_a_directory_another_archiver_writes(hub, tmp_path):
    writer = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)
    writer.open()
    try:
        with pytest.raises(ConfigError, match="another archiver"):
            await _archiver(hub, tmp_path).start()
        assert hub.subscriptions == 0
    finally:
        writer.close()


async def test_archiver_started_into_a_burst_larger_than_the_history_keeps_all_of_it(make_settings, tmp_path):
    """Live events still on their way to the subscription are older than the history read just after:
    each topic catches up only up to its first live event, so none of them is skipped."""
    async with Hub(settings=make_settings(history_size=5)) as hub:
        await _publish(hub, "t.a", range(1, 11))  # retained: 6..10, until the burst trims them
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(11, 61))  # at once: 50 more, the history keeps 56..60
            await eventually(lambda: archiver.written >= 50, what="11..60 archived")
    # Everything published after it subscribed, although its first history read found only 56..60.
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(11, 61))
    assert archiver.resets == 0


@pytest.mark.redis
async def test_archiver_on_a_redis_cluster_restarts_with_no_gap_and_no_duplicate(make_settings, cluster_url, tmp_path):
    """On a cluster, ids are per topic and patterns learn topics from a registry: the seams hold."""
    async with Hub(settings=make_settings(redis_url=cluster_url)) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            await _publish(hub, "t.a", range(1, 6))
            await _publish(hub, "t.b", range(100, 103))
            await eventually(lambda: archiver.written == 8)
        await _publish(hub, "t.a", range(6, 11))  # while no archiver runs
        await _publish(hub, "t.c", range(200, 202))  # a topic it never saw, in another slot
        async with _archiver(hub, tmp_path) as again:
            await _publish(hub, "t.b", range(103, 105))
            await eventually(lambda: again.written == 9, what="5 + 2 caught up, 2 live")
    assert event_numbers(read_topic(tmp_path, "t.a")) == list(range(1, 11))
    assert event_numbers(read_topic(tmp_path, "t.b")) == list(range(100, 105))
    assert event_numbers(read_topic(tmp_path, "t.c")) == [200, 201]
    assert again.resets == 0
