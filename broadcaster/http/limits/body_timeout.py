"""`body_idle_timeout_s`: a request body that stalls ends with 408 instead of holding its socket forever.

uvicorn has no body timeout: a client that sends headers and then nothing, or
a body a byte now and then, keeps its request (and a task) alive. `BodyDeadline`,
a middleware of the FastAPI app (the lane that reads every request body), wraps
`receive` for requests that have one: each wait for the next piece of the body
is bounded, and the wait that runs out raises `BodyTimeout`, a 408
(`body_timeout`) that also closes the connection. Streamed ingest answers it
with its report, so the sender knows which lines were published. Only the
waits for the body are bounded: time the server spends elsewhere (publishing,
or slowing a publisher down to its `publish_rate`) does not count, and once
the body is complete `receive` is the server's own again. Requests without a
body are not wrapped, and streams never pass this middleware.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ClientError


class BodyTimeout(ClientError):
    """The request body stalled for `body_idle_timeout_s` seconds: 408, and the connection is closed."""

    def __init__(self, timeout_s: float) -> None:
        message = f"the request body sent nothing for {timeout_s:g}s (body_idle_timeout_s); the request was ended"
        super().__init__(408, "body_timeout", message, {"Connection": "close"})


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero `Content-Length`, or any `Transfer-Encoding`)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


def with_body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """`receive`, raising `BodyTimeout` when a wait for more of the body lasts `timeout_s`."""
    complete = False

    async def receive_within() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            async with asyncio.timeout(timeout_s):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(timeout_s) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return receive_within


class BodyDeadline:
    """ASGI middleware of the framework lane (where every request body is read): `with_body_deadline`."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_body(scope):
            receive = with_body_deadline(receive, self.timeout_s)
        await self.app(scope, receive, send)
