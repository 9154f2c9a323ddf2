"""Settings: one frozen dataclass, filled from defaults, `BROADCASTER_*` variables and CLI flags.

Every field is a setting with the same name everywhere: `queue_size` is the
`--queue-size` flag and the `BROADCASTER_QUEUE_SIZE` variable. The help text of
each field feeds the CLI and the settings table of the README.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import ConfigError
from ._topics import validate_selector
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
DEFAULT_MAX_STREAMS_PER_CLIENT = 1000
DEFAULT_ADMIT_RATE = 1000.0
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_IDLE_TIMEOUT_S = 60.0
DEFAULT_BACKEND_WAIT_S = 60.0

_LIST_FIELDS = ("auth_public_key", "anonymous_subscribe", "cors_origins", "archive_topics")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+\Z")


#: A rule for one setting's value: None if it holds, else what is wrong ("must be at least 1, got 0").
Check = Callable[[Any], str | None]


def _setting(
    default: Any, help: str, check: Check | None = None, *, secret: bool = False, nargs: str | None = None
) -> Any:
    # A secret stays out of the dataclass repr, so a logged Settings never shows it. `nargs="+"`
    # lets a list setting's flag take several values (`--archive-topics A B`, as well as `A,B`).
    return field(default=default, metadata={"help": help, "check": check, "nargs": nargs}, repr=not secret)


def _at_least(low: float, high: float = math.inf) -> Check:
    def check(value: Any) -> str | None:
        if low <= value <= high:  # also refuses nan
            return None
        return (
            f"must be at least {low}, got {value!r}"
            if high == math.inf
            else f"must be between {low} and {high}, got {value!r}"
        )

    return check


def _finite(*, above_zero: bool) -> Check:
    def check(value: Any) -> str | None:
        # `not 0 < x < inf` also refuses nan; an infinite ttl would overflow the backend's ms arithmetic.
        if (0 < value < math.inf) if above_zero else (0 <= value < math.inf):
            return None
        return f"must be a finite number {'greater than 0' if above_zero else 'at least 0'}, got {value!r}"

    return check


def _redis_url(value: Any) -> str | None:
    if value is None or value.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")):
        return None
    return f"must start with redis://, rediss://, unix:// or redis+cluster:// (rediss+cluster://), got {value!r}"


def _selectors(value: Any) -> str | None:
    for pattern in _as_list(value):
        try:
            validate_selector(pattern)
        except ValueError as exc:
            return f"has an invalid entry: {exc}"
    return None


def _origins(value: Any) -> str | None:
    origins = _as_list(value)
    for origin in origins:
        if origin != "*" and _ORIGIN_RE.match(origin) is None:
            return (
                f"has {origin[:80]!r}, which is not an origin: scheme://host[:port], no path "
                "(e.g. https://dash.example.com)"
            )
    if "*" in origins and len(origins) > 1:
        return "has * and more: * allows every origin; list origins or give * alone"
    return None


def _as_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """A list setting from a comma-separated string (flag, variable) or any iterable of strings."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


