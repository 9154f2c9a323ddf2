"""A Server-Sent Events parser that follows the WHATWG HTML "event stream interpretation" to the letter.

It is deliberately not our encoder read backwards: lines end at CRLF, LF or a
lone CR; a leading BOM is dropped; `data` lines are joined with LF; an `id`
with a NUL is ignored; `retry` takes ASCII digits only; unknown fields are
ignored by the spec, and recorded here so tests can see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINES = re.compile(r"\r\n|\r|\n")


@dataclass
class SSEMessage:
    type: str
    data: str
    last_event_id: str


@dataclass
class SSEStream:
    messages: list[SSEMessage] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)
    incomplete: str = ""  # the text after the last line break (an unfinished line)


def parse_sse(raw: bytes) -> SSEStream:
    """Interpret a whole event stream (UTF-8 with replacement, as the spec decodes it)."""
    text = raw.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    out = SSEStream()
    lines = _LINES.split(text)
    out.incomplete = lines.pop()  # the spec only processes lines that ended
    data: list[str] = []
    event_type = ""
    last_event_id = ""
    for line in lines:
        if line == "":
            if data:
                out.messages.append(SSEMessage(event_type or "message", "\n".join(data), last_event_id))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            out.comments.append(line[1:])
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            if "\0" not in value:
                last_event_id = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                out.retries.append(int(value))
        else:
            out.unknown_fields.append(name)
    return out
