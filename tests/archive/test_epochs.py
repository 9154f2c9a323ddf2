"""The archive across epochs: a topic whose history was lost or replaced (issue 16's per-topic ids).

Within a topic the files are the order, across epochs too: the archiver writes each epoch as
one run and says `reset` when the history was lost; export and deep resume place ids by that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from broadcaster import BackendUnavailable, Control, Event, Hub, parse_event_id
from broadcaster.archive import ArchiveOptions, Archiver, DeepReplay
from broadcaster.archive._layout import STATE_NAME
from broadcaster.archive._writer import ArchiveWriter, now_ms

from ..support.waiting import eventually
from .support import BASE_MS, NDJSON_LINES, deep_items, event_id, make_events, read_topic

TOPIC = "ep.sensor"


def _labels(lines: list[dict]) -> list[str]:
    """Each line as `<epoch>:<n>` for an event, or its control kind."""
    return [
        line["control"] if "control" in line else f"{line['id'].split('.')[1]}:{line['data']['n']}" for line in lines
    ]


async def _publish(hub: Hub, numbers: range) -> list[Event]:
    return await hub.publish_many(TOPIC, [("message", orjson.dumps({"n": n})) for n in numbers])


async def _try_publish(hub: Hub, numbers: range) -> list[Event] | None:
    """`_publish`, or None while the backend does not answer (a restarting Redis)."""
    try:
        return await _publish(hub, numbers)
    except BackendUnavailable:
        return None


def _archiver(hub: Hub, root: Path, *, survives: bool = True) -> Archiver:
    return Archiver(hub, root, ["ep.*"], ArchiveOptions(), render=NDJSON_LINES, history_survives_restart=survives)


# -- the archiver ------------------------------------------------------------------------


async def test_archiver_follows_a_new_epoch_begun_without_a_gap_with_no_reset(hub, tmp_path):
    """The history starts again (an idle topic's epoch expired) while the subscription lost nothing."""
    async with _archiver(hub, tmp_path) as archiver:
        old = await _publish(hub, range(1, 4))
        await eventually(lambda: archiver.written == 3)
        await hub.backend.new_epoch(TOPIC, old[0].epoch)  # the next publish starts a new epoch at seq 1
        new = await _publish(hub, range(4, 7))
        await eventually(lambda: archiver.written == 6)
    assert new[0].epoch != old[0].epoch and new[0].seq == 1
    assert _labels(read_topic(tmp_path, TOPIC)) == [f"{old[0].epoch}:{n}" for n in (1, 2, 3)] + [
        f"{new[0].epoch}:{n}" for n in (4, 5, 6)
    ]
    assert archiver.resets == 0


async def test_archiver_started_after_the_epoch_changed_writes_a_reset_then_the_new_history(hub, tmp_path):
    """Events of the old epoch published while it was down are gone with that history: `reset`."""
    async with _archiver(hub, tmp_path) as archiver:
        old = await _publish(hub, range(1, 4))
        await eventually(lambda: archiver.written == 3)
    await _publish(hub, range(4, 6))  # while no archiver runs: lost with the old history
    await hub.backend.new_epoch(TOPIC, old[0].epoch)
    new = await _publish(hub, range(6, 9))
    async with _archiver(hub, tmp_path) as again:
        await eventually(lambda: again.written == 3)
    lines = read_topic(tmp_path, TOPIC)
    e1, e2 = old[0].epoch, new[0].epoch
    assert _labels(lines) == [f"{e1}:1", f"{e1}:2", f"{e1}:3", "reset", f"{e2}:6", f"{e2}:7", f"{e2}:8"]
    assert lines[3]["last_event_id"] == old[2].id and "another epoch" in lines[3]["reason"]
    assert again.resets == 1


async def test_archiver_after_an_unclean_memory_restart_writes_one_reset_then_the_new_epoch(make_settings, tmp_path):
    async with Hub(settings=make_settings()) as hub:
        async with _archiver(hub, tmp_path, survives=False) as archiver:
            await _publish(hub, range(1, 4))
            await eventually(lambda: archiver.written == 3)
    (tmp_path / STATE_NAME).write_bytes(orjson.dumps({"live_ms": now_ms(), "clean": False}))  # as kill -9 leaves it
    async with Hub(settings=make_settings()) as fresh:
        async with _archiver(fresh, tmp_path, survives=False) as again:
            await _publish(fresh, range(4, 6))
            await eventually(lambda: again.written == 2)
            await _publish(fresh, range(6, 8))
            await eventually(lambda: again.written == 4)
    lines = read_topic(tmp_path, TOPIC)
    assert [line.get("control") for line in lines] == [None] * 3 + ["reset"] + [None] * 4
    assert [parse_event_id(line["id"]).seq for line in lines[4:]] == [1, 2, 3, 4]
    assert again.resets == 1


@pytest.mark.parametrize("clean", [True, False], ids=["clean-stop", "killed"])
async def test_archiver_of_a_restarted_memory_server_that_looked_before_the_first_publish(
    make_settings, tmp_path, clean
):
    """Its first look at the topic finds no history at all (the new process has none yet): the verdict waits."""
    async with Hub(settings=make_settings()) as hub:
        async with _archiver(hub, tmp_path, survives=False) as archiver:
            await _publish(hub, range(1, 4))
            await eventually(lambda: archiver.written == 3)
    if not clean:
        (tmp_path / STATE_NAME).write_bytes(orjson.dumps({"live_ms": now_ms(), "clean": False}))
    async with Hub(settings=make_settings()) as fresh:
        async with _archiver(fresh, tmp_path, survives=False) as again:
            await eventually(lambda: again.catch_ups >= 1, what="the first catch-up, of an empty history")
            await _publish(fresh, range(4, 7))
            await eventually(lambda: again.written == 3)
    controls = [line.get("control") for line in read_topic(tmp_path, TOPIC)]
    # Clean: nothing was lost. Killed: one `reset` for the one hole, not one more when the new epoch shows.
    assert controls == [None] * 3 + ([] if clean else ["reset"]) + [None] * 3
    assert again.resets == (0 if clean else 1)


@pytest.mark.redis
async def test_archiver_across_redis_restarted_empty_announces_the_loss_and_archives_the_new_history(
    make_settings, redis_server_factory, tmp_path
):
    redis = redis_server_factory()
    async with Hub(settings=make_settings(redis_url=redis.url)) as hub:
        async with _archiver(hub, tmp_path) as archiver:
            old = await _publish(hub, range(1, 4))
            await eventually(lambda: archiver.written == 3)
            redis.stop()
            redis.start()  # no persistence: it comes back empty, on the same port
            new = await eventually(
                lambda: _try_publish(hub, range(4, 7)), within=15, interval=0.1, what="publish again"
            )
            await eventually(lambda: archiver.written == 6, within=15, what="the new history archived")
    lines = read_topic(tmp_path, TOPIC)
    e1, e2 = old[0].epoch, new[0].epoch
    assert e1 != e2
    assert _labels(lines) == [f"{e1}:1", f"{e1}:2", f"{e1}:3", "reset", f"{e2}:4", f"{e2}:5", f"{e2}:6"]
    assert lines[3]["last_event_id"] == old[2].id
    assert archiver.resets == 1


# -- export ------------------------------------------------------------------------------

E1, E2, E3 = "e1e1e1e1", "e2e2e2e2", "e3e3e3e3"


@pytest.fixture(params=["one-segment", "small-segments"])
def three_epochs(request, tmp_path) -> Iterator[Path]:
    """E1 1..3, reset, E2 1..2, reset, E3 1..3: in one open segment, or in segments of two or three lines."""
    size = 10**6 if request.param == "one-segment" else 500
    writer = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=size), NDJSON_LINES)
    writer.open()
    reset = Control("reset", {"reason": "test", "last_event_id": None, "topics": [TOPIC]})
    writer.write(
        TOPIC,
        [
            *make_events(TOPIC, 3, epoch=E1),
            reset,
            *make_events(TOPIC, 2, epoch=E2, ts=BASE_MS + 10),
            reset,
            *make_events(TOPIC, 3, epoch=E3, ts=BASE_MS + 5),  # ts goes back: only ids place events
        ],
    )
    yield tmp_path
    writer.close()


