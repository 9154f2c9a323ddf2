"""Event ids, history epochs and stream cursors (the scheme is drawn in docs/resume.md).

Every topic numbers its own events: `seq` 1, 2, 3, ... with no gap, within an *epoch*, an
opaque 8-character name the backend gives the topic's history when it starts one (a Redis
whose keys are gone, a memory server that restarted: a new epoch). An event's id is

    <tag>.<epoch>.<seq>        e.g. 3f2a9c1e.b41d07aa.42

where `tag` is a hash of the topic name (8 hex characters), so that an id says which topic
it belongs to and a stream's cursor can hold the ids of several topics. Ids are ordered
within a topic and epoch only; nothing orders two topics.

A stream's resume point (`Last-Event-ID`, `?last_event_id=`) is a *cursor*: on a
single-topic stream the last event id, on a multi-topic stream

    <base_ms>~<id>,<id>,...     (at most `max_topics_per_stream` ids; `!` after base: some dropped)

the ids of the last event delivered per topic, and `base_ms`, the time the stream (or the
one it resumes) started: a topic of the stream without an id in the cursor delivered
nothing since then, so a resume replays its events from `base_ms` on.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ._event import Event
from ._exceptions import InvalidEventId

#: A topic's history position: (epoch, seq). seq 0 means "before the first event".
Position = tuple[str, int]

# ASCII only and `\Z`: `\d` also matches other scripts' digits and `$` a trailing newline.
_ID_RE = re.compile(r"^([0-9a-f]{8})\.([0-9a-f]{8})\.([0-9]{1,19})\Z")
_LEGACY_RE = re.compile(r"^[0-9]{1,15}-[0-9]{1,19}\Z")
_CURSOR_RE = re.compile(r"^([0-9]{1,15})(!?)~(.*)\Z")


@lru_cache(maxsize=65536)
def topic_tag(topic: str) -> str:
    """The 8-hex-character tag of a topic in its event ids (blake2b of the name)."""
    return hashlib.blake2b(topic.encode(), digest_size=4).hexdigest()


def format_id(topic: str, epoch: str, seq: int) -> str:
    return f"{topic_tag(topic)}.{epoch}.{seq}"


@dataclass(frozen=True, slots=True)
class EventRef:
    """A parsed event id."""

    tag: str
    epoch: str
    seq: int


def parse_event_id(text: str) -> EventRef:
    """Parse one event id; raise `InvalidEventId` if `text` is not one (an id before 0.2 included)."""
    match = _ID_RE.match(text)
    if match is None:
        raise InvalidEventId(f"{text[:64]!r} is not an event id (expected <tag>.<epoch>.<seq>)")
    return EventRef(match[1], match[2], int(match[3]))


@dataclass(slots=True)
class Cursor:
    """A stream's resume point: per topic tag, the last position delivered; `base_ms` for the others.

    `legacy` marks an id of the scheme before per-topic ids (`<ms>-<n>`): it names no
    position in any current history, so a resume from it is answered with `reset`.
    `truncated`: the cursor could not carry every topic's position (see `StreamCursor`).
    """

    positions: dict[str, Position] = field(default_factory=dict)
    base_ms: int | None = None
    truncated: bool = False
    legacy: bool = False

    def position(self, topic: str) -> Position | None:
        return self.positions.get(topic_tag(topic))


def parse_cursor(text: str) -> Cursor:
    """Parse a resume point: an event id, a comma list of ids, `<base>~<ids>`, or a legacy `<ms>-<n>`.

    Raises `InvalidEventId` naming what is wrong.
    """
    if _LEGACY_RE.match(text):
        return Cursor(legacy=True)
    base: int | None = None
    truncated = False
    body = text
    match = _CURSOR_RE.match(text)
    if match is not None:
        base, truncated, body = int(match[1]), bool(match[2]), match[3]
    positions: dict[str, Position] = {}
    if body:
        for part in body.split(","):
            ref = parse_event_id(part)
            positions[ref.tag] = (ref.epoch, ref.seq)
    elif base is None:
        raise InvalidEventId("an empty resume point")
    return Cursor(positions, base, truncated)


class StreamCursor:
    """The cursor of a multi-topic stream: sent as each SSE event's `id:`, kept per stream.

    It starts from the resume point (or from the stream's start, `base_ms`) and takes the
    id of every event delivered, one slot per topic (a pattern's topics are not known in
    advance; a topic keeps its slot, so the text keeps its order). At most `limit` ids are
    kept: past that (a pattern stream over more topics), the id of the topic delivered least
    recently is dropped and the cursor says so (`!`); a resume from it announces `reset` for
    the topics it lacks.

    This runs once per delivery of a multi-topic SSE stream: `advance` is two dict lookups
    (by topic, whose hash is cached), two stores and one join.
    """

    __slots__ = ("base_ms", "limit", "truncated", "_parts", "_slots", "_tags", "_recent", "_n", "_head")

    def __init__(self, base_ms: int, limit: int, start: Cursor | None = None) -> None:
        self.base_ms = base_ms
        self.limit = limit
        self.truncated = False
        #: The ids (ASCII bytes), one per slot.
        self._parts: list[bytes] = []
        #: topic -> its slot; `_tags`: topic tag -> slot (positions of the resume point, topics unknown).
        self._slots: dict[str, int] = {}
        self._tags: dict[str, int] = {}
        #: slot -> number of its last delivery, to pick the slot to reuse once full.
        self._recent: list[int] = []
        self._n = 0
        if start is not None:
            self.truncated = start.truncated
            for tag, (epoch, seq) in list(start.positions.items())[-limit:]:
                self._tags[tag] = len(self._parts)
                self._parts.append(f"{tag}.{epoch}.{seq}".encode())
                self._recent.append(0)
        self._head = self._make_head()

    def _make_head(self) -> bytes:
        return f"{self.base_ms}{'!' if self.truncated else ''}~".encode()

    def _slot_of(self, topic: str) -> int:
        """A topic's first delivery: its resume point's slot, a new one, or (full) the least recent one."""
        tag = topic_tag(topic)
        slot = self._tags.pop(tag, None)
        if slot is None:
            parts = self._parts
            if len(parts) < self.limit:
                slot = len(parts)
                parts.append(b"")
                self._recent.append(0)
            else:
                slot = min(range(len(parts)), key=self._recent.__getitem__)
                for other, taken in list(self._slots.items()):
                    if taken == slot:
                        del self._slots[other]
                self._tags = {t: s for t, s in self._tags.items() if s != slot}
                if not self.truncated:
                    self.truncated = True
                    self._head = self._make_head()
        self._slots[topic] = slot
        return slot

    def advance(self, topic: str, event_id: bytes) -> bytes:
        """Take a delivered event's id (ASCII bytes); return the cursor after it (for the `id:` line)."""
        slot = self._slots.get(topic)
        if slot is None:
            slot = self._slot_of(topic)
        self._parts[slot] = event_id
        self._n += 1
        self._recent[slot] = self._n
        return self._head + b",".join(self._parts)

    def place(self, topic: str, event_id: str) -> None:
        """Set a topic's position without a delivery (a topic whose history was lost moves to the new one)."""
        self.advance(topic, event_id.encode())

    def forget(self, topic: str) -> None:
        """Drop a topic's position: a resume then replays the topic from `base_ms`."""
        slot = self._slots.pop(topic, None)
        if slot is None:
            slot = self._tags.pop(topic_tag(topic), None)
        if slot is None:
            return
        del self._parts[slot], self._recent[slot]
        self._slots = {t: s - (s > slot) for t, s in self._slots.items()}
        self._tags = {t: s - (s > slot) for t, s in self._tags.items()}

    def text(self) -> str:
        """The cursor as a resume point: `<base_ms>[!]~<id>,<id>,...`."""
        return (self._head + b",".join(self._parts)).decode()


class Break(enum.Enum):
    """How a topic's history fails to continue from a position (`history_break`)."""

    #: The position's epoch is not the history's: the history it belongs to was lost or replaced.
    LOST = "lost"
    #: Newer than anything published in the epoch: the history went backwards.
    AHEAD = "ahead"
    #: Events right after the position are no longer retained (trimmed by count or age).
    TRIMMED = "trimmed"


def history_break(position: Position, epoch: str | None, last: int, first: int | None) -> Break | None:
    """Whether a history continues from `position`, the one rule every reader of a history applies.

    `epoch` and `last` are the history's (`HistoryPage`: None if the backend knows nothing of the
    topic; the newest seq ever published in it), `first` the seq of the first retained event
    after the position (None if none). Seqs have no gap within an epoch, so this is exact. A
    position at seq 0 has seen nothing, so no history change loses anything of it.
    """
    at_epoch, seq = position
    if epoch != at_epoch:
        return Break.LOST if seq else None
    if seq > last:
        return Break.AHEAD
    if seq < last and (last + 1 if first is None else first) != seq + 1:
        return Break.TRIMMED
    return None


@dataclass(frozen=True, slots=True)
class HistoryStart:
    """Where a history download starts: after `seq` of `epoch`."""

    epoch: str
    seq: int

    def lost(self, epoch: str | None, last: int, first_events: list[Event]) -> str | None:
        """Why events after this point are missing from the history, or None if none are."""
        first = first_events[0].seq if first_events else None
        return _DOWNLOAD_REASONS.get(history_break((self.epoch, self.seq), epoch, last, first))


_DOWNLOAD_REASONS: dict[Break | None, str] = {
    Break.LOST: "the history this id belongs to was lost; the download starts at the current history",
    Break.AHEAD: "the id is newer than any event published in this history: the history was lost",
    Break.TRIMMED: "events after `after` are no longer retained",
}


def history_start(topic: str, after: str | None) -> HistoryStart | None:
    """Parse `?after=` of a topic's history download; raise `InvalidEventId` unless it is an id of `topic`."""
    if not after:
        return None
    ref = parse_event_id(after)
    if ref.tag != topic_tag(topic):
        raise InvalidEventId(f"{after[:64]!r} is an event id of another topic")
    return HistoryStart(ref.epoch, ref.seq)
