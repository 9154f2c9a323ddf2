"""Encoders: the exact bytes of every frame, and what real line-based clients read back from them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from broadcaster._event import Control, Event
from broadcaster._ids import StreamCursor, format_id
from broadcaster.http._uvicorn import http_chunk
from broadcaster.http.streams.encoders import NDJSONEncoder, SSEEncoder

SSE = SSEEncoder()
SSE_ENVELOPE = SSEEncoder(envelope=True)
NDJSON = NDJSONEncoder()


def _event(
    data: bytes = b'{"n":1}', *, type: str = "message", topic: str = "demo", id: str = "1700000000000-7"
) -> Event:
    return Event(topic, id, type, data, 1700000000000)


def _parse_sse(frame: bytes) -> list[dict[str, Any]]:
    """Parse bytes as an EventSource would (httpx-sse's spec decoder): one dict per dispatched event."""
    lines = SSELineDecoder().decode(frame.decode())
    decoder = SSEDecoder()
    parsed = []
    for line in lines:
        sse = decoder.decode(line)
        if sse is not None:
            parsed.append({"id": sse.id, "event": sse.event, "data": sse.data, "retry": sse.retry})
    return parsed


# -- event frames ---------------------------------------------------------------------------

EVENT_FRAMES = [
    pytest.param(
        _event(),
        b'id: 1700000000000-7\ndata: {"n":1}\n\n',
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":{"n":1}}\n',
        id="default-type-has-no-event-line",
    ),
    pytest.param(
        _event(type="reading"),
        b'id: 1700000000000-7\nevent: reading\ndata: {"n":1}\n\n',
        b'{"id":"1700000000000-7","topic":"demo","type":"reading","ts":1700000000000,"data":{"n":1}}\n',
        id="named-type",
    ),
    pytest.param(
        _event(b'"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89"', topic="caf.e_1:x-y"),
        b'id: 1700000000000-7\ndata: "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89"\n\n',
        b'{"id":"1700000000000-7","topic":"caf.e_1:x-y","type":"message","ts":1700000000000,'
        b'"data":"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89"}\n',
        id="unicode-utf8-unescaped",
    ),
    pytest.param(
        _event(b'""'),
        b'id: 1700000000000-7\ndata: ""\n\n',
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":""}\n',
        id="empty-string",
    ),
    pytest.param(
        _event(b"null"),
        b"id: 1700000000000-7\ndata: null\n\n",
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":null}\n',
        id="null",
    ),
    pytest.param(
        _event(b"{}"),
        b"id: 1700000000000-7\ndata: {}\n\n",
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":{}}\n',
        id="empty-object",
    ),
    pytest.param(
        _event(b"[]"),
        b"id: 1700000000000-7\ndata: []\n\n",
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":[]}\n',
        id="empty-array",
    ),
    pytest.param(
        _event(b"0"),
        b"id: 1700000000000-7\ndata: 0\n\n",
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":0}\n',
        id="zero",
    ),
    pytest.param(
        _event(b"false"),
        b"id: 1700000000000-7\ndata: false\n\n",
        b'{"id":"1700000000000-7","topic":"demo","type":"message","ts":1700000000000,"data":false}\n',
        id="false",
    ),
]


@pytest.mark.parametrize(("event", "sse", "ndjson"), EVENT_FRAMES)
def test_encoder_event_frames_are_exact(event: Event, sse: bytes, ndjson: bytes):
    assert SSE.encode([event]) == sse
    assert NDJSON.encode([event]) == ndjson


@pytest.mark.parametrize(("event", "sse", "ndjson"), EVENT_FRAMES)
def test_encoder_event_frames_parse_back_to_the_event(event: Event, sse: bytes, ndjson: bytes):
    [parsed] = _parse_sse(SSE.encode([event]))
    assert parsed["id"] == event.id
    assert parsed["event"] == event.type  # an EventSource names an event without `event:` "message"
    assert orjson.loads(parsed["data"]) == event.json()
    line = orjson.loads(NDJSON.encode([event]))
    assert line == {"id": event.id, "topic": event.topic, "type": event.type, "ts": event.ts, "data": event.json()}


def test_encoder_event_frame_is_built_once_and_shared():
    event = _event()
    # The first encoding caches the frame on the event; every later one (any encoder) reuses it.
    assert SSE.frame(event) is SSEEncoder().frame(event) is event.sse_frame
    assert NDJSON.frame(event) is NDJSONEncoder().frame(event) is event.ndjson_line
    # The envelope's `id:` is each stream's own cursor; the rest of its frame is cached once.
    assert SSE_ENVELOPE.frame(event) == SSEEncoder(envelope=True).frame(event)
    assert SSE_ENVELOPE.frame(event).endswith(event.envelope_frame or b"-") and event.envelope_frame is not None
    assert SSE.chunk(event) is SSE.chunk(event)  # one HTTP chunk per event and encoder, for all subscribers


def test_encoder_download_frames_without_caching():
    event = _event()
    assert NDJSON.download([event, event]) == NDJSON.frame(_event()) * 2
    assert event.ndjson_line is None, "a history download leaves the event uncached"


# -- line separators inside data ---------------------------------------------------------------

LINE_SEPARATORS = [
    pytest.param("a\u2028b", id="U+2028-line-separator"),
    pytest.param("a\u2029b", id="U+2029-paragraph-separator"),
    pytest.param("a\u0085b", id="U+0085-next-line"),
    pytest.param("\u2028", id="only-U+2028"),
    pytest.param({"k\u2028": ["x\u2029y", "\u2028\u2028"]}, id="nested-key-and-list"),
]


@pytest.mark.parametrize("value", LINE_SEPARATORS)
def test_encoder_ndjson_event_with_unicode_line_separator_stays_one_line(value: Any):
    """orjson writes U+2028/U+2029/U+0085 raw; str.splitlines() and httpx's aiter_lines() split on them."""
    event = _event(orjson.dumps(value))
    text = NDJSON.encode([event]).decode()
    assert len(text.splitlines()) == 1
    assert orjson.loads(text.splitlines()[0])["data"] == value


@pytest.mark.parametrize("value", LINE_SEPARATORS)
@pytest.mark.parametrize("encoder", [SSE, SSE_ENVELOPE], ids=["sse", "sse-envelope"])
def test_encoder_sse_event_with_unicode_line_separator_round_trips(encoder: SSEEncoder, value: Any):
    event = _event(orjson.dumps(value))
    frame = encoder.encode([event])
    [parsed] = _parse_sse(frame)
    decoded = orjson.loads(parsed["data"])
    assert (decoded["data"] if encoder.envelope else decoded) == value
    # A line-based reader that splits like str.splitlines() still sees one `data:` line.
    assert [line for line in frame.decode().splitlines() if line.startswith("data:")] == ["data: " + parsed["data"]]


# -- multi-topic envelope ----------------------------------------------------------------------

ENVELOPES = [
    pytest.param(_event(), "message", id="message"),
    pytest.param(_event(type="alarm", topic="sensors.kitchen"), "alarm", id="typed-other-topic"),
    pytest.param(_event(b'"\xe2\x9c\x93"', topic="x"), "message", id="unicode"),
]


@pytest.mark.parametrize(("event", "event_field"), ENVELOPES)
def test_encoder_sse_envelope_carries_topic_and_whole_event(event: Event, event_field: str):
    frame = SSE_ENVELOPE.encode([event])
    assert frame.startswith(f"id: {event.id}\n".encode())
    [parsed] = _parse_sse(frame)
    assert parsed["id"] == event.id
    assert parsed["event"] == event_field
    assert orjson.loads(parsed["data"]) == event.as_dict()
    assert orjson.loads(parsed["data"])["topic"] == event.topic


def test_encoder_ndjson_is_the_same_for_single_and_multi_topic_streams():
    event = _event(topic="sensors.kitchen")
    assert orjson.loads(NDJSON.encode([event]))["topic"] == "sensors.kitchen"


# -- control frames ---------------------------------------------------------------------------

CONTROLS = [
    pytest.param(
        Control("gap", {"dropped": 3, "first_id": "1-1", "last_id": "1-3"}),
        b'event: gap\ndata: {"control":"gap","dropped":3,"first_id":"1-1","last_id":"1-3"}\n\n',
        id="gap",
    ),
    pytest.param(
        Control("live", {"replayed": 0}),
        b'event: live\ndata: {"control":"live","replayed":0}\n\n',
        id="live",
    ),
    pytest.param(
        Control("reset", {"last_event_id": "1-1"}),
        b'event: reset\ndata: {"control":"reset","last_event_id":"1-1"}\n\n',
        id="reset",
    ),
    pytest.param(
        Control("fault", {"reason": "slow consumer"}),
        b'event: fault\ndata: {"control":"fault","reason":"slow consumer"}\n\n',
        id="fault",
    ),
    pytest.param(
        Control("shutdown", {"reason": "server stopping", "retry_ms": 4321}),
        b'retry: 4321\nevent: shutdown\ndata: {"control":"shutdown","reason":"server stopping","retry_ms":4321}\n\n',
        id="shutdown-with-retry",
    ),
    pytest.param(Control("live"), b'event: live\ndata: {"control":"live"}\n\n', id="no-fields"),
    pytest.param(
        Control("fault", {"reason": "\u2713 caf\u00e9"}),
        'event: fault\ndata: {"control":"fault","reason":"\u2713 caf\u00e9"}\n\n'.encode(),
        id="unicode-field",
    ),
]


@pytest.mark.parametrize(("control", "sse"), CONTROLS)
def test_encoder_control_frames_have_no_id_and_no_data_field(control: Control, sse: bytes):
    assert SSE.control(control) == sse
    assert SSE.encode([control]) == sse
    assert SSE_ENVELOPE.encode([control]) == sse
    assert b"id:" not in sse  # a control message must not move the client's Last-Event-ID
    [parsed] = _parse_sse(sse)
    assert parsed["id"] == ""
    assert parsed["event"] == control.kind
    assert parsed["retry"] == control.fields.get("retry_ms")
    body = orjson.loads(parsed["data"])
    assert body == {"control": control.kind, **control.fields}
    assert "data" not in body  # jq 'select(.data)' keeps only events

    line = NDJSON.control(control)
    assert line == NDJSON.encode([control])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"control": control.kind, **control.fields}


