"""Running the app under uvicorn, with shutdown owned rather than patched.

uvicorn, on SIGTERM, stops accepting, then waits for open connections to finish,
and only then runs the lifespan's shutdown. Endless streams would keep it
waiting until its graceful timeout. `Server` overrides `shutdown()` to end every
stream first (each gets a `shutdown` control message with a jittered reconnect
hint), so connections finish at once and the lifespan can close the hub.

`ServerApp` is the application uvicorn runs. It does two things before the
FastAPI app sees a request:
- it hands a stream its uvicorn connection (the request cycle, which holds the
  transport), so that a stream can write events straight to an idle socket (the
  fast path of `Subscription.offer`), and close a socket stuck for
  `send_timeout_s` without cancelling the request task, which uvicorn would
  report as an error. Under other servers streams take the ASGI path only;
- it serves GET on the stream paths itself (`subscribe.stream_endpoint`), with
  the same parser and opener as the FastAPI routes but without the framework's
  middleware frames, which would otherwise stay alive under every open stream.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .._config import Settings
from .._logging import log_config
from .app import LIVE_HUBS, create_app
from .streaming import CONNECTION_SCOPE_KEY
from .subscribe import is_stream_path, stream_endpoint

logger = logging.getLogger(__name__)


class ServerApp:
    """The ASGI app uvicorn runs: the FastAPI `app`, with streams served on a lane of their own."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # uvicorn's `send` is a bound method of its request cycle, which holds the transport.
            cycle = getattr(send, "__self__", None)
            if getattr(cycle, "transport", None) is not None:
                scope[CONNECTION_SCOPE_KEY] = cycle
            if scope["method"] == "GET" and is_stream_path(scope["path"]):
                await stream_endpoint(self.app.state, scope, receive, send)
                return
        await self.app(scope, receive, send)


class Server(uvicorn.Server):
    """uvicorn's server, ending every stream when shutdown starts."""

    async def shutdown(self, sockets: Any = None) -> None:
        for hub in list(LIVE_HUBS):
            hub.end_streams(hub.shutdown_message)
        await super().shutdown(sockets)


def create_server_app() -> ASGIApp:
    """The factory uvicorn imports (also in worker processes): settings from the environment."""
    return ServerApp(create_app(Settings.from_env()))


def make_config(settings: Settings, *, app: ASGIApp | None = None, **overrides: Any) -> uvicorn.Config:
    """uvicorn's config for `settings`: uvloop, httptools, graceful timeout; `app` defaults to the env factory."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "factory": True,
    }
    options.update(overrides)
    options.setdefault("log_config", log_config(options["log_level"]))
    if app is not None:
        options["factory"] = False
        return uvicorn.Config(app, **options)
    return uvicorn.Config("broadcaster.http.server:create_server_app", **options)
