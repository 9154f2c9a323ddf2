"""Admitting new streams at a bounded rate, so that a reconnect storm cannot starve the connected ones.

After a restart or a network blip every client comes back at once. Opening a
stream costs far more than keeping one (a request parse, a subscription, a
replay from history), so new streams are admitted through a token bucket of
`rate` a second (with a `burst`); the others are told to come back later.
Telling them all "in 2 seconds" would bring the storm back in 2 seconds, so
the hint is spread: each refusal joins a virtual backlog that drains at
`rate`, and gets a `Retry-After` drawn uniformly between 1 second and the time
that backlog needs, so the refused clients return spread out at about the
admission rate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from .bucket import TokenBucket

#: The longest `Retry-After` ever suggested, whatever the backlog.
MAX_RETRY_AFTER_S = 60


class StormGate:
    """`admit(now)`: None when admitted, else the seconds (an int >= 1) for `Retry-After`."""

    def __init__(
        self, rate: float, burst: float, now: float, *, uniform: Callable[[float, float], float] | None = None
    ):
        self.rate = rate
        self.bucket = TokenBucket(rate, burst, now)
        self.backlog = 0.0
        self.stamp = now
        self.refused = 0
        self._uniform = uniform or random.uniform

    def admit(self, now: float) -> int | None:
        if self.bucket.take(1, now) == 0.0:
            return None
        self.refused += 1
        self.backlog = max(0.0, self.backlog - (now - self.stamp) * self.rate) + 1
        self.stamp = now
        spread = min(float(MAX_RETRY_AFTER_S), 1.0 + self.backlog / self.rate)
        return max(1, min(MAX_RETRY_AFTER_S, math.floor(self._uniform(1.0, spread + 1.0))))
