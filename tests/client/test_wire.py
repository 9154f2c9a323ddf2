"""The stream decoders, fed the way a socket feeds them: in chunks that cut anywhere."""

from __future__ import annotations

import pytest

from broadcaster.client import ProtocolError
from broadcaster.client._wire import KEEPALIVE, Frame, NDJSONDecoder, SSEDecoder

EVENT = b'{"id":"3f2a9c1e.b41d07aa.1","topic":"t","type":"message","ts":1,"data":{"n":1}}'
EVENT_DICT = {"id": "3f2a9c1e.b41d07aa.1", "topic": "t", "type": "message", "ts": 1, "data": {"n": 1}}
GAP = b'{"control":"gap","dropped":3}'


def _feed_in_pieces(decoder, body: bytes, size: int):
    out = []
    for start in range(0, len(body), size):
        out.extend(decoder.feed(body[start : start + size]))
    return out


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000], ids=lambda s: f"chunks-of-{s}")
def test_ndjson_decoder_same_messages_whatever_the_chunking(size):
    body = EVENT + b"\n" + b'{"control":"heartbeat"}\n' + GAP + b"\r\n\n"
    expected = [Frame(EVENT_DICT, None), KEEPALIVE, Frame({"control": "gap", "dropped": 3}, None)]
    assert _feed_in_pieces(NDJSONDecoder(), body, size) == expected


def test_ndjson_decoder_never_decodes_an_unfinished_last_line():
    decoder = NDJSONDecoder()
    assert decoder.feed(EVENT + b"\n" + EVENT[:20]) == [Frame(EVENT_DICT)]  # the connection broke mid-line


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b"x" * 100, "over 64 bytes"),
        (b"y" * 65 + b"\n", "over 64 bytes"),
    ],
    ids=["invalid-json", "not-an-object", "endless-partial-line", "long-complete-line"],
)
def test_ndjson_decoder_refuses_what_is_not_a_stream(body, message):
    with pytest.raises(ProtocolError, match=message):
        NDJSONDecoder(max_line_bytes=64).feed(body)


@pytest.mark.parametrize("size", [1, 3, 4096], ids=lambda s: f"chunks-of-{s}")
def test_sse_decoder_frames_keepalives_retry_and_each_frames_id(size):
    cursor = b"1795384978745~9c0de1f2.0a1b2c3d.7,3f2a9c1e.b41d07aa.1"  # a multi-topic stream's id: its cursor
    body = (
        b"retry: 3500\n\n"  # the preamble: no data, so no message
        b"id: " + cursor + b"\nevent: reading\ndata: " + EVENT + b"\n\n"
        b": keepalive\n\n"
        b"event: gap\r\ndata: " + GAP + b"\r\n\r\n"  # a control message: no id, and none carried over
        b"data: " + EVENT[:30] + b"\n"  # the start of a frame never finished
    )
    decoder = SSEDecoder()
    expected = [Frame(EVENT_DICT, cursor.decode()), KEEPALIVE, Frame({"control": "gap", "dropped": 3}, None)]
    assert _feed_in_pieces(decoder, body, size) == expected
    assert decoder.retry_ms == 3500


def test_sse_decoder_joins_data_lines_and_ignores_unknown_fields():
    decoder = SSEDecoder()
    messages = decoder.feed(b'data: {"control":\ndata: "live", "replayed": 2}\nfoo: bar\nretry: soon\n\n')
    assert messages == [Frame({"control": "live", "replayed": 2}, None)]
    assert decoder.retry_ms is None  # not a number: ignored, as the spec says


def test_sse_decoder_bounds_a_frame_of_many_data_lines():
    with pytest.raises(ProtocolError, match="SSE frame over 64 bytes"):
        SSEDecoder(max_line_bytes=64).feed(b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 3)