@contextlib.asynccontextmanager
async def _client(client_factory, make_settings, root: Path):
    async with client_factory(make_settings(archive_dir=str(root))) as client:
        yield client


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (
            (event_id(TOPIC, 2, E1), event_id(TOPIC, 2, E3)),
            ["E1:2", "E1:3", "reset", "E2:1", "E2:2", "reset", "E3:1", "E3:2"],
        ),
        ((event_id(TOPIC, 2, E2), event_id(TOPIC, 1, E3)), ["E2:2", "reset", "E3:1"]),
        ((event_id(TOPIC, 9, E1), None), ["reset", "E2:1", "E2:2", "reset", "E3:1", "E3:2", "E3:3"]),
        ((None, event_id(TOPIC, 1, E2)), ["E1:1", "E1:2", "E1:3", "reset", "E2:1"]),
        ((event_id(TOPIC, 3, E3), None), ["E3:3"]),
        ((event_id(TOPIC, 4, E3), None), []),
    ],
    ids=["across-three", "across-an-inner-epoch", "from-a-hole", "to-an-inner-epoch", "last", "after-the-newest"],
)
async def test_export_places_ids_by_the_files_order_of_epochs(
    client_factory, make_settings, three_epochs, bounds, expected
):
    params = {k: v for k, v in zip(("from", "to"), bounds, strict=True) if v is not None}
    async with _client(client_factory, make_settings, three_epochs) as client:
        response = await client.get(f"/topics/{TOPIC}/archive/export", params=params)
    assert response.status_code == 200
    names = {E1: "E1", E2: "E2", E3: "E3"}
    labels = [
        line["control"] if "control" in line else f"{names[line['id'].split('.')[1]]}:{line['data']['n']}"
        for line in map(orjson.loads, response.content.splitlines())
    ]
    assert labels == expected


