"""Deadline helpers: every wait in a test ends, and a failed wait says what it saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_TIMEOUT_S = 10.0


async def eventually(
    predicate: Callable[[], Any], *, within: float = DEFAULT_TIMEOUT_S, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value; fail with the last value at the deadline."""
    timeout = within
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"condition not met within {timeout}s{' (' + what + ')' if what else ''}; last value: {last!r}"
            )
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.02, what: str = ""
) -> Any:
    """`eventually` for code outside an event loop (fixtures, threads)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"condition not met within {timeout}s{' (' + what + ')' if what else ''}; last value: {last!r}"
            )
        time.sleep(interval)
