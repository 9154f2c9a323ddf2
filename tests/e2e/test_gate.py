"""The gate sees every kind of request, through uvicorn on a real socket, and can refuse each (issue 10).

A probe installed in the gate records what it is asked, adds a header to every admitted
response, refuses a request that asks for it with a JSON error, and can set a deadline
and an `on_end` callback. A spy on the hub's `subscribe` shows that a refused stream
never reaches the hub.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from broadcaster import Hub, Settings
from broadcaster._event import Control
from broadcaster.http.gate import Action, Deadline, Decision, GateRequest, Refused

from ..conftest import TEST_SETTINGS
from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually_sync

pytestmark = pytest.mark.e2e

STREAM_END = {"max_duration": "0.3"}  # admitted streams end by themselves

# (name, method, url, request kwargs, expected action, expected topics, expected admitted status)
KINDS: list[tuple[str, str, str, dict[str, Any], Action, tuple[str, ...], int]] = [
    ("sse", "GET", "/topics/t1/events", {"headers": {"Accept": "text/event-stream"}}, Action.SUBSCRIBE, ("t1",), 200),
    ("ndjson", "GET", "/topics/t1/events", {"params": {"format": "ndjson"}}, Action.SUBSCRIBE, ("t1",), 200),
    ("multi", "GET", "/events", {"params": {"topic": ["a", "b", "a"]}}, Action.SUBSCRIBE, ("a", "b"), 200),
    ("pattern", "GET", "/events", {"params": {"topic": "s.*"}}, Action.SUBSCRIBE, ("s.*",), 200),
    ("head-stream", "HEAD", "/topics/t1/events", {}, Action.SUBSCRIBE, ("t1",), 200),
    ("publish-json", "POST", "/topics/p1/events", {"json": {"n": 1}}, Action.PUBLISH, ("p1",), 201),
    (
        "publish-ndjson",
        "POST",
        "/topics/p1/events",
        {"content": b'{"n":1}\n{"n":2}\n', "headers": {"Content-Type": "application/x-ndjson"}},
        Action.PUBLISH,
        ("p1",),
        200,
    ),
    (
        "publish-text",
        "POST",
        "/topics/p1/events",
        {"content": b"one\ntwo\n", "headers": {"Content-Type": "text/plain"}},
        Action.PUBLISH,
        ("p1",),
        200,
    ),
    (
        "publish-multipart",
        "POST",
        "/topics/p1/events",
        {"files": {"file": ("backlog.ndjson", b'{"n":1}\n', "application/x-ndjson")}},
        Action.PUBLISH,
        ("p1",),
        200,
    ),
    ("history", "GET", "/topics/p1/history", {}, Action.HISTORY, ("p1",), 200),
    ("topics", "GET", "/topics", {}, Action.TOPICS, (), 200),
    ("metrics", "GET", "/metrics", {}, Action.METRICS, (), 200),
    ("healthz", "GET", "/healthz", {}, Action.HEALTH, (), 200),
    ("readyz", "GET", "/readyz", {}, Action.HEALTH, (), 200),
    ("docs", "GET", "/docs", {}, Action.DOCS, (), 200),
    ("openapi", "GET", "/openapi.json", {}, Action.DOCS, (), 200),
    ("no-route", "GET", "/nothing/here", {}, Action.OTHER, (), 404),
]
IDS = [kind[0] for kind in KINDS]


class Marker:
    """A first policy (as CORS will be): adds `x-probe` to every response and an `on_end` callback."""

    def __init__(self) -> None:
        self.ended = 0
        self._lock = threading.Lock()

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        return decision.adding(headers={"X-Probe": "seen"}, on_end=self._end)

    def _end(self) -> None:
        with self._lock:
            self.ended += 1


class Probe:
    """A second policy (as access control will be): records every request, refuses or sets a deadline on demand."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Action, tuple[str, ...]]] = []

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        self.seen.append((request.method, request.path, request.action, request.topics))
        if request.headers.get("x-probe-refuse"):
            raise Refused(403, "probe_refused", f"the probe refused {request.method} {request.path}")
        decision = decision.adding(identity={"sub": "probe"})
        if seconds := request.headers.get("x-probe-deadline"):
            end = Control("fault", {"reason": "token_expired"})
            decision = decision.adding(deadline=Deadline(time.time() + float(seconds), end))
        return decision


class SubscribeSpy:
    """Counts `Hub.subscribe` calls of the server's hub, then calls the real method."""

    def __init__(self, hub: Hub) -> None:
        self.calls = 0
        self._subscribe = hub.subscribe
        hub.subscribe = self  # type: ignore[method-assign]

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._subscribe(*args, **kwargs)


@pytest.fixture(scope="module")
def probed() -> Iterator[tuple[ThreadServer, Probe, SubscribeSpy, Marker]]:
    marker, probe = Marker(), Probe()
    with thread_server(Settings(**TEST_SETTINGS), policies=[marker, probe]) as server:
        yield server, probe, SubscribeSpy(server.app.state.hub), marker


def _request(server: ThreadServer, method: str, url: str, kwargs: dict[str, Any], **headers: str) -> httpx.Response:
    kwargs = dict(kwargs)
    kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    if url.endswith("events") and method != "POST":
        kwargs["params"] = {**kwargs.get("params", {}), **STREAM_END}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.request(method, url, **kwargs)


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "action", "topics", "status"), KINDS, ids=IDS)
def test_gate_refuses_every_kind_of_request_with_a_json_error(
    probed, name, method, url, kwargs, action, topics, status
):
    server, probe, spy, marker = probed
    before, calls, ended = len(probe.seen), spy.calls, marker.ended
    response = _request(server, method, url, kwargs, **{"x-probe-refuse": "1"})
    assert response.status_code == 403, response.text
    assert response.headers["x-probe"] == "seen"  # headers a policy added before the refusal
    if method != "HEAD":
        assert response.json() == {"error": {"code": "probe_refused", "message": f"the probe refused {method} {url}"}}
    assert probe.seen[before:] == [(method, url, action, topics)]
    assert spy.calls == calls  # a refused request, stream or not, never reaches Hub.subscribe
    assert marker.ended == ended + 1  # what the policies before the refusal took is released


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "action", "topics", "status"), KINDS, ids=IDS)
def test_gate_sees_and_admits_every_kind_of_request(probed, name, method, url, kwargs, action, topics, status):
    server, probe, spy, marker = probed
    before, calls, ended = len(probe.seen), spy.calls, marker.ended
    response = _request(server, method, url, kwargs)
    assert response.status_code == status, response.text
    assert response.headers["x-probe"] == "seen"  # on every response of both lanes, streams included
    assert probe.seen[before:] == [(method, url, action, topics)]
    assert spy.calls == calls + (action is Action.SUBSCRIBE)  # an admitted stream does subscribe
    eventually_sync(lambda: marker.ended == ended + 1, timeout=5, what="on_end ran once")


@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
def test_gate_deadline_ends_a_stream_with_the_gates_control_message(probed, fmt):
    server = probed[0]
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        params = {"format": fmt, "max_duration": "30"}
        response = client.get("/topics/expiring/events", params=params, headers={"x-probe-deadline": "0.5"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.4 <= elapsed < 5, elapsed  # at the gate's deadline, well before max_duration
    if fmt == "ndjson":
        assert orjson.loads(response.text.splitlines()[-1]) == {"control": "fault", "reason": "token_expired"}
    else:
        assert response.text.endswith('event: fault\ndata: {"control":"fault","reason":"token_expired"}\n\n')
