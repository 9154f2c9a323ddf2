"""`target_from_url`: the target a URL names."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Target, safe_url
from ._exceptions import TargetConfigError

HTTP_SCHEMES = ("http://", "https://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def target_kind(url: str) -> Literal["http", "redis"]:
    """Which target `url` names; raises `TargetConfigError` for any other scheme."""
    if url.startswith(HTTP_SCHEMES):
        return "http"
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    raise TargetConfigError(
        f"unknown target {safe_url(url)!r}: use http://HOST:PORT (a broadcaster server) or redis://HOST:PORT/DB"
    )


def target_from_url(url: str, **options: Any) -> Target:
    """`HttpTarget` for http(s)://, `RedisTarget` for redis://, rediss://, unix://.

    `options` go to the target (`type`, `buffer`, `overflow`, `batch`, `retry_for_s`, ...).
    Raises `TargetConfigError` for any other scheme.
    """
    if target_kind(url) == "http":
        from .http import HttpTarget

        return HttpTarget(url, **options)
    from .redis import RedisTarget

    return RedisTarget(url, **options)
