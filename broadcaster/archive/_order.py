"""Where an event id lies in a topic's archive: the order of its epochs, as the files hold them.

An id orders events within one epoch of a topic only (`<tag>.<epoch>.<seq>`, docs/resume.md);
epoch names are random. The archive gives the rest: the archiver writes a topic's events in
the order they happened and never returns to an epoch it left, so in the files each epoch is
one run of lines, and the runs follow each other in time. An event's place is then its
`Key`: the rank of its epoch's run, then its seq. Keys compare like file positions, across
epochs too.

Ids of the scheme before 0.2 (`<ms>-<n>`, archives written by an older version) form one
more run (epoch `LEGACY`), ordered by `(ms, n)` within it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .._exceptions import InvalidEventId
from .._ids import parse_event_id

#: The epoch given to the ids of the scheme before 0.2 (`<ms>-<n>`).
LEGACY = "legacy"
_LEGACY_RE = re.compile(r"^([0-9]{1,15})-([0-9]{1,19})\Z")

#: An event id without its tag: (epoch, seq, 0); (LEGACY, ms, n) for an older id.
Parts = tuple[str, int, int]
#: An event's place in a topic's archive: (rank of its epoch's run, seq, 0) or (rank, ms, n).
Key = tuple[int, int, int]


def id_parts(text: str) -> Parts | None:
    """The epoch and seq of an event id (of either scheme); None if `text` is no event id."""
    try:
        ref = parse_event_id(text)
    except InvalidEventId:
        match = _LEGACY_RE.match(text)
        return None if match is None else (LEGACY, int(match[1]), int(match[2]))
    return ref.epoch, ref.seq, 0


def id_epoch(text: str) -> str | None:
    parts = id_parts(text)
    return None if parts is None else parts[0]


class EpochOrder:
    """The epochs of one topic's archive, oldest run first (see the module docstring)."""

    def __init__(self, runs: Iterable[str] = ()) -> None:
        self.rank: dict[str, int] = {}
        for epoch in runs:
            self.add(epoch)

    def add(self, epoch: str) -> None:
        """Append a run (an epoch seen again keeps its first rank: the archiver never goes back)."""
        self.rank.setdefault(epoch, len(self.rank))

    def __contains__(self, epoch: object) -> bool:
        return epoch in self.rank

    def key(self, parts: Parts) -> Key | None:
        """The place of an event; None if its epoch is not in the archive."""
        rank = self.rank.get(parts[0])
        return None if rank is None else (rank, parts[1], parts[2])

    def key_of(self, event_id: str | None) -> Key | None:
        parts = None if event_id is None else id_parts(event_id)
        return None if parts is None else self.key(parts)
