"""Events, event ids and control messages (their frames: tests/http/test_encoders.py)."""

from __future__ import annotations

import pytest

from broadcaster import Control, Event, InvalidEventId
from broadcaster._event import format_id, parse_id


def test_event_ts_comes_from_the_id_unless_given():
    assert Event("t", "1700000000456-1", "message", b"1").ts == 1700000000456
    assert Event("t", "1700000000456-1", "message", b"1", ts=5).ts == 5


def test_event_json_and_seq():
    event = Event("t", "12-34", "message", b'{"a":[1]}')
    assert event.json() == {"a": [1]}
    assert event.seq == (12, 34)
    assert event.size == len(b'{"a":[1]}') + 64


def test_event_equality_by_topic_id_type_data():
    a = Event("t", "1-1", "message", b"1")
    assert a == Event("t", "1-1", "message", b"1")
    assert a != Event("t", "1-2", "message", b"1")
    assert hash(a) == hash(Event("t", "1-1", "message", b"1"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-0", (0, 0)),
        ("1700000000000-1", (1700000000000, 1)),
        ("999999999999999-9999999999999999999", (999999999999999, 9999999999999999999)),
    ],
    ids=["zero", "typical", "widest"],
)
def test_parse_id_valid(text, expected):
    assert parse_id(text) == expected
    assert format_id(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "123",
        "-1",
        "1-",
        "a-1",
        "1-b",
        "1-2-3",
        " 1-2",
        "1-2 ",
        "1-2\n",
        "1.5-2",
        "+1-2",
        "1-" + "9" * 20,
        "9" * 16 + "-1",
        "１-２",
    ],
    ids=[
        "empty",
        "no-dash",
        "negative",
        "no-counter",
        "letters-ms",
        "letters-counter",
        "three-parts",
        "leading-space",
        "trailing-space",
        "trailing-newline",
        "decimal",
        "plus-sign",
        "counter-too-long",
        "ms-too-long",
        "fullwidth-digits",
    ],
)
def test_parse_id_invalid_raises(text):
    with pytest.raises(InvalidEventId) as info:
        parse_id(text)
    assert isinstance(info.value, ValueError)
    assert "is not an event id" in str(info.value)


def test_parse_id_orders_like_events():
    ids = ["1700000000000-10", "1700000000000-9", "1700000000001-1", "999-5000"]
    assert sorted(ids, key=parse_id) == ["999-5000", "1700000000000-9", "1700000000000-10", "1700000000001-1"]


def test_control_as_dict_never_carries_data():
    control = Control("gap", {"dropped": 3, "first_id": "1-1", "last_id": "1-3"})
    assert control.as_dict() == {"control": "gap", "dropped": 3, "first_id": "1-1", "last_id": "1-3"}
    assert "data" not in control.as_dict()
    assert Control("live").as_dict() == {"control": "live"}


def test_control_equality_and_fields_copy():
    fields = {"reason": "x"}
    control = Control("error", fields)
    fields["reason"] = "changed"
    assert control.fields == {"reason": "x"}
    assert control == Control("error", {"reason": "x"})
    assert control != Control("shutdown", {"reason": "x"})
    with pytest.raises(TypeError):
        hash(control)
