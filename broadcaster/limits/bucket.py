"""Token buckets: a rate with a burst, one per client, kept in a map that cannot grow without bound.

A bucket holds up to `burst` tokens and gains `rate` tokens a second. Taking
`n` tokens either succeeds at once or says how long until it would. `reserve`
takes them in any case, going into debt, and says how long the caller should
wait before acting: that is how a streamed publish is slowed down (its reads
pause) instead of refused. Time is passed in (`now`, monotonic seconds), so the
arithmetic is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Hashable


class TokenBucket:
    """`rate` tokens a second, at most `burst` held; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got rate={rate!r}, burst={burst!r}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, n: float, now: float) -> float:
        """Take `n` tokens if they are there and return 0.0; else take nothing and return the seconds to wait."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate

    def reserve(self, n: float, now: float) -> float:
        """Take `n` tokens now, into debt if need be; return the seconds to wait before using them."""
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (it is then the same as a new one)."""
        self._refill(now)
        return self.tokens >= self.burst


class KeyedBuckets:
    """One `TokenBucket` per key (a client), created on first use.

    A full bucket is the same as a missing one, so when the map passes
    `prune_at` entries the full ones are dropped; if it is still over
    `max_keys` (many clients, all in debt), the oldest entries go, which at
    worst gives those clients a fresh burst.
    """

    def __init__(self, rate: float, burst: float, *, prune_at: int = 10_000, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.prune_at = prune_at
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: Hashable, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.prune_at:
                self.prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def prune(self, now: float) -> None:
        """Drop every full bucket; then, while over `max_keys`, the oldest ones."""
        buckets = self._buckets
        for key in [k for k, b in buckets.items() if b.full(now)]:
            del buckets[key]
        excess = len(buckets) - self.max_keys + 1
        if excess > 0:
            for key in list(buckets)[:excess]:
                del buckets[key]
