"""Event ids, epochs and stream cursors (`_ids`, docs/resume.md)."""

from __future__ import annotations

import pytest

from broadcaster import InvalidEventId
from broadcaster._ids import Break, StreamCursor, format_id, history_break, parse_cursor, parse_event_id, topic_tag


def test_ids_carry_topic_tag_epoch_and_seq():
    event_id = format_id("orders", "b41d07aa", 42)
    ref = parse_event_id(event_id)
    assert (ref.tag, ref.epoch, ref.seq) == (topic_tag("orders"), "b41d07aa", 42)
    assert topic_tag("orders") != topic_tag("orders2")


@pytest.mark.parametrize(
    "text",
    ["", "abc", "3f2a9c1e.b41d07aa", "3f2a9c1e.b41d07aa.", "3F2A9C1E.b41d07aa.1", "3f2a9c1e.b41d07aa.1\n", "1,2"],
)
def test_ids_malformed_resume_point_is_invalid(text: str):
    with pytest.raises(InvalidEventId):
        parse_cursor(text)


def test_ids_legacy_id_is_a_cursor_that_matches_no_history():
    """Ids issued before per-topic ids (`<ms>-<n>`) are accepted and answered with `reset`."""
    assert parse_cursor("1795384983745-42").legacy


def test_ids_stream_cursor_round_trips_and_is_bounded():
    cursor = StreamCursor(1700000000000, limit=3)
    for n, topic in enumerate(["a", "b", "a", "c"], start=1):
        text = cursor.advance(topic, format_id(topic, "00000001", n).encode())
    parsed = parse_cursor(text.decode())
    assert parsed.base_ms == 1700000000000 and not parsed.truncated
    assert parsed.position("a") == ("00000001", 3)
    assert parsed.position("b") == ("00000001", 2)
    assert parsed.position("c") == ("00000001", 4)
    text = cursor.advance("d", format_id("d", "00000001", 5).encode())  # a fourth topic: the oldest (b) goes
    parsed = parse_cursor(text.decode())
    assert parsed.truncated and parsed.position("b") is None and parsed.position("d") == ("00000001", 5)
    assert len(text) <= 16 + 3 * 38


def test_ids_stream_cursor_place_and_forget_a_topic():
    """A topic whose history was lost moves to its new history (place) or leaves the cursor (forget)."""
    start = parse_cursor(f"1700000000000~{format_id('a', '00000001', 3)},{format_id('b', '00000001', 4)}")
    cursor = StreamCursor(1700000000000, limit=8, start=start)
    cursor.place("a", format_id("a", "00000002", 7))
    assert parse_cursor(cursor.text()).position("a") == ("00000002", 7)
    cursor.forget("b")
    parsed = parse_cursor(cursor.text())
    assert parsed.position("b") is None and parsed.position("a") == ("00000002", 7)
    text = cursor.advance("c", format_id("c", "00000001", 1).encode())  # slots still line up after the removal
    parsed = parse_cursor(text.decode())
    assert parsed.position("a") == ("00000002", 7) and parsed.position("c") == ("00000001", 1)
    cursor.forget("nowhere")  # a topic it never held: nothing changes
    assert cursor.text() == text.decode()


@pytest.mark.parametrize(
    ("position", "epoch", "last", "first", "expected"),
    [
        (("e1", 5), "e1", 9, 6, None),  # continues: the next retained event is seq 6
        (("e1", 9), "e1", 9, None, None),  # at the newest event: nothing after it, nothing lost
        (("e1", 5), "e1", 9, 8, Break.TRIMMED),  # 6 and 7 were cut
        (("e1", 5), "e1", 9, None, Break.TRIMMED),  # everything after 5 expired
        (("e1", 12), "e1", 9, None, Break.AHEAD),  # newer than the history: it went backwards
        (("e1", 5), "e2", 3, 1, Break.LOST),  # another epoch
        (("e1", 5), None, 0, None, Break.LOST),  # the backend knows nothing of the topic any more
        (("e1", 0), "e2", 3, 1, None),  # a position before any event has seen nothing to lose
    ],
)
def test_ids_history_break_is_exact(position, epoch, last, first, expected):
    assert history_break(position, epoch, last, first) is expected
