"""Helpers of the client tests: bounded collection of what a Subscriber yields."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from broadcaster.client import Event, Item, Subscriber


def events(items: list[Item]) -> list[Event]:
    return [item for item in items if isinstance(item, Event)]


async def take(sub: Subscriber, until: Callable[[list[Item]], bool], *, within: float = 10.0) -> list[Item]:
    """What `sub` yields until `until(items)` holds; fails at the deadline with what it got."""
    items: list[Item] = []
    try:
        async with asyncio.timeout(within):
            async for item in sub:
                items.append(item)
                if until(items):
                    return items
    except TimeoutError:
        raise AssertionError(f"condition not met within {within}s; got {len(items)} items: {items[-5:]}") from None
    raise AssertionError(f"the subscriber stopped; got {items[-5:]}")


async def take_events(sub: Subscriber, count: int, *, within: float = 10.0) -> list[Item]:
    """What `sub` yields until `count` events came."""
    return await take(sub, lambda items: len(events(items)) >= count, within=within)
