"""Bad input, tried as a new user would: every mistake is a 4xx JSON error that names it; nothing is a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from broadcaster import Settings

MAX_EVENT_BYTES = 100
MAX_TOPICS = 4
LONG_TOPIC = "a" * 201


@pytest.fixture
async def client(settings: Settings, client_factory: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The in-process client on both backends, with small limits that a test can reach."""
    small = settings.replace(max_event_bytes=MAX_EVENT_BYTES, max_topics_per_stream=MAX_TOPICS)
    async with client_factory(small) as client:
        yield client


def _json(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": "application/json"}}


async def _chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _assert_error(response: httpx.Response, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return body


# (method, url, request kwargs, status, code, what the message must name)
BAD_TOPICS = [
    pytest.param("POST", "/topics/a%20b/events", {"json": 1}, 422, "invalid_topic", ["'a b'"], id="publish-space"),
    pytest.param("POST", f"/topics/{LONG_TOPIC}/events", {"json": 1}, 422, "invalid_topic", ["201", "200"], id="long"),
    pytest.param("POST", "/topics//events", {"json": 1}, 404, "not_found", ["/topics//events"], id="publish-empty"),
    pytest.param("POST", "/topics/caf%C3%A9/events", {"json": 1}, 422, "invalid_topic", ["café"], id="unicode"),
    pytest.param("POST", "/topics/%2E%2E/events", {"json": 1}, 422, "invalid_topic", ["'..'"], id="dot-dot"),
    pytest.param("POST", "/topics/..%2F..%2Fetc/events", {"json": 1}, 404, "not_found", ["/events"], id="slashes"),
    pytest.param("POST", "/topics/.hidden/events", {"json": 1}, 422, "invalid_topic", ["'.hidden'"], id="leading-dot"),
    pytest.param("POST", "/topics/-x/events", {"json": 1}, 422, "invalid_topic", ["'-x'"], id="leading-dash"),
    pytest.param("POST", "/topics/a%0A/events", {"json": 1}, 422, "invalid_topic", ["'a\\n'"], id="trailing-newline"),
    pytest.param("POST", "/topics/a*/events", {"json": 1}, 422, "invalid_topic", ["'a*'"], id="publish-pattern"),
    pytest.param("GET", "/topics/a%20b/events", {}, 422, "invalid_topic", ["'a b'"], id="subscribe-space"),
    pytest.param("GET", f"/topics/{LONG_TOPIC}/events", {}, 422, "invalid_topic", ["201"], id="subscribe-long"),
    pytest.param("GET", "/topics/%F0%9F%98%80/events", {}, 422, "invalid_topic", ["😀"], id="subscribe-emoji"),
    pytest.param("GET", "/topics/a%20b/history", {}, 422, "invalid_topic", ["'a b'"], id="history-space"),
    pytest.param("GET", "/events?topic=a%20b", {}, 422, "invalid_topic", ["'a b'"], id="events-space"),
    pytest.param("GET", "/events?topic=", {}, 422, "invalid_topic", ["empty"], id="events-empty"),
    pytest.param("GET", "/events?topic=ok&topic=%2E%2E", {}, 422, "invalid_topic", ["'..'"], id="events-second-bad"),
    pytest.param("GET", "/events?topic=a*%20", {}, 422, "invalid_topic", ["pattern", "'a* '"], id="events-bad-pattern"),
]

BAD_BODIES = [
    pytest.param(_json(b'"' + b"x" * 200 + b'"'), 413, "payload_too_large", ["202", "100"], id="too-large-length"),
    pytest.param(_json(b"{bad"), 400, "invalid_json", ["not valid JSON"], id="invalid-json"),
    pytest.param(_json(b'{"a": 1} trailing'), 400, "invalid_json", ["not valid JSON"], id="trailing-garbage"),
    pytest.param(_json(b"{'a': 1}"), 400, "invalid_json", ["not valid JSON"], id="single-quotes"),
    pytest.param(_json(b"NaN"), 400, "invalid_json", ["not valid JSON"], id="nan"),
    pytest.param(_json(b"1e400"), 400, "invalid_json", ["not valid JSON"], id="infinite-number"),
    pytest.param(_json(b'"\xff\xfe"'), 400, "invalid_utf8", ["not UTF-8", "0xff"], id="not-utf8"),
    pytest.param(_json(b"[" * 80), 400, "invalid_json", ["not valid JSON"], id="unclosed-nesting"),
    pytest.param(_json(b""), 400, "invalid_json", ["empty"], id="empty"),
    pytest.param(_json(b"  \n\t "), 400, "invalid_json", ["empty"], id="whitespace-only"),
    pytest.param(
        {"content": b"<a/>", "headers": {"Content-Type": "application/xml"}},
        415,
        "unsupported_media_type",
        ["'application/xml'", "application/json"],
        id="unknown-content-type",
    ),
    pytest.param(
        {"content": b"x=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
        ["application/x-www-form-urlencoded", "send application/json", "-H 'Content-Type: application/json'"],
        id="curl-d-default-form",
    ),
    pytest.param(
        {"content": b"1", "headers": {"Content-Type": "application/json", "Content-Length": "abc"}},
        400,
        "bad_request",
        ["Content-Length", "'abc'"],
        id="content-length-not-a-number",
    ),
]

BAD_PARAMETERS = [
    pytest.param(
        "POST", "/topics/t/events?type=gap", {"json": 1}, 422, "invalid_type", ["'gap'", "reserved"], id="gap"
    ),
    pytest.param("POST", "/topics/t/events?type=shutdown", {"json": 1}, 422, "invalid_type", ["reserved"], id="shut"),
    pytest.param("POST", "/topics/t/events?type=a%20b", {"json": 1}, 422, "invalid_type", ["'a b'"], id="type-space"),
    pytest.param("POST", "/topics/t/events?type=", {"json": 1}, 422, "invalid_type", ["''"], id="type-empty"),
    pytest.param("POST", "/topics/t/events?type=" + "t" * 65, {"json": 1}, 422, "invalid_type", ["64"], id="type-long"),
    pytest.param("GET", "/topics/t/events?format=xml", {}, 422, "invalid_parameter", ["format", "'xml'"], id="fmt"),
    pytest.param("GET", "/topics/t/events?format=", {}, 422, "invalid_parameter", ["format", "sse"], id="fmt-empty"),
    pytest.param("GET", "/events?topic=t&format=SSE2", {}, 422, "invalid_parameter", ["'SSE2'"], id="events-format"),
    pytest.param(
        "GET",
        "/topics/t/events?overflow=bogus",
        {},
        422,
        "invalid_parameter",
        ["overflow", "'bogus'", "drop-oldest"],
        id="overflow",
    ),
    pytest.param("GET", "/topics/t/events?overflow=", {}, 422, "invalid_parameter", ["overflow"], id="overflow-empty"),
    pytest.param("GET", "/topics/t/events?queue=-1", {}, 422, "invalid_parameter", ["queue", "-1"], id="queue-neg"),
    pytest.param("GET", "/topics/t/events?queue=0", {}, 422, "invalid_parameter", ["queue", "got 0"], id="queue-zero"),
    pytest.param(
        "GET", "/topics/t/events?queue=10001", {}, 422, "invalid_parameter", ["queue", "10000", "10001"], id="queue-cap"
    ),
    pytest.param(
        "GET",
        "/topics/t/events?queue=" + "9" * 40,
        {},
        422,
        "invalid_parameter",
        ["queue", "9" * 40],
        id="queue-huge",
    ),
    pytest.param("GET", "/topics/t/events?queue=abc", {}, 422, "invalid_parameter", ["queue", "'abc'"], id="queue-abc"),
    pytest.param("GET", "/topics/t/events?queue=1.5", {}, 422, "invalid_parameter", ["queue", "'1.5'"], id="queue-1.5"),
    pytest.param("GET", "/events?topic=t&queue=-5", {}, 422, "invalid_parameter", ["queue", "-5"], id="events-queue"),
    pytest.param("GET", "/topics/t/events?tail=-1", {}, 422, "invalid_parameter", ["tail", "-1"], id="tail-neg"),
    pytest.param("GET", "/topics/t/events?tail=abc", {}, 422, "invalid_parameter", ["tail", "'abc'"], id="tail-abc"),
    pytest.param("GET", "/topics/t/events?tail=1001", {}, 422, "invalid_parameter", ["tail", "1001"], id="tail-huge"),
    pytest.param(
        "GET", "/topics/t/events?last_event_id=abc", {}, 400, "invalid_event_id", ["'abc'"], id="last-event-id"
    ),
    pytest.param(
        "GET", "/topics/t/events?last_event_id=1-2-3", {}, 400, "invalid_event_id", ["'1-2-3'"], id="last-id-3"
    ),
    pytest.param(
        "GET",
        "/topics/t/events",
        {"headers": {"Last-Event-ID": "not-an-id"}},
        400,
        "invalid_event_id",
        ["'not-an-id'"],
        id="last-event-id-header",
    ),
    pytest.param(
        "GET",
        "/topics/t/events?last_event_id=%D9%A1-%D9%A1",
        {},
        400,
        "invalid_event_id",
        ["'١-١'"],
        id="last-event-id-arabic-digits",
    ),
    pytest.param(
        "GET", "/events?topic=t&last_event_id=x", {}, 400, "invalid_event_id", ["'x'"], id="events-last-event-id"
    ),
    pytest.param(
        "GET",
        "/events?" + "&".join(f"topic=t{i}" for i in range(MAX_TOPICS + 1)),
        {},
        422,
        "invalid_parameter",
        [f"at most {MAX_TOPICS} topics"],
        id="too-many-topics",
    ),
    pytest.param("GET", "/events", {}, 422, "invalid_parameter", ["topic"], id="no-topic"),
    pytest.param("GET", "/events?topics=t", {}, 422, "invalid_parameter", ["topic="], id="misspelt-topic"),
    pytest.param(
        "GET", "/topics/t/events?max_events=0", {}, 422, "invalid_parameter", ["max_events", "0"], id="max-events"
    ),
    pytest.param(
        "GET", "/topics/t/events?max_duration=-1", {}, 422, "invalid_parameter", ["max_duration"], id="max-duration"
    ),
    pytest.param(
        "GET", "/topics/t/events?max_duration=nan", {}, 422, "invalid_parameter", ["max_duration", "nan"], id="nan"
    ),
    pytest.param("GET", "/topics/t/history?after=zz", {}, 400, "invalid_event_id", ["'zz'"], id="history-after"),
    pytest.param("GET", "/topics/t/history?limit=0", {}, 422, "invalid_parameter", ["limit", "0"], id="history-limit"),
    pytest.param("GET", "/nope", {}, 404, "not_found", ["GET /nope"], id="unknown-route"),
    pytest.param("GET", "/topics/t", {}, 404, "not_found", ["/topics/t"], id="topic-without-events"),
    pytest.param(
        "DELETE",
        "/topics/t/events",
        {},
        405,
        "method_not_allowed",
        ["DELETE", "GET", "POST"],
        id="wrong-method-events",
    ),
    pytest.param("PUT", "/topics", {}, 405, "method_not_allowed", ["PUT", "/topics", "GET"], id="wrong-method-topics"),
    pytest.param("POST", "/healthz", {}, 405, "method_not_allowed", ["POST", "/healthz"], id="wrong-method-healthz"),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "code", "needles"), BAD_TOPICS)
async def test_errors_bad_topic_names(client, method, url, kwargs, status, code, needles):
    _assert_error(await client.request(method, url, **kwargs), status, code, *needles)


@pytest.mark.parametrize(("kwargs", "status", "code", "needles"), BAD_BODIES)
async def test_errors_bad_publish_bodies(client, kwargs, status, code, needles):
    _assert_error(await client.post("/topics/t/events", **kwargs), status, code, *needles)


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "code", "needles"), BAD_PARAMETERS)
async def test_errors_bad_parameters_and_routes(client, method, url, kwargs, status, code, needles):
    _assert_error(await client.request(method, url, **kwargs), status, code, *needles)


