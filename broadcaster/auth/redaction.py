"""Nothing secret reaches a log: tokens, cookies, `access_token` values and the configured secrets.

Redaction happens where every log record is made (the process's log record factory),
not in one handler's formatter: uvicorn's handlers, ours, a handler someone adds later
and logging's last-resort handler all see the same redacted record, and so do tracebacks
(an exception's text is formatted and scrubbed when the record is made, if it holds
anything to scrub). A record with nothing to scrub is left exactly as it was.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

_RULES: list[tuple[re.Pattern[str], str]] = [
    # A JWT: its header is base64url JSON, so it starts with "eyJ" ('{"').
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)(\bbearer\s+)[^\s'\",;]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(\b(?:access_token|broadcaster_token)(?:=|%3D))[^\s&;'\"]*"), rf"\1{REDACTED}"),
    # A header written out (a dict, a list of pairs, a raw request line): its whole value.
    (re.compile(r"(?i)(\b(?:cookie|set-cookie|authorization)['\"]?\s*[:=,]\s*b?['\"]?)[^'\"\r\n]+"), rf"\1{REDACTED}"),
]
_TRIGGER = re.compile(r"(?i)eyJ|bearer|access_token|broadcaster_token|cookie|authorization")

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """`text` with every token, cookie, `access_token` value and configured secret replaced."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _TRIGGER.search(text) is None:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def install_log_redaction(secrets: Iterable[str | bytes | None] = ()) -> None:
    """Redact every log record of this process from now on (idempotent); `secrets` are redacted verbatim too."""
    global _installed
    with _lock:
        for secret in secrets:
            if secret:
                _secrets.add(secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret)
        if _installed:
            return
        _installed = True
        make_record = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)


def _scrub(record: logging.LogRecord) -> None:
    # Scrub the message and each argument apart, keeping their shapes: some formatters read
    # `record.args` themselves (uvicorn's access log unpacks a tuple of five).
    record.msg = _scrub_value(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_value(arg) for arg in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {key: _scrub_value(value) for key, value in record.args.items()}
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # exc_text is what formatters print; without exc_info they cannot format the original again.
            record.exc_info, record.exc_text = None, clean
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _scrub_value(value: Any) -> Any:
    """`value` itself if nothing in its text is secret, else its redacted text."""
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    clean = redact(text)
    return value if clean == text else clean