@pytest.mark.parametrize(
    ("fields", "retry_line"),
    [
        pytest.param({"retry_ms": 0}, b"retry: 0\n", id="zero"),
        pytest.param({"retry_ms": 7500}, b"retry: 7500\n", id="int"),
        pytest.param({"retry_ms": "7500"}, b"", id="string-is-not-a-hint"),
        pytest.param({}, b"", id="absent"),
    ],
)
def test_encoder_sse_control_retry_line_only_for_integer_retry_ms(fields: dict[str, Any], retry_line: bytes):
    frame = SSE.control(Control("shutdown", fields))
    assert frame.startswith(retry_line + b"event: shutdown\n")
    assert frame.count(b"retry:") == (1 if retry_line else 0)


# -- keepalives and preamble ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoder", "keepalive"),
    [
        pytest.param(SSE, b": keepalive\n", id="sse-comment"),
        pytest.param(SSE_ENVELOPE, b": keepalive\n", id="sse-envelope-comment"),
        pytest.param(NDJSON, b'{"control":"heartbeat"}\n', id="ndjson-heartbeat"),
    ],
)
def test_encoder_keepalive_frames(encoder: SSEEncoder | NDJSONEncoder, keepalive: bytes):
    assert encoder.keepalive() == keepalive
    if encoder is NDJSON:
        assert orjson.loads(keepalive) == {"control": "heartbeat"}
    else:
        assert _parse_sse(keepalive) == []  # a comment: EventSource dispatches nothing


