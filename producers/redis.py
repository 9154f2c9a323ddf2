"""RedisTarget: publish straight into Redis, through the server's own atomic path.

For producers that live next to Redis. Each batch goes through
`broadcaster.backends.redis.RedisBackend.publish`, the same Lua script the
server runs (history append, trimming and PUBLISH in one step), so subscribers
of every server process on that Redis receive the events, and resume and
history work exactly as for events published over HTTP.

The history settings must match the servers': by default they come from the
same `BROADCASTER_*` environment variables (`BROADCASTER_REDIS_PREFIX`,
`BROADCASTER_HISTORY_SIZE`, `BROADCASTER_HISTORY_TTL_S`, `BROADCASTER_MAX_EVENT_BYTES`).
"""

from __future__ import annotations

from typing import Any

import orjson

from broadcaster import BackendError, BackendUnavailable, ConfigError, Settings
from broadcaster.backends.redis import RedisBackend

from ._base import Backoff, Target, safe_url
from ._exceptions import InvalidData, TargetConfigError, TargetRejected


class RedisTarget(Target):
    """Publish into Redis like a server would: `async with RedisTarget("redis://127.0.0.1:6379/0") as target:`.

    Events are validated as JSON here (no server stands in between). See `Target` for
    the buffer, overflow and retry options. Raises `TargetConfigError` for a bad URL or setting.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        history_size: int | None = None,
        history_ttl_s: float | None = None,
        **options: Any,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise TargetConfigError(f"RedisTarget needs a redis://, rediss:// or unix:// URL, got {safe_url(url)!r}")
        try:
            settings = Settings.from_env(redis_prefix=prefix, history_size=history_size, history_ttl_s=history_ttl_s)
        except ConfigError as exc:
            raise TargetConfigError(str(exc)) from None
        options.setdefault("max_event_bytes", settings.max_event_bytes)
        super().__init__(**options)
        self.url = url
        self.name = f"RedisTarget({safe_url(url)})"
        self._backend = RedisBackend(
            url,
            prefix=settings.redis_prefix,
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
        )

    async def _open(self) -> None:
        await self._backend.__aenter__()

    async def _close(self) -> None:
        await self._backend.aclose()

    async def publish(self, topic: str, data: bytes) -> None:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidData(f"event data is not JSON: {exc}") from None
        if b"\n" in data or b"\r" in data:
            data = orjson.dumps(value)  # one line, as the server makes a POSTed body (SSE frames need it)
        await super().publish(topic, data)

    async def _send(self) -> None:
        where = safe_url(self.url)
        while (topic := await self._next_topic()) is not None:
            await self._linger()
            lines = self._take(topic, self.batch)
            items = [(self.type, data) for data in lines]
            backoff = Backoff(self.retry_for_s, stats=self.stats)
            while True:
                try:
                    await self._backend.publish(topic, items)
                    break
                except BackendUnavailable as exc:
                    await backoff.wait(f"cannot publish to {where}: {exc}")
                except BackendError as exc:
                    raise TargetRejected(f"{where} refused the publish on {topic!r}: {exc}") from exc
            self.stats.sent += len(lines)
            self._done(len(lines))
