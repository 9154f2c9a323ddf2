"""What the subscriber and `publish` share: tokens, request headers, and reading a refusal.

A token is a string, or a callable (sync or async) that returns one. A callable
is called for the first request and again, once, when the server answers 401
or ends a stream with `token_expired`; its value is never logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from .. import __version__
from ._errors import Forbidden, RequestRefused, Unauthorized

#: A token, or a callable that returns a fresh one (it may be a coroutine function).
TokenSource = str | Callable[[], str | Awaitable[str]]

USER_AGENT = f"broadcaster-client/{__version__}"
#: The most of an error body that is read (error bodies are small JSON objects).
MAX_ERROR_BODY = 64 * 1024


class Token:
    """The current token of a client; `refresh()` asks a callable source for a new one."""

    def __init__(self, source: TokenSource | None) -> None:
        if source is not None and not isinstance(source, str) and not callable(source):
            raise TypeError(f"token must be a string or a callable returning one, got {type(source).__name__}")
        self.source = source
        self._value: str | None = source if isinstance(source, str) else None

    @property
    def refreshable(self) -> bool:
        return callable(self.source)

    async def get(self) -> str | None:
        """The token to send (a callable is called the first time)."""
        if self._value is None and callable(self.source):
            await self.refresh()
        return self._value

    async def refresh(self) -> bool:
        """Call a callable source for a new token; False if the source is a fixed string (or none)."""
        if not callable(self.source):
            return False
        value: Any = self.source()
        if inspect.isawaitable(value):
            value = await value
        self._value = _checked(value)
        return True

    def get_sync(self) -> str | None:
        """`get()` for synchronous callers; an async callable is refused with a clear error."""
        if self._value is None and callable(self.source):
            self.refresh_sync()
        return self._value

    def refresh_sync(self) -> bool:
        if not callable(self.source):
            return False
        value: Any = self.source()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it so that Python does not warn
            raise TypeError("a synchronous call needs a token callable that is not async")
        self._value = _checked(value)
        return True


def _checked(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"the token callable must return a non-empty string, got {type(value).__name__}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError("the token callable returned a value with CR, LF or NUL")
    return value


def headers(token: str | None, accept: str) -> dict[str, str]:
    out = {"Accept": accept, "User-Agent": USER_AGENT}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    return out


def refusal(url: str, response: httpx.Response, body: bytes) -> RequestRefused:
    """The exception for a 4xx answer, with the server's error code and message when it sent its JSON error."""
    code, message = f"http_{response.status_code}", body[:200].decode("utf-8", "replace") or response.reason_phrase
    try:
        error = orjson.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    cls = {401: Unauthorized, 403: Forbidden}.get(response.status_code, RequestRefused)
    return cls(url, response.status_code, code, message)


def is_final(status: int) -> bool:
    """Whether a status ends the attempts: a 4xx other than 408 (timeout) and 429 (too many requests)."""
    return 400 <= status < 500 and status not in (408, 429)


async def read_bounded(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """At most `limit` bytes of a (streamed) response body; the rest is left unread."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])
