"""For scripts: `iter_events` (a `Subscriber` as a plain iterator) and `publish` (one event).

`iter_events` drives the subscriber on an event loop of its own in the calling
thread, one item at a time (its `last_event_id` is the subscriber's, to
persist): between two items nothing runs, so the socket is not read while
the script works on an item, as with the async API. It cannot run inside a
running event loop (async code, a notebook cell): use `async with
Subscriber(...)` there.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import httpx
import orjson

from .._topics import validate_topic, validate_type
from ._errors import ServerUnavailable
from ._http import Token, headers, is_final, refusal
from ._messages import Item
from ._subscriber import DEFAULT_TIMEOUT_S, Subscriber

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _signature_of(model: Callable[_P, Any]) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
    """Give the decorated function `model`'s parameters, for type checkers and `help()`."""

    def decorate(function: Callable[..., _R]) -> Callable[_P, _R]:
        function.__signature__ = inspect.signature(model).replace(  # type: ignore[attr-defined]
            return_annotation=inspect.signature(function).return_annotation
        )
        return function

    return decorate


class Events(Iterator[Item]):
    """What `iter_events` returns: the items, and the subscriber's `last_event_id` and `reconnects`."""

    def __init__(self, sub: Subscriber) -> None:
        self.subscriber = sub
        self._items: Generator[Item, None, None] = _iterate(sub)

    @property
    def last_event_id(self) -> str | None:
        """The position to persist and resume from (`Subscriber.last_event_id`)."""
        return self.subscriber.last_event_id

    @property
    def reconnects(self) -> int:
        return self.subscriber.reconnects

    def __iter__(self) -> Events:
        return self

    def __next__(self) -> Item:
        return next(self._items)

    def close(self) -> None:
        """Close the stream (also done by leaving the loop, or at the end)."""
        self._items.close()


@_signature_of(Subscriber)
def iter_events(*args: Any, **kwargs: Any) -> Events:
    """The items of `Subscriber(*args, **kwargs)` as a synchronous iterator, for scripts.

    Takes the same arguments as `Subscriber` and raises what it raises. The
    stream is open when the first item is asked for; leaving the loop (or
    closing the iterator) closes it. Ctrl-C raises `KeyboardInterrupt` as usual.
    Its `last_event_id` is the position to persist (see `Subscriber`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("iter_events() is for synchronous code; in async code use `async with Subscriber(...)`")
    return Events(Subscriber(*args, **kwargs))


async def _next(sub: Subscriber) -> Item | None:
    """The next item, or None at the end.

    Not `anext(sub)` itself: a Ctrl-C that lands inside `Runner.run` after it made the task
    leaves the task behind, which `aclose()` then ends; ended by `StopAsyncIteration`,
    asyncio would print it as a "Task exception was never retrieved" traceback.
    """
    try:
        return await anext(sub)
    except StopAsyncIteration:
        return None


def _iterate(sub: Subscriber) -> Generator[Item, None, None]:
    with asyncio.Runner() as runner:
        try:
            runner.run(sub.__aenter__())
            while (item := runner.run(_next(sub))) is not None:
                yield item
        finally:
            runner.run(sub.aclose())


@dataclass(frozen=True, slots=True)
class Published:
    """The server's answer to a publish: the event's id, its topic and its publish time (Unix ms)."""

    id: str
    topic: str
    ts: int


def publish(
    url: str,
    topic: str,
    data: Any,
    *,
    type: str | None = None,
    token: str | Callable[[], str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Published:
    """Publish one event (`data`, any JSON value) on `topic` at the server `url`; return its id.

    `type` names the event (default `message`). `token` is a string or a
    callable returning one (called again once on a 401). Raises
    `RequestRefused` for a 4xx (`Unauthorized`, `Forbidden`; an invalid topic
    or type raises `InvalidTopic`/`InvalidEventType` before sending) and
    `ServerUnavailable` when the server cannot be reached or answers 5xx; it
    does not retry, so an event is published at most once.
    """
    validate_topic(topic)
    if type is not None:
        validate_type(type)
    body = orjson.dumps(data)
    target = f"{url.rstrip('/')}/topics/{topic}/events"
    params = {"type": type} if type is not None else None
    credentials = Token(token)
    refreshed = False
    while True:
        request_headers = headers(credentials.get_sync(), "application/json")
        request_headers["Content-Type"] = "application/json"
        try:
            response = httpx.post(target, content=body, params=params, headers=request_headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {target}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 401 and not refreshed and credentials.refresh_sync():
            refreshed = True
            continue
        break
    if response.status_code == 201:
        answer = response.json()
        return Published(answer["id"], answer["topic"], answer["ts"])
    error = refusal(target, response, response.content)
    if is_final(response.status_code):
        raise error
    raise ServerUnavailable(str(error))
