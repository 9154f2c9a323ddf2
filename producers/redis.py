"""RedisTarget: publish straight into Redis, through the server's own atomic path.

For producers that live next to Redis. Each batch goes through
`broadcaster.backends.redis.RedisBackend.publish`, the same Lua script the
server runs (history append, trimming and PUBLISH in one step), so subscribers
of every server process on that Redis receive the events, and resume and
history work exactly as for events published over HTTP.

The history settings must match the servers' (`--redis-prefix`, `--history-size`,
`--history-ttl-s`, `--max-event-bytes`): they are arguments, with the server's
defaults; this class never reads the environment. `python -m producers` takes
them as the same flags or `BROADCASTER_*` variables as `broadcaster serve`.
"""

from __future__ import annotations

from typing import Any

from broadcaster import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL_S,
    DEFAULT_REDIS_PREFIX,
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidLine,
    Settings,
    backend_from_url,
    json_data,
)

from ._base import Backoff, Target, safe_url
from ._exceptions import InvalidData, TargetConfigError, TargetRejected
from ._targets import REDIS_SCHEMES


class RedisTarget(Target):
    """Publish into Redis like a server would: `async with RedisTarget("redis://127.0.0.1:6379/0") as target:`.

    `prefix`, `history_size` and `history_ttl_s` must be the server's `redis_prefix`,
    `history_size` and `history_ttl_s` (the defaults are the server's defaults), and
    `max_event_bytes` its `max_event_bytes`. Events are validated as JSON here (no server
    stands in between). See `Target` for the buffer, overflow and retry options. Raises
    `TargetConfigError` for a bad URL or setting.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl_s: float = DEFAULT_HISTORY_TTL_S,
        **options: Any,
    ) -> None:
        if not url.startswith(REDIS_SCHEMES):
            raise TargetConfigError(f"RedisTarget needs a redis://, rediss:// or unix:// URL, got {safe_url(url)!r}")
        try:
            # The server's own rules for these settings, and the server's own backend.
            settings = Settings(redis_prefix=prefix, history_size=history_size, history_ttl_s=history_ttl_s)
            self._backend = backend_from_url(url, settings)
        except ConfigError as exc:
            raise TargetConfigError(str(exc)) from None
        super().__init__(**options)
        self.url = url
        self.name = f"RedisTarget({safe_url(url)})"

    async def _open(self) -> None:
        await self._backend.__aenter__()

    async def _close(self) -> None:
        await self._backend.aclose()

    async def publish(self, topic: str, data: bytes) -> None:
        """`Target.publish`, after the server's own check of a JSON body (`json_data`): valid JSON, put on one line."""
        try:
            checked = json_data(data, self.max_event_bytes, "event data")
        except InvalidLine as exc:
            raise InvalidData(str(exc)) from None
        # Empty data goes on to `Target.publish`, which names that mistake.
        await super().publish(topic, data if checked is None else checked)

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
