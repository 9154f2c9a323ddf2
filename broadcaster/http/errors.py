"""The JSON error shape, and the one table from exception type to status, code and Retry-After.

Every error answer is `{"error": {"code": ..., "message": ...}}` (ingest adds its
`report`), built by `error_response`, whichever lane or the gate answers. A
client's mistake is a 4xx naming what was wrong; an unreachable backend or a
stopping server is 503 with `Retry-After`; a settings error found at run time is
the operator's mistake, a 500 (logged), never a 400; anything else is a 500
without details (and a log line).

```
ClientError (and the gate's Refused)   its own status, code, headers
InvalidTopic                           422 invalid_topic
InvalidEventType                       422 invalid_type
InvalidEventData                       422 invalid_data
InvalidEventId                         400 invalid_event_id
EventTooLarge                          413 payload_too_large
BackendUnavailable                     503 backend_unavailable   Retry-After
HubClosed, BackendClosed               503 shutting_down         Retry-After
ConfigError                            500 server_misconfigured  (logged)
anything else                          500 internal_error        (logged)
```
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .._exceptions import (
    BackendClosed,
    BackendUnavailable,
    ConfigError,
    EventTooLarge,
    HubClosed,
    InvalidEventData,
    InvalidEventId,
    InvalidEventType,
    InvalidTopic,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    503: "unavailable",
}


class ClientError(Exception):
    """A client's mistake, answered with `status` and a JSON error naming it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How one exception type is answered: `message` replaces its text, else `prefix` goes before it."""

    status: int
    code: str
    retry_after: bool = False
    prefix: str = ""
    message: str | None = None


#: Exception type -> answer, looked up along the exception's MRO (a subclass answers as its base).
ERRORS: dict[type[BaseException], ErrorKind] = {
    InvalidTopic: ErrorKind(422, "invalid_topic"),
    InvalidEventType: ErrorKind(422, "invalid_type"),
    InvalidEventData: ErrorKind(422, "invalid_data"),
    InvalidEventId: ErrorKind(400, "invalid_event_id"),
    EventTooLarge: ErrorKind(413, "payload_too_large"),
    BackendUnavailable: ErrorKind(503, "backend_unavailable", True, "the backend is unreachable, retry shortly: "),
    BackendClosed: ErrorKind(503, "shutting_down", True, "the server cannot serve this: "),
    HubClosed: ErrorKind(503, "shutting_down", True, "the server cannot serve this: "),
    ConfigError: ErrorKind(500, "server_misconfigured", message="the server's settings are invalid (see its log)"),
}
_INTERNAL = ErrorKind(500, "internal_error", message="internal server error")


def error_kind(exc: BaseException) -> ErrorKind:
    """The table's entry for `exc`: the first of its classes listed, else `internal_error`."""
    for cls in type(exc).__mro__:
        kind = ERRORS.get(cls)
        if kind is not None:
            return kind
    return _INTERNAL


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, *, report: Any = None
) -> JSONResponse:
    """The one builder of a JSON error answer; `report` (ingest's) goes beside `error`."""
    content: dict[str, Any] = {"error": {"code": code, "message": message}}
    if report is not None:
        content["report"] = report
    return JSONResponse(content, status_code=status, headers=headers)


def response_for(
    exc: BaseException, *, message: str | None = None, report: Any = None, where: str = ""
) -> JSONResponse:
    """The answer to `exc` from the table; `message` replaces the exception's own text.

    A 500 (our fault or the operator's) is logged with `where` and says nothing of its cause.
    """
    if isinstance(exc, ClientError):
        return error_response(exc.status, exc.code, message or exc.message, exc.headers, report=report)
    kind = error_kind(exc)
    if kind.status == 500:
        logger.error("%s%s", kind.code, f" on {where}" if where else "", exc_info=exc)
        message = None
    headers = {"Retry-After": str(RETRY_AFTER_S)} if kind.retry_after else None
    text = message or kind.message or kind.prefix + str(exc)
    return error_response(kind.status, kind.code, text, headers, report=report)


def known_errors() -> tuple[type[BaseException], ...]:
    """Every exception type the table answers, for the FastAPI handlers."""
    return (ClientError, *ERRORS)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "header", "body")]
        name = ".".join(location) or "request"
        got = error.get("input")
        shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        parts.append(f"{name}: {error.get('msg', 'invalid')}{shown}")
    return "; ".join(parts) or "invalid request"


def _allowed_methods(request: Request) -> list[str]:
    """Every method of every route on this path (Starlette's `Allow` names only the first route's)."""
    routes = request.app.router.routes
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the JSON error shape."""

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_parameter", _describe_validation(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        message = str(exc.detail)
        # Starlette's bare "Not Found" / "Method Not Allowed" do not say what was asked for.
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path} (the API is described at /docs)"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            message = f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}"
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return error_response(exc.status_code, code, message, headers)

    async def broadcaster_error(request: Request, exc: Exception) -> JSONResponse:
        return response_for(exc, where=f"{request.method} {request.url.path}")

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client went away mid-body: nobody reads an answer. One line, never a traceback.
        logger.info("%s %s: the client disconnected before its body was complete", request.method, request.url.path)
        return Response(status_code=400)

    handlers: dict[Any, Any] = {
        RequestValidationError: validation_error,
        StarletteHTTPException: http_error,
        **dict.fromkeys(known_errors(), broadcaster_error),
        ClientDisconnect: client_gone,
        Exception: broadcaster_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
