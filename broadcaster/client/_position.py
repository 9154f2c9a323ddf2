"""Where a subscriber is: the resume point to persist, and the duplicates to drop after a reconnect.

Ids are per topic (`<tag>.<epoch>.<seq>`, docs/resume.md): ordered within one topic and
epoch only. So the position of a stream is

- on a single-topic stream, the id of the last event yielded;
- on a multi-topic stream (several selectors, or a pattern), the stream's *cursor*
  `<base_ms>[!]~<id>,<id>,...`: the last id yielded of each topic, and the time the
  stream began, from which a resume replays the topics it holds no id of. On SSE the
  server sends it as each event's `id:`; on NDJSON the client builds it the same way,
  from the base of the `live` message's `cursor` and the ids it yields, most recently
  yielded last, at most `MAX_CURSOR_IDS` of them (past that the least recent is
  dropped and `!` set: a resume announces `reset` for the topics it lacks).

Duplicates are dropped per topic by (epoch, seq): an event of a topic whose seq is not
above the last one yielded in the same epoch came before. A `reset` forgets the
positions of its topics (their history starts again).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

from .._exceptions import InvalidEventId
from .._ids import parse_cursor, parse_event_id, topic_tag
from ._messages import Event, Live, Reset

#: The most ids in a cursor the client builds: the server's default `max_topics_per_stream`,
#: so that the header stays small (about 2.4 KiB at most, docs/resume.md "Size bound").
MAX_CURSOR_IDS = 64
#: How many topics' last positions are remembered to drop duplicates (a pattern may match any number).
DEDUP_TOPICS = 1024

_HEAD_RE = re.compile(r"^([0-9]{1,15})(!?)~")


def is_multi(selectors: Sequence[str]) -> bool:
    """Whether a stream of these selectors is multi-topic (its resume point is a cursor)."""
    return len(selectors) > 1 or any("*" in selector for selector in selectors)


class StreamPosition:
    """The resume point and per-topic positions of one subscriber, across its connections."""

    def __init__(self, multi: bool, start: str | None, *, limit: int = MAX_CURSOR_IDS) -> None:
        self.multi = multi
        self.limit = limit
        #: What to send as `Last-Event-ID`: see the module's docstring. None: no resume point yet.
        self.value = start
        #: topic tag -> (epoch, seq) of the last event yielded, least recently yielded first.
        self._seqs: OrderedDict[str, tuple[str, int]] = OrderedDict()
        #: A multi-topic stream's cursor: its base (None until known), `!`, and tag -> id.
        self._base: str | None = None
        self._truncated = False
        self._ids: OrderedDict[str, str] = OrderedDict()
        #: Tags of the topics a `reset` named since the last `live`: `live` says where they stand now.
        self._reset_tags: set[str] = set()
        if start is not None:
            self._restart(start)

    def _restart(self, text: str) -> None:
        """Take a resume point (given, or a server's SSE cursor) as the cursor and the dedup floor."""
        try:
            cursor = parse_cursor(text)
        except InvalidEventId:
            return  # the server answers it with a 400 naming what is wrong
        head = _HEAD_RE.match(text)
        if head is not None:
            self._base, self._truncated = head[1], bool(head[2])
        body = text[head.end() :] if head is not None else text
        if cursor.legacy or not body:
            return
        for event_id in body.split(","):
            tag = event_id.partition(".")[0]
            self._ids[tag] = event_id
            self._ids.move_to_end(tag)
        for tag, position in cursor.positions.items():
            self._remember(tag, position)

    def first_time(self, event: Event, frame_id: str | None) -> bool:
        """Take an event: False if it was yielded before (drop it); else move the position past it."""
        try:
            ref = parse_event_id(event.id)
        except InvalidEventId:
            ref = None  # not an id of this scheme: opaque, never a duplicate
        if ref is not None:
            last = self._seqs.get(ref.tag)
            if last is not None and last[0] == ref.epoch and ref.seq <= last[1]:
                return False
            self._remember(ref.tag, (ref.epoch, ref.seq))
        if not self.multi:
            self.value = event.id
            return True
        self._advance(event.id)
        # SSE: the server's own cursor after this event (`id:`), which it bounds by its own limit.
        self.value = frame_id if frame_id is not None else self._text()
        return True

    def live(self, live: Live) -> None:
        """A `live` message: on a multi-topic stream its cursor gives the base when the client has none.

        It also gives where the topics a `reset` just named stand now (the server moved them
        to their new history, or dropped them), so the next resume does not announce the
        same loss again.
        """
        reset_tags, self._reset_tags = self._reset_tags, set()
        if not self.multi or live.cursor is None:
            return
        head = _HEAD_RE.match(live.cursor)
        if head is None:
            return
        if reset_tags:
            current = {i.partition(".")[0]: i for i in live.cursor[head.end() :].split(",") if i}
            for tag in reset_tags:
                if tag in current:
                    self._ids[tag] = current[tag]
                    self._ids.move_to_end(tag)
                else:
                    self._ids.pop(tag, None)
            self.value = self._text()
        if self._base is not None:
            return
        self._base, self._truncated = head[1], self._truncated or bool(head[2])
        for event_id in reversed(live.cursor[head.end() :].split(",") if live.cursor[head.end() :] else []):
            tag = event_id.partition(".")[0]
            if tag not in self._ids:  # a position of the resume point: older than what was yielded since
                self._ids[tag] = event_id
                self._ids.move_to_end(tag, last=False)
        self._trim()
        self.value = self._text()

    def reset(self, reset: Reset) -> Reset:
        """A `reset` message: forget its topics' positions; name the last id yielded if the server did not."""
        tags = [topic_tag(topic) for topic in reset.topics] if reset.topics else list(self._seqs)
        last = [(tag, self._seqs[tag]) for tag in tags if tag in self._seqs]
        for tag, _ in last:
            del self._seqs[tag]
        self._reset_tags.update(tags)
        if reset.last_event_id is None and len(reset.topics) == 1 and len(last) == 1:
            tag, (epoch, seq) = last[0]
            return Reset(reset.name, reset.fields, reset.reason, f"{tag}.{epoch}.{seq}", reset.topics)
        return reset

    def _remember(self, tag: str, position: tuple[str, int]) -> None:
        self._seqs[tag] = position
        self._seqs.move_to_end(tag)
        if len(self._seqs) > DEDUP_TOPICS:
            self._seqs.popitem(last=False)

    def _advance(self, event_id: str) -> None:
        tag = event_id.partition(".")[0]
        self._ids[tag] = event_id
        self._ids.move_to_end(tag)
        self._trim()

    def _trim(self) -> None:
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
            self._truncated = True

    def _text(self) -> str | None:
        ids = ",".join(self._ids.values())
        if self._base is None:
            return ids or None  # no base known: the server resets the topics the ids do not cover
        return f"{self._base}{'!' if self._truncated else ''}~{ids}"