def format_value(value: object) -> str:
    """A setting's value as its flag or variable would spell it (the inverse of `parse_value`)."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, OverflowPolicy):
        return value.value
    return str(value)


def _archive_fsync(value: Any) -> str | None:
    from .archive._options import parse_fsync  # the archive's own parser: one rule

    try:
        parse_fsync(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _log_level(value: Any) -> str | None:
    if value.lower() in ("debug", "info", "warning", "error", "critical"):
        return None
    return f"must be debug, info, warning or error, got {value!r}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Server settings. Build with `Settings(...)`, `Settings.from_env()` or `settings.replace(...)`.

    Raises `ConfigError` (a `ValueError`) on any invalid value.
    """

    host: str = _setting(DEFAULT_HOST, "address to listen on")
    port: int = _setting(DEFAULT_PORT, "TCP port to listen on", _at_least(1, 65535))
    redis_url: str | None = _setting(
        None,
        "Redis URL (redis:// or rediss://; redis+cluster://HOST:PORT[,...] for Redis Cluster); unset: in-memory",
        _redis_url,
    )
    workers: int = _setting(1, "server processes (more than 1 needs Redis)", _at_least(1))
    heartbeat_s: float = _setting(
        DEFAULT_HEARTBEAT_S, "seconds between keepalives on an idle stream", _finite(above_zero=True)
    )
    queue_size: int = _setting(DEFAULT_QUEUE_SIZE, "default per-subscriber queue length (events)", _at_least(1))
    max_queue_size: int = _setting(DEFAULT_MAX_QUEUE_SIZE, "largest ?queue= a client may ask for", _at_least(1))
    queue_bytes: int = _setting(DEFAULT_QUEUE_BYTES, "per-subscriber queue cap in bytes of event data", _at_least(1))
    overflow: OverflowPolicy = _setting(OverflowPolicy.DISCONNECT, "default overflow policy of a full queue")
    send_timeout_s: float = _setting(
        DEFAULT_SEND_TIMEOUT_S, "close a stream whose socket takes nothing this long", _finite(above_zero=True)
    )
    coalesce_ms: float = _setting(
        0.0,
        "hold deliveries up to this many ms to send each subscriber one write per window (less CPU, more latency)",
        _at_least(0, 1000),
    )
    max_event_bytes: int = _setting(
        DEFAULT_MAX_EVENT_BYTES, "largest serialised event data (and ingest line)", _at_least(1)
    )
    max_body_bytes: int = _setting(DEFAULT_MAX_BODY_BYTES, "largest streamed ingest body or upload", _at_least(1))
    history_size: int = _setting(DEFAULT_HISTORY_SIZE, "events retained per topic for resume and history", _at_least(1))
    history_ttl_s: float = _setting(
        DEFAULT_HISTORY_TTL_S, "seconds an event stays in the retained history", _finite(above_zero=True)
    )
    retry_ms: int = _setting(
        DEFAULT_RETRY_MS,
        "SSE reconnect hint in ms; each stream gets it +0-50% (+0-100% in a shutdown message)",
        _at_least(0),
    )
    max_topics_per_stream: int = _setting(
        DEFAULT_MAX_TOPICS_PER_STREAM, "topics and patterns one stream may name", _at_least(1)
    )
    shutdown_grace_s: float = _setting(
        DEFAULT_SHUTDOWN_GRACE_S, "seconds streams get to end on shutdown", _finite(above_zero=False)
    )
    backend_wait_s: float = _setting(
        DEFAULT_BACKEND_WAIT_S,
        "seconds a stream opened while the backend is unreachable waits for it (keepalives), then ends with shutdown",
        _finite(above_zero=True),
    )
    redis_prefix: str = _setting(DEFAULT_REDIS_PREFIX, "prefix of every Redis key and channel")
    redis_wait_replicas: int = _setting(
        0, "Redis Cluster: replicas that must have a publish before it is answered (WAIT); 0: none", _at_least(0)
    )
    log_level: str = _setting("info", "log level: debug, info, warning, error", _log_level)
    # Access control (docs/security.md). Any key turns it on; off, everyone may publish and subscribe.
    auth_secret: str | None = _setting(
        None, "HS256 secret of the tokens (at least 32 bytes); turns auth on", secret=True
    )
    auth_secret_file: str | None = _setting(None, "file holding the HS256 secret (instead of --auth-secret)")
    auth_previous_secret: str | None = _setting(
        None, "HS256 secret still accepted after a rotation (tokens it signed stay valid)", secret=True
    )
    auth_public_key: tuple[str, ...] = _setting(
        (), "PEM public key files of the tokens (RS256, ES256 or EdDSA), comma-separated; turns auth on"
    )
    auth_audience: str | None = _setting(None, "the `aud` a token must carry (checked when set)")
    auth_issuer: str | None = _setting(None, "the `iss` a token must carry (checked when set)")
    anonymous_subscribe: tuple[str, ...] = _setting(
        (), "topics and patterns anyone may subscribe to without a token, comma-separated", _selectors
    )
    auth_query_token: bool = _setting(False, "accept the token as ?access_token= (it then appears in URLs)")
    metrics_public: bool = _setting(False, "serve /metrics without an admin token")
    cors_origins: tuple[str, ...] = _setting(
        (),
        "origins whose pages may call the API, comma-separated, exact (https://dash.example.com); * any, no cookies",
        _origins,
    )
    # Admission and request hygiene (docs/security.md, "Hostile input").
    max_streams: int = _setting(
        0,
        "open streams per process, 503 too_many_streams past it; 0: derived from the file-descriptor limit",
        _at_least(0),
    )
    max_streams_per_client: int = _setting(
        DEFAULT_MAX_STREAMS_PER_CLIENT,
        "open streams per client (token sub, else address), 429 past it; 0: no cap",
        _at_least(0),
    )
    publish_rate: float = _setting(
        0.0, "events per second per client (token bucket), 429 rate_limited; 0: no limit", _finite(above_zero=False)
    )
    publish_burst: int = _setting(
        0, "events a client may publish at once within publish_rate; 0: one second's worth", _at_least(0)
    )
    admit_rate: float = _setting(
        DEFAULT_ADMIT_RATE,
        "new streams admitted per second (a storm gets 503, spread Retry-After); 0: no limit",
        _finite(above_zero=False),
    )
    admit_burst: int = _setting(
        0, "new streams admitted at once within admit_rate; 0: one second's worth", _at_least(0)
    )
    forwarded_allow_ips: str = _setting(
        DEFAULT_FORWARDED_ALLOW_IPS, "proxies whose X-Forwarded-For names the client (uvicorn's list: IPs, networks, *)"
    )
    header_timeout_s: float = _setting(
        DEFAULT_HEADER_TIMEOUT_S, "seconds a client has to send a whole request head", _finite(above_zero=True)
    )
    body_idle_timeout_s: float = _setting(
        DEFAULT_BODY_IDLE_TIMEOUT_S,
        "seconds a request body may stall before a 408 (send blank lines to keep one open)",
        _finite(above_zero=True),
    )

    # The archive (docs/archive.md); `archive.ArchiveOptions` reads these.
    archive_dir: str | None = _setting(
        None, "archive folder: its segments are served (read-only unless --archive-topics is set)"
    )
    archive_topics: tuple[str, ...] = _setting(
        (),
        "topics and patterns to archive, comma-separated; on serve, archived inside the server (memory backend only)",
        _selectors,
        nargs="+",
    )
    archive_segment_s: float = _setting(3600.0, "seconds of events per segment (aligned to UTC)", _at_least(1, 1e9))
    archive_segment_bytes: int = _setting(256 * 1024 * 1024, "largest segment file in bytes", _at_least(1))
    archive_fsync: str = _setting(
        "1", "fsync segments: batch (after every write), never, or every N seconds", _archive_fsync
    )
    archive_gzip: bool = _setting(False, "gzip-compress closed segments")
    archive_retention_s: float = _setting(
        0.0, "delete closed segments whose last event is older than this (0: keep)", _finite(above_zero=False)
    )
    archive_retention_bytes: int = _setting(
        0, "delete the oldest closed segments above this total (0: no limit)", _at_least(0)
    )

    def __post_init__(self) -> None:
        for name in _LIST_FIELDS:
            object.__setattr__(self, name, _as_list(getattr(self, name)))
        try:
            object.__setattr__(self, "overflow", OverflowPolicy(self.overflow))
        except ValueError:
            raise ConfigError(_choices("overflow", self.overflow, OverflowPolicy)) from None
        for f in dataclasses.fields(self):
            wrong = _wrong(f, getattr(self, f.name))
            if wrong:
                raise ConfigError(f"{f.name} {wrong}")
        # Rules between settings; each one alone is checked above.
        if self.queue_bytes < self.max_event_bytes:
            raise ConfigError(
                f"queue_bytes ({self.queue_bytes}) must be at least max_event_bytes ({self.max_event_bytes}): "
                "a queue that cannot hold one event would evict every subscriber"
            )
        if self.queue_size > self.max_queue_size:
            raise ConfigError(f"queue_size ({self.queue_size}) must not exceed max_queue_size ({self.max_queue_size})")
        if self.workers > 1 and self.redis_url is None:
            raise ConfigError(
                "workers > 1 needs a Redis URL (--redis-url or BROADCASTER_REDIS_URL): "
                "the in-memory backend cannot share events between processes"
            )
        self._check_auth()
        if self.archive_topics and not self.archive_dir:
            raise ConfigError("archive_topics needs archive_dir (--archive-dir): the folder to write to")

    @property
    def auth_enabled(self) -> bool:
        """Whether access control is on: a secret or a public key is configured."""
        return bool(self.auth_secret or self.auth_secret_file or self.auth_public_key)

    def _check_auth(self) -> None:
        if self.auth_secret and self.auth_secret_file:
            raise ConfigError("set auth_secret or auth_secret_file, not both")
        if self.auth_previous_secret and not (self.auth_secret or self.auth_secret_file):
            raise ConfigError("auth_previous_secret needs the current secret too (auth_secret or auth_secret_file)")
        if not self.auth_enabled:
            # Each of these would look like a restriction while everything is open: say so.
            for name in ("anonymous_subscribe", "auth_audience", "auth_issuer", "auth_query_token"):
                if getattr(self, name):
                    raise ConfigError(f"{name} needs auth on: set auth_secret, auth_secret_file or auth_public_key")

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
        values = env_values([f.name for f in dataclasses.fields(cls)], environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The fields of `Settings`, in declaration order (for the CLI and docs)."""
    return list(dataclasses.fields(Settings))


def env_name(name: str) -> str:
    """The environment variable of a setting: `queue_size` -> `BROADCASTER_QUEUE_SIZE`."""
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    """The command-line flag of a setting: `queue_size` -> `--queue-size`."""
    return "--" + name.replace("_", "-")


def env_values(names: list[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings among `names` that `BROADCASTER_*` variables set (empty ones are unset), parsed and checked."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in names:
        raw = environ.get(env_name(name))
        if raw is not None and raw != "":
            values[name] = parse_value(name, raw)
    return values


def parse_value(name: str, raw: str, source: str | None = None) -> Any:
    """The text of a setting as the field's type, checked by that setting's own rule.

    Raises `ConfigError` naming `source`: by default the setting's environment
    variable; the CLI passes its flag. Rules between settings are `Settings`'s.
    """
    setting = next(f for f in dataclasses.fields(Settings) if f.name == name)
    default = setting.default
    where = source or env_name(name)
    value: Any = raw
    try:
        if isinstance(default, bool):
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        elif isinstance(default, tuple):
            value = _as_list(raw)
        elif isinstance(default, OverflowPolicy):
            value = OverflowPolicy(raw)
        elif isinstance(default, int):
            value = int(raw)
        elif isinstance(default, float):
            value = float(raw)
    except ValueError:
        if isinstance(default, OverflowPolicy):
            raise ConfigError(_choices(where, raw, OverflowPolicy)) from None
        raise ConfigError(f"{where}: {raw!r} is not a valid {type(default).__name__}") from None
    wrong = _wrong(setting, value)
    if wrong:
        raise ConfigError(f"{where} {wrong}")
    return value


def _wrong(setting: dataclasses.Field[Any], value: Any) -> str | None:
    check: Check | None = setting.metadata["check"]
    return check(value) if check is not None else None


def _choices(name: str, value: object, enum_type: type[OverflowPolicy]) -> str:
    allowed = ", ".join(m.value for m in enum_type)
    return f"{name} must be one of {allowed}; got {value!r}"


def settings_markdown() -> str:
    """The README's settings table, generated from the fields (a test keeps the README in sync)."""
    rows = ["| flag | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for f in setting_fields():
        default = "unset" if f.default is None else "empty" if f.default == () else f"`{format_value(f.default)}`"
        rows.append(f"| `{flag_name(f.name)}` | `{env_name(f.name)}` | {default} | {f.metadata['help']} |")
    return "\n".join(rows)
