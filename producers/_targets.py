"""`target_from_url`: the target a URL names."""

from __future__ import annotations

from typing import Any

from ._base import Target, safe_url
from ._exceptions import TargetConfigError


def target_from_url(url: str, **options: Any) -> Target:
    """`HttpTarget` for http(s)://, `RedisTarget` for redis://, rediss://, unix://.

    `options` go to the target (`type`, `buffer`, `overflow`, `batch`, `retry_for_s`, ...).
    Raises `TargetConfigError` for any other scheme.
    """
    if url.startswith(("http://", "https://")):
        from .http import HttpTarget

        return HttpTarget(url, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisTarget

        return RedisTarget(url, **options)
    raise TargetConfigError(
        f"unknown target {safe_url(url)!r}: use http://HOST:PORT (a broadcaster server) or redis://HOST:PORT/DB"
    )