@pytest.mark.parametrize(
    ("encoder", "retry_ms", "preamble"),
    [
        pytest.param(SSE, 3000, b"retry: 3000\n", id="sse"),
        pytest.param(SSE, 0, b"retry: 0\n", id="sse-zero"),
        pytest.param(NDJSON, 3000, b"", id="ndjson-none"),
    ],
)
def test_encoder_preamble(encoder: SSEEncoder | NDJSONEncoder, retry_ms: int, preamble: bytes):
    assert encoder.preamble(retry_ms) == preamble


@pytest.mark.parametrize("encoder", [SSE, SSE_ENVELOPE], ids=["sse", "sse-envelope"])
def test_encoder_sse_stream_start_yields_no_empty_event(encoder: SSEEncoder):
    """Issue 16: a `retry:` block of its own reached httpx-sse users as an event with empty data.

    The start of an idle stream (preamble, keepalives) dispatches nothing; the hint arrives
    with the first event, which is the first thing a spec parser (and httpx-sse) yields.
    """
    event = _event()
    start = encoder.preamble(4500) + encoder.keepalive() + encoder.keepalive()
    assert _parse_sse(start) == [], "nothing dispatched before the first event"
    [first, second] = _parse_sse(start + encoder.encode([event]) + encoder.keepalive() + encoder.encode([event]))
    assert first["retry"] == 4500 and first["data"] and first["id"] == event.id
    assert second["retry"] is None and second["data"] == first["data"]


