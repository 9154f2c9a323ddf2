"""Events, event ids and control messages (their frames: tests/http/test_encoders.py)."""

from __future__ import annotations

import pytest

from broadcaster import Control, Event


def test_event_seq_and_epoch_come_from_the_id_unless_given():
    event = Event("t", "3f2a9c1e.b41d07aa.42", "message", b"1", 1700000000456)
    assert (event.seq, event.epoch, event.ts) == (42, "b41d07aa", 1700000000456)
    assert Event("t", "x.y.1", "message", b"1", 5, seq=7, epoch="e").seq == 7


def test_event_json_and_seq():
    event = Event("t", "aa.bb.34", "message", b'{"a":[1]}')
    assert event.json() == {"a": [1]}
    assert event.seq == 34
    assert event.size == len(b'{"a":[1]}') + 64


def test_event_equality_by_topic_id_type_data():
    a = Event("t", "1-1", "message", b"1")
    assert a == Event("t", "1-1", "message", b"1")
    assert a != Event("t", "1-2", "message", b"1")
    assert hash(a) == hash(Event("t", "1-1", "message", b"1"))


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
