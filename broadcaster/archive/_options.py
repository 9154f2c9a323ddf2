"""The archiver's options, read from `Settings` (`archive_*` fields), and the fsync policy's syntax."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._exceptions import ConfigError

if TYPE_CHECKING:
    from .._config import Settings

DEFAULT_SEGMENT_S = 3600.0
DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024
DEFAULT_FSYNC = "1"


def parse_fsync(text: str) -> float | None:
    """`batch` -> 0 (fsync after every batch), `never` -> None, a number N -> every N seconds.

    Raises `ConfigError` naming the accepted forms.
    """
    value = text.strip().lower()
    if value == "batch":
        return 0.0
    if value == "never":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"must be batch, never or a number of seconds above 0, got {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class ArchiveOptions:
    """How segments are cut, synced, compressed and kept. 0 means no limit for the retention values."""

    segment_s: float = DEFAULT_SEGMENT_S
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    #: 0: fsync after every batch; N: at most N seconds after a write; None: never (the OS decides).
    fsync_s: float | None = 1.0
    gzip: bool = False
    retention_s: float = 0.0
    retention_bytes: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveOptions:
        return cls(
            segment_s=settings.archive_segment_s,
            segment_bytes=settings.archive_segment_bytes,
            fsync_s=parse_fsync(settings.archive_fsync),
            gzip=settings.archive_gzip,
            retention_s=settings.archive_retention_s,
            retention_bytes=settings.archive_retention_bytes,
        )

    @property
    def segment_ms(self) -> int:
        return max(1000, int(self.segment_s * 1000))
