"""Where each topic's archive stands: its newest archived event, and how a live event relates to it.

Ids are `<tag>.<epoch>.<seq>`, with seqs gapless within an epoch (docs/resume.md), so a
live event is judged exactly against the newest archived event of its topic: the same
epoch and a seq up to it is a duplicate; the next seq follows; a later seq leaves a hole,
another epoch a history that was lost or replaced (both: catch up from the history first).
The archiver never returns to an epoch it left: late events of one are dropped (the
`reset` line written when it left covers them), so each epoch is one run in the files.

A `reset` line is written when the history cannot cover what the archiver missed: the
history was trimmed past the newest archived event (`TRIMMED`), the topic's history was
lost or replaced (another epoch: Redis restarted empty or was replaced; `epoch_loss`),
the archiver was stopped longer than the history's ttl, or the history does not survive a
restart (the memory backend) and the previous run did not stop cleanly (`previous_loss`).
A memory-backend server that stopped cleanly starts new epochs with nothing lost: no `reset`.
"""

from __future__ import annotations

from .._event import Event
from .._ids import Position
from ._order import LEGACY, id_parts
from ._writer import Previous, now_ms

#: The position of an archived id that matches no epoch of a current history (an id before 0.2).
NO_EPOCH: Position = ("", 0)

TRIMMED = "the history was trimmed past the newest archived event"
LOST = "the topic's history was lost or replaced (another epoch) after the newest archived event"
LEGACY_ID = "the newest archived event has an id of an older server version: the history cannot be matched"


def previous_loss(previous: Previous, history_survives_restart: bool, ttl_ms: int) -> str | None:
    """Why events after the previous run's last one of a topic may be missing from the history, if they may."""
    if not previous.clean and not history_survives_restart:
        return "the previous archiver stopped without flushing, and the history did not survive the restart"
    if previous.live_ms is None or now_ms() - previous.live_ms > ttl_ms:
        return "the archiver was stopped for longer than the history's ttl"
    return None


def epoch_loss(previous: Previous | None, history_survives_restart: bool, newest: Position) -> str | None:
    """Why events after `newest` may be lost, now that the topic's history is in another epoch.

    `previous` is given at the topic's first catch-up after a start: after a clean stop of
    a run whose history died with it (the memory backend), the archiver had written it all.
    """
    if previous is not None and previous.clean and not history_survives_restart:
        return None
    return LEGACY_ID if newest == NO_EPOCH else LOST


def position(event_id: str) -> Position:
    """The (epoch, seq) of an archived event id."""
    parts = id_parts(event_id)
    return NO_EPOCH if parts is None or parts[0] == LEGACY else (parts[0], parts[1])


class Standing:
    """Per topic: the newest archived (epoch, seq) and id, the epochs left, and whether it follows the history."""

    def __init__(self) -> None:
        #: (epoch, seq) of the newest event written; (epoch, 0) once moved to an epoch with nothing of it yet.
        self.last: dict[str, Position] = {}
        #: The id of the newest event written (a `reset` line's `last_event_id`).
        self.last_id: dict[str, str] = {}
        #: Epochs the archive moved on from in this run.
        self.left: dict[str, set[str]] = {}
        #: Topics whose newest archived event is of the epoch the history was in at their last catch-up.
        self.synced: set[str] = set()
        #: Topics whose newest archived event came from the live subscription (so the hub knows it).
        self.live: set[str] = set()
        #: Topics whose newest archived line is a `reset` (a loss after the newest event, announced).
        self.announced: set[str] = set()

    def written(self, topic: str, event_id: str | None, *, live: bool = False) -> None:
        """The newest event written of `topic` is `event_id` (None: none), delivered `live` or not."""
        self.announced.discard(topic)
        if live:
            self.live.add(topic)
        else:
            self.live.discard(topic)
        if event_id is None:
            self.last.pop(topic, None)
            self.last_id.pop(topic, None)
        else:
            self.last[topic] = position(event_id)
            self.last_id[topic] = event_id

    def move(self, topic: str, epoch: str, was: str) -> None:
        """The topic's history is now `epoch` (it was `was`): late events of `was` are dropped from now on."""
        self.left.setdefault(topic, set()).add(was)
        if self.last.get(topic, NO_EPOCH)[0] != epoch:
            self.last[topic] = (epoch, 0)

    def verdict(self, event: Event, newest: Position | None) -> bool | None:
        """Whether to write a live event after `newest`: True, False (a duplicate, or late), None (catch up first)."""
        if newest is None:
            return True
        epoch, seq = newest
        if event.epoch == epoch:
            return None if event.seq > seq + 1 else event.seq > seq
        return False if event.epoch in self.left.get(event.topic, ()) else None

    def begins_epoch(self, event: Event, newest: Position | None, caught: bool) -> bool:
        """Whether `event` starts a new epoch with nothing lost (then the topic moves to it).

        True for seq 1 of another epoch on a topic that follows the history without a gap
        since a catch-up found its newest archived event current, and whose newest archived
        event came live: everything of the old epoch came live before it (an idle topic whose
        epoch expired, a Redis flushed without a restart). Had live delivery been
        interrupted, the hub, which knows that newest event, would have said `reset` or
        `gap` when it came back (a topic the hub delivered nothing of gets no such notice).
        """
        topic = event.topic
        if newest is None or event.seq != 1 or not caught or topic not in self.synced or topic not in self.live:
            return False
        if self.verdict(event, newest) is not None:
            return False
        self.move(event.topic, event.epoch, newest[0])
        return True

    def caught_up(self, topic: str, history_epoch: str | None) -> None:
        newest = self.last.get(topic)
        if history_epoch is not None and (newest is None or newest[0] == history_epoch):
            self.synced.add(topic)
        else:
            self.synced.discard(topic)