@pytest.mark.parametrize(
    ("params", "status", "code", "name"),
    [
        ({"from": event_id(TOPIC, 1, "0badbeef")}, 404, "id_not_archived", "from"),
        ({"to": event_id(TOPIC, 1, "0badbeef")}, 404, "id_not_archived", "to"),
        ({"from": event_id(TOPIC, 1, E2), "to": event_id(TOPIC, 3, E1)}, 400, "invalid_parameter", "from"),
        ({"from": event_id("other.topic", 1, E1)}, 400, "invalid_parameter", "from"),
    ],
    ids=["from-unknown-epoch", "to-unknown-epoch", "epochs-reversed", "id-of-another-topic"],
)
async def test_export_of_an_id_it_cannot_place_names_the_parameter(
    client_factory, make_settings, three_epochs, params, status, code, name
):
    async with _client(client_factory, make_settings, three_epochs) as client:
        response = await client.get(f"/topics/{TOPIC}/archive/export", params=params)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith(name)


# -- deep resume -------------------------------------------------------------------------


async def _deep(hub: Hub, root: Path, after: str) -> tuple[list[int | str], DeepReplay]:
    return await deep_items(hub, root, TOPIC, after)


async def _before_a_restart(make_settings, root: Path, *, clean: bool) -> list[Event]:
    """Events 1..10 in a first memory server's epoch, archived; it stops cleanly or is killed."""
    async with Hub(settings=make_settings()) as hub:
        async with _archiver(hub, root, survives=False) as archiver:
            events = await _publish(hub, range(1, 11))
            await eventually(lambda: archiver.written == 10)
    if not clean:
        (root / STATE_NAME).write_bytes(orjson.dumps({"live_ms": now_ms(), "clean": False}))
    return events


