"""Streaming `multipart/form-data`: hand out the bytes of the `file` field as they arrive.

Built on python-multipart's low-level `MultipartParser` and its callbacks, not on
`request.form()`: the form API spools uploads to temporary files and returns only
once the whole body is in. Here nothing is kept but one part's headers (bounded by
the parser) and the slices of file data that the current chunk carried. Other
fields are skipped unread.
"""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import ClientError

__all__ = ["END_OF_FILE", "FileField", "MultipartParseError", "boundary_of"]

#: The longest boundary the multipart parser takes (python-multipart's limit).
MAX_BOUNDARY_BYTES = 256

#: Marks the end of one `file` part in the output of `FileField.feed`.
END_OF_FILE = None


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a `multipart/form-data` Content-Type; `ClientError` (400) if missing."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ClientError(400, "bad_request", "multipart/form-data needs a boundary parameter in its Content-Type")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise ClientError(
            400,
            "bad_request",
            f"the multipart boundary is {len(boundary)} bytes long; at most {MAX_BOUNDARY_BYTES} are accepted "
            "(RFC 2046 allows 70)",
        )
    return boundary


class FileField:
    """Feed a multipart body chunk by chunk; get the data of the parts named `name`.

    `feed()` returns the file bytes the chunk carried, with `END_OF_FILE` where a
    file part ended. It raises `MultipartParseError` on a malformed body.
    """

    def __init__(self, boundary: bytes, name: str = "file") -> None:
        self.name = name.encode()
        self.found = False  # a part with the field's name was seen
        self.complete = False  # the closing boundary was seen
        self._out: list[bytes | None] = []
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> list[bytes | None]:
        self._parser.write(chunk)
        out, self._out = self._out, []
        return out

    def _part_begin(self) -> None:
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            _, params = parse_options_header(bytes(self._value))
            if params.get(b"name") == self.name:
                self._in_file = self.found = True
        self._field.clear()
        self._value.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(data[start:end])

    def _part_end(self) -> None:
        if self._in_file:
            self._out.append(END_OF_FILE)
            self._in_file = False

    def _end(self) -> None:
        self.complete = True
