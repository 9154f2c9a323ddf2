"""How the archiver judges a live event against the newest archived one of its topic (exact, by epoch and seq)."""

from __future__ import annotations

from broadcaster.archive._standing import NO_EPOCH, Standing, position

from .support import event_id, make_events

TOPIC = "t.a"


def test_position_of_an_archived_id_and_of_an_id_before_0_2():
    assert position(event_id(TOPIC, 42, "b41d07aa")) == ("b41d07aa", 42)
    assert position("1736848800000-5") == NO_EPOCH  # matches no current history


def test_verdict_duplicate_next_hole_other_epoch_and_left_epoch():
    standing = Standing()
    standing.written(TOPIC, event_id(TOPIC, 5, "e1e1e1e1"))
    newest = standing.last[TOPIC]
    (dup, nxt, hole) = (make_events(TOPIC, 1, start=n, epoch="e1e1e1e1")[0] for n in (5, 6, 8))
    (other,) = make_events(TOPIC, 1, start=1, epoch="e2e2e2e2")
    assert standing.verdict(dup, newest) is False
    assert standing.verdict(nxt, newest) is True
    assert standing.verdict(hole, newest) is None  # the history first
    assert standing.verdict(other, newest) is None  # another history: the history first
    standing.move(TOPIC, "e2e2e2e2", "e1e1e1e1")
    assert standing.last[TOPIC] == ("e2e2e2e2", 0)
    assert standing.verdict(nxt, standing.last[TOPIC]) is False  # late, of an epoch the archive left
    assert standing.verdict(other, standing.last[TOPIC]) is True


def test_a_new_epoch_begins_without_loss_only_on_a_topic_that_follows_the_history():
    standing = Standing()
    standing.written(TOPIC, event_id(TOPIC, 5, "e1e1e1e1"), live=True)
    (first, second) = make_events(TOPIC, 2, epoch="e2e2e2e2")
    assert not standing.begins_epoch(first, standing.last[TOPIC], caught=True)  # never caught up
    standing.caught_up(TOPIC, "e1e1e1e1")
    standing.written(TOPIC, event_id(TOPIC, 5, "e1e1e1e1"))  # the newest came from the history
    assert not standing.begins_epoch(first, standing.last[TOPIC], caught=True)  # the hub does not know it
    standing.written(TOPIC, event_id(TOPIC, 5, "e1e1e1e1"), live=True)
    assert not standing.begins_epoch(second, standing.last[TOPIC], caught=True)  # seq 2: seq 1 was missed
    assert not standing.begins_epoch(first, standing.last[TOPIC], caught=False)  # a gap since
    assert standing.begins_epoch(first, standing.last[TOPIC], caught=True)
    assert standing.left[TOPIC] == {"e1e1e1e1"}
    standing.caught_up(TOPIC, None)  # the backend forgot the topic: nothing to vouch for
    assert TOPIC not in standing.synced