@pytest.mark.parametrize("clean", [True, False], ids=["clean-restart", "killed"])
async def test_deep_resume_from_an_epoch_before_a_restart_replays_the_archive_then_the_new_history(
    make_settings, tmp_path, clean
):
    """The resume point's epoch is archived, the history is in a newer one that trimmed its start."""
    old = await _before_a_restart(make_settings, tmp_path, clean=clean)
    async with Hub(settings=make_settings(history_size=5)) as hub:
        async with _archiver(hub, tmp_path, survives=False) as archiver:
            await _publish(hub, range(11, 31))  # the new epoch's seqs 1..20; the history keeps 16..20
            await eventually(lambda: archiver.written == 20)
            items, replay = await _deep(hub, tmp_path, old[2].id)
    # A clean stop lost nothing: no `reset` at all. A killed server may have: the archive's own line says so.
    hole = [] if clean else ["reset"]
    assert items == [*range(4, 11), *hole, *range(11, 31)]
    assert replay.live().fields == {"replayed": 27, "from_archive": 22, "from_history": 5}


async def test_deep_resume_keeps_the_reset_when_the_archive_never_reached_the_new_epoch(make_settings, tmp_path):
    old = await _before_a_restart(make_settings, tmp_path, clean=True)
    async with Hub(settings=make_settings(history_size=5)) as hub:  # no archiver runs on this one
        await _publish(hub, range(11, 19))  # seqs 1..8 of the new epoch, 4..8 retained
        items, replay = await _deep(hub, tmp_path, old[2].id)
    # 1..3 of the new epoch are in neither: `reset` first, then the archive's rest of the old epoch, the history.
    assert items == ["reset", *range(4, 11), *range(14, 19)]
    assert replay.live().fields == {"replayed": 12, "from_archive": 7, "from_history": 5}


async def test_deep_resume_from_an_epoch_the_archive_does_not_hold_is_the_plain_replay(make_settings, tmp_path):
    await _before_a_restart(make_settings, tmp_path, clean=True)
    async with Hub(settings=make_settings(history_size=5)) as hub:
        await _publish(hub, range(11, 19))
        items, replay = await _deep(hub, tmp_path, event_id(TOPIC, 3, "0badbeef"))
    assert items == ["reset", *range(14, 19)] and replay.live().fields == {"replayed": 5}


# -- an archive written before 0.2 -------------------------------------------------------


async def test_an_archive_of_older_ids_is_continued_after_a_reset_and_exported_as_its_oldest_run(
    hub, tmp_path, client_factory, make_settings
):
    writer = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)  # as 0.1 wrote it: ids <ms>-<n>
    writer.open()
    writer.write(TOPIC, [Event(TOPIC, f"{BASE_MS + n}-{n}", "message", b'{"n":%d}' % n, BASE_MS + n) for n in (1, 2)])
    writer.close()
    async with _archiver(hub, tmp_path) as archiver:
        new = await _publish(hub, range(3, 5))
        await eventually(lambda: archiver.written == 2)
    lines = read_topic(tmp_path, TOPIC)
    assert [line.get("control") for line in lines] == [None, None, "reset", None, None]
    assert "older server version" in lines[2]["reason"] and lines[2]["last_event_id"] == f"{BASE_MS + 2}-2"
    async with _client(client_factory, make_settings, tmp_path) as client:
        url = f"/topics/{TOPIC}/archive/export"
        from_old = await client.get(url, params={"from": f"{BASE_MS + 2}-2", "to": new[0].id})
        to_old = await client.get(url, params={"to": f"{BASE_MS + 1}-1"})
    numbers = [orjson.loads(line)["data"]["n"] for line in from_old.content.splitlines() if b'"control"' not in line]
    assert from_old.status_code == 200 and numbers == [2, 3]
    assert b'"control":"reset"' in from_old.content
    assert [orjson.loads(line)["data"]["n"] for line in to_old.content.splitlines()] == [1]
