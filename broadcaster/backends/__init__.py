"""Backends: the transport between processes. `memory://` (default), `redis://`/`rediss://`, `redis+cluster://`.

Optional dependencies are imported lazily, per URL scheme, so importing
`broadcaster` never imports redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import ConfigError
from .base import RESYNC, Backend, BackendMessage, HistoryPage, SupportsHealth, TopicInfo

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["RESYNC", "Backend", "BackendMessage", "HistoryPage", "SupportsHealth", "TopicInfo", "backend_from_url"]

SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def backend_from_url(url: str, settings: Settings | None = None) -> Backend:
    """Create the backend that `url` names; retention settings come from `settings`.

    Raises `ConfigError` for an unknown scheme.
    """
    from .._config import Settings

    settings = settings or Settings()
    if url.startswith("memory://"):
        from .memory import MemoryBackend

        return MemoryBackend(history_size=settings.history_size, history_ttl_s=settings.history_ttl_s)
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        from .cluster import ClusterBackend

        return ClusterBackend(
            url,
            prefix=settings.redis_prefix,
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
            wait_replicas=settings.redis_wait_replicas,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBackend

        return RedisBackend(
            url,
            prefix=settings.redis_prefix,
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
        )
    raise ConfigError(f"unknown backend URL {url!r}: supported schemes are {', '.join(SCHEMES)}")
