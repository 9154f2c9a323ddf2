"""Running the app under uvicorn, with shutdown owned rather than patched.

uvicorn, on SIGTERM, stops accepting, then waits for open connections to finish,
and only then runs the lifespan's shutdown. Endless streams would keep it
waiting until its graceful timeout. `Server` overrides `shutdown()` to end every
stream first (each gets a `shutdown` control message with a jittered reconnect
hint), so connections finish at once and the lifespan can close the hub.

`create_server_app` is the factory uvicorn imports: `entry.ServerApp` (the gate,
then the stream lane or the FastAPI app) around `create_app`.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from .._config import Settings
from .._logging import log_config
from ._uvicorn import http_protocol
from .api.app import LIVE_HUBS, create_app
from .entry import ServerApp
from .limits.protocol import HeadLimits

logger = logging.getLogger(__name__)


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
        "http": http_protocol(HeadLimits(header_timeout_s=settings.header_timeout_s)),
        "forwarded_allow_ips": settings.forwarded_allow_ips,
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


__all__ = ["Server", "ServerApp", "create_server_app", "make_config"]
