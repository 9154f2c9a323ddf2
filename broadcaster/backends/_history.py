"""Reading a topic's history page by page, and catching a topic up after live delivery stopped.

Both are written once, over the backend protocol: the hub uses them after its backend's
reader reconnected (`RESYNC`), the cluster backend per shard channel after a failover, a
`MOVED` or a slot migration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .._event import Control, Event
from .._ids import Break, history_break
from .base import Backend, HistoryPage

#: Events per history read when paging through a topic (downloads, catch-up after an outage).
HISTORY_PAGE = 1000


async def history_pages(
    backend: Backend,
    topic: str,
    *,
    after: int | None = None,
    since_ms: int | None = None,
    limit: int | None = None,
    page_size: int = HISTORY_PAGE,
) -> AsyncIterator[HistoryPage]:
    """Every retained page of `topic` after seq `after` (from `since_ms`), oldest first, up to `limit` events.

    The first page is yielded even when empty (its `epoch` and `last` tell whether events
    after `after` were lost); the iteration ends at the newest retained event. Pages after
    the first stay in the first one's epoch: if the history changed epoch meanwhile, the
    iteration ends there. Raises `BackendUnavailable` from any page.
    """
    remaining = limit
    epoch: str | None = None
    while True:
        size = page_size if remaining is None else min(page_size, remaining)
        page = await backend.history(topic, after=after, since_ms=since_ms, limit=size)
        if epoch is not None and page.epoch != epoch:
            return
        epoch = page.epoch
        yield page
        if remaining is not None:
            remaining -= len(page.events)
        if len(page.events) < size or remaining == 0:
            return
        after = page.events[-1].seq


@dataclass(slots=True)
class Missed:
    """What a topic's subscribers missed: controls to send first (`reset`, `gap`), then events."""

    controls: list[Control] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


async def read_missed(backend: Backend, topic: str, last: Event | None, since_ms: int) -> Missed:
    """What `topic` published after `last` (the newest event delivered), or from `since_ms` if None.

    A history that was lost or replaced meanwhile (Redis restarted empty, a replica promoted
    with other data) is announced with `reset`, and all of the new history follows; one that
    went backwards in the same epoch (a replica that lagged) gets a new epoch, so that
    resumes from ids issued before it say `reset` too; events trimmed meanwhile, a `gap`.
    """
    missed = Missed()
    if last is None:
        async for page in history_pages(backend, topic, since_ms=since_ms):
            missed.events.extend(page.events)
        return missed
    replaced = False
    first_page = True
    async for page in history_pages(backend, topic, after=last.seq):
        if first_page:
            first_page = False
            broken = history_break((last.epoch, last.seq), page.epoch, page.last, _first_seq(page))
            if broken is Break.LOST or broken is Break.AHEAD:
                if broken is Break.AHEAD:
                    await backend.new_epoch(topic, last.epoch)  # it went backwards
                replaced = page.epoch is not None and broken is Break.LOST
                missed.controls.append(_reset(last, broken))
                break
            if broken is Break.TRIMMED:
                reason = "events were trimmed from history while live delivery was interrupted"
                missed.controls.append(Control("gap", {"reason": reason}))
        missed.events.extend(page.events)
    if replaced:
        # A new history began meanwhile: all of it is new to our subscribers (live repeats are dropped).
        async for page in history_pages(backend, topic):
            missed.events.extend(page.events)
    return missed


def _first_seq(page: HistoryPage) -> int | None:
    return page.events[0].seq if page.events else None


def _reset(last: Event, broken: Break) -> Control:
    """The `reset` for a history that no longer continues from `last` (lost or replaced, or gone backwards)."""
    reason = (
        "the history went backwards while live delivery was interrupted (a failover to a replica that lagged?); "
        "events after the last delivered were lost"
        if broken is Break.AHEAD
        else "the history was lost while live delivery was interrupted (the backend restarted empty or was replaced)"
    )
    return Control("reset", {"reason": reason, "last_event_id": last.id, "topics": [last.topic]})
