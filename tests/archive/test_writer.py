"""ArchiveWriter: rotation, crash repair, the index, gzip, retention, the directory lock."""

from __future__ import annotations

import gzip
import os

import orjson
import pytest

from broadcaster import ConfigError, Control, Settings
from broadcaster.archive import ArchiveCatalog, ArchiveOptions, parse_fsync
from broadcaster.archive._index import read_index
from broadcaster.archive._layout import INDEX_NAME, segment_files
from broadcaster.archive._writer import ArchiveWriter

from ..support.waiting import eventually_sync
from .support import BASE_MS, NDJSON_LINES, event_id, event_numbers, make_events, read_topic


def _writer(root, **options) -> ArchiveWriter:
    writer = ArchiveWriter(root, ArchiveOptions(**options), NDJSON_LINES)
    writer.open()
    return writer


def test_writer_rotates_by_size_without_splitting_a_line(tmp_path):
    writer = _writer(tmp_path, segment_bytes=300)
    events = make_events("t", 20)
    writer.write("t", events[:7])
    writer.write("t", events[7:])
    writer.close()
    files = segment_files(tmp_path / "t")
    assert len(files) >= 6
    for path in files.values():
        raw = path.read_bytes()
        assert len(raw) <= 300 and raw.endswith(b"\n")
    assert event_numbers(read_topic(tmp_path, "t")) == list(range(1, 21))
    records = read_index(tmp_path / "t")
    assert sorted(records) == sorted(files)
    first = records[min(records)]
    assert (first["first_id"], first["first_ts"]) == (events[0].id, events[0].ts)
    assert records[max(records)]["last_id"] == events[-1].id


def test_writer_rotates_by_time_in_windows_aligned_to_utc(tmp_path):
    writer = _writer(tmp_path, segment_s=60)
    # 10:00:00, :20, :40, 10:01:00, ... : three events per minute
    writer.write("t", make_events("t", 9, step_ms=20_000))
    writer.close()
    names = [p.name for p in segment_files(tmp_path / "t").values()]
    assert names == [
        "00000001-20250114T100000Z.ndjson",
        "00000002-20250114T100100Z.ndjson",
        "00000003-20250114T100200Z.ndjson",
    ]
    assert [len(read_topic(tmp_path, "t"))] == [9]


def test_writer_tick_closes_a_segment_whose_time_is_over(tmp_path):
    writer = _writer(tmp_path, segment_s=60)
    writer.write("t", make_events("t", 2))
    catalog = ArchiveCatalog(tmp_path)
    assert [s.open for s in catalog.segments("t")] == [True]
    assert writer.tick(BASE_MS + 59_999) == []
    writer.tick(BASE_MS + 60_000)
    (segment,) = catalog.segments("t")
    assert not segment.open and segment.last_id == event_id("t", 2)
    writer.write("t", make_events("t", 1, start=3, ts=BASE_MS + 61_000))
    assert [s.open for s in catalog.segments("t")] == [False, True]
    writer.close()


def test_writer_open_cuts_an_unfinished_line_and_continues_the_segment(tmp_path):
    writer = _writer(tmp_path)
    writer.write("t", make_events("t", 3))
    # A kill -9 in the middle of a write: the process dies holding the file open, half a line written.
    (path,) = segment_files(tmp_path / "t").values()
    with open(path, "ab") as f:
        f.write(b'{"id":"%s","topic":"t","ty' % event_id("t", 4).encode())
    os.close(writer._lock_fd)  # the dead process's lock goes with it

    again = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)
    previous = again.open()
    assert again.cut_bytes == len(b'{"id":"%s","topic":"t","ty' % event_id("t", 4).encode())
    assert previous.last_ids == {"t": event_id("t", 3)}
    assert previous.clean is False
    again.write("t", make_events("t", 2, start=4))
    again.close()
    assert list(segment_files(tmp_path / "t").values()) == [path]  # the same segment, continued
    assert event_numbers(read_topic(tmp_path, "t")) == [1, 2, 3, 4, 5]


def test_writer_open_cuts_garbage_a_power_loss_left(tmp_path):
    writer = _writer(tmp_path)
    writer.write("t", make_events("t", 2))
    (path,) = segment_files(tmp_path / "t").values()
    with open(path, "ab") as f:
        f.write(b"\0" * 50 + b"\n" + b"\0" * 10)  # zero-filled blocks of a file extended but never written
    os.close(writer._lock_fd)
    again = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)
    assert again.open().last_ids == {"t": event_id("t", 2)}
    again.close()
    assert event_numbers(read_topic(tmp_path, "t")) == [1, 2]


def test_writer_open_rebuilds_index_records_a_crash_lost(tmp_path):
    writer = _writer(tmp_path, segment_bytes=200)
    writer.write("t", make_events("t", 6))
    writer.close()
    records = read_index(tmp_path / "t")
    (tmp_path / "t" / INDEX_NAME).write_bytes(orjson.dumps(records[1]) + b"\n" + b'{"seq":2,"fir')
    again = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=200), NDJSON_LINES)
    again.open()
    # Every segment but the newest is closed again; the newest is open (it had no record).
    rebuilt = read_index(tmp_path / "t")
    files = segment_files(tmp_path / "t")
    assert sorted(rebuilt) == sorted(files)[:-1]
    assert all(rebuilt[seq]["last_id"] == records[seq]["last_id"] for seq in rebuilt)
    again.close()


