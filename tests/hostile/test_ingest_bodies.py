"""Hypothesis-made publish bodies: every answer is a documented 4xx or a report, never a 5xx, never a hang."""

from __future__ import annotations

import httpx
import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

MAX_EVENT_BYTES = 2048
SERVER_FLAGS = ("--max-event-bytes", str(MAX_EVENT_BYTES), "--max-body-bytes", str(1 << 20))

#: Answers a publish may give, by status, with what the body must hold.
DOCUMENTED = {201: "id", 200: "accepted", 400: "error", 408: "error", 413: "error", 415: "error", 422: "error"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
pieces = st.one_of(
    json_values.map(orjson.dumps),
    st.binary(max_size=64),
    st.integers(MAX_EVENT_BYTES, MAX_EVENT_BYTES * 3).map(lambda n: b"x" * n),  # a line over the limit
    st.just(b"\r"),  # a lone CR
    st.just(b"\xef\xbb\xbf"),  # a BOM, anywhere
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]),  # not UTF-8
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deeply nested JSON
    st.sampled_from([b"1e400", b"-1e999", b"123456789012345678901234567890", b"NaN", b"Infinity", b"0x10", b"01"]),
    st.just(b"\n"),
    st.just(b"\x00"),
)
bodies = st.lists(pieces, max_size=12).map(b"".join)
KINDS = ["application/json", "application/x-ndjson", "text/plain", "application/jsonl", "", "text/csv"]


def _multipart(body: bytes, boundary: bytes, breakage: int) -> tuple[bytes, str]:
    part = b'--%b\r\nContent-Disposition: form-data; name="file"; filename="b.ndjson"\r\n\r\n%b\r\n--%b--\r\n' % (
        boundary,
        body,
        boundary,
    )
    if breakage == 1:
        part = part[: len(part) // 2]  # cut mid-body: no closing boundary
    elif breakage == 2:
        part = part.replace(b"--" + boundary, b"--" + boundary[:-1] + b"X", 1)  # the first boundary is wrong
    elif breakage == 3:
        part = part.replace(b"\r\n\r\n", b"\r\n", 1)  # headers never end
    return part, f"multipart/form-data; boundary={boundary.decode('latin-1')}"


def _check(response: httpx.Response) -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:500])
    answer = response.json()
    assert DOCUMENTED[response.status_code] in answer, answer
    if "error" in answer:
        assert answer["error"]["code"] and answer["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=bodies, kind=st.sampled_from(KINDS), event_type=st.sampled_from(["message", "reading", "bad type", "gap"]))
def test_streamed_and_single_bodies(module_server, module_canary, body, kind, event_type):
    headers = {"Content-Type": kind} if kind else {}
    response = httpx.post(
        f"{module_server.url}/topics/fuzz/events",
        content=body,
        headers=headers,
        params={"type": event_type},
        timeout=10,
    )
    _check(response)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    body=bodies,
    boundary=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';"'), min_size=1, max_size=300
    ).map(str.encode),
    breakage=st.integers(0, 3),
)
def test_multipart_bodies_with_broken_boundaries(module_server, module_canary, body, boundary, breakage):
    content, content_type = _multipart(body, boundary, breakage)
    response = httpx.post(
        f"{module_server.url}/topics/fuzz/events", content=content, headers={"Content-Type": content_type}, timeout=10
    )
    _check(response)


def test_the_canary_saw_everything_meanwhile(module_canary):
    module_canary()  # its verify() runs when the module ends
