"""Nothing a client sends can inject into a frame: hypothesis feeds arbitrary strings to every field a client
influences, and a spec-conforming SSE parser (tests/support/sse.py) reads what comes out.

Fields a client influences: the topic and type (validated or refused), the event data (any JSON, raw or
re-serialised, and text lines), the resume id (`Last-Event-ID`, `?after=`) and the strings that control
messages quote (error reasons). Each must come out as exactly one frame with the same value, or be refused.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from broadcaster import Control, Event, InvalidEventId, InvalidEventType, InvalidTopic, parse_cursor
from broadcaster._exceptions import InvalidLine
from broadcaster._lines import json_data
from broadcaster._topics import validate_selector, validate_topic, validate_type
from broadcaster.http.streams.encoders import NDJSONEncoder, SSEEncoder

from ..support.servers import thread_server
from ..support.sse import parse_sse

BAD = ("\r", "\n", "\0")
#: Characters that break a line somewhere: SSE (CR, LF), NDJSON readers, and Python's str.splitlines().
LINE_BREAKS = ("\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")

# Text that leans on the characters that matter, among everything else.
nasty_text = st.lists(
    st.sampled_from([*BAD, "\u2028", "\u0085", ":", " ", "id: 9", "\ndata: x", "a", "é"])
    | st.characters(exclude_categories=("Cs",)),
    max_size=12,
).map("".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)
SSE = SSEEncoder()
SSE_ENVELOPE = SSEEncoder(envelope=True)
NDJSON = NDJSONEncoder()


def _one_line(frame: bytes) -> None:
    text = frame.decode()
    assert text.endswith("\n") and not any(b in text[:-1] for b in LINE_BREAKS), frame
    assert "\0" not in text


def _accepted(validate, value: str) -> str | None:
    try:
        return validate(value)
    except (InvalidTopic, InvalidEventType):
        return None


@settings(max_examples=300, deadline=None)
@given(topic=nasty_text, event_type=nasty_text, value=json_values)
def test_event_frames_carry_exactly_one_event_whatever_the_client_sent(topic, event_type, value):
    topic = _accepted(validate_topic, topic) or "t"
    event_type = _accepted(validate_type, event_type) or "message"
    for value_text in (topic, event_type):
        assert not any(c in value_text for c in BAD)
    data = orjson.dumps(value)
    event = Event(topic, "1700000000000-7", event_type, data)
    for encoder in (SSE, SSE_ENVELOPE):
        stream = parse_sse(encoder.encode([event]))
        assert stream.unknown_fields == [] and stream.incomplete == ""
        [message] = stream.messages
        assert (message.type, message.last_event_id) == (event_type, "1700000000000-7")
        payload = orjson.loads(message.data)
        assert (payload["data"] if encoder is SSE_ENVELOPE else payload) == value
    _one_line(NDJSON.encode([event]))
    assert orjson.loads(NDJSON.encode([event]))["data"] == value


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2)))
def test_a_raw_json_body_becomes_one_line_or_is_refused(raw):
    """The body of a JSON POST is kept as sent when it is one line: it must then be safe as sent."""
    try:
        data = json_data(raw, 1 << 20)
    except InvalidLine:
        return
    if data is None:
        return  # blank: refused as an empty body
    event = Event("t", "1-1", "message", data)
    [message] = parse_sse(SSE.encode([event])).messages
    assert orjson.loads(message.data) == orjson.loads(raw)
    _one_line(NDJSON.encode([event]))


@settings(max_examples=300, deadline=None)
@given(reason=nasty_text, extra=json_values, retry=st.none() | st.integers(0, 10**6))
def test_control_frames_quote_client_text_safely(reason, extra, retry):
    fields = {"reason": reason, "detail": extra, **({"retry_ms": retry} if retry is not None else {})}
    control = Control("error", fields)
    stream = parse_sse(SSE.control(control))
    [message] = stream.messages
    assert message.type == "error" and message.last_event_id == ""  # no id: the resume point stays
    assert orjson.loads(message.data) == {"control": "error", **fields}
    assert stream.retries == ([retry] if retry is not None else []) and stream.unknown_fields == []
    _one_line(NDJSON.control(control))


@settings(max_examples=300, deadline=None)
@given(text=nasty_text)
def test_ids_and_selectors_from_clients_are_refused_or_clean(text):
    for parse in (parse_cursor, validate_selector):
        try:
            accepted = parse(text)
        except (InvalidEventId, InvalidTopic):
            continue
        assert not any(c in str(accepted) for c in BAD)


# Through the server: what the wire carries, for arbitrary types, resume ids and text lines.


def _text_events(lines: list[str]) -> list[str]:
    """The events a text/plain body of `lines` makes (README: a BOM at the start is dropped, blank lines skipped)."""
    events = []
    for number, line in enumerate(lines):
        raw = line.encode()
        if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.strip():
            events.append(raw.decode())
    return events


@pytest.fixture(scope="module")
def server():
    from broadcaster import Settings

    with thread_server(Settings(heartbeat_s=0.5, send_timeout_s=2.0, shutdown_grace_s=1.0)) as server:
        yield server


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event_type=st.sampled_from(["message", "reading", "a.b:c-d"]) | nasty_text,
    lines=st.lists(nasty_text.filter(lambda s: s.strip() and not any(c in s for c in "\r\n")), min_size=1, max_size=3),
    resume=nasty_text,
)
def test_the_wire_carries_exactly_what_was_published(server, event_type, lines, resume):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        answer = client.post(
            "/topics/frames/events",
            params={"type": event_type},
            content="\n".join(lines).encode(),
            headers={"Content-Type": "text/plain"},
        )
        assert answer.status_code < 500
        if answer.status_code != 200:
            assert answer.json()["error"]["code"] in ("invalid_type", "invalid_parameter")
            return
        report = answer.json()
        published = _text_events(lines)
        assert report["accepted"] == len(published)
        # A resume id from the client goes into a header and a query string: refused, or answered cleanly.
        probe = client.get(
            "/topics/frames/events", params={"last_event_id": resume, "max_events": 1, "max_duration": 0.2}
        )
        assert probe.status_code < 500
        stream = client.get(
            "/topics/frames/events",
            params={"format": "sse", "tail": len(published), "max_events": len(published)},
        )
        parsed = parse_sse(stream.content)
        assert parsed.unknown_fields == [] and parsed.incomplete == ""
        events = [m for m in parsed.messages if m.type not in ("live", "reset", "gap")]
        assert [orjson.loads(m.data) for m in events] == published
        assert {m.type for m in events} == {event_type if event_type else "message"}
        ids = [m.last_event_id for m in events]
        assert ids[-1] == report["last_id"]
        assert len(stream.content.split(b"\n\n")) >= len(published)  # and the test did see published events
