"""What crosses the wire to Redis, shared by the single-Redis and the cluster backend.

The publish script's batch arguments, the events of a published message (the script's
`PUBLISH`/`SPUBLISH` payload, see `_redis_scripts`), and the mapping of redis-py's errors
to ours (the only place that knows redis-py's error tree).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from redis.exceptions import (
    ClusterError,
    ConnectionError as RedisConnectionError,
    RedisClusterException,
    RedisError,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

from .._event import Event, join_lines
from .._exceptions import BackendError, BackendUnavailable
from .._ids import topic_tag


@contextlib.contextmanager
def map_redis_errors() -> Iterator[None]:
    """Translate redis-py errors into ours; the only place that knows redis-py's error tree."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BackendUnavailable(f"Redis is unreachable: {exc}") from exc
    except (ClusterError, TryAgainError, RedisClusterException) as exc:  # a cluster failing over or resharding
        raise BackendUnavailable(f"Redis Cluster cannot serve this now: {exc}") from exc
    except RedisError as exc:
        raise BackendError(f"Redis error: {exc}") from exc


def stale_connection(exc: BaseException) -> bool:
    """Whether a command failed on a pooled connection that Redis had closed (it restarted, or
    dropped idle clients), not on connecting: then a fresh connection may well work at once."""
    cause = exc.__cause__
    return isinstance(cause, RedisConnectionError) and "connecting to" not in str(cause)


def batch_args(items: Sequence[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A batch's types (one, or one per event joined by newlines) and data joined by newlines, for the scripts."""
    blob = join_lines([data for _, data in items])
    types = {event_type for event_type, _ in items}
    return (types.pop() if len(types) == 1 else "\n".join([event_type for event_type, _ in items])), blob


def decode_payload(topic: str, payload: bytes) -> list[Event]:
    """The events of one message: a head line `<epoch> <first seq> <ms>`, then `<type> <data>` lines."""
    head, _, body = payload.partition(b"\n")
    raw_epoch, raw_first, raw_ms = head.split(b" ")
    epoch = raw_epoch.decode()
    seq = int(raw_first)
    ms = int(raw_ms)
    tag = topic_tag(topic)
    events = []
    for line in body.split(b"\n"):
        event_type, _, data = line.partition(b" ")
        events.append(Event(topic, f"{tag}.{epoch}.{seq}", event_type.decode(), data, ms, seq=seq, epoch=epoch))
        seq += 1
    return events


def batch_events(topic: str, epoch: str, first: int, ms: int, items: Sequence[tuple[str, bytes]]) -> list[Event]:
    tag = topic_tag(topic)
    return [
        Event(topic, f"{tag}.{epoch}.{first + i}", t, d, ms, seq=first + i, epoch=epoch)
        for i, (t, d) in enumerate(items)
    ]
