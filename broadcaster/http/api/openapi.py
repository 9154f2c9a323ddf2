"""The OpenAPI document, made exact: parameter constraints and every error answer, as the server enforces them.

FastAPI derives the document from the handlers' signatures, which say "a
string" where the server wants a topic, and documents its own validation
error shape, which this server never sends. The stream parameters are parsed
by `subscribe.parse_stream_request`, not by FastAPI, so the handlers cannot
carry the constraints either. This module patches the generated document once:
each parameter gets the schema of the rule that checks it (the same regular
expressions and bounds, from `_topics`, `_event` and the settings), and each
operation lists the error statuses it can answer with the JSON error shape.
schemathesis checks the result against the running server (tests/hostile/test_schema.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..._config import Settings
from ..._topics import RESERVED_TYPES
from ..._types import OverflowPolicy
from ..streams.subscribe import MAX_DURATION_S

# JSON Schema patterns are ECMA regexes: `$` there is the end (Python's `\Z`), without Python's final-newline quirk.
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
SELECTOR_PATTERN = r"^[A-Za-z0-9*][A-Za-z0-9._:*-]{0,199}$"
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_ID = r"[0-9a-f]{8}\.[0-9a-f]{8}\.[0-9]{1,19}"
#: One event id (`_ids.parse_event_id`).
ID_PATTERN = f"^{_ID}$"
#: A stream's resume point (`_ids.parse_cursor`): an id, a comma list of ids, a cursor
#: `<base_ms>[!]~<ids>`, or an id of the scheme before 0.2 (`<ms>-<n>`, answered with `reset`).
CURSOR_PATTERN = f"^(?:{_ID}(?:,{_ID})*|[0-9]{{1,15}}!?~(?:{_ID}(?:,{_ID})*)?|[0-9]{{1,15}}-[0-9]{{1,19}})$"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "report": {"type": "object", "description": "streamed ingest: what was read before the error"},
    },
}

_ERRORS = {
    400: "Malformed request (body, multipart, HTTP framing)",
    404: "No such route (archive: no archive here, the topic has none, no such segment, or id_not_archived)",
    408: "The request body stalled for body_idle_timeout_s",
    413: "Body or event over the size limit",
    415: "Unsupported Content-Type",
    416: "Range not satisfiable (Content-Range: bytes */LEN)",
    422: "Invalid parameter, topic, type or data",
    429: "A per-client cap: too_many_client_streams or rate_limited (Retry-After)",
    503: "Backend unreachable, stopping, or a process cap: too_many_streams, too_many_new_streams (Retry-After)",
}
_BY_OPERATION = {
    ("post", "/topics/{topic}/events"): (400, 408, 413, 415, 422, 429, 503),
    ("get", "/topics/{topic}/events"): (400, 422, 429, 503),
    ("get", "/events"): (400, 422, 429, 503),
    ("get", "/topics/{topic}/history"): (400, 422, 503),
    ("get", "/topics"): (503,),
    ("get", "/healthz"): (503,),
    ("get", "/readyz"): (503,),
    ("get", "/metrics"): (),
    ("get", "/topics/{topic}/archive"): (404, 422),
    ("get", "/topics/{topic}/archive/export"): (400, 404, 422),
    ("get", "/topics/{topic}/archive/{segment}"): (404, 416, 422),
}


def _parameter_schemas(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """(location, name) -> the schema of what the server accepts there."""
    resume = {"type": "string", "pattern": CURSOR_PATTERN}
    return {
        ("path", "topic"): {"type": "string", "pattern": TOPIC_PATTERN},
        ("query", "topic"): {
            "type": "array",
            "items": {"type": "string", "pattern": SELECTOR_PATTERN},
            "minItems": 1,
            "maxItems": settings.max_topics_per_stream,
        },
        ("query", "type"): {
            "type": "string",
            "pattern": TYPE_PATTERN,
            "not": {"enum": sorted(RESERVED_TYPES)},
            "default": "message",
        },
        ("query", "format"): {"type": "string", "enum": ["sse", "ndjson"]},
        ("query", "overflow"): {"type": "string", "enum": [p.value for p in OverflowPolicy]},
        ("query", "queue"): {"type": "integer", "minimum": 1, "maximum": settings.max_queue_size},
        ("query", "tail"): {"type": "integer", "minimum": 0, "maximum": settings.history_size},
        ("query", "max_events"): {"type": "integer", "minimum": 1, "maximum": 10**9},
        ("query", "max_duration"): {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
        ("query", "last_event_id"): resume,
        ("header", "Last-Event-ID"): resume,
        ("query", "after"): {"type": "string", "pattern": ID_PATTERN},
        ("query", "limit"): {"type": "integer", "minimum": 1, "maximum": 10**9},
    }


def exact_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The app's OpenAPI document with exact parameters and error answers (built once, then cached)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = _parameter_schemas(settings)
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                exact = schemas.get((parameter["in"], parameter["name"]))
                if exact is not None:
                    parameter["schema"] = {
                        **exact,
                        **({"title": parameter["schema"]["title"]} if "title" in parameter["schema"] else {}),
                    }
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never sent by this server
            for status in _BY_OPERATION.get((method, path), (400, 422, 503)):
                responses[str(status)] = {"description": _ERRORS[status], **error}
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    app.openapi_schema = document
    return document