# -- batches ----------------------------------------------------------------------------------


def _batch() -> list[Event | Control]:
    return [
        _event(b"1", id="1-1"),
        Control("gap", {"dropped": 2, "first_id": "1-2", "last_id": "1-3"}),
        _event(b"4", id="1-4", type="reading"),
        _event(b"5", id="1-5", topic="other"),
        Control("live", {"replayed": 2}),
        _event(b"6", id="1-6"),
    ]


@pytest.mark.parametrize(
    "encoder",
    [pytest.param(SSE, id="sse"), pytest.param(SSE_ENVELOPE, id="sse-envelope"), pytest.param(NDJSON, id="ndjson")],
)
def test_encoder_batch_is_the_concatenation_in_order(encoder: SSEEncoder | NDJSONEncoder):
    items = _batch()
    single = b"".join(encoder.encode([item]) for item in items)
    assert encoder.encode(items) == single
    assert encoder.encode([]) == b""


def test_encoder_batch_order_as_read_by_clients():
    items = _batch()
    sse = _parse_sse(SSE.encode(items))
    assert [(p["id"], p["event"]) for p in sse] == [
        ("1-1", "message"),
        ("1-1", "gap"),  # EventSource keeps the last id across a control message: it does not move it
        ("1-4", "reading"),
        ("1-5", "message"),
        ("1-5", "live"),
        ("1-6", "message"),
    ]
    lines = [orjson.loads(line) for line in NDJSON.encode(items).splitlines()]
    assert [line.get("id", line.get("control")) for line in lines] == ["1-1", "gap", "1-4", "1-5", "live", "1-6"]
    assert [line["data"] for line in lines if "data" in line] == [1, 4, 5, 6]


def test_encoders_multi_topic_chunk_parts_are_the_framed_chunk():
    """The two-part direct write of a multi-topic SSE stream is byte for byte the chunk of its frame."""
    events = [
        Event(topic, format_id(topic, "0badcafe", n), kind, b'{"n":%d}' % n, 1700000000000)
        for n, (topic, kind) in enumerate([("a", "message"), ("b", "reading"), ("a", "message")], start=1)
    ]
    parts = SSEEncoder(envelope=True, cursor=StreamCursor(1700000000000, 64))
    frames = SSEEncoder(envelope=True, cursor=StreamCursor(1700000000000, 64))
    for event in events:
        head, tail = parts.chunk_parts(event)
        assert head + tail == http_chunk(frames._envelope_frame(event))
        assert tail is parts.chunk_parts(event)[1], "the tail is shared, built once per event"
