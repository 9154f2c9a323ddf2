"""The FileResponse adapter (`http/api/files.py`): the Starlette internals it relies on are still there.

If one of these fails after a Starlette upgrade, `http/api/files.py` must be adapted: it calls
`FileResponse._parse_range_header(header, size)` to judge a range before answering, and
overrides `FileResponse._handle_simple(send, send_header_only, send_pathsend)` to stop a
full download at the served length of a growing file.
"""

from __future__ import annotations

import inspect

import pytest
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable

from broadcaster.http.api.files import _SegmentResponse


def test_file_response_still_parses_ranges_the_way_the_adapter_expects():
    parse = FileResponse._parse_range_header
    assert parse("bytes=0-9", 100) == [(0, 10)]
    assert parse("bytes=-10", 100) == [(90, 100)]
    assert parse("bytes=90-", 100) == [(90, 100)]
    assert parse("bytes=0-9,5-19", 100) == [(0, 20)]
    with pytest.raises(RangeNotSatisfiable):
        parse("bytes=100-", 100)
    with pytest.raises(MalformedRangeHeader):
        parse("bytes=5-3", 100)
    with pytest.raises(MalformedRangeHeader):
        parse("bytes=abc", 100)


def test_file_response_full_body_path_has_the_signature_the_adapter_overrides():
    ours = inspect.signature(_SegmentResponse._handle_simple)
    theirs = inspect.signature(FileResponse._handle_simple)
    assert list(ours.parameters) == list(theirs.parameters) == ["self", "send", "send_header_only", "send_pathsend"]
    assert FileResponse.chunk_size == 64 * 1024  # the chunk size docs/benchmarks.md measured
