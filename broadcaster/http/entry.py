"""The one way in: the ASGI app that uvicorn runs and the in-process tests drive.

```
request -> ServerApp -> Gate.admit -> Refused: JSON error (no lane runs)
                                   -> stream request (GET/HEAD on a stream path): stream lane (subscribe.open_lane)
                                   -> anything else: the FastAPI app (publish, history, /topics, /metrics, docs...)
```

`ServerApp` asks the gate about every HTTP request, then hands it to one lane. The
stream lane serves a stream without the framework's middleware frames, which would
otherwise stay alive under every open stream. The gate's decision goes into the scope
for the FastAPI lane's handlers (`decision_of`), its headers onto every response (a
stream gets them in its own headers; other responses through a send wrapper, which
a stream must not have: it would hide uvicorn's connection from the fast path), and
its `on_end` callbacks run once the lane is done. The FastAPI app refuses to serve a
request that did not pass here (`app.GatedFastAPI`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import response_for
from .gate import DECISION_SCOPE_KEY, Decision, Gate, GateRequest, Policy
from .policies import policies_for
from .streams.streaming import EventStream
from .streams.subscribe import open_lane


class ServerApp:
    """The ASGI app uvicorn runs: the gate, then the stream lane or the FastAPI `app`."""

    def __init__(self, app: FastAPI, *, policies: Sequence[Policy] | None = None) -> None:
        self.app = app
        state = app.state
        self.gate = Gate(policies_for(state.settings, admission=state.admission) if policies is None else policies)

    @property
    def state(self) -> object:
        """The FastAPI app's state (hub, monitor, settings)."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (websockets: none are served)
            await self.app(scope, receive, send)
            return
        request = GateRequest(scope)
        try:
            decision = await self.gate.admit(request)
        except Exception as exc:
            await response_for(exc, where=f"the gate, {request.method} {request.path}")(scope, receive, send)
            return
        try:
            respond: ASGIApp
            if decision.response is not None:
                respond = decision.response
            elif request.stream:
                respond = await open_lane(self.app.state, request, decision)
            else:
                scope[DECISION_SCOPE_KEY] = decision
                respond = self.app
            del request  # this frame lives as long as a stream: keep only what the lane needs
            if decision.headers and not isinstance(respond, EventStream):
                send = _adding_headers(send, decision.headers)
            await respond(scope, receive, send)
        finally:
            if decision.on_end:
                decision.end()


def _adding_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return sending


def decision_of(request: Request) -> Decision:
    """The gate's decision for a request the FastAPI lane serves (identity, deadline, ...)."""
    decision: Decision = request.scope[DECISION_SCOPE_KEY]
    return decision
