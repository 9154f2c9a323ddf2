"""The line rules (`broadcaster._lines`): one table, run against the server's ingest and the producers alike.

Each row is a body and what must come of it: the events published (their data), the
lines rejected (number and code), and the number of lines read. The same bytes go
through HTTP to the server's streamed ingest (NDJSON or text, in 5-byte chunks, and
NDJSON as a multipart upload) and through `producers.Stdin`; every side must give
the row's verdicts, and the same data bytes and reasons as the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from broadcaster import Event, Hub, LineSplitter, TooLong
from producers import Stdin

MAX_EVENT_BYTES = 32
TOPIC = "lines"


@dataclass
class Outcome:
    data: list[bytes]  # the published events' data, in order
    errors: list[dict[str, Any]]  # {"line", "code", "reason"}
    lines: int


NDJSON, TEXT = "application/x-ndjson", "text/plain"
LONG = b'"' + b"x" * 40 + b'"'  # 42 bytes: over MAX_EVENT_BYTES

ROWS = [
    # mode, body, published (as JSON values), rejected (line, code), lines read
    (NDJSON, b'{"a": 1}\n[1, 2]\n"s"\n3\nnull\n', [{"a": 1}, [1, 2], "s", 3, None], [], 5),
    (NDJSON, b'{"a": 1}\r\n2\r\n', [{"a": 1}, 2], [], 2),
    (NDJSON, b'  {"a": 1}\t \n', [{"a": 1}], [], 1),
    (NDJSON, b'{"a":\r1}\n', [{"a": 1}], [], 1),
    (NDJSON, b"\xef\xbb\xbf" + b'{"a": 1}\n2\n', [{"a": 1}, 2], [], 2),
    (NDJSON, b"1\n\xef\xbb\xbf2\n", [1], [(2, "invalid_json")], 2),
    (NDJSON, b"\n  \n1\n\t\r\n2\n", [1, 2], [], 5),
    (NDJSON, b"{\"a\": \n1\n{'b': 2}\n", [1], [(1, "invalid_json"), (3, "invalid_json")], 3),
    (NDJSON, b'"caf\xe9"\n1\n', [1], [(1, "invalid_utf8")], 2),
    (NDJSON, LONG + b"\n1\n" + b"y" * 100 + b"\n2\n", [1, 2], [(1, "too_long"), (3, "too_long")], 4),
    (NDJSON, b"1\n2", [1, 2], [], 2),
    (NDJSON, b"nope\n", [], [(1, "invalid_json")], 1),
    (TEXT, b'hello\r\nsaid "hi"\n\nw\xc3\xb6rld\n', ["hello", 'said "hi"', "wörld"], [], 4),
    (TEXT, b"bad \xff byte\nok\n", ["ok"], [(1, "invalid_utf8")], 2),
    (TEXT, b"\xef\xbb\xbfhello\n", ["hello"], [], 1),
    (TEXT, b"a\rb\r\n  \n\t\r\n", ["a\rb"], [], 3),
    (TEXT, b"x" * 40 + b"\n" + b'"' * 20 + b"\nshort", ["short"], [(1, "too_long"), (2, "too_long")], 3),
    (TEXT, b"last line without newline", ["last line without newline"], [], 1),
]
IDS = [
    "json-values",
    "json-crlf",
    "json-whitespace-around",
    "json-cr-inside-a-value",
    "json-bom-at-start",
    "json-bom-not-at-start",
    "json-blank-lines",
    "json-invalid",
    "json-not-utf8",
    "json-too-long",
    "json-no-final-newline",
    "json-nothing-valid",
    "text-lines",
    "text-not-utf8",
    "text-bom-at-start",
    "text-cr-inside-and-blank",
    "text-too-long-raw-and-as-json-string",
    "text-no-final-newline",
]


async def _server(client_factory: Any, make_settings: Any, mode: str, body: bytes, multipart: bool) -> Outcome:
    settings = make_settings(max_event_bytes=MAX_EVENT_BYTES)

    async def chunks() -> Any:  # awkward chunk boundaries: inside lines, a BOM, a CRLF, a UTF-8 sequence
        for start in range(0, len(body), 5):
            yield body[start : start + 5]

    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe([TOPIC]) as sub:
            if multipart:
                response = await client.post(f"/topics/{TOPIC}/events", files={"file": ("lines.ndjson", body, mode)})
            else:
                response = await client.post(
                    f"/topics/{TOPIC}/events", content=chunks(), headers={"Content-Type": mode}
                )
            answer = response.json()
            report = answer if response.status_code == 200 else answer["report"]
            assert response.status_code == (200 if report["accepted"] or not report["rejected"] else 422), answer
            events: list[Event] = []
            async with asyncio.timeout(5):
                while len(events) < report["accepted"]:
                    item = await sub.get()
                    if isinstance(item, Event):
                        events.append(item)
            await asyncio.sleep(0)
            assert sub.queued == 0, "nothing may be published beyond what the report counts"
    assert report["rejected"] == len(report["errors"])
    return Outcome([e.data for e in events], report["errors"], report["lines"])


async def _stdin(tmp_path: Any, mode: str, body: bytes) -> Outcome:
    path = tmp_path / "input"
    path.write_bytes(body)
    published: list[bytes] = []

    async def publish(topic: str, data: bytes) -> None:
        assert topic == TOPIC
        published.append(data)

    with path.open("rb") as stream:
        producer = Stdin(TOPIC, text=mode == TEXT, stream=stream, max_event_bytes=MAX_EVENT_BYTES)
        async with asyncio.timeout(5):
            await producer.run(publish)
    assert producer.skipped == len(producer.errors) and producer.published == len(published)
    return Outcome(published, producer.errors, producer.lines)


@pytest.mark.parametrize(("mode", "body", "published", "rejected", "lines"), ROWS, ids=IDS)
async def test_line_rules_give_the_same_verdicts_in_the_server_and_the_producers(
    client_factory, make_settings, tmp_path, mode, body, published, rejected, lines
):
    sides = {
        "server": await _server(client_factory, make_settings, mode, body, multipart=False),
        "stdin producer": await _stdin(tmp_path, mode, body),
    }
    if mode == NDJSON:  # an upload's file field is NDJSON
        sides["server, multipart upload"] = await _server(client_factory, make_settings, mode, body, multipart=True)
    for side, outcome in sides.items():
        assert [orjson.loads(d) for d in outcome.data] == published, side
        assert [(e["line"], e["code"]) for e in outcome.errors] == rejected, side
        assert outcome.lines == lines, side
        assert all(b"\n" not in d and b"\r" not in d and len(d) <= MAX_EVENT_BYTES for d in outcome.data), side
    first = sides["server"]
    for side, outcome in sides.items():
        assert (outcome.data, outcome.errors) == (first.data, first.errors), f"{side} differs from the server"


def test_line_reasons_name_the_problem():
    """The reasons the table compares across sides, read once: each names what is wrong and where."""
    from broadcaster import InvalidLine, json_data, text_data

    cases = [
        (json_data, b'{"a": x}', "invalid_json", "line is not valid JSON: unexpected character"),
        (json_data, b'"caf\xe9"', "invalid_utf8", "line is not UTF-8: byte 0xe9 at column 5"),
        (json_data, TooLong(5000), "too_long", "line is 5000 bytes, the limit is 32 bytes (max_event_bytes)"),
        (text_data, b"a\xffb", "invalid_utf8", "line is not UTF-8: byte 0xff at column 2 (invalid start byte)"),
        (text_data, b'"' * 20, "too_long", "line is 42 bytes as a JSON string, the limit is 32 bytes"),
    ]
    for rule, line, code, reason in cases:
        with pytest.raises(InvalidLine) as info:
            rule(line, MAX_EVENT_BYTES)
        assert info.value.code == code
        assert str(info.value).startswith(reason), str(info.value)
    with pytest.raises(InvalidLine, match=r"at column 7$"):  # the column of the line, not orjson's "line 1 ..."
        json_data(b'{"a": x}', MAX_EVENT_BYTES)


def test_line_splitter_cuts_lines_across_chunks():
    splitter = LineSplitter(100)
    assert splitter.feed(b'{"a"') == []
    assert splitter.feed(b': 1}\n{"b": 2}\n{"c"') == [b'{"a": 1}', b'{"b": 2}']
    assert splitter.feed(b"") == []
    assert splitter.end() == [b'{"c"']
    assert splitter.end() == []


def test_line_splitter_discards_an_over_long_line_without_holding_it():
    splitter = LineSplitter(64)
    assert splitter.feed(b"ok\n" + b"x" * 40) == [b"ok"]
    for _ in range(1000):  # 100 kB of one line, fed in small pieces
        assert splitter.feed(b"y" * 100) == []
        assert splitter.buffered <= 64
    lines = splitter.feed(b"zz\nnext\n")
    assert [type(line) for line in lines] == [TooLong, bytes]
    assert lines[0].size == 40 + 100_000 + 2 and lines[1] == b"next"  # type: ignore[union-attr]
    assert [type(line) for line in LineSplitter(4).feed(b"12345\n1234\n")] == [TooLong, bytes]


def test_line_splitter_drops_a_bom_only_at_the_start_of_each_stream():
    splitter = LineSplitter.for_events(MAX_EVENT_BYTES)
    assert splitter.feed(b"\xef\xbb") == []  # a BOM split across chunks
    assert splitter.feed(b"\xbfone\n\xef\xbb\xbftwo\n") == [b"one", b"\xef\xbb\xbftwo"]
    assert splitter.end() == []
    # After end() (a rotated or truncated file), a new stream starts: its BOM is dropped too.
    assert splitter.feed(b"\xef\xbb\xbfthree") == []
    assert splitter.end() == [b"three"]
    assert splitter.max_line_bytes == MAX_EVENT_BYTES + 1, "room for the CR of a CRLF line"
