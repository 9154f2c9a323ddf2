"""Settings: one frozen dataclass, filled from defaults, `BROADCASTER_*` variables and CLI flags.

Every field is a setting with the same name everywhere: `queue_size` is the
`--queue-size` flag and the `BROADCASTER_QUEUE_SIZE` variable. The help text of
each field feeds the CLI and the settings table of the README.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import ConfigError
from ._types import OverflowPolicy

ENV_PREFIX = "BROADCASTER_"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
DEFAULT_SEND_TIMEOUT_S = 10.0
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
DEFAULT_HISTORY_SIZE = 1000
DEFAULT_HISTORY_TTL_S = 3600.0
DEFAULT_RETRY_MS = 3000
DEFAULT_MAX_TOPICS_PER_STREAM = 64
DEFAULT_SHUTDOWN_GRACE_S = 5.0
DEFAULT_REDIS_PREFIX = "broadcaster:"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    """Server settings. Build with `Settings(...)`, `Settings.from_env()` or `settings.replace(...)`.

    Raises `ConfigError` (a `ValueError`) on any invalid value.
    """

    host: str = _setting(DEFAULT_HOST, "address to listen on")
    port: int = _setting(DEFAULT_PORT, "TCP port to listen on")
    redis_url: str | None = _setting(None, "Redis URL (redis:// or rediss://); unset: in-memory backend, one process")
    workers: int = _setting(1, "server processes (more than 1 needs Redis)")
    heartbeat_s: float = _setting(DEFAULT_HEARTBEAT_S, "seconds between keepalives on an idle stream")
    queue_size: int = _setting(DEFAULT_QUEUE_SIZE, "default per-subscriber queue length (events)")
    max_queue_size: int = _setting(DEFAULT_MAX_QUEUE_SIZE, "largest ?queue= a client may ask for")
    queue_bytes: int = _setting(DEFAULT_QUEUE_BYTES, "per-subscriber queue cap in bytes of event data")
    overflow: OverflowPolicy = _setting(OverflowPolicy.DISCONNECT, "default overflow policy of a full queue")
    send_timeout_s: float = _setting(DEFAULT_SEND_TIMEOUT_S, "close a stream whose socket takes nothing this long")
    coalesce_ms: float = _setting(
        0.0, "hold deliveries up to this many ms to send each subscriber one write per window (less CPU, more latency)"
    )
    max_event_bytes: int = _setting(DEFAULT_MAX_EVENT_BYTES, "largest serialised event data (and ingest line)")
    max_body_bytes: int = _setting(DEFAULT_MAX_BODY_BYTES, "largest streamed ingest body or upload")
    history_size: int = _setting(DEFAULT_HISTORY_SIZE, "events retained per topic for resume and history")
    history_ttl_s: float = _setting(DEFAULT_HISTORY_TTL_S, "seconds an event stays in the retained history")
    retry_ms: int = _setting(
        DEFAULT_RETRY_MS, "SSE reconnect hint in ms; each stream gets it +0-50% (+0-100% in a shutdown message)"
    )
    max_topics_per_stream: int = _setting(DEFAULT_MAX_TOPICS_PER_STREAM, "topics and patterns one stream may name")
    shutdown_grace_s: float = _setting(DEFAULT_SHUTDOWN_GRACE_S, "seconds streams get to end on shutdown")
    redis_prefix: str = _setting(DEFAULT_REDIS_PREFIX, "prefix of every Redis key and channel")
    log_level: str = _setting("info", "log level: debug, info, warning, error")

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "overflow", OverflowPolicy(self.overflow))
        except ValueError:
            raise ConfigError(_choices("overflow", self.overflow, OverflowPolicy)) from None
        positive = ("port", "workers", "queue_size", "max_queue_size", "queue_bytes", "max_event_bytes") + (
            "max_body_bytes",
            "history_size",
            "max_topics_per_stream",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("heartbeat_s", "send_timeout_s", "history_ttl_s"):
            # `not 0 < x < inf` also refuses nan; an infinite ttl would overflow the backend's ms arithmetic.
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be a finite number greater than 0, got {getattr(self, name)!r}")
        if not 0 <= self.coalesce_ms <= 1000:
            raise ConfigError(f"coalesce_ms must be between 0 and 1000, got {self.coalesce_ms!r}")
        if not 0 <= self.shutdown_grace_s < math.inf:
            raise ConfigError(f"shutdown_grace_s must be a finite number, at least 0, got {self.shutdown_grace_s!r}")
        if self.retry_ms < 0:
            raise ConfigError(f"retry_ms must not be negative, got {self.retry_ms!r}")
        if self.queue_bytes < self.max_event_bytes:
            raise ConfigError(
                f"queue_bytes ({self.queue_bytes}) must be at least max_event_bytes ({self.max_event_bytes}): "
                "a queue that cannot hold one event would evict every subscriber"
            )
        if self.queue_size > self.max_queue_size:
            raise ConfigError(f"queue_size ({self.queue_size}) must not exceed max_queue_size ({self.max_queue_size})")
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, got {self.port}")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"redis_url must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        if self.workers > 1 and self.redis_url is None:
            raise ConfigError(
                "workers > 1 needs a Redis URL (--redis-url or BROADCASTER_REDIS_URL): "
                "the in-memory backend cannot share events between processes"
            )
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")

    @property
    def backend_url(self) -> str:
        """The URL `backend_from_url` gets: the Redis URL, or `memory://`."""
        return self.redis_url or "memory://"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `BROADCASTER_*` variables, then `overrides` (None values are ignored)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = parse_value(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The fields of `Settings`, in declaration order (for the CLI and docs)."""
    return list(dataclasses.fields(Settings))


def parse_value(name: str, raw: str, source: str | None = None) -> Any:
    """Convert the text of a setting to the field's type; `source` names where it came from in errors.

    `source` defaults to the setting's environment variable; the CLI passes its flag.
    """
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == name)
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, OverflowPolicy):
            return OverflowPolicy(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        if isinstance(default, OverflowPolicy):
            raise ConfigError(_choices(name, raw, OverflowPolicy)) from None
        where = source or f"{ENV_PREFIX}{name.upper()}"
        raise ConfigError(f"{where}: {raw!r} is not a valid {type(default).__name__}") from None
    return raw


def _choices(name: str, value: object, enum_type: type[OverflowPolicy]) -> str:
    allowed = ", ".join(m.value for m in enum_type)
    return f"{name} must be one of {allowed}; got {value!r}"


def settings_markdown() -> str:
    """The README's settings table, generated from the fields (a test keeps the README in sync)."""
    rows = ["| flag | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for f in setting_fields():
        default = "unset" if f.default is None else f"`{f.default}`"
        flag = "--" + f.name.replace("_", "-")
        rows.append(f"| `{flag}` | `{ENV_PREFIX}{f.name.upper()}` | {default} | {f.metadata['help']} |")
    return "\n".join(rows)
