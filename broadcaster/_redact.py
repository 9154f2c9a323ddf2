"""`redact_url`: a URL fit for logs and messages. The one helper the server, the CLI and producers use."""

from __future__ import annotations

import re

_QUERY_SECRET_RE = re.compile(r"(?i)([?&](?:password|pass|pwd|token|secret)=)[^&#]*")


def redact_url(url: str) -> str:
    """`url` with its credentials hidden: `redis://user:pw@host/0` -> `redis://***@host/0`.

    A password in the query (`unix:///run/redis.sock?password=pw`) is hidden too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    _, at, host = authority.rpartition("@")
    if at:
        rest = f"***@{host}{slash}{path}"
    return _QUERY_SECRET_RE.sub(r"\1***", f"{scheme}{sep}{rest}")