async def test_errors_oversized_chunked_body_without_content_length(client):
    """No Content-Length: the server counts while it reads and stops at the limit."""
    sent = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b'"' + b"x" * 60, b"x" * 60, b"x" * 60 + b'"'):
            sent.append(len(chunk))
            yield chunk

    request = client.build_request(
        "POST", "/topics/t/events", content=body(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    _assert_error(response, 413, "payload_too_large", f"limit of {MAX_EVENT_BYTES} bytes")


async def test_errors_body_at_the_limit_is_accepted(client):
    data = b'"' + b"x" * (MAX_EVENT_BYTES - 2) + b'"'
    response = await client.post("/topics/t/events", **_json(data))
    assert response.status_code == 201, response.text


async def test_errors_405_names_every_allowed_method(client):
    response = await client.delete("/topics/t/events")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_errors_rejected_publish_publishes_nothing(client):
    for kwargs in (_json(b"{bad"), _json(b""), _json(b'"' + b"x" * 200 + b'"')):
        assert (await client.post("/topics/t/events", **kwargs)).status_code >= 400
    history = await client.get("/topics/t/history")
    assert history.status_code == 200
    assert history.text == ""


# -- never a 500 ------------------------------------------------------------------------------

WEIRD_VALUES = [
    "",
    " ",
    "-1",
    "0",
    "1",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "9" * 30,
    "abc",
    "\x00",
    "\n",
    "1-1",
    "0-0",
    "99999999999999999-1",
    "../..",
    "😀",
    "x" * 5000,
    "drop-oldest",
    "sse",
]
STREAM_PARAMETERS = ["format", "queue", "overflow", "last_event_id", "tail", "max_events", "max_duration"]


def _weird_requests() -> list[tuple[str, str, dict[str, Any]]]:
    # Every stream request ends by itself (max_duration) in case its weird value happens to be valid.
    ending = {"max_duration": "0.3"}
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for name in STREAM_PARAMETERS:
        for value in WEIRD_VALUES:
            params = {**ending, name: value}
            requests.append(("GET", "/topics/t/events", {"params": params}))
            requests.append(("GET", "/events", {"params": {**params, "topic": ["t", "s.*"]}}))
    for value in WEIRD_VALUES:
        requests.append(("GET", "/topics/t/history", {"params": {"after": value}}))
        requests.append(("GET", "/topics/t/history", {"params": {"limit": value}}))
        requests.append(("GET", "/events", {"params": {**ending, "topic": value}}))
        requests.append(("POST", "/topics/t/events", {"params": {"type": value}, "json": 1}))
        requests.append(
            ("GET", "/topics/t/events", {"params": ending, "headers": {"Last-Event-ID": value.strip().encode()}})
        )
        requests.append(("GET", "/topics/t/events", {"params": ending, "headers": {"Accept": value.strip().encode()}}))
        content_type = {"Content-Type": value.strip().encode()}
        requests.append(("POST", "/topics/t/events", {"content": b"1", "headers": content_type}))
        requests.append(
            ("POST", "/topics/t/events", {"content": value.encode(), "headers": {"Content-Type": "application/json"}})
        )
    for path in ("%00", "%0A", "%FF", "a%2Fb", "a%25", "*", "**", "a b", "%E2%80%A8"):
        requests.append(("POST", f"/topics/{path}/events", {"json": 1}))
        requests.append(("GET", f"/topics/{path}/events", {"params": ending}))
        requests.append(("GET", f"/topics/{path}/history", {}))
    for body in (b"[" * 100_000, b'{"a":' * 10_000, b"\x00", b"\xef\xbb\xbf1", b'"\\ud800"'):
        requests.append(
            ("POST", "/topics/t/events", {"content": body, "headers": {"Content-Type": "application/json"}})
        )
    return requests


async def test_errors_no_request_yields_a_500(settings: Settings, client_factory: Callable[..., Any]):
    """A few hundred weird requests on every route and parameter: each is answered, none with a 5xx."""
    requests = _weird_requests()
    limit = asyncio.Semaphore(32)
    async with client_factory(settings.replace(max_event_bytes=MAX_EVENT_BYTES * 1000)) as client:

        async def send(method: str, url: str, kwargs: dict[str, Any]) -> tuple[str, int, str]:
            async with limit:
                response = await client.request(method, url, **kwargs)
            if response.status_code >= 400:
                _assert_error(response, response.status_code, response.json()["error"]["code"])
            return f"{method} {url} {kwargs}", response.status_code, response.text[:200]

        async with asyncio.timeout(20):
            results = await asyncio.gather(*(send(*request) for request in requests))
    server_errors = [result for result in results if result[1] >= 500]
    assert server_errors == []
    assert len(results) == len(requests) > 300
