"""Wire messages to typed objects: one table of control names, unknown names kept, bad events refused."""

from __future__ import annotations

import pytest

from broadcaster.client import CONTROL_TYPES, Control, Event, Fault, Gap, Live, Reset, Shutdown
from broadcaster.client._messages import parse_message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"control": "gap", "dropped": 4, "first_id": "3f2a9c1e.b41d07aa.1", "last_id": "3f2a9c1e.b41d07aa.4"},
            Gap(
                "gap",
                {"dropped": 4, "first_id": "3f2a9c1e.b41d07aa.1", "last_id": "3f2a9c1e.b41d07aa.4"},
                4,
                "3f2a9c1e.b41d07aa.1",
                "3f2a9c1e.b41d07aa.4",
                None,
            ),
        ),
        (
            {"control": "reset", "reason": "lost", "last_event_id": "9c0de1f2.0a1b2c3d.9", "topics": ["a", "b"]},
            Reset(
                "reset",
                {"reason": "lost", "last_event_id": "9c0de1f2.0a1b2c3d.9", "topics": ["a", "b"]},
                "lost",
                "9c0de1f2.0a1b2c3d.9",
                ("a", "b"),
            ),
        ),
        ({"control": "live", "replayed": 7}, Live("live", {"replayed": 7}, 7)),
        (
            {"control": "live", "replayed": 0, "cursor": "1795384978745~3f2a9c1e.b41d07aa.4"},
            Live(
                "live",
                {"replayed": 0, "cursor": "1795384978745~3f2a9c1e.b41d07aa.4"},
                0,
                "1795384978745~3f2a9c1e.b41d07aa.4",
            ),
        ),
        (
            {"control": "shutdown", "reason": "server stopping", "retry_ms": 3100},
            Shutdown("shutdown", {"reason": "server stopping", "retry_ms": 3100}, "server stopping", 3100),
        ),
        ({"control": "error", "reason": "slow consumer"}, Fault("error", {"reason": "slow consumer"}, "slow consumer")),
        ({"control": "fault", "reason": "token_expired"}, Fault("fault", {"reason": "token_expired"}, "token_expired")),
        ({"control": "epoch", "value": 3}, Control("epoch", {"value": 3})),
        ({"control": "heartbeat"}, None),
        (
            {"id": "3f2a9c1e.b41d07aa.5", "topic": "t", "type": "reading", "ts": 5, "data": None},
            Event("3f2a9c1e.b41d07aa.5", "t", "reading", 5, None),
        ),
    ],
    ids=[
        "gap",
        "reset",
        "live",
        "live-with-cursor",
        "shutdown",
        "fault-as-error",
        "fault-renamed",
        "unknown-control",
        "heartbeat",
        "event",
    ],
)
def test_parse_message_gives_the_typed_object(message, expected):
    item = parse_message(message)
    assert item == expected
    if item is not None:
        assert item.as_dict() == message  # nothing the server sent is lost


def test_parse_message_fault_under_both_names_is_one_type():
    assert CONTROL_TYPES["error"] is CONTROL_TYPES["fault"]


def test_parse_message_tolerates_fields_of_the_wrong_type():
    gap = parse_message({"control": "gap", "dropped": "many", "reason": 5})
    assert gap == Gap("gap", {"dropped": "many", "reason": 5}, None, None, None, None)


@pytest.mark.parametrize(
    "message",
    [
        {"id": "3f2a9c1e.b41d07aa.1", "topic": "t", "type": "message", "ts": 1},
        {"id": 1, "topic": "t", "type": "message", "ts": 1, "data": 1},
        {"id": "3f2a9c1e.b41d07aa.1", "topic": "t", "type": "message", "ts": "1", "data": 1},
        {"control": 5},
    ],
    ids=["no-data", "numeric-id", "string-ts", "numeric-control"],
)
def test_parse_message_refuses_a_malformed_message(message):
    with pytest.raises(ValueError):
        parse_message(message)
