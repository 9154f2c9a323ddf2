"""The JSON error shape and the one place that maps exceptions to HTTP statuses.

Every error answer is `{"error": {"code": ..., "message": ...}}`. A client's
mistake is a 4xx naming what was wrong; an unreachable backend is 503 with
`Retry-After`; anything else is a 500 without details (and a log line).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .._exceptions import (
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


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def unavailable(message: str) -> JSONResponse:
    return error_response(503, "backend_unavailable", message, {"Retry-After": str(RETRY_AFTER_S)})


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


def known_error_response(exc: BaseException) -> JSONResponse | None:
    """The answer to a client mistake or an unreachable backend; None for anything else (a 500)."""
    if isinstance(exc, ClientError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, InvalidTopic):
        return error_response(422, "invalid_topic", str(exc))
    if isinstance(exc, InvalidEventType):
        return error_response(422, "invalid_type", str(exc))
    if isinstance(exc, InvalidEventId):
        return error_response(400, "invalid_event_id", str(exc))
    if isinstance(exc, EventTooLarge):
        return error_response(413, "payload_too_large", str(exc))
    if isinstance(exc, BackendUnavailable):
        return unavailable(f"the backend is unreachable, retry shortly: {exc}")
    if isinstance(exc, HubClosed):
        # Closed (the server is stopping) or failed (its event pump died): either way, not now.
        return error_response(
            503, "shutting_down", f"the server cannot serve this: {exc}", {"Retry-After": str(RETRY_AFTER_S)}
        )
    if isinstance(exc, InvalidEventData):
        return error_response(422, "invalid_data", str(exc))
    if isinstance(exc, ConfigError):
        return error_response(400, "bad_request", str(exc))
    return None  # a plain ValueError is our bug, not the client's: a 500, logged


#: Every exception `known_error_response` answers, for the FastAPI handlers (one list for both paths).
KNOWN_ERRORS = (
    ClientError, InvalidTopic, InvalidEventType, InvalidEventId, EventTooLarge,
    BackendUnavailable, HubClosed, InvalidEventData, ConfigError,
)  # fmt: skip


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
        response = known_error_response(exc)
        return response if response is not None else await internal_error(request, exc)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")

    handlers: dict[Any, Any] = {
        RequestValidationError: validation_error,
        StarletteHTTPException: http_error,
        **dict.fromkeys(KNOWN_ERRORS, broadcaster_error),
        Exception: internal_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
