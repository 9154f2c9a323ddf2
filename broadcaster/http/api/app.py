"""create_app: the FastAPI application (the framework lane) and its one lifespan.

It is served inside `entry.ServerApp`, which runs the gate first; on its own it
refuses every request (`GatedFastAPI`). `create_server_app` in `server.py` builds both.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ... import __version__
from ..._config import Settings
from ..._hub import Hub
from ...archive import server_archive
from ..errors import install_error_handlers
from ..gate import DECISION_SCOPE_KEY
from ..limits.admission import start_admission
from ..limits.body_timeout import BodyDeadline
from ..security.session import router as session_router
from ..streams.encoders import NDJSONEncoder
from ..streams.streaming import StreamMonitor
from .archive import router as archive_router
from .openapi import exact_openapi
from .routes import router
from .ui import router as ui_router

DESCRIPTION = """
Publish events on named topics; subscribe to them live as Server-Sent Events or NDJSON.
See the README for the wire formats, resume (`Last-Event-ID`) and backpressure rules.
"""

#: Hubs of the apps running in this process; `http.server.Server` ends their streams on shutdown.
LIVE_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()


class GatedFastAPI(FastAPI):
    """FastAPI that serves only requests the gate admitted: run it inside `entry.ServerApp`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and DECISION_SCOPE_KEY not in scope:
            raise RuntimeError(
                f"{scope['method']} {scope['path']} did not pass the gate: serve this app through "
                "broadcaster.http.entry.ServerApp, never on its own"
            )
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, hub: Hub | None = None) -> FastAPI:
    """The application. With `hub`, the caller owns the hub's lifetime (tests); else the lifespan does.

    `settings` default to `Settings.from_env()`.
    """
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app.state.hub = hub if hub is not None else await stack.enter_async_context(Hub(settings=settings))
            LIVE_HUBS.add(app.state.hub)
            stack.callback(LIVE_HUBS.discard, app.state.hub)
            app.state.monitor = await stack.enter_async_context(
                StreamMonitor(heartbeat_s=settings.heartbeat_s, send_timeout_s=settings.send_timeout_s)
            )
            archive = server_archive(settings, app.state.hub, NDJSONEncoder().download)
            app.state.archive = await stack.enter_async_context(archive)
            yield

    app = GatedFastAPI(title="Broadcaster", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.admission = start_admission(settings)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_idle_timeout_s)
    install_error_handlers(app)
    app.openapi = functools.partial(exact_openapi, app, settings)  # type: ignore[method-assign]
    app.include_router(router)
    app.include_router(ui_router)
    app.include_router(session_router)
    app.include_router(archive_router)
    return app
