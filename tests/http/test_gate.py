"""The gate's interface, in process: what a request is classified as, how decisions combine,
how a policy's refusal, error or own answer reaches the client, and that nothing serves a
request the gate did not see. The same over uvicorn, for every kind of request: tests/e2e/test_gate.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from broadcaster import Settings
from broadcaster._event import Control
from broadcaster._exceptions import BackendUnavailable, ConfigError
from broadcaster.http import create_app
from broadcaster.http.entry import ServerApp, decision_of
from broadcaster.http.gate import ADMIT, Action, Deadline, Decision, Gate, GateRequest, Refused
from broadcaster.http.policies import policies_for


def _request(method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers or []}
    return GateRequest(scope)


@pytest.mark.parametrize(
    ("method", "path", "query", "action", "topics", "stream"),
    [
        ("GET", "/topics/a.b/events", b"", Action.SUBSCRIBE, ("a.b",), True),
        ("HEAD", "/topics/a.b/events", b"", Action.SUBSCRIBE, ("a.b",), True),
        ("POST", "/topics/a.b/events", b"", Action.PUBLISH, ("a.b",), False),
        ("PUT", "/topics/a.b/events", b"", Action.PUBLISH, ("a.b",), False),
        ("GET", "/events", b"topic=x&topic=y.*&topic=x", Action.SUBSCRIBE, ("x", "y.*"), True),
        ("GET", "/events", b"", Action.SUBSCRIBE, (), True),
        ("POST", "/events", b"topic=x", Action.SUBSCRIBE, ("x",), False),
        ("GET", "/topics/a/history", b"after=1-1", Action.HISTORY, ("a",), False),
        ("GET", "/topics/a/archive", b"", Action.ARCHIVE, ("a",), False),
        ("HEAD", "/topics/a/archive/00000001-20250114T100000Z.ndjson", b"", Action.ARCHIVE, ("a",), False),
        ("GET", "/topics/a/archive/export", b"from=2025-01-14", Action.ARCHIVE, ("a",), False),
        ("GET", "/topics/a/archived", b"", Action.OTHER, (), False),
        ("GET", "/topics", b"", Action.TOPICS, (), False),
        ("GET", "/metrics", b"", Action.METRICS, (), False),
        ("GET", "/healthz", b"", Action.HEALTH, (), False),
        ("HEAD", "/readyz", b"", Action.HEALTH, (), False),
        ("GET", "/docs", b"", Action.DOCS, (), False),
        ("GET", "/openapi.json", b"", Action.DOCS, (), False),
        ("GET", "/ui/index.html", b"", Action.STATIC, (), False),
        ("GET", "/ui", b"", Action.STATIC, (), False),
        ("GET", "/uix", b"", Action.OTHER, (), False),
        ("POST", "/auth/session", b"", Action.AUTH, (), False),
        ("GET", "/topics//events", b"", Action.OTHER, (), False),
        ("GET", "/topics/a/b/events", b"", Action.OTHER, (), False),
        ("GET", "/topics/a/other", b"", Action.OTHER, (), False),
        ("GET", "/", b"", Action.STATIC, (), False),
    ],
)
def test_gate_classifies_requests(method, path, query, action, topics, stream):
    request = _request(method, path, query)
    assert (request.action, request.topics, request.stream) == (action, topics, stream)


def test_gate_request_shows_headers_query_and_client_on_demand():
    request = _request("GET", "/events", b"topic=a&format=sse", [(b"authorization", b"Bearer x")])
    assert request.headers["Authorization"] == "Bearer x"
    assert request.query["format"] == "sse"
    assert request.client is None
    request.scope["client"] = ("127.0.0.1", 5000)
    assert request.client == ("127.0.0.1", 5000)
    assert repr(request) == "GateRequest(GET /events, subscribe, topics=('a',))"


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is None:
            yield route
        else:
            yield from _routes(inner.routes)


def test_gate_classifier_knows_every_route_of_the_app(make_settings):
    """A route added to the app without the gate's classifier knowing it would be `other` to every policy."""
    app = create_app(make_settings())
    documented = [(m.upper(), path) for path, item in app.openapi()["paths"].items() for m in item]
    # Included routers stay nested (FastAPI 0.16x); their routes out of the schema count too (the dashboard's).
    framework = [(m, r.path) for r in _routes(app.routes) if isinstance(r, Route | APIRoute) for m in r.methods or ()]
    assert len(documented) >= 8 and len(framework) >= 4
    for method, path in documented + framework:
        assert _request(method, path.replace("{topic}", "some.topic")).action is not Action.OTHER, (method, path)