def test_writer_compresses_closed_segments_and_a_crash_leftover_is_cleaned(tmp_path):
    writer = _writer(tmp_path, segment_bytes=200, gzip=True)
    closed = writer.write("t", make_events("t", 6))
    assert closed and all(p.name.endswith(".ndjson") for p in closed)
    plain = closed[0].read_bytes()
    target = writer.compress(closed[0])
    assert target is not None and not closed[0].exists()
    assert gzip.decompress(target.read_bytes()) == plain
    # A crash after the .gz was renamed into place but before the plain file was removed:
    closed[1].with_name(closed[1].name + ".gz").write_bytes(gzip.compress(closed[1].read_bytes()))
    (tmp_path / "t" / "junk.ndjson.gz.tmp").write_bytes(b"half")
    writer.close()
    again = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=200, gzip=True), NDJSON_LINES)
    again.open()
    assert not closed[1].exists() and not (tmp_path / "t" / "junk.ndjson.gz.tmp").exists()
    assert event_numbers(read_topic(tmp_path, "t")) == [1, 2, 3, 4, 5, 6]
    # Segments a stop left uncompressed are handed back for compression.
    assert again.uncompressed() == [p for p in segment_files(tmp_path / "t").values() if p.suffix == ".ndjson"]
    again.close()


def test_writer_retention_removes_old_segments_by_age(tmp_path):
    writer = _writer(tmp_path, segment_s=60, retention_s=120)
    writer.write("t", make_events("t", 5, step_ms=60_000))  # one segment per minute, 10:00 to 10:04
    writer.tick(BASE_MS + 4 * 60_000)  # 10:04: everything before 10:02 is older than 120 s
    names = [p.name[9:24] for p in segment_files(tmp_path / "t").values()]
    assert names == ["20250114T100200", "20250114T100300", "20250114T100400"]
    writer.close()


def test_writer_retention_keeps_the_total_under_the_byte_limit(tmp_path):
    writer = _writer(tmp_path, segment_bytes=200, retention_bytes=500)
    writer.write("a", make_events("a", 10))
    writer.write("b", make_events("b", 10, start=11))
    writer.tick()
    sizes = [p.stat().st_size for t in ("a", "b") for p in segment_files(tmp_path / t).values()]
    assert sum(sizes) <= 500
    # The newest events of each topic are kept (the open segments are never removed).
    assert event_numbers(read_topic(tmp_path, "a"))[-1] == 10
    assert event_numbers(read_topic(tmp_path, "b"))[-1] == 20
    writer.close()


def test_writer_reset_marker_takes_the_time_of_the_event_it_precedes_and_is_no_event(tmp_path):
    writer = _writer(tmp_path)
    marker = Control("reset", {"reason": "test", "last_event_id": None, "topics": ["t"]})
    writer.write("t", [marker, *make_events("t", 1)])
    writer.write("t", [marker])  # alone: the time of writing, in a segment of its own window
    writer.close()
    lines = read_topic(tmp_path, "t")
    assert [line.get("control") for line in lines] == ["reset", None, "reset"]
    assert lines[0]["ts"] == BASE_MS and "data" not in lines[0]
    assert lines[2]["ts"] > BASE_MS + 3_600_000
    first, second = ArchiveCatalog(tmp_path).segments("t")
    assert first.first_id == event_id("t", 1)  # the marker is not counted as the first event
    assert second.first_id is None and not second.open  # close() closed it


def test_writer_refuses_a_directory_another_writer_holds(tmp_path):
    writer = _writer(tmp_path)
    with pytest.raises(ConfigError, match="another archiver"):
        ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES).open()
    writer.close()
    ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES).open()  # released by close()


@pytest.mark.parametrize(("text", "value"), [("batch", 0.0), ("never", None), ("2.5", 2.5), (" Batch ", 0.0)], ids=str)
def test_fsync_policy_forms(text, value):
    assert parse_fsync(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "sometimes", ""])
def test_fsync_policy_rejects_anything_else_naming_the_forms(text):
    with pytest.raises(ConfigError, match="batch, never or a number"):
        parse_fsync(text)


def test_settings_archive_topics_need_a_directory_and_valid_patterns():
    with pytest.raises(ConfigError, match="needs archive_dir"):
        Settings(archive_topics="a.*")
    with pytest.raises(ConfigError, match="archive_topics"):
        Settings(archive_dir="/tmp/x", archive_topics="bad topic!,b")
    with pytest.raises(ConfigError, match="archive_segment_s"):
        Settings(archive_segment_s=0.5)
    assert Settings(archive_dir="/tmp/x", archive_topics="a.*, b").archive_topics == ("a.*", "b")


def _count_fsyncs(monkeypatch) -> list[int]:
    """The inodes os.fsync is called on (the real fsync still runs)."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def _segment_inode(root) -> int:
    (path,) = segment_files(root / "t").values()
    return path.stat().st_ino


@pytest.mark.parametrize(("policy", "synced_at_write"), [("batch", True), ("never", False)])
def test_writer_fsync_policy_batch_syncs_every_write_and_never_none(tmp_path, monkeypatch, policy, synced_at_write):
    synced = _count_fsyncs(monkeypatch)
    writer = _writer(tmp_path, fsync_s=parse_fsync(policy))
    writer.write("t", make_events("t", 1))
    segment = _segment_inode(tmp_path)
    assert (segment in synced) is synced_at_write
    synced.clear()
    writer.write("t", make_events("t", 1, start=2))
    writer.tick()
    assert (segment in synced) is synced_at_write
    writer.close()


def test_writer_fsync_every_n_seconds_syncs_on_the_tick_after_n(tmp_path, monkeypatch):
    synced = _count_fsyncs(monkeypatch)
    writer = _writer(tmp_path, fsync_s=0.05)
    writer.write("t", make_events("t", 1))
    segment = _segment_inode(tmp_path)
    assert segment not in synced  # not at the write
    eventually_sync(lambda: writer.tick() is not None and segment in synced, timeout=5, what="a tick syncs")
    synced.clear()
    writer.tick()
    assert segment not in synced  # nothing written since: nothing to sync
    writer.close()
