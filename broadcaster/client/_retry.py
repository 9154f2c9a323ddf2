"""When to try again: exponential backoff with full jitter, and the server's own hints.

A server that restarts loses every client at once; if they all came back after
the same delay they would arrive as one wave. So every delay the client picks
itself is drawn at random ("full jitter": uniform between 0 and the exponential
bound), and a hint shared by many clients (`Retry-After`, whole seconds) gets
up to 25 % on top. Hints the server already randomised per stream (the
`shutdown` message's `retry_ms`, the SSE `retry:` field) are taken as they are.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

#: Longest wait a server's hint can impose (a hint of a day is a misconfiguration, not a plan).
MAX_HINT_S = 300.0
#: Jitter added to a `Retry-After`, as a fraction of it.
RETRY_AFTER_JITTER = 0.25


@dataclass(frozen=True, slots=True)
class Retry:
    """How a `Subscriber` waits between connection attempts.

    The n-th attempt in a row (n from 0) waits a uniform random time in
    `[0, min(cap_s, initial_s * 2**n)]`, or what the server asked for. After a
    connection that delivered something, n starts again from 0.
    `give_up_after_s` (default: never) raises `ServerUnavailable` once attempts
    have failed for that long.
    """

    initial_s: float = 0.5
    cap_s: float = 15.0
    give_up_after_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"Retry needs 0 < initial_s <= cap_s, got {self.initial_s!r} and {self.cap_s!r}")
        if self.give_up_after_s is not None and not self.give_up_after_s > 0:
            raise ValueError(f"give_up_after_s must be positive or None, got {self.give_up_after_s!r}")

    def backoff_s(self, attempt: int, floor_s: float = 0.0) -> float:
        """The wait before attempt `attempt` (0 is the first retry): full jitter, at least `floor_s`."""
        bound = min(self.cap_s, self.initial_s * 2.0 ** min(attempt, 64))
        return max(floor_s, random.uniform(0.0, bound))


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date), jittered; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    return min(MAX_HINT_S, seconds * random.uniform(1.0, 1.0 + RETRY_AFTER_JITTER))


def hint_s(retry_ms: int | None) -> float | None:
    """A server's per-stream reconnect hint in seconds (bounded), or None."""
    if retry_ms is None or retry_ms < 0:
        return None
    return min(MAX_HINT_S, retry_ms / 1000)