def test_gate_decision_adding_combines_what_policies_add():
    first = Control("fault", {"reason": "first"})
    later = Control("fault", {"reason": "later"})
    decision = ADMIT.adding(identity={"sub": "a"}, headers={"X-A": "1"}, deadline=Deadline(100.0, first))
    decision = decision.adding(headers=[("X-B", "2")], deadline=Deadline(200.0, later))
    assert decision.identity == {"sub": "a"}
    assert decision.headers == ((b"x-a", b"1"), (b"x-b", b"2"))
    assert decision.deadline == Deadline(100.0, first)  # the earlier deadline wins
    assert decision.adding(deadline=Deadline(50.0, later)).deadline == Deadline(50.0, later)
    assert decision.adding(identity={"sub": "b"}).identity == {"sub": "b"}
    assert ADMIT == Decision()  # adding never changes the shared decision


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\x00"])
def test_gate_decision_refuses_header_injection(value):
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        ADMIT.adding(headers={"Access-Control-Allow-Origin": value})


async def test_gate_refusal_releases_and_carries_what_earlier_policies_added():
    released: list[str] = []

    class First:
        async def admit(self, request: GateRequest, decision: Decision) -> Decision:
            return decision.adding(headers={"Vary": "Origin"}, on_end=lambda: released.append("first"))

    class Second:
        async def admit(self, request: GateRequest, decision: Decision) -> Decision:
            raise Refused(401, "unauthorized", "no token", {"WWW-Authenticate": "Bearer"})

    with pytest.raises(Refused) as refused:
        await Gate([First(), Second()]).admit(_request("GET", "/topics"))
    assert refused.value.headers == {"vary": "Origin", "WWW-Authenticate": "Bearer"}
    assert released == ["first"]


async def test_gate_without_policies_admits_with_the_shared_decision():
    assert await Gate().admit(_request("POST", "/topics/t/events")) is ADMIT


class _Raising:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"),
    [
        (Refused(429, "too_many_requests", "slow down", {"Retry-After": "7"}), 429, "too_many_requests", "7"),
        (BackendUnavailable("limits store down"), 503, "backend_unavailable", "2"),
        (ConfigError("jwt_secret is too short"), 500, "server_misconfigured", None),
        (RuntimeError("a policy's bug"), 500, "internal_error", None),
    ],
)
@pytest.mark.parametrize("url", ["/topics/t/events", "/topics"], ids=["stream", "framework"])
async def test_gate_policy_errors_are_answered_from_the_error_table(
    make_settings, client_factory: Callable[..., Any], exc, status, code, retry_after, url
):
    async with client_factory(make_settings(), policies=[_Raising(exc)]) as client:
        response = await client.get(url)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers.get("retry-after") == retry_after
    if status == 500:  # the operator's or our mistake: the client learns nothing of it
        assert str(exc) not in response.text


async def test_gate_policy_may_answer_itself_with_its_headers(make_settings, client_factory: Callable[..., Any]):
    """A CORS preflight is answered by the gate: no lane runs, the decision's headers are sent."""

    class Preflight:
        async def admit(self, request: GateRequest, decision: Decision) -> Decision:
            decision = decision.adding(headers={"Access-Control-Allow-Origin": "https://app.example"})
            if request.method == "OPTIONS":
                return decision.adding(response=Response(status_code=204))
            return decision

    async with client_factory(make_settings(), policies=[Preflight()]) as client:
        preflight = await client.options("/topics/t/events")
        published = await client.post("/topics/t/events", json=1)
        stream = await client.get("/topics/t/events", params={"max_duration": "0.1"})
    assert preflight.status_code == 204
    assert published.status_code == 201
    assert stream.status_code == 200
    for response in (preflight, published, stream):
        assert response.headers["access-control-allow-origin"] == "https://app.example"


async def test_gate_decision_reaches_the_framework_handlers(make_settings):
    class Identify:
        async def admit(self, request: GateRequest, decision: Decision) -> Decision:
            return decision.adding(identity={"sub": "alice"}, deadline=Deadline(time.time() + 60, Control("x")))

    app = create_app(make_settings())

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        decision = decision_of(request)
        return {"sub": decision.identity["sub"], "deadline": decision.deadline is not None}

    async with LifespanManager(ServerApp(app, policies=[Identify()])) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/whoami")
    assert response.json() == {"sub": "alice", "deadline": True}


async def test_gate_framework_app_alone_serves_nothing(make_settings):
    """The FastAPI app is the framework lane, not a server: without ServerApp it refuses (app construction)."""
    app = create_app(make_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="did not pass the gate"):
            await client.get("/healthz")


def test_gate_stream_routes_are_documentation_only(make_settings):
    """The stream routes are in the OpenAPI document; every GET and HEAD on their paths goes to the stream lane."""
    app = create_app(make_settings())
    paths = app.openapi()["paths"]
    for path in ("/topics/{topic}/events", "/events"):
        assert "get" in paths[path]
        assert all(_request(method, path.replace("{topic}", "t")).stream for method in ("GET", "HEAD"))


def test_gate_settings_without_policies_admit_everything(make_settings):
    assert policies_for(make_settings()) == []
    assert policies_for(Settings()) == []
