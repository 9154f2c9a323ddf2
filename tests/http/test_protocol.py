"""Request hygiene on a real socket: head size and field count, head and body timeouts, bad framing."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from broadcaster.http.limits.protocol import MAX_HEAD_BYTES, MAX_HEADERS

from ..support.rawhttp import exchange, read_response
from ..support.servers import thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e


def test_uvicorn_still_has_what_the_guarded_protocol_relies_on():
    """Fails loudly if a uvicorn upgrade renames the httptools protocol's callbacks or state."""
    for name in ("on_message_begin", "on_url", "on_header", "on_headers_complete", "data_received"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    for name in ("_unset_keepalive_if_required", "_should_upgrade", "handle_websocket_upgrade"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    cycle_fields = RequestResponseCycle.__init__.__code__.co_names
    for name in ("disconnected", "message_event", "response_started", "response_complete"):
        assert name in cycle_fields, name


@pytest.fixture
def server(make_settings):
    with thread_server(make_settings(header_timeout_s=1.0, body_idle_timeout_s=1.0)) as server:
        yield server


async def test_a_huge_url_is_414(server):
    response = await exchange(server.settings.port, b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, response.error_code(), response.closed) == (414, "uri_too_long", True)


async def test_a_url_just_under_the_limit_is_served(server):
    path = b"/topics/t/history?after=" + b"1" * (MAX_HEAD_BYTES - 200)
    response = await exchange(server.settings.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 400 and response.error_code() == "invalid_event_id"  # answered by the app


async def test_too_many_header_fields_is_431(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(10_000)) + b"\r\n"
    response = await exchange(server.settings.port, head)
    assert (response.status, response.error_code(), response.closed) == (431, "too_many_headers", True)


async def test_exactly_the_field_limit_is_served(server):
    fields = b"".join(b"X-%d: y\r\n" % n for n in range(MAX_HEADERS - 1))
    response = await exchange(server.settings.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert response.status == 200


@pytest.mark.parametrize("size", [70_000, 5_000_000])
async def test_one_huge_header_is_431(server, size):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * size + b"\r\n\r\n"
    response = await exchange(server.settings.port, head)
    assert (response.status, response.error_code(), response.closed) == (431, "headers_too_large", True)


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Content-Length"),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "Duplicate Content-Length"),
        (b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding"),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding"),
        (b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "header"),
        (b"Content-Length: -1\r\n\r\n", "Content-Length"),
        (b"X: a\r\n folded\r\n\r\n", "whitespace"),
    ],
)
async def test_smuggling_attempts_are_400_and_closed(server, request_bytes, reason):
    head = b"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + request_bytes
    response = await exchange(server.settings.port, head)
    assert (response.status, response.error_code(), response.closed) == (400, "bad_request", True)
    assert reason in response.body.decode()


@pytest.mark.parametrize("chunk", [b"zz\r\nhello\r\n", b"ffffffffffffffffff\r\nhello\r\n", b"5\r\nhelloXX0\r\n\r\n"])
async def test_bad_chunking_in_a_streamed_publish_is_400_and_closed(server, chunk, caplog):
    head = b"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    response = await exchange(server.settings.port, head, b"3\r\n1\n\n\r\n", chunk)
    assert (response.status, response.error_code(), response.closed) == (400, "bad_request", True)
    assert "Traceback" not in caplog.text


async def test_a_head_that_never_ends_is_408_within_the_header_timeout(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    response = await read_response(reader, within=5)
    assert (response.status, response.error_code(), response.closed) == (408, "header_timeout", True)
    assert 0.9 <= time.monotonic() - started < 3
    writer.close()


async def test_a_head_dribbled_past_the_timeout_is_closed_although_bytes_keep_coming(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    started = time.monotonic()
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa":
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
        if reader.at_eof() or time.monotonic() - started > 2:
            break
    response = await read_response(reader, within=5)
    assert response.status == 408 and time.monotonic() - started < 3
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_a_slow_but_timely_head_and_a_kept_alive_second_request_are_served(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    for _ in range(2):
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            writer.write(piece)
            await asyncio.sleep(0.3)  # 0.9 s in all, inside the 1 s limit for each request
        response = await read_response(reader, within=5)
        assert response.status == 200 and not response.closed
    writer.close()


async def test_a_stalled_json_body_is_408(server):
    head = b"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    started = time.monotonic()
    response = await exchange(server.settings.port, head + b'{"a": ')
    assert (response.status, response.error_code(), response.closed) == (408, "body_timeout", True)
    assert 0.9 <= time.monotonic() - started < 3


async def test_a_stalled_streamed_body_is_408_with_its_report(server):
    head = b"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    lines = b'{"n": 1}\n{"n": 2}\n{"n": 3'
    response = await exchange(server.settings.port, head + b"%x\r\n%b\r\n" % (len(lines), lines))
    assert response.status == 408 and response.closed
    import orjson

    answer = orjson.loads(response.body)
    assert answer["error"]["code"] == "body_timeout"
    assert answer["report"]["accepted"] == 2 and answer["report"]["lines"] == 2


@pytest.mark.parametrize("kind", ["application/json", "application/x-ndjson"])
async def test_a_client_gone_mid_body_is_one_info_line_and_no_traceback(server, kind, caplog):
    caplog.set_level(logging.INFO)
    head = f"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: 1000\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    writer.write(head.encode() + b'{"n": 1}\n{"n"')
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await eventually(lambda: "disconnected" in caplog.text, what="the disconnect logged")
    await asyncio.sleep(0.2)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
