"""Tokens over a real socket beyond the refusal matrix: a streamed POST outliving its token, query tokens, logs."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import jwt
import orjson
import pytest
from fastapi import Request

from ..support.servers import ThreadServer, thread_server
from ..support.tokens import SECRET, claims, hs256
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def test_streamed_post_stops_reading_at_exp_and_answers_401_with_its_report(make_settings):
    """A producer keeps one NDJSON POST open; its token expires: the server stops there, publishes what came
    before, and answers 401 with the ingest report, while the client is still connected and sending nothing."""
    exp = int(time.time()) + 2
    token = jwt.encode({**claims(publish=["ing"]), "exp": exp}, SECRET, algorithm="HS256")
    with thread_server(make_settings(auth_secret=SECRET)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
        try:
            head = (
                "POST /topics/ing/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            payload = b'{"n": 1}\n{"n": 2}\n{"n": 3, "unfinished'
            writer.write(head.encode() + b"%x\r\n%b\r\n" % (len(payload), payload))
            await writer.drain()
            async with asyncio.timeout(exp - time.time() + 3):
                status, headers, body = await _read_answer(reader)
            answered = time.time()
        finally:
            writer.close()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            history = await client.get(
                "/topics/ing/history", headers={"Authorization": f"Bearer {hs256(subscribe=['ing'])}"}
            )
    assert status == 401
    assert exp - 0.1 <= answered <= exp + 1.0
    assert headers["www-authenticate"] == (
        'Bearer realm="broadcaster", error="invalid_token", error_description="the token is invalid: expired"'
    )
    answer = orjson.loads(body)
    assert answer["error"]["code"] == "unauthorized" and "from line 3" in answer["error"]["message"]
    report = answer["report"]
    assert (report["accepted"], report["lines"], report["truncated"]) == (2, 2, True)
    assert [orjson.loads(line)["data"] for line in history.text.splitlines()] == [{"n": 1}, {"n": 2}]


async def test_query_token_never_reaches_the_log_not_even_in_an_error(make_settings, caplog, capfd):
    settings = make_settings(auth_secret=SECRET, auth_query_token=True)
    server = ThreadServer(settings, log_level="info", access_log=True)

    async def boom(request: Request) -> None:
        raise RuntimeError(f"failed while serving {request.url}")  # an error whose text holds the URL

    server.app.add_api_route("/topics/q/fail", boom, methods=["GET"])
    token, expired = hs256(subscribe=["q"], publish=["q"]), hs256(subscribe=["q"], ttl_s=-5)
    caplog.set_level(logging.DEBUG)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            ok = await client.get("/topics/q/events", params={"access_token": token, "max_duration": 0.2})
            refused = await client.get("/topics/q/events", params={"access_token": expired})
            published = await client.post("/topics/q/events", params={"access_token": token}, json=1)
            failed = await client.get("/topics/q/fail", params={"access_token": token})
        await eventually(lambda: "failed while serving" in caplog.text, within=5, what="the error was logged")
    finally:
        server.stop()
    assert (ok.status_code, refused.status_code, published.status_code, failed.status_code) == (200, 401, 201, 500)
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "access_token=[redacted]" in logged  # the access log and the error were there, scrubbed
    assert "Traceback" in logged and "failed while serving" in logged
    assert "Logging error" not in logged  # uvicorn's access formatter still gets the arguments it unpacks
    for secret in (token, expired, token.split(".")[1], expired.split(".")[2], SECRET):
        assert secret not in logged
