"""The gate: every request's admission, decided once, before either lane runs.

```
socket -> uvicorn -> ServerApp -> Gate.admit(GateRequest) -> Decision -> stream lane | FastAPI lane -> hub
                                        \\-> Refused -> JSON error (no lane runs, nothing reaches the hub)
```

`ServerApp` (`http/entry.py`) builds one `GateRequest` per HTTP request (what it asks
for: its `Action` and the topics it names) and asks the gate. The gate runs its
policies in order; each returns the decision so far, unchanged or with something
added (who is asking, response headers such as CORS, a deadline such as a token's
`exp`, a release callback), or raises `Refused` (a JSON error with its status, code
and headers). The gate returns before the lane runs: no frame of it stays alive under
an open stream.

A policy is any object with `async def admit(self, request, decision) -> Decision`;
which policies a server runs comes from its settings (`http/policies.py`). With none,
as today, every request is admitted with the shared `ADMIT` decision at no cost.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Scope

from .._event import Control
from .errors import ClientError

logger = logging.getLogger(__name__)

#: Scope key under which `ServerApp` puts the request's `Decision` for the FastAPI lane's handlers.
DECISION_SCOPE_KEY = "broadcaster.decision"

_FORBIDDEN_IN_HEADERS = frozenset("\r\n\x00")


class Action(enum.Enum):
    """What a request asks for: the unit a policy grants or refuses."""

    PUBLISH = "publish"  # POST /topics/{topic}/events (every body kind)
    SUBSCRIBE = "subscribe"  # GET /topics/{topic}/events, GET /events?topic=...
    HISTORY = "history"  # GET /topics/{topic}/history
    ARCHIVE = "archive"  # GET/HEAD /topics/{topic}/archive[/...]: a read, under the topic's subscribe grant
    TOPICS = "topics"  # GET /topics
    METRICS = "metrics"  # GET /metrics
    HEALTH = "health"  # /healthz, /readyz
    DOCS = "docs"  # /docs, /redoc, /openapi.json
    STATIC = "static"  # files served from the package (/ui, /static)
    AUTH = "auth"  # sessions and tokens (/auth/...)
    OTHER = "other"  # no route of ours (the FastAPI lane answers 404 or 405)


def classify(request: GateRequest) -> tuple[Action, tuple[str, ...], bool]:
    """`(action, topics, stream)` of a request: the one matcher, which also picks the lane.

    `topics` are those the request names (for `/events`, its `topic` parameters, repeats
    dropped, patterns included), not yet validated; `stream` is True for GET and HEAD on a
    stream path, which the stream lane serves. A `{topic}` never holds `/`, as in the routes.
    """
    method, path = request.method, request.path
    if path.startswith("/topics/"):
        topic, slash, tail = path[len("/topics/") :].partition("/")
        if topic and slash:
            if tail == "events":
                if method in ("GET", "HEAD"):
                    return Action.SUBSCRIBE, (topic,), True
                return Action.PUBLISH, (topic,), False
            if tail == "history":
                return Action.HISTORY, (topic,), False
            if tail == "archive" or tail.startswith("archive/"):
                return Action.ARCHIVE, (topic,), False
        return Action.OTHER, (), False
    if path == "/events":
        topics = tuple(dict.fromkeys(request.query.getlist("topic")))
        return Action.SUBSCRIBE, topics, method in ("GET", "HEAD")
    return _FIXED.get(path) or _prefixed(path), (), False


_FIXED = {
    "/topics": Action.TOPICS,
    "/metrics": Action.METRICS,
    "/healthz": Action.HEALTH,
    "/readyz": Action.HEALTH,
    "/docs": Action.DOCS,
    "/docs/oauth2-redirect": Action.DOCS,
    "/redoc": Action.DOCS,
    "/openapi.json": Action.DOCS,
    "/": Action.STATIC,  # redirects to /ui
    "/ui": Action.STATIC,
}
_PREFIXES = (("/ui/", Action.STATIC), ("/static/", Action.STATIC), ("/auth/", Action.AUTH))


def _prefixed(path: str) -> Action:
    for prefix, action in _PREFIXES:
        if path.startswith(prefix):
            return action
    return Action.OTHER


class GateRequest:
    """What a policy sees of one request: method, path, action, topics; headers and query on demand."""

    __slots__ = ("scope", "method", "path", "action", "topics", "stream", "_query", "_headers")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self._query: QueryParams | None = None
        self._headers: Headers | None = None
        self.action, self.topics, self.stream = classify(self)

    @property
    def query(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self.scope.get("query_string", b""))
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's (host, port) as the server saw it."""
        client = self.scope.get("client")
        return (client[0], client[1]) if client else None

    def __repr__(self) -> str:
        return f"GateRequest({self.method} {self.path}, {self.action.value}, topics={self.topics!r})"


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a request's admission runs out (e.g. its token's `exp`), and how a stream then ends."""

    at: float  # Unix time in seconds
    end: Control  # the control message that ends a stream at `at` (e.g. a `fault` naming token_expired)


@dataclass(frozen=True, slots=True)
class Decision:
    """An admitted request: who is asking, what every response gets, until when.

    Immutable: a policy returns `decision.adding(...)`. `headers` go on every response of
    the request, both lanes and streams included, and on a later policy's refusal.
    `on_end` callbacks run once when the request is over, whichever lane served it (a
    limit's slot is released there). `response`, if a policy sets one, answers the request
    in the gate's place (a CORS preflight); no lane runs then.
    """

    identity: Any = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    deadline: Deadline | None = None
    on_end: tuple[Callable[[], None], ...] = ()
    response: ASGIApp | None = None

    def adding(
        self,
        *,
        identity: Any = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        deadline: Deadline | None = None,
        on_end: Callable[[], None] | None = None,
        response: ASGIApp | None = None,
    ) -> Decision:
        """A copy with these added: a new identity replaces the old, the earlier deadline wins."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        raw = tuple((_header(name).lower(), _header(value)) for name, value in pairs)
        if deadline is not None and self.deadline is not None and self.deadline.at <= deadline.at:
            deadline = self.deadline
        return replace(
            self,
            identity=self.identity if identity is None else identity,
            headers=self.headers + raw,
            deadline=deadline or self.deadline,
            on_end=self.on_end + ((on_end,) if on_end is not None else ()),
            response=response or self.response,
        )

    def end(self) -> None:
        """Run the `on_end` callbacks (the request is over); a failing one is logged, the others still run."""
        for callback in self.on_end:
            try:
                callback()
            except Exception:
                logger.exception("an on_end callback of the gate failed")


#: The decision of a request that no policy had anything to add to (shared, costs nothing per request).
ADMIT = Decision()


def _header(text: str) -> bytes:
    """A header name or value as bytes; CR, LF or NUL (a header injection) is our bug, never sent."""
    if not _FORBIDDEN_IN_HEADERS.isdisjoint(text):
        raise ValueError(f"a header may not contain CR, LF or NUL: {text[:60]!r}")
    return text.encode("latin-1")


class Refused(ClientError):
    """A policy's refusal: answered as `{"error": {"code", "message"}}` with `status` and `headers`."""


class Policy(Protocol):
    """One check of the gate. Return `decision` (or `decision.adding(...)`), or raise `Refused`."""

    async def admit(self, request: GateRequest, decision: Decision) -> Decision: ...


class Gate:
    """Runs the policies in order for every request; the first refusal wins."""

    def __init__(self, policies: Sequence[Policy] = ()) -> None:
        self.policies = tuple(policies)

    async def admit(self, request: GateRequest) -> Decision:
        """The request's decision; raises `Refused` (with the headers gathered so far) or a policy's error."""
        decision = ADMIT
        for policy in self.policies:
            try:
                decision = await policy.admit(request, decision)
            except BaseException as exc:
                decision.end()  # release what the policies before this one took
                if isinstance(exc, Refused) and decision.headers:
                    exc.headers = {**_as_strings(decision.headers), **(exc.headers or {})}
                raise
            if decision.response is not None:
                break
        return decision


def _as_strings(raw: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
