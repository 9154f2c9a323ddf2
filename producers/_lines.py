"""Lines to events for the producers that read lines (stdin, logtail), by the server's own line rules.

What a line is and which lines are rejected is `broadcaster`'s (`LineSplitter`,
`json_data`, `text_data`), the code the server's streamed ingest runs: a line a
producer publishes is a line the server would take, and a line it rejects gets
the same code (`invalid_json`, `invalid_utf8`, `too_long`) and reason as in the
server's ingest report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from broadcaster import InvalidLine, Line, Publish, line_rule

from ._exceptions import InvalidData

logger = logging.getLogger(__name__)

#: Rejected lines kept in `errors` (all are counted), as in the server's ingest report.
MAX_ERRORS = 20


class LinePublisher:
    """Publish lines on `topic` as events, one per line; count and log the ones rejected.

    `source` names the input in log messages. `lines` counts every line, blank ones
    included, so that line numbers match the input; `errors` holds the first
    `MAX_ERRORS` rejections as `{"line", "code", "reason"}`, like the server's report.
    """

    def __init__(self, topic: str, *, text: bool, max_event_bytes: int, source: str) -> None:
        self.topic = topic
        self.max_event_bytes = max_event_bytes
        self.source = source
        self.rule = line_rule(text=text)
        self.lines = 0
        self.published = 0
        self.rejected = 0
        self.errors: list[dict[str, Any]] = []

    async def publish(self, publish: Publish, lines: Iterable[Line]) -> None:
        """Publish each line's event (blank lines are skipped); a rejected line is counted, logged and skipped."""
        for line in lines:
            self.lines += 1
            try:
                data = self.rule(line, self.max_event_bytes)
                if data is not None:
                    await publish(self.topic, data)
                    self.published += 1
            except InvalidLine as exc:
                self._reject(exc.report(self.lines))
            except InvalidData as exc:  # the target's own limit is lower than ours
                self._reject({"line": self.lines, "code": "invalid_data", "reason": str(exc)})

    def _reject(self, error: dict[str, Any]) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        logger.warning("%s line %d skipped (%s): %s", self.source, error["line"], error["code"], error["reason"])


class LineCounts:
    """What a line-reading producer reports, read from its `LinePublisher` (`self._lines`)."""

    _lines: LinePublisher

    @property
    def lines(self) -> int:
        """Lines read, blank ones included."""
        return self._lines.lines

    @property
    def published(self) -> int:
        """Events published."""
        return self._lines.published

    @property
    def skipped(self) -> int:
        """Lines rejected by the line rules (or by the target)."""
        return self._lines.rejected

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The first rejected lines, `{"line", "code", "reason"}` as in the server's ingest report."""
        return self._lines.errors
