"""Admission limits with no HTTP in them: token buckets, stream counters, storm admission, the fd limit.

`broadcaster.http.limits.admission` turns these into refusals (503/429 with
`Retry-After`) decided in the gate.
"""

from __future__ import annotations

from .bucket import KeyedBuckets, TokenBucket
from .fds import default_max_streams, fd_limits, raise_fd_limit
from .storm import StormGate
from .streams import StreamSlots, StreamTicket

__all__ = [
    "KeyedBuckets",
    "StormGate",
    "StreamSlots",
    "StreamTicket",
    "TokenBucket",
    "default_max_streams",
    "fd_limits",
    "raise_fd_limit",
]
